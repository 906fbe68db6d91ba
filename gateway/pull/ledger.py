"""Pulls and their studies in the database: create, claim with a lease, record outcomes, list.

Claims are conditional updates (``WHERE state = ... AND lease ...``) in one transaction, so
threads and processes sharing the database never retrieve one study twice at once.  A retrieve
claim also counts what runs and what started in the hour (the limits); those claims are
serialised (:func:`gateway.db.locks.hold_until_commit`), so claimers counting at once cannot
together start more than the limits allow.  A claim whose holder died (kill -9, power loss)
is taken up again when its lease expires; a graceful stop hands its claims back at once
(:meth:`PullLedger.release`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, Update, and_, func, or_, select, update
from sqlalchemy.orm import Session

from gateway.db.locks import PULL_CLAIMS, hold_until_commit
from gateway.db.models import Pull, PullItem
from gateway.pipeline.backoff import Backoff
from gateway.pull.limits import WINDOW, Admission, RetrieveLimits, admit
from gateway.pull.query import PullQuery, StudyMatch

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
PENDING, RETRIEVING = "pending", "retrieving"
PULL_STATES = (QUEUED, RUNNING, DONE, FAILED, CANCELLED)
ITEM_STATES = (PENDING, RETRIEVING, DONE, FAILED, CANCELLED)


@dataclass(frozen=True)
class QueryClaim:
    pull_id: int
    source: str
    query: PullQuery
    attempts: int


@dataclass(frozen=True)
class ItemClaim:
    item_id: int
    pull_id: int
    source: str
    study_instance_uid: str
    attempts: int


@dataclass(frozen=True)
class PullCounts:
    found: int | None
    retrieved: int
    failed: int
    pending: int
    instances: int


class PullLedger:
    """The pulls table and its items, for one puller (``owner`` names its leases)."""

    def __init__(self, engine: Engine, backoff: Backoff, lease_seconds: float) -> None:
        self.engine = engine
        self.backoff = backoff
        self.lease = timedelta(seconds=lease_seconds)

    # -- creating -------------------------------------------------------------------------------
    def create(self, source: str, query: PullQuery, created_by: str, now: datetime) -> int:
        with Session(self.engine) as session, session.begin():
            pull = Pull(
                source=source,
                query=query.model_dump_json(exclude_defaults=True),
                state=QUEUED,
                created_by=created_by,
                created_at=now,
                updated_at=now,
                attempts=0,
                next_attempt_at=now,
                retrieved=0,
                failed=0,
            )
            session.add(pull)
            session.flush()
            return pull.id

    # -- the query stage --------------------------------------------------------------------------
    def claim_query(self, owner: str, now: datetime, sources: set[str]) -> QueryClaim | None:
        """A queued pull whose query is due (or whose holder's lease expired), leased to ``owner``."""
        with Session(self.engine) as session, session.begin():
            candidates = session.scalars(
                select(Pull)
                .where(
                    Pull.state == QUEUED,
                    Pull.next_attempt_at <= now,
                    Pull.source.in_(sources),
                    or_(Pull.lease_owner.is_(None), Pull.lease_expires_at < now),
                )
                .order_by(Pull.id)
                .limit(5)
            ).all()
            for pull in candidates:
                pull_id, source, text, attempts = pull.id, pull.source, pull.query, pull.attempts
                taken = _changed(
                    session,
                    update(Pull)
                    .where(
                        Pull.id == pull.id,
                        Pull.state == QUEUED,
                        or_(Pull.lease_owner.is_(None), Pull.lease_expires_at < now),
                    )
                    .values(lease_owner=owner, lease_expires_at=now + self.lease, attempts=Pull.attempts + 1),
                )
                if taken == 1:
                    return QueryClaim(pull_id, source, PullQuery.model_validate_json(text), attempts + 1)
        return None

    def record_found(self, claim: QueryClaim, owner: str, studies: list[StudyMatch], now: datetime) -> bool:
        """The query answered: one pending item per study; the pull runs (or is done: nothing found)."""
        with Session(self.engine) as session, session.begin():
            pull = session.get(Pull, claim.pull_id)
            if pull is None or pull.lease_owner != owner or pull.state != QUEUED:
                return False  # cancelled meanwhile, or the lease was lost
            for study in studies:
                session.add(
                    PullItem(
                        pull_pk=pull.id,
                        source=pull.source,
                        study_instance_uid=study.study_instance_uid,
                        state=PENDING,
                        attempts=0,
                        next_attempt_at=now,
                        instances=0,
                        failed_instances=0,
                    )
                )
            pull.found = len(studies)
            pull.state = RUNNING if studies else DONE
            pull.lease_owner = pull.lease_expires_at = None
            pull.last_error = None
            pull.updated_at = now
        return True

    def query_failed(self, claim: QueryClaim, owner: str, error: str, now: datetime) -> str:
        """The query failed: retried after the backoff, or the pull fails; returns the new state."""
        with Session(self.engine) as session, session.begin():
            pull = session.get(Pull, claim.pull_id)
            if pull is None or pull.lease_owner != owner:
                return "lost"
            pull.last_error = error
            pull.lease_owner = pull.lease_expires_at = None
            pull.updated_at = now
            if pull.state == QUEUED:
                if self.backoff.exhausted(pull.attempts):
                    pull.state = FAILED
                else:
                    pull.next_attempt_at = now + timedelta(seconds=self.backoff.delay(pull.attempts))
            return pull.state

    # -- the retrieve stage ----------------------------------------------------------------------
    def claim_item(
        self, owner: str, now: datetime, limits: Callable[[str], RetrieveLimits | None]
    ) -> tuple[ItemClaim | None, float | None]:
        """The next study due whose source's limits allow a retrieve now, leased to ``owner``.

        Returns (claim, None), or (None, seconds until the hourly window lets one start; None
        when nothing is due or only a running retrieve's end can free a place).

        The count and the claim are one critical section over all claimers of the database
        (threads and processes alike); it reads and writes the database only.
        """
        wait: float | None = None
        with Session(self.engine) as session, session.begin():
            hold_until_commit(session.connection(), PULL_CLAIMS)
            due = session.execute(
                select(PullItem.id, PullItem.source)
                .join(Pull, Pull.id == PullItem.pull_pk)
                .where(
                    Pull.state == RUNNING,
                    or_(
                        and_(PullItem.state == PENDING, PullItem.next_attempt_at <= now),
                        and_(PullItem.state == RETRIEVING, PullItem.lease_expires_at < now),
                    ),
                )
                .order_by(PullItem.pull_pk, PullItem.id)
            ).all()
            if not due:
                return None, None
            running_total = self._running(session, now, None)
            decided: dict[str, Admission] = {}
            for item_id, source in due:
                if source not in decided:
                    source_limits = limits(source)
                    if source_limits is None:  # no longer configured: left as it is
                        decided[source] = Admission(False, None, "unknown source")
                        continue
                    decided[source] = admit(
                        source_limits,
                        now,
                        running_total=running_total,
                        running_source=self._running(session, now, source),
                        started_in_window=self._started(session, source, now),
                    )
                admission = decided[source]
                if not admission.allowed:
                    if admission.wait_seconds is not None:
                        wait = admission.wait_seconds if wait is None else min(wait, admission.wait_seconds)
                    continue
                taken = _changed(
                    session,
                    update(PullItem)
                    .where(
                        PullItem.id == item_id,
                        or_(
                            and_(PullItem.state == PENDING, PullItem.next_attempt_at <= now),
                            and_(PullItem.state == RETRIEVING, PullItem.lease_expires_at < now),
                        ),
                    )
                    .values(
                        state=RETRIEVING,
                        lease_owner=owner,
                        lease_expires_at=now + self.lease,
                        started_at=now,
                        attempts=PullItem.attempts + 1,
                    ),
                )
                if taken != 1:
                    continue
                item = session.get(PullItem, item_id)
                assert item is not None
                session.refresh(item)
                return ItemClaim(item.id, item.pull_pk, item.source, item.study_instance_uid, item.attempts), None
        return None, wait

    @staticmethod
    def _running(session: Session, now: datetime, source: str | None) -> int:
        statement = (
            select(func.count())
            .select_from(PullItem)
            .where(PullItem.state == RETRIEVING, PullItem.lease_expires_at >= now)
        )
        if source is not None:
            statement = statement.where(PullItem.source == source)
        return int(session.scalar(statement) or 0)

    @staticmethod
    def _started(session: Session, source: str, now: datetime) -> list[datetime]:
        return [
            started
            for started in session.scalars(
                select(PullItem.started_at).where(
                    PullItem.source == source, PullItem.started_at.is_not(None), PullItem.started_at > now - WINDOW
                )
            ).all()
            if started is not None
        ]

    def renew(self, claim: ItemClaim, owner: str, now: datetime) -> bool:
        with Session(self.engine) as session, session.begin():
            changed = _changed(
                session,
                update(PullItem)
                .where(PullItem.id == claim.item_id, PullItem.lease_owner == owner, PullItem.state == RETRIEVING)
                .values(lease_expires_at=now + self.lease),
            )
            return changed == 1

    def item_done(self, claim: ItemClaim, owner: str, instances: int, now: datetime) -> None:
        self._finish(claim, owner, now, state=DONE, instances=instances, error=None)

    def item_failed(self, claim: ItemClaim, owner: str, error: str, now: datetime) -> str:
        """A retrieve failed: retried after the backoff, or the study fails; returns its new state."""
        exhausted = self.backoff.exhausted(claim.attempts)
        return self._finish(
            claim,
            owner,
            now,
            state=FAILED if exhausted else PENDING,
            instances=None,
            error=error,
            retry_at=None if exhausted else now + timedelta(seconds=self.backoff.delay(claim.attempts)),
        )

    def release(self, claim: ItemClaim, owner: str, now: datetime) -> None:
        """Hand a claim back untouched (shutdown): due again at once, the attempt not counted."""
        with Session(self.engine) as session, session.begin():
            session.execute(
                update(PullItem)
                .where(PullItem.id == claim.item_id, PullItem.lease_owner == owner, PullItem.state == RETRIEVING)
                .values(
                    state=PENDING,
                    lease_owner=None,
                    lease_expires_at=None,
                    next_attempt_at=now,
                    attempts=PullItem.attempts - 1,
                )
            )

    def _finish(
        self,
        claim: ItemClaim,
        owner: str,
        now: datetime,
        *,
        state: str,
        instances: int | None,
        error: str | None,
        retry_at: datetime | None = None,
    ) -> str:
        with Session(self.engine) as session, session.begin():
            item = session.get(PullItem, claim.item_id)
            if item is None or item.lease_owner != owner or item.state != RETRIEVING:
                return "lost"
            item.state = state
            item.lease_owner = item.lease_expires_at = None
            item.last_error = error
            if instances is not None:
                item.instances = instances
            if retry_at is not None:
                item.next_attempt_at = retry_at
            if state in (DONE, FAILED):
                item.finished_at = now
            session.flush()
            self._settle(session, item.pull_pk, now)
            return state

    @staticmethod
    def _settle(session: Session, pull_id: int, now: datetime) -> None:
        """Refresh a pull's counts; when no study is left to retrieve, it is done (or failed)."""
        pull = session.get(Pull, pull_id)
        if pull is None:
            return
        counts = dict(
            session.execute(
                select(PullItem.state, func.count()).where(PullItem.pull_pk == pull_id).group_by(PullItem.state)
            ).all()
        )
        pull.retrieved = int(counts.get(DONE, 0))
        pull.failed = int(counts.get(FAILED, 0))
        pull.updated_at = now
        open_items = int(counts.get(PENDING, 0)) + int(counts.get(RETRIEVING, 0))
        if pull.state == RUNNING and open_items == 0:
            pull.state = FAILED if pull.failed else DONE
            if pull.failed:
                last = session.scalar(
                    select(PullItem.last_error)
                    .where(PullItem.pull_pk == pull_id, PullItem.state == FAILED)
                    .order_by(PullItem.finished_at.desc())
                    .limit(1)
                )
                pull.last_error = f"{pull.failed} of {pull.found} studies failed; the last: {last}"

    # -- waiting -------------------------------------------------------------------------------
    def next_due(self, now: datetime) -> datetime | None:
        """When the earliest query or retrieve waiting on a backoff (or an expired lease) is due."""
        with Session(self.engine) as session:
            queries = session.scalar(select(func.min(Pull.next_attempt_at)).where(Pull.state == QUEUED))
            items = session.scalar(
                select(func.min(PullItem.next_attempt_at))
                .join(Pull, Pull.id == PullItem.pull_pk)
                .where(Pull.state == RUNNING, PullItem.state == PENDING)
            )
            leases = session.scalar(select(func.min(PullItem.lease_expires_at)).where(PullItem.state == RETRIEVING))
        found = [when for when in (queries, items, leases) if when is not None]
        return min(found) if found else None

    # -- operators ----------------------------------------------------------------------------
    def cancel(self, pull_id: int, now: datetime) -> str | None:
        """Cancel a pull: its queued and pending studies are not retrieved; None when it does not exist."""
        with Session(self.engine) as session, session.begin():
            pull = session.get(Pull, pull_id)
            if pull is None:
                return None
            if pull.state in (QUEUED, RUNNING):
                pull.state = CANCELLED
                pull.updated_at = now
                session.execute(
                    update(PullItem)
                    .where(PullItem.pull_pk == pull_id, PullItem.state == PENDING)
                    .values(state=CANCELLED, finished_at=now)
                )
            return pull.state

    def counts(self, pull_id: int) -> PullCounts | None:
        with Session(self.engine) as session:
            pull = session.get(Pull, pull_id)
            if pull is None:
                return None
            rows = dict(
                session.execute(
                    select(PullItem.state, func.count()).where(PullItem.pull_pk == pull_id).group_by(PullItem.state)
                ).all()
            )
            instances = session.scalar(select(func.sum(PullItem.instances)).where(PullItem.pull_pk == pull_id))
            return PullCounts(
                found=pull.found,
                retrieved=int(rows.get(DONE, 0)),
                failed=int(rows.get(FAILED, 0)),
                pending=int(rows.get(PENDING, 0)) + int(rows.get(RETRIEVING, 0)),
                instances=int(instances or 0),
            )


def _changed(session: Session, statement: Update) -> int:
    """Rows an UPDATE changed."""
    result = cast(CursorResult[Any], session.execute(statement))
    return int(result.rowcount)


def query_of(pull: Pull) -> dict[str, object]:
    """A pull's query as a mapping (for listings)."""
    value = json.loads(pull.query)
    return value if isinstance(value, dict) else {}
