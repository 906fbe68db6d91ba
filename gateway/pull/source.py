"""A source PACS as the puller sees it: find the studies a query matches, retrieve one study.

:class:`PullSource` is the small interface; :mod:`gateway.pull.dimse` (C-FIND, C-MOVE, C-GET)
and :mod:`gateway.pull.dicomweb` (QIDO-RS, WADO-RS) implement it.  Every failure of the
network or of the archive becomes :class:`SourceError`, whose message says what happened in
words (and never quotes patient data); the puller records it and retries.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from gateway.pull.query import PullQuery, StudyMatch


class SourceError(Exception):
    """The source could not be reached, refused us, answered with a failure, or timed out."""


class SourceRefused(SourceError):  # noqa: N818 - a kind of SourceError, named for what the source did
    """The source answered, with a refusal: an association rejected for good, a failure status, an HTTP 4xx."""


def query_outcome(error: BaseException | None) -> str:
    """How a query ended, for :meth:`~gateway.events.GatewayObserver.query_finished`."""
    if error is None:
        return "answered"
    return "refused" if isinstance(error, SourceRefused) else "failed"


def query_detail(error: BaseException | None) -> str:
    """Why a query did not succeed, in words that quote no patient data (a SourceError's message, or a type)."""
    if error is None:
        return ""
    return str(error) if isinstance(error, SourceError) else f"unexpected {type(error).__name__}"


class RetrieveInterrupted(Exception):  # noqa: N818 - a condition: the puller was told to stop
    """The retrieve was stopped (the gateway is shutting down); the study is retried later."""


@dataclass
class RetrieveProgress:
    """Given to a retrieve: ``beat()`` after each instance or response (renews the lease), and the stop event."""

    stop: threading.Event = field(default_factory=threading.Event)
    beat: Callable[[], None] = lambda: None


@dataclass(frozen=True)
class Retrieved:
    """What a retrieve of one study did: instances stored by us (C-GET, WADO-RS) or by our SCP (C-MOVE)."""

    instances: int
    detail: str = ""


class PullSource(Protocol):
    def find(self, query: PullQuery, limit: int) -> list[StudyMatch]:
        """The studies matching ``query`` (at most ``limit``; more raises SourceError)."""
        ...

    def retrieve(self, study: StudyMatch, progress: RetrieveProgress) -> Retrieved:
        """Bring one whole study into the gateway; SourceError when not every instance arrived."""
        ...


def too_many(found: int, limit: int) -> SourceError:
    return SourceError(
        f"the query matched more than {limit} studies (pull.max_studies_per_pull); narrow it, e.g. a shorter date range"
    )


@dataclass
class FoundStudies:
    """Answers of one or more study-level queries, by Study Instance UID (the first answer wins)."""

    limit: int
    studies: dict[str, StudyMatch] = field(default_factory=dict)

    def add(self, study: StudyMatch) -> None:
        if not study.study_instance_uid or study.study_instance_uid in self.studies:
            return
        if len(self.studies) >= self.limit:
            raise too_many(len(self.studies) + 1, self.limit)
        self.studies[study.study_instance_uid] = study
