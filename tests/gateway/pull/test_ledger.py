"""Claims of the pull ledger under contention: several claimers, each with its own engine (puller
threads of one process, or several processes), never start more retrieves than the limits allow.

The race is forced, not hoped for: the ``limits`` callable that ``claim_item`` consults after
counting the running retrieves is a rendezvous, so without serialisation every claimer has
counted before any of them claims (all of them then start one: measured, every run).  With the
claim serialised, only one claimer at a time gets that far; the rendezvous times out once (it is
a barrier: broken, it lets everyone through).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from gateway.db import create_database_engine, upgrade
from gateway.pipeline.backoff import Backoff
from gateway.pipeline.clock import FakeClock
from gateway.pull.ledger import ItemClaim, PullLedger
from gateway.pull.limits import RetrieveLimits
from gateway.pull.query import PullQuery, StudyMatch

CLAIMERS = 4
RENDEZVOUS_SECONDS = 1.0  # how long the first claimer waits for the others (only a race needs them all)
BACKOFF = Backoff(base=1, factor=2, max_delay=10, jitter=0, max_attempts=3)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'pull.db'}"
    else:
        yield request.getfixturevalue("postgres_database")


@pytest.fixture
def engines(database_url: str) -> Iterator[list[Engine]]:
    """One engine per claimer (its own connections), connected already so they start together."""
    first = create_database_engine(database_url)
    upgrade(first)
    engines = [first] + [create_database_engine(database_url) for _ in range(CLAIMERS - 1)]
    for engine in engines:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    yield engines
    for engine in engines:
        engine.dispose()


def found(engine: Engine, clock: FakeClock, source: str, studies: int) -> None:
    """A running pull of ``source`` with ``studies`` pending studies."""
    ledger = PullLedger(engine, BACKOFF, lease_seconds=600)
    ledger.create(source, PullQuery(modalities=["CR"]), "test", clock.now())
    query = ledger.claim_query("querier", clock.now(), {source})
    assert query is not None
    uids = [f"1.2.3.{n}" for n in range(studies)]
    assert ledger.record_found(query, "querier", [StudyMatch(uid) for uid in uids], clock.now())


def rendezvous(counted: Any, limits: RetrieveLimits) -> Callable[[str], RetrieveLimits]:
    """The limits, once every claimer has counted (or the barrier ``counted`` timed out)."""

    def limits_of(_source: str) -> RetrieveLimits:
        with contextlib.suppress(threading.BrokenBarrierError):  # serialised: the others wait for this one
            counted.wait(RENDEZVOUS_SECONDS)
        return limits

    return limits_of


def claim_together(engines: list[Engine], clock: FakeClock, limits: RetrieveLimits) -> list[ItemClaim | None]:
    """Every claimer calls claim_item at once, from its own thread and engine; their claims."""
    start = threading.Barrier(len(engines))
    limits_of = rendezvous(threading.Barrier(len(engines)), limits)
    claims: list[ItemClaim | None] = [None] * len(engines)
    errors: list[BaseException] = []

    def claimer(index: int) -> None:
        try:
            ledger = PullLedger(engines[index], BACKOFF, lease_seconds=600)
            start.wait()
            claims[index], _ = ledger.claim_item(f"claimer-{index}", clock.now(), limits_of)
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=claimer, args=(index,)) for index in range(len(engines))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return claims


def retrieving(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return list(connection.scalars(text("SELECT lease_owner FROM pull_items WHERE state = 'retrieving'")))


def test_only_one_retrieve_starts_when_one_may_run_at_once(engines: list[Engine]) -> None:
    clock = FakeClock()
    found(engines[0], clock, "pacs", CLAIMERS)
    limits = RetrieveLimits(max_concurrent=1, source_concurrent=1, studies_per_hour=1000)
    claims = claim_together(engines, clock, limits)
    won = [claim for claim in claims if claim is not None]
    assert len(won) == 1, f"{len(won)} claimers started a retrieve with max_concurrent_retrieves 1"
    assert retrieving(engines[0]) == [f"claimer-{claims.index(won[0])}"]


def test_a_sources_own_concurrency_limit_holds_too(engines: list[Engine]) -> None:
    """The per-source count is taken under the same serialisation as the overall one."""
    clock = FakeClock()
    found(engines[0], clock, "pacs", CLAIMERS)
    limits = RetrieveLimits(max_concurrent=CLAIMERS, source_concurrent=1, studies_per_hour=1000)
    claims = claim_together(engines, clock, limits)
    assert len([claim for claim in claims if claim is not None]) == 1
    assert len(retrieving(engines[0])) == 1


def test_the_hourly_budget_is_not_overspent_by_claimers_at_once(engines: list[Engine]) -> None:
    """One study left in the hour: claimers counting the hour's starts together still start only one."""
    clock = FakeClock()
    found(engines[0], clock, "pacs", CLAIMERS + 1)
    limits = RetrieveLimits(max_concurrent=CLAIMERS + 1, source_concurrent=CLAIMERS + 1, studies_per_hour=2)
    ledger = PullLedger(engines[0], BACKOFF, lease_seconds=600)
    earlier, _ = ledger.claim_item("earlier", clock.now(), lambda _source: limits)
    assert earlier is not None
    ledger.item_done(earlier, "earlier", 1, clock.now())
    clock.advance(60)
    claims = claim_together(engines, clock, limits)
    assert len([claim for claim in claims if claim is not None]) == 1
    # and the next claim is told when the hour frees a place: when the earlier start leaves it
    late, wait = ledger.claim_item("late", clock.now(), lambda _source: limits)
    assert late is None and wait == pytest.approx(3600 - 60)


def claim_in_process(url: str, index: int, counted: Any, limits: RetrieveLimits, results: Any) -> None:
    """One claimer process: its own engine, one claim_item; puts (index, claimed or the error)."""
    engine = create_database_engine(url)
    try:
        ledger = PullLedger(engine, BACKOFF, lease_seconds=600)
        claim, _ = ledger.claim_item(f"process-{index}", FakeClock().now(), rendezvous(counted, limits))
        results.put((index, claim is not None))
    except BaseException as exc:
        results.put((index, repr(exc)))
    finally:
        engine.dispose()


def test_claimer_processes_sharing_the_database_start_only_one_retrieve(database_url: str) -> None:
    """Separate processes (gazex serve and gazex worker), not only threads: the lock is the database's."""
    engine = create_database_engine(database_url)
    upgrade(engine)
    found(engine, FakeClock(), "pacs", CLAIMERS)
    engine.dispose()  # nothing of the parent's connections is inherited by the children
    context = multiprocessing.get_context("fork")  # the test's imports are inherited: starts in milliseconds
    counted, results = context.Barrier(CLAIMERS), context.Queue()
    limits = RetrieveLimits(max_concurrent=1, source_concurrent=1, studies_per_hour=1000)
    processes = [
        context.Process(target=claim_in_process, args=(database_url, index, counted, limits, results))
        for index in range(CLAIMERS)
    ]
    for process in processes:
        process.start()
    outcomes = dict(results.get(timeout=120) for _ in processes)
    for process in processes:
        process.join()
    assert sorted(outcomes) == list(range(CLAIMERS)), outcomes
    assert sorted(outcomes.values(), key=str) == [False] * (CLAIMERS - 1) + [True], outcomes
    engine = create_database_engine(database_url)
    try:
        assert len(retrieving(engine)) == 1
    finally:
        engine.dispose()
