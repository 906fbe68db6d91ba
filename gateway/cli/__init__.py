"""The ``gazex`` command line.

Each subcommand lives in its own module under ``gateway.cli`` and exposes
``register(subparsers)``, which adds its parser and sets ``handler`` to a function taking the
parsed arguments and returning the exit status.  Add a module's name to ``COMMAND_MODULES``
to make it appear in ``gazex --help``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from gateway import __version__
from gateway.safelog import keep_identifiers_out_of_logs

#: Subcommand modules, in the order ``gazex --help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "version",
    "demo",
    "serve",
    "worker",
    "studies",
    "jobs",
    "deliveries",
    "reprocess",
    "pull",
    "rules",
    "echo",
    "health",
    "config",
    "db",
    "analyze",
    "model",
    "users",
)


class CommandError(Exception):
    """An error for the operator: printed as ``gazex: error: <message>``, exit status 2."""


def _requested_command(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line, if it is one of ours (before parsing)."""
    words = iter(argv)
    for word in words:
        if word == "--log-level":
            next(words, None)
        elif not word.startswith("-"):
            return word if word in COMMAND_MODULES else None
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``gazex`` parser.

    Given the command line, only the named subcommand's module is imported: each pulls in
    different heavy libraries (SQLAlchemy, highdicom, torch), and a health probe or a
    ``gazex echo`` should not pay for all of them.  Without a known subcommand (``--help``,
    a typo) every module is registered, so help and error messages list them all.
    """
    parser = argparse.ArgumentParser(
        prog="gazex",
        description="GazeX Gateway: a DICOM node that runs GazeX on chest radiographs "
        "and returns SR, SEG and GSPS results to the archive.",
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("-V", action="version", version=f"gazex {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    requested = _requested_command(argv) if argv is not None else None
    for name in (requested,) if requested else COMMAND_MODULES:
        module = importlib.import_module(f"gateway.cli.{name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    typed = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(typed)
    args = parser.parse_args(typed)
    args.argv = typed  # what was typed, for provenance records
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    keep_identifiers_out_of_logs()  # whatever the log level: no PHI in logs
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        status: int = handler(args)
    except CommandError as exc:
        print(f"gazex: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return status
