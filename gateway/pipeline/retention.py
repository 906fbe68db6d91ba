"""Retention: remove the files of finished work, and files no database row names.

* A study is *finished* when it is not pending (nothing arrived since its last completion),
  none of its jobs is queued or running and none of its deliveries is pending or sending.
  Delivered, dead-lettered, failed and not-routed studies are all finished.
* Its spool files and its outputs' outbox files are removed ``retention_days`` after its
  last activity (last instance received, job finished or delivery attempt).  The database
  rows stay, as the record of what was received, analysed and sent (``purged_at`` set).
* When the disk holding the spool or the outbox is fuller than ``high_watermark_percent``,
  finished studies are removed early, oldest activity first, until it is below
  ``low_watermark_percent``.  Unfinished work is never removed.
* Files that no row names (a crash between the spool's rename and the index commit, or
  between the outbox write and the job's commit) and temporary files are removed once
  older than ``unindexed_grace_seconds``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, and_, func, select, update

from gateway.config import Settings
from gateway.pipeline.clock import Clock
from gateway.pipeline.states import DeliveryStatus, JobStatus
from gateway.pipeline.tables import DELIVERIES, INSTANCES, JOBS, OUTPUTS, SERIES, STATES, STUDIES
from gateway.spool import resolve_in
from gateway.spool.spool import INCOMING_DIR, PARTIAL_SUFFIX

LOGGER = logging.getLogger(__name__)


def disk_use_percent(path: Path) -> float:
    """How full the file system holding ``path`` is, in percent."""
    stats = os.statvfs(path)
    if stats.f_blocks == 0:
        return 0.0
    return 100.0 * (1.0 - stats.f_bavail / stats.f_blocks)


@dataclass
class RetentionReport:
    studies_purged: int = 0
    spool_files_removed: int = 0
    outbox_files_removed: int = 0
    unindexed_files_removed: int = 0
    watermark_purges: int = 0


@dataclass(frozen=True)
class FinishedStudy:
    study_pk: int
    study_instance_uid: str
    last_activity: datetime


class Retention:
    def __init__(
        self,
        db: Engine,
        settings: Settings,
        clock: Clock,
        disk_use: Callable[[Path], float] = disk_use_percent,
        wall_time: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self._settings = settings
        self._clock = clock
        self._disk_use = disk_use
        self._wall_time = wall_time
        self.spool_root = settings.storage.spool_path
        self.outbox_root = settings.storage.outbox_path
        self._last_sweep: float | None = None

    def run(self) -> RetentionReport:
        report = RetentionReport()
        settings = self._settings.retention
        cutoff = self._clock.now() - timedelta(days=settings.retention_days)
        finished = self.finished_studies()
        for study in finished:
            if study.last_activity < cutoff:
                self.purge(study, report)
        remaining = [study for study in finished if study.last_activity >= cutoff]
        for study in remaining:  # oldest activity first
            if not self._over_watermark(settings.high_watermark_percent if not report.watermark_purges else None):
                break
            self.purge(study, report)
            report.watermark_purges += 1
        if report.watermark_purges:
            LOGGER.warning(
                "disk use above %.0f%%: removed the files of %d finished study(ies) early",
                settings.high_watermark_percent,
                report.watermark_purges,
            )
        now = self._wall_time()
        if self._last_sweep is None or now - self._last_sweep >= settings.unindexed_grace_seconds:
            self._last_sweep = now
            report.unindexed_files_removed = self.sweep_unindexed()
        if report.studies_purged or report.unindexed_files_removed:
            LOGGER.info(
                "retention: %d study(ies) purged (%d spool and %d outbox files), %d unindexed file(s) removed",
                report.studies_purged,
                report.spool_files_removed,
                report.outbox_files_removed,
                report.unindexed_files_removed,
            )
        return report

    def _over_watermark(self, high: float | None) -> bool:
        """Above the high watermark (to start), or still above the low one (to go on)."""
        limit = high if high is not None else self._settings.retention.low_watermark_percent
        roots = [root for root in (self.spool_root, self.outbox_root) if root.exists()]
        return any(self._disk_use(root) > limit for root in roots)

    def finished_studies(self) -> list[FinishedStudy]:
        """Finished, not yet purged studies, oldest last activity first."""
        active_jobs = select(JOBS.c.study_pk).where(JOBS.c.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]))
        active_deliveries = (
            select(JOBS.c.study_pk)
            .join(DELIVERIES, DELIVERIES.c.job_pk == JOBS.c.id)
            .where(DELIVERIES.c.status.in_([DeliveryStatus.PENDING, DeliveryStatus.SENDING]))
        )
        last_job = select(func.max(JOBS.c.finished_at)).where(JOBS.c.study_pk == STUDIES.c.id).scalar_subquery()
        last_delivery = (
            select(func.max(DELIVERIES.c.updated_at))
            .join(JOBS, JOBS.c.id == DELIVERIES.c.job_pk)
            .where(JOBS.c.study_pk == STUDIES.c.id)
            .scalar_subquery()
        )
        query = (
            select(
                STUDIES.c.id,
                STUDIES.c.study_instance_uid,
                STUDIES.c.last_received_at,
                last_job.label("last_job"),
                last_delivery.label("last_delivery"),
            )
            .join(STATES, STATES.c.study_pk == STUDIES.c.id)
            .where(
                STATES.c.purged_at.is_(None),
                STATES.c.completed_through.is_not(None),
                STUDIES.c.last_received_at <= STATES.c.completed_through,
                STUDIES.c.id.not_in(active_jobs),
                STUDIES.c.id.not_in(active_deliveries),
            )
        )
        with self._db.connect() as connection:
            rows = connection.execute(query).all()
        studies = []
        for row in rows:
            times = [t for t in (row.last_received_at, row.last_job, row.last_delivery) if t is not None]
            last = max(_aware(t) for t in times)
            studies.append(FinishedStudy(int(row.id), row.study_instance_uid, last))
        return sorted(studies, key=lambda study: study.last_activity)

    def purge(self, study: FinishedStudy, report: RetentionReport) -> None:
        """Remove a finished study's spool and outbox files; the rows stay, marked purged."""
        now = self._clock.now()
        with self._db.connect() as connection:
            instance_files = (
                connection.execute(
                    select(INSTANCES.c.file_path)
                    .join(SERIES, SERIES.c.id == INSTANCES.c.series_pk)
                    .where(SERIES.c.study_pk == study.study_pk)
                )
                .scalars()
                .all()
            )
            outputs = connection.execute(
                select(OUTPUTS.c.id, OUTPUTS.c.file_path)
                .join(JOBS, JOBS.c.id == OUTPUTS.c.job_pk)
                .where(and_(JOBS.c.study_pk == study.study_pk, OUTPUTS.c.purged_at.is_(None)))
            ).all()
        for relpath in instance_files:
            report.spool_files_removed += _remove(self.spool_root, relpath)
        for output in outputs:
            report.outbox_files_removed += _remove(self.outbox_root, output.file_path)
        with self._db.begin() as connection:
            if outputs:
                connection.execute(
                    update(OUTPUTS).where(OUTPUTS.c.id.in_([o.id for o in outputs])).values(purged_at=now)
                )
            connection.execute(update(STATES).where(STATES.c.study_pk == study.study_pk).values(purged_at=now))
        report.studies_purged += 1
        LOGGER.info("retention: removed the files of finished study %s", study.study_instance_uid)

    # -- files nothing names ------------------------------------------------------------------
    def sweep_unindexed(self) -> int:
        grace = self._settings.retention.unindexed_grace_seconds
        old_before = self._wall_time() - grace
        removed = 0
        removed += self._sweep_tree(self.spool_root, old_before, self._spool_paths)
        removed += self._sweep_tree(self.outbox_root, old_before, self._outbox_paths)
        for root in (self.spool_root, self.outbox_root):
            removed += _sweep_partials(root, old_before)
        return removed

    def _spool_paths(self, prefix: str) -> set[str]:
        with self._db.connect() as connection:
            return set(
                connection.execute(
                    select(INSTANCES.c.file_path).where(INSTANCES.c.file_path.startswith(prefix + "/", autoescape=True))
                ).scalars()
            )

    def _outbox_paths(self, prefix: str) -> set[str]:
        with self._db.connect() as connection:
            return set(
                connection.execute(
                    select(OUTPUTS.c.file_path).where(
                        and_(
                            OUTPUTS.c.file_path.startswith(prefix + "/", autoescape=True), OUTPUTS.c.purged_at.is_(None)
                        )
                    )
                ).scalars()
            )

    @staticmethod
    def _sweep_tree(root: Path, old_before: float, known: Callable[[str], set[str]]) -> int:
        if not root.is_dir():
            return 0
        removed = 0
        for top in sorted(root.iterdir()):
            if top.name.startswith(".") or not top.is_dir():
                continue
            old = [path for path in _files(top) if path.stat().st_mtime < old_before]
            if not old:
                continue
            named = known(top.name)
            for path in old:
                relpath = path.relative_to(root).as_posix()
                if relpath not in named:
                    LOGGER.warning("retention: removing %s, which no database row names", relpath)
                    removed += _remove(root, relpath)
        return removed


def _files(directory: Path) -> Iterator[Path]:
    for dirpath, _, filenames in os.walk(directory):
        for name in filenames:
            yield Path(dirpath) / name


def _sweep_partials(root: Path, old_before: float) -> int:
    """Temporary files older than the grace period, in every node's incoming folder."""
    removed = 0
    if not root.is_dir():
        return 0
    for folder in root.iterdir():
        if not (folder.name == INCOMING_DIR or folder.name.startswith(INCOMING_DIR + "-")) or not folder.is_dir():
            continue
        for path in _files(folder):
            if path.name.endswith(PARTIAL_SUFFIX) and path.stat().st_mtime < old_before:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed += 1
    return removed


def _remove(root: Path, relpath: str) -> int:
    """Delete one file (and the folders it leaves empty); 1 if a file was deleted."""
    try:
        path = resolve_in(root, relpath)
    except ValueError:
        LOGGER.warning("retention: refusing to remove %r, which lies outside %s", relpath, root)
        return 0
    try:
        path.unlink()
    except FileNotFoundError:
        return 0
    parent = path.parent
    while parent != root and parent.is_relative_to(root):
        try:
            parent.rmdir()
        except OSError:
            break
        parent = parent.parent
    return 1


def _aware(value: datetime) -> datetime:
    from datetime import UTC

    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
