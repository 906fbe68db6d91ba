"""AuditTrail: the gateway's events in, DICOM audit messages out (file and syslog), and no PHI beyond the Patient ID."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree

from gateway.audit import AuditFile, AuditTrail, SyslogSender
from gateway.config.settings import Settings
from gateway.events import AssociationInfo, Observers
from tests.gateway.audit.collector import Certificates, Collector, make_certificates, server_context
from tests.gateway.audit.support import (
    CR,
    DX,
    FIND,
    IDENTIFIER,
    IMPLICIT_VR_LITTLE_ENDIAN,
    PATIENT_A,
    PATIENT_B,
    PATIENT_NAME,
    QIDO_URL,
    SR,
    STUDY_A,
    STUDY_B,
    WHEN,
    assert_valid,
    c_find_query,
    caller,
    configuration_change,
    delivery,
    qido_query,
    received,
)


def _settings(tmp_path: Path, **audit: object) -> Settings:
    return Settings.model_validate(
        {"storage": {"data_dir": str(tmp_path / "data")}, "dicom": {"ae_titles": ["GAZEX", "GAZEX2"]}, "audit": audit}
    )


@pytest.fixture
def trail(tmp_path: Path) -> Iterator[AuditTrail]:
    audit = AuditTrail.from_settings(_settings(tmp_path), host_id="gw.example.org", clock=lambda: WHEN)
    yield audit
    audit.close()


def _messages(path: Path) -> list[etree._Element]:
    return [assert_valid(line) for line in path.read_bytes().splitlines()]


def _one(root: etree._Element, xpath: str) -> etree._Element:
    (found,) = root.xpath(xpath)
    assert isinstance(found, etree._Element)
    return found


def _event(root: etree._Element) -> tuple[str | None, list[str | None], str | None, str | None]:
    identification = root.find("EventIdentification")
    assert identification is not None
    return (
        identification.find("EventID").get("csd-code"),
        [code.get("csd-code") for code in identification.findall("EventTypeCode")],
        identification.get("EventActionCode"),
        identification.get("EventOutcomeIndicator"),
    )


def test_a_whole_day_of_events_becomes_valid_messages_in_the_default_file(trail: AuditTrail, tmp_path: Path) -> None:
    association = caller()
    trail.application_activity(True)
    trail.association_accepted(association)
    for instance in received():
        trail.instance_stored(association, instance)  # per instance: nothing yet
    trail.association_ended(association, received())
    trail.association_rejected(
        AssociationInfo("STRANGER", "GAZEX", "192.0.2.99"), "unknown_caller", "not an allowed caller"
    )
    trail.association_rejected(association, "capacity", "too many associations")
    trail.delivery_finished(delivery(), "retry")
    trail.delivery_finished(delivery(), "delivered")
    trail.delivery_finished(delivery(), "dead")
    trail.configuration_changed(configuration_change())
    trail.user_login("admin", "192.0.2.10", True, "password")
    trail.user_login("mallory", "192.0.2.66", False, "password")
    trail.user_logout("admin", "192.0.2.10")
    trail.query_finished(c_find_query(), "answered", "")
    trail.query_finished(c_find_query(), "refused", "source pacs (ARCHIVE@192.0.2.7:104): C-FIND refused with 0xC000")
    trail.query_finished(qido_query(), "failed", "source web: QIDO-RS /studies answered HTTP 500 Internal Server Error")
    trail.application_activity(False)

    path = tmp_path / "data" / "audit" / "audit.log"
    messages = _messages(path)
    assert [_event(root) for root in messages] == [
        ("110100", ["110120"], "E", "0"),
        ("110113", ["110126"], "E", "0"),
        ("110104", [], "C", "0"),  # study A
        ("110104", [], "C", "0"),  # study B
        ("110113", ["110126"], "E", "8"),
        ("110113", ["110126"], "E", "4"),
        ("110104", [], "R", "4"),
        ("110104", [], "R", "0"),
        ("110104", [], "R", "8"),
        ("110113", ["110131"], "E", "0"),
        ("110114", ["110122"], "E", "0"),
        ("110114", ["110122"], "E", "4"),
        ("110114", ["110123"], "E", "0"),
        ("110112", [], "E", "0"),
        ("110112", [], "E", "8"),
        ("110112", [], "E", "4"),
        ("110100", ["110121"], "E", "0"),
    ]
    assert trail.written == len(messages) and trail.failures == 0
    for root in messages:
        source = root.find("AuditSourceIdentification")
        assert source.get("AuditSourceID") == "gazex@gw.example.org"


def test_instances_received_are_one_message_per_study_with_caller_counts_and_patient(
    trail: AuditTrail, tmp_path: Path
) -> None:
    trail.association_ended(caller(), received())
    study_a, study_b = _messages(tmp_path / "data" / "audit" / "audit.log")

    source = _one(study_a, "ActiveParticipant[RoleIDCode/@csd-code='110153']")
    assert (source.get("UserID"), source.get("NetworkAccessPointID"), source.get("UserIsRequestor")) == (
        "MODALITY1",
        "127.0.0.1",
        "true",
    )
    destination = _one(study_a, "ActiveParticipant[RoleIDCode/@csd-code='110152']")
    assert destination.get("AlternativeUserID") == "AETITLES=GAZEX;GAZEX2"
    assert destination.get("NetworkAccessPointID") == "gw.example.org"

    def objects(root: etree._Element) -> dict[str, etree._Element]:
        return {
            o.find("ParticipantObjectIDTypeCode").get("csd-code"): o
            for o in root.findall("ParticipantObjectIdentification")
        }

    a, b = objects(study_a), objects(study_b)
    assert a["110180"].get("ParticipantObjectID") == STUDY_A
    assert {s.get("UID"): s.get("NumberOfInstances") for s in a["110180"].iter("SOPClass")} == {CR: "2", DX: "1"}
    assert a["2"].get("ParticipantObjectID") == PATIENT_A
    assert b["110180"].get("ParticipantObjectID") == STUDY_B
    assert {s.get("UID"): s.get("NumberOfInstances") for s in b["110180"].iter("SOPClass")} == {CR: "1"}
    assert b["2"].get("ParticipantObjectID") == PATIENT_B


def test_an_association_that_stored_nothing_writes_no_transfer(trail: AuditTrail, tmp_path: Path) -> None:
    trail.association_ended(caller(), [])
    assert (tmp_path / "data" / "audit" / "audit.log").read_bytes() == b""


def test_exported_results_name_the_destination_and_instances(trail: AuditTrail, tmp_path: Path) -> None:
    trail.delivery_finished(delivery(), "delivered")
    (root,) = _messages(tmp_path / "data" / "audit" / "audit.log")
    source = _one(root, "ActiveParticipant[RoleIDCode/@csd-code='110153']")
    assert source.get("UserIsRequestor") == "true"
    assert source.get("AlternativeUserID").startswith("AETITLES=GAZEX")
    destination = _one(root, "ActiveParticipant[RoleIDCode/@csd-code='110152']")
    assert (destination.get("UserID"), destination.get("UserName"), destination.get("NetworkAccessPointID")) == (
        "ARCHIVE",
        "pacs",
        "127.0.0.1",
    )
    sop_class = root.find(".//SOPClass")
    assert (sop_class.get("UID"), sop_class.get("NumberOfInstances")) == (SR, "2")
    assert [i.get("UID") for i in sop_class.findall("Instance")] == [f"{STUDY_A}.9.1", f"{STUDY_A}.9.2"]
    assert (
        root.find("ParticipantObjectIdentification[@ParticipantObjectTypeCodeRole='1']").get("ParticipantObjectID")
        == PATIENT_A
    )
    assert root.findtext("EventIdentification/EventOutcomeDescription") == "delivery 7 to pacs, attempt 1: delivered"


def test_a_query_names_us_as_requestor_the_source_queried_and_the_query(trail: AuditTrail, tmp_path: Path) -> None:
    trail.query_finished(c_find_query(), "refused", "source pacs: C-FIND refused with 0xC000")
    trail.query_finished(qido_query(), "answered", "")
    c_find, qido = _messages(tmp_path / "data" / "audit" / "audit.log")

    us = _one(c_find, "ActiveParticipant[RoleIDCode/@csd-code='110153']")
    assert (us.get("UserIsRequestor"), us.get("NetworkAccessPointID")) == ("true", "gw.example.org")
    assert us.get("AlternativeUserID") == "AETITLES=GAZEXQR;GAZEX;GAZEX2"  # the calling AE title of the C-FIND first
    archive = _one(c_find, "ActiveParticipant[RoleIDCode/@csd-code='110152']")
    assert (archive.get("UserID"), archive.get("UserName"), archive.get("UserIsRequestor")) == (
        "ARCHIVE",
        "pacs",
        "false",
    )
    assert (archive.get("NetworkAccessPointID"), archive.get("NetworkAccessPointTypeCode")) == ("192.0.2.7", "2")
    assert c_find.findtext("EventIdentification/EventOutcomeDescription") == (
        "query of source pacs: refused (source pacs: C-FIND refused with 0xC000)"
    )
    [asked] = c_find.findall("ParticipantObjectIdentification")
    assert asked.get("ParticipantObjectID") == FIND
    assert asked.find("ParticipantObjectIDTypeCode").get("csd-code") == "110181"
    assert base64.b64decode(asked.findtext("ParticipantObjectQuery")) == IDENTIFIER
    detail = asked.find("ParticipantObjectDetail")
    assert (detail.get("type"), base64.b64decode(detail.get("value")).decode()) == (
        "TransferSyntax",
        IMPLICIT_VR_LITTLE_ENDIAN,
    )

    assert _event(qido) == ("110112", [], "E", "0")
    web = _one(qido, "ActiveParticipant[RoleIDCode/@csd-code='110152']")
    assert (web.get("UserID"), web.get("UserName"), web.get("NetworkAccessPointTypeCode")) == (
        "pacs.example.org",
        "web",
        "1",
    )
    assert _one(qido, "ActiveParticipant[@UserIsRequestor='true']").get("AlternativeUserID") == "AETITLES=GAZEX;GAZEX2"
    [asked] = qido.findall("ParticipantObjectIdentification")
    assert asked.find("ParticipantObjectIDTypeCode").get("csd-code") == "12"
    assert base64.b64decode(asked.findtext("ParticipantObjectQuery")).decode() == QIDO_URL


def test_configuration_change_names_who_and_before_after(trail: AuditTrail, tmp_path: Path) -> None:
    trail.configuration_changed(configuration_change())
    (root,) = _messages(tmp_path / "data" / "audit" / "audit.log")
    actor = root.find("ActiveParticipant[@UserIsRequestor='true']")
    assert (actor.get("UserID"), actor.get("NetworkAccessPointID"), actor.get("NetworkAccessPointTypeCode")) == (
        "admin",
        "192.0.2.10",
        "2",
    )
    details = {d.get("type"): base64.b64decode(d.get("value")) for d in root.iter("ParticipantObjectDetail")}
    assert b"10.0.0.0/8" in details["Before"] and b"MODALITY2" in details["After"]
    assert (
        root.find("ParticipantObjectIdentification").get("ParticipantObjectID") == "urn:gazex:configuration:revision:3"
    )


def test_no_phi_beyond_the_patient_id_in_the_trail_or_the_logs(
    trail: AuditTrail, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        association = caller()
        trail.association_accepted(association)
        trail.association_ended(association, received())
        trail.delivery_finished(delivery(), "dead")
    text = (tmp_path / "data" / "audit" / "audit.log").read_text()
    assert PATIENT_NAME not in text
    for root in _messages(tmp_path / "data" / "audit" / "audit.log"):
        for obj in root.findall("ParticipantObjectIdentification"):
            if obj.get("ParticipantObjectTypeCode") == "1":  # a person: the patient, by ID only
                assert obj.get("ParticipantObjectTypeCodeRole") == "1"
                assert obj.findtext("ParticipantObjectName") == obj.get("ParticipantObjectID")
                assert obj.find("ParticipantObjectDetail") is None
                assert obj.find("ParticipantObjectDescription") is None
        assert root.find(".//Accession") is None
    assert PATIENT_A not in caplog.text and PATIENT_B not in caplog.text


def test_a_failing_sink_never_reaches_the_caller(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    audit_file = AuditFile(tmp_path / "audit.log")

    class Broken:
        def write(self, message: bytes, outcome: int) -> None:
            raise OSError(28, "No space left on device", PATIENT_A)

        def close(self) -> None:
            pass

    audit = AuditTrail([Broken(), audit_file], ae_titles=["GAZEX"], host_id="gw", clock=lambda: WHEN)
    observers = Observers([audit])
    with caplog.at_level(logging.ERROR):
        observers.association_ended(caller(), received())
    assert audit.failures == 2 and audit.written == 2  # both studies reached the file
    assert len(_messages(tmp_path / "audit.log")) == 2
    assert "OSError" in caplog.text and PATIENT_A not in caplog.text
    audit.close()


def test_a_disabled_trail_writes_and_opens_nothing(tmp_path: Path) -> None:
    audit = AuditTrail.from_settings(_settings(tmp_path, enabled=False), host_id="gw")
    assert not audit.enabled and audit.sinks == ()
    audit.application_activity(True)
    audit.association_ended(caller(), received())
    audit.user_login("admin", "127.0.0.1", True, "password")
    audit.close()
    assert not (tmp_path / "data" / "audit").exists()


def test_the_configured_path_and_ae_title_are_used(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path, path=str(tmp_path / "elsewhere" / "trail.log"), enterprise_site_id="General Hospital"
    )
    audit = AuditTrail.from_settings(settings, ae_title="GAZEX2", host_id="gw", clock=lambda: WHEN)
    audit.application_activity(True)
    audit.close()
    (root,) = _messages(tmp_path / "elsewhere" / "trail.log")
    assert root.find("ActiveParticipant").get("AlternativeUserID") == "AETITLES=GAZEX2;GAZEX"
    assert root.find("AuditSourceIdentification").get("AuditEnterpriseSiteID") == "General Hospital"


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


def test_from_settings_with_syslog_sends_to_the_collector_and_the_file(
    tmp_path: Path, certificates: Certificates
) -> None:
    server = Collector(context=server_context(certificates))
    try:
        settings = _settings(
            tmp_path,
            syslog={"enabled": True, "host": "127.0.0.1", "port": server.port, "ca_certificates": str(certificates.ca)},
        )
        audit = AuditTrail.from_settings(settings, host_id="gw.example.org", clock=lambda: WHEN)
        assert [type(sink) for sink in audit.sinks] == [AuditFile, SyslogSender]
        audit.user_login("admin", "127.0.0.1", True, "password")
        audit.close()
        (frame,) = server.wait_for(1)
    finally:
        server.close()
    (line,) = (tmp_path / "data" / "audit" / "audit.log").read_bytes().splitlines()
    assert frame.endswith(b"\xef\xbb\xbf" + line)  # the same message, after the header and BOM
    assert b" gw.example.org gazex " in frame and b" DICOM+RFC3881 - " in frame


def test_collector_down_messages_still_reach_the_file(
    tmp_path: Path, certificates: Certificates, free_port: object
) -> None:
    port = free_port()  # type: ignore[operator]
    settings = _settings(
        tmp_path, syslog={"enabled": True, "host": "127.0.0.1", "port": port, "ca_certificates": str(certificates.ca)}
    )
    audit = AuditTrail.from_settings(settings, host_id="gw", clock=lambda: WHEN)
    sender = audit.sinks[1]
    assert isinstance(sender, SyslogSender)
    audit.association_accepted(caller())
    audit.association_ended(caller(), received())
    sender.close(timeout=0.2)
    audit.close()
    assert len(_messages(tmp_path / "data" / "audit" / "audit.log")) == 3
    assert sender.sent == 0 and sender.dropped == 3
