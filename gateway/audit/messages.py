"""DICOM audit messages (PS3.15 A.5): pure builders from the gateway's events to XML.

Every function here returns an ``lxml`` element that the DICOM Audit Message Schema (PS3.15
A.5.1) accepts, and :func:`encode` turns it into one line of UTF-8 bytes.  The mapping of
events to the standard's messages (A.5.3):

=================================  ==========================  ================================
gateway event                      message (EventID)           EventTypeCode / EventActionCode
=================================  ==========================  ================================
association accepted / rejected    Security Alert (110113)     Node Authentication (110126), E
instances received (per study)     DICOM Instances             -, C (we are the destination)
                                   Transferred (110104)
results exported (per delivery)    DICOM Instances             -, R (we are the source)
                                   Transferred (110104)
query sent to a pull source        Query (110112)              -, E (we are the requestor)
(each C-FIND, each QIDO-RS)
configuration changed              Security Alert (110113)     Software Configuration (110131), E
console login / logout             User Authentication         Login (110122) / Logout (110123), E
                                   (110114)
gateway started / stopped          Application Activity        Application Start (110120) /
                                   (110100)                    Application Stop (110121), E
=================================  ==========================  ================================

What is recorded of a patient is what the standard requires: the Patient ID, as the patient
participant object.  The patient's name and birth date are never written.  A Query message
carries the query itself, as the standard requires (ParticipantObjectQuery): a pull by
accession number has that accession number in it.
The schema (the version of PS3.15 A.5.1 that the tests validate against) requires each
participant object to carry a ParticipantObjectName or a ParticipantObjectQuery; for the
patient the name would be PHI, so the Patient ID stands in for it.
"""

from __future__ import annotations

import base64
import ipaddress
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from xml.etree import ElementTree as ET

# --- codes ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Code:
    """A coded value (csd-code, codeSystemName, originalText: the code meaning)."""

    value: str
    meaning: str
    scheme: str = "DCM"


# EventID (DCID 400 "Audit Event ID")
APPLICATION_ACTIVITY = Code("110100", "Application Activity")
DICOM_INSTANCES_TRANSFERRED = Code("110104", "DICOM Instances Transferred")
QUERY = Code("110112", "Query")
SECURITY_ALERT = Code("110113", "Security Alert")
USER_AUTHENTICATION = Code("110114", "User Authentication")

# EventTypeCode (DCID 401 "Audit Event Type Code", DCID 403 "Security Alert Type Code")
APPLICATION_START = Code("110120", "Application Start")
APPLICATION_STOP = Code("110121", "Application Stop")
LOGIN = Code("110122", "Login")
LOGOUT = Code("110123", "Logout")
NODE_AUTHENTICATION = Code("110126", "Node Authentication")
SOFTWARE_CONFIGURATION = Code("110131", "Software Configuration")

# RoleIDCode (DCID 402 "Audit Active Participant Role ID Code")
ROLE_APPLICATION = Code("110150", "Application")
ROLE_APPLICATION_LAUNCHER = Code("110151", "Application Launcher")
ROLE_DESTINATION = Code("110152", "Destination Role ID")
ROLE_SOURCE = Code("110153", "Source Role ID")

# ParticipantObjectIDTypeCode (DCID 404, and RFC 3881's own values)
STUDY_INSTANCE_UID = Code("110180", "Study Instance UID")
SOP_CLASS_UID = Code("110181", "SOP Class UID")
NODE_ID = Code("110182", "Node ID")
PATIENT_NUMBER = Code("2", "Patient Number", "RFC-3881")
URI = Code("12", "URI", "RFC-3881")

# EventOutcomeIndicator
SUCCESS = 0
MINOR_FAILURE = 4
SERIOUS_FAILURE = 8
MAJOR_FAILURE = 12
OUTCOMES = (SUCCESS, MINOR_FAILURE, SERIOUS_FAILURE, MAJOR_FAILURE)

# AuditSourceTypeCode 4: "Application Server process or thread"
APPLICATION_SERVER = "4"

#: ParticipantObjectTypeCode / ParticipantObjectTypeCodeRole values used here.
PERSON, SYSTEM_OBJECT = "1", "2"
ROLE_PATIENT, ROLE_REPORT, ROLE_SECURITY_RESOURCE = "1", "3", "13"
#: ParticipantObjectDataLifeCycle: origination (received), export.
LIFE_CYCLE_ORIGINATION, LIFE_CYCLE_EXPORT = "1", "10"


# --- the parts of a message ----------------------------------------------------------------------


def network_access_point_type(address: str) -> str:
    """NetworkAccessPointTypeCode: 2 for an IP address, 1 for a machine (DNS) name."""
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return "1"
    return "2"


@dataclass(frozen=True)
class Participant:
    """An ActiveParticipant: a person or process that took part in the event."""

    user_id: str
    requestor: bool
    roles: tuple[Code, ...] = ()
    alternative_user_id: str | None = None
    user_name: str | None = None
    address: str | None = None

    def __post_init__(self) -> None:
        if not self.user_id:
            raise ValueError('Argument "user_id" of an audit participant must not be empty')


@dataclass(frozen=True)
class AuditSource:
    """AuditSourceIdentification: the system that detected the event and wrote the message."""

    source_id: str
    enterprise_site_id: str | None = None

    def __post_init__(self) -> None:
        if not self.source_id:
            raise ValueError('Argument "source_id" of the audit source must not be empty')


@dataclass(frozen=True)
class SOPClassCount:
    """One SOPClass entry of a study's ParticipantObjectDescription."""

    sop_class_uid: str | None
    count: int
    instance_uids: tuple[str, ...] = ()


@dataclass(frozen=True)
class ParticipantObject:
    """A ParticipantObjectIdentification: a study, a patient, a node, a configuration, a query.

    It carries a ParticipantObjectName or, for a query, a ParticipantObjectQuery (the schema
    allows one of the two): give ``query`` and leave ``name`` empty.
    """

    object_id: str
    id_type: Code
    name: str
    type_code: str | None = None
    role: str | None = None
    life_cycle: str | None = None
    details: tuple[tuple[str, bytes], ...] = ()
    sop_classes: tuple[SOPClassCount, ...] = field(default=())
    query: bytes | None = None

    def __post_init__(self) -> None:
        if self.query is not None and self.name:
            raise ValueError("a participant object carries a name or a query, not both (PS3.15 A.5.1)")


def _timestamp(when: datetime) -> str:
    if when.tzinfo is None:
        raise ValueError('Argument "when" must be timezone-aware (EventDateTime is UTC, PS3.15 A.5.2.5)')
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _code(parent: ET.Element, tag: str, code: Code) -> None:
    ET.SubElement(parent, tag, {"csd-code": code.value, "codeSystemName": code.scheme, "originalText": code.meaning})


def _participant(message: ET.Element, participant: Participant) -> None:
    attributes = {"UserID": participant.user_id}
    if participant.alternative_user_id:
        attributes["AlternativeUserID"] = participant.alternative_user_id
    if participant.user_name:
        attributes["UserName"] = participant.user_name
    attributes["UserIsRequestor"] = "true" if participant.requestor else "false"
    if participant.address:
        attributes["NetworkAccessPointID"] = participant.address
        attributes["NetworkAccessPointTypeCode"] = network_access_point_type(participant.address)
    element = ET.SubElement(message, "ActiveParticipant", attributes)
    for role in participant.roles:
        _code(element, "RoleIDCode", role)


def _participant_object(message: ET.Element, obj: ParticipantObject) -> None:
    attributes = {"ParticipantObjectID": obj.object_id}
    if obj.type_code:
        attributes["ParticipantObjectTypeCode"] = obj.type_code
    if obj.role:
        attributes["ParticipantObjectTypeCodeRole"] = obj.role
    if obj.life_cycle:
        attributes["ParticipantObjectDataLifeCycle"] = obj.life_cycle
    element = ET.SubElement(message, "ParticipantObjectIdentification", attributes)
    _code(element, "ParticipantObjectIDTypeCode", obj.id_type)
    if obj.query is not None:
        ET.SubElement(element, "ParticipantObjectQuery").text = base64.b64encode(obj.query).decode("ascii")
    else:
        ET.SubElement(element, "ParticipantObjectName").text = obj.name
    for kind, value in obj.details:
        ET.SubElement(
            element, "ParticipantObjectDetail", {"type": kind, "value": base64.b64encode(value).decode("ascii")}
        )
    if obj.sop_classes:
        description = ET.SubElement(element, "ParticipantObjectDescription")
        for sop_class in obj.sop_classes:
            sop_attributes = {"NumberOfInstances": str(sop_class.count)}
            if sop_class.sop_class_uid:
                sop_attributes = {"UID": sop_class.sop_class_uid, **sop_attributes}
            sop_element = ET.SubElement(description, "SOPClass", sop_attributes)
            for uid in sop_class.instance_uids:
                ET.SubElement(sop_element, "Instance", {"UID": uid})


def build(
    event_id: Code,
    *,
    action: str,
    outcome: int,
    when: datetime,
    participants: Sequence[Participant],
    source: AuditSource,
    event_types: Sequence[Code] = (),
    outcome_description: str | None = None,
    objects: Sequence[ParticipantObject] = (),
) -> ET.Element:
    """One ``AuditMessage`` element, its children in the order the schema requires."""
    if action not in ("C", "R", "U", "D", "E"):
        raise ValueError(f'Argument "action" must be one of C, R, U, D, E, not {action!r}')
    if outcome not in OUTCOMES:
        raise ValueError(f'Argument "outcome" must be one of {OUTCOMES}, not {outcome!r}')
    if not participants:
        raise ValueError("an audit message needs at least one active participant")
    if sum(p.requestor for p in participants) > 1:
        raise ValueError("at most one active participant may be the requestor (PS3.15 A.5.2)")
    message = ET.Element("AuditMessage")
    event = ET.SubElement(
        message,
        "EventIdentification",
        {"EventActionCode": action, "EventDateTime": _timestamp(when), "EventOutcomeIndicator": str(outcome)},
    )
    _code(event, "EventID", event_id)
    for event_type in event_types:
        _code(event, "EventTypeCode", event_type)
    if outcome_description:
        ET.SubElement(event, "EventOutcomeDescription").text = outcome_description
    for participant in participants:
        _participant(message, participant)
    source_attributes = {"AuditSourceID": source.source_id}
    if source.enterprise_site_id:
        source_attributes["AuditEnterpriseSiteID"] = source.enterprise_site_id
    audit_source = ET.SubElement(message, "AuditSourceIdentification", source_attributes)
    ET.SubElement(audit_source, "AuditSourceTypeCode", {"csd-code": APPLICATION_SERVER})
    for obj in objects:
        _participant_object(message, obj)
    return message


def encode(message: ET.Element) -> bytes:
    """The message as one line of UTF-8 XML (no declaration, no pretty printing)."""
    text: bytes = ET.tostring(message, encoding="utf-8", xml_declaration=False)
    return text.replace(b"\r", b"&#13;").replace(b"\n", b"&#10;")


# --- participants and objects of the gateway ---------------------------------------------------


def study_object(
    study_instance_uid: str, sop_classes: Iterable[SOPClassCount], *, life_cycle: str | None = None
) -> ParticipantObject:
    """The Study participant object: its UID and, per SOP class, how many instances."""
    return ParticipantObject(
        object_id=study_instance_uid,
        id_type=STUDY_INSTANCE_UID,
        name=study_instance_uid,
        type_code=SYSTEM_OBJECT,
        role=ROLE_REPORT,
        life_cycle=life_cycle,
        sop_classes=tuple(sop_classes),
    )


def patient_object(patient_id: str) -> ParticipantObject:
    """The Patient participant object: the Patient ID and nothing else about the patient."""
    return ParticipantObject(
        object_id=patient_id, id_type=PATIENT_NUMBER, name=patient_id, type_code=PERSON, role=ROLE_PATIENT
    )


def dimse_query_object(sop_class_uid: str, identifier: bytes, transfer_syntax_uid: str) -> ParticipantObject:
    """The SOP queried and the query of a C-FIND (A.5.3.10): the information model's SOP Class UID,
    the identifier as encoded, and the transfer syntax it was encoded in."""
    return ParticipantObject(
        object_id=sop_class_uid,
        id_type=SOP_CLASS_UID,
        name="",
        type_code=SYSTEM_OBJECT,
        role=ROLE_REPORT,
        query=identifier,
        details=(("TransferSyntax", transfer_syntax_uid.encode("ascii")),),
    )


def url_query_object(url: str) -> ParticipantObject:
    """The query of a QIDO-RS search, which has no SOP class (A.5.3.10, note 2: a query that is not a
    DIMSE one): the resource's URI, and the request URL with its query string, UTF-8 encoded."""
    return ParticipantObject(
        object_id=url.partition("?")[0],
        id_type=URI,
        name="",
        type_code=SYSTEM_OBJECT,
        role=ROLE_REPORT,
        query=url.encode("utf-8"),
        details=(("QueryEncoding", b"UTF-8"),),
    )


def count_sop_classes(sop_class_uids: Iterable[str]) -> tuple[SOPClassCount, ...]:
    """SOPClass entries with their instance counts, in first-seen order."""
    counts: dict[str, int] = {}
    for uid in sop_class_uids:
        counts[uid] = counts.get(uid, 0) + 1
    return tuple(SOPClassCount(uid or None, count) for uid, count in counts.items())


def group_instances(sop_class_uids: Sequence[str], sop_instance_uids: Sequence[str]) -> tuple[SOPClassCount, ...]:
    """SOPClass entries listing their instances; one entry without a class when the lists do not pair up."""
    if sop_class_uids and len(sop_class_uids) == len(sop_instance_uids):
        grouped: dict[str, list[str]] = {}
        for class_uid, instance_uid in zip(sop_class_uids, sop_instance_uids, strict=True):
            grouped.setdefault(class_uid, []).append(instance_uid)
        return tuple(SOPClassCount(uid or None, len(uids), tuple(uids)) for uid, uids in grouped.items())
    if not sop_instance_uids:
        return ()
    single_class = sop_class_uids[0] if len(set(sop_class_uids)) == 1 else None
    return (SOPClassCount(single_class, len(sop_instance_uids), tuple(sop_instance_uids)),)


# --- the messages ----------------------------------------------------------------------------------


def application_activity(*, started: bool, application: Participant, source: AuditSource, when: datetime) -> ET.Element:
    """Application Activity (A.5.3.1): the gateway started or stopped."""
    return build(
        APPLICATION_ACTIVITY,
        action="E",
        outcome=SUCCESS,
        when=when,
        event_types=(APPLICATION_START if started else APPLICATION_STOP,),
        participants=(application,),
        source=source,
    )


def node_authentication(
    *,
    accepted: bool,
    caller: Participant,
    reporter: Participant,
    calling_ae_title: str,
    peer_address: str,
    source: AuditSource,
    when: datetime,
    outcome: int | None = None,
    description: str | None = None,
) -> ET.Element:
    """Security Alert (A.5.3.11), Node Authentication: an association was accepted or refused.

    The caller is the performing (requesting) participant, the gateway the reporting one; the
    alert subject is the calling node (its address, with the AE title it presented as name).
    """
    chosen = outcome if outcome is not None else (SUCCESS if accepted else MINOR_FAILURE)
    if accepted != (chosen == SUCCESS):
        raise ValueError("an accepted association has outcome 0, a refused one a failure outcome")
    subject = ParticipantObject(
        object_id=peer_address or calling_ae_title,
        id_type=NODE_ID,
        name=calling_ae_title or peer_address,
        type_code=SYSTEM_OBJECT,
        details=((("Alert Description", description.encode("utf-8")),) if description else ()),
    )
    return build(
        SECURITY_ALERT,
        action="E",
        outcome=chosen,
        when=when,
        event_types=(NODE_AUTHENTICATION,),
        outcome_description=description,
        participants=(reporter, caller),
        source=source,
        objects=(subject,),
    )


def instances_transferred(
    *,
    action: str,
    outcome: int,
    source_participant: Participant,
    destination_participant: Participant,
    study_instance_uid: str,
    sop_classes: Sequence[SOPClassCount],
    patient_id: str,
    source: AuditSource,
    when: datetime,
    description: str | None = None,
) -> ET.Element:
    """DICOM Instances Transferred (A.5.3.7): one study of one patient moved between two nodes.

    ``action`` is ``C`` when the gateway received new instances and ``R`` when it sent them.
    Without a Patient ID (an instance that lacks one) the patient object is left out.
    """
    if action not in ("C", "R", "U"):
        raise ValueError(f'Argument "action" of DICOM Instances Transferred must be C, R or U, not {action!r}')
    if ROLE_SOURCE not in source_participant.roles or ROLE_DESTINATION not in destination_participant.roles:
        raise ValueError("the source participant needs Source Role ID and the destination Destination Role ID")
    life_cycle = LIFE_CYCLE_ORIGINATION if action == "C" else LIFE_CYCLE_EXPORT
    objects = [study_object(study_instance_uid, sop_classes, life_cycle=life_cycle)]
    if patient_id:
        objects.append(patient_object(patient_id))
    return build(
        DICOM_INSTANCES_TRANSFERRED,
        action=action,
        outcome=outcome,
        when=when,
        outcome_description=description,
        participants=(source_participant, destination_participant),
        source=source,
        objects=objects,
    )


def query(
    *,
    outcome: int,
    requestor: Participant,
    responder: Participant,
    query_object: ParticipantObject,
    source: AuditSource,
    when: datetime,
    description: str | None = None,
) -> ET.Element:
    """Query (A.5.3.10): a query was issued (the answer is not recorded); no patient participant.

    The requestor is the process that issued the query (Source Role ID), the responder the one
    asked to answer it (Destination Role ID); ``query_object`` comes from
    :func:`dimse_query_object` or :func:`url_query_object`.
    """
    if ROLE_SOURCE not in requestor.roles or ROLE_DESTINATION not in responder.roles:
        raise ValueError("the querying participant needs Source Role ID and the one queried Destination Role ID")
    if not requestor.requestor or responder.requestor:
        raise ValueError("the process that issued the query is the requestor, the one queried is not")
    if query_object.query is None:
        raise ValueError("the participant object of a Query message carries the query (ParticipantObjectQuery)")
    return build(
        QUERY,
        action="E",
        outcome=outcome,
        when=when,
        outcome_description=description,
        participants=(requestor, responder),
        source=source,
        objects=(query_object,),
    )


def user_authentication(
    *,
    login: bool,
    success: bool,
    user: Participant,
    node: Participant,
    source: AuditSource,
    when: datetime,
    description: str | None = None,
) -> ET.Element:
    """User Authentication (A.5.3.12): a console login (tried) or logout."""
    return build(
        USER_AUTHENTICATION,
        action="E",
        outcome=SUCCESS if success else MINOR_FAILURE,
        when=when,
        event_types=(LOGIN if login else LOGOUT,),
        outcome_description=description,
        participants=(user, node),
        source=source,
    )


def software_configuration(
    *,
    actor: Participant,
    reporter: Participant,
    revision: int,
    summary: str,
    before: Mapping[str, object] | bytes,
    after: Mapping[str, object] | bytes,
    source: AuditSource,
    when: datetime,
) -> ET.Element:
    """Security Alert (A.5.3.11), Software Configuration: who changed the configuration, before and after.

    The alert subject is the configuration revision (a URI); its details carry the summary
    ("Alert Description") and the changed values before and after, as JSON.
    """
    subject = ParticipantObject(
        object_id=f"urn:gazex:configuration:revision:{revision}",
        id_type=URI,
        name=f"configuration revision {revision}",
        type_code=SYSTEM_OBJECT,
        role=ROLE_SECURITY_RESOURCE,
        details=(
            ("Alert Description", summary.encode("utf-8")),
            ("Before", before if isinstance(before, bytes) else _json(before)),
            ("After", after if isinstance(after, bytes) else _json(after)),
        ),
    )
    return build(
        SECURITY_ALERT,
        action="E",
        outcome=SUCCESS,
        when=when,
        event_types=(SOFTWARE_CONFIGURATION,),
        participants=(actor, reporter),
        source=source,
        objects=(subject,),
    )


def _json(value: Mapping[str, object]) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8")
