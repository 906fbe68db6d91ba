"""The outbox: results written durably before any delivery is recorded, with the spool's own writer.

Each output is written by :class:`gateway.spool.Spool` (temporary file, fsync, atomic rename,
directory fsync) to ``<outbox>/<study>/<analysis id>/<SOP Instance UID>.dcm``, UIDs made
safe as in the spool.  A job claimed again after a crash writes the same names with the same
bytes, so a rename simply replaces the earlier copy.  Several workers may share one outbox:
temporary names are random, and nothing here takes the spool's lock.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import (
    BasicTextSRStorage,
    Comprehensive3DSRStorage,
    GrayscaleSoftcopyPresentationStateStorage,
    SecondaryCaptureImageStorage,
    SegmentationStorage,
)

from gateway.spool import Spool, safe_uid_component
from gateway.spool.spool import INCOMING_DIR

#: Output kind by SOP Class UID (the kinds of ``dicom_sr.OUTPUT_KINDS``).
OUTPUT_KIND_BY_SOP_CLASS: dict[str, str] = {
    str(Comprehensive3DSRStorage): "sr",
    str(SegmentationStorage): "seg",
    str(GrayscaleSoftcopyPresentationStateStorage): "gsps",
    str(BasicTextSRStorage): "text_sr",
    str(SecondaryCaptureImageStorage): "sc",
}


@dataclass(frozen=True)
class OutboxFile:
    """One output as written: its identity and where its bytes are (relative to the outbox)."""

    kind: str
    sop_class_uid: str
    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str
    file_path: str
    file_size: int
    content_sha256: str


def dataset_bytes(dataset: Dataset) -> bytes:
    """The DICOM file (preamble, File Meta Information, data set) for ``dataset``."""
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, dataset, enforce_file_format=True)
    return buffer.getvalue()


def output_relpath(study_instance_uid: str, analysis_id: str, sop_instance_uid: str) -> PurePosixPath:
    return PurePosixPath(
        safe_uid_component(study_instance_uid),
        _safe_id(analysis_id),
        f"{safe_uid_component(sop_instance_uid)}.dcm",
    )


def _safe_id(value: str) -> str:
    """An analysis id (hex digits) as it is; anything else hashed like an unsafe UID."""
    if value and len(value) <= 64 and all(ch in "0123456789abcdef" for ch in value):
        return value
    return safe_uid_component(value)


class Outbox:
    """Where outputs wait until every destination acknowledged them."""

    def __init__(self, root: Path, min_free_bytes: int) -> None:
        self.root = root
        self._spool = Spool(root, min_free_bytes)

    def prepare(self) -> None:
        """Create the outbox and its temporary folder (no lock: workers on several machines share it)."""
        (self.root / INCOMING_DIR).mkdir(parents=True, exist_ok=True)

    def write(self, dataset: Dataset, analysis_id: str) -> OutboxFile:
        """Write one output durably; raises OutOfSpaceError below the reserve, OSError on a write failure."""
        data = dataset_bytes(dataset)
        sop_class = str(dataset.SOPClassUID)
        relpath = output_relpath(str(dataset.StudyInstanceUID), analysis_id, str(dataset.SOPInstanceUID))
        incoming = self._spool.begin(b"")
        try:
            incoming.write(data)
            if not incoming.ok:
                raise OSError(incoming.failure or "writing the output failed")
            self._spool.commit(incoming, relpath)
        finally:
            incoming.discard()
        return OutboxFile(
            kind=OUTPUT_KIND_BY_SOP_CLASS.get(sop_class, "other"),
            sop_class_uid=sop_class,
            sop_instance_uid=str(dataset.SOPInstanceUID),
            series_instance_uid=str(dataset.SeriesInstanceUID),
            study_instance_uid=str(dataset.StudyInstanceUID),
            file_path=str(relpath),
            file_size=len(data),
            content_sha256=incoming.content_sha256,
        )

    def path(self, relpath: str) -> Path:
        return self._spool.path(relpath)

    def remove(self, relpath: str) -> None:
        self._spool.remove(relpath)
