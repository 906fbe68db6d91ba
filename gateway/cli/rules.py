"""``gazex rules test FILE.dcm``: which routing rule takes an instance, and why."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pydicom
from pydicom.errors import InvalidDicomError

from gateway.cli import CommandError
from gateway.cli._settings import add_config_argument, settings_from
from gateway.pipeline.routing import FIELDS, InstanceFacts, explain_rules, facts_from_header, rule_takes


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser("rules", help="test the routing rules against a DICOM file")
    actions = parser.add_subparsers(dest="rules_action", metavar="ACTION", required=True)
    test = actions.add_parser(
        "test",
        help="show which routing rule takes FILE.dcm and why, condition by condition",
        description="Evaluate the configured routing rules (in order) against the header of FILE.dcm, as if it "
        "had been received from --calling-ae for --called-ae, and print every condition's result.",
    )
    add_config_argument(test)
    test.add_argument("file", type=Path, metavar="FILE.dcm")
    test.add_argument("--calling-ae", default=None, metavar="AET", help="the sender's AE title (default: absent)")
    test.add_argument("--called-ae", default=None, metavar="AET", help="our AE title it was sent to (default: ours)")
    test.set_defaults(handler=run_test)


def facts_from_file(path: Path, calling_ae: str | None, called_ae: str | None) -> InstanceFacts:
    try:
        dataset = pydicom.dcmread(path, stop_before_pixels=True)
    except FileNotFoundError:
        raise CommandError(f"{path}: no such file") from None
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise CommandError(f"{path}: not a readable DICOM file ({type(exc).__name__})") from None
    return facts_from_header(dataset, calling_ae, called_ae)


def run_test(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    called = args.called_ae if args.called_ae is not None else settings.dicom.ae_title
    facts = facts_from_file(args.file, args.calling_ae, called)
    print(f"{args.file}:")
    for field in FIELDS:
        value = facts.value(field)
        print(f"  {field:<18} {'(absent)' if value is None else value}")
    print()
    for line in explain_rules(settings.routing.rules, facts):
        print(line)
    return 0 if any(rule_takes(rule, facts) for rule in settings.routing.rules) else 1
