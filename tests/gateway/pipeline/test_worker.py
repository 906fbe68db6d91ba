"""The worker: analysis, encoding, the outbox and the one commit; failures, leases and superseding."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import UID, JPEG2000Lossless, generate_uid
from sqlalchemy import select

from gateway.db import installation_id
from gateway.pipeline import status
from gateway.pipeline.completer import Completer
from gateway.pipeline.leases import claim
from gateway.pipeline.model import ModelHolder
from gateway.pipeline.states import JobStatus
from gateway.pipeline.tables import JOBS
from gateway.pipeline.worker import Worker
from inference import FakeEngine, Finding, StudyAnalysis
from tests.gateway.pipeline.support import Harness, make_image


def queue_study(harness: Harness, template: Dataset, **changes: Any) -> tuple[str, int]:
    study = generate_uid()
    harness.receive(make_image(template, study, **changes))
    harness.clock.advance(10)
    [done] = Completer(harness.engine, harness.settings, harness.clock).check()
    assert done.job_id is not None
    return study, done.job_id


def job_row(harness: Harness, job_id: int) -> Any:
    with harness.engine.connect() as connection:
        return connection.execute(select(JOBS).where(JOBS.c.id == job_id)).one()


def worker(harness: Harness, engine: object = None, name: str = "w1") -> Worker:
    holder = ModelHolder(harness.settings.model, loader=lambda _: engine or FakeEngine())  # type: ignore[arg-type,return-value]
    pipeline = harness.pipeline(model=holder)
    outbox = pipeline.outbox
    outbox.prepare()
    return Worker(harness.engine, harness.settings, outbox, holder, harness.clock, name=name)


def test_a_job_writes_its_outputs_durably_and_creates_a_delivery_per_destination(
    tmp_path: Path, template: Dataset
) -> None:
    harness = Harness.create(
        tmp_path,
        destinations={
            "archive": {"ae_title": "ARCHIVE", "host": "127.0.0.1", "port": 104},
            "backup": {"ae_title": "BACKUP", "host": "127.0.0.1", "port": 105},
        },
    )
    try:
        study, job_id = queue_study(harness, template)
        result = worker(harness).run_once()
        assert result is not None and (result.job_id, result.status) == (job_id, "done")
        job = harness.rows("SELECT * FROM jobs")[0]
        assert (job.status, job.attempts, job.model_name, job.findings_present) == ("done", 1, "gazex-fake", 1)
        assert job.lease_token is None and job.processed_by == "w1"
        outputs = harness.rows("SELECT * FROM outputs ORDER BY id")
        assert [o.kind for o in outputs] == ["sr", "seg", "gsps"]
        for output in outputs:
            written = pydicom.dcmread(harness.settings.storage.outbox_path / output.file_path)
            assert str(written.SOPInstanceUID) == output.sop_instance_uid
            assert str(written.StudyInstanceUID) == study
            assert output.file_path.startswith(f"{study}/{job.analysis_id}/")
        assert not list((harness.settings.storage.outbox_path / ".incoming").iterdir())  # no temporary file left
        deliveries = harness.rows("SELECT destination, status FROM deliveries ORDER BY destination")
        assert [(d.destination, d.status) for d in deliveries] == [("archive", "pending"), ("backup", "pending")]
        assert len(harness.rows("SELECT * FROM delivery_items")) == 6
        assert worker(harness).run_once() is None  # nothing else is due
    finally:
        harness.close()


def test_a_model_error_is_recorded_retried_and_after_the_last_attempt_the_job_fails_visibly(
    harness: Harness, template: Dataset
) -> None:
    _, job_id = queue_study(harness, template)
    failing = FakeEngine(fail_with="CUDA out of memory")
    for attempt in (1, 2, 3):
        result = worker(harness, failing).run_once()
        assert result is not None and result.reason == "model error: CUDA out of memory"
        job = harness.rows("SELECT status, attempts, last_error FROM jobs")[0]
        assert job.attempts == attempt
        if attempt < 3:
            assert job.status == "queued"
            assert worker(harness, failing).run_once() is None  # waiting for its retry delay
            harness.clock.advance(5 * 2 ** (attempt - 1))
    job = harness.rows("SELECT status, last_error, finished_at FROM jobs WHERE id = :j", j=job_id)[0]
    assert job.status == "failed" and job.last_error == "model error: CUDA out of memory"
    assert job.finished_at is not None
    assert harness.rows("SELECT * FROM outputs") == []


class _WrongImageEngine(FakeEngine):
    """An engine whose output describes an image it was not given (untrusted output)."""

    def analyze(self, datasets: Sequence[Dataset]) -> StudyAnalysis:
        analysis = super().analyze(datasets)
        image = analysis.images[0]
        return StudyAnalysis(
            analysis.study_instance_uid,
            (type(image)(**{**image.__dict__, "sop_instance_uid": "9.9.9"}),),
            analysis.model,
            analysis.seconds,
        )


class _CrashingEngine(FakeEngine):
    def analyze(self, datasets: Sequence[Dataset]) -> StudyAnalysis:
        raise ZeroDivisionError("a bug")


def test_unusable_model_output_fails_the_job_at_once_with_the_reason(harness: Harness, template: Dataset) -> None:
    queue_study(harness, template)
    result = worker(harness, _WrongImageEngine()).run_once()
    assert result is not None and result.status == "failed"
    assert result.reason == "model output unusable: it describes image(s) that were not given: 9.9.9"


def test_an_unexpected_model_exception_is_recorded_and_retried(harness: Harness, template: Dataset) -> None:
    queue_study(harness, template)
    result = worker(harness, _CrashingEngine()).run_once()
    assert result is not None and result.status == "queued"
    assert result.reason == "model error: unexpected ZeroDivisionError (see the log)"


@pytest.fixture(scope="module")
def tiny_engine(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A real GazeX engine (tiny random checkpoint, torch): it decodes the pixels as in production."""
    import torch

    from inference import load_engine, make_tiny_checkpoint

    torch.set_num_threads(1)  # a tiny model on a shared two-core machine
    return load_engine(make_tiny_checkpoint(tmp_path_factory.mktemp("worker") / "gazex-tiny"), device="cpu")


def undecodable_jpeg2000(template: Dataset, study: str) -> Dataset:
    """``template`` as JPEG 2000 whose one fragment is garbage: no decoder can read it, ever."""
    dataset = make_image(template, study)
    dataset.file_meta.TransferSyntaxUID = JPEG2000Lossless
    dataset.PixelData = encapsulate([b"\x00 not a JPEG 2000 codestream " * 8])
    dataset["PixelData"].VR = "OB"
    return dataset


def test_undecodable_pixel_data_fails_at_once_as_an_input_error_logged_once_without_a_traceback(
    harness: Harness, template: Dataset, tiny_engine: Any, caplog: pytest.LogCaptureFixture
) -> None:
    study = generate_uid()
    image = undecodable_jpeg2000(template, study)
    harness.receive(image)
    harness.clock.advance(10)
    [done] = Completer(harness.engine, harness.settings, harness.clock).check()
    assert done.job_id is not None
    caplog.set_level(logging.DEBUG)
    result = worker(harness, tiny_engine).run_once()
    uid = str(image.SOPInstanceUID)
    assert result is not None and result.status == "failed"
    assert (result.reason or "").startswith(f"input error: SOP instance {uid}: cannot decode the pixel data (JPEG 2000")
    job = job_row(harness, done.job_id)
    assert (job.status, job.attempts, job.last_error) == ("failed", 1, result.reason)
    harness.clock.advance(3600)
    assert worker(harness, tiny_engine).run_once() is None  # not retried
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    failed = f"job {done.job_id} FAILED after 1 attempt(s): {result.reason}"
    assert [record.getMessage() for record in errors] == [failed]
    assert all(record.exc_info is None and "Traceback" not in record.getMessage() for record in caplog.records)


def test_a_missing_spool_file_fails_the_job_and_says_what_to_do(harness: Harness, template: Dataset) -> None:
    queue_study(harness, template)
    path = harness.rows("SELECT file_path FROM instances")[0].file_path
    (harness.settings.storage.spool_path / path).unlink()
    result = worker(harness).run_once()
    assert result is not None and result.status == "failed"
    assert "is missing (removed by retention?); send the study again" in (result.reason or "")


def test_a_killed_workers_job_is_claimed_again_after_its_lease_and_gives_the_same_uids(
    harness: Harness, template: Dataset
) -> None:
    _, job_id = queue_study(harness, template)
    # worker A claims the job and writes its outputs, then "dies" before the commit
    a = worker(harness, name="A")
    with harness.engine.begin() as connection:
        claimed = claim(
            connection,
            JOBS,
            waiting=JobStatus.QUEUED,
            active=JobStatus.RUNNING,
            owner="A",
            now=harness.clock.now(),
            lease_seconds=60,
        )
    assert claimed is not None and claimed.id == job_id
    job = job_row(harness, job_id)
    _, files_a, _ = a._produce(job, FakeEngine())
    assert worker(harness, name="B").run_once() is None  # the lease still holds
    harness.clock.advance(61)
    result = worker(harness, name="B").run_once()
    assert result is not None and result.status == "done"
    job = harness.rows("SELECT status, attempts, processed_by FROM jobs")[0]
    assert (job.status, job.attempts, job.processed_by) == ("done", 2, "B")
    uids = sorted(row.sop_instance_uid for row in harness.rows("SELECT sop_instance_uid FROM outputs"))
    assert uids == sorted(file.sop_instance_uid for file in files_a)  # same UIDs as the lost attempt
    # A wakes up: its lease token no longer holds, so it cannot commit anything
    from gateway.pipeline.leases import LeaseLost

    with pytest.raises(LeaseLost):
        a._commit(claimed, job_row(harness, job_id), FakeEngine().analyze([template]), files_a, None)
    assert len(harness.rows("SELECT * FROM outputs")) == 3


def test_a_job_whose_worker_died_on_its_last_attempt_fails(harness: Harness, template: Dataset) -> None:
    queue_study(harness, template)
    for owner in ("A", "B", "C"):
        with harness.engine.begin() as connection:
            assert (
                claim(
                    connection,
                    JOBS,
                    waiting=JobStatus.QUEUED,
                    active=JobStatus.RUNNING,
                    owner=owner,
                    now=harness.clock.now(),
                    lease_seconds=60,
                )
                is not None
            )
        harness.clock.advance(61)
    result = worker(harness, name="D").run_once()
    assert result is not None and result.status == "failed"
    assert "stopped without finishing (its lease expired)" in (result.reason or "")


def test_a_re_analysis_supersedes_the_earlier_outputs(harness: Harness, template: Dataset) -> None:
    study, first_job = queue_study(harness, template)
    worker(harness).run_once()
    harness.receive(make_image(template, study))  # re-opens the analysed study
    harness.clock.advance(10)
    [again] = Completer(harness.engine, harness.settings, harness.clock).check()
    worker(harness).run_once()
    jobs = {row.id: row for row in harness.rows("SELECT * FROM jobs")}
    assert jobs[again.job_id].predecessor_job_pk == first_job
    first_sr, second_sr = (
        harness.rows("SELECT * FROM outputs WHERE job_pk = :j AND kind = 'sr'", j=job)[0]
        for job in (first_job, again.job_id)
    )
    assert first_sr.sop_instance_uid != second_sr.sop_instance_uid  # a new analysis: new UIDs
    sr = pydicom.dcmread(harness.settings.storage.outbox_path / second_sr.file_path)
    predecessor = sr.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert predecessor.ReferencedSOPInstanceUID == first_sr.sop_instance_uid
    seg = harness.rows("SELECT file_path FROM outputs WHERE job_pk = :j AND kind = 'seg'", j=again.job_id)[0]
    description = pydicom.dcmread(harness.settings.storage.outbox_path / seg.file_path).ContentDescription
    assert f"supersedes {jobs[first_job].analysis_id}" in description


def test_workers_in_burst_mode_return_when_the_queue_is_empty(harness: Harness, template: Dataset) -> None:
    for _ in range(3):
        queue_study(harness, template)
    assert worker(harness).run(threading.Event(), burst=True) == 3
    assert {row.status for row in harness.rows("SELECT status FROM jobs")} == {"done"}


def test_a_bug_in_the_gateway_is_recorded_on_the_job_and_the_worker_goes_on(
    harness: Harness, template: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue_study(harness, template)

    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr("gateway.pipeline.worker.dicom_sr.encode", broken)
    result = worker(harness).run_once()
    assert result is not None and result.status == "queued"
    assert result.reason == "unexpected KeyError in the gateway (see the log)"


def test_two_installations_give_the_same_study_different_uids_and_each_repeats_its_own(
    tmp_path: Path, template: Dataset
) -> None:
    """Two fresh databases (two sites, or one database rebuilt) analyse the very same instance."""
    image = make_image(template, generate_uid())
    uids: dict[str, set[str]] = {}
    for site in ("a", "b"):
        harness = Harness.create(tmp_path / site)
        try:
            harness.receive(image)
            harness.clock.advance(10)
            [done] = Completer(harness.engine, harness.settings, harness.clock).check()
            assert done.job_id is not None
            result = worker(harness).run_once()
            assert result is not None and result.status == "done"
            rows = harness.rows("SELECT sop_instance_uid, series_instance_uid, file_path FROM outputs")
            uids[site] = {row.sop_instance_uid for row in rows} | {row.series_instance_uid for row in rows}
            installation = installation_id(harness.engine)
            assert installation == installation_id(harness.engine)  # kept, not made again
            for row in rows:
                written = pydicom.dcmread(harness.settings.storage.outbox_path / row.file_path)
                assert written.DeviceSerialNumber == installation != "0"
            # the same analysis encoded again on this installation: the same UIDs
            _, files, _ = worker(harness)._produce(job_row(harness, done.job_id), FakeEngine())
            assert {file.sop_instance_uid for file in files} == {row.sop_instance_uid for row in rows}
        finally:
            harness.close()
    assert not uids["a"] & uids["b"]


def test_a_configured_uid_root_prefixes_every_output_uid(tmp_path: Path, template: Dataset) -> None:
    root = "1.2.826.0.1.3680043.10.999"
    harness = Harness.create(tmp_path, dicom={"uid_root": root})
    try:
        queue_study(harness, template)
        result = worker(harness).run_once()
        assert result is not None and result.status == "done"
        rows = harness.rows("SELECT sop_instance_uid, series_instance_uid FROM outputs")
        assert len(rows) == 3
        for uid in [row.sop_instance_uid for row in rows] + [row.series_instance_uid for row in rows]:
            assert uid.startswith(root + ".") and len(uid) <= 64 and UID(uid).is_valid
    finally:
        harness.close()


class _CutReportEngine(FakeEngine):
    """The FakeEngine's analysis with a statement added and the runtime's cut recorded."""

    CUT = "the report repeats a word in a loop in sentence 2; it was cut there (10 sentence(s) dropped)"

    def analyze(self, datasets: Sequence[Dataset]) -> StudyAnalysis:
        analysis = super().analyze(datasets)
        statement = Finding("The trachea is midline.", "other", True, None)
        images = tuple(
            dataclasses.replace(image, findings=(*image.findings, statement), omissions=(self.CUT,))
            for image in analysis.images
        )
        return dataclasses.replace(analysis, images=images)


def test_a_cut_report_is_recorded_on_the_job_and_its_sr_is_partial(
    harness: Harness, template: Dataset, caplog: pytest.LogCaptureFixture
) -> None:
    _, job_id = queue_study(harness, template)
    with caplog.at_level(logging.WARNING, logger="gateway.pipeline.worker"):
        result = worker(harness, _CutReportEngine()).run_once()
    assert result is not None and result.status == "done"
    job = job_row(harness, job_id)
    assert job.findings_present == 1  # the statement is not counted as a finding
    assert job.omissions is not None and _CutReportEngine.CUT in job.omissions
    assert f"job {job_id}: the analysis is incomplete" in caplog.text
    sr_row = harness.rows("SELECT file_path FROM outputs WHERE kind = 'sr'")[0]
    sr = pydicom.dcmread(harness.settings.storage.outbox_path / sr_row.file_path)
    assert sr.CompletionFlag == "PARTIAL"
    (listed,) = status.jobs(harness.engine)
    assert listed.omissions == job.omissions


def test_a_whole_report_leaves_the_job_without_omissions(harness: Harness, template: Dataset) -> None:
    _, job_id = queue_study(harness, template)
    worker(harness).run_once()
    assert job_row(harness, job_id).omissions is None
