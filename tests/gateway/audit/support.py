"""The DICOM audit message schema (PS3.15 A.5.1) for the tests, and the gateway events they feed."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from lxml import etree

from gateway.events import AssociationInfo, ConfigurationChange, DeliveryInfo, QueryInfo, ReceivedInstance

SCHEMA_PATH = Path(__file__).with_name("audit-message.rng")
_SCHEMA: etree.RelaxNG | None = None

WHEN = datetime(2025, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)
CR = "1.2.840.10008.5.1.4.1.1.1"
DX = "1.2.840.10008.5.1.4.1.1.1.1"
SR = "1.2.840.10008.5.1.4.1.1.88.34"
STUDY_A = "1.2.826.0.1.3680043.10.511.1"
STUDY_B = "1.2.826.0.1.3680043.10.511.2"
PATIENT_A = "PID-0001"
PATIENT_B = "PID-0002"
#: Values that must never reach an audit message (the event objects do not even carry them).
PATIENT_NAME = "Doe^Jane"
FIND = "1.2.840.10008.5.1.4.1.2.2.1"
IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
#: A C-FIND identifier as encoded (Implicit VR Little Endian): QueryRetrieveLevel STUDY, StudyInstanceUID 1.2.3.4.
IDENTIFIER = bytes.fromhex("080052000600000053545544592020000d0008000000312e322e332e3400")
QIDO_URL = "https://pacs.example.org/dicom-web/studies?ModalitiesInStudy=CR&includefield=StudyDate&limit=501"


def schema() -> etree.RelaxNG:
    global _SCHEMA  # noqa: PLW0603 - parsed once per session
    if _SCHEMA is None:
        _SCHEMA = etree.RelaxNG(etree.parse(str(SCHEMA_PATH)))
    return _SCHEMA


def assert_valid(message: bytes) -> etree._Element:
    """Parse one encoded message and validate it against the schema; the parsed root."""
    root = etree.fromstring(message)
    if not schema().validate(root):
        raise AssertionError(f"not a valid DICOM audit message: {schema().error_log}\n{message.decode()}")
    return root


def caller() -> AssociationInfo:
    return AssociationInfo(
        calling_ae_title="MODALITY1", called_ae_title="GAZEX", peer_address="127.0.0.1", peer_port=51000
    )


def received() -> list[ReceivedInstance]:
    return [
        ReceivedInstance(STUDY_A, CR, f"{STUDY_A}.1.1", 1000, PATIENT_A),
        ReceivedInstance(STUDY_A, CR, f"{STUDY_A}.1.2", 1000, PATIENT_A),
        ReceivedInstance(STUDY_A, DX, f"{STUDY_A}.2.1", 1000, PATIENT_A),
        ReceivedInstance(STUDY_B, CR, f"{STUDY_B}.1.1", 1000, PATIENT_B),
    ]


def delivery() -> DeliveryInfo:
    return DeliveryInfo(
        delivery_id=7,
        destination="pacs",
        called_ae_title="ARCHIVE",
        host="127.0.0.1",
        port=11112,
        study_instance_uid=STUDY_A,
        sop_instance_uids=(f"{STUDY_A}.9.1", f"{STUDY_A}.9.2"),
        sop_class_uids=(SR, SR),
        patient_id=PATIENT_A,
        attempts=1,
    )


def configuration_change() -> ConfigurationChange:
    return ConfigurationChange(
        actor="admin",
        summary="added allowed caller MODALITY2",
        revision=3,
        before={"dicom": {"allowed_callers": [{"ae_title": "MODALITY1", "host": "10.0.0.0/8"}]}},
        after={"dicom": {"allowed_callers": [{"ae_title": "MODALITY1"}, {"ae_title": "MODALITY2"}]}},
        address="192.0.2.10",
    )


def c_find_query() -> QueryInfo:
    return QueryInfo(
        source="pacs",
        host="192.0.2.7",
        calling_ae_title="GAZEXQR",
        called_ae_title="ARCHIVE",
        sop_class_uid=FIND,
        identifier=IDENTIFIER,
        transfer_syntax_uid=IMPLICIT_VR_LITTLE_ENDIAN,
    )


def qido_query() -> QueryInfo:
    return QueryInfo(source="web", host="pacs.example.org", url=QIDO_URL)
