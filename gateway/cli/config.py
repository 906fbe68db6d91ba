"""``gazex config check FILE`` and ``gazex config example``."""

from __future__ import annotations

import argparse
import os
from importlib import resources
from pathlib import Path
from typing import Any

from gateway.cli import CommandError
from gateway.config import ConfigError, load_settings
from gateway.config.loading import environment_values
from gateway.db import describe
from gateway.dicom.tls import TLSConfigError, server_context
from gateway.pipeline.sender import SendError, tls_context


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
        f"{name} ({d.ae_title}@{d.host}:{d.port}{' TLS' if d.tls.enabled else ''})"
        for name, d in settings.destinations.items()
    )
    print(f"  routing rules: {rules}; destinations: {destinations or 'none: results stay in the outbox'}")
    return 0
