"""The C-STORE service on a real spool and SQLite index: each status and what it leaves behind."""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from gateway.db import create_database_engine, upgrade
from gateway.db.index import IndexOutcome, InstanceIndex
from gateway.dicom.header import InstanceHeader
from gateway.dicom.store import (
    InstanceStore,
    StoreRequest,
    StoreResult,
    StoreStatus,
    handle_store,
    identity_mismatch,
)
from gateway.spool import Spool
from tests.ingest_support import small_cr

PATIENT = "^".join(["DOE", "JANE"])


@pytest.fixture
def store(tmp_path: Path) -> Iterator[InstanceStore]:
    engine = create_database_engine(f"sqlite:///{tmp_path / 'gazex.db'}")
    upgrade(engine)
    spool = Spool(tmp_path / "spool", 0)
    spool.open()
    yield InstanceStore(spool, InstanceIndex(engine))
    spool.close()
    engine.dispose()


def encode(dataset: Dataset) -> bytes:
    """The data set bytes as a sender puts them on the wire (explicit VR little endian)."""
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_dataset(buffer, dataset)
    return buffer.getvalue()


def request_for(dataset: Dataset, **changes: str) -> StoreRequest:
    values = {
        "sop_class_uid": str(dataset.SOPClassUID),
        "sop_instance_uid": str(dataset.SOPInstanceUID),
        "transfer_syntax_uid": str(ExplicitVRLittleEndian),
        "calling_ae_title": "PACS",
        "called_ae_title": "GAZEX",
        "peer_address": "127.0.0.1",
    }
    values.update(changes)
    return StoreRequest(**values)


def bare(dataset: Dataset) -> Dataset:
    result = copy.deepcopy(dataset)
    del result.file_meta
    return result


def spool_files(store: InstanceStore) -> list[Path]:
    return sorted(p for p in store.spool.root.rglob("*.dcm"))


def test_success_stores_the_bytes_as_received(store: InstanceStore, chest_cr: Dataset) -> None:
    dataset = bare(small_cr(chest_cr))
    data = encode(dataset)
    result = store.store_bytes(request_for(dataset), data)
    assert result == StoreResult(StoreStatus.SUCCESS, IndexOutcome.NEW)
    (path,) = spool_files(store)
    assert path.read_bytes().endswith(data)
    assert path.parent.name == dataset.SeriesInstanceUID
    assert list(store.spool.incoming_dir.iterdir()) == []


def test_identical_bytes_are_acknowledged_once(store: InstanceStore, chest_cr: Dataset) -> None:
    dataset = bare(small_cr(chest_cr))
    data = encode(dataset)
    store.store_bytes(request_for(dataset), data)
    result = store.store_bytes(request_for(dataset), data)
    assert (result.status, result.outcome) == (StoreStatus.SUCCESS, IndexOutcome.DUPLICATE)
    assert len(spool_files(store)) == 1
    assert list(store.spool.incoming_dir.iterdir()) == []


def test_a_lost_file_is_put_back_by_an_identical_copy(store: InstanceStore, chest_cr: Dataset) -> None:
    dataset = bare(small_cr(chest_cr))
    data = encode(dataset)
    store.store_bytes(request_for(dataset), data)
    (path,) = spool_files(store)
    path.unlink()
    result = store.store_bytes(request_for(dataset), data)
    assert result.status == StoreStatus.SUCCESS
    assert path.read_bytes().endswith(data)


def test_different_bytes_replace_the_stored_copy(store: InstanceStore, chest_cr: Dataset) -> None:
    dataset = bare(small_cr(chest_cr))
    store.store_bytes(request_for(dataset), encode(dataset))
    (old,) = spool_files(store)
    dataset.SeriesDescription = "corrected"
    corrected = encode(dataset)
    result = store.store_bytes(request_for(dataset), corrected)
    assert (result.status, result.outcome) == (StoreStatus.SUCCESS, IndexOutcome.REPLACED)
    (new,) = spool_files(store)
    assert new != old and not old.exists()
    assert new.read_bytes().endswith(corrected)


def test_a_data_set_that_does_not_parse_is_0xc210(store: InstanceStore, chest_cr: Dataset) -> None:
    dataset = bare(small_cr(chest_cr))
    result = store.store_bytes(request_for(dataset), encode(dataset)[:-50])
    assert result.status == StoreStatus.CANNOT_UNDERSTAND
    assert int(result.status) == 0xC210
    assert "runs past the end" in result.reason
    assert spool_files(store) == [] and list(store.spool.incoming_dir.iterdir()) == []


def test_uids_that_disagree_with_the_request_are_0xa900(store: InstanceStore, chest_cr: Dataset) -> None:
    dataset = bare(small_cr(chest_cr))
    result = store.store_bytes(request_for(dataset, sop_instance_uid=str(generate_uid())), encode(dataset))
    assert result.status == StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS
    assert int(result.status) == 0xA900
    assert "SOP Instance UID" in result.reason
    result = store.store_bytes(request_for(dataset, sop_class_uid="1.2.840.10008.5.1.4.1.1.7"), encode(dataset))
    assert result.status == 0xA900 and "SOP Class UID" in result.reason
    assert spool_files(store) == [] and list(store.spool.incoming_dir.iterdir()) == []


def test_no_study_uid_is_0xc212(store: InstanceStore, chest_cr: Dataset) -> None:
    dataset = bare(small_cr(chest_cr))
    del dataset.StudyInstanceUID
    result = store.store_bytes(request_for(dataset), encode(dataset))
    assert result.status == StoreStatus.MISSING_IDENTIFIERS
    assert int(result.status) == 0xC212
    assert spool_files(store) == []


def test_below_the_reserve_is_0xa700_and_nothing_is_written(tmp_path: Path, chest_cr: Dataset) -> None:
    engine = create_database_engine(f"sqlite:///{tmp_path / 'gazex.db'}")
    upgrade(engine)
    spool = Spool(tmp_path / "spool", 10**18)
    spool.open()
    store = InstanceStore(spool, InstanceIndex(engine))
    dataset = bare(small_cr(chest_cr))
    result = store.store_bytes(request_for(dataset), encode(dataset))
    assert result.status == StoreStatus.OUT_OF_RESOURCES
    assert int(result.status) == 0xA700
    assert "below the reserve" in result.reason
    assert list(spool.incoming_dir.iterdir()) == [] and spool_files(store) == []
    spool.close()
    engine.dispose()


def test_a_database_outage_is_0xa700_and_the_retry_heals(store: InstanceStore, chest_cr: Dataset) -> None:
    dataset = bare(small_cr(chest_cr))
    data = encode(dataset)
    store.index._engine.dispose()
    broken = create_database_engine(f"sqlite:///{store.spool.root.parent / 'missing' / 'x.db'}", create_directory=False)
    good = store.index
    store.index = InstanceIndex(broken)
    result = store.store_bytes(request_for(dataset), data)
    assert result.status == StoreStatus.OUT_OF_RESOURCES
    assert "database is unavailable" in result.reason
    store.index = good
    assert store.store_bytes(request_for(dataset), data).status == StoreStatus.SUCCESS
    assert len(spool_files(store)) == 1


def test_identity_mismatch_is_a_pure_decision() -> None:
    header = InstanceHeader(
        sop_class_uid="1.2", sop_instance_uid="1.2.3", study_instance_uid="1", series_instance_uid="2"
    )
    request = StoreRequest("1.2", "1.2.3\x00", "1.2.840.10008.1.2.1", "A", "B", None)
    assert identity_mismatch(header, request) is None
    missing = InstanceHeader(
        sop_class_uid="", sop_instance_uid="1.2.3", study_instance_uid="1", series_instance_uid="2"
    )
    assert "SOP Class UID (missing)" in (identity_mismatch(missing, request) or "")


def test_an_exception_in_the_handler_becomes_0xc211(
    store: InstanceStore, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*args: Any) -> StoreResult:
        raise ValueError(f"{PATIENT} is not allowed here")  # a message quoting patient data

    monkeypatch.setattr(store, "store", explode)
    event = SimpleNamespace(
        request=SimpleNamespace(AffectedSOPClassUID="1.2", AffectedSOPInstanceUID="1.2.3"),
        assoc=SimpleNamespace(
            requestor=SimpleNamespace(ae_title="PACS", address="127.0.0.1", primitive=None),
            acceptor=SimpleNamespace(ae_title="GAZEX"),
        ),
        context=SimpleNamespace(transfer_syntax="1.2.840.10008.1.2.1"),
        encoded_dataset=lambda include_meta=False: b"",
    )
    monkeypatch.setattr(store, "store_bytes", explode)
    results: list[StoreResult] = []
    with caplog.at_level(logging.ERROR):
        status = handle_store(event, store, lambda e, r: results.append(r))
    assert status == 0xC211
    assert results[0].status == StoreStatus.PROCESSING_FAILURE
    assert "unexpected ValueError" in caplog.text and "answered 0xC211" in caplog.text
    assert PATIENT not in caplog.text
