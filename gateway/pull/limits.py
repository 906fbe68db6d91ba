"""The rate limits of pulling: retrieves at once and studies per sliding hour.  Pure.

The sliding window counts when each retrieve *started*; those times are kept in the database
(``pull_items.started_at``), so a restart neither resets the hour nor lets a backfill burst.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

WINDOW = timedelta(hours=1)


@dataclass(frozen=True)
class RetrieveLimits:
    """``max_concurrent`` over all sources, and per source its own concurrency and hourly budget."""

    max_concurrent: int
    source_concurrent: int
    studies_per_hour: int

    def __post_init__(self) -> None:
        for name in ("max_concurrent", "source_concurrent", "studies_per_hour"):
            if getattr(self, name) < 1:
                raise ValueError(f'Argument "{name}" must be 1 or more, got {getattr(self, name)}')


@dataclass(frozen=True)
class Admission:
    """May a retrieve start now?  If not, ``wait_seconds`` until it may (None: when a running one ends)."""

    allowed: bool
    wait_seconds: float | None = None
    reason: str = ""


def admit(
    limits: RetrieveLimits,
    now: datetime,
    *,
    running_total: int,
    running_source: int,
    started_in_window: Sequence[datetime],
) -> Admission:
    """Whether one more retrieve from a source may start at ``now``.

    ``started_in_window``: when the source's retrieves of the last hour started (older ones are
    ignored, so passing more is harmless).
    """
    if running_total >= limits.max_concurrent:
        return Admission(False, None, f"{running_total} retrieve(s) running (pull.max_concurrent_retrieves)")
    if running_source >= limits.source_concurrent:
        return Admission(False, None, f"{running_source} retrieve(s) from this source running")
    recent = sorted(started for started in started_in_window if started > now - WINDOW)
    if len(recent) < limits.studies_per_hour:
        return Admission(True)
    # the window frees a place when the oldest start that keeps it full leaves it
    frees_at = recent[len(recent) - limits.studies_per_hour] + WINDOW
    return Admission(
        False,
        max(0.0, (frees_at - now).total_seconds()),
        f"{len(recent)} studies started in the last hour (max_studies_per_hour {limits.studies_per_hour})",
    )
