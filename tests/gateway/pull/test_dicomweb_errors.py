"""A DICOMweb source that answers 500, or too slowly: a clear error on the pull, a defined retry,
then failure; with a real HTTP server on loopback and the real QIDO-RS/WADO-RS client."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from sqlalchemy import Engine

from gateway.config import Settings, load_settings
from gateway.db import create_database_engine, upgrade
from gateway.pipeline.clock import FakeClock
from gateway.pull import Puller, PullQuery
from gateway.pull.listing import pull_summary, request_pull

STUDY = "1.2.826.0.1.3680043.10.999.1"


class Behaviour:
    """What the fake archive does: per path prefix, a status code and a delay; every request logged."""

    def __init__(self) -> None:
        self.status = {"/studies": 200, "/wado": 200}
        self.delay = 0.0
        self.requests: list[str] = []


def _server(behaviour: Behaviour) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            behaviour.requests.append(self.path)
            time.sleep(behaviour.delay)
            retrieve = self.path.startswith(f"/studies/{STUDY}") and "/series" not in self.path
            code = behaviour.status["/wado" if retrieve else "/studies"]
            if code != 200:
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = json.dumps([{"0020000D": {"vr": "UI", "Value": [STUDY]}, "00080020": {"vr": "DA",
                              "Value": ["20250103"]}}]).encode()  # fmt: skip
            self.send_response(200)
            self.send_header("Content-Type", "application/dicom+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def archive() -> Iterator[tuple[Behaviour, int]]:
    behaviour = Behaviour()
    server = _server(behaviour)
    yield behaviour, int(server.server_address[1])
    server.shutdown()
    server.server_close()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_database_engine(f"sqlite:///{tmp_path / 'pull.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()


def _settings(tmp_path: Path, port: int, timeout: float = 5.0) -> Settings:
    return load_settings(
        overrides={
            "storage": {"data_dir": str(tmp_path)},
            "sources": {
                "web": {"type": "dicomweb", "base_url": f"http://127.0.0.1:{port}", "timeout_seconds": timeout}
            },
            "pull": {"max_attempts": 2, "base_delay_seconds": 5, "max_delay_seconds": 5},
        },
        environ={},
    )


def test_a_qido_source_answering_500_is_retried_then_the_pull_fails_with_the_status(
    tmp_path: Path, engine: Engine, archive: tuple[Behaviour, int]
) -> None:
    behaviour, port = archive
    behaviour.status["/studies"] = 500
    settings, clock = _settings(tmp_path, port), FakeClock()
    pull = request_pull(engine, settings, "web", PullQuery(modalities=["CR"]), actor="t", now=clock.now())
    puller = Puller(engine, settings, store=None, clock=clock)
    assert puller.run_burst() == 1
    waiting = pull_summary(engine, pull.id)
    assert waiting is not None and waiting.state == "queued"
    assert (
        waiting.last_error
        == f"source web (http://127.0.0.1:{port}): QIDO-RS /studies answered HTTP 500 Internal Server Error"
    )
    assert puller.run_burst() == 0  # the retry waits for the backoff
    clock.advance(5)
    assert puller.run_burst() == 1
    failed = pull_summary(engine, pull.id)
    assert failed is not None and failed.state == "failed" and failed.query_attempts == 2
    assert len(behaviour.requests) == 2  # no retries of the library's own: ours, with the backoff
    path, _, query = behaviour.requests[0].partition("?")
    asked = parse_qs(query)
    assert path == "/studies" and asked["ModalitiesInStudy"] == ["CR"]
    assert set(asked["includefield"]) == {"StudyDate", "ModalitiesInStudy", "SOPClassesInStudy"}


def test_a_qido_source_answering_too_slowly_times_out_with_a_clear_error(
    tmp_path: Path, engine: Engine, archive: tuple[Behaviour, int]
) -> None:
    behaviour, port = archive
    behaviour.delay = 2.0
    settings, clock = _settings(tmp_path, port, timeout=0.3), FakeClock()
    pull = request_pull(engine, settings, "web", PullQuery(study_uid=STUDY), actor="t", now=clock.now())
    Puller(engine, settings, store=None, clock=clock).run_burst()
    waiting = pull_summary(engine, pull.id)
    assert waiting is not None and waiting.state == "queued"
    assert waiting.last_error is not None
    assert waiting.last_error.endswith("QIDO-RS /studies timed out: no answer within 0.3 s")


def test_a_wado_retrieve_answering_503_fails_the_study_after_its_attempts(
    tmp_path: Path, engine: Engine, archive: tuple[Behaviour, int]
) -> None:
    from gateway.db.index import InstanceIndex
    from gateway.dicom.store import InstanceStore
    from gateway.spool import Spool

    behaviour, port = archive
    behaviour.status["/wado"] = 503
    settings, clock = _settings(tmp_path, port), FakeClock()
    spool = Spool(tmp_path / "spool", 0)
    spool.open()
    try:
        store = InstanceStore(spool, InstanceIndex(engine))
        pull = request_pull(engine, settings, "web", PullQuery(date_from="20250101"), actor="t", now=clock.now())
        puller = Puller(engine, settings, store=store, clock=clock)
        puller.run_burst()
        clock.advance(5)
        puller.run_burst()
    finally:
        spool.close()
    failed = pull_summary(engine, pull.id)
    assert failed is not None
    assert (failed.state, failed.found, failed.failed) == ("failed", 1, 1)
    [item] = failed.items
    assert item.attempts == 2 and item.last_error is not None
    assert item.last_error.endswith("WADO-RS /studies/{uid} answered HTTP 503 Service Unavailable")
