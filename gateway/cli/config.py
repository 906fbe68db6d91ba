"""``gazex config check FILE``, ``example``, and the live configuration: ``show``, ``history``, ``reseed``."""

from __future__ import annotations

import argparse
import os
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from gateway.cli import CommandError
from gateway.cli._settings import add_config_argument, settings_from
from gateway.cli._tables import database, format_table
from gateway.config import ConfigError, load_settings
from gateway.config.live import ConfigRejected, LiveSettings, differing_sections, managed_document
from gateway.config.loading import environment_values
from gateway.db import describe
from gateway.dicom.tls import TLSConfigError, server_context
from gateway.pipeline.sender import SendError, tls_context
from gateway.pipeline.stow import https_context


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "config", help="check a configuration file, or print an example"
    )
    actions = parser.add_subparsers(dest="config_action", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check",
        help="validate FILE (with GAZEX_* overrides) without starting anything",
        description="Validate a configuration file as `gazex serve --config FILE` would, and load its TLS files.",
    )
    check.add_argument("file", type=Path, metavar="FILE")
    check.set_defaults(handler=run_check)
    example = actions.add_parser("example", help="print a complete, commented example configuration")
    example.set_defaults(handler=run_example)
    show = actions.add_parser(
        "show",
        help="print the live configuration in force (AE titles, callers, destinations, routing) as YAML",
        description="Print the managed sections as the database holds them (the newest revision), or as the "
        "configuration file has them when the database has no revision yet.",
    )
    add_config_argument(show)
    show.set_defaults(handler=run_show)
    history = actions.add_parser("history", help="list the revisions of the live configuration, newest first")
    add_config_argument(history)
    history.add_argument("--limit", type=int, default=20, help="how many revisions (default 20)")
    history.set_defaults(handler=run_history)
    reseed = actions.add_parser(
        "reseed",
        help="take the configuration file's AE titles, callers, destinations and routing as a new live revision",
        description="Store the managed sections of the configuration file (with GAZEX_* overrides) as the newest "
        "revision of the live configuration; running gazex serve and gazex worker processes follow within seconds.",
    )
    add_config_argument(reseed)
    reseed.set_defaults(handler=run_reseed)


def example_text() -> str:
    return resources.files("gateway.config").joinpath("example.yaml").read_text(encoding="utf-8")


def run_example(args: argparse.Namespace) -> int:
    print(example_text(), end="")
    return 0


def run_check(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.file)
    except ConfigError as exc:
        raise CommandError(str(exc)) from None
    if settings.dicom.tls.enabled:
        try:
            server_context(settings.dicom.tls)
        except TLSConfigError as exc:
            raise CommandError(f"{args.file}: {exc}") from None
    for name, destination in settings.destinations.items():
        if destination.type == "dicomweb":
            try:
                https_context(destination)
            except SendError as exc:
                raise CommandError(f"{args.file}: destinations.{name}.tls: {exc}") from None
            continue
        try:
            tls_context(destination)
        except SendError as exc:
            raise CommandError(f"{args.file}: destinations.{name}.tls: {exc}") from None
    overrides = environment_values(os.environ)
    note = f" (with GAZEX_* overrides of: {', '.join(sorted(overrides))})" if overrides else ""
    dicom = settings.dicom
    print(f"{args.file}: valid{note}")
    tls = " with TLS" if dicom.tls.enabled else ""
    print(f"  AE title(s) {', '.join(dicom.ae_titles)} on {dicom.host}:{dicom.port}{tls}")
    print(
        f"  {len(dicom.allowed_callers)} allowed caller(s), unknown callers "
        f"{'rejected' if dicom.reject_unknown_callers else 'accepted'}"
    )
    print(f"  spool {settings.storage.spool_path}, database {describe(settings.database_url)}")
    print(f"  outbox {settings.storage.outbox_path}; model {settings.model.path} ({settings.model.backend})")
    rules = ", ".join(rule.name for rule in settings.routing.rules) or "none: nothing is analysed"
    destinations = ", ".join(
        f"{name} (STOW-RS {d.base_url})"
        if d.type == "dicomweb"
        else f"{name} ({d.ae_title}@{d.host}:{d.port}{' TLS' if d.tls.enabled else ''})"
        for name, d in settings.destinations.items()
    )
    print(f"  routing rules: {rules}; destinations: {destinations or 'none: results stay in the outbox'}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    with database(settings) as engine:
        live = LiveSettings(engine, settings)
        history = live.history(limit=1)
        document = history[0].document if history else managed_document(settings)
    if history:
        latest = history[0]
        at = latest.created_at.strftime("%Y-%m-%d %H:%M:%S %Z")
        print(f"# live configuration revision {latest.revision}, by {latest.actor}, {at}")
        differing = differing_sections(managed_document(settings), document)
        if differing:
            print(f"# differs from the configuration file in: {', '.join(differing)} (the revision is in force)")
    else:
        print("# no live revision yet: the configuration file's values (seeded at the first gazex serve)")
    print(yaml.safe_dump(document, sort_keys=False), end="")
    return 0


def run_history(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    with database(settings) as engine:
        revisions = LiveSettings(engine, settings).history(limit=args.limit)
    if not revisions:
        print("no live revision yet: it is seeded from the configuration file at the first gazex serve")
        return 0
    print(
        format_table(
            ["revision", "at", "by", "summary"],
            [(r.revision, r.created_at, r.actor, r.summary) for r in revisions],
            max_width=80,
        )
    )
    return 0


def run_reseed(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    with database(settings) as engine:
        live = LiveSettings(engine, settings)
        if not live.history(limit=1):
            live.seed()
            print("stored revision 1 from the configuration file (the live configuration was not seeded yet)")
            return 0
        try:
            change = live.reseed_from(settings, actor="file")
        except ConfigRejected as exc:
            raise CommandError(str(exc)) from None
    if not change.after:
        print(f"the live configuration (revision {change.revision}) already has the file's values: nothing stored")
    else:
        print(f"stored revision {change.revision} from the configuration file: {', '.join(change.after)}")
    return 0
