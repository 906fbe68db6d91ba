"""``gazex db upgrade`` and ``gazex db status``: the index database's schema."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gateway.cli import CommandError
from gateway.cli._settings import add_config_argument, settings_from
from gateway.db import DatabaseError, create_database_engine, describe, schema_status, upgrade


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser("db", help="database schema: upgrade or show its status")
    actions = parser.add_subparsers(dest="db_action", metavar="ACTION", required=True)
    up = actions.add_parser("upgrade", help="apply every pending migration to the configured database")
    add_config_argument(up)
    up.set_defaults(handler=run_upgrade)
    status = actions.add_parser("status", help="show the schema revision; exit 1 when migrations are pending")
    add_config_argument(status)
    status.set_defaults(handler=run_status)


def run_upgrade(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    url = settings.database_url
    engine = None
    try:
        engine = create_database_engine(url)
        before = schema_status(engine).current
        after = upgrade(engine)
    except DatabaseError as exc:
        raise CommandError(f"{describe(url)}: {exc}") from None
    finally:
        if engine is not None:
            engine.dispose()
    if before == after.current:
        print(f"{describe(url)}: already at revision {after.current}")
    else:
        print(f"{describe(url)}: upgraded from {before or 'an empty database'} to revision {after.current}")
    return 0


def run_status(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    url = settings.database_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        print(f"{describe(url)}: does not exist yet; `gazex db upgrade` or `gazex serve` creates it")
        return 1
    engine = None
    try:
        engine = create_database_engine(url, create_directory=False)
        status = schema_status(engine)
    except DatabaseError as exc:
        raise CommandError(f"{describe(url)}: {exc}") from None
    finally:
        if engine is not None:
            engine.dispose()
    state = "up to date" if status.up_to_date else ("newer than this gazex" if not status.known else "needs upgrade")
    print(f"{describe(url)}: revision {status.current or '(empty)'}, this gazex's newest {status.head}: {state}")
    return 0 if status.up_to_date else 1
