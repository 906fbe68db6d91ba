"""Prometheus metrics: event counters from the observers, and the queue and disk read at scrape time.

:class:`GatewayMetrics` is a :class:`~gateway.events.GatewayObserver` with its own
``CollectorRegistry`` (never the client library's global one), so several gateways (or tests) in
one process never share counts.  The counters count what this process saw; the queue, state and
disk gauges are read from the database and the file systems at each scrape, so they include the
work of separate ``gazex worker`` processes.  :func:`render` gives the body and content type of
``GET /metrics``.

Labels are bounded sets (outcomes, reasons, statuses, states); no UID, AE title or patient
datum is ever a label.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine, and_, func, select
from sqlalchemy.exc import SQLAlchemyError

from gateway import __version__
from gateway.events import REJECTION_REASONS, AssociationInfo, DeliveryInfo, GatewayObserver, ReceivedInstance
from gateway.pipeline.states import DeliveryStatus, JobStatus
from gateway.pipeline.tables import DELIVERIES, INSTANCES, JOBS, OUTPUTS, SERIES, STATES

LOGGER = logging.getLogger(__name__)

#: Analysis duration buckets, seconds: 0.1 s to 10 min.
ANALYSIS_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
JOB_OUTCOMES = ("done", "failed", "dead", "superseded", "cancelled")
DELIVERY_OUTCOMES = ("delivered", "retry", "dead")


def store_status_label(status: int) -> str:
    """A C-STORE status as a label: ``0xA700``."""
    return f"0x{status:04X}"


class GatewayMetrics(GatewayObserver):
    """The gateway's metrics; add it to the runtime's :class:`~gateway.events.Observers`.

    ``engine``: the database for the queue and state gauges (None: not exported).  ``spool_path``
    and ``outbox_path``: the directories whose file systems' free space is exported.
    ``model_loaded``: tells whether the model is loaded (None: not exported).
    """

    def __init__(
        self,
        *,
        engine: Engine | None = None,
        spool_path: Path | None = None,
        outbox_path: Path | None = None,
        model_loaded: Callable[[], bool] | None = None,
        version: str = __version__,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.associations = Counter(
            "gazex_associations",
            "DICOM associations: accepted, or rejected by reason",
            ["outcome", "reason"],
            registry=registry,
        )
        self.associations.labels("accepted", "none")
        for reason in REJECTION_REASONS:
            self.associations.labels("rejected", reason)
        self.instances = Counter(
            "gazex_instances_received", "instances stored (C-STORE, STOW-RS, pulls)", registry=registry
        )
        self.bytes = Counter(
            "gazex_received_bytes", "bytes of the instances stored (C-STORE, STOW-RS, pulls)", registry=registry
        )
        self.store_failures = Counter(
            "gazex_store_failures", "C-STOREs answered with a failure status", ["status"], registry=registry
        )
        self.studies = Counter("gazex_studies_completed", "studies found complete", registry=registry)
        self.jobs = Counter("gazex_jobs", "analysis job attempts ended, by outcome", ["outcome"], registry=registry)
        for outcome in JOB_OUTCOMES:
            self.jobs.labels(outcome)
        self.analysis_seconds = Histogram(
            "gazex_analysis_duration_seconds",
            "the model's analysis time per job",
            buckets=ANALYSIS_BUCKETS,
            registry=registry,
        )
        self.deliveries = Counter(
            "gazex_deliveries", "delivery attempts ended, by outcome", ["outcome"], registry=registry
        )
        for outcome in DELIVERY_OUTCOMES:
            self.deliveries.labels(outcome)
        self.delivery_retries = Counter(
            "gazex_delivery_retries", "delivery attempts after a delivery's first (retries)", registry=registry
        )
        self.state = StateCollector(
            engine=engine,
            spool_path=spool_path,
            outbox_path=outbox_path,
            model_loaded=model_loaded,
            version=version,
            now=now,
        )
        registry.register(self.state)

    # -- the events -------------------------------------------------------------------------
    def association_accepted(self, association: AssociationInfo) -> None:
        self.associations.labels("accepted", "none").inc()

    def association_rejected(self, association: AssociationInfo, reason: str, detail: str) -> None:
        self.associations.labels("rejected", reason if reason in REJECTION_REASONS else "admission_error").inc()

    def instance_stored(self, association: AssociationInfo | None, instance: ReceivedInstance) -> None:
        self.instances.inc()
        self.bytes.inc(instance.size)

    def instance_refused(self, association: AssociationInfo | None, status: int) -> None:
        self.store_failures.labels(store_status_label(status)).inc()

    def study_completed(self, study_instance_uid: str, instances: int) -> None:
        self.studies.inc()

    def job_finished(self, job_id: int, study_instance_uid: str, outcome: str, seconds: float | None) -> None:
        self.jobs.labels(outcome if outcome in JOB_OUTCOMES else "failed").inc()
        if seconds is not None:
            self.analysis_seconds.observe(seconds)

    def delivery_finished(self, delivery: DeliveryInfo, outcome: str) -> None:
        self.deliveries.labels(outcome if outcome in DELIVERY_OUTCOMES else "retry").inc()
        if delivery.attempts > 1:
            self.delivery_retries.inc()


class StateCollector(Collector):
    """What is read at scrape time: queues and states from the database, bytes and free disk, model, build."""

    def __init__(
        self,
        *,
        engine: Engine | None,
        spool_path: Path | None,
        outbox_path: Path | None,
        model_loaded: Callable[[], bool] | None,
        version: str,
        now: Callable[[], datetime],
    ) -> None:
        self._engine = engine
        self._paths = {"spool": spool_path, "outbox": outbox_path}
        self._model_loaded = model_loaded
        self._version = version
        self._now = now

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())  # computed at scrape time: no fixed description

    def collect(self) -> Iterator[GaugeMetricFamily | InfoMetricFamily]:
        build = InfoMetricFamily("gazex_build", "the gateway's version")
        build.add_metric([], {"version": self._version})
        yield build
        if self._model_loaded is not None:
            yield GaugeMetricFamily("gazex_model_loaded", "1 when the model is loaded", value=int(self._model_loaded()))
        yield from self._disk()
        if self._engine is not None:
            yield from self._database(self._engine)

    def _disk(self) -> Iterator[GaugeMetricFamily]:
        free = GaugeMetricFamily(
            "gazex_disk_free_bytes", "free bytes on the file system of the spool or the outbox", labels=["volume"]
        )
        for volume, path in self._paths.items():
            if path is None:
                continue
            try:
                free.add_metric([volume], float(shutil.disk_usage(_existing(path)).free))
            except OSError as exc:
                LOGGER.warning("metrics: free disk of the %s unknown: %s", volume, exc.strerror or type(exc).__name__)
        yield free

    def _database(self, engine: Engine) -> Iterator[GaugeMetricFamily]:
        started = time.perf_counter()
        up = GaugeMetricFamily("gazex_database_up", "1 when the database answered this scrape")
        try:
            facts = read_state(engine)
        except SQLAlchemyError as exc:  # the message may quote values: the type only
            LOGGER.error("metrics: the database did not answer: %s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        now = self._now()
        yield _by_state("gazex_jobs_by_state", "analysis jobs in each state", facts.jobs, list(JobStatus))
        yield _by_state("gazex_deliveries_by_state", "deliveries in each state", facts.deliveries, list(DeliveryStatus))
        depth = GaugeMetricFamily("gazex_queue_depth", "jobs queued and deliveries pending", labels=["queue"])
        depth.add_metric(["jobs"], facts.jobs.get(JobStatus.QUEUED, 0))
        depth.add_metric(["deliveries"], facts.deliveries.get(DeliveryStatus.PENDING, 0))
        yield depth
        oldest = GaugeMetricFamily(
            "gazex_queue_oldest_age_seconds",
            "age of the oldest queued job or pending delivery (0 when none)",
            labels=["queue"],
        )
        for queue, created in (("jobs", facts.oldest_job), ("deliveries", facts.oldest_delivery)):
            oldest.add_metric([queue], max(0.0, (now - created).total_seconds()) if created is not None else 0.0)
        yield oldest
        stored = GaugeMetricFamily(
            "gazex_stored_bytes", "bytes of the files kept in the spool or the outbox, as indexed", labels=["volume"]
        )
        stored.add_metric(["spool"], facts.spool_bytes)
        stored.add_metric(["outbox"], facts.outbox_bytes)
        yield stored
        yield GaugeMetricFamily(
            "gazex_metrics_database_seconds",
            "time the database queries of this scrape took",
            value=time.perf_counter() - started,
        )


class StateFacts:
    """The database's part of a scrape."""

    def __init__(
        self,
        jobs: dict[str, int],
        deliveries: dict[str, int],
        oldest_job: datetime | None,
        oldest_delivery: datetime | None,
        spool_bytes: int,
        outbox_bytes: int,
    ) -> None:
        self.jobs = jobs
        self.deliveries = deliveries
        self.oldest_job = oldest_job
        self.oldest_delivery = oldest_delivery
        self.spool_bytes = spool_bytes
        self.outbox_bytes = outbox_bytes


def read_state(engine: Engine) -> StateFacts:
    """Counts by state, the oldest waiting job and delivery, and the indexed bytes (one read transaction)."""
    with engine.connect() as connection:
        jobs = {
            str(row.status): int(row.n)
            for row in connection.execute(select(JOBS.c.status, func.count().label("n")).group_by(JOBS.c.status)).all()
        }
        deliveries = {
            str(row.status): int(row.n)
            for row in connection.execute(
                select(DELIVERIES.c.status, func.count().label("n")).group_by(DELIVERIES.c.status)
            ).all()
        }
        oldest_job = connection.execute(
            select(func.min(JOBS.c.created_at)).where(JOBS.c.status == JobStatus.QUEUED)
        ).scalar_one_or_none()
        oldest_delivery = connection.execute(
            select(func.min(DELIVERIES.c.created_at)).where(DELIVERIES.c.status == DeliveryStatus.PENDING)
        ).scalar_one_or_none()
        spool_bytes = connection.execute(
            select(func.coalesce(func.sum(INSTANCES.c.file_size), 0))
            .select_from(
                INSTANCES.join(SERIES, SERIES.c.id == INSTANCES.c.series_pk).outerjoin(
                    STATES, STATES.c.study_pk == SERIES.c.study_pk
                )
            )
            .where(STATES.c.purged_at.is_(None))
        ).scalar_one()
        outbox_bytes = connection.execute(
            select(func.coalesce(func.sum(OUTPUTS.c.file_size), 0)).where(and_(OUTPUTS.c.purged_at.is_(None)))
        ).scalar_one()
    return StateFacts(
        jobs,
        deliveries,
        _aware(oldest_job),
        _aware(oldest_delivery),
        int(spool_bytes),
        int(outbox_bytes),
    )


def _aware(value: datetime | None) -> datetime | None:
    """Aware UTC (the column type makes it so; a naive value is UTC)."""
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _by_state(name: str, documentation: str, counts: dict[str, int], states: Sequence[str]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=["state"])
    for state in sorted({str(state) for state in states} | set(counts)):
        family.add_metric([state], counts.get(state, 0))
    return family


def _existing(path: Path) -> Path:
    """The path, or its nearest existing parent (an outbox not created yet is on its parent's file system)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return path


def render(metrics: GatewayMetrics) -> tuple[bytes, str]:
    """The body and content type of ``GET /metrics`` (Prometheus text format)."""
    return generate_latest(metrics.registry), CONTENT_TYPE_LATEST
