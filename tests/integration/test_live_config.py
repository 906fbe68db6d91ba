"""The live configuration against real DICOM peers on loopback: a caller added or removed while the
gateway runs is accepted or rejected at the next association, without a restart."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.config import Settings, edits, load_settings
from gateway.config.live import LiveSettings
from gateway.db import create_database_engine
from gateway.runtime import GatewayRuntime
from tests.ingest_support import (
    associate_expecting_rejection,
    node_settings,
    rejection_of,
    running_node,
    scu,
    serve_config,
    start_serve,
    write_config,
)

pytestmark = pytest.mark.integration

KNOWN = {"ae_title": "TESTSCU", "host": "127.0.0.1"}
MODALITY = {"ae_title": "MOD1", "host": "127.0.0.1"}
CALLING_AE_NOT_RECOGNIZED = (1, 1, 3)  # rejected permanent, by the service user, calling AE title not recognised


def run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def echo_from(port: int, calling_ae_title: str) -> tuple[bool, Any]:
    """A pynetdicom association (and C-ECHO) from ``calling_ae_title``: (accepted, the association)."""
    ae = scu(calling_ae_title)
    assoc = associate_expecting_rejection(ae, "127.0.0.1", port, "GAZEX")
    if not assoc.is_established:
        return False, assoc
    status = assoc.send_c_echo()
    assoc.release()
    assert status.Status == 0x0000
    return True, assoc


def index_of(live: LiveSettings, caller: dict[str, str]) -> int:
    return live.document()["dicom"]["allowed_callers"].index(caller)


@pytest.fixture
def settings(tmp_path: Path, free_port: Callable[[], int]) -> Settings:
    return node_settings(tmp_path / "data", free_port(), dicom={"allowed_callers": [KNOWN]})


@pytest.fixture
def node(settings: Settings) -> Iterator[GatewayRuntime]:
    with running_node(settings) as runtime:
        yield runtime


def test_a_caller_added_is_accepted_at_once_and_removed_is_rejected_at_once(
    node: GatewayRuntime, dicom_tool: Callable[[str], Path]
) -> None:
    assert node.node is not None and node.live is not None
    port = node.node.address[1]
    live = node.live
    echoscu = str(dicom_tool("echoscu"))
    accepted, assoc = echo_from(port, "MOD1")
    assert not accepted and rejection_of(assoc) == CALLING_AE_NOT_RECOGNIZED

    live.apply(lambda doc: edits.add_caller(doc, MODALITY), actor="alice", summary="allow MOD1")
    assert echo_from(port, "MOD1")[0]  # no restart, no wait
    assert run([echoscu, "-aet", "MOD1", "-aec", "GAZEX", "127.0.0.1", str(port)]).returncode == 0

    live.apply(lambda doc: edits.remove_caller(doc, index_of(live, MODALITY)), actor="alice", summary="remove")
    accepted, assoc = echo_from(port, "MOD1")
    assert not accepted and rejection_of(assoc) == CALLING_AE_NOT_RECOGNIZED
    refused = run([echoscu, "-aet", "MOD1", "-aec", "GAZEX", "127.0.0.1", str(port)])
    assert refused.returncode != 0 and "Calling AE Title Not Recognized" in refused.stderr
    assert echo_from(port, "TESTSCU")[0]  # the others were never disturbed


def test_our_ae_titles_and_the_flags_are_live(node: GatewayRuntime) -> None:
    assert node.node is not None and node.live is not None
    port = node.node.address[1]
    live = node.live
    ae = scu("TESTSCU")
    assert not associate_expecting_rejection(ae, "127.0.0.1", port, "GAZEX2").is_established
    live.apply(lambda doc: edits.set_ae_titles(doc, ["GAZEX", "GAZEX2"]), actor="alice", summary="second title")
    assoc = ae.associate("127.0.0.1", port, ae_title="GAZEX2")
    assert assoc.is_established
    assert assoc.acceptor.ae_title == "GAZEX2"  # answered as the title that was called
    assoc.release()
    assert not echo_from(port, "STRANGER")[0]
    live.apply(lambda doc: edits.set_flags(doc, reject_unknown_callers=False), actor="alice", summary="open")
    assert echo_from(port, "STRANGER")[0]


def test_gazex_serve_follows_a_change_stored_by_another_process(
    tmp_path: Path, free_port: Callable[[], int], dicom_tool: Callable[[str], Path]
) -> None:
    """A change stored by another process (another gazex, or ``gazex config reseed``) reaches ``gazex serve``
    within its refresh interval (1 s): the path ``gazex worker`` processes follow too."""
    port = free_port()
    values = serve_config(tmp_path / "data", port, dicom={"allowed_callers": [KNOWN]})
    config = write_config(tmp_path / "gazex.yaml", values)
    node = start_serve(config, port, tmp_path / "serve.log")
    echoscu = str(dicom_tool("echoscu"))

    def echo(calling: str) -> subprocess.CompletedProcess[str]:
        return run([echoscu, "-aet", calling, "-aec", "GAZEX", "127.0.0.1", str(port)])

    def eventually(calling: str, accepted: bool) -> None:
        deadline = time.monotonic() + 30  # refresh_seconds is 1; generous for a loaded CI machine
        while (echo(calling).returncode == 0) != accepted:
            assert time.monotonic() < deadline, f"{calling} still {'rejected' if accepted else 'accepted'}"
            time.sleep(0.2)

    try:
        assert echo("MOD1").returncode != 0
        base = load_settings(config, environ={})
        engine = create_database_engine(base.database_url)
        try:
            other = LiveSettings(engine, base)
            other.seed()
            other.apply(lambda doc: edits.add_caller(doc, MODALITY), actor="alice", summary="allow MOD1")
            eventually("MOD1", accepted=True)
            other.reseed_from(base)  # what gazex config reseed does: the file's callers again
            eventually("MOD1", accepted=False)
        finally:
            engine.dispose()
        assert echo("TESTSCU").returncode == 0
        assert node.terminate() == 0
    finally:
        node.kill()
    log = node.log()
    assert "live configuration seeded from the configuration file (revision 1)" in log
