"""``gazex worker``: analysis workers and senders without a DICOM node, sharing a PostgreSQL queue.

Extra workers, on this machine or others, claim jobs and deliveries from the same database
as ``gazex serve``.  They read the spool and write the outbox at the configured paths, so
those must be the same shared storage on every machine (see docs/pipeline.md, "Several workers").
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import Any, NoReturn

from pydicom import config as pydicom_config
from sqlalchemy import Engine

from gateway.audit import AuditTrail
from gateway.cli import CommandError
from gateway.cli._settings import add_config_argument, settings_from
from gateway.config import Settings
from gateway.config.live import ConfigRejected, LiveSettings
from gateway.db import DatabaseError, create_database_engine, describe, require_current, upgrade
from gateway.events import Observers
from gateway.pipeline.model import ModelUnavailable, check_demo_allowed
from gateway.pipeline.service import Pipeline
from gateway.runtime import AuditUnavailableError, open_audit_trail

LOGGER = logging.getLogger("gateway.worker")


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "worker",
        help="run analysis workers and senders (no DICOM node) on a shared PostgreSQL queue",
        description="Claim analysis jobs and deliveries from the configured PostgreSQL database until SIGTERM; "
        "with --burst, until nothing is due. The spool and outbox paths must be the shared ones.",
    )
    add_config_argument(parser)
    parser.add_argument("--burst", action="store_true", help="work until no job or delivery is due, then exit")
    parser.add_argument("--concurrency", type=int, default=None, help="jobs at once (worker.concurrency)")
    parser.set_defaults(handler=run)


def quiet_libraries() -> None:
    """Library chatter that is not ours goes to WARNING (highdicom's per-attribute INFO lines, APScheduler's ticks)."""
    for name, level in (
        ("highdicom", logging.WARNING),
        ("pynetdicom", logging.WARNING),
        ("apscheduler", logging.ERROR),
    ):
        logger = logging.getLogger(name)
        if not logger.isEnabledFor(logging.DEBUG):
            logger.setLevel(level)


def _audit_trail(settings: Settings) -> AuditTrail:
    """The audit trail records what this worker exports."""
    try:
        return open_audit_trail(settings)
    except AuditUnavailableError as exc:
        raise CommandError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    if args.concurrency is not None:
        overrides["worker"] = {"concurrency": args.concurrency}
    settings = settings_from(args, overrides)
    try:
        check_demo_allowed(settings.model)
    except ModelUnavailable as exc:
        raise CommandError(str(exc)) from None
    if settings.database_url.startswith("sqlite"):
        raise CommandError(
            "gazex worker needs PostgreSQL (database.url): with SQLite the one worker process is gazex serve "
            "itself (raise worker.concurrency for more threads there)"
        )
    pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE
    quiet_libraries()
    url = settings.database_url
    try:
        engine = create_database_engine(url)
        if settings.database.upgrade_on_start:
            upgrade(engine)
        else:
            require_current(engine)
    except DatabaseError as exc:
        raise CommandError(f"{describe(url)}: {exc}") from None
    live = live_settings(engine, settings)
    audit = _audit_trail(settings)
    observers = Observers([audit])  # a worker's metrics are computed from the database by gazex serve
    pipeline = Pipeline(engine, settings, completion=False, retention=False, observer=observers, live=live.current)
    try:
        if args.burst:
            try:
                jobs, attempts = pipeline.run_burst()
            except ModelUnavailable as exc:
                raise CommandError(str(exc)) from None
            LOGGER.info("burst done: %d job(s) processed, %d delivery attempt(s)", jobs, attempts)
            return 0
        stop_signals = {signal.SIGTERM, signal.SIGINT}
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
        try:
            pipeline.start()
            LOGGER.info("gazex worker ready (%s); stop with SIGTERM", describe(url))
            received = signal.sigwait(stop_signals)
            LOGGER.info("%s received: finishing the work in progress", signal.Signals(received).name)
            abandoned = pipeline.stop(timeout=settings.dicom.shutdown_grace_seconds)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    finally:
        audit.close()
        engine.dispose()
    if abandoned:
        end_process(0)
    return 0


def live_settings(engine: Engine, settings: Settings) -> LiveSettings:
    """The live configuration (routing, destinations) this process follows; seeded when the database has none."""
    live = LiveSettings(engine, settings)
    try:
        live.seed()
    except ConfigRejected as exc:
        engine.dispose()
        raise CommandError(str(exc)) from None
    return live


def end_process(status: int) -> NoReturn:
    """End the process now, without the interpreter's teardown.

    A pipeline thread abandoned at shutdown may be inside native code (loading a model,
    running one) that cannot be interrupted; tearing the interpreter down under it aborts the
    process (PyTorch: "terminate called without an active exception", exit -6).  Its job is safe
    (the lease expires and the job is claimed again), so the process flushes its logs and
    streams and exits with ``status`` at once.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(status)
