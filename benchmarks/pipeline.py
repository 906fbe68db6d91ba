"""The pipeline's speed: study complete -> every output acknowledged, beside the bare minimum work.

With the FakeEngine (no model), N single-image studies (a CR cut to --rows x --rows pixels):

* **floor** (the peer, measured in the same run): the least any gateway must do per study, with
  no queue and no durability: ``FakeEngine.analyze`` + ``dicom_sr.encode`` + one association
  sending the SR, SEG and GSPS.  Closed loop, one study at a time.
* **gazex, latency**: the pipeline in one process, as ``gazex serve`` runs it (completion,
  worker and senders; PostgreSQL), one study completed at a time: completion -> job -> claim
  -> analyse -> encode -> outbox (fsync) -> commit -> delivery claim -> C-STOREs -> each
  acknowledgement committed.  Time from the job's creation (study complete) to the last
  output's acknowledgement, from the database's own timestamps.
* **gazex, throughput**: 1 and 2 ``gazex worker`` processes sharing the PostgreSQL queue, all N
  studies completed at once; studies/s from the first job's creation to the last acknowledgement.

The archive is a pynetdicom Storage SCP in its own process (``python -m gateway.demo.archive``,
nothing written to disk), the same for every row.

Usage::

    .venv/bin/python -m benchmarks.pipeline                 # 200 studies
    .venv/bin/python -m benchmarks.pipeline --studies 6     # smoke test

Targets (issue 4): p50 gateway overhead (gazex p50 - floor p50) under 0.5 s per study, and
2 workers at least 1.7x one.
"""

from __future__ import annotations

import argparse
import copy
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(REPO_ROOT))

import pydicom  # noqa: E402
import sqlalchemy  # noqa: E402
import yaml  # noqa: E402
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid  # noqa: E402

from benchmarks._net import free_port, wait_for_port  # noqa: E402
from benchmarks._table import format_table, machine_line, percentile  # noqa: E402

OVERHEAD_TARGET_S = 0.5
SCALING_TARGET = 1.7
ADMIN_URL = os.environ.get("GAZEX_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def template_image(rows: int) -> Dataset:
    from pydicom.data import get_testdata_file

    path = get_testdata_file("RG1_UNCR.dcm")
    if path is None:
        raise SystemExit("the chest CR test image is missing: pip install pydicom-data")
    dataset = pydicom.dcmread(str(path))
    dataset.PixelData = dataset.pixel_array[:rows, :rows].copy().tobytes()
    dataset.Rows = dataset.Columns = rows
    return dataset


def study_image(template: Dataset) -> Dataset:
    dataset = copy.deepcopy(template)
    dataset.StudyInstanceUID, dataset.SeriesInstanceUID, dataset.SOPInstanceUID = (generate_uid() for _ in range(3))
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return dataset


@contextmanager
def archive(port: int) -> Iterator[None]:
    """A pynetdicom Storage SCP in its own process (``gateway.demo.archive``), recording nothing to disk.

    Not dcmtk storescp: with Nagle's algorithm on (its default) each small response waits ~40 ms
    for a delayed ACK, and with ``TCP_NODELAY=1`` on both sides pynetdicom's SCU occasionally
    (about 1 association in 300 here) never sees a C-STORE response and waits for the DIMSE timeout.
    """
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.demo.archive", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=REPO_ROOT,
    )
    try:
        try:
            wait_for_port(port, process, timeout=30)
        except (RuntimeError, TimeoutError) as exc:
            raise SystemExit(f"the benchmark archive did not start: {exc}") from None
        yield
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextmanager
def postgres_database() -> Iterator[str]:
    name = f"gazex_bench_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sqlalchemy.engine.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# -- the floor: encode + send, nothing else ---------------------------------------------------


def floor(template: Dataset, studies: int, archive_port: int) -> tuple[list[float], float]:
    from pynetdicom import AE

    import dicom_sr
    from gateway.pipeline.sender import keep_responses
    from inference import FakeEngine

    engine = FakeEngine()
    latencies = []
    started = time.perf_counter()
    for index in range(studies):
        begin = time.perf_counter()
        image = study_image(template)
        outputs = dicom_sr.encode(engine.analyze([image]), [image], analysis_id=f"floor{index}")
        ae = AE(ae_title="FLOOR")
        for output in outputs:
            ae.add_requested_context(output.SOPClassUID, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        assoc = ae.associate("127.0.0.1", archive_port, ae_title="ARCHIVE")
        if not assoc.is_established:
            raise SystemExit("the archive refused the floor's association")
        keep_responses(assoc)  # as the gateway does: a pynetdicom race loses responses otherwise
        assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # type: ignore[union-attr]
        for output in outputs:
            status = assoc.send_c_store(output)
            if status is None or int(status.Status) != 0:
                raise SystemExit("the archive did not acknowledge an output")
        assoc.release()
        latencies.append(time.perf_counter() - begin)
    return latencies, studies / (time.perf_counter() - started)


# -- the gateway ---------------------------------------------------------------------------------


@dataclass
class Gateway:
    settings: Any
    engine: sqlalchemy.Engine
    config: Path
    spool: Any


def gateway(scratch: Path, url: str, archive_port: int, template: Dataset, studies: int) -> Gateway:
    """Settings, a migrated database and ``studies`` received single-image studies in the spool."""
    from gateway.config import load_settings
    from gateway.db import create_database_engine, upgrade
    from gateway.db.index import InstanceIndex
    from gateway.dicom.store import InstanceStore, StoreRequest
    from gateway.spool import Spool

    values: dict[str, Any] = {
        "storage": {"data_dir": str(scratch), "min_free_disk": "10MB"},
        "database": {"url": url},
        "model": {"path": "fake"},
        "destinations": {"archive": {"ae_title": "ARCHIVE", "host": "127.0.0.1", "port": archive_port}},
        "completion": {"quiet_seconds": 0.001},  # the benchmark says when a study is complete
        "worker": {"poll_seconds": 0.2},
        "delivery": {"poll_seconds": 0.2, "concurrency": 2},
    }
    config = scratch / "gazex.yaml"
    scratch.mkdir(parents=True, exist_ok=True)
    config.write_text(yaml.safe_dump(values), encoding="utf-8")
    settings = load_settings(config, environ={})
    engine = create_database_engine(url)
    upgrade(engine)
    spool = Spool(settings.storage.spool_path, 0)
    spool.open()
    store = InstanceStore(spool, InstanceIndex(engine))
    for _ in range(studies):
        image = study_image(template)
        buffer = io.BytesIO()
        image.save_as(buffer, enforce_file_format=True)
        buffer.seek(0)
        pydicom.filereader.read_preamble(buffer, False)
        pydicom.filereader._read_file_meta_info(buffer)
        request = StoreRequest(
            str(image.SOPClassUID), str(image.SOPInstanceUID), str(ExplicitVRLittleEndian), "PACS", "GAZEX", None
        )
        if store.store_bytes(request, buffer.read()).status != 0:
            raise SystemExit("storing a benchmark study failed")
    return Gateway(settings, engine, config, spool)


def timings(engine: sqlalchemy.Engine) -> tuple[list[float], float, float]:
    """Per study: last acknowledgement - job creation; and the first creation and last acknowledgement."""
    query = sqlalchemy.text(
        "SELECT j.created_at, max(i.acknowledged_at) AS acked FROM jobs j "
        "JOIN deliveries d ON d.job_pk = j.id JOIN delivery_items i ON i.delivery_pk = d.id "
        "GROUP BY j.id, j.created_at"
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    latencies = [(row.acked - row.created_at).total_seconds() for row in rows]
    first = min(row.created_at for row in rows).timestamp()
    last = max(row.acked for row in rows).timestamp()
    return latencies, first, last


def delivered(engine: sqlalchemy.Engine) -> int:
    with engine.connect() as connection:
        count = sqlalchemy.text("SELECT count(*) FROM deliveries WHERE status = 'delivered'")
        return int(connection.execute(count).scalar_one())


def wait_delivered(engine: sqlalchemy.Engine, count: int, timeout: float, interval: float) -> None:
    deadline = time.monotonic() + timeout
    while delivered(engine) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {delivered(engine)} of {count} deliveries finished within {timeout:.0f} s")
        time.sleep(interval)


def latency_run(scratch: Path, archive_port: int, template: Dataset, studies: int) -> list[float]:
    """One process like gazex serve; studies completed one at a time, each waited for."""
    from sqlalchemy import select

    from gateway.pipeline.clock import SystemClock
    from gateway.pipeline.completer import Completer
    from gateway.pipeline.service import Pipeline
    from gateway.pipeline.tables import STUDIES

    with postgres_database() as url:
        gw = gateway(scratch, url, archive_port, template, studies)
        try:
            pipeline = Pipeline(gw.engine, gw.settings, completion=False, retention=False)
            completer = Completer(gw.engine, gw.settings, SystemClock())
            with gw.engine.connect() as connection:
                study_keys = connection.execute(select(STUDIES.c.id).order_by(STUDIES.c.id)).scalars().all()
            pipeline.start()
            try:
                for number, key in enumerate(study_keys, start=1):
                    if completer.complete_study(int(key)) is None:
                        raise SystemExit("a benchmark study did not complete")
                    pipeline.jobs_waiting.set()
                    wait_delivered(gw.engine, number, timeout=60, interval=0.005)
            finally:
                pipeline.stop(timeout=10)
            latencies, _, _ = timings(gw.engine)
        finally:
            gw.spool.close()
            gw.engine.dispose()
    return latencies


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU time of the whole machine so far, in clock ticks (/proc/stat)."""
    fields = [float(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    return sum(fields) - idle, sum(fields)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (float(fields[11]) + float(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Throughput:
    studies_per_second: float
    worker_cpu_per_study: float  # CPU seconds of the gazex worker processes per study
    machine_busy_percent: float  # how busy all of the machine's CPUs were meanwhile (everyone's work)


def throughput_run(scratch: Path, archive_port: int, template: Dataset, studies: int, workers: int) -> Throughput:
    """``workers`` gazex worker processes; every study completed at once; studies/s and where the CPU went."""
    from gateway.pipeline.clock import SystemClock
    from gateway.pipeline.completer import Completer

    with postgres_database() as url:
        gw = gateway(scratch, url, archive_port, template, studies)
        logs = [scratch / f"worker-{n}.log" for n in range(workers)]
        environment = {k: v for k, v in os.environ.items() if not (k.startswith("GAZEX_") and "__" in k)}
        processes = []
        try:
            for log in logs:
                with log.open("wb") as output:
                    processes.append(
                        subprocess.Popen(
                            [sys.executable, "-m", "gateway.cli", "worker", "--config", str(gw.config)],
                            stdout=output,
                            stderr=subprocess.STDOUT,
                            env=environment,
                            cwd=REPO_ROOT,
                        )
                    )
            deadline = time.monotonic() + 60
            while not all("gazex worker ready" in log.read_text(errors="replace") for log in logs):
                if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                    raise SystemExit("a gazex worker did not start; see " + ", ".join(map(str, logs)))
                time.sleep(0.1)
            cpu_before = sum(process_cpu_seconds(p.pid) for p in processes)
            busy_before, total_before = machine_busy()
            Completer(gw.engine, gw.settings, SystemClock()).check()
            wait_delivered(gw.engine, studies, timeout=600, interval=0.2)
            busy_after, total_after = machine_busy()
            cpu = sum(process_cpu_seconds(p.pid) for p in processes) - cpu_before
            _, first, last = timings(gw.engine)
        finally:
            for process in processes:
                process.send_signal(signal.SIGTERM)
            for process in processes:
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
            gw.spool.close()
            gw.engine.dispose()
    busy = 100.0 * (busy_after - busy_before) / max(total_after - total_before, 1.0)
    return Throughput(studies / (last - first), cpu / studies, busy)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=int, default=200)
    parser.add_argument("--rows", type=int, default=256, help="image size (rows = columns), default 256")
    parser.add_argument("--scratch", type=Path, default=None, help="where data goes (default: a temporary folder)")
    args = parser.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.ERROR)
    template = template_image(args.rows)
    load_before = os.getloadavg()[0]
    scratch = Path(tempfile.mkdtemp(prefix="gazex-bench-", dir=args.scratch))
    port = free_port()
    try:
        with archive(port):
            floor(template, min(3, args.studies), port)  # warm-up: imports, first association
            floor_latencies, floor_rate = floor(template, args.studies, port)
            gazex_latencies = latency_run(scratch / "latency", port, template, args.studies)
            one = throughput_run(scratch / "one", port, template, args.studies, 1)
            two = throughput_run(scratch / "two", port, template, args.studies, 2)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    floor_p50, gazex_p50 = percentile(floor_latencies, 50), percentile(gazex_latencies, 50)
    overhead = gazex_p50 - floor_p50
    print(f"## Pipeline: {args.studies} single-image studies ({args.rows}x{args.rows} CR), FakeEngine, PostgreSQL")
    print(machine_line())
    print(f"1-minute load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after (the machine is shared)")
    print()
    print(
        format_table(
            ["path", "p50 complete -> acknowledged (s)", "p99 (s)", "studies/s", "worker CPU s/study", "machine busy"],
            [
                [
                    "floor: encode + 1 association, no queue, no fsync",
                    floor_p50,
                    percentile(floor_latencies, 99),
                    floor_rate,
                    "",
                    "",
                ],
                [
                    "gazex, one process (as gazex serve), one study at a time",
                    gazex_p50,
                    percentile(gazex_latencies, 99),
                    1.0 / (sum(gazex_latencies) / len(gazex_latencies)),
                    "",
                    "",
                ],
                *(
                    [
                        f"gazex worker x{count}, all studies queued at once",
                        float("nan"),
                        float("nan"),
                        run.studies_per_second,
                        run.worker_cpu_per_study,
                        f"{run.machine_busy_percent:.0f}%",
                    ]
                    for count, run in ((1, one), (2, two))
                ),
            ],
        )
    )
    print()
    verdict = "met" if overhead < OVERHEAD_TARGET_S else "NOT met"
    print(
        f"gateway overhead p50 = gazex p50 - floor p50 = {overhead:.3f} s (target < {OVERHEAD_TARGET_S} s: {verdict})"
    )
    scaling = two.studies_per_second / one.studies_per_second
    verdict = "met" if scaling >= SCALING_TARGET else "NOT met"
    print(f"2 workers / 1 worker = {scaling:.2f}x (target >= {SCALING_TARGET}x: {verdict}); {os.cpu_count()} CPUs")
    print(
        "machine busy: all CPUs' use during the run, by everything on the machine (workers, archive, "
        "PostgreSQL, other users); near 100% means the run was CPU-bound"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
