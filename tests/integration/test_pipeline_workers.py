"""Two ``gazex worker`` processes share one PostgreSQL queue: 100 studies, each processed exactly once."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from gateway.demo.archive import RecordingArchive
from gateway.pipeline.clock import SystemClock
from gateway.pipeline.completer import Completer
from tests.gateway.pipeline.support import Harness, make_image
from tests.ingest_support import REPO_ROOT, clean_environment
from tests.integration.pipeline_support import pipeline_config, query, wait_for

# slow: the 100 studies through two worker processes, a PostgreSQL queue and an archive take
# about 30 s on the project's 2 cores; fewer studies would not show two workers sharing the queue
pytestmark = [pytest.mark.integration, pytest.mark.slow]

STUDIES = 100


def start_worker(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "worker", "--config", str(config)],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=clean_environment(),
            cwd=REPO_ROOT,
        )


def test_two_workers_on_postgresql_process_each_of_100_studies_exactly_once(
    tmp_path: Path, postgres_database: str, free_port: Callable[[], int], chest_cr_path: Path
) -> None:
    template = pydicom.dcmread(chest_cr_path)
    template.PixelData = template.pixel_array[:64, :64].copy().tobytes()
    template.Rows = template.Columns = 64
    archive_port = free_port()
    harness = Harness.create(tmp_path, url=postgres_database)
    config = pipeline_config(
        tmp_path / "gazex.yaml",
        harness.settings.storage.data_dir,
        free_port(),
        archive_port,
        url=postgres_database,
        delivery={"concurrency": 2},
    )
    logs = [tmp_path / "worker-1.log", tmp_path / "worker-2.log"]
    workers: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(STUDIES):  # received a while ago (the harness clock): complete as soon as checked
            harness.receive(make_image(template, generate_uid()))
        with RecordingArchive(archive_port) as archive:
            workers = [start_worker(config, log) for log in logs]
            ready = "gazex worker ready"
            wait_for(lambda: all(ready in log.read_text(errors="replace") for log in logs), what="workers")
            done = Completer(harness.engine, harness.settings, SystemClock()).check()
            assert len(done) == STUDIES and all(result.new_job for result in done)
            delivered = "SELECT id FROM deliveries WHERE status = 'delivered'"
            wait_for(
                lambda: len(query(postgres_database, delivered)) == STUDIES,
                timeout=240,
                what="every delivery",
            )
            counts = archive.counts()
            for worker in workers:
                worker.send_signal(signal.SIGTERM)
            assert [worker.wait(timeout=60) for worker in workers] == [0, 0]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        harness.close()
    jobs = query(postgres_database, "SELECT status, attempts, processed_by FROM jobs")
    assert len(jobs) == STUDIES
    assert {(job.status, job.attempts) for job in jobs} == {("done", 1)}  # each claimed once, by one worker
    processes = {job.processed_by.rsplit(":", 1)[0] for job in jobs}  # host:pid of each worker
    assert len(processes) == 2, processes  # both took part
    outputs = {row.sop_instance_uid for row in query(postgres_database, "SELECT sop_instance_uid FROM outputs")}
    assert len(outputs) == 3 * STUDIES
    assert set(counts) == outputs and set(counts.values()) == {1}  # every output received exactly once
