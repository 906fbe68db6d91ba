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

#: Subcommand modules, in the order ``gazex --help`` lists them.
COMMAND_MODULES: tuple[str, ...] = ("version", "analyze", "model")


class CommandError(Exception):
    """An error for the operator: printed as ``gazex: error: <message>``, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gazex",
        description="GazeX Gateway: a DICOM node that runs GazeX on chest radiographs "
        "and returns SR, SEG and GSPS results to the archive.",
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("-V", action="version", version=f"gazex {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"gateway.cli.{name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what was typed, for provenance records
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
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
