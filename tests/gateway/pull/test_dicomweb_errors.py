"""A DICOMweb source that answers 500, or too slowly: a clear error on the pull, a defined retry,
then failure; with a real HTTP server on loopback and the real QIDO-RS/WADO-RS client.  Every
QIDO-RS request sent is in the audit trail as a Query message, with its outcome."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from lxml import etree
from sqlalchemy import Engine

from gateway.audit import AuditTrail
from gateway.config import Settings, load_settings
from gateway.db import create_database_engine, upgrade
from gateway.pipeline.clock import FakeClock
from gateway.pull import Puller, PullQuery, SourceError, open_source
from gateway.pull.listing import pull_summary, request_pull
from tests.gateway.audit.support import assert_valid

STUDY = "1.2.826.0.1.3680043.10.999.1"


class Behaviour:
    """What the fake archive does: per path prefix, a status code and a delay; every request logged."""

    def __init__(self) -> None:
        self.status = {"/studies": 200, "/wado": 200}
        self.reason: str | None = None
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
                self.send_response(code, behaviour.reason)
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


def _queries(settings: Settings) -> list[etree._Element]:
    """The Query messages (PS3.15 A.5.3.10) of the audit file, each valid against the schema."""
    messages = [assert_valid(line) for line in settings.audit_path.read_bytes().splitlines()]
    return [root for root in messages if root.find("EventIdentification/EventID").get("csd-code") == "110112"]


def _outcome_and_query(root: etree._Element) -> tuple[str | None, str]:
    asked = root.find("ParticipantObjectIdentification")
    return (
        root.find("EventIdentification").get("EventOutcomeIndicator"),
        base64.b64decode(asked.findtext("ParticipantObjectQuery")).decode(),
    )


def test_a_qido_source_answering_500_is_retried_then_the_pull_fails_with_the_status(
    tmp_path: Path, engine: Engine, archive: tuple[Behaviour, int]
) -> None:
    behaviour, port = archive
    behaviour.status["/studies"] = 500
    settings, clock = _settings(tmp_path, port), FakeClock()
    pull = request_pull(engine, settings, "web", PullQuery(modalities=["CR"]), actor="t", now=clock.now())
    audit = AuditTrail.from_settings(settings, host_id="gw.example.org")
    puller = Puller(engine, settings, store=None, clock=clock, observer=audit)
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
    # each attempt is audited as a query that got no answer (minor failure: the puller retries it)
    audit.close()
    queries = _queries(settings)
    assert [_outcome_and_query(root) for root in queries] == [
        ("4", f"http://127.0.0.1:{port}{request}") for request in behaviour.requests
    ]
    assert queries[0].findtext("EventIdentification/EventOutcomeDescription") == (
        f"query of source web: failed ({waiting.last_error})"
    )


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


def test_every_qido_request_is_audited_as_a_query_answered_or_refused(
    tmp_path: Path, archive: tuple[Behaviour, int]
) -> None:
    behaviour, port = archive
    settings = _settings(tmp_path, port)
    audit = AuditTrail.from_settings(settings, host_id="gw.example.org")
    source = open_source("web", settings, None, audit)
    assert [study.study_instance_uid for study in source.find(PullQuery(accession="ACC4711"), 10)] == [STUDY]
    behaviour.status["/studies"], behaviour.reason = 403, "Forbidden"
    with pytest.raises(SourceError, match="answered HTTP 403 Forbidden"):
        source.find(PullQuery(study_uid=STUDY), 10)
    audit.close()
    answered, refused = _queries(settings)
    outcome, url = _outcome_and_query(answered)
    assert outcome == "0" and url == f"http://127.0.0.1:{port}{behaviour.requests[0]}"
    assert "AccessionNumber=ACC4711" in url  # the query as sent: the audit trail is where it is kept
    [asked] = answered.findall("ParticipantObjectIdentification")  # no patient participant
    assert asked.get("ParticipantObjectID") == f"http://127.0.0.1:{port}/studies"
    assert asked.find("ParticipantObjectIDTypeCode").get("csd-code") == "12"
    responder = answered.find("ActiveParticipant[@UserIsRequestor='false']")
    assert (responder.get("UserID"), responder.get("UserName"), responder.get("NetworkAccessPointID")) == (
        "127.0.0.1",
        "web",
        "127.0.0.1",
    )
    assert _outcome_and_query(refused) == ("8", f"http://127.0.0.1:{port}{behaviour.requests[1]}")
