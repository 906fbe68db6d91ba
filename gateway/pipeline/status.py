"""What the operators' commands show: studies, jobs and deliveries, as rows (read-only queries)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Select, and_, case, func, select

from gateway.pipeline.states import DeliveryStatus, ItemStatus, JobStatus
from gateway.pipeline.tables import DELIVERIES, DELIVERY_ITEMS, INSTANCES, JOBS, SERIES, STATES, STUDIES


@dataclass(frozen=True)
class StudyRow:
    study_instance_uid: str
    instances: int
    first_received_at: datetime
    last_received_at: datetime
    state: str
    rule: str | None
    job_id: int | None
    detail: str


@dataclass(frozen=True)
class JobRow:
    id: int
    study_instance_uid: str
    status: str
    attempts: int
    rule: str
    outputs: str
    model: str
    created_at: datetime
    finished_at: datetime | None
    processed_by: str | None
    last_error: str | None
    findings_present: int | None
    omissions: str | None = None


@dataclass(frozen=True)
class DeliveryRow:
    id: int
    job_id: int
    study_instance_uid: str
    destination: str
    status: str
    acknowledged: int
    total: int
    attempts: int
    next_attempt_at: datetime
    delivered_at: datetime | None
    last_error: str | None


def _delivery_summary(db: Engine, job_ids: list[int]) -> dict[int, list[str]]:
    if not job_ids:
        return {}
    with db.connect() as connection:
        rows = connection.execute(
            select(DELIVERIES.c.job_pk, DELIVERIES.c.status).where(DELIVERIES.c.job_pk.in_(job_ids))
        ).all()
    summary: dict[int, list[str]] = {}
    for row in rows:
        summary.setdefault(int(row.job_pk), []).append(row.status)
    return summary


def study_state(pending: bool, routing: str | None, job_status: str | None, deliveries: list[str], purged: bool) -> str:
    """One word or two for a study: receiving, not routed, queued, analysing, delivering, delivered, ..."""
    if pending:
        state = "receiving" if routing is None else "re-opened"
    elif routing == "not_routed":
        state = "not routed"
    elif job_status in (JobStatus.QUEUED, JobStatus.RUNNING):
        state = "queued" if job_status == JobStatus.QUEUED else "analysing"
    elif job_status == JobStatus.FAILED:
        state = "failed"
    elif job_status == JobStatus.DONE:
        if not deliveries:
            state = "analysed (no destination)"
        elif DeliveryStatus.DEAD in deliveries:
            state = "delivery dead"
        elif all(status == DeliveryStatus.DELIVERED for status in deliveries):
            state = "delivered"
        else:
            state = "delivering"
    else:
        state = job_status or "complete"
    return f"{state} (files purged)" if purged else state


def model_label(name: str | None, version: str | None, backend: str | None, reference: str) -> str:
    """The model that ran a job ("gazex-demo 1.0 (torch)"), or the configured reference before it ran."""
    return f"{name} {version} ({backend})" if name else reference


def studies(db: Engine, limit: int = 50, study_instance_uid: str | None = None) -> list[StudyRow]:
    counts = (
        select(SERIES.c.study_pk, func.count(INSTANCES.c.id).label("n"))
        .join(INSTANCES, INSTANCES.c.series_pk == SERIES.c.id)
        .group_by(SERIES.c.study_pk)
        .subquery()
    )
    pending = case(
        (STATES.c.id.is_(None), True),
        (STATES.c.completed_through.is_(None), True),
        (STUDIES.c.last_received_at > STATES.c.completed_through, True),
        else_=False,
    )
    query = (
        select(
            STUDIES.c.study_instance_uid,
            STUDIES.c.first_received_at,
            STUDIES.c.last_received_at,
            func.coalesce(counts.c.n, 0).label("instances"),
            pending.label("pending"),
            STATES.c.routing,
            STATES.c.rule,
            STATES.c.reason,
            STATES.c.job_pk,
            STATES.c.purged_at,
            JOBS.c.status.label("job_status"),
            JOBS.c.last_error,
        )
        .select_from(
            STUDIES.outerjoin(STATES, STATES.c.study_pk == STUDIES.c.id)
            .outerjoin(counts, counts.c.study_pk == STUDIES.c.id)
            .outerjoin(JOBS, JOBS.c.id == STATES.c.job_pk)
        )
        .order_by(STUDIES.c.last_received_at.desc())
        .limit(limit)
    )
    if study_instance_uid is not None:
        query = query.where(STUDIES.c.study_instance_uid == study_instance_uid)
    with db.connect() as connection:
        rows = connection.execute(query).all()
    deliveries = _delivery_summary(db, [int(row.job_pk) for row in rows if row.job_pk is not None])
    result = []
    for row in rows:
        job_deliveries = deliveries.get(int(row.job_pk), []) if row.job_pk is not None else []
        state = study_state(bool(row.pending), row.routing, row.job_status, job_deliveries, row.purged_at is not None)
        detail = row.reason or ""
        if row.job_status == JobStatus.FAILED and row.last_error:
            detail = row.last_error
        result.append(
            StudyRow(
                study_instance_uid=row.study_instance_uid,
                instances=int(row.instances),
                first_received_at=row.first_received_at,
                last_received_at=row.last_received_at,
                state=state,
                rule=row.rule,
                job_id=int(row.job_pk) if row.job_pk is not None else None,
                detail=detail,
            )
        )
    return result


def jobs(db: Engine, limit: int = 50, status: str | None = None, study_instance_uid: str | None = None) -> list[JobRow]:
    query = select(JOBS).order_by(JOBS.c.id.desc()).limit(limit)
    if status is not None:
        query = query.where(JOBS.c.status == status)
    if study_instance_uid is not None:
        query = query.where(JOBS.c.study_instance_uid == study_instance_uid)
    with db.connect() as connection:
        rows = connection.execute(query).all()
    return [
        JobRow(
            id=int(row.id),
            study_instance_uid=row.study_instance_uid,
            status=row.status,
            attempts=int(row.attempts),
            rule=row.rule,
            outputs=row.outputs,
            model=model_label(row.model_name, row.model_version, row.model_backend, row.model_ref),
            created_at=row.created_at,
            finished_at=row.finished_at,
            processed_by=row.processed_by or row.lease_owner,
            last_error=row.last_error,
            findings_present=row.findings_present,
            omissions=row.omissions,
        )
        for row in rows
    ]


def delivery_select() -> Select[Any]:
    """Deliveries with their study and how many of their items are acknowledged, of how many
    (the CLI's and the HTTP API's listings)."""
    acknowledged = func.sum(case((DELIVERY_ITEMS.c.status == ItemStatus.ACKNOWLEDGED, 1), else_=0))
    items = (
        select(
            DELIVERY_ITEMS.c.delivery_pk,
            acknowledged.label("acknowledged"),
            func.count(DELIVERY_ITEMS.c.id).label("total"),
        )
        .group_by(DELIVERY_ITEMS.c.delivery_pk)
        .subquery()
    )
    return select(
        DELIVERIES,
        JOBS.c.study_instance_uid,
        func.coalesce(items.c.acknowledged, 0).label("acknowledged"),
        func.coalesce(items.c.total, 0).label("total"),
    ).select_from(
        DELIVERIES.join(JOBS, JOBS.c.id == DELIVERIES.c.job_pk).outerjoin(items, items.c.delivery_pk == DELIVERIES.c.id)
    )


def deliveries(
    db: Engine, limit: int = 50, status: str | None = None, job_id: int | None = None, delivery_id: int | None = None
) -> list[DeliveryRow]:
    query = delivery_select().order_by(DELIVERIES.c.id.desc()).limit(limit)
    if status is not None:
        query = query.where(DELIVERIES.c.status == status)
    if job_id is not None:
        query = query.where(and_(DELIVERIES.c.job_pk == job_id))
    if delivery_id is not None:
        query = query.where(DELIVERIES.c.id == delivery_id)
    with db.connect() as connection:
        rows = connection.execute(query).all()
    return [
        DeliveryRow(
            id=int(row.id),
            job_id=int(row.job_pk),
            study_instance_uid=row.study_instance_uid,
            destination=row.destination,
            status=row.status,
            acknowledged=int(row.acknowledged),
            total=int(row.total),
            attempts=int(row.attempts),
            next_attempt_at=row.next_attempt_at,
            delivered_at=row.delivered_at,
            last_error=row.last_error,
        )
        for row in rows
    ]
