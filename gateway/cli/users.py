"""``gazex users``: accounts of the console and API (there is no default account).

gazex users add NAME --role admin        the first admin; the password is asked twice
gazex users list | passwd NAME | set-role NAME ROLE | disable NAME | enable NAME | delete NAME
gazex users token NAME --name NAME       a bearer token for the API, printed once
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from gateway.accounts import MIN_PASSWORD_LENGTH, ROLES, AccountError, Accounts
from gateway.cli import CommandError
from gateway.cli._settings import add_config_argument, settings_from
from gateway.cli._tables import format_table
from gateway.config import Settings
from gateway.db import DatabaseError, create_database_engine, describe, require_current, upgrade


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "users", help="accounts of the web console and HTTP API: add, list, change, tokens"
    )
    actions = parser.add_subparsers(dest="users_action", metavar="ACTION", required=True)

    def action(name: str, help_text: str, handler: Any, *, password: bool = False) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=help_text)
        add_config_argument(sub)
        if name != "list":
            sub.add_argument("username", metavar="NAME")
        if password:
            source = sub.add_mutually_exclusive_group()
            source.add_argument("--password-file", type=Path, metavar="FILE", help="read the password from FILE")
            source.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
        sub.set_defaults(handler=handler)
        return sub

    add = action(
        "add", "add an account (the password is asked twice unless given by file or stdin)", run_add, password=True
    )
    add.add_argument("--role", choices=ROLES, required=True, help="viewer: read; operator: also act; admin: all")
    action("list", "list the accounts", run_list)
    action("passwd", "set an account's password", run_passwd, password=True)
    set_role = action("set-role", "change an account's role", run_set_role)
    set_role.add_argument("role", choices=ROLES)
    action("disable", "disable an account (its sessions and tokens end)", run_disable)
    action("enable", "enable a disabled account", run_enable)
    action("delete", "delete an account", run_delete)
    token = action("token", "make an API bearer token for an account; printed once", run_token)
    token.add_argument("--name", required=True, help="what the token is for, e.g. prometheus")
    token.add_argument("--expires-days", type=int, metavar="DAYS", help="lifetime in days (default: no expiry)")


@contextmanager
def _accounts(args: argparse.Namespace) -> Iterator[Accounts]:
    settings: Settings = settings_from(args)
    engine: Engine | None = None
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        engine = create_database_engine(settings.database_url)
        if settings.database.upgrade_on_start:
            upgrade(engine)
        else:
            require_current(engine)
        yield Accounts(engine)
    except DatabaseError as exc:
        raise CommandError(f"{describe(settings.database_url)}: {exc}") from None
    except AccountError as exc:
        raise CommandError(str(exc)) from None
    finally:
        if engine is not None:
            engine.dispose()


def _password(args: argparse.Namespace) -> str:
    if args.password_file is not None:
        try:
            text = args.password_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"cannot read {args.password_file}: {exc.strerror}") from None
        return text.splitlines()[0] if text else ""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise CommandError("no terminal to ask the password: use --password-file FILE or --password-stdin")
    first = getpass.getpass(f"password (at least {MIN_PASSWORD_LENGTH} characters): ")
    if getpass.getpass("again: ") != first:
        raise CommandError("the two passwords differ; nothing was changed")
    return first


def run_add(args: argparse.Namespace) -> int:
    password = _password(args)
    with _accounts(args) as accounts:
        view = accounts.add_user(args.username, args.role, password)
    print(f"user {view.username} added as {view.role}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    with _accounts(args) as accounts:
        users = accounts.users()
    if not users:
        print("no accounts yet: gazex users add NAME --role admin")
        return 0
    print(
        format_table(
            ["user", "role", "state", "created", "last login"],
            [
                [
                    u.username,
                    u.role,
                    "disabled" if u.disabled else "enabled",
                    f"{u.created_at:%Y-%m-%d %H:%M}",
                    f"{u.last_login_at:%Y-%m-%d %H:%M}" if u.last_login_at else "never",
                ]
                for u in users
            ],
        )
    )
    return 0


def run_passwd(args: argparse.Namespace) -> int:
    password = _password(args)
    with _accounts(args) as accounts:
        accounts.update_user(args.username, password=password)
    print(f"password of {args.username} changed; its console sessions ended")
    return 0


def run_set_role(args: argparse.Namespace) -> int:
    with _accounts(args) as accounts:
        before, after = accounts.update_user(args.username, role=args.role)
    print(f"{after.username}: {before.role} -> {after.role}")
    return 0


def run_disable(args: argparse.Namespace) -> int:
    with _accounts(args) as accounts:
        accounts.update_user(args.username, disabled=True)
    print(f"{args.username} disabled; its sessions and tokens ended")
    return 0


def run_enable(args: argparse.Namespace) -> int:
    with _accounts(args) as accounts:
        accounts.update_user(args.username, disabled=False)
    print(f"{args.username} enabled")
    return 0


def run_delete(args: argparse.Namespace) -> int:
    with _accounts(args) as accounts:
        accounts.delete_user(args.username)
    print(f"{args.username} deleted")
    return 0


def run_token(args: argparse.Namespace) -> int:
    with _accounts(args) as accounts:
        secret, view = accounts.create_token(args.username, args.name, expires_days=args.expires_days)
    expiry = f"expires {view.expires_at:%Y-%m-%d}" if view.expires_at else "does not expire"
    print(f"token {view.id} ({view.name}) for {view.username}, {expiry}; it is shown only now:", file=sys.stderr)
    print(secret)
    return 0
