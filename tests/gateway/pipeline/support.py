"""A gateway pipeline in this process with a fake clock, the FakeEngine and (by default) a fake sender."""

from __future__ import annotations

import copy
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from sqlalchemy import Engine, text

from gateway.config import Settings, load_settings
from gateway.db import create_database_engine, upgrade
from gateway.db.index import InstanceIndex
from gateway.dicom.store import InstanceStore, StoreRequest, StoreResult
from gateway.pipeline.clock import FakeClock
from gateway.pipeline.model import ModelHolder
from gateway.pipeline.sender import FakeDestination, FakeSender, Sender
from gateway.pipeline.service import Pipeline
from gateway.spool import Spool


def pipeline_settings(tmp_path: Path, url: str | None = None, **sections: dict[str, Any]) -> Settings:
    values: dict[str, Any] = {
        "dicom": {"host": "127.0.0.1", "port": 11112},
        "storage": {"data_dir": str(tmp_path / "data"), "min_free_disk": 0},
        "model": {"path": "fake"},
        "destinations": {"archive": {"ae_title": "ARCHIVE", "host": "127.0.0.1", "port": 104}},
        "completion": {"quiet_seconds": 10, "max_wait_seconds": 60},
        "worker": {"lease_seconds": 60, "heartbeat_seconds": 10, "max_attempts": 3, "retry_delay_seconds": 5},
        "delivery": {
            "base_delay_seconds": 10,
            "factor": 2,
            "max_delay_seconds": 100,
            "max_attempts": 3,
            "concurrency": 1,
        },
    }
    if url is not None:
        values["database"] = {"url": url}
    for section, overrides in sections.items():
        if isinstance(values.get(section), dict) and section != "destinations":
            values[section] = {**values[section], **overrides}
        else:
            values[section] = overrides
    return load_settings(overrides=values, environ={})


def make_image(
    template: Dataset, study_uid: str | None = None, series_uid: str | None = None, **changes: Any
) -> Dataset:
    """A copy of ``template`` (a small CR) with new SOP Instance and Series UIDs and the given attributes."""
    dataset = copy.deepcopy(template)
    dataset.SOPInstanceUID = generate_uid()
    if study_uid is not None:
        dataset.StudyInstanceUID = study_uid
    dataset.SeriesInstanceUID = series_uid or generate_uid()
    for keyword, value in changes.items():
        if value is None:
            if keyword in dataset:
                delattr(dataset, keyword)
        else:
            setattr(dataset, keyword, value)
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return dataset


def dataset_bytes(dataset: Dataset) -> bytes:
    """The data set as a C-STORE carries it (explicit VR little endian, no file meta)."""
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    pydicom.filereader.read_preamble(buffer, False)
    pydicom.filereader._read_file_meta_info(buffer)
    return buffer.read()


@dataclass
class Harness:
    settings: Settings
    engine: Engine
    clock: FakeClock
    spool: Spool
    store: InstanceStore
    sender: FakeSender = field(default_factory=FakeSender)

    @classmethod
    def create(cls, tmp_path: Path, url: str | None = None, **sections: dict[str, Any]) -> Harness:
        settings = pipeline_settings(tmp_path, url, **sections)
        engine = create_database_engine(settings.database_url)
        upgrade(engine)
        clock = FakeClock()
        spool = Spool(settings.storage.spool_path, 0)
        spool.open()
        store = InstanceStore(spool, InstanceIndex(engine), clock=clock.now)
        return cls(settings, engine, clock, spool, store)

    def close(self) -> None:
        self.spool.close()
        self.engine.dispose()

    def receive(self, dataset: Dataset, calling_ae: str = "PACS", called_ae: str = "GAZEX") -> StoreResult:
        file_meta = getattr(dataset, "file_meta", None)
        syntax = getattr(file_meta, "TransferSyntaxUID", None) or ExplicitVRLittleEndian
        request = StoreRequest(
            sop_class_uid=str(dataset.SOPClassUID),
            sop_instance_uid=str(dataset.SOPInstanceUID),
            transfer_syntax_uid=str(syntax),
            calling_ae_title=calling_ae,
            called_ae_title=called_ae,
            peer_address="127.0.0.1",
        )
        result = self.store.store_bytes(request, dataset_bytes(dataset))
        assert result.status == 0, result
        return result

    def pipeline(self, sender: Sender | None = None, settings: Settings | None = None, **kwargs: Any) -> Pipeline:
        settings = settings or self.settings
        return Pipeline(
            self.engine,
            settings,
            clock=self.clock,
            sender=sender or self.sender,
            model=kwargs.pop("model", None) or ModelHolder(settings.model),
            **kwargs,
        )

    def destination(self, name: str = "archive") -> FakeDestination:
        return self.sender.destinations.setdefault(name, FakeDestination())

    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as connection:
            return list(connection.execute(text(sql), params).all())
