"""The queue on PostgreSQL: claims skip rows another transaction holds, and the pipeline runs there too."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from gateway.pipeline.leases import claim
from gateway.pipeline.states import JobStatus
from gateway.pipeline.tables import JOBS
from tests.gateway.pipeline.support import Harness
from tests.gateway.pipeline.test_worker import queue_study

pytestmark = pytest.mark.integration


@pytest.fixture
def pg(tmp_path: Path, postgres_database: str) -> Iterator[Harness]:
    harness = Harness.create(tmp_path, url=postgres_database)
    try:
        yield harness
    finally:
        harness.close()


def test_concurrent_claims_skip_locked_rows_instead_of_waiting_or_sharing(pg: Harness, template: Dataset) -> None:
    for _ in range(3):
        queue_study(pg, template)
    now = pg.clock.now()
    with pg.engine.connect() as one, pg.engine.connect() as two:
        first = claim(
            one, JOBS, waiting=JobStatus.QUEUED, active=JobStatus.RUNNING, owner="one", now=now, lease_seconds=60
        )
        # `one` has not committed: its row is locked, so `two` skips it instead of waiting for it
        second = claim(
            two, JOBS, waiting=JobStatus.QUEUED, active=JobStatus.RUNNING, owner="two", now=now, lease_seconds=60
        )
        assert first is not None and second is not None and first.id != second.id
        one.commit()
        two.commit()
    owners = {row.id: row.lease_owner for row in pg.rows("SELECT id, lease_owner FROM jobs")}
    assert owners == {first.id: "one", second.id: "two", 6 - first.id - second.id: None}


def test_the_whole_pipeline_runs_on_postgresql(pg: Harness, template: Dataset) -> None:
    for _ in range(2):
        queue_study(pg, template)
    assert pg.pipeline().run_burst() == (2, 2)
    assert {row.status for row in pg.rows("SELECT status FROM deliveries")} == {"delivered"}
    assert len(pg.destination().received) == 6
