"""Atomic claims with leases, for jobs and deliveries alike.

A claim is one ``UPDATE ... WHERE id = (SELECT ... LIMIT 1) ... RETURNING`` statement:

* on PostgreSQL the sub-select is ``FOR UPDATE SKIP LOCKED``, so any number of workers on any
  number of machines share the queue and each row goes to exactly one of them;
* on SQLite the statement runs under SQLite's single writer lock, so it is atomic too (one
  worker process uses SQLite; its threads claim this way).

The claimer gets a random ``lease_token``.  Renewing the lease (the heartbeat), finishing and
failing are all conditional on that token, so a worker that lost its lease (it stalled past
``lease_expires_at`` and another worker claimed the row) can no longer change the row.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Table, and_, or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from gateway.pipeline.clock import Clock


@dataclass(frozen=True)
class Claim:
    """A row claimed by this process: its id, the lease token and the attempt number (1 = first)."""

    id: int
    token: str
    attempts: int
    owner: str


class LeaseLost(Exception):  # noqa: N818 - a condition, not a failure of ours
    """Another worker holds the row now; this one must stop touching it."""


def _claimable(table: Table, waiting: str, active: str, now: datetime) -> Any:
    return or_(
        and_(table.c.status == waiting, table.c.next_attempt_at <= now),
        and_(table.c.status == active, table.c.lease_expires_at < now),
    )


def claim(
    connection: Connection,
    table: Table,
    *,
    waiting: str,
    active: str,
    owner: str,
    now: datetime,
    lease_seconds: float,
    values: dict[str, Any] | None = None,
) -> Claim | None:
    """Claim the most overdue claimable row of ``table`` (the caller commits); None when none is due."""
    condition = _claimable(table, waiting, active, now)
    candidate = select(table.c.id).where(condition).order_by(table.c.next_attempt_at, table.c.id).limit(1)
    if connection.dialect.name == "postgresql":
        candidate = candidate.with_for_update(skip_locked=True)
    token = secrets.token_hex(16)
    statement = (
        update(table)
        .where(table.c.id == candidate.scalar_subquery())
        .where(condition)
        .values(
            status=active,
            lease_owner=owner,
            lease_token=token,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            attempts=table.c.attempts + 1,
            **(values or {}),
        )
        .returning(table.c.id, table.c.attempts)
    )
    row = connection.execute(statement).first()
    if row is None:
        return None
    return Claim(id=int(row[0]), token=token, attempts=int(row[1]), owner=owner)


def held(table: Table, claim_: Claim, active: str) -> Any:
    """SQL: the row is still ours (same token, still active)."""
    return and_(table.c.id == claim_.id, table.c.lease_token == claim_.token, table.c.status == active)


def renew(
    connection: Connection, table: Table, claim_: Claim, active: str, now: datetime, lease_seconds: float
) -> bool:
    result = connection.execute(
        update(table).where(held(table, claim_, active)).values(lease_expires_at=now + timedelta(seconds=lease_seconds))
    )
    return result.rowcount == 1


class Heartbeat:
    """Renews a claim's lease every ``interval`` seconds in a thread until stopped.

    If a renewal finds the lease gone, :attr:`lost` is set; the owner checks it before it
    commits anything (the commit is fenced by the token anyway).  A database error during a
    renewal is retried at the next beat: the lease only lapses after ``lease_seconds``.
    """

    def __init__(
        self,
        engine: Engine,
        table: Table,
        claim_: Claim,
        active: str,
        clock: Clock,
        lease_seconds: float,
        interval: float,
        on_error: Callable[[SQLAlchemyError], None] | None = None,
    ) -> None:
        self._engine = engine
        self._table = table
        self._claim = claim_
        self._active = active
        self._clock = clock
        self._lease_seconds = lease_seconds
        self._interval = interval
        self._on_error = on_error
        self._stop = threading.Event()
        self.lost = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{table.name}-{claim_.id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                with self._engine.begin() as connection:
                    if not renew(
                        connection, self._table, self._claim, self._active, self._clock.now(), self._lease_seconds
                    ):
                        self.lost.set()
                        return
            except SQLAlchemyError as exc:
                if self._on_error is not None:
                    self._on_error(exc)
