"""Thumbnails of a study's image with our boxes and trajectory, drawn from the SR we delivered.

The picture is made from what the archive received: the SR output of the study's latest job
that reached at least one destination (read from the outbox), drawn on the source image it
references (read from the spool).  Both files are immutable, so the pair of their SHA-256s is
the picture's identity: it is the ETag, and the key of a small in-memory cache.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import pydicom
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from gateway.db.models import Delivery, Instance, Job, JobInstance, Output
from gateway.render import read_sr, thumbnail_png
from gateway.spool import resolve_in

#: Thumbnails kept in memory (about 100-300 KB each).
CACHE_ENTRIES = 64
MAX_SIDE = 512


@dataclass(frozen=True)
class OverlaySource:
    """The delivered SR and one analysed image it describes."""

    job_id: int
    sr_path: str  # relative to the outbox
    sr_sha256: str
    image_sop_instance_uid: str
    image_path: str  # relative to the spool
    image_sha256: str

    @property
    def etag(self) -> str:
        return f'"{self.sr_sha256[:20]}-{self.image_sha256[:20]}"'


def overlay_sources(engine: Engine, study_instance_uid: str) -> list[OverlaySource]:
    """The analysed images of the study's latest delivered job, each with that job's SR (empty: none yet)."""
    with Session(engine) as session:
        job = session.execute(
            select(Job.id)
            .join(Delivery, Delivery.job_pk == Job.id)
            .join(Output, Output.job_pk == Job.id)
            .where(
                Job.study_instance_uid == study_instance_uid,
                Delivery.status == "delivered",
                Output.kind == "sr",
                Output.purged_at.is_(None),
            )
            .order_by(Job.id.desc())
            .limit(1)
        ).scalar_one_or_none()
        if job is None:
            return []
        sr = session.execute(
            select(Output.file_path, Output.content_sha256).where(Output.job_pk == job, Output.kind == "sr")
        ).first()
        if sr is None:  # pragma: no cover - the query above found one
            return []
        images = session.execute(
            select(JobInstance.sop_instance_uid, JobInstance.file_path, JobInstance.content_sha256)
            .where(JobInstance.job_pk == job, JobInstance.role == "analyze")
            .order_by(JobInstance.id)
        ).all()
        return [
            OverlaySource(job, sr.file_path, sr.content_sha256, row.sop_instance_uid, row.file_path, row.content_sha256)
            for row in images
        ]


def study_has_instance(engine: Engine, sop_instance_uid: str) -> bool:
    with Session(engine) as session:
        return session.scalar(select(Instance.id).where(Instance.sop_instance_uid == sop_instance_uid)) is not None


class ThumbnailCache:
    """Rendered PNGs by ETag, the most recently used kept (thread-safe)."""

    def __init__(self, entries: int = CACHE_ENTRIES) -> None:
        self.entries = entries
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self.renders = 0  # how many were drawn (the tests check the cache)

    def png(self, source: OverlaySource, outbox: Path, spool: Path) -> bytes:
        with self._lock:
            cached = self._items.get(source.etag)
            if cached is not None:
                self._items.move_to_end(source.etag)
                return cached
        sr = pydicom.dcmread(resolve_in(outbox, source.sr_path))
        image = pydicom.dcmread(resolve_in(spool, source.image_path))
        png = thumbnail_png(image, read_sr(sr, for_image=source.image_sop_instance_uid), max_side=MAX_SIDE)
        with self._lock:
            self.renders += 1
            self._items[source.etag] = png
            while len(self._items) > self.entries:
                self._items.popitem(last=False)
        return png
