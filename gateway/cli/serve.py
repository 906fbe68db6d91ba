"""``gazex serve``: run the DICOM node (C-ECHO and C-STORE SCP) until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import gc
import logging
import signal
from pathlib import Path
from typing import Any

from pydicom import config as pydicom_config

from gateway.cli import CommandError
from gateway.cli._settings import add_config_argument, settings_from
from gateway.cli.worker import end_process, quiet_libraries
from gateway.config.live import ConfigRejected
from gateway.db import DatabaseError
from gateway.dicom.tls import TLSConfigError
from gateway.pipeline.model import ModelUnavailable, check_demo_allowed
from gateway.runtime import AuditUnavailableError, GatewayRuntime
from gateway.spool import SpoolError
from gateway.web import ApiContext, HttpServer, HttpServerError, create_app

LOGGER = logging.getLogger("gateway.serve")


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve",
        help="run the gateway: DICOM node, study completion, analysis workers, delivery, retention",
        description="Run the Storage and Verification SCP, the study completion schedule, the analysis workers, "
        "the senders and retention until SIGTERM/SIGINT, then shut down gracefully.",
    )
    add_config_argument(parser)
    parser.add_argument("--port", type=int, help="TCP port to listen on (dicom.port)")
    parser.add_argument("--ae-title", metavar="AET", help="our AE title (dicom.ae_titles: [AET])")
    parser.add_argument("--data-dir", type=Path, metavar="DIR", help="data directory (storage.data_dir)")
    parser.set_defaults(handler=run)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    dicom: dict[str, Any] = {}
    if args.port is not None:
        dicom["port"] = args.port
    if args.ae_title is not None:
        dicom["ae_titles"] = [args.ae_title]
    overrides: dict[str, Any] = {"dicom": dicom} if dicom else {}
    if args.data_dir is not None:
        overrides["storage"] = {"data_dir": args.data_dir}
    return overrides


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args, _overrides(args))
    try:
        check_demo_allowed(settings.model)  # before anything listens: a PACS must not get demo output
    except ModelUnavailable as exc:
        raise CommandError(str(exc)) from None
    # pydicom must never warn about values on the receive path: its warnings can quote PHI
    pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE
    quiet_libraries()
    # SIGTERM/SIGINT are blocked before any thread starts (threads inherit the mask) and taken
    # by sigwait in this thread, so a signal is seen at once, whichever thread it was sent to
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    runtime = GatewayRuntime(settings)
    http: HttpServer | None = None
    try:
        try:
            runtime.open()
            http = _start_http(runtime)
            host, port = runtime.start()
        except (DatabaseError, SpoolError, TLSConfigError, ConfigRejected, AuditUnavailableError) as exc:
            raise CommandError(str(exc)) from None
        except OSError as exc:
            raise CommandError(
                f"cannot listen on {settings.dicom.host}:{settings.dicom.port}: {exc.strerror}; "
                "choose another dicom.port (or --port) or stop what uses it"
            ) from None
        # start-up's objects (modules, settings, the model) out of the cyclic collector's sight: pynetdicom's
        # server runs a full gc.collect() every 12 s, which would walk them all (~0.25 s holding the GIL)
        gc.freeze()
        LOGGER.info("gazex serve ready on %s:%d; stop with SIGTERM", host, port)
        received = signal.sigwait(stop_signals)
        LOGGER.info("%s received: shutting down gracefully", signal.Signals(received).name)
        abandoned = runtime.stop()
    finally:
        if http is not None:
            http.stop()
        runtime.close()
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
    if abandoned:
        end_process(0)
    return 0


def _start_http(runtime: GatewayRuntime) -> HttpServer | None:
    """The API, console and metrics server, when http.enabled; a CommandError when it cannot listen."""
    settings = runtime.settings
    if not settings.http.enabled:
        LOGGER.info("the HTTP API and console are off (http.enabled: false)")
        return None
    assert runtime.engine is not None
    context = ApiContext(settings=settings, engine=runtime.engine, observer=runtime.observers, runtime=runtime)
    app = create_app(context)
    server = HttpServer(settings.http, app)
    try:
        host, port = server.start()
    except HttpServerError as exc:
        raise CommandError(str(exc)) from None
    LOGGER.info("HTTP API and console on %s://%s:%d (API: /api/v1, OpenAPI: /api/v1/docs)", server.scheme, host, port)
    if not context.accounts.has_users():
        LOGGER.warning("no console or API account exists yet: make the first with `gazex users add NAME --role admin`")
    return server
