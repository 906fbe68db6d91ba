"""``gazex jobs``: the analysis queue: every job, its attempts and its outcome."""

from __future__ import annotations

import argparse
from typing import Any

from gateway.cli._settings import add_config_argument, settings_from
from gateway.cli._tables import database, format_table
from gateway.pipeline import status
from gateway.pipeline.states import JobStatus


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "jobs",
        help="list analysis jobs: status, attempts, model, worker, error",
        description="List analysis jobs, newest first. Failed jobs stay listed with their reason.",
    )
    add_config_argument(parser)
    parser.add_argument("--status", choices=[s.value for s in JobStatus], help="only jobs in this status")
    parser.add_argument("--study", metavar="STUDY_UID", help="only jobs of this study")
    parser.add_argument("--limit", type=int, default=50, help="how many jobs (default 50)")
    parser.add_argument("--wide", action="store_true", help="do not shorten the error column")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    with database(settings) as engine:
        rows = status.jobs(engine, limit=args.limit, status=args.status, study_instance_uid=args.study)
    if not rows:
        print("no jobs")
        return 0
    print(
        format_table(
            [
                "job",
                "study",
                "status",
                "attempts",
                "rule",
                "outputs",
                "findings",
                "model",
                "created",
                "finished",
                "worker",
                "error",
                "incomplete",
            ],
            [
                (
                    r.id,
                    r.study_instance_uid,
                    r.status,
                    r.attempts,
                    r.rule,
                    r.outputs,
                    r.findings_present,
                    r.model,
                    r.created_at,
                    r.finished_at,
                    r.processed_by,
                    r.last_error,
                    r.omissions,
                )
                for r in rows
            ],
            max_width=10_000 if args.wide else 64,
        )
    )
    return 0
