"""Shared by the commands that read the configuration: ``--config`` and turning errors into CommandError."""

from __future__ import annotations

import argparse
import os
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
        help="YAML configuration file (default: $GAZEX_CONFIG when set; "
        "GAZEX_<SECTION>__<KEY> environment variables override it)",
    )


#: Names the configuration file when ``--config`` is not given (containers, systemd units).
CONFIG_ENV = "GAZEX_CONFIG"


def config_path(args: argparse.Namespace) -> Path | None:
    """``--config``, else ``$GAZEX_CONFIG`` (when set and not empty), else no file."""
    given: Path | None = getattr(args, "config", None)
    if given is not None:
        return given
    from_env = os.environ.get(CONFIG_ENV, "")
    return Path(from_env) if from_env else None


def settings_from(args: argparse.Namespace, overrides: Mapping[str, Any] | None = None) -> Settings:
    try:
        return load_settings(config_path(args), overrides)
    except ConfigError as exc:
        raise CommandError(str(exc)) from None
