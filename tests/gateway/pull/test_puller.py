"""The puller's decisions with an in-memory source and a fake clock: query, retrieve, retry with
backoff, fail after the last attempt, resume an interrupted pull, cancel."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import Engine

from gateway.config import Settings, load_settings
from gateway.db import create_database_engine, upgrade
from gateway.pipeline.clock import FakeClock
from gateway.pull import Puller, PullQuery
from gateway.pull.listing import PullRefusedError, pull_summary, request_pull
from gateway.pull.query import SeriesMatch, StudyMatch, series_fit, study_answer_fits
from gateway.pull.source import Retrieved, RetrieveInterrupted, RetrieveProgress, SourceError


@dataclass
class MemorySource:
    """A source in memory: its studies, and failures to answer with (popped one per call)."""

    studies: list[str]
    find_failures: list[str] = field(default_factory=list)
    retrieve_failures: dict[str, list[str]] = field(default_factory=dict)
    interrupt: set[str] = field(default_factory=set)
    retrieved: list[str] = field(default_factory=list)

    def find(self, query: PullQuery, limit: int) -> list[StudyMatch]:
        if self.find_failures:
            raise SourceError(self.find_failures.pop(0))
        return [StudyMatch(uid) for uid in self.studies]

    def retrieve(self, study: StudyMatch, progress: RetrieveProgress) -> Retrieved:
        uid = study.study_instance_uid
        if uid in self.interrupt:
            self.interrupt.discard(uid)
            raise RetrieveInterrupted("stopping")
        failures = self.retrieve_failures.get(uid, [])
        if failures:
            raise SourceError(failures.pop(0))
        self.retrieved.append(uid)
        return Retrieved(2, "2 instance(s)")


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_database_engine(f"sqlite:///{tmp_path / 'pull.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()


def settings(tmp_path: Path, **pull: object) -> Settings:
    return load_settings(
        overrides={
            "storage": {"data_dir": str(tmp_path)},
            "sources": {"pacs": {"ae_title": "PACS", "host": "127.0.0.1", "port": 104}},
            "pull": {"base_delay_seconds": 10, "factor": 2, "max_attempts": 3, **pull},
        },
        environ={},
    )


def puller(engine: Engine, config: Settings, source: MemorySource, clock: FakeClock) -> Puller:
    return Puller(engine, config, store=None, clock=clock, sources=lambda _name: source)


def test_a_pull_queries_then_retrieves_each_study_once(engine: Engine, tmp_path: Path) -> None:
    config, clock = settings(tmp_path), FakeClock()
    source = MemorySource(["1.2.1", "1.2.2", "1.2.3"])
    pull = request_pull(engine, config, "pacs", PullQuery(modalities=["CR"]), actor="tester", now=clock.now())
    assert pull.state == "queued" and pull.found is None and pull.created_by == "tester"
    assert puller(engine, config, source, clock).run_burst() == 4  # the query, then three retrieves
    done = pull_summary(engine, pull.id)
    assert done is not None
    assert (done.state, done.found, done.retrieved, done.failed, done.instances) == ("done", 3, 3, 0, 6)
    assert source.retrieved == ["1.2.1", "1.2.2", "1.2.3"]
    assert puller(engine, config, source, clock).run_burst() == 0  # nothing is retrieved twice


def test_a_failing_query_is_retried_with_backoff_then_fails_with_its_error(engine: Engine, tmp_path: Path) -> None:
    config, clock = settings(tmp_path), FakeClock()
    source = MemorySource(["1.2.1"], find_failures=["QIDO-RS answered HTTP 500"] * 3)
    pull = request_pull(engine, config, "pacs", PullQuery(date_from="20250101"), actor="t", now=clock.now())
    worker = puller(engine, config, source, clock)
    assert worker.run_burst() == 1
    waiting = pull_summary(engine, pull.id)
    assert waiting is not None and waiting.state == "queued" and waiting.query_attempts == 1
    assert waiting.last_error == "QIDO-RS answered HTTP 500"
    assert worker.run_burst() == 0  # not before the backoff
    assert 9 <= (worker.seconds_until_due() or 0) <= 10  # 10 s, shortened by at most 10 % jitter
    clock.advance(10)
    assert worker.run_burst() == 1
    clock.advance(20)
    assert worker.run_burst() == 1
    failed = pull_summary(engine, pull.id)
    assert failed is not None and failed.state == "failed" and failed.query_attempts == 3
    assert source.retrieved == []


def test_a_refused_retrieve_is_retried_and_after_the_last_attempt_the_study_fails(
    engine: Engine, tmp_path: Path
) -> None:
    config, clock = settings(tmp_path), FakeClock()
    refusal = "C-MOVE refused with 0xA801: the archive does not know the move destination 'GAZEX'"
    source = MemorySource(["1.2.1", "1.2.2"], retrieve_failures={"1.2.2": [refusal] * 3})
    pull = request_pull(engine, config, "pacs", PullQuery(study_uid="1.2.2"), actor="t", now=clock.now())
    worker = puller(engine, config, source, clock)
    worker.run_burst()
    for delay in (10, 20):
        running = pull_summary(engine, pull.id)
        assert running is not None and running.state == "running"
        [first, second] = running.items
        assert first.state == "done" and second.state == "pending" and second.last_error == refusal
        clock.advance(delay)
        worker.run_burst()
    finished = pull_summary(engine, pull.id)
    assert finished is not None
    assert (finished.state, finished.retrieved, finished.failed) == ("failed", 1, 1)
    assert finished.items[1].attempts == 3 and finished.items[1].state == "failed"
    assert finished.last_error is not None and "1 of 2 studies failed" in finished.last_error


def test_an_interrupted_pull_resumes_where_it_was(engine: Engine, tmp_path: Path) -> None:
    config, clock = settings(tmp_path, lease_seconds=60), FakeClock()
    source = MemorySource(["1.2.1", "1.2.2", "1.2.3"], interrupt={"1.2.2"})
    pull = request_pull(engine, config, "pacs", PullQuery(study_uid="1.2.1"), actor="t", now=clock.now())
    first = puller(engine, config, source, clock)
    first.run_burst()  # 1.2.2 is handed back (a graceful stop) and retrieved again in the same burst
    # a crash: a claim whose holder died is taken up again when its lease expires
    ledger = first.ledger
    crashed, _ = ledger.claim_item("dead-process", clock.now(), first.limits)
    assert crashed is None  # everything was retrieved
    done = pull_summary(engine, pull.id)
    assert done is not None and done.state == "done" and [i.attempts for i in done.items] == [1, 1, 1]

    source2 = MemorySource(["1.3.1", "1.3.2"])
    second = request_pull(engine, config, "pacs", PullQuery(study_uid="1.3.1"), actor="t", now=clock.now())
    worker = puller(engine, config, source2, clock)
    query = worker.ledger.claim_query("dead-process", clock.now(), {"pacs"})
    assert query is not None
    worker.ledger.record_found(query, "dead-process", [StudyMatch("1.3.1"), StudyMatch("1.3.2")], clock.now())
    held, _ = worker.ledger.claim_item("dead-process", clock.now(), worker.limits)
    assert held is not None and held.study_instance_uid == "1.3.1"
    assert worker.run_burst() == 1  # only 1.3.2: 1.3.1 is leased by the dead process
    clock.advance(61)
    assert worker.run_burst() == 1  # the lease expired: 1.3.1 is retrieved now
    resumed = pull_summary(engine, second.id)
    assert resumed is not None and resumed.state == "done" and source2.retrieved == ["1.3.2", "1.3.1"]


def test_a_cancelled_pull_retrieves_nothing_more(engine: Engine, tmp_path: Path) -> None:
    config, clock = settings(tmp_path), FakeClock()
    source = MemorySource(["1.2.1", "1.2.2"])
    pull = request_pull(engine, config, "pacs", PullQuery(study_uid="1.2.1"), actor="t", now=clock.now())
    worker = puller(engine, config, source, clock)
    worker.step("me")  # the query only
    assert worker.ledger.cancel(pull.id, clock.now()) == "cancelled"
    assert worker.run_burst() == 0 and source.retrieved == []
    cancelled = pull_summary(engine, pull.id)
    assert cancelled is not None and [item.state for item in cancelled.items] == ["cancelled", "cancelled"]
    assert worker.ledger.cancel(9999, clock.now()) is None


def test_an_unknown_source_is_refused_and_nothing_is_recorded(engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(PullRefusedError, match=r"no source named 'nope' is configured \(sources: pacs\)"):
        request_pull(engine, settings(tmp_path), "nope", PullQuery(study_uid="1.2"), actor="t", now=FakeClock().now())
    assert pull_summary(engine, 1) is None


def test_a_query_is_one_kind_and_well_formed() -> None:
    with pytest.raises(ValidationError, match="give exactly one of"):
        PullQuery(study_uid="1.2.3", modalities=["CR"])
    with pytest.raises(ValidationError, match="give exactly one of"):
        PullQuery()
    with pytest.raises(ValidationError, match="is not a calendar date"):
        PullQuery(date_from="20250230")
    with pytest.raises(ValidationError, match="is after date_to"):
        PullQuery(date_from="20250102", date_to="20250101")
    with pytest.raises(ValidationError, match="not a UID"):
        PullQuery(study_uid="1.2.abc")
    query = PullQuery(modalities="cr, DX", body_part="chest", date_from="2025-01-01", date_to="20250107")
    assert query.modalities == ["CR", "DX"] and query.body_part == "CHEST" and query.study_date == "20250101-20250107"
    assert PullQuery(date_to="20250107").study_date == "-20250107"
    assert PullQuery(accession="A123").describe() == "accession number (given)"  # never the value (PHI)


def test_answers_are_checked_again_because_archives_match_loosely() -> None:
    query = PullQuery(modalities=["CR", "DX"], body_part="CHEST", date_from="20250101", date_to="20250107")
    assert study_answer_fits(query, StudyMatch("1.2", "20250103", ("CR",)))
    assert not study_answer_fits(query, StudyMatch("1.2", "20241231", ("CR",)))
    assert not study_answer_fits(query, StudyMatch("1.2", "20250103", ("CT",)))
    assert series_fit(query, [SeriesMatch("CT", "CHEST"), SeriesMatch("DX", "chest ")])
    assert not series_fit(query, [SeriesMatch("CR", "HAND"), SeriesMatch("CT", "CHEST")])
