"""The pipeline in one process: the completion and retention schedule, worker and sender threads.

``gazex serve`` runs all of it beside the DICOM node; ``gazex worker`` runs workers and
senders only, so extra processes (on other machines too) share a PostgreSQL queue.  Each
loop also has a burst mode (:meth:`Pipeline.run_burst`): work until nothing is due, then
return, which keeps tests and benchmarks deterministic.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from gateway.config import Settings
from gateway.events import GatewayObserver
from gateway.pipeline.clock import Clock, SystemClock
from gateway.pipeline.completer import Completer
from gateway.pipeline.delivery import Deliverer
from gateway.pipeline.model import RELOAD_SECONDS, ModelHolder, ModelUnavailable
from gateway.pipeline.outbox import Outbox
from gateway.pipeline.retention import Retention
from gateway.pipeline.sender import Sender, StoreSender, TypedSender
from gateway.pipeline.stow import StowSender
from gateway.pipeline.worker import Worker, worker_name
from gateway.safelog import log_unexpected

LOGGER = logging.getLogger(__name__)


class Pipeline:
    """Build with settings and a database engine; :meth:`start` / :meth:`stop`, or :meth:`run_burst`."""

    def __init__(
        self,
        db: Engine,
        settings: Settings,
        *,
        clock: Clock | None = None,
        sender: Sender | None = None,
        model: ModelHolder | None = None,
        completion: bool = True,
        retention: bool = True,
        observer: GatewayObserver | None = None,
        live: Callable[[], Settings] | None = None,
    ) -> None:
        """``live`` gives the settings in force now (the live configuration: routing, destinations)."""
        self.db = db
        self.observer = observer or GatewayObserver()
        self.settings = settings
        self.live = live or (lambda: settings)
        self.clock = clock or SystemClock()
        self.outbox = Outbox(settings.storage.outbox_path, int(settings.storage.min_free_disk))
        self.model = model or ModelHolder(settings.model)
        self.sender = sender or TypedSender({"dicom": StoreSender(), "dicomweb": StowSender()})
        self._stop = threading.Event()
        self.jobs_waiting = threading.Event()
        self.deliveries_waiting = threading.Event()
        self.completer = (
            Completer(db, settings, self.clock, on_job_queued=self.jobs_waiting.set, observer=self.observer, live=live)
            if completion
            else None
        )
        self.retention = Retention(db, settings, self.clock) if retention else None
        self.workers = [
            Worker(
                db,
                settings,
                self.outbox,
                self.model,
                self.clock,
                name=worker_name(f"w{index}"),
                on_outputs=self.deliveries_waiting.set,
                observer=self.observer,
            )
            for index in range(settings.worker.concurrency)
        ]
        self.deliverers = [
            Deliverer(
                db,
                settings,
                self.outbox,
                self.sender,
                self.clock,
                name=worker_name(f"d{index}"),
                observer=self.observer,
                live=live,
            )
            for index in range(settings.delivery.concurrency)
        ]
        self._scheduler: BackgroundScheduler | None = None
        self._threads: list[threading.Thread] = []

    # -- running in the background -------------------------------------------------------------
    def start(self) -> None:
        self.outbox.prepare()
        if not self.live().destinations:
            LOGGER.warning("no destinations are configured: analysed results stay in the outbox")
        scheduler = BackgroundScheduler(timezone=UTC)
        now = datetime.now(UTC)
        if self.completer is not None:
            scheduler.add_job(
                self.check_completion,
                "interval",
                seconds=self.settings.completion.check_interval_seconds,
                next_run_time=now,
                max_instances=1,
                coalesce=True,
                id="study-completion",
            )
        if self.retention is not None:
            scheduler.add_job(
                self.run_retention,
                "interval",
                seconds=self.settings.retention.check_interval_seconds,
                next_run_time=now,
                max_instances=1,
                coalesce=True,
                id="retention",
            )
        scheduler.start()
        self._scheduler = scheduler
        for worker in self.workers:
            self._spawn(f"worker-{worker.name}", self._work, worker)
        for deliverer in self.deliverers:
            self._spawn(f"sender-{deliverer.name}", deliverer.run, self._stop, self.deliveries_waiting)
        LOGGER.info(
            "pipeline started: %s%d worker(s), %d sender(s), model %s",
            f"completion every {self.settings.completion.check_interval_seconds:.3g} s, " if self.completer else "",
            len(self.workers),
            len(self.deliverers),
            self.settings.model.path,
        )

    def _spawn(self, name: str, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _work(self, worker: Worker) -> None:
        while not self._stop.is_set():
            try:
                worker.run(self._stop, self.jobs_waiting)
            except ModelUnavailable:
                self._stop.wait(RELOAD_SECONDS)  # ModelHolder logged why; jobs wait in the queue meanwhile

    def stop(self, timeout: float = 30.0) -> list[str]:
        """Stop scheduling and claiming; a job or delivery in progress may finish within ``timeout``.

        Whatever is still running after that is abandoned safely: its lease expires and another
        worker, or this one after a restart, claims it again.  Returns the names of the threads
        abandoned (see :func:`gateway.cli.worker.end_process`: a process must not tear its
        interpreter down under them).
        """
        self._stop.set()
        self.jobs_waiting.set()
        self.deliveries_waiting.set()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)
            self._scheduler = None
        deadline = time.monotonic() + max(timeout, 5.0)
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        still = [thread.name for thread in self._threads if thread.is_alive()]
        if still:
            LOGGER.warning("abandoning %s at shutdown; their leases expire and the work is claimed again", still)
        self._threads = []
        return still

    # -- scheduled jobs -----------------------------------------------------------------------
    def check_completion(self) -> None:
        assert self.completer is not None
        try:
            self.completer.check()
        except SQLAlchemyError as exc:  # the message may quote row values (PHI): the type only
            LOGGER.error("study completion check: database error %s; retrying at the next check", type(exc).__name__)
        except Exception as exc:  # noqa: BLE001 - a scheduler tick: log without PHI, the next tick retries
            log_unexpected(LOGGER, "study completion check failed; retrying at the next check", exc)

    def run_retention(self) -> None:
        assert self.retention is not None
        try:
            self.retention.run()
        except SQLAlchemyError as exc:
            LOGGER.error("retention: database error %s; retrying at the next run", type(exc).__name__)
        except OSError as exc:
            LOGGER.error("retention: file system error (%s); retrying at the next run", exc.strerror or exc)

    # -- burst mode -------------------------------------------------------------------------------
    def run_burst(self, *, complete: bool = False) -> tuple[int, int]:
        """Process jobs and deliveries until nothing is due; returns (jobs processed, delivery attempts).

        With ``complete``, the completion check runs first (and again between rounds).
        Raises ModelUnavailable when a job is due and the model cannot be loaded.
        """
        self.outbox.prepare()
        stop = threading.Event()
        jobs = deliveries = 0
        while True:
            if complete and self.completer is not None:
                self.completer.check()
            done_jobs = self._burst_all([worker.run for worker in self.workers], stop)
            done_deliveries = self._burst_all([deliverer.run for deliverer in self.deliverers], stop)
            jobs += done_jobs
            deliveries += done_deliveries
            if done_jobs == 0 and done_deliveries == 0:
                return jobs, deliveries

    @staticmethod
    def _burst_all(loops: list[Any], stop: threading.Event) -> int:
        if len(loops) == 1:
            return int(loops[0](stop, burst=True))
        results: list[int] = [0] * len(loops)
        errors: list[BaseException] = []

        def run(index: int) -> None:
            try:
                results[index] = int(loops[index](stop, burst=True))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(index,)) for index in range(len(loops))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        return sum(results)
