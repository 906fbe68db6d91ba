"""The worker: claim a job, load its instances from the spool, analyse, encode, write the outbox.

For each job, in order:

1. claim it with a lease (:mod:`gateway.pipeline.leases`) and keep the lease alive with a
   heartbeat while working;
2. read the analysed instances from the spool and call ``engine.analyze``, then
   ``dicom_sr.encode`` (superseding the study's previous analysis, if any);
3. write every output to the outbox (fsync, atomic rename, directory fsync);
4. in ONE transaction, fenced by the lease token: mark the job done, record the outputs and
   create one delivery (with one item per output) per destination.

A kill -9 before step 4 commits leaves the job ``running`` with an expiring lease: another
worker (or this one, restarted) claims it again and produces the same outputs with the same
UIDs (same analysis id, same content time).  Model errors and unusable output are recorded on
the job; after ``worker.max_attempts`` attempts the job fails and stays listed.  An input error
(an image whose pixel data cannot be decoded, ...) fails the job at once: it would fail the same
way on every try (:func:`analysis_failure`).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from sqlalchemy import Engine, and_, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

import dicom_sr
from gateway.config import Settings
from gateway.db import installation_id
from gateway.events import GatewayObserver
from gateway.pipeline import states
from gateway.pipeline.clock import Clock
from gateway.pipeline.leases import Claim, Heartbeat, LeaseLost, claim, held
from gateway.pipeline.model import ModelHolder
from gateway.pipeline.outbox import Outbox, OutboxFile
from gateway.pipeline.states import DeliveryStatus, ItemStatus, JobFailure, JobStatus
from gateway.pipeline.tables import DELIVERIES, DELIVERY_ITEMS, INSTANCES, JOB_INSTANCES, JOBS, OUTPUTS
from gateway.safelog import log_unexpected
from gateway.spool import OutOfSpaceError, resolve_in
from inference import STATEMENT_LABELS, InferenceError, InputImageError, StudyAnalysis
from inference import Engine as AnalysisEngine

LOGGER = logging.getLogger(__name__)


def worker_name(suffix: str = "") -> str:
    """``host:pid`` (and a thread suffix): who holds a lease, as ``gazex jobs`` shows it."""
    name = f"{socket.gethostname()}:{os.getpid()}"
    return f"{name}:{suffix}" if suffix else name


class _Failed(Exception):  # noqa: N818 - carries a JobFailure out of the work steps
    def __init__(self, failure: JobFailure, superseded: bool = False) -> None:
        super().__init__(failure.reason)
        self.failure = failure
        self.superseded = superseded


@dataclass(frozen=True)
class JobResult:
    job_id: int
    status: str
    reason: str | None = None


class Worker:
    """Processes jobs one at a time; run several (threads or processes) to process several at once."""

    def __init__(
        self,
        db: Engine,
        settings: Settings,
        outbox: Outbox,
        model: ModelHolder,
        clock: Clock,
        name: str | None = None,
        on_outputs: Callable[[], None] | None = None,
        encode_settings: dicom_sr.EncodeSettings | None = None,
        observer: GatewayObserver | None = None,
    ) -> None:
        self._db = db
        self._observer = observer or GatewayObserver()
        self._settings = settings
        self._spool_root = settings.storage.spool_path
        self._outbox = outbox
        self._model = model
        self._clock = clock
        self.name = name or worker_name()
        self._on_outputs = on_outputs
        self._encode_settings = encode_settings  # None: built from the database on first use

    # -- loops ------------------------------------------------------------------------------
    def run_once(self) -> JobResult | None:
        """Claim and process one job; None when no job is due.  Raises ModelUnavailable before claiming."""
        engine = self._model.get()  # before the claim: a job is never taken by a worker without a model
        settings = self._settings.worker
        with self._db.begin() as connection:
            claimed = claim(
                connection,
                JOBS,
                waiting=JobStatus.QUEUED,
                active=JobStatus.RUNNING,
                owner=self.name,
                now=self._clock.now(),
                lease_seconds=settings.lease_seconds,
                values={"started_at": self._clock.now()},
            )
        if claimed is None:
            return None
        return self.process(claimed, engine)

    def run(self, stop: threading.Event, wake: threading.Event | None = None, *, burst: bool = False) -> int:
        """Process jobs until ``stop`` is set (or, in burst mode, until none is due); returns how many."""
        processed = 0
        while not stop.is_set():
            try:
                result = self.run_once()
            except SQLAlchemyError as exc:
                LOGGER.error("worker %s: the database is unavailable (%s); retrying", self.name, type(exc).__name__)
                result = None
                if burst:
                    raise
            if result is not None:
                processed += 1
                continue
            if burst:
                return processed
            if wake is not None:
                wake.wait(self._settings.worker.poll_seconds)
                wake.clear()
            else:
                stop.wait(self._settings.worker.poll_seconds)
        return processed

    # -- one job ----------------------------------------------------------------------------
    def process(self, claimed: Claim, engine: AnalysisEngine) -> JobResult:
        settings = self._settings.worker
        with self._db.connect() as connection:
            job = connection.execute(select(JOBS).where(JOBS.c.id == claimed.id)).one()
        if states.lost_too_often(claimed.attempts, settings.max_attempts):
            failure = JobFailure(
                f"the worker running attempt {claimed.attempts - 1} stopped without finishing (its lease expired) "
                f"and {settings.max_attempts} attempts are used up",
                permanent=True,
            )
            return self._record_failure(claimed, job, failure)
        LOGGER.info(
            "job %d (study %s) attempt %d claimed by %s", job.id, job.study_instance_uid, claimed.attempts, self.name
        )
        heartbeat = Heartbeat(
            self._db,
            JOBS,
            claimed,
            JobStatus.RUNNING,
            self._clock,
            settings.lease_seconds,
            settings.heartbeat_seconds,
            on_error=lambda exc: LOGGER.warning("job %d: lease renewal failed (%s)", job.id, type(exc).__name__),
        )
        with heartbeat:
            try:
                analysis, files, predecessor_id = self._produce(job, engine)
            except _Failed as failed:
                return self._record_failure(claimed, job, failed.failure, superseded=failed.superseded)
            except Exception as exc:  # noqa: BLE001 - a bug must not kill the worker: recorded on the job, retried
                log_unexpected(LOGGER, f"job {job.id}: processing failed", exc)
                failure = JobFailure(f"unexpected {type(exc).__name__} in the gateway (see the log)")
                return self._record_failure(claimed, job, failure)
            if heartbeat.lost.is_set():
                LOGGER.warning("job %d: lease lost to another worker; dropping this attempt's result", job.id)
                return JobResult(job.id, "lease-lost")
            try:
                status = self._commit(claimed, job, analysis, files, predecessor_id)
            except LeaseLost:
                LOGGER.warning("job %d: lease lost to another worker before commit; its result is theirs", job.id)
                return JobResult(job.id, "lease-lost")
        if status == JobStatus.DONE and job.destinations and self._on_outputs is not None:
            self._on_outputs()
        self._observer.job_finished(job.id, job.study_instance_uid, job_outcome(status), analysis.seconds)
        return JobResult(job.id, status)

    def _produce(self, job: Any, engine: AnalysisEngine) -> tuple[StudyAnalysis, list[OutboxFile], int | None]:
        datasets = self._load_sources(job)
        started = time.perf_counter()
        try:
            analysis = engine.analyze(datasets)
        except InferenceError as exc:
            raise _Failed(analysis_failure(exc)) from None
        except Exception as exc:  # noqa: BLE001 - recorded on the job (and retried), never swallowed
            log_unexpected(LOGGER, f"job {job.id}: the model failed", exc)
            raise _Failed(JobFailure(f"model error: unexpected {type(exc).__name__} (see the log)")) from None
        problem = _unusable(analysis, datasets)
        if problem is not None:
            raise _Failed(JobFailure(f"model output unusable: {problem}", permanent=True))
        LOGGER.info(
            "job %d: analysed %d image(s) in %.2f s", job.id, len(analysis.images), time.perf_counter() - started
        )
        predecessor_id, predecessor = self._predecessor(job)
        created = job.created_at.astimezone().replace(tzinfo=None)  # local time, as DICOM dates are
        try:
            outputs = dicom_sr.encode(
                analysis,
                datasets,
                job.outputs.split(","),
                analysis_id=job.analysis_id,
                content_datetime=created,
                settings=self._encoding(),
                predecessor=predecessor,
            )
        except dicom_sr.EncodeError as exc:
            raise _Failed(JobFailure(f"the analysis cannot be encoded as DICOM: {exc}", permanent=True)) from None
        files: list[OutboxFile] = []
        try:
            for dataset in outputs:
                files.append(self._outbox.write(dataset, job.analysis_id))
        except OutOfSpaceError as exc:
            raise _Failed(JobFailure(f"the outbox disk is below its reserve: {exc}")) from None
        except OSError as exc:
            raise _Failed(JobFailure(f"writing the outbox failed: {exc.strerror or exc}")) from None
        return analysis, files, predecessor_id

    def _encoding(self) -> dicom_sr.EncodeSettings:
        if self._encode_settings is None:
            self._encode_settings = encode_settings(self._db, self._settings)
        return self._encode_settings

    def _load_sources(self, job: Any) -> list[Dataset]:
        with self._db.connect() as connection:
            rows = connection.execute(
                select(
                    JOB_INSTANCES.c.sop_instance_uid,
                    JOB_INSTANCES.c.file_path,
                    JOB_INSTANCES.c.content_sha256,
                    INSTANCES.c.content_sha256.label("current_sha256"),
                )
                .join(INSTANCES, INSTANCES.c.id == JOB_INSTANCES.c.instance_pk)
                .where(and_(JOB_INSTANCES.c.job_pk == job.id, JOB_INSTANCES.c.role == "analyze"))
                .order_by(JOB_INSTANCES.c.id)
            ).all()
        if not rows:
            raise _Failed(JobFailure("the job lists no instance to analyse", permanent=True))
        datasets: list[Dataset] = []
        for row in rows:
            if row.current_sha256 != row.content_sha256:
                raise _Failed(
                    JobFailure(f"instance {row.sop_instance_uid} was replaced after this job was queued", True),
                    superseded=True,
                )
            try:
                datasets.append(pydicom.dcmread(resolve_in(self._spool_root, row.file_path)))
            except FileNotFoundError:
                raise _Failed(
                    JobFailure(
                        f"the spool file of instance {row.sop_instance_uid} ({row.file_path}) is missing "
                        "(removed by retention?); send the study again or restore the file",
                        permanent=True,
                    )
                ) from None
            except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
                raise _Failed(
                    JobFailure(f"the spool file {row.file_path} cannot be read: {type(exc).__name__}", permanent=True)
                ) from None
        return datasets

    def _predecessor(self, job: Any) -> tuple[int | None, dicom_sr.Predecessor | None]:
        """The study's latest finished analysis before this one, which this one supersedes."""
        with self._db.connect() as connection:
            earlier = connection.execute(
                select(JOBS.c.id, JOBS.c.analysis_id)
                .where(and_(JOBS.c.study_pk == job.study_pk, JOBS.c.status == JobStatus.DONE, JOBS.c.id < job.id))
                .order_by(JOBS.c.id.desc())
                .limit(1)
            ).first()
            if earlier is None:
                return None, None
            outputs = connection.execute(
                select(OUTPUTS.c.series_instance_uid, OUTPUTS.c.sop_class_uid, OUTPUTS.c.sop_instance_uid).where(
                    OUTPUTS.c.job_pk == earlier.id
                )
            ).all()
        references = tuple(
            dicom_sr.InstanceReference(
                study_instance_uid=job.study_instance_uid,
                series_instance_uid=row.series_instance_uid,
                sop_class_uid=row.sop_class_uid,
                sop_instance_uid=row.sop_instance_uid,
            )
            for row in outputs
        )
        return int(earlier.id), dicom_sr.Predecessor(analysis_id=earlier.analysis_id, instances=references)

    def _commit(
        self,
        claimed: Claim,
        job: Any,
        analysis: StudyAnalysis,
        files: Sequence[OutboxFile],
        predecessor_id: int | None,
    ) -> str:
        """Steps 3-4's database half, in one transaction fenced by the lease token."""
        now = self._clock.now()
        identity = analysis.model
        present = sum(
            1
            for image in analysis.images
            for finding in image.findings
            if finding.present and finding.label not in STATEMENT_LABELS
        )
        omissions = "; ".join(
            f"image {image.sop_instance_uid}: {', '.join(image.omissions)}"
            for image in analysis.images
            if image.omissions
        )
        with self._db.begin() as connection:
            changed = connection.execute(
                update(JOBS)
                .where(held(JOBS, claimed, JobStatus.RUNNING))
                .values(
                    status=JobStatus.DONE,
                    finished_at=now,
                    lease_token=None,
                    lease_expires_at=None,
                    last_error=None,
                    processed_by=self.name,
                    model_name=identity.name,
                    model_version=identity.version,
                    model_sha256=identity.checkpoint_sha256,
                    model_backend=identity.backend,
                    analysis_seconds=analysis.seconds,
                    findings_present=present,
                    omissions=omissions or None,
                    predecessor_job_pk=predecessor_id,
                )
            )
            if changed.rowcount != 1:
                raise LeaseLost(f"job {job.id}")
            newer = connection.execute(
                select(JOBS.c.id)
                .where(and_(JOBS.c.study_pk == job.study_pk, JOBS.c.status == JobStatus.DONE, JOBS.c.id > job.id))
                .limit(1)
            ).scalar_one_or_none()
            if newer is not None:
                connection.execute(
                    update(JOBS)
                    .where(JOBS.c.id == job.id)
                    .values(
                        status=JobStatus.SUPERSEDED,
                        last_error=f"job {newer} analysed the study later and finished first",
                    )
                )
                LOGGER.info("job %d: superseded by job %d, which finished first; nothing delivered", job.id, newer)
                return JobStatus.SUPERSEDED
            output_ids = [
                int(
                    connection.execute(
                        insert(OUTPUTS)
                        .values(
                            job_pk=job.id,
                            kind=file.kind,
                            sop_class_uid=file.sop_class_uid,
                            sop_instance_uid=file.sop_instance_uid,
                            series_instance_uid=file.series_instance_uid,
                            file_path=file.file_path,
                            file_size=file.file_size,
                            content_sha256=file.content_sha256,
                            created_at=now,
                        )
                        .returning(OUTPUTS.c.id)
                    ).scalar_one()
                )
                for file in files
            ]
            destinations = [name for name in job.destinations.split(",") if name]
            for destination in destinations:
                delivery_id = int(
                    connection.execute(
                        insert(DELIVERIES)
                        .values(
                            job_pk=job.id,
                            destination=destination,
                            status=DeliveryStatus.PENDING,
                            attempts=0,
                            next_attempt_at=now,
                            created_at=now,
                            updated_at=now,
                        )
                        .returning(DELIVERIES.c.id)
                    ).scalar_one()
                )
                connection.execute(
                    insert(DELIVERY_ITEMS),
                    [
                        {"delivery_pk": delivery_id, "output_pk": output_id, "status": ItemStatus.PENDING, "sends": 0}
                        for output_id in output_ids
                    ],
                )
        LOGGER.info(
            "job %d done: %d output(s) (%s) in the outbox, %d finding(s) present, %d delivery(ies) to %s",
            job.id,
            len(files),
            ", ".join(file.kind for file in files),
            present,
            len(destinations),
            ", ".join(destinations) or "no destination",
        )
        if omissions:
            # Model output only (reasons and UIDs), never patient data.
            LOGGER.warning("job %d: the analysis is incomplete, its SR is PARTIAL: %s", job.id, omissions)
        return JobStatus.DONE

    def _record_failure(self, claimed: Claim, job: Any, failure: JobFailure, *, superseded: bool = False) -> JobResult:
        settings = self._settings.worker
        now = self._clock.now()
        if superseded:
            status = JobStatus.SUPERSEDED
        else:
            status = states.after_job_failure(failure, claimed.attempts, settings.max_attempts)
        values: dict[str, Any] = {
            "status": status,
            "last_error": failure.reason,
            "lease_token": None,
            "lease_expires_at": None,
            "processed_by": self.name,
        }
        if status == JobStatus.QUEUED:
            delay = states.job_retry_delay(settings.retry_delay_seconds, claimed.attempts)
            values["next_attempt_at"] = now + dt.timedelta(seconds=delay)
        else:
            values["finished_at"] = now
        with self._db.begin() as connection:
            changed = connection.execute(update(JOBS).where(held(JOBS, claimed, JobStatus.RUNNING)).values(**values))
        if changed.rowcount != 1:
            LOGGER.warning("job %d: lease lost before its failure could be recorded", job.id)
            return JobResult(job.id, "lease-lost", failure.reason)
        if status == JobStatus.QUEUED:
            LOGGER.warning(
                "job %d attempt %d of %d failed, retrying in %.0f s: %s",
                job.id,
                claimed.attempts,
                settings.max_attempts,
                states.job_retry_delay(settings.retry_delay_seconds, claimed.attempts),
                failure.reason,
            )
        elif status == JobStatus.SUPERSEDED:
            LOGGER.info("job %d superseded: %s", job.id, failure.reason)
        else:
            LOGGER.error("job %d FAILED after %d attempt(s): %s", job.id, claimed.attempts, failure.reason)
        self._observer.job_finished(job.id, job.study_instance_uid, job_outcome(status), None)
        return JobResult(job.id, status, failure.reason)


def job_outcome(status: str) -> str:
    """The observers' word for how an attempt ended: ``done``, ``failed`` (queued again), ``dead`` (failed for
    good) or ``superseded`` (a newer analysis of the study replaces it)."""
    if status == JobStatus.QUEUED:
        return "failed"
    if status == JobStatus.FAILED:
        return "dead"
    return str(status)


def encode_settings(db: Engine, settings: Settings) -> dicom_sr.EncodeSettings:
    """How this installation encodes: its installation id (kept in the database) and the site's UID
    root go into every output UID; the Device Serial Number is the installation id."""
    return dicom_sr.EncodeSettings(installation_id=installation_id(db), uid_root=settings.dicom.uid_root)


def analysis_failure(exc: InferenceError) -> JobFailure:
    """How a job records the engine's error: an input error (the same image fails on every try) is
    permanent and names the image; anything else is the model's, and is retried."""
    if isinstance(exc, InputImageError):
        detail = " ".join(str(exc).split())  # one line: the log's and `gazex jobs`' own
        uid = exc.sop_instance_uid
        if uid and uid not in detail:
            detail = f"SOP instance {uid}: {detail}"
        return JobFailure(f"input error: {detail}", permanent=True)
    return JobFailure(f"model error: {exc}")


def _unusable(analysis: StudyAnalysis, datasets: Sequence[Dataset]) -> str | None:
    """Why an analysis cannot be used for these sources (the engine's output is untrusted), or None."""
    sent = {str(ds.SOPInstanceUID) for ds in datasets}
    got = [image.sop_instance_uid for image in analysis.images]
    if not got:
        return "it analysed no image"
    unknown = sorted(set(got) - sent)
    if unknown:
        return f"it describes image(s) that were not given: {', '.join(unknown)}"
    if len(set(got)) != len(got):
        return "it describes an image twice"
    study = {str(ds.StudyInstanceUID) for ds in datasets}
    if analysis.study_instance_uid not in study:
        return f"it names study {analysis.study_instance_uid}, not the one analysed"
    return None
