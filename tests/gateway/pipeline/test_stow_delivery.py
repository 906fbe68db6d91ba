"""Deliveries to a DICOMweb destination through the real STOW-RS sender (httpx), against a small STOW
server on loopback that answers exactly as each test says: partial success per instance, 500 with
Retry-After, a destination that is down, OAuth 2 client credentials with a cached token."""

from __future__ import annotations

import datetime as dt
import socket
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

from gateway.operations.actions import echo_destination
from gateway.pipeline.delivery import Deliverer
from gateway.pipeline.sender import FakeSender, TypedSender
from gateway.pipeline.stow import StowSender
from tests.gateway.pipeline.stow_support import StowServer, dicom_json, failed, referenced
from tests.gateway.pipeline.support import Harness
from tests.gateway.pipeline.test_worker import queue_study


def web_harness(tmp_path: Path, base_url: str, **values: Any) -> Harness:
    destination = {"type": "dicomweb", "base_url": base_url, "timeout_seconds": 10, **values}
    return Harness.create(tmp_path, destinations={"web": destination})


def prepare(harness: Harness, template: Dataset) -> list[str]:
    """Queue and analyse one study; its outputs' SOP Instance UIDs (SR, SEG, GSPS)."""
    queue_study(harness, template)
    pipeline = harness.pipeline()
    pipeline.outbox.prepare()
    assert pipeline.workers[0].run_once() is not None
    return [row.sop_instance_uid for row in harness.rows("SELECT sop_instance_uid FROM outputs ORDER BY id")]


def deliverer(harness: Harness, sender: StowSender | None = None) -> Deliverer:
    pipeline = harness.pipeline()
    # as gazex serve sends: by destination type (a C-STORE destination would go to the fake)
    typed = TypedSender({"dicom": FakeSender(), "dicomweb": sender or StowSender()})
    return Deliverer(harness.engine, harness.settings, pipeline.outbox, typed, harness.clock, "d", lambda: 0.0)


def items(harness: Harness) -> dict[str, Any]:
    rows = harness.rows(
        "SELECT o.sop_instance_uid, i.status, i.status_code, i.sends, i.last_error FROM delivery_items i "
        "JOIN outputs o ON o.id = i.output_pk"
    )
    return {row.sop_instance_uid: row for row in rows}


def test_a_202_with_one_failed_instance_fails_that_item_and_acknowledges_the_others(
    tmp_path: Path, template: Dataset
) -> None:
    refuse: set[str] = set()

    def respond(uids: list[str]) -> tuple[int, dict[str, str], bytes]:
        good = [referenced(uid) for uid in uids if uid not in refuse]
        bad = [failed(uid, 0xA900) for uid in uids if uid in refuse]
        return dicom_json(202 if bad else 200, good, bad)

    with StowServer(respond) as server:
        harness = web_harness(tmp_path, server.base_url, max_instances_per_request=2)
        try:
            sr, seg, gsps = prepare(harness, template)
            refuse.add(seg)
            result = deliverer(harness).run_once()
            assert result is not None and (result.status, result.acknowledged, result.total) == ("pending", 2, 3)
            assert f"{seg} refused with status 0xA900" in (result.reason or "")
            found = items(harness)
            assert (found[seg].status, found[seg].status_code) == ("failed", 0xA900)
            assert "failure reason 0xA900" in found[seg].last_error
            assert found[sr].status == found[gsps].status == "acknowledged"
            # two requests (at most 2 instances each), to BASE_URL/studies, asking for DICOM JSON
            assert [r.sop_instance_uids for r in server.requests] == [[sr, seg], [gsps]]
            assert {r.path for r in server.requests} == {"/dicom-web/studies"}
            assert server.requests[0].headers["Accept"] == "application/dicom+json"
            refuse.clear()
            harness.clock.advance(10)
            result = deliverer(harness).run_once()
            assert result is not None and result.status == "delivered"
            assert server.requests[-1].sop_instance_uids == [seg]  # the acknowledged ones are never sent again
            assert found[sr].sends == 1 and items(harness)[seg].sends == 2
        finally:
            harness.close()


def test_a_500_with_retry_after_is_retried_after_the_wait_asked_for_then_dead_lettered(
    tmp_path: Path, template: Dataset
) -> None:
    def respond(uids: list[str]) -> tuple[int, dict[str, str], bytes]:
        return 503, {"Retry-After": "45", "Content-Type": "text/plain"}, b"busy"

    with StowServer(respond) as server:
        harness = web_harness(tmp_path, server.base_url)
        try:
            prepare(harness, template)
            result = deliverer(harness).run_once()
            assert result is not None and result.status == "pending" and result.acknowledged == 0
            assert "HTTP 503 from the STOW-RS service" in (result.reason or "")
            [row] = harness.rows("SELECT next_attempt_at, updated_at FROM deliveries")
            waited = (_utc(row.next_attempt_at) - _utc(row.updated_at)).total_seconds()
            assert waited == 45  # Retry-After, longer than the first backoff (10 s), shorter than the cap (100 s)
            assert set(row.status for row in items(harness).values()) == {"pending"}  # nothing recorded per item
            for _ in range(2):
                harness.clock.advance(100)
                result = deliverer(harness).run_once()
            assert result is not None and result.status == "dead"
            assert len(server.requests) == 3
        finally:
            harness.close()


def _utc(value: Any) -> dt.datetime:
    value = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def test_a_destination_that_is_down_is_retried_then_dead_lettered(tmp_path: Path, template: Dataset) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    harness = web_harness(tmp_path, f"http://127.0.0.1:{port}/dicom-web")
    try:
        prepare(harness, template)
        statuses = []
        for _ in range(3):
            result = deliverer(harness).run_once()
            assert result is not None and "connection refused" in (result.reason or "")
            statuses.append(result.status)
            harness.clock.advance(100)
        assert statuses == ["pending", "pending", "dead"]
        check = echo_destination(harness.settings, "web")
        assert not check.ok and check.check == "HTTP" and "connection refused" in check.message
    finally:
        harness.close()


def test_oauth2_client_credentials_token_is_fetched_once_cached_and_renewed_after_a_401(
    tmp_path: Path, template: Dataset
) -> None:
    secret = tmp_path / "client-secret"
    secret.write_text("very-secret\n", encoding="utf-8")
    with StowServer(client=("gazex", "very-secret")) as server:
        auth = {
            "type": "oauth2",
            "token_url": server.token_url,
            "client_id": "gazex",
            "client_secret_file": str(secret),
            "scope": "dicomweb.write",
        }
        harness = web_harness(tmp_path, server.base_url, authentication=auth)
        try:
            sender = StowSender()
            uids = prepare(harness, template)
            result = deliverer(harness, sender).run_once()
            assert result is not None and result.status == "delivered"
            assert server.tokens_issued == 1 and server.token_requests[0]["scope"] == ["dicomweb.write"]
            assert server.requests[0].headers["Authorization"] == "Bearer token-1"
            check = echo_destination(harness.settings, "web")  # its own token cache: asks once more
            assert check.ok and check.status == 200 and "QIDO-RS GET studies?limit=1" in check.message
            # a second study: the cached token is used, no new one is asked for
            server.tokens_issued = 0
            server.bearer = "token-1"
            prepare(harness, template)
            result = deliverer(harness, sender).run_once()
            assert result is not None and result.status == "delivered" and server.tokens_issued == 0
            # the server revokes it: 401, the token is dropped, the retry asks for a new one
            server.bearer = "revoked"
            prepare(harness, template)
            result = deliverer(harness, sender).run_once()
            assert (
                result is not None and result.status == "pending" and "refused our credentials" in (result.reason or "")
            )
            harness.clock.advance(10)
            result = deliverer(harness, sender).run_once()
            assert result is not None and result.status == "delivered" and server.tokens_issued == 1
            assert len({uid for r in server.requests for uid in r.sop_instance_uids}) == 3 * len(uids)
            # a wrong client secret: the token endpoint's refusal is the delivery's reason
            secret.write_text("wrong", encoding="utf-8")
            prepare(harness, template)
            result = deliverer(harness, StowSender()).run_once()
            assert result is not None and result.status == "pending"
            assert "gave no access token: HTTP 401 (invalid_client)" in (result.reason or "")
            assert "wrong" not in (result.reason or "")
        finally:
            harness.close()


def test_https_checks_the_servers_certificate_and_presents_ours(tmp_path: Path, template: Dataset) -> None:
    import ssl

    from tests.conftest import require_tool
    from tests.ingest_support import make_pki

    pki = make_pki(require_tool("openssl"), tmp_path / "pki")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca))
    context.load_cert_chain(str(pki.server_cert), str(pki.server_key))
    context.verify_mode = ssl.CERT_REQUIRED  # mutual TLS: the destination wants our certificate
    ours = {"certificate": str(pki.client_cert), "private_key": str(pki.client_key)}
    cases = [
        ("trusted, with our certificate", {"ca_certificates": str(pki.ca), **ours}, "delivered", ""),
        ("the system's CAs do not sign it", ours, "pending", "TLS: self-signed certificate in certificate chain"),
        ("no client certificate", {"ca_certificates": str(pki.ca)}, "pending", "TLS"),
        ("a stranger's certificate", {"ca_certificates": str(pki.ca), "certificate": str(pki.stranger_cert),
                                      "private_key": str(pki.stranger_key)}, "pending", "TLS"),
    ]  # fmt: skip
    with StowServer(tls=context) as server:
        assert server.base_url.startswith("https://127.0.0.1:")
        for index, (case, tls, status, reason) in enumerate(cases):
            harness = web_harness(tmp_path / f"case{index}", server.base_url, tls=tls)
            try:
                uids = prepare(harness, template)
                result = deliverer(harness).run_once()
                assert result is not None and result.status == status, (case, result)
                assert reason in (result.reason or ""), (case, result.reason)
                if status == "delivered":
                    assert sorted(server.requests[-1].sop_instance_uids) == sorted(uids)
            finally:
                harness.close()
    assert len(server.requests) == 1  # only the trusted, mutually authenticated case got through
