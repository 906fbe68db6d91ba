"""The configuration API of a running ``gazex serve`` with a real DICOM peer (dcmtk echoscu): a caller
added over the API is accepted at its next association, removed it is rejected, without a restart;
and the audit file names the admin who did it, with before and after."""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.gateway.audit.support import assert_valid
from tests.ingest_support import ServeProcess, serve_config, start_serve, write_config
from tests.integration.test_serve_http import add_user, wait_ready

pytestmark = pytest.mark.integration

KNOWN = {"ae_title": "TESTSCU", "host": "127.0.0.1"}


@pytest.fixture
def started() -> Iterator[list[ServeProcess]]:
    processes: list[ServeProcess] = []
    yield processes
    for process in processes:
        process.kill()


def test_a_caller_added_and_removed_over_the_api_is_admitted_and_refused_at_once(
    tmp_path: Path, free_port: Callable[[], int], started: list[ServeProcess], dicom_tool: Callable[[str], Path]
) -> None:
    port, http_port = free_port(), free_port()
    config = write_config(
        tmp_path / "gazex.yaml",
        serve_config(
            tmp_path / "data",
            port,
            model={"path": "fake"},
            dicom={"allowed_callers": [KNOWN], "reject_unknown_callers": True},
            http={"enabled": True, "port": http_port},
        ),
    )
    node = start_serve(config, port, tmp_path / "serve.log")
    started.append(node)
    base = f"http://127.0.0.1:{http_port}/api/v1/config"
    wait_ready(f"http://127.0.0.1:{http_port}")
    api = httpx.Client(headers={"Authorization": f"Bearer {add_user(config, 'itadmin', 'admin')}"}, timeout=30)
    echoscu = str(dicom_tool("echoscu"))

    def echo(calling: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [echoscu, "-aet", calling, "-aec", "GAZEX", "127.0.0.1", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    refused = echo("MOD1")
    assert refused.returncode != 0 and "Calling AE Title Not Recognized" in refused.stderr

    added = api.post(f"{base}/callers", json={"ae_title": "MOD1", "host": "127.0.0.1"})
    assert added.status_code == 201, added.text
    assert added.json()["index"] == 1
    assert echo("MOD1").returncode == 0  # the very next association: no restart, no wait

    invalid = api.put(f"{base}/destinations/pacs", json={"ae_title": "PACS", "host": "pacs", "port": 70000})
    assert invalid.status_code == 422 and "65535" in invalid.json()["detail"]

    removed = api.delete(f"{base}/callers/1")
    assert removed.status_code == 200, removed.text
    assert removed.json()["item"] == {"ae_title": "MOD1", "host": "127.0.0.1"}
    refused = echo("MOD1")
    assert refused.returncode != 0 and "Calling AE Title Not Recognized" in refused.stderr
    assert echo("TESTSCU").returncode == 0  # the others were never disturbed

    history = api.get(f"{base}/history").json()["items"]
    assert [(item["revision"], item["actor"]) for item in history] == [(3, "itadmin"), (2, "itadmin"), (1, "seed")]
    assert node.terminate() == 0

    audit_log = tmp_path / "data" / "audit" / "audit.log"
    changes = []
    for line in audit_log.read_bytes().splitlines():
        root = assert_valid(line)
        subject = root.find("ParticipantObjectIdentification")
        if subject is not None and subject.get("ParticipantObjectID", "").startswith("urn:gazex:configuration:"):
            actor = root.find("ActiveParticipant[@UserIsRequestor='true']")
            assert actor is not None
            details = {
                d.get("type"): base64.b64decode(d.get("value", "")) for d in subject.iter("ParticipantObjectDetail")
            }
            changes.append(
                (subject.get("ParticipantObjectID"), actor.get("UserID"), actor.get("NetworkAccessPointID"), details)
            )
    assert [(subject, user, address) for subject, user, address, _ in changes] == [
        ("urn:gazex:configuration:revision:2", "itadmin", "127.0.0.1"),
        ("urn:gazex:configuration:revision:3", "itadmin", "127.0.0.1"),
    ]
    added_details, removed_details = changes[0][3], changes[1][3]
    assert added_details["Alert Description"] == b"allow caller MOD1 from 127.0.0.1"
    assert b"MOD1" not in added_details["Before"] and b"MOD1" in added_details["After"]
    assert b"MOD1" in removed_details["Before"] and b"MOD1" not in removed_details["After"]
