"""The DICOM node's call sites of the observers, with real pynetdicom peers on loopback."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from sqlalchemy import Engine

from gateway.config import Settings
from gateway.db import create_database_engine, upgrade
from gateway.db.index import InstanceIndex
from gateway.dicom.admission import IPAddress, resolve_host
from gateway.dicom.node import DicomNode
from gateway.dicom.store import InstanceStore
from gateway.events import AssociationInfo
from gateway.spool import Spool
from tests.gateway.recording import Recorder
from tests.ingest_support import node_settings, scu, small_cr


@contextlib.contextmanager
def recorded_node(
    settings: Settings, resolve: Callable[[str], set[IPAddress]] | None = None
) -> Iterator[tuple[DicomNode, Recorder, Engine]]:
    engine = create_database_engine(settings.database_url)
    upgrade(engine)
    spool = Spool(settings.storage.spool_path, 0)
    spool.open()
    recorder = Recorder()
    node = DicomNode(
        settings.dicom, InstanceStore(spool, InstanceIndex(engine)), resolve=resolve or resolve_host, observer=recorder
    )
    node.start()
    try:
        yield node, recorder, engine
    finally:
        node.stop(grace=0)
        spool.close()
        engine.dispose()


@pytest.fixture
def settings(tmp_path: Path, free_port: Callable[[], int]) -> Settings:
    return node_settings(tmp_path / "data", free_port())


def test_an_association_tells_its_stores_refusals_and_end(settings: Settings, chest_cr: Dataset) -> None:
    good = [small_cr(chest_cr, PatientID="P-1") for _ in range(2)]
    unfiled = small_cr(chest_cr)
    del unfiled.StudyInstanceUID
    with recorded_node(settings) as (node, recorder, _):
        assoc = scu("PACS").associate(*node.address, ae_title="GAZEX")
        assert assoc.is_established
        statuses = [assoc.send_c_store(dataset).Status for dataset in [*good, good[0], unfiled]]
        assoc.release()
        [(ended, received)] = recorder.wait_for("association_ended")
    assert statuses == [0x0000, 0x0000, 0x0000, 0xC212]
    [(accepted,)] = recorder.of("association_accepted")
    assert (accepted.calling_ae_title, accepted.called_ae_title, accepted.peer_address) == (
        "PACS",
        "GAZEX",
        "127.0.0.1",
    )
    assert accepted.peer_port is not None and ended == accepted
    stored = recorder.of("instance_stored")
    # the repeat is a duplicate: stored, as far as the sender knows
    expected = [good[0].SOPInstanceUID, good[1].SOPInstanceUID, good[0].SOPInstanceUID]
    assert [instance.sop_instance_uid for _, instance in stored] == expected
    for association, instance in stored:
        assert association == accepted
        assert instance.study_instance_uid == chest_cr.StudyInstanceUID
        assert instance.sop_class_uid == chest_cr.SOPClassUID
        assert instance.patient_id == "P-1"
        assert instance.size == (settings.storage.spool_path / _file_of(node, instance.sop_instance_uid)).stat().st_size
    assert recorder.of("instance_refused") == [(accepted, 0xC212)]
    assert list(received) == [instance for _, instance in stored]
    assert recorder.of("association_rejected") == []


def _file_of(node: DicomNode, sop_instance_uid: str) -> str:
    found = node.store.index.find(sop_instance_uid)
    assert found is not None
    return found.file_path


def test_an_aborted_association_tells_what_it_stored(settings: Settings, chest_cr: Dataset) -> None:
    dataset = small_cr(chest_cr)
    with recorded_node(settings) as (node, recorder, _):
        assoc = scu().associate(*node.address, ae_title="GAZEX")
        assert assoc.send_c_store(dataset).Status == 0x0000
        assoc.abort()
        [(ended, received)] = recorder.wait_for("association_ended")
    assert ended.calling_ae_title == "TESTSCU"
    assert [instance.sop_instance_uid for instance in received] == [dataset.SOPInstanceUID]


def _rejected(recorder: Recorder, count: int = 1) -> list[tuple[str, str, str]]:
    return [
        (info.calling_ae_title, info.called_ae_title, reason)
        for info, reason, _ in recorder.wait_for("association_rejected", count)
    ]


def test_rejections_are_told_with_their_reason(tmp_path: Path, free_port: Callable[[], int]) -> None:
    settings = node_settings(
        tmp_path / "data",
        free_port(),
        dicom={"allowed_callers": [{"ae_title": "PACS", "host": "127.0.0.1"}], "max_associations": 1},
    )
    with recorded_node(settings) as (node, recorder, _):
        scu("INTRUDER").associate(*node.address, ae_title="GAZEX")  # the peer's view may race the close
        assert _rejected(recorder) == [("INTRUDER", "GAZEX", "unknown_caller")]
        scu("PACS").associate(*node.address, ae_title="NOT_GAZEX")
        assert _rejected(recorder, 2)[1] == ("PACS", "NOT_GAZEX", "called_ae_title")
        first = scu("PACS").associate(*node.address, ae_title="GAZEX")
        assert first.is_established
        scu("PACS").associate(*node.address, ae_title="GAZEX")
        assert _rejected(recorder, 3)[2] == ("PACS", "GAZEX", "capacity")
        first.release()
        recorder.wait_for("association_ended")
    assert len(recorder.of("association_accepted")) == 1
    assert len(recorder.of("association_rejected")) == 3
    assert all(detail for _, _, detail in recorder.of("association_rejected"))


def test_an_admission_that_fails_is_told_as_an_admission_error(tmp_path: Path, free_port: Callable[[], int]) -> None:
    settings = node_settings(
        tmp_path / "data", free_port(), dicom={"allowed_callers": [{"ae_title": "PACS", "host": "pacs.example"}]}
    )

    def broken(name: str) -> set[IPAddress]:
        raise RuntimeError("the resolver broke")

    with recorded_node(settings, resolve=broken) as (node, recorder, _):
        scu("PACS").associate(*node.address, ae_title="GAZEX")
        [(info, reason, detail)] = recorder.wait_for("association_rejected")
    assert (info.calling_ae_title, reason, detail) == ("PACS", "admission_error", "admission failed: RuntimeError")


def test_a_connection_closed_before_its_association_request_is_told(settings: Settings) -> None:
    with recorded_node(settings) as (node, recorder, _):
        with socket.create_connection(node.address):
            pass  # connected and closed without a word
        [(info, reason, detail)] = recorder.wait_for("association_rejected")
    assert info == AssociationInfo("", "", "127.0.0.1")
    assert (reason, detail) == ("pre_admission", "no association request")
    assert recorder.of("association_accepted") == []
