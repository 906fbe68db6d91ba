"""When is a study complete?  Pure decisions on timestamps.

A study is *pending* while it has never been completed, or when an instance arrived (or was
replaced) after its last completion.  A pending study is complete when nothing arrived for
``quiet_seconds`` (reason ``quiet``), or when ``max_wait_seconds`` passed since the first
instance of this round arrived, however many keep trickling in (reason ``deadline``).
"""

from __future__ import annotations

from datetime import datetime

QUIET = "quiet"
DEADLINE = "deadline"
REPROCESS = "reprocess"


def is_pending(
    last_received_at: datetime,
    completed_through: datetime | None,
    instance_set_now: str | None = None,
    instance_set_completed: str | None = None,
) -> bool:
    """Not completed yet, re-opened by a later instance, or holding instances its completion did not see.

    The last case catches an instance stamped before ``completed_through`` but committed after
    the completion read the study (the C-STORE clock runs before its commit).
    """
    if completed_through is None:
        return True
    if last_received_at > completed_through:
        return True
    return (
        instance_set_now is not None
        and instance_set_completed is not None
        and instance_set_now != instance_set_completed
    )


def completion_due(
    last_received_at: datetime,
    opened_at: datetime,
    now: datetime,
    quiet_seconds: float,
    max_wait_seconds: float,
) -> str | None:
    """``quiet`` or ``deadline`` when a pending study is complete at ``now``, else None.

    ``opened_at`` is when the first instance of this round arrived: the study's first
    instance, or the first one after its last completion.
    """
    if (now - last_received_at).total_seconds() >= quiet_seconds:
        return QUIET
    if (now - opened_at).total_seconds() >= max_wait_seconds:
        return DEADLINE
    return None
