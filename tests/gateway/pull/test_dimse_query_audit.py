"""Every C-FIND a pull sends is in the audit trail as a Query message (PS3.15 A.5.3.10): the Study
Root FIND SOP class, the identifier as it went on the wire and its transfer syntax, and the outcome:
answered (0), refused by the archive (8: a failure status, an association rejected), or not
answered (4).  A real pynetdicom C-FIND SCP on loopback is the archive."""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.dsutils import decode
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind  # type: ignore[attr-defined]

from gateway.audit import AuditTrail
from gateway.config import Settings, load_settings
from gateway.pull import PullQuery, SourceError, open_source
from tests.gateway.audit.support import assert_valid

STUDY = "1.2.826.0.1.3680043.10.999.7"
ACCESSION = "ACC4711"
FIND = "1.2.840.10008.5.1.4.1.2.2.1"
IMPLICIT = "1.2.840.10008.1.2"


@pytest.fixture
def archive(free_port: Callable[[], int]) -> Iterator[int]:
    """A Study Root C-FIND SCP that admits only GAZEX, refuses accession REFUSE (0xC000), else answers STUDY."""
    ae = AE(ae_title="ARCHIVE")
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind, IMPLICIT)
    ae.require_calling_aet = ["GAZEX"]

    def on_find(event: Any) -> Iterator[tuple[int, Dataset | None]]:
        if event.identifier.get("AccessionNumber") == "REFUSE":
            yield 0xC000, None
            return
        answer = Dataset()
        answer.QueryRetrieveLevel = "STUDY"
        answer.StudyInstanceUID = STUDY
        answer.StudyDate = "20250103"
        yield 0xFF00, answer

    port = free_port()
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_FIND, on_find)])
    assert server is not None
    yield port
    server.shutdown()


def _settings(tmp_path: Path, port: int, **source: object) -> Settings:
    return load_settings(
        overrides={
            "storage": {"data_dir": str(tmp_path)},
            "dicom": {"ae_titles": ["GAZEX"]},
            "sources": {
                "pacs": {"ae_title": "ARCHIVE", "host": "127.0.0.1", "port": port, "timeout_seconds": 5, **source}
            },
        },
        environ={},
    )


def _queries(settings: Settings) -> list[etree._Element]:
    return [assert_valid(line) for line in settings.audit_path.read_bytes().splitlines()]


def _participant(root: etree._Element, role: str) -> etree._Element:
    [found] = root.xpath(f"ActiveParticipant[RoleIDCode/@csd-code='{role}']")
    assert isinstance(found, etree._Element)
    return found


def _identifier(root: etree._Element) -> Dataset:
    """The C-FIND identifier of a Query message, decoded in the transfer syntax it names."""
    asked = root.find("ParticipantObjectIdentification")
    detail = asked.find("ParticipantObjectDetail")
    assert (detail.get("type"), base64.b64decode(detail.get("value")).decode()) == ("TransferSyntax", IMPLICIT)
    return decode(io.BytesIO(base64.b64decode(asked.findtext("ParticipantObjectQuery"))), True, True)


def test_a_c_find_is_audited_with_its_identifier_and_the_logs_never_see_the_accession_number(
    tmp_path: Path, archive: int, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _settings(tmp_path, archive)
    audit = AuditTrail.from_settings(settings, host_id="gw.example.org")
    with caplog.at_level(logging.DEBUG, logger="gateway"):
        found = open_source("pacs", settings, None, audit).find(PullQuery(accession=ACCESSION), 10)
    audit.close()
    assert [study.study_instance_uid for study in found] == [STUDY]
    [root] = _queries(settings)
    event = root.find("EventIdentification")
    assert (event.find("EventID").get("csd-code"), event.get("EventActionCode")) == ("110112", "E")
    assert event.get("EventOutcomeIndicator") == "0"
    us = _participant(root, "110153")
    assert (us.get("UserIsRequestor"), us.get("AlternativeUserID"), us.get("NetworkAccessPointID")) == (
        "true",
        "AETITLES=GAZEX",
        "gw.example.org",
    )
    archive_participant = _participant(root, "110152")
    assert (archive_participant.get("UserID"), archive_participant.get("UserName")) == ("ARCHIVE", "pacs")
    assert archive_participant.get("NetworkAccessPointID") == "127.0.0.1"
    [asked] = root.findall("ParticipantObjectIdentification")  # the query; no patient participant
    assert asked.get("ParticipantObjectID") == FIND
    assert asked.find("ParticipantObjectIDTypeCode").get("csd-code") == "110181"
    identifier = _identifier(root)
    assert (identifier.QueryRetrieveLevel, identifier.AccessionNumber) == ("STUDY", ACCESSION)
    assert ACCESSION not in caplog.text


def test_a_refused_c_find_and_a_rejected_association_are_audited_as_refused_queries(
    tmp_path: Path, archive: int
) -> None:
    settings = _settings(tmp_path, archive)
    audit = AuditTrail.from_settings(settings, host_id="gw.example.org")
    with pytest.raises(SourceError, match="C-FIND refused with 0xC000"):
        open_source("pacs", settings, None, audit).find(PullQuery(accession="REFUSE"), 10)
    stranger = _settings(tmp_path, archive, calling_ae_title="STRANGER")
    with pytest.raises(SourceError, match="association rejected permanently"):
        open_source("pacs", stranger, None, audit).find(PullQuery(study_uid=STUDY), 10)
    audit.close()
    refused, rejected = _queries(settings)
    for root in (refused, rejected):
        assert root.find("EventIdentification").get("EventOutcomeIndicator") == "8"
    assert refused.findtext("EventIdentification/EventOutcomeDescription") == (
        f"query of source pacs: refused (source pacs (ARCHIVE@127.0.0.1:{archive}): C-FIND refused with 0xC000)"
    )
    assert _identifier(refused).AccessionNumber == "REFUSE"
    # the C-FIND never went out: its identifier is recorded as it would have been sent
    assert _identifier(rejected).StudyInstanceUID == STUDY
    us = rejected.find("ActiveParticipant[@UserIsRequestor='true']")
    assert us.get("AlternativeUserID") == "AETITLES=STRANGER;GAZEX"


def test_a_source_that_does_not_answer_is_audited_as_a_failed_query(
    tmp_path: Path, free_port: Callable[[], int]
) -> None:
    settings = _settings(tmp_path, free_port(), timeout_seconds=2)  # nothing listens there
    audit = AuditTrail.from_settings(settings, host_id="gw.example.org")
    with pytest.raises(SourceError):
        open_source("pacs", settings, None, audit).find(PullQuery(date_from="20250101"), 10)
    audit.close()
    [root] = _queries(settings)
    assert root.find("EventIdentification").get("EventOutcomeIndicator") == "4"
    assert _identifier(root).StudyDate == "20250101-"
