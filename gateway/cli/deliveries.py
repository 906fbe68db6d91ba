"""``gazex deliveries`` lists deliveries; ``gazex deliveries retry ID|--dead`` tries dead ones again."""

from __future__ import annotations

import argparse
from typing import Any

from gateway.cli import CommandError
from gateway.cli._settings import add_config_argument, settings_from
from gateway.cli._tables import database, format_table
from gateway.pipeline import status
from gateway.pipeline.clock import SystemClock
from gateway.pipeline.delivery import retry_deliveries
from gateway.pipeline.states import DeliveryStatus


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "deliveries",
        help="list deliveries of results to destinations; `retry ID|--dead` tries again",
        description="List deliveries (one per job and destination), newest first, or retry dead ones.",
    )
    add_config_argument(parser)
    parser.add_argument("--status", choices=[s.value for s in DeliveryStatus], help="only deliveries in this status")
    parser.add_argument("--job", type=int, help="only deliveries of this job")
    parser.add_argument("--limit", type=int, default=50, help="how many (default 50)")
    parser.add_argument("--wide", action="store_true", help="do not shorten the error column")
    parser.set_defaults(handler=run_list)
    actions = parser.add_subparsers(dest="deliveries_action", metavar="ACTION")
    retry = actions.add_parser(
        "retry",
        help="make a dead delivery (or all with --dead) due now; acknowledged outputs are not sent again",
        description="Reset a dead (or waiting) delivery's attempts and make it due now. Outputs the destination "
        "already acknowledged are never sent again.",
    )
    add_config_argument(retry)
    target = retry.add_mutually_exclusive_group(required=True)
    target.add_argument("id", nargs="?", type=int, help="the delivery's id (see gazex deliveries)")
    target.add_argument("--dead", action="store_true", help="every dead delivery")
    retry.set_defaults(handler=run_retry)


def run_list(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    with database(settings) as engine:
        rows = status.deliveries(engine, limit=args.limit, status=args.status, job_id=args.job)
    if not rows:
        print("no deliveries")
        return 0
    print(
        format_table(
            [
                "delivery",
                "job",
                "study",
                "destination",
                "status",
                "acknowledged",
                "attempts",
                "next attempt",
                "delivered",
                "error",
            ],
            [
                (
                    r.id,
                    r.job_id,
                    r.study_instance_uid,
                    r.destination,
                    r.status,
                    f"{r.acknowledged}/{r.total}",
                    r.attempts,
                    r.next_attempt_at if r.status == DeliveryStatus.PENDING else None,
                    r.delivered_at,
                    r.last_error,
                )
                for r in rows
            ],
            max_width=10_000 if args.wide else 64,
        )
    )
    return 0


def run_retry(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    with database(settings) as engine:
        if args.dead:
            ids = retry_deliveries(engine, SystemClock(), dead=True)
            print(f"{len(ids)} dead delivery(ies) due again: {', '.join(map(str, ids)) or 'none'}")
            return 0
        found = status.deliveries(engine, limit=1, delivery_id=args.id)
        if not found:
            raise CommandError(f"there is no delivery {args.id}; list them with: gazex deliveries")
        row = found[0]
        if row.status == DeliveryStatus.DELIVERED:
            raise CommandError(f"delivery {args.id} was delivered already; nothing to retry")
        if row.status == DeliveryStatus.SENDING:
            raise CommandError(f"delivery {args.id} is being sent right now; wait for the attempt to end")
        retry_deliveries(engine, SystemClock(), args.id)
    print(f"delivery {args.id} to {row.destination} is due again ({row.acknowledged}/{row.total} already acknowledged)")
    return 0
