"""The job and delivery state machines, and what a C-STORE status means.  Pure.

Jobs::

    queued --claim--> running --outputs committed--> done
      ^                  |  \\--error, attempts left--> queued (after a delay)
      |                  |   \\-error, permanent or last attempt--> failed
      |                  \\--lease expired (worker killed)--> claimable again
      \\--a newer job of the study queued first--> superseded
      \\--an operator cancels it (only while queued)--> cancelled   (never claimed again)

Deliveries::

    pending --claim--> sending --every output acknowledged--> delivered
       ^                  |--some output not acknowledged, attempts left--> pending (backoff)
       |                  \\--last attempt failed--> dead   (gazex deliveries retry: dead -> pending)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    SUPERSEDED = "superseded"
    CANCELLED = "cancelled"


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    DELIVERED = "delivered"
    DEAD = "dead"


class ItemStatus(enum.StrEnum):
    PENDING = "pending"
    ACKNOWLEDGED = "acknowledged"
    FAILED = "failed"


TERMINAL_JOB_STATUSES = frozenset({JobStatus.DONE, JobStatus.FAILED, JobStatus.SUPERSEDED, JobStatus.CANCELLED})
TERMINAL_DELIVERY_STATUSES = frozenset({DeliveryStatus.DELIVERED, DeliveryStatus.DEAD})


@dataclass(frozen=True)
class JobFailure:
    """What went wrong in an attempt; ``permanent`` failures are not retried (the same input fails again)."""

    reason: str
    permanent: bool = False


def after_job_failure(failure: JobFailure, attempts: int, max_attempts: int) -> JobStatus:
    """Queue again while attempts remain and the failure may pass; otherwise the job fails (and stays listed)."""
    if failure.permanent or attempts >= max_attempts:
        return JobStatus.FAILED
    return JobStatus.QUEUED


def lost_too_often(attempts: int, max_attempts: int) -> bool:
    """A claim beyond ``max_attempts`` only happens after the last attempt's worker died (lease expired)."""
    return attempts > max_attempts


def job_retry_delay(retry_delay_seconds: float, attempts: int) -> float:
    """The wait before a failed job's next attempt: doubling from ``retry_delay_seconds``, at most an hour."""
    return min(retry_delay_seconds * 2 ** max(attempts - 1, 0), 3600.0) if retry_delay_seconds > 0 else 0.0


class StoreOutcome(enum.StrEnum):
    SUCCESS = "success"
    WARNING = "warning"
    FAILURE = "failure"


def store_outcome(status: int) -> StoreOutcome:
    """PS3.4 Annex B.2.3: 0x0000 success; 0x0001, 0x0107, 0x0116 and 0xB000-0xBFFF warnings; the rest failures."""
    if status == 0x0000:
        return StoreOutcome.SUCCESS
    if status in (0x0001, 0x0107, 0x0116) or 0xB000 <= status <= 0xBFFF:
        return StoreOutcome.WARNING
    return StoreOutcome.FAILURE


def acknowledged(status: int) -> bool:
    """The archive took the instance (success or warning): it must never be sent to it again."""
    return store_outcome(status) is not StoreOutcome.FAILURE


@dataclass(frozen=True)
class DeliveryVerdict:
    status: DeliveryStatus
    retry_in_seconds: float | None = None


def after_delivery_attempt(
    all_acknowledged: bool, attempts: int, max_attempts: int, next_delay: float
) -> DeliveryVerdict:
    """Delivered when every output is acknowledged; otherwise retry after ``next_delay`` or dead-letter."""
    if all_acknowledged:
        return DeliveryVerdict(DeliveryStatus.DELIVERED)
    if attempts >= max_attempts:
        return DeliveryVerdict(DeliveryStatus.DEAD)
    return DeliveryVerdict(DeliveryStatus.PENDING, next_delay)
