"""From a received study to results in an archive, with real processes: gazex serve (FakeEngine),
dcmtk storescu sending, and dcmtk storescp or a pynetdicom archive receiving."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from gateway.demo.archive import RecordingArchive
from gateway.demo.results import EXPECTED_SOP_CLASSES, read_sr, validate_outputs
from tests.conftest import require_tool
from tests.ingest_support import small_cr, start_serve, write_dataset
from tests.integration.pipeline_support import pipeline_config, query, wait_for

pytestmark = pytest.mark.integration


def send(storescu: Path, port: int, *files: Path) -> None:
    subprocess.run(
        [str(storescu), "-aet", "PACS", "-aec", "GAZEX", "127.0.0.1", str(port), *map(str, files)],
        check=True,
        capture_output=True,
        timeout=60,
    )


def delivered(url: str) -> list[object]:
    return query(url, "SELECT * FROM deliveries WHERE status = 'delivered'")


def test_a_chest_study_gets_sr_seg_and_gsps_delivered_and_a_non_chest_study_is_not_analysed(
    tmp_path: Path, free_port: Callable[[], int], dicom_tool: Callable[[str], Path], chest_cr: Dataset
) -> None:
    storescu, storescp = dicom_tool("storescu"), dicom_tool("storescp")
    require_tool("dciodvfy")
    port, archive_port = free_port(), free_port()
    data, received = tmp_path / "data", tmp_path / "archive"
    received.mkdir()
    url = f"sqlite:///{data / 'gazex.db'}"
    chest = write_dataset(small_cr(chest_cr, rows=256, columns=256), tmp_path / "chest.dcm")
    head_ct = small_cr(chest_cr, rows=64, columns=64, Modality="CT", BodyPartExamined="HEAD")
    head_ct.StudyInstanceUID, head_ct.SeriesInstanceUID = generate_uid(), generate_uid()
    head = write_dataset(head_ct, tmp_path / "head.dcm")
    config = pipeline_config(tmp_path / "gazex.yaml", data, port, archive_port)
    archive = subprocess.Popen(
        [str(storescp), "-aet", "ARCHIVE", "-od", str(received), str(archive_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    serve = start_serve(config, port, tmp_path / "serve.log")
    try:
        send(storescu, port, chest, head)
        wait_for(lambda: delivered(url), what="the delivery", timeout=60)
        files = wait_for(lambda: sorted(received.iterdir()) if len(list(received.iterdir())) >= 3 else None)
        assert serve.terminate() == 0, serve.log()
    finally:
        serve.kill()
        archive.kill()
        archive.wait()
    source = pydicom.dcmread(chest)
    validation = validate_outputs(files, source)
    assert validation.ok, validation.problems
    assert sorted(str(pydicom.dcmread(f).SOPClassUID) for f in files) == sorted(EXPECTED_SOP_CLASSES)
    assert validation.validator_errors and set(validation.validator_errors.values()) == {0}
    [sr_file] = [f for f in files if f.name.startswith("SR")]
    content = read_sr(pydicom.dcmread(sr_file))
    assert [f.finding for f in content.findings] == ["Pleural effusion"]  # the FakeEngine's analysis
    assert len(content.trajectory) == 5 and content.verification_flag == "UNVERIFIED"
    # the head CT: complete, not routed, with the reason, and never analysed
    [state] = query(
        url,
        "SELECT t.routing, t.reason, t.job_pk FROM study_states t JOIN studies s ON s.id = t.study_pk "
        "WHERE s.study_instance_uid = :uid",
        uid=str(pydicom.dcmread(head).StudyInstanceUID),
    )
    assert state.routing == "not_routed" and state.job_pk is None
    assert "modality 'CT' is not one of [CR, DX]" in state.reason
    assert len(query(url, "SELECT * FROM jobs")) == 1
    assert "not routed: no rule takes any of its 1 instance(s)" in serve.log()


def test_a_destination_down_for_a_while_gets_the_results_exactly_once_when_it_is_back(
    tmp_path: Path, free_port: Callable[[], int], dicom_tool: Callable[[str], Path], chest_cr: Dataset
) -> None:
    storescu = dicom_tool("storescu")
    port, archive_port = free_port(), free_port()
    data = tmp_path / "data"
    url = f"sqlite:///{data / 'gazex.db'}"
    chest = write_dataset(small_cr(chest_cr, rows=128, columns=128), tmp_path / "chest.dcm")
    serve = start_serve(pipeline_config(tmp_path / "gazex.yaml", data, port, archive_port), port, tmp_path / "s.log")
    try:
        send(storescu, port, chest)
        # nothing listens on the archive's port: the delivery fails and backs off, attempt after attempt
        wait_for(
            lambda: query(url, "SELECT * FROM deliveries WHERE attempts >= 2 AND status = 'pending'"),
            what="two failed delivery attempts",
        )
        with RecordingArchive(archive_port) as archive:
            wait_for(lambda: delivered(url), what="the delivery after the archive came back", timeout=60)
            counts = archive.counts()
        assert serve.terminate() == 0
    finally:
        serve.kill()
    outputs = {row.sop_instance_uid for row in query(url, "SELECT sop_instance_uid FROM outputs")}
    assert len(outputs) == 3 and set(counts) == outputs and set(counts.values()) == {1}
    [row] = query(url, "SELECT attempts, last_error FROM deliveries")
    assert row.attempts >= 3 and row.last_error is None


def test_kill_9_mid_job_the_job_is_claimed_again_and_each_output_arrives_once(
    tmp_path: Path, free_port: Callable[[], int], dicom_tool: Callable[[str], Path], chest_cr: Dataset
) -> None:
    storescu = dicom_tool("storescu")
    port, archive_port = free_port(), free_port()
    data = tmp_path / "data"
    url = f"sqlite:///{data / 'gazex.db'}"
    chest = write_dataset(small_cr(chest_cr, rows=128, columns=128), tmp_path / "chest.dcm")
    config = pipeline_config(
        tmp_path / "gazex.yaml", data, port, archive_port, model={"path": "fake:seconds=3"}
    )  # the analysis takes 3 s: time to kill it
    with RecordingArchive(archive_port) as archive:
        serve = start_serve(config, port, tmp_path / "first.log")
        try:
            send(storescu, port, chest)
            wait_for(lambda: query(url, "SELECT * FROM jobs WHERE status = 'running'"), what="the job to start")
            serve.kill()  # SIGKILL, mid-analysis
        finally:
            serve.kill()
        [job] = query(url, "SELECT status, attempts FROM jobs")
        assert (job.status, job.attempts) == ("running", 1)  # abandoned with its lease
        serve = start_serve(config, port, tmp_path / "second.log")
        try:
            wait_for(lambda: delivered(url), what="the re-claimed job's delivery", timeout=90)
            counts = archive.counts()
            assert serve.terminate() == 0
        finally:
            serve.kill()
    [job] = query(url, "SELECT status, attempts FROM jobs")
    assert (job.status, job.attempts) == ("done", 2)
    outputs = {row.sop_instance_uid for row in query(url, "SELECT sop_instance_uid FROM outputs")}
    assert len(outputs) == 3 and set(counts) == outputs and set(counts.values()) == {1}


def test_sigterm_mid_job_exits_0_within_the_grace_and_leaves_the_job_to_be_claimed_again(
    tmp_path: Path, free_port: Callable[[], int], dicom_tool: Callable[[str], Path], chest_cr: Dataset
) -> None:
    """An analysis longer than the shutdown grace is abandoned, not waited for: the process ends
    with status 0 (without tearing the interpreter down under the busy thread) and the job keeps
    its lease, to be claimed again."""
    storescu = dicom_tool("storescu")
    port, archive_port = free_port(), free_port()
    data = tmp_path / "data"
    url = f"sqlite:///{data / 'gazex.db'}"
    chest = write_dataset(small_cr(chest_cr, rows=128, columns=128), tmp_path / "chest.dcm")
    config = pipeline_config(tmp_path / "gazex.yaml", data, port, archive_port, model={"path": "fake:seconds=120"})
    with RecordingArchive(archive_port):
        serve = start_serve(config, port, tmp_path / "serve.log")
        try:
            send(storescu, port, chest)
            wait_for(lambda: query(url, "SELECT * FROM jobs WHERE status = 'running'"), what="the job to start")
            assert serve.terminate(timeout=60) == 0, serve.log()
        finally:
            serve.kill()
    log = serve.log()
    assert "abandoning ['worker-" in log and "SIGTERM received" in log
    [job] = query(url, "SELECT status, attempts FROM jobs")
    assert (job.status, job.attempts) == ("running", 1)


def test_kill_9_mid_delivery_re_sends_only_the_unacknowledged_outputs_with_the_same_uids(
    tmp_path: Path, free_port: Callable[[], int], dicom_tool: Callable[[str], Path], chest_cr: Dataset
) -> None:
    storescu = dicom_tool("storescu")
    port, archive_port = free_port(), free_port()
    data = tmp_path / "data"
    url = f"sqlite:///{data / 'gazex.db'}"
    chest = write_dataset(small_cr(chest_cr, rows=128, columns=128), tmp_path / "chest.dcm")
    config = pipeline_config(tmp_path / "gazex.yaml", data, port, archive_port)
    stalled = threading.Event()

    def stall_the_first_seg(dataset: Dataset) -> None:
        if dataset.Modality == "SEG" and not stalled.is_set():
            stalled.set()
            threading.Event().wait(3)  # the archive takes its time; meanwhile the gateway is killed

    with RecordingArchive(archive_port, on_store=stall_the_first_seg) as archive:
        serve = start_serve(config, port, tmp_path / "first.log")
        try:
            send(storescu, port, chest)
            wait_for(stalled.is_set, what="the SEG being stored")
            serve.kill()  # SIGKILL while the archive stores the SEG: its response is never read
        finally:
            serve.kill()
        wait_for(lambda: len(archive.counts()) == 2, what="the archive finishing the SEG")
        items = query(url, "SELECT status FROM delivery_items ORDER BY id")
        assert [item.status for item in items] == ["acknowledged", "pending", "pending"]
        serve = start_serve(config, port, tmp_path / "second.log")
        try:
            wait_for(lambda: delivered(url), what="the delivery after the restart", timeout=60)
            counts = archive.counts()
            assert serve.terminate() == 0
        finally:
            serve.kill()
    outputs = {row.kind: row.sop_instance_uid for row in query(url, "SELECT kind, sop_instance_uid FROM outputs")}
    # the SR was acknowledged before the kill and never re-sent; the SEG, stored by the archive but not
    # acknowledged to us, was sent again with the same SOP Instance UID; the GSPS went once
    assert counts == {outputs["sr"]: 1, outputs["seg"]: 2, outputs["gsps"]: 1}
