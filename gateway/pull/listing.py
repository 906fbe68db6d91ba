"""Asking for a pull and seeing how pulls go: shared by ``gazex pull`` and the HTTP API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from gateway.config import Settings
from gateway.db.models import Pull, PullItem
from gateway.pull.ledger import PullLedger
from gateway.pull.puller import pull_backoff
from gateway.pull.query import PullQuery


class PullRefusedError(ValueError):
    """The pull cannot be asked for as given (unknown source, pulling off); nothing was recorded."""


class PullItemSummary(BaseModel):
    """One study of a pull."""

    id: int
    study_instance_uid: str
    state: str = Field(description="pending, retrieving, done, failed or cancelled")
    attempts: int
    instances: int = Field(description="instances the latest retrieve brought")
    started_at: datetime | None
    finished_at: datetime | None
    next_attempt_at: datetime | None = Field(description="when a pending study is tried (again)")
    last_error: str | None


class PullSummary(BaseModel):
    """A pull and its counts."""

    id: int
    source: str
    query: PullQuery
    description: str
    state: str = Field(description="queued, running, done, failed or cancelled")
    created_by: str
    created_at: datetime
    updated_at: datetime
    found: int | None = Field(description="studies the query matched; null until it answered")
    retrieved: int
    failed: int
    pending: int = Field(description="studies still to retrieve (or being retrieved)")
    instances: int
    query_attempts: int
    last_error: str | None


class PullDetail(PullSummary):
    items: list[PullItemSummary]


def request_pull(
    engine: Engine, settings: Settings, source: str, query: PullQuery, *, actor: str, now: datetime
) -> PullSummary:
    """Record a pull (queued); PullRefusedError when the source is not configured."""
    if source not in settings.sources:
        known = ", ".join(sorted(settings.sources)) or "none"
        raise PullRefusedError(f"no source named {source!r} is configured (sources: {known}); add it under sources:")
    ledger = PullLedger(engine, pull_backoff(settings), settings.pull.lease_seconds)
    pull_id = ledger.create(source, query, actor, now)
    found = pull_summary(engine, pull_id)
    assert found is not None
    return found


def cancel_pull(engine: Engine, settings: Settings, pull_id: int, *, now: datetime) -> PullDetail | None:
    """Cancel a pull (studies not retrieved yet are not retrieved); the pull after it, None when unknown."""
    ledger = PullLedger(engine, pull_backoff(settings), settings.pull.lease_seconds)
    if ledger.cancel(pull_id, now) is None:
        return None
    return pull_summary(engine, pull_id)


def _summary(pull: Pull, items: list[PullItem]) -> PullSummary:
    query = PullQuery.model_validate_json(pull.query)
    pending = sum(1 for item in items if item.state in ("pending", "retrieving"))
    return PullSummary(
        id=pull.id,
        source=pull.source,
        query=query,
        description=query.describe(),
        state=pull.state,
        created_by=pull.created_by,
        created_at=pull.created_at,
        updated_at=pull.updated_at,
        found=pull.found,
        retrieved=sum(1 for item in items if item.state == "done"),
        failed=sum(1 for item in items if item.state == "failed"),
        pending=pending,
        instances=sum(item.instances for item in items),
        query_attempts=pull.attempts,
        last_error=pull.last_error,
    )


def pull_summaries(engine: Engine, *, limit: int = 50, state: str | None = None) -> list[PullSummary]:
    """Pulls, newest first."""
    with Session(engine) as session:
        statement = select(Pull).order_by(Pull.id.desc()).limit(limit)
        if state is not None:
            statement = statement.where(Pull.state == state)
        pulls = session.scalars(statement).all()
        by_pull: dict[int, list[PullItem]] = {pull.id: [] for pull in pulls}
        if by_pull:
            for item in session.scalars(select(PullItem).where(PullItem.pull_pk.in_(by_pull))):
                by_pull[item.pull_pk].append(item)
        return [_summary(pull, by_pull[pull.id]) for pull in pulls]


def pull_summary(engine: Engine, pull_id: int) -> PullDetail | None:
    """One pull with its studies, or None."""
    with Session(engine) as session:
        pull = session.get(Pull, pull_id)
        if pull is None:
            return None
        items = list(session.scalars(select(PullItem).where(PullItem.pull_pk == pull_id).order_by(PullItem.id)))
        summary = _summary(pull, items)
        return PullDetail(
            **summary.model_dump(),
            items=[
                PullItemSummary(
                    id=item.id,
                    study_instance_uid=item.study_instance_uid,
                    state=item.state,
                    attempts=item.attempts,
                    instances=item.instances,
                    started_at=item.started_at,
                    finished_at=item.finished_at,
                    next_attempt_at=item.next_attempt_at if item.state == "pending" else None,
                    last_error=item.last_error,
                )
                for item in items
            ],
        )


def finished(state: str) -> bool:
    return state in ("done", "failed", "cancelled")
