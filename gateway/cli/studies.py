"""``gazex studies``: received studies, their completion, routing and where their results are."""

from __future__ import annotations

import argparse
from typing import Any

from gateway.cli._settings import add_config_argument, settings_from
from gateway.cli._tables import database, format_table
from gateway.pipeline import status


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "studies",
        help="list received studies: instances, completion, routing, analysis and delivery state",
        description="List the most recently received studies with their state: receiving, not routed (and why), "
        "queued, analysing, delivering, delivered, delivery dead, failed.",
    )
    add_config_argument(parser)
    parser.add_argument("--limit", type=int, default=50, help="how many studies (default 50, newest first)")
    parser.add_argument("--study", metavar="STUDY_UID", help="only this Study Instance UID")
    parser.add_argument("--wide", action="store_true", help="do not shorten the detail column")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    with database(settings) as engine:
        rows = status.studies(engine, limit=args.limit, study_instance_uid=args.study)
    if not rows:
        print("no studies received yet")
        return 0
    print(
        format_table(
            ["study", "instances", "last received", "state", "rule", "job", "detail"],
            [
                (r.study_instance_uid, r.instances, r.last_received_at, r.state, r.rule, r.job_id, r.detail)
                for r in rows
            ],
            max_width=10_000 if args.wide else 64,
        )
    )
    return 0
