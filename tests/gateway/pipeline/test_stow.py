"""STOW-RS: reading the per-instance result of a response, the multipart body, and the settings of a
DICOMweb destination (pure: no sockets)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.config import ConfigError, load_settings
from gateway.config.edits import put_destination
from gateway.config.live import managed_document, settings_with
from gateway.config.pipeline import DicomwebDestination
from gateway.pipeline.sender import InstanceResult, SendError
from gateway.pipeline.states import acknowledged
from gateway.pipeline.stow import multipart_related, parse_retry_after, stow_results
from tests.gateway.pipeline.stow_support import dicom_json, failed, parts_of, referenced

A, B, C = "1.2.3.1", "1.2.3.2", "1.2.3.3"


def results(response: tuple[int, dict[str, str], bytes], uids: list[str] | None = None) -> list[InstanceResult]:
    status, headers, body = response
    return stow_results(status, headers.get("Content-Type", ""), body, uids or [A, B, C])


def test_200_every_instance_referenced_is_acknowledged() -> None:
    found = results(dicom_json(200, [referenced(A), referenced(B), referenced(C)], []))
    assert found == [InstanceResult(0x0000)] * 3


def test_202_partial_success_is_read_per_instance_with_warning_and_failure_reasons() -> None:
    found = results(dicom_json(202, [referenced(A), referenced(C, warning=0xB000)], [failed(B, 0xA900)]))
    assert found[0] == InstanceResult(0x0000)
    assert found[1] == InstanceResult(0xA900, "HTTP 202, failure reason 0xA900")
    assert found[2] == InstanceResult(0xB000)
    assert [acknowledged(r.status) for r in found if r.status is not None] == [True, False, True]


def test_409_every_instance_failed_and_a_failed_item_without_reason_is_a_processing_failure() -> None:
    no_reason = {"00081155": {"vr": "UI", "Value": [C]}}
    found = results(dicom_json(409, [], [failed(A, 0xC000), failed(B, 0xC122), no_reason]))
    assert [r.status for r in found] == [0xC000, 0xC122, 0x0110]
    assert not any(acknowledged(r.status) for r in found if r.status is not None)


def test_an_instance_the_response_does_not_mention_is_not_acknowledged() -> None:
    [a, b] = results(dicom_json(200, [referenced(A)], []), [A, B])
    assert a.status == 0 and b.status is None and "does not mention" in (b.reason or "")


def test_bodies_without_a_per_instance_result() -> None:
    assert results((200, {}, b"")) == [InstanceResult(0x0000)] * 3  # PS3.18: 200 means every instance stored
    for status in (202, 400, 409):
        found = results((status, {"Content-Type": "text/plain"}, b"conflict"))
        assert all(r.status is None and f"HTTP {status} without a per-instance result" == r.reason for r in found)


def test_a_dicom_xml_response_is_read_too() -> None:
    xml = f"""<?xml version="1.0" encoding="UTF-8"?>
<NativeDicomModel xmlns="http://dicom.nema.org/PS3.19/models/NativeDICOM">
  <DicomAttribute tag="00081199" vr="SQ" keyword="ReferencedSOPSequence">
    <Item number="1"><DicomAttribute tag="00081155" vr="UI"><Value number="1">{A}</Value></DicomAttribute></Item>
  </DicomAttribute>
  <DicomAttribute tag="00081198" vr="SQ" keyword="FailedSOPSequence">
    <Item number="1"><DicomAttribute tag="00081155" vr="UI"><Value number="1">{B}</Value></DicomAttribute>
      <DicomAttribute tag="00081197" vr="US"><Value number="1">43264</Value></DicomAttribute></Item>
  </DicomAttribute>
</NativeDicomModel>"""
    found = stow_results(202, "application/dicom+xml", xml.encode(), [A, B])
    assert [r.status for r in found] == [0x0000, 0xA900]


@pytest.mark.parametrize(
    ("status", "words"),
    [
        (500, "HTTP 500 from the STOW-RS service"),
        (503, "HTTP 503 from the STOW-RS service"),
        (429, "HTTP 429 from the STOW-RS service"),
        (401, "refused our credentials"),
        (403, "refused our credentials"),
        (404, "no STOW-RS service at this address; check base_url"),
        (413, "lower max_instances_per_request"),
        (302, "redirected us"),
    ],
)
def test_statuses_that_say_nothing_per_instance_are_a_send_error(status: int, words: str) -> None:
    with pytest.raises(SendError, match=words):
        stow_results(status, "application/dicom+json", b"", [A])


def test_retry_after_is_read_as_seconds_or_an_http_date() -> None:
    with pytest.raises(SendError) as raised:
        stow_results(503, "", b"", [A], retry_after="120")
    assert raised.value.retry_after == 120.0
    now = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Sun, 01 Mar 2026 12:01:30 GMT", now) == 90.0
    assert parse_retry_after("Sun, 01 Mar 2026 11:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon", now) is None and parse_retry_after(None) is None


def test_the_multipart_body_round_trips_through_the_standard_mime_parser() -> None:
    boundary_like = b"--gazex-" + b"0" * 32  # a part that looks like a boundary does not confuse it
    parts = [b"\x00\x01DICM\r\n--\r\n" + bytes(range(256)), boundary_like, b""]
    content_type, body = multipart_related(parts)
    assert content_type.startswith('multipart/related; type="application/dicom"; boundary=gazex-')
    assert parts_of(content_type, body) == parts


# -- settings -------------------------------------------------------------------------------


def web(tmp_path: Path, **values: Any) -> dict[str, Any]:
    return {"type": "dicomweb", "base_url": "https://pacs.example.org/dicom-web/", **values}


def secret(tmp_path: Path, name: str, value: str = "s3cret") -> str:
    path = tmp_path / name
    path.write_text(value + "\n", encoding="utf-8")
    return str(path)


def test_dicomweb_destinations_are_validated_per_authentication_type(tmp_path: Path) -> None:
    password = secret(tmp_path, "password")
    ok = {
        "none": web(tmp_path),
        "basic": web(tmp_path, authentication={"type": "basic", "username": "gazex", "password_file": password}),
        "bearer": web(tmp_path, authentication={"type": "bearer", "token_file": password}),
        "oauth2": web(
            tmp_path,
            authentication={
                "type": "oauth2",
                "token_url": "https://login.example.org/token",
                "client_id": "gazex",
                "client_secret_file": password,
                "scope": "dicomweb.write",
            },
        ),
    }
    settings = load_settings(overrides={"destinations": ok}, environ={})
    for name, destination in settings.destinations.items():
        assert isinstance(destination, DicomwebDestination) and destination.authentication.type == name
        assert destination.base_url == "https://pacs.example.org/dicom-web"  # the trailing slash is dropped
        assert (destination.host, destination.port, destination.max_instances_per_request) == (
            "pacs.example.org",
            443,
            10,
        )
    bad = [
        (web(tmp_path, authentication={"type": "basic", "username": "gazex"}), "needs password_file"),
        (
            web(tmp_path, authentication={"type": "bearer", "token_file": password, "username": "x"}),
            "does not use username",
        ),
        (web(tmp_path, authentication={"type": "bearer", "token_file": str(tmp_path / "nope")}), "token_file"),
        (web(tmp_path, base_url="ftp://pacs/dicom-web"), "not an http:// or https:// URL"),
        (web(tmp_path, max_instances_per_request=0), "max_instances_per_request"),
        (web(tmp_path, ae_title="PACS"), "destinations.w.ae_title: unknown key"),
        ({"type": "stow", "base_url": "http://pacs"}, "type must be dicom (C-STORE, the default) or dicomweb"),
    ]
    for values, words in bad:
        with pytest.raises(ConfigError, match=re.escape(words)):
            load_settings(overrides={"destinations": {"w": values}}, environ={})


def test_a_dicom_destination_needs_no_type_and_the_live_document_keeps_its_old_shape(tmp_path: Path) -> None:
    settings = load_settings(
        overrides={"destinations": {"archive": {"ae_title": "ARCHIVE", "host": "127.0.0.1", "port": 104}}}, environ={}
    )
    document = managed_document(settings)
    assert "type" not in document["destinations"]["archive"]
    body = web(tmp_path, authentication={"type": "bearer", "token_file": secret(tmp_path, "token")})
    changed = settings_with(settings, put_destination(document, "web", body))
    assert changed.destinations["archive"].type == "dicom" and changed.destinations["web"].type == "dicomweb"
    again = managed_document(changed)
    assert again["destinations"]["web"]["type"] == "dicomweb"
    assert json.loads(json.dumps(again)) == again  # JSON-able, as revisions are stored
    assert settings_with(settings, again).destinations == changed.destinations
