"""Every audit message the gateway writes is valid against the DICOM audit message schema (PS3.15 A.5.1)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import pytest
from lxml import etree

from gateway.audit import messages as m
from tests.gateway.audit.support import (
    CR,
    DX,
    FIND,
    IDENTIFIER,
    PATIENT_A,
    QIDO_URL,
    SR,
    STUDY_A,
    WHEN,
    assert_valid,
    schema,
)

SOURCE = m.AuditSource("gazex@gateway.example.org", "General Hospital")
US = m.Participant("4242", False, (), "AETITLES=GAZEX", "gazex", "gateway.example.org")
MODALITY = m.Participant("MODALITY1", True, (), "AETITLES=MODALITY1", None, "127.0.0.1")


def _application_start() -> bytes:
    us = m.Participant("4242", False, (m.ROLE_APPLICATION,), "AETITLES=GAZEX", "gazex", "gateway.example.org")
    return m.encode(m.application_activity(started=True, application=us, source=SOURCE, when=WHEN))


def _application_stop() -> bytes:
    us = m.Participant("4242", False, (m.ROLE_APPLICATION,), user_name="gazex")
    return m.encode(m.application_activity(started=False, application=us, source=m.AuditSource("gazex@h"), when=WHEN))


def _association_accepted() -> bytes:
    message = m.node_authentication(
        accepted=True,
        caller=MODALITY,
        reporter=US,
        calling_ae_title="MODALITY1",
        peer_address="127.0.0.1",
        source=SOURCE,
        when=WHEN,
    )
    return m.encode(message)


def _association_rejected() -> bytes:
    message = m.node_authentication(
        accepted=False,
        caller=MODALITY,
        reporter=US,
        calling_ae_title="MODALITY1",
        peer_address="127.0.0.1",
        source=SOURCE,
        when=WHEN,
        outcome=m.SERIOUS_FAILURE,
        description="association rejected: unknown_caller (MODALITY1 at 127.0.0.1 is not an allowed caller)",
    )
    return m.encode(message)


def _instances_received() -> bytes:
    message = m.instances_transferred(
        action="C",
        outcome=m.SUCCESS,
        source_participant=m.Participant("MODALITY1", True, (m.ROLE_SOURCE,), address="127.0.0.1"),
        destination_participant=m.Participant("4242", False, (m.ROLE_DESTINATION,), "AETITLES=GAZEX"),
        study_instance_uid=STUDY_A,
        sop_classes=m.count_sop_classes([CR, CR, DX]),
        patient_id=PATIENT_A,
        source=SOURCE,
        when=WHEN,
    )
    return m.encode(message)


def _results_exported() -> bytes:
    message = m.instances_transferred(
        action="R",
        outcome=m.MINOR_FAILURE,
        source_participant=m.Participant("4242", True, (m.ROLE_SOURCE,), "AETITLES=GAZEX"),
        destination_participant=m.Participant(
            "ARCHIVE", False, (m.ROLE_DESTINATION,), user_name="pacs", address="pacs.example.org"
        ),
        study_instance_uid=STUDY_A,
        sop_classes=m.group_instances([SR, SR], [f"{STUDY_A}.9.1", f"{STUDY_A}.9.2"]),
        patient_id=PATIENT_A,
        source=SOURCE,
        when=WHEN,
        description="delivery 7 to pacs, attempt 1: retry",
    )
    return m.encode(message)


def _configuration_changed() -> bytes:
    message = m.software_configuration(
        actor=m.Participant("admin", True, address="192.0.2.10"),
        reporter=US,
        revision=3,
        summary="added allowed caller MODALITY2",
        before={"dicom": {"allowed_callers": []}},
        after={"dicom": {"allowed_callers": [{"ae_title": "MODALITY2"}]}},
        source=SOURCE,
        when=WHEN,
    )
    return m.encode(message)


def _query(outcome: int, *, url: str | None = None) -> Callable[[], bytes]:
    def build() -> bytes:
        us = m.Participant("4242", True, (m.ROLE_SOURCE,), "AETITLES=GAZEX", "gazex", "gateway.example.org")
        if url is None:
            archive = m.Participant("ARCHIVE", False, (m.ROLE_DESTINATION,), "AETITLES=ARCHIVE", "pacs", "192.0.2.7")
            asked = m.dimse_query_object(FIND, IDENTIFIER, "1.2.840.10008.1.2")
        else:
            archive = m.Participant("pacs.example.org", False, (m.ROLE_DESTINATION,), None, "web", "pacs.example.org")
            asked = m.url_query_object(url)
        description = None if outcome == m.SUCCESS else "query of source pacs: refused (C-FIND refused with 0xC000)"
        message = m.query(
            outcome=outcome,
            requestor=us,
            responder=archive,
            query_object=asked,
            source=SOURCE,
            when=WHEN,
            description=description,
        )
        return m.encode(message)

    return build


def _login(success: bool) -> Callable[[], bytes]:
    def build() -> bytes:
        message = m.user_authentication(
            login=True,
            success=success,
            user=m.Participant("admin", True, address="::1"),
            node=US,
            source=SOURCE,
            when=WHEN,
            description="password authentication " + ("succeeded" if success else "failed"),
        )
        return m.encode(message)

    return build


def _logout() -> bytes:
    user = m.Participant("admin", True, address="127.0.0.1")
    return m.encode(m.user_authentication(login=False, success=True, user=user, node=US, source=SOURCE, when=WHEN))


KINDS: dict[str, Callable[[], bytes]] = {
    "application start": _application_start,
    "application stop": _application_stop,
    "association accepted": _association_accepted,
    "association rejected": _association_rejected,
    "instances received": _instances_received,
    "results exported": _results_exported,
    "configuration changed": _configuration_changed,
    "login succeeded": _login(True),
    "login failed": _login(False),
    "logout": _logout,
    "query (C-FIND)": _query(m.SUCCESS),
    "query (C-FIND) refused": _query(m.SERIOUS_FAILURE),
    "query (QIDO-RS)": _query(m.SUCCESS, url=QIDO_URL),
    "query (QIDO-RS) failed": _query(m.MINOR_FAILURE, url=QIDO_URL),
}

#: (EventID, EventTypeCode or None, EventActionCode) of each kind: the mapping docs/monitoring.md documents.
EXPECTED = {
    "application start": ("110100", "110120", "E"),
    "application stop": ("110100", "110121", "E"),
    "association accepted": ("110113", "110126", "E"),
    "association rejected": ("110113", "110126", "E"),
    "instances received": ("110104", None, "C"),
    "results exported": ("110104", None, "R"),
    "configuration changed": ("110113", "110131", "E"),
    "login succeeded": ("110114", "110122", "E"),
    "login failed": ("110114", "110122", "E"),
    "logout": ("110114", "110123", "E"),
    "query (C-FIND)": ("110112", None, "E"),
    "query (C-FIND) refused": ("110112", None, "E"),
    "query (QIDO-RS)": ("110112", None, "E"),
    "query (QIDO-RS) failed": ("110112", None, "E"),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_message_kind_is_valid_against_the_schema(kind: str) -> None:
    encoded = KINDS[kind]()
    assert b"\n" not in encoded
    root = assert_valid(encoded)
    event_id, event_type, action = EXPECTED[kind]
    identification = root.find("EventIdentification")
    assert identification is not None
    assert identification.find("EventID").get("csd-code") == event_id
    assert identification.find("EventID").get("codeSystemName") == "DCM"
    types = [code.get("csd-code") for code in identification.findall("EventTypeCode")]
    assert types == ([event_type] if event_type else [])
    assert identification.get("EventActionCode") == action
    assert identification.get("EventDateTime") == "2025-03-04T05:06:07.890Z"
    assert sum(p.get("UserIsRequestor") == "true" for p in root.findall("ActiveParticipant")) <= 1


def test_instances_transferred_names_study_sop_classes_counts_and_patient() -> None:
    root = assert_valid(_instances_received())
    roles = {p.find("RoleIDCode").get("csd-code"): p for p in root.findall("ActiveParticipant")}
    assert roles["110153"].get("UserID") == "MODALITY1"
    assert roles["110153"].get("UserIsRequestor") == "true"
    assert roles["110153"].get("NetworkAccessPointID") == "127.0.0.1"
    assert roles["110153"].get("NetworkAccessPointTypeCode") == "2"
    assert roles["110152"].get("UserIsRequestor") == "false"
    study, patient = root.findall("ParticipantObjectIdentification")
    assert study.get("ParticipantObjectID") == STUDY_A
    assert (study.get("ParticipantObjectTypeCode"), study.get("ParticipantObjectTypeCodeRole")) == ("2", "3")
    assert study.find("ParticipantObjectIDTypeCode").get("csd-code") == "110180"
    counts = {e.get("UID"): e.get("NumberOfInstances") for e in study.iter("SOPClass")}
    assert counts == {CR: "2", DX: "1"}
    assert patient.get("ParticipantObjectID") == PATIENT_A
    assert (patient.get("ParticipantObjectTypeCode"), patient.get("ParticipantObjectTypeCodeRole")) == ("1", "1")
    assert patient.find("ParticipantObjectIDTypeCode").get("csd-code") == "2"


def test_exported_results_list_their_sop_instances() -> None:
    root = assert_valid(_results_exported())
    assert root.find("EventIdentification").get("EventOutcomeIndicator") == "4"
    assert root.findtext("EventIdentification/EventOutcomeDescription") == "delivery 7 to pacs, attempt 1: retry"
    destination = next(p for p in root.findall("ActiveParticipant") if p.find("RoleIDCode").get("csd-code") == "110152")
    assert (destination.get("UserID"), destination.get("UserName")) == ("ARCHIVE", "pacs")
    assert destination.get("NetworkAccessPointTypeCode") == "1"
    sop_class = root.find("ParticipantObjectIdentification/ParticipantObjectDescription/SOPClass")
    assert sop_class.get("UID") == SR
    assert sop_class.get("NumberOfInstances") == "2"
    assert [i.get("UID") for i in sop_class.findall("Instance")] == [f"{STUDY_A}.9.1", f"{STUDY_A}.9.2"]


def test_a_c_find_query_names_the_information_model_the_identifier_as_encoded_and_its_transfer_syntax() -> None:
    root = assert_valid(_query(m.SUCCESS)())
    assert root.find("EventIdentification").get("EventOutcomeIndicator") == "0"
    roles = {p.find("RoleIDCode").get("csd-code"): p for p in root.findall("ActiveParticipant")}
    assert set(roles) == {"110153", "110152"}
    assert (roles["110153"].get("UserIsRequestor"), roles["110153"].get("AlternativeUserID")) == (
        "true",
        "AETITLES=GAZEX",
    )
    assert (roles["110152"].get("UserIsRequestor"), roles["110152"].get("UserID")) == ("false", "ARCHIVE")
    assert roles["110152"].get("NetworkAccessPointID") == "192.0.2.7"
    [asked] = root.findall("ParticipantObjectIdentification")  # the query only: no patient participant
    assert asked.get("ParticipantObjectID") == FIND
    assert (asked.get("ParticipantObjectTypeCode"), asked.get("ParticipantObjectTypeCodeRole")) == ("2", "3")
    code = asked.find("ParticipantObjectIDTypeCode")
    assert (code.get("csd-code"), code.get("codeSystemName"), code.get("originalText")) == (
        "110181",
        "DCM",
        "SOP Class UID",
    )
    assert asked.find("ParticipantObjectName") is None
    assert base64.b64decode(asked.findtext("ParticipantObjectQuery")) == IDENTIFIER
    details = {d.get("type"): base64.b64decode(d.get("value")) for d in asked.findall("ParticipantObjectDetail")}
    assert details == {"TransferSyntax": b"1.2.840.10008.1.2"}


def test_a_qido_rs_query_carries_the_request_url_as_the_query() -> None:
    root = assert_valid(_query(m.MINOR_FAILURE, url=QIDO_URL)())
    assert root.find("EventIdentification").get("EventOutcomeIndicator") == "4"
    [asked] = root.findall("ParticipantObjectIdentification")
    assert asked.get("ParticipantObjectID") == "https://pacs.example.org/dicom-web/studies"
    assert asked.find("ParticipantObjectIDTypeCode").get("csd-code") == "12"  # RFC-3881 URI
    assert asked.find("ParticipantObjectIDTypeCode").get("codeSystemName") == "RFC-3881"
    assert base64.b64decode(asked.findtext("ParticipantObjectQuery")).decode() == QIDO_URL
    [detail] = asked.findall("ParticipantObjectDetail")
    assert (detail.get("type"), base64.b64decode(detail.get("value"))) == ("QueryEncoding", b"UTF-8")


def test_configuration_change_records_before_and_after() -> None:
    root = assert_valid(_configuration_changed())
    details = {d.get("type"): base64.b64decode(d.get("value")) for d in root.iter("ParticipantObjectDetail")}
    assert details["Alert Description"] == b"added allowed caller MODALITY2"
    assert json.loads(details["Before"]) == {"dicom": {"allowed_callers": []}}
    assert json.loads(details["After"]) == {"dicom": {"allowed_callers": [{"ae_title": "MODALITY2"}]}}
    actor = root.find("ActiveParticipant[@UserIsRequestor='true']")
    assert (actor.get("UserID"), actor.get("NetworkAccessPointID")) == ("admin", "192.0.2.10")


def test_a_newline_in_free_text_stays_on_one_line_and_round_trips() -> None:
    message = m.user_authentication(
        login=True,
        success=False,
        user=m.Participant("eve\nforged", True, address="127.0.0.1"),
        node=US,
        source=SOURCE,
        when=WHEN,
        description="line one\r\nline two <b>&",
    )
    encoded = m.encode(message)
    assert b"\n" not in encoded and b"\r" not in encoded
    root = assert_valid(encoded)
    assert root.findtext("EventIdentification/EventOutcomeDescription") == "line one\r\nline two <b>&"
    assert root.find("ActiveParticipant").get("UserID") == "eve\nforged"


# --- negative controls: the schema does reject what it should -----------------------------------


def _drop(xpath: str) -> Callable[[etree._Element], None]:
    def mutate(root: etree._Element) -> None:
        for element in root.xpath(xpath):
            if isinstance(element, etree._Element):
                element.getparent().remove(element)
            else:  # an attribute
                element.getparent().attrib.pop(element.attrname)

    return mutate


def _set(xpath: str, name: str, value: str) -> Callable[[etree._Element], None]:
    def mutate(root: etree._Element) -> None:
        for element in root.xpath(xpath):
            element.set(name, value)

    return mutate


def _swap_first_two_children(root: etree._Element) -> None:
    first, second = root[0], root[1]
    root.remove(second)
    root.insert(0, second)
    assert root[1] is first


NEGATIVE = {
    "no EventIdentification": _drop("/AuditMessage/EventIdentification"),
    "no EventID": _drop("//EventID"),
    "no EventDateTime": _drop("//EventIdentification/@EventDateTime"),
    "no EventOutcomeIndicator": _drop("//EventIdentification/@EventOutcomeIndicator"),
    "outcome 3": _set("//EventIdentification", "EventOutcomeIndicator", "3"),
    "action X": _set("//EventIdentification", "EventActionCode", "X"),
    "local time without date": _set("//EventIdentification", "EventDateTime", "05:06:07"),
    "no ActiveParticipant": _drop("/AuditMessage/ActiveParticipant"),
    "no UserID": _drop("//ActiveParticipant/@UserID"),
    "no UserIsRequestor": _drop("//ActiveParticipant/@UserIsRequestor"),
    "UserIsRequestor yes": _set("//ActiveParticipant", "UserIsRequestor", "yes"),
    "no AuditSourceIdentification": _drop("/AuditMessage/AuditSourceIdentification"),
    "no AuditSourceID": _drop("//AuditSourceIdentification/@AuditSourceID"),
    "no ParticipantObjectID": _drop("//ParticipantObjectIdentification/@ParticipantObjectID"),
    "no ParticipantObjectIDTypeCode": _drop("//ParticipantObjectIDTypeCode"),
    "no ParticipantObjectName": _drop("//ParticipantObjectName"),
    "code without originalText": _drop("//EventID/@originalText"),
    "NumberOfInstances not a number": _set("//SOPClass", "NumberOfInstances", "two"),
    "participant before event": _swap_first_two_children,
    "an unknown element": lambda root: root.append(etree.Element("PatientName")),
}


@pytest.mark.parametrize("case", sorted(NEGATIVE))
def test_the_schema_rejects_a_broken_message(case: str) -> None:
    root = etree.fromstring(_instances_received())
    assert schema().validate(root)
    NEGATIVE[case](root)
    assert not schema().validate(root), case


def test_builders_refuse_what_the_standard_forbids() -> None:
    with pytest.raises(ValueError, match="requestor"):
        m.build(m.SECURITY_ALERT, action="E", outcome=0, when=WHEN, participants=(MODALITY, MODALITY), source=SOURCE)
    with pytest.raises(ValueError, match="outcome"):
        m.build(m.SECURITY_ALERT, action="E", outcome=2, when=WHEN, participants=(US,), source=SOURCE)
    with pytest.raises(ValueError, match="timezone"):
        m.build(
            m.SECURITY_ALERT, action="E", outcome=0, when=WHEN.replace(tzinfo=None), participants=(US,), source=SOURCE
        )
    us = m.Participant("4242", True, (m.ROLE_SOURCE,))
    archive = m.Participant("ARCHIVE", False, (m.ROLE_DESTINATION,))
    asked = m.dimse_query_object(FIND, IDENTIFIER, "1.2.840.10008.1.2")
    with pytest.raises(ValueError, match="Source Role ID"):
        m.query(outcome=0, requestor=archive, responder=us, query_object=asked, source=SOURCE, when=WHEN)
    with pytest.raises(ValueError, match="is the requestor"):
        m.query(
            outcome=0,
            requestor=m.Participant("4242", False, (m.ROLE_SOURCE,)),
            responder=archive,
            query_object=asked,
            source=SOURCE,
            when=WHEN,
        )
    with pytest.raises(ValueError, match="carries the query"):
        m.query(
            outcome=0, requestor=us, responder=archive, query_object=m.patient_object("P"), source=SOURCE, when=WHEN
        )
    with pytest.raises(ValueError, match="a name or a query"):
        m.ParticipantObject("1.2", m.SOP_CLASS_UID, "a name", query=b"")
    with pytest.raises(ValueError, match="Source Role ID"):
        m.instances_transferred(
            action="C",
            outcome=0,
            source_participant=MODALITY,
            destination_participant=US,
            study_instance_uid=STUDY_A,
            sop_classes=(),
            patient_id="",
            source=SOURCE,
            when=WHEN,
        )
