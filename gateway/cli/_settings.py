"""Shared by the commands that read the configuration: ``--config`` and turning errors into CommandError."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gateway.cli import CommandError
from gateway.config import ConfigError, Settings, load_settings


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="YAML configuration file (GAZEX_<SECTION>__<KEY> environment variables override it)",
    )


def settings_from(args: argparse.Namespace, overrides: Mapping[str, Any] | None = None) -> Settings:
    try:
        return load_settings(getattr(args, "config", None), overrides)
    except ConfigError as exc:
        raise CommandError(str(exc)) from None
