"""``gazex reprocess STUDY_UID``: queue a new analysis of a study, superseding its earlier outputs."""

from __future__ import annotations

import argparse
import uuid
from typing import Any

from gateway.cli import CommandError
from gateway.cli._settings import add_config_argument, settings_from
from gateway.cli._tables import database
from gateway.config.live import LiveSettings
from gateway.pipeline.clock import SystemClock
from gateway.pipeline.completer import Completer, study_pk_of


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "reprocess",
        help="queue a study again: a new analysis whose outputs supersede the earlier ones",
        description="Route the study again with the current rules and queue a new job for it, even if its "
        "instances did not change. The new outputs get new UIDs and supersede the earlier ones.",
    )
    add_config_argument(parser)
    parser.add_argument("study", metavar="STUDY_UID", help="the Study Instance UID (see gazex studies)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    with database(settings) as engine:
        study_pk = study_pk_of(engine, args.study)
        if study_pk is None:
            raise CommandError(f"no study {args.study} was received; list studies with: gazex studies")
        live = LiveSettings(engine, settings)  # the routing rules in force, as gazex serve has them
        result = Completer(engine, settings, SystemClock(), live=live.current).complete_study(
            study_pk, reprocess_nonce=uuid.uuid4().hex
        )
    if result is None or not result.decision.routed:
        reason = result.decision.reason if result is not None else "it could not be completed"
        raise CommandError(f"study {args.study} was not queued: {reason}")
    print(f"study {args.study}: queued job {result.job_id} ({result.decision.reason})")
    return 0
