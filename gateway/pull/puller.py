"""The puller: runs queued pulls (query, then one retrieve per study) within the rate limits.

``gazex serve`` runs ``pull.max_concurrent_retrieves`` puller threads beside the DICOM node
(:meth:`Puller.start`); ``gazex pull --here`` runs one in the command's own process
(:meth:`Puller.run_burst`).  Everything is in the database, so a pull interrupted by a stop or
a crash is taken up where it was: studies not retrieved yet are retrieved, the others are not.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from gateway.config import Settings
from gateway.config.sources import DicomSource, DicomwebSource
from gateway.dicom.store import InstanceStore
from gateway.events import GatewayObserver
from gateway.pipeline.backoff import Backoff
from gateway.pipeline.clock import Clock, SystemClock
from gateway.pipeline.worker import worker_name
from gateway.pull.ledger import FAILED, ItemClaim, PullLedger, QueryClaim
from gateway.pull.limits import RetrieveLimits
from gateway.pull.query import StudyMatch
from gateway.pull.source import PullSource, RetrieveInterrupted, RetrieveProgress, SourceError
from gateway.safelog import log_unexpected

LOGGER = logging.getLogger(__name__)

#: Where a retrieve that found its lease gone stops renewing it, and how often a beat renews.
_RENEW_FRACTION = 4


def pull_backoff(settings: Settings) -> Backoff:
    pull = settings.pull
    return Backoff(
        base=pull.base_delay_seconds,
        factor=pull.factor,
        max_delay=pull.max_delay_seconds,
        jitter=0.1,
        max_attempts=pull.max_attempts,
    )


def open_source(
    name: str, settings: Settings, store: InstanceStore | None, observer: GatewayObserver | None = None
) -> PullSource:
    """The :class:`PullSource` of ``sources.<name>``; KeyError when it is not configured."""
    source = settings.sources[name]
    if isinstance(source, DicomwebSource):
        from gateway.pull.dicomweb import DicomwebPullSource  # here: requests only when a DICOMweb source is used

        return DicomwebPullSource(name, source, store=store, observer=observer)
    assert isinstance(source, DicomSource)
    from gateway.pull.dimse import DimseSource

    return DimseSource(
        name,
        source,
        calling_ae_title=settings.dicom.ae_title,
        move_destination_ae=settings.dicom.ae_title,
        store=store,
        observer=observer,
    )


class Puller:
    """Build with the database, the settings and the instance store; :meth:`start`/:meth:`stop` or :meth:`run_burst`."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        *,
        store: InstanceStore | None,
        clock: Clock | None = None,
        observer: GatewayObserver | None = None,
        sources: Callable[[str], PullSource] | None = None,
        name: str = "p",
    ) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.ledger = PullLedger(engine, pull_backoff(settings), settings.pull.lease_seconds)
        self.store = store
        self.observer = observer or GatewayObserver()
        self._sources = sources or (lambda source: open_source(source, settings, store, self.observer))
        self.name = name
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        #: after :meth:`run_burst`: seconds until the hourly window lets a waiting study start (None: none waits)
        self.rate_wait: float | None = None

    def limits(self, source: str) -> RetrieveLimits | None:
        configured = self.settings.sources.get(source)
        if configured is None:
            return None
        pull = self.settings.pull
        return RetrieveLimits(
            max_concurrent=pull.max_concurrent_retrieves,
            source_concurrent=configured.max_concurrent_retrieves or pull.max_concurrent_retrieves,
            studies_per_hour=configured.max_studies_per_hour or pull.max_studies_per_hour,
        )

    # -- one unit of work -------------------------------------------------------------------------
    def step(self, owner: str) -> tuple[bool, float | None]:
        """Run one query or one retrieve if one is due; (did something, seconds until a rate-limited one may start)."""
        now = self.clock.now()
        query = self.ledger.claim_query(owner, now, set(self.settings.sources))
        if query is not None:
            self._query(query, owner)
            return True, None
        item, wait = self.ledger.claim_item(owner, now, self.limits)
        if item is None:
            return False, wait
        self._retrieve(item, owner)
        return True, None

    def _query(self, claim: QueryClaim, owner: str) -> None:
        try:
            studies = self._sources(claim.source).find(claim.query, self.settings.pull.max_studies_per_pull)
        except SourceError as exc:
            state = self.ledger.query_failed(claim, owner, str(exc), self.clock.now())
            LOGGER.warning(
                "pull %d: the query (attempt %d) failed%s: %s",
                claim.pull_id,
                claim.attempts,
                "; the pull failed" if state == FAILED else "; retrying after the backoff",
                exc,
            )
            return
        except Exception as exc:  # noqa: BLE001 - recorded on the pull, the thread goes on
            log_unexpected(LOGGER, f"pull {claim.pull_id}: the query failed unexpectedly", exc)
            self.ledger.query_failed(claim, owner, f"unexpected {type(exc).__name__}", self.clock.now())
            return
        if self.ledger.record_found(claim, owner, studies, self.clock.now()):
            LOGGER.info(
                "pull %d: %s %s found %d stud%s",
                claim.pull_id,
                claim.source,
                claim.query.describe(),
                len(studies),
                "y" if len(studies) == 1 else "ies",
            )

    def _retrieve(self, claim: ItemClaim, owner: str) -> None:
        lease = self.settings.pull.lease_seconds
        last_renewal = [time.monotonic()]

        def beat() -> None:
            if time.monotonic() - last_renewal[0] >= lease / _RENEW_FRACTION:
                last_renewal[0] = time.monotonic()
                try:
                    self.ledger.renew(claim, owner, self.clock.now())
                except SQLAlchemyError as exc:
                    LOGGER.warning("pull %d: renewing a lease failed: %s", claim.pull_id, type(exc).__name__)

        progress = RetrieveProgress(stop=self._stop, beat=beat)
        LOGGER.info(
            "pull %d: retrieving study %s from %s (attempt %d)",
            claim.pull_id,
            claim.study_instance_uid,
            claim.source,
            claim.attempts,
        )
        try:
            source = self._sources(claim.source)
            retrieved = source.retrieve(StudyMatch(claim.study_instance_uid), progress)
        except RetrieveInterrupted:
            self.ledger.release(claim, owner, self.clock.now())
            LOGGER.info("pull %d: study %s handed back (stopping)", claim.pull_id, claim.study_instance_uid)
            return
        except SourceError as exc:
            self._failed(claim, owner, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - recorded on the study, the thread goes on
            log_unexpected(LOGGER, f"pull {claim.pull_id}: a retrieve failed unexpectedly", exc)
            self._failed(claim, owner, f"unexpected {type(exc).__name__}")
            return
        self.ledger.item_done(claim, owner, retrieved.instances, self.clock.now())
        LOGGER.info(
            "pull %d: study %s retrieved (%s)", claim.pull_id, claim.study_instance_uid, retrieved.detail or "done"
        )

    def _failed(self, claim: ItemClaim, owner: str, error: str) -> None:
        state = self.ledger.item_failed(claim, owner, error, self.clock.now())
        LOGGER.warning(
            "pull %d: study %s (attempt %d) failed%s: %s",
            claim.pull_id,
            claim.study_instance_uid,
            claim.attempts,
            " for good" if state == FAILED else "; retrying after the backoff",
            error,
        )

    # -- burst mode ------------------------------------------------------------------------------
    def run_burst(self, owner: str | None = None) -> int:
        """Work until nothing is due now (waiting retries and rate limits are not waited for); the steps done."""
        owner = owner or worker_name(f"{self.name}burst")
        done = 0
        while not self._stop.is_set():
            did, self.rate_wait = self.step(owner)
            if not did:
                return done
            done += 1
        return done

    def seconds_until_due(self, rate_wait: float | None = None) -> float | None:
        """How long until something may be due: a retry, an expired lease, or the hourly window."""
        now = self.clock.now()
        due = self.ledger.next_due(now)
        waits = [max(0.0, (due - now).total_seconds())] if due is not None else []
        if rate_wait is not None:
            waits.append(rate_wait)
        return min(waits) if waits else None

    # -- in the background --------------------------------------------------------------------------
    def start(self) -> None:
        for index in range(self.settings.pull.max_concurrent_retrieves):
            owner = worker_name(f"{self.name}{index}")
            thread = threading.Thread(target=self._run, args=(owner,), name=f"puller-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        LOGGER.info(
            "puller started: %d thread(s), sources %s",
            len(self._threads),
            ", ".join(sorted(self.settings.sources)) or "none",
        )

    def _run(self, owner: str) -> None:
        poll = self.settings.pull.poll_seconds
        while not self._stop.is_set():
            try:
                did, rate_wait = self.step(owner)
            except SQLAlchemyError as exc:  # the message may quote row values: the type only
                LOGGER.error("puller: database error %s; trying again", type(exc).__name__)
                did, rate_wait = False, None
            except Exception as exc:  # noqa: BLE001 - the thread must live on; the next poll retries
                log_unexpected(LOGGER, "puller: unexpected failure; trying again", exc)
                did, rate_wait = False, None
            if did:
                continue
            wait = poll if rate_wait is None else min(poll, max(rate_wait, 0.05))
            if self.wake.wait(wait):
                self.wake.clear()

    def stop(self, timeout: float = 30.0) -> list[str]:
        """Stop: retrieves in progress are aborted and handed back (retried at the next start)."""
        self._stop.set()
        self.wake.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        still = [thread.name for thread in self._threads if thread.is_alive()]
        self._threads = []
        return still

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()
