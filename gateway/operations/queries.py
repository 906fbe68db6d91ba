"""Read-only views of the gateway's work, for the API and the console: studies, jobs, deliveries
and the dashboard, with filters and paging (newest first).

Every function takes the database engine (and, where files are read, the settings) and returns
frozen dataclasses; nothing here writes.  A study's *state* is one code of :data:`STUDY_STATES`
computed in SQL (so it can be filtered and paged), and its words are those of ``gazex studies``
(:func:`gateway.pipeline.status.study_state`).  No patient data is logged: filters on the
accession number are applied, never written anywhere.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Generic, TypeVar

import pydicom
from pydicom.errors import InvalidDicomError
from sqlalchemy import ColumnElement, Engine, Select, and_, case, exists, func, or_, select

from gateway.config import Settings
from gateway.operations.errors import OperationError
from gateway.pipeline.states import DeliveryStatus, JobStatus
from gateway.pipeline.status import delivery_select, model_label, study_state
from gateway.pipeline.tables import (
    DELIVERIES,
    DELIVERY_ITEMS,
    INSTANCES,
    JOB_INSTANCES,
    JOBS,
    OUTPUTS,
    SERIES,
    STATES,
    STUDIES,
)
from gateway.spool import resolve_in

LOGGER = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500

#: A study's state, as a code: what the API filters on.  Words for people: ``StudySummary.state_label``.
STUDY_STATES: tuple[str, ...] = (
    "receiving",  # instances arrive; not complete yet
    "reopened",  # more instances arrived after it was complete
    "not_routed",  # complete, and no rule takes it (``routing_reason`` says why)
    "queued",  # its job waits for a worker
    "analysing",  # a worker runs its job
    "failed",  # its job failed
    "analysed",  # analysed, no destination: results stay in the outbox
    "delivering",  # analysed; some deliveries are not done yet
    "delivered",  # every delivery delivered
    "delivery_dead",  # a delivery is dead-lettered (retry it)
    "superseded",  # its latest job was superseded
    "cancelled",  # its latest job was cancelled
    "complete",  # complete, no job recorded
)


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing: ``total`` counts every match, not only this page's items."""

    items: list[T]
    total: int
    page: int
    page_size: int


@dataclass(frozen=True)
class StudySummary:
    study_instance_uid: str
    accession_number: str | None
    study_date: str | None
    study_description: str | None
    modalities: list[str]
    calling_ae_titles: list[str]
    series: int
    instances: int
    first_received_at: datetime
    last_received_at: datetime
    state: str
    state_label: str
    files_purged: bool
    rule: str | None
    job_id: int | None
    detail: str


@dataclass(frozen=True)
class SeriesSummary:
    series_instance_uid: str
    modality: str | None
    body_part_examined: str | None
    series_description: str | None
    series_number: int | None
    instances: int
    first_received_at: datetime
    last_received_at: datetime


@dataclass(frozen=True)
class TimelineEvent:
    """One step of a study's way through the gateway: ``received``, ``complete``, ``routed``, ..."""

    event: str
    at: datetime
    detail: str = ""


@dataclass(frozen=True)
class JobSummary:
    id: int
    study_instance_uid: str
    status: str
    attempts: int
    rule: str
    outputs: list[str]
    destinations: list[str]
    model: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    next_attempt_at: datetime | None
    processed_by: str | None
    last_error: str | None
    findings_present: int | None
    analysis_seconds: float | None
    omissions: str | None
    predecessor_job_id: int | None


@dataclass(frozen=True)
class DeliverySummary:
    id: int
    job_id: int
    study_instance_uid: str
    destination: str
    status: str
    acknowledged: int
    total: int
    attempts: int
    next_attempt_at: datetime | None  # when pending: the next attempt
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None
    last_error: str | None


@dataclass(frozen=True)
class StudyDetail:
    study: StudySummary
    routing_reason: str | None
    completion_reason: str | None
    completions: int
    series: list[SeriesSummary]
    timeline: list[TimelineEvent]
    jobs: list[JobSummary]
    deliveries: list[DeliverySummary]
    report: str | None = None  # the report text of the latest analysis, from its SR in the outbox
    report_job_id: int | None = None
    report_note: str | None = None  # why there is no report text, when there is none


@dataclass(frozen=True)
class JobInstanceSummary:
    sop_instance_uid: str
    role: str  # "analyze" | "context"


@dataclass(frozen=True)
class OutputSummary:
    id: int
    kind: str
    sop_class_uid: str
    sop_instance_uid: str
    series_instance_uid: str
    file_size: int
    created_at: datetime
    purged: bool


@dataclass(frozen=True)
class JobDetail:
    job: JobSummary
    instances: list[JobInstanceSummary]
    outputs: list[OutputSummary]
    deliveries: list[DeliverySummary]


@dataclass(frozen=True)
class DeliveryItemSummary:
    output_id: int
    kind: str
    sop_instance_uid: str
    status: str
    status_code: int | None
    sends: int
    acknowledged_at: datetime | None
    last_error: str | None


@dataclass(frozen=True)
class DeliveryDetail:
    delivery: DeliverySummary
    items: list[DeliveryItemSummary]


@dataclass(frozen=True)
class QueueSummary:
    jobs_queued: int
    jobs_running: int
    oldest_queued_seconds: float | None
    deliveries_pending: int
    deliveries_sending: int
    oldest_pending_delivery_seconds: float | None


@dataclass(frozen=True)
class RecentSummary:
    """What happened in the last 24 hours."""

    studies_received: int
    jobs_done: int
    jobs_failed: int
    deliveries_delivered: int
    deliveries_dead: int
    studies_not_routed: int


@dataclass(frozen=True)
class DiskSummary:
    name: str  # "spool" | "outbox"
    path: str
    free_bytes: int | None
    total_bytes: int | None
    reserve_bytes: int
    below_reserve: bool
    detail: str = ""


@dataclass(frozen=True)
class Dashboard:
    generated_at: datetime
    studies_by_state: dict[str, int]
    jobs_by_status: dict[str, int]
    deliveries_by_status: dict[str, int]
    queue: QueueSummary
    last_24h: RecentSummary
    disks: list[DiskSummary] = field(default_factory=list)


# -- paging and filters ---------------------------------------------------------------------


def check_page(page: int, page_size: int) -> None:
    if page < 1:
        raise OperationError(f"page must be 1 or more, not {page}", "invalid")
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise OperationError(f"page_size must be between 1 and {MAX_PAGE_SIZE}, not {page_size}", "invalid")


def _paged(db: Engine, query: Select[Any], page: int, page_size: int) -> tuple[list[Any], int]:
    check_page(page, page_size)
    with db.connect() as connection:
        total = int(connection.execute(select(func.count()).select_from(query.order_by(None).subquery())).scalar_one())
        rows = list(connection.execute(query.limit(page_size).offset((page - 1) * page_size)).all())
    return rows, total


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _contains(column: Any, text: str) -> ColumnElement[bool]:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return func.lower(func.coalesce(column, "")).like(f"%{escaped.lower()}%", escape="\\")


def _choice(name: str, value: str | None, allowed: Sequence[str]) -> None:
    if value is not None and value not in allowed:
        raise OperationError(f"{name} {value!r} is not known; choose from {', '.join(allowed)}", "invalid")


# -- studies --------------------------------------------------------------------------------


def _delivery_counts() -> Any:
    return (
        select(
            DELIVERIES.c.job_pk,
            func.count().label("total"),
            func.sum(case((DELIVERIES.c.status == DeliveryStatus.DEAD, 1), else_=0)).label("dead"),
            func.sum(case((DELIVERIES.c.status == DeliveryStatus.DELIVERED, 1), else_=0)).label("delivered"),
        )
        .group_by(DELIVERIES.c.job_pk)
        .subquery()
    )


def _study_select() -> tuple[Select[Any], ColumnElement[str]]:
    """Studies with their state row, latest job and delivery counts, and the state code as SQL."""
    counts = (
        select(
            SERIES.c.study_pk,
            func.count(INSTANCES.c.id).label("instances"),
            func.count(func.distinct(SERIES.c.id)).label("series"),
        )
        .join(INSTANCES, INSTANCES.c.series_pk == SERIES.c.id)
        .group_by(SERIES.c.study_pk)
        .subquery()
    )
    deliveries = _delivery_counts()
    pending = or_(
        STATES.c.id.is_(None),
        STATES.c.completed_through.is_(None),
        STUDIES.c.last_received_at > STATES.c.completed_through,
    )
    done = JOBS.c.status == JobStatus.DONE
    total = func.coalesce(deliveries.c.total, 0)
    state: ColumnElement[str] = case(
        (and_(pending, STATES.c.routing.is_(None)), "receiving"),
        (pending, "reopened"),
        (STATES.c.routing == "not_routed", "not_routed"),
        (JOBS.c.status == JobStatus.QUEUED, "queued"),
        (JOBS.c.status == JobStatus.RUNNING, "analysing"),
        (JOBS.c.status == JobStatus.FAILED, "failed"),
        (and_(done, total == 0), "analysed"),
        (and_(done, deliveries.c.dead > 0), "delivery_dead"),
        (and_(done, deliveries.c.delivered == total), "delivered"),
        (done, "delivering"),
        else_=func.coalesce(JOBS.c.status, "complete"),
    )
    query = select(
        STUDIES.c.id,
        STUDIES.c.study_instance_uid,
        STUDIES.c.accession_number,
        STUDIES.c.study_date,
        STUDIES.c.study_description,
        STUDIES.c.first_received_at,
        STUDIES.c.last_received_at,
        func.coalesce(counts.c.instances, 0).label("instances"),
        func.coalesce(counts.c.series, 0).label("series_count"),
        pending.label("pending"),
        STATES.c.routing,
        STATES.c.rule,
        STATES.c.reason,
        STATES.c.job_pk,
        STATES.c.purged_at,
        STATES.c.completion_reason,
        STATES.c.completions,
        STATES.c.completed_at,
        JOBS.c.status.label("job_status"),
        JOBS.c.last_error.label("job_error"),
        func.coalesce(deliveries.c.total, 0).label("deliveries_total"),
        func.coalesce(deliveries.c.dead, 0).label("deliveries_dead"),
        func.coalesce(deliveries.c.delivered, 0).label("deliveries_delivered"),
        state.label("state"),
    ).select_from(
        STUDIES.outerjoin(STATES, STATES.c.study_pk == STUDIES.c.id)
        .outerjoin(counts, counts.c.study_pk == STUDIES.c.id)
        .outerjoin(JOBS, JOBS.c.id == STATES.c.job_pk)
        .outerjoin(deliveries, deliveries.c.job_pk == STATES.c.job_pk)
    )
    return query, state


def _state_label(row: Any) -> str:
    total, dead, delivered = int(row.deliveries_total), int(row.deliveries_dead), int(row.deliveries_delivered)
    statuses = (
        [DeliveryStatus.DEAD] * dead
        + [DeliveryStatus.DELIVERED] * delivered
        + [DeliveryStatus.PENDING] * (total - dead - delivered)
    )
    return study_state(bool(row.pending), row.routing, row.job_status, list(statuses), row.purged_at is not None)


def _study_extras(db: Engine, study_pks: list[int]) -> dict[int, tuple[list[str], list[str]]]:
    """Per study: its modalities and the AE titles that sent it, sorted."""
    if not study_pks:
        return {}
    with db.connect() as connection:
        rows = connection.execute(
            select(SERIES.c.study_pk, SERIES.c.modality, INSTANCES.c.calling_ae_title)
            .join(INSTANCES, INSTANCES.c.series_pk == SERIES.c.id)
            .where(SERIES.c.study_pk.in_(study_pks))
            .distinct()
        ).all()
    found: dict[int, tuple[set[str], set[str]]] = {pk: (set(), set()) for pk in study_pks}
    for row in rows:
        modalities, callers = found[int(row.study_pk)]
        if row.modality:
            modalities.add(row.modality)
        callers.add(row.calling_ae_title)
    return {pk: (sorted(m), sorted(c)) for pk, (m, c) in found.items()}


def _study_summary(row: Any, extras: tuple[list[str], list[str]]) -> StudySummary:
    detail = row.reason or ""
    if row.job_status == JobStatus.FAILED and row.job_error:
        detail = row.job_error
    return StudySummary(
        study_instance_uid=row.study_instance_uid,
        accession_number=row.accession_number,
        study_date=row.study_date,
        study_description=row.study_description,
        modalities=extras[0],
        calling_ae_titles=extras[1],
        series=int(row.series_count),
        instances=int(row.instances),
        first_received_at=row.first_received_at,
        last_received_at=row.last_received_at,
        state=row.state,
        state_label=_state_label(row),
        files_purged=row.purged_at is not None,
        rule=row.rule,
        job_id=int(row.job_pk) if row.job_pk is not None else None,
        detail=detail,
    )


def list_studies(
    db: Engine,
    *,
    state: str | None = None,
    calling_ae: str | None = None,
    modality: str | None = None,
    received_since: datetime | None = None,
    received_until: datetime | None = None,
    text: str | None = None,
    page: int = 1,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> Page[StudySummary]:
    """Studies, most recently received first.

    ``received_since``/``received_until`` bound the study's last reception; ``text`` matches part
    of the Study Instance UID or the accession number (case-insensitive); ``calling_ae`` and
    ``modality`` match any instance or series of the study.
    """
    _choice("state", state, STUDY_STATES)
    query, state_column = _study_select()
    if state is not None:
        query = query.where(state_column == state)
    if calling_ae is not None:
        query = query.where(
            exists(
                select(INSTANCES.c.id)
                .join(SERIES, INSTANCES.c.series_pk == SERIES.c.id)
                .where(and_(SERIES.c.study_pk == STUDIES.c.id, INSTANCES.c.calling_ae_title == calling_ae.strip()))
            )
        )
    if modality is not None:
        query = query.where(
            exists(
                select(SERIES.c.id).where(
                    and_(
                        SERIES.c.study_pk == STUDIES.c.id,
                        func.upper(SERIES.c.modality) == modality.strip().upper(),
                    )
                )
            )
        )
    if received_since is not None:
        query = query.where(STUDIES.c.last_received_at >= _utc(received_since))
    if received_until is not None:
        query = query.where(STUDIES.c.last_received_at <= _utc(received_until))
    if text is not None and text.strip():
        query = query.where(
            or_(
                _contains(STUDIES.c.study_instance_uid, text.strip()),
                _contains(STUDIES.c.accession_number, text.strip()),
            )
        )
    query = query.order_by(STUDIES.c.last_received_at.desc(), STUDIES.c.id.desc())
    rows, total = _paged(db, query, page, page_size)
    extras = _study_extras(db, [int(row.id) for row in rows])
    return Page([_study_summary(row, extras[int(row.id)]) for row in rows], total, page, page_size)


def study_detail(db: Engine, study_instance_uid: str, settings: Settings | None = None) -> StudyDetail:
    """One study: state, series, timeline, jobs, deliveries and (with ``settings``) the latest report text."""
    query, _ = _study_select()
    with db.connect() as connection:
        row = connection.execute(query.where(STUDIES.c.study_instance_uid == study_instance_uid)).first()
    if row is None:
        raise OperationError(f"no study {study_instance_uid} was received", "not_found")
    study_pk = int(row.id)
    summary = _study_summary(row, _study_extras(db, [study_pk])[study_pk])
    with db.connect() as connection:
        series_rows = connection.execute(
            select(
                SERIES.c.series_instance_uid,
                SERIES.c.modality,
                SERIES.c.body_part_examined,
                SERIES.c.series_description,
                SERIES.c.series_number,
                SERIES.c.first_received_at,
                SERIES.c.last_received_at,
                func.count(INSTANCES.c.id).label("instances"),
            )
            .outerjoin(INSTANCES, INSTANCES.c.series_pk == SERIES.c.id)
            .where(SERIES.c.study_pk == study_pk)
            .group_by(SERIES.c.id)
            .order_by(SERIES.c.series_number, SERIES.c.id)
        ).all()
    series = [
        SeriesSummary(
            series_instance_uid=s.series_instance_uid,
            modality=s.modality,
            body_part_examined=s.body_part_examined,
            series_description=s.series_description,
            series_number=s.series_number,
            instances=int(s.instances),
            first_received_at=s.first_received_at,
            last_received_at=s.last_received_at,
        )
        for s in series_rows
    ]
    jobs = _jobs(db, JOBS.c.study_pk == study_pk)
    deliveries = _deliveries(db, JOBS.c.study_pk == study_pk)
    report, report_job, note = (None, None, None)
    if settings is not None:
        report, report_job, note = latest_report(db, settings, study_pk)
    return StudyDetail(
        study=summary,
        routing_reason=row.reason,
        completion_reason=row.completion_reason,
        completions=int(row.completions or 0),
        series=series,
        timeline=_timeline(row, jobs, deliveries),
        jobs=jobs,
        deliveries=deliveries,
        report=report,
        report_job_id=report_job,
        report_note=note,
    )


def _timeline(row: Any, jobs: list[JobSummary], deliveries: list[DeliverySummary]) -> list[TimelineEvent]:
    events = [TimelineEvent("received", row.first_received_at, "first instance")]
    if row.last_received_at != row.first_received_at:
        events.append(TimelineEvent("last received", row.last_received_at, f"{int(row.instances)} instance(s)"))
    if row.completed_at is not None:
        events.append(TimelineEvent("complete", row.completed_at, row.completion_reason or ""))
        if row.routing == "not_routed":
            events.append(TimelineEvent("not routed", row.completed_at, row.reason or ""))
    for job in sorted(jobs, key=lambda job: job.id):
        events.append(TimelineEvent("routed", job.created_at, f"job {job.id} queued by rule {job.rule}"))
        if job.started_at is not None:
            events.append(TimelineEvent("analysis started", job.started_at, f"job {job.id}, attempt {job.attempts}"))
        if job.finished_at is not None:
            name = "analysed" if job.status == JobStatus.DONE else job.status
            what = f"job {job.id}" + (f": {job.last_error}" if job.last_error and name != "analysed" else "")
            events.append(TimelineEvent(name, job.finished_at, what))
    for delivery in deliveries:
        if delivery.delivered_at is not None:
            events.append(TimelineEvent("delivered", delivery.delivered_at, f"to {delivery.destination}"))
        elif delivery.status == DeliveryStatus.DEAD:
            events.append(
                TimelineEvent("delivery dead", delivery.updated_at, f"to {delivery.destination}: {delivery.last_error}")
            )
    return sorted(events, key=lambda event: event.at)


def latest_report(db: Engine, settings: Settings, study_pk: int) -> tuple[str | None, int | None, str | None]:
    """The report text of the study's latest finished analysis, read from its SR in the outbox:
    (text, job id, None), or (None, job id or None, why not)."""
    with db.connect() as connection:
        job_id = connection.execute(
            select(JOBS.c.id)
            .where(and_(JOBS.c.study_pk == study_pk, JOBS.c.status == JobStatus.DONE))
            .order_by(JOBS.c.id.desc())
            .limit(1)
        ).scalar_one_or_none()
        if job_id is None:
            return None, None, "the study has no finished analysis"
        outputs = connection.execute(
            select(OUTPUTS.c.kind, OUTPUTS.c.file_path, OUTPUTS.c.purged_at)
            .where(and_(OUTPUTS.c.job_pk == job_id, OUTPUTS.c.kind.in_(["sr", "text_sr"])))
            .order_by(OUTPUTS.c.id)
        ).all()
    if not outputs:
        return None, int(job_id), "the analysis made no SR (its rule's outputs)"
    for output in sorted(outputs, key=lambda o: 0 if o.kind == "sr" else 1):
        if output.purged_at is not None:
            continue
        try:
            dataset = pydicom.dcmread(resolve_in(settings.storage.outbox_path, output.file_path))
        except (FileNotFoundError, InvalidDicomError, OSError, ValueError, EOFError) as exc:
            LOGGER.warning("job %d: its SR in the outbox cannot be read (%s)", job_id, type(exc).__name__)
            continue
        text = report_text(dataset)
        if text:
            return text, int(job_id), None
    return None, int(job_id), "the SR is no longer in the outbox (purged by retention) or has no report text"


def report_text(dataset: pydicom.Dataset) -> str:
    """The report of one of our SRs: the TID 1500 SR's "Findings" text, else the Basic Text SR's sentences."""
    from gateway.demo.results import read_sr

    content = read_sr(dataset)
    if content.report:
        return content.report
    sentences: list[str] = []

    def walk(items: Any, inside_findings: bool) -> None:
        for item in items or []:
            names = item.get("ConceptNameCodeSequence") or []
            name = str(names[0].CodeMeaning) if names else ""
            if inside_findings and item.get("ValueType") == "TEXT":
                sentences.append(str(item.TextValue))
            walk(item.get("ContentSequence"), inside_findings or name == "Findings")

    walk(dataset.get("ContentSequence"), False)
    return " ".join(sentences)


# -- jobs -----------------------------------------------------------------------------------


def _job_summary(row: Any) -> JobSummary:
    return JobSummary(
        id=int(row.id),
        study_instance_uid=row.study_instance_uid,
        status=row.status,
        attempts=int(row.attempts),
        rule=row.rule,
        outputs=[kind for kind in row.outputs.split(",") if kind],
        destinations=[name for name in row.destinations.split(",") if name],
        model=model_label(row.model_name, row.model_version, row.model_backend, row.model_ref),
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        next_attempt_at=row.next_attempt_at if row.status == JobStatus.QUEUED else None,
        processed_by=row.processed_by or row.lease_owner,
        last_error=row.last_error,
        findings_present=row.findings_present,
        analysis_seconds=row.analysis_seconds,
        omissions=row.omissions,
        predecessor_job_id=row.predecessor_job_pk,
    )


def _jobs(db: Engine, condition: ColumnElement[bool]) -> list[JobSummary]:
    with db.connect() as connection:
        rows = connection.execute(select(JOBS).where(condition).order_by(JOBS.c.id.desc())).all()
    return [_job_summary(row) for row in rows]


def list_jobs(
    db: Engine,
    *,
    status: str | None = None,
    study_instance_uid: str | None = None,
    page: int = 1,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> Page[JobSummary]:
    """Jobs, newest first; ``status`` is one of :class:`JobStatus`."""
    _choice("status", status, [s.value for s in JobStatus])
    query = select(JOBS).order_by(JOBS.c.id.desc())
    if status is not None:
        query = query.where(JOBS.c.status == status)
    if study_instance_uid is not None:
        query = query.where(JOBS.c.study_instance_uid == study_instance_uid)
    rows, total = _paged(db, query, page, page_size)
    return Page([_job_summary(row) for row in rows], total, page, page_size)


def job(db: Engine, job_id: int) -> JobSummary:
    found = _jobs(db, JOBS.c.id == job_id)
    if not found:
        raise OperationError(f"there is no job {job_id}", "not_found")
    return found[0]


def job_detail(db: Engine, job_id: int) -> JobDetail:
    """One job with the instances it takes, the outputs it wrote and their deliveries."""
    summary = job(db, job_id)
    with db.connect() as connection:
        instances = connection.execute(
            select(JOB_INSTANCES.c.sop_instance_uid, JOB_INSTANCES.c.role)
            .where(JOB_INSTANCES.c.job_pk == job_id)
            .order_by(JOB_INSTANCES.c.id)
        ).all()
        outputs = connection.execute(select(OUTPUTS).where(OUTPUTS.c.job_pk == job_id).order_by(OUTPUTS.c.id)).all()
    return JobDetail(
        job=summary,
        instances=[JobInstanceSummary(row.sop_instance_uid, row.role) for row in instances],
        outputs=[
            OutputSummary(
                id=int(row.id),
                kind=row.kind,
                sop_class_uid=row.sop_class_uid,
                sop_instance_uid=row.sop_instance_uid,
                series_instance_uid=row.series_instance_uid,
                file_size=int(row.file_size),
                created_at=row.created_at,
                purged=row.purged_at is not None,
            )
            for row in outputs
        ],
        deliveries=_deliveries(db, DELIVERIES.c.job_pk == job_id),
    )


# -- deliveries -----------------------------------------------------------------------------


def _delivery_summary(row: Any) -> DeliverySummary:
    return DeliverySummary(
        id=int(row.id),
        job_id=int(row.job_pk),
        study_instance_uid=row.study_instance_uid,
        destination=row.destination,
        status=row.status,
        acknowledged=int(row.acknowledged),
        total=int(row.total),
        attempts=int(row.attempts),
        next_attempt_at=row.next_attempt_at if row.status == DeliveryStatus.PENDING else None,
        created_at=row.created_at,
        updated_at=row.updated_at,
        delivered_at=row.delivered_at,
        last_error=row.last_error,
    )


def _deliveries(db: Engine, condition: ColumnElement[bool]) -> list[DeliverySummary]:
    with db.connect() as connection:
        rows = connection.execute(delivery_select().where(condition).order_by(DELIVERIES.c.id.desc())).all()
    return [_delivery_summary(row) for row in rows]


def list_deliveries(
    db: Engine,
    *,
    status: str | None = None,
    destination: str | None = None,
    job_id: int | None = None,
    study_instance_uid: str | None = None,
    page: int = 1,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> Page[DeliverySummary]:
    """Deliveries, newest first; ``status`` is one of :class:`DeliveryStatus` (``dead``: the dead letters)."""
    _choice("status", status, [s.value for s in DeliveryStatus])
    query = delivery_select().order_by(DELIVERIES.c.id.desc())
    if status is not None:
        query = query.where(DELIVERIES.c.status == status)
    if destination is not None:
        query = query.where(DELIVERIES.c.destination == destination)
    if job_id is not None:
        query = query.where(DELIVERIES.c.job_pk == job_id)
    if study_instance_uid is not None:
        query = query.where(JOBS.c.study_instance_uid == study_instance_uid)
    rows, total = _paged(db, query, page, page_size)
    return Page([_delivery_summary(row) for row in rows], total, page, page_size)


def delivery(db: Engine, delivery_id: int) -> DeliverySummary:
    found = _deliveries(db, DELIVERIES.c.id == delivery_id)
    if not found:
        raise OperationError(f"there is no delivery {delivery_id}", "not_found")
    return found[0]


def delivery_detail(db: Engine, delivery_id: int) -> DeliveryDetail:
    """One delivery with each output's result at that destination."""
    summary = delivery(db, delivery_id)
    with db.connect() as connection:
        rows = connection.execute(
            select(DELIVERY_ITEMS, OUTPUTS.c.kind, OUTPUTS.c.sop_instance_uid)
            .join(OUTPUTS, OUTPUTS.c.id == DELIVERY_ITEMS.c.output_pk)
            .where(DELIVERY_ITEMS.c.delivery_pk == delivery_id)
            .order_by(DELIVERY_ITEMS.c.id)
        ).all()
    return DeliveryDetail(
        delivery=summary,
        items=[
            DeliveryItemSummary(
                output_id=int(row.output_pk),
                kind=row.kind,
                sop_instance_uid=row.sop_instance_uid,
                status=row.status,
                status_code=row.status_code,
                sends=int(row.sends),
                acknowledged_at=row.acknowledged_at,
                last_error=row.last_error,
            )
            for row in rows
        ],
    )


# -- the dashboard --------------------------------------------------------------------------


def dashboard_counts(db: Engine, settings: Settings, now: datetime | None = None) -> Dashboard:
    """Counts by state, the queue, the last 24 hours' outcomes and the free disk of spool and outbox."""
    now = _utc(now or datetime.now(UTC))
    day_ago = now - timedelta(hours=24)
    query, state_column = _study_select()
    by_state = query.with_only_columns(state_column.label("state")).subquery()
    with db.connect() as connection:
        studies_by_state = {
            row.state: int(row.n)
            for row in connection.execute(
                select(by_state.c.state, func.count().label("n")).group_by(by_state.c.state)
            ).all()
        }
        jobs_by_status = {
            row.status: int(row.n)
            for row in connection.execute(select(JOBS.c.status, func.count().label("n")).group_by(JOBS.c.status)).all()
        }
        deliveries_by_status = {
            row.status: int(row.n)
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

        def count(table: Any, *conditions: ColumnElement[bool]) -> int:
            return int(connection.execute(select(func.count()).select_from(table).where(*conditions)).scalar_one())

        recent = RecentSummary(
            studies_received=count(STUDIES, STUDIES.c.last_received_at >= day_ago),
            jobs_done=count(JOBS, JOBS.c.status == JobStatus.DONE, JOBS.c.finished_at >= day_ago),
            jobs_failed=count(JOBS, JOBS.c.status == JobStatus.FAILED, JOBS.c.finished_at >= day_ago),
            deliveries_delivered=count(
                DELIVERIES, DELIVERIES.c.status == DeliveryStatus.DELIVERED, DELIVERIES.c.delivered_at >= day_ago
            ),
            deliveries_dead=count(
                DELIVERIES, DELIVERIES.c.status == DeliveryStatus.DEAD, DELIVERIES.c.updated_at >= day_ago
            ),
            studies_not_routed=count(STATES, STATES.c.routing == "not_routed", STATES.c.completed_at >= day_ago),
        )

    def age(since: datetime | None) -> float | None:
        return max((now - _utc(since)).total_seconds(), 0.0) if since is not None else None

    queue = QueueSummary(
        jobs_queued=jobs_by_status.get(JobStatus.QUEUED, 0),
        jobs_running=jobs_by_status.get(JobStatus.RUNNING, 0),
        oldest_queued_seconds=age(oldest_job),
        deliveries_pending=deliveries_by_status.get(DeliveryStatus.PENDING, 0),
        deliveries_sending=deliveries_by_status.get(DeliveryStatus.SENDING, 0),
        oldest_pending_delivery_seconds=age(oldest_delivery),
    )
    reserve = int(settings.storage.min_free_disk)
    disks = [
        disk_summary("spool", settings.storage.spool_path, reserve),
        disk_summary("outbox", settings.storage.outbox_path, reserve),
    ]
    return Dashboard(now, studies_by_state, jobs_by_status, deliveries_by_status, queue, recent, disks)


def disk_summary(name: str, path: Path, reserve_bytes: int) -> DiskSummary:
    if not path.is_dir():
        return DiskSummary(
            name, str(path), None, None, reserve_bytes, False, "not created yet (gazex serve creates it)"
        )
    try:
        usage = shutil.disk_usage(path)
    except OSError as exc:
        return DiskSummary(name, str(path), None, None, reserve_bytes, False, f"cannot be read: {exc.strerror}")
    return DiskSummary(name, str(path), usage.free, usage.total, reserve_bytes, usage.free < reserve_bytes)
