"""``gazex health``: is this node's database, spool and DICOM port in order? (exit 0 yes, 1 no)."""

from __future__ import annotations

import argparse
from typing import Any

from gateway.cli._settings import add_config_argument, settings_from
from gateway.health import run_checks


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "health",
        help="check the database, the spool, the outbox and the DICOM port of a running node (exit 0 healthy, 1 not)",
        description="For container health checks and probes: checks that the configured database answers "
        "with the current schema, that the spool and the outbox are writable with free disk above the reserve, "
        "and that the DICOM port accepts TCP connections. Prints one line per check.",
    )
    add_config_argument(parser)
    parser.add_argument(
        "--timeout", type=float, default=5.0, metavar="SECONDS", help="TCP connect timeout of the port check"
    )
    parser.add_argument(
        "--no-listener", action="store_true", help="skip the DICOM port check (e.g. before gazex serve starts)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    results = run_checks(settings, timeout=args.timeout, listener=not args.no_listener)
    for result in results:
        print(f"{'ok' if result.ok else 'FAIL':<4}  {result.name:<8}  {result.detail}")
    return 0 if all(result.ok for result in results) else 1
