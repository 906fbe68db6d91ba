"""``gazex serve`` stopping: SIGTERM finishes what is in flight; kill -9 loses nothing acknowledged."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import UID

from benchmarks._net import wait_for_port
from gateway.dicom.header import check_encoded_dataset
from tests.ingest_support import (
    dataset_bytes,
    index_rows,
    serve_config,
    sha256,
    small_cr,
    start_serve,
    storescu_successes,
    write_config,
    write_dataset,
)

pytestmark = pytest.mark.integration


def indexed_count(url: str) -> int:
    try:
        return int(index_rows(url, "SELECT count(*) AS n FROM instances")[0].n)
    except Exception:  # the schema may not exist yet while serve starts
        return 0


def wait_until(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the condition did not come true in time")
        time.sleep(0.02)


def start_storescu(storescu: Path, port: int, source: Path, count: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as output:
        return subprocess.Popen(
            [str(storescu), "-v", "-aec", "GAZEX", "--repeat", str(count), "+II", "127.0.0.1", str(port), str(source)],
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def check_acknowledged(url: str, spool: Path, successes: list[str], original_pixels: bytes) -> None:
    """Every acknowledged instance is indexed, and its file holds exactly the bytes the index describes."""
    rows = {row.sop_instance_uid: row for row in index_rows(url, "SELECT * FROM instances")}
    for uid in successes:
        assert uid in rows, f"{uid} was acknowledged but is not in the index"
        row = rows[uid]
        path = spool / row.file_path
        assert path.stat().st_size == row.file_size
        assert sha256(dataset_bytes(path)) == row.content_sha256
        stored = pydicom.dcmread(path)
        assert stored.SOPInstanceUID == uid
        assert stored.PixelData == original_pixels


def test_sigterm_stops_accepting_finishes_in_flight_stores_and_exits_0(
    tmp_path: Path, free_port: Callable[[], int], dicom_tool: Callable[[str], Path], chest_cr: Dataset
) -> None:
    port = free_port()
    data = tmp_path / "data"
    url = f"sqlite:///{data / 'gazex.db'}"
    config = write_config(tmp_path / "gazex.yaml", serve_config(data, port, dicom={"shutdown_grace_seconds": 1}))
    node = start_serve(config, port, tmp_path / "serve.log")
    source_dataset = small_cr(chest_cr, rows=1024, columns=1024)
    source = write_dataset(source_dataset, tmp_path / "mid.dcm")
    sender = start_storescu(dicom_tool("storescu"), port, source, 400, tmp_path / "storescu.log")
    try:
        wait_until(lambda: indexed_count(url) >= 3)
        node.process.terminate()  # SIGTERM
        time.sleep(0.5)
        refused = subprocess.run(
            [str(dicom_tool("echoscu")), "-aec", "GAZEX", "127.0.0.1", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert refused.returncode != 0  # no new association once stopping
        assert node.process.wait(timeout=60) == 0
        sender.wait(timeout=60)
    finally:
        node.kill()
        if sender.poll() is None:
            sender.kill()
    successes = storescu_successes((tmp_path / "storescu.log").read_text(errors="replace"))
    assert 3 <= len(successes) < 400  # the grace period ended the association early
    check_acknowledged(url, data / "spool", successes, source_dataset.PixelData)
    assert list((data / "spool" / ".incoming").iterdir()) == []
    log = node.log()
    assert "SIGTERM received: shutting down gracefully" in log
    assert "aborting the association from STORESCU after the shutdown grace period" in log
    assert "DICOM node stopped" in log


def test_kill_9_while_storescu_sends_50_instances_loses_nothing_acknowledged(
    tmp_path: Path,
    free_port: Callable[[], int],
    dicom_tool: Callable[[str], Path],
    chest_cr_path: Path,
    chest_cr: Dataset,
) -> None:
    port = free_port()
    data = tmp_path / "data"
    spool = data / "spool"
    url = f"sqlite:///{data / 'gazex.db'}"
    config = write_config(tmp_path / "gazex.yaml", serve_config(data, port))
    node = start_serve(config, port, tmp_path / "serve.log")
    sender = start_storescu(dicom_tool("storescu"), port, chest_cr_path, 50, tmp_path / "storescu.log")
    try:
        # storescu sends an instance only after the previous one's response: 11 indexed means at
        # least 10 acknowledged (the 11th may be indexed with its response not yet sent)
        wait_until(lambda: indexed_count(url) >= 11)
        os.kill(node.process.pid, 9)
        node.process.wait(timeout=30)
        sender.wait(timeout=60)
    finally:
        node.kill()
        if sender.poll() is None:
            sender.kill()
    successes = storescu_successes((tmp_path / "storescu.log").read_text(errors="replace"))
    assert 10 <= len(successes) < 50, "the kill did not land while storescu was sending"
    check_acknowledged(url, spool, successes, chest_cr.PixelData)
    left_behind = list((spool / ".incoming").iterdir())  # the instance being received when killed

    # restart: the partial file of the interrupted instance is removed, the node serves again
    restarted = start_serve(config, port, tmp_path / "serve-2.log")
    try:
        wait_for_port(port, restarted.process)
        assert list((spool / ".incoming").iterdir()) == []
        check_acknowledged(url, spool, successes, chest_cr.PixelData)
        # no partial file anywhere: every file in the spool is a complete, well-formed instance
        for path in spool.rglob("*.dcm"):
            with path.open("rb") as fp:
                pydicom.filereader.read_preamble(fp, False)
                meta = pydicom.filereader._read_file_meta_info(fp)
                offset = fp.tell()
            check_encoded_dataset(path, offset, UID(meta.TransferSyntaxUID))
        echo = subprocess.run(
            [str(dicom_tool("echoscu")), "-aec", "GAZEX", "127.0.0.1", str(port)],
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert echo.returncode == 0
    finally:
        assert restarted.terminate() == 0
    if left_behind:
        assert f"removed {len(left_behind)} partial file(s) left in" in restarted.log()


def test_the_index_on_postgresql(
    tmp_path: Path,
    free_port: Callable[[], int],
    dicom_tool: Callable[[str], Path],
    postgres_database: str,
    chest_cr: Dataset,
) -> None:
    port = free_port()
    config = write_config(
        tmp_path / "gazex.yaml",
        serve_config(tmp_path / "data", port, database={"url": postgres_database, "upgrade_on_start": False}),
    )
    upgraded = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "db", "upgrade", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert upgraded.returncode == 0, upgraded.stderr
    assert "upgraded from an empty database to revision" in upgraded.stdout
    assert ("postgres" in upgraded.stdout and "***" not in upgraded.stdout) or "@" in upgraded.stdout
    node = start_serve(config, port, tmp_path / "serve.log")
    try:
        source = write_dataset(small_cr(chest_cr), tmp_path / "small.dcm")
        result = subprocess.run(
            [str(dicom_tool("storescu")), "-aec", "GAZEX", "--repeat", "3", "+II", "127.0.0.1", str(port), str(source)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
    finally:
        assert node.terminate() == 0
    rows = index_rows(
        postgres_database,
        "SELECT i.sop_instance_uid, s.modality, st.study_instance_uid FROM instances i "
        "JOIN series s ON s.id = i.series_pk JOIN studies st ON st.id = s.study_pk",
    )
    assert len(rows) == 3 and {row.modality for row in rows} == {"CR"}
