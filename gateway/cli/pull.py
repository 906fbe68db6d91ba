"""``gazex pull SOURCE ...`` asks a source PACS for studies; ``gazex pull status [ID]`` shows how pulls go.

A pull is recorded in the database and carried out by the running ``gazex serve`` (its puller
keeps to the rate limits and resumes interrupted pulls).  ``--here`` carries it out in this
process instead (no ``gazex serve`` needed for C-GET and DICOMweb sources; for C-MOVE the
instances go to the gateway's Storage SCP, so ``gazex serve`` must run).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Engine

from gateway.cli import CommandError
from gateway.cli._settings import add_config_argument, settings_from
from gateway.cli._tables import database, format_table
from gateway.config import Settings
from gateway.pipeline.clock import SystemClock
from gateway.pull.listing import PullRefusedError, PullSummary, finished, pull_summaries, pull_summary, request_pull
from gateway.pull.query import PullQuery

_ACTIONS = ("status", "cancel")


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "pull",
        help="pull studies from a source PACS (C-FIND + C-MOVE/C-GET or QIDO-RS + WADO-RS); `status [ID]`, `cancel ID`",
        description="Ask a configured source (sources: in the configuration) for studies: by Study Instance UID, "
        "by accession number, or by a query (modalities, body part, date range). The studies found are retrieved "
        "into the gateway, where they are analysed like pushed studies. `gazex pull status [ID]` lists pulls and "
        "their counts; `gazex pull cancel ID` stops one.",
        epilog="examples: gazex pull pacs --modality CR,DX --body-part CHEST --date-from 20250101 --date-to 20250107 "
        "--wait | gazex pull pacs --study-uid 1.2.3 | gazex pull status 4",
    )
    add_config_argument(parser)
    parser.add_argument("source", metavar="SOURCE", help="a source's name (or: status, cancel)")
    parser.add_argument("pull_id", nargs="?", type=int, metavar="ID", help="with status or cancel: a pull's id")
    parser.add_argument("--study-uid", metavar="UID", help="one study, by its Study Instance UID")
    parser.add_argument("--accession", metavar="NUMBER", help="the study with this accession number")
    parser.add_argument("--modality", metavar="LIST", help="modalities in the study, comma-separated (CR,DX)")
    parser.add_argument("--body-part", metavar="PART", help="Body Part Examined of a series (CHEST)")
    parser.add_argument("--date-from", metavar="YYYYMMDD", help="first study date")
    parser.add_argument("--date-to", metavar="YYYYMMDD", help="last study date")
    parser.add_argument("--wait", action="store_true", help="wait until the pull ends, printing its progress")
    parser.add_argument(
        "--here",
        action="store_true",
        help="carry the pull out in this process (implies --wait) instead of leaving it to gazex serve",
    )
    parser.add_argument("--limit", type=int, default=50, help="status: how many pulls (default 50)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if args.source in _ACTIONS:
        with database(settings) as engine:
            return _status(engine, args) if args.source == "status" else _cancel(engine, args)
    if args.pull_id is not None:
        raise CommandError(f"unexpected argument {args.pull_id}: an id goes with `gazex pull status ID`")
    query = _query(args)
    with database(settings) as engine:
        try:
            pull = request_pull(engine, settings, args.source, query, actor="cli", now=SystemClock().now())
        except PullRefusedError as exc:
            raise CommandError(str(exc)) from None
        print(f"pull {pull.id}: queued ({pull.source}: {pull.description})")
        if args.here:
            return _run_here(engine, settings, pull.id)
        if not args.wait:
            print(f"gazex serve carries it out; follow it with: gazex pull status {pull.id}")
            return 0
        return _wait(engine, pull.id)


def _query(args: argparse.Namespace) -> PullQuery:
    values: dict[str, Any] = {
        "study_uid": args.study_uid,
        "accession": args.accession,
        "modalities": args.modality or [],
        "body_part": args.body_part,
        "date_from": args.date_from,
        "date_to": args.date_to,
    }
    try:
        return PullQuery.model_validate({key: value for key, value in values.items() if value not in (None, [])})
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error.get("loc", ()))
            option = "--" + where.replace("_", "-").replace("modalities", "modality") if where else ""
            problems.append(f"{option}: {error['msg']}" if option else str(error["msg"]).removeprefix("Value error, "))
        raise CommandError("; ".join(problems)) from None


def _progress(pull: PullSummary) -> str:
    found = "?" if pull.found is None else str(pull.found)
    line = (
        f"pull {pull.id}: {pull.state}: {found} found, {pull.retrieved} retrieved, {pull.failed} failed, "
        f"{pull.pending} to go, {pull.instances} instance(s)"
    )
    return line + (f"; last error: {pull.last_error}" if pull.last_error and pull.state != "done" else "")


def _wait(engine: Engine, pull_id: int, *, interval: float = 1.0) -> int:
    shown = ""
    while True:
        pull = pull_summary(engine, pull_id)
        assert pull is not None
        line = _progress(pull)
        if line != shown:
            print(line, flush=True)
            shown = line
        if finished(pull.state):
            return 0 if pull.state == "done" else 1
        time.sleep(interval)


def _run_here(engine: Engine, settings: Settings, pull_id: int) -> int:
    from gateway.db.index import InstanceIndex
    from gateway.dicom.store import InstanceStore
    from gateway.events import Observers
    from gateway.pull.puller import Puller
    from gateway.runtime import AuditUnavailableError, open_audit_trail
    from gateway.spool import Spool, SpoolError

    pull = pull_summary(engine, pull_id)
    assert pull is not None
    source = settings.sources[pull.source]
    spool: Spool | None = None
    store: InstanceStore | None = None
    if source.type == "dicomweb" or source.retrieve == "get":
        storage = settings.storage
        spool = Spool(storage.spool_path, int(storage.min_free_disk), node_id=storage.node_id)
        try:
            spool.open()
        except SpoolError as exc:
            raise CommandError(
                f"{exc}; while gazex serve runs, leave the pull to it (run without --here, with --wait)"
            ) from None
        store = InstanceStore(spool, InstanceIndex(engine))
    try:
        audit = open_audit_trail(settings)  # what this process stores is audited as gazex serve's would be
    except AuditUnavailableError as exc:
        if spool is not None:
            spool.close()
        raise CommandError(str(exc)) from None
    puller = Puller(engine, settings, store=store, name="cli", observer=Observers([audit]))
    shown = ""
    try:
        while True:
            puller.run_burst()
            current = pull_summary(engine, pull_id)
            assert current is not None
            line = _progress(current)
            if line != shown:
                print(line, flush=True)
                shown = line
            if finished(current.state):
                return 0 if current.state == "done" else 1
            wait = puller.seconds_until_due(puller.rate_wait)
            time.sleep(min(max(wait if wait is not None else 1.0, 0.2), 30.0))
    except KeyboardInterrupt:
        print(f"interrupted: pull {pull_id} goes on when gazex serve runs (or: gazex pull again with --here)")
        return 130
    finally:
        audit.close()
        if spool is not None:
            spool.close()


def _status(engine: Engine, args: argparse.Namespace) -> int:
    if args.pull_id is not None:
        pull = pull_summary(engine, args.pull_id)
        if pull is None:
            raise CommandError(f"no pull {args.pull_id}; see gazex pull status")
        print(_progress(pull))
        if pull.items:
            items: list[tuple[object, ...]] = [
                (item.id, item.study_instance_uid, item.state, item.attempts, item.instances, item.last_error)
                for item in pull.items
            ]
            print(format_table(["item", "study", "state", "attempts", "instances", "last error"], items, 80))
        return 0
    pulls = pull_summaries(engine, limit=args.limit)
    if not pulls:
        print("no pulls")
        return 0
    rows = [
        (
            p.id,
            p.source,
            p.description,
            p.state,
            "-" if p.found is None else p.found,
            p.retrieved,
            p.failed,
            p.pending,
            p.created_at,
            p.last_error,
        )
        for p in pulls
    ]
    headers = ["pull", "source", "query", "state", "found", "retrieved", "failed", "to go", "created", "last error"]
    print(format_table(headers, rows))
    return 0


def _cancel(engine: Engine, args: argparse.Namespace) -> int:
    from gateway.pull.ledger import PullLedger
    from gateway.pull.puller import pull_backoff

    if args.pull_id is None:
        raise CommandError("give the pull's id: gazex pull cancel ID")
    settings = settings_from(args)
    state = PullLedger(engine, pull_backoff(settings), settings.pull.lease_seconds).cancel(
        args.pull_id, SystemClock().now()
    )
    if state is None:
        raise CommandError(f"no pull {args.pull_id}; see gazex pull status")
    print(f"pull {args.pull_id}: {state}", file=sys.stdout)
    return 0
