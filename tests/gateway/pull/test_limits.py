"""The rate limits of pulling, with a fake clock: concurrency and a sliding hour kept in the database."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from gateway.db import create_database_engine, upgrade
from gateway.pipeline.backoff import Backoff
from gateway.pipeline.clock import FakeClock
from gateway.pull.ledger import PullLedger
from gateway.pull.limits import RetrieveLimits, admit
from gateway.pull.query import PullQuery, StudyMatch


def test_the_sliding_hour_admits_up_to_the_limit_then_says_how_long_to_wait() -> None:
    clock = FakeClock()
    limits = RetrieveLimits(max_concurrent=5, source_concurrent=5, studies_per_hour=3)
    started: list[datetime] = []
    for _ in range(3):
        assert admit(limits, clock.now(), running_total=0, running_source=0, started_in_window=started).allowed
        started.append(clock.now())
        clock.advance(600)  # one every 10 minutes
    refused = admit(limits, clock.now(), running_total=0, running_source=0, started_in_window=started)
    assert not refused.allowed and "max_studies_per_hour 3" in refused.reason
    # the first start (30 minutes ago) leaves the window in 30 minutes
    assert refused.wait_seconds == pytest.approx(1800)
    clock.advance(1800)
    assert admit(limits, clock.now(), running_total=0, running_source=0, started_in_window=started).allowed


def test_concurrency_waits_for_a_running_retrieve_not_for_the_clock() -> None:
    limits = RetrieveLimits(max_concurrent=2, source_concurrent=1, studies_per_hour=100)
    now = FakeClock().now()
    total = admit(limits, now, running_total=2, running_source=0, started_in_window=[])
    assert not total.allowed and total.wait_seconds is None and "max_concurrent_retrieves" in total.reason
    source = admit(limits, now, running_total=1, running_source=1, started_in_window=[])
    assert not source.allowed and source.wait_seconds is None
    assert admit(limits, now, running_total=1, running_source=0, started_in_window=[]).allowed


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match='"studies_per_hour" must be 1 or more'):
        RetrieveLimits(max_concurrent=1, source_concurrent=1, studies_per_hour=0)


def test_the_hourly_budget_survives_a_restart(tmp_path: Path) -> None:
    """The window is counted from the database: a new ledger (a restarted gazex serve) sees the same starts."""
    url = f"sqlite:///{tmp_path / 'limits.db'}"
    engine = create_database_engine(url)
    upgrade(engine)
    clock = FakeClock()
    backoff = Backoff(base=1, factor=2, max_delay=10, jitter=0, max_attempts=3)
    limits = RetrieveLimits(max_concurrent=4, source_concurrent=4, studies_per_hour=2)
    ledger = PullLedger(engine, backoff, lease_seconds=60)
    pull_id = ledger.create("pacs", PullQuery(modalities=["CR"]), "test", clock.now())
    query = ledger.claim_query("a", clock.now(), {"pacs"})
    assert query is not None and query.pull_id == pull_id
    ledger.record_found(query, "a", [StudyMatch(f"1.2.3.{n}") for n in range(4)], clock.now())
    for _ in range(2):
        claim, _ = ledger.claim_item("a", clock.now(), lambda _source: limits)
        assert claim is not None
        ledger.item_done(claim, "a", 1, clock.now())
        clock.advance(60)
    engine.dispose()

    engine = create_database_engine(url)  # "restarted"
    restarted = PullLedger(engine, backoff, lease_seconds=60)
    claim, wait = restarted.claim_item("b", clock.now(), lambda _source: limits)
    assert claim is None
    assert wait == pytest.approx(3600 - 120)  # the first start, two minutes ago, leaves the hour then
    assert wait is not None
    clock.advance(wait)
    claim, _ = restarted.claim_item("b", clock.now() + timedelta(seconds=1), lambda _source: limits)
    assert claim is not None
    engine.dispose()
