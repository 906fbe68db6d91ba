"""Operators' actions on a database the real pipeline filled: retry, cancel, reprocess, test the
rules, and C-ECHO real loopback peers."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset

from gateway.demo.archive import RecordingArchive
from gateway.operations import OperationError, actions, queries
from gateway.pipeline.sender import FakeDestination
from tests.gateway.operations.conftest import World, settle
from tests.gateway.pipeline.support import make_image, pipeline_settings


def kind_of(call: Callable[[], object]) -> str:
    with pytest.raises(OperationError) as caught:
        call()
    return caught.value.kind


def test_a_dead_delivery_retried_is_due_again_and_delivers_what_was_missing(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    harness = world.harness
    with caplog.at_level(logging.INFO, logger="gateway.operations"):
        retried = actions.retry_delivery(harness.engine, world.backup_delivery, actor="olga", clock=harness.clock)
    assert (retried.status, retried.attempts, retried.next_attempt_at) == ("pending", 0, harness.clock.now())
    assert f"olga made delivery {world.backup_delivery} to backup due again" in caplog.text
    harness.sender.destinations["backup"] = FakeDestination()
    settle(harness, rounds=1)
    assert queries.delivery(harness.engine, world.backup_delivery).status == "delivered"
    assert queries.study_detail(harness.engine, world.chest).study.state == "delivered"
    outputs = [o.sop_instance_uid for o in queries.job_detail(harness.engine, world.chest_job).outputs]
    received = harness.destination("backup").received  # (also the third study's, completed meanwhile)
    assert len(outputs) == 5 and all(received.count(uid) == 1 for uid in outputs)
    # a delivered one has nothing to retry; an unknown one is not found
    assert kind_of(lambda: actions.retry_delivery(harness.engine, world.archive_delivery)) == "conflict"
    assert kind_of(lambda: actions.retry_delivery(harness.engine, 999)) == "not_found"
    assert queries.delivery(harness.engine, world.archive_delivery).attempts == 1  # untouched


def test_a_queued_job_cancelled_is_never_claimed_and_a_finished_one_cannot_be_cancelled(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    harness = world.harness
    queued = actions.reprocess_study(harness.engine, harness.settings, world.chest, actor="olga", clock=harness.clock)
    assert queued.job_id != world.chest_job and queued.reason.startswith("routed by rule chest-radiograph")
    assert queries.job(harness.engine, queued.job_id).status == "queued"
    assert queries.study_detail(harness.engine, world.chest).study.state == "queued"
    with caplog.at_level(logging.INFO, logger="gateway.operations"):
        cancelled = actions.cancel_job(harness.engine, queued.job_id, actor="olga", clock=harness.clock)
    assert (cancelled.status, cancelled.last_error) == ("cancelled", "cancelled by olga")
    assert f"olga cancelled job {queued.job_id}" in caplog.text
    settle(harness, rounds=2)  # workers run: the cancelled job stays as it is
    job = queries.job_detail(harness.engine, queued.job_id)
    assert (job.job.status, job.job.attempts, job.outputs, job.deliveries) == ("cancelled", 0, [], [])
    assert queries.study_detail(harness.engine, world.chest).study.state == "cancelled"
    assert kind_of(lambda: actions.cancel_job(harness.engine, queued.job_id)) == "conflict"
    assert kind_of(lambda: actions.cancel_job(harness.engine, world.chest_job)) == "conflict"
    assert kind_of(lambda: actions.cancel_job(harness.engine, 999)) == "not_found"
    assert queries.job(harness.engine, world.chest_job).status == "done"


def test_reprocessing_queues_a_new_analysis_that_supersedes_the_earlier_one(world: World) -> None:
    harness = world.harness
    woken: list[bool] = []
    outcome = actions.reprocess_study(
        harness.engine, harness.settings, world.chest, clock=harness.clock, on_job_queued=lambda: woken.append(True)
    )
    assert woken == [True]
    settle(harness, rounds=2)
    job = queries.job(harness.engine, outcome.job_id)
    assert (job.status, job.predecessor_job_id) == ("done", world.chest_job)
    detail = queries.study_detail(harness.engine, world.chest, harness.settings)
    assert detail.report_job_id == outcome.job_id and [j.id for j in detail.jobs] == [outcome.job_id, world.chest_job]


def test_reprocessing_an_unknown_or_unroutable_study_is_refused(world: World) -> None:
    harness = world.harness
    jobs_before = queries.list_jobs(harness.engine).total
    assert kind_of(lambda: actions.reprocess_study(harness.engine, harness.settings, "1.2.3")) == "not_found"
    with pytest.raises(OperationError, match="was not queued: not routed: no rule takes") as caught:
        actions.reprocess_study(harness.engine, harness.settings, world.head)
    assert caught.value.kind == "conflict"
    assert queries.list_jobs(harness.engine).total == jobs_before


def test_the_rules_are_tested_against_a_received_study_or_an_uploaded_header(world: World, template: Dataset) -> None:
    harness = world.harness
    chest = actions.test_rules(harness.settings, db=harness.engine, study_instance_uid=world.chest)
    assert (chest.source, chest.routed, chest.rule, chest.instances) == ("study", True, "chest-radiograph", 2)
    assert chest.destinations == ["archive", "backup"] and chest.outputs == ["sr", "seg", "gsps"]
    assert len(chest.analyze) == 2 and chest.context == []
    assert chest.explanation[0].startswith("instance 1 of 2: ") and "rule 1 chest-radiograph: TAKES" in chest.explanation[1]
    head = actions.test_rules(harness.settings, db=harness.engine, study_instance_uid=world.head)
    assert not head.routed and head.rule is None and head.reason.startswith("not routed: no rule takes")
    upload = make_image(template, Modality="CT", BodyPartExamined="HEAD")
    tested = actions.test_rules(harness.settings, dataset=upload, calling_ae="CTSCANNER")
    assert (tested.source, tested.routed, tested.instances) == ("file", False, 1)
    assert "  match 1: fails" in tested.explanation and "    ✗ modality 'CT' is not one of [CR, DX]" in tested.explanation
    assert tested.explanation[-1] == "result: no rule takes this instance; on its own its study would not be routed"
    lateral = actions.test_rules(harness.settings, dataset=make_image(template, ViewPosition="LL"))
    assert not lateral.routed and "selects none to analyse" in lateral.reason
    for bad in ({}, {"study_instance_uid": world.chest, "dataset": upload}):
        assert kind_of(lambda bad=bad: actions.test_rules(harness.settings, db=harness.engine, **bad)) == "invalid"  # type: ignore[misc]
    assert kind_of(lambda: actions.test_rules(harness.settings, db=harness.engine, study_instance_uid="9.9")) == "not_found"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_a_destination_is_echoed_with_its_own_settings_up_and_down(
    tmp_path: Path, free_port: Callable[[], int]
) -> None:
    up, down = free_port(), closed_port()
    settings = pipeline_settings(
        tmp_path,
        destinations={
            "archive": {"ae_title": "ARCHIVE", "host": "127.0.0.1", "port": up, "calling_ae_title": "GAZEXOUT"},
            "gone": {"ae_title": "GONE", "host": "127.0.0.1", "port": down, "timeout_seconds": 2},
        },
    )
    with RecordingArchive(port=up):
        ok = actions.echo_destination(settings, "archive", actor="olga")
    assert (ok.ok, ok.message, ok.status, ok.calling_ae_title, ok.port) == (True, "success", 0, "GAZEXOUT", up)
    failed = actions.echo_destination(settings, "gone")
    assert not failed.ok and failed.message.startswith(f"cannot connect to 127.0.0.1:{down}")
    assert failed.calling_ae_title == "GAZEX"
    with pytest.raises(OperationError, match=r"there is no destination 'nowhere' \(configured: archive, gone\)"):
        actions.echo_destination(settings, "nowhere")


def test_a_header_read_from_a_file_routes_as_gazex_rules_test_does(tmp_path: Path, template: Dataset) -> None:
    settings = pipeline_settings(tmp_path)
    path = tmp_path / "chest.dcm"
    make_image(template, ViewPosition="PA").save_as(path, enforce_file_format=True)
    tested = actions.test_rules(settings, dataset=pydicom.dcmread(path, stop_before_pixels=True))
    assert tested.routed and tested.rule == "chest-radiograph" and tested.destinations == ["archive"]
