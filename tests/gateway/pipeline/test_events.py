"""The pipeline's call sites of the observers: completion, job attempts and delivery attempts."""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from gateway.events import DeliveryInfo
from gateway.pipeline.model import ModelHolder
from inference import FakeEngine
from tests.gateway.pipeline.support import Harness, make_image
from tests.gateway.recording import Recorder


def fake_model(harness: Harness, engine: FakeEngine | None = None) -> ModelHolder:
    return ModelHolder(harness.settings.model, loader=lambda _: engine or FakeEngine())


def test_a_study_completed_analysed_and_delivered_is_told_in_order(harness: Harness, template: Dataset) -> None:
    study = generate_uid()
    images = [make_image(template, study, PatientID="P-17") for _ in range(2)]
    for image in images:
        harness.receive(image)
    harness.clock.advance(10)
    recorder = Recorder()
    pipeline = harness.pipeline(model=fake_model(harness), observer=recorder)
    assert pipeline.run_burst(complete=True) == (1, 1)

    assert [name for name, _ in recorder.events] == ["study_completed", "job_finished", "delivery_finished"]
    assert recorder.of("study_completed") == [(study, 2)]
    [(job_id, job_study, outcome, seconds)] = recorder.of("job_finished")
    assert (job_study, outcome) == (study, "done")
    assert job_id == harness.rows("SELECT id FROM jobs")[0].id
    assert seconds is not None and seconds >= 0
    outputs = harness.rows("SELECT sop_instance_uid, sop_class_uid FROM outputs ORDER BY id")
    [(delivery, delivery_outcome)] = recorder.of("delivery_finished")
    assert delivery_outcome == "delivered"
    assert delivery == DeliveryInfo(
        delivery_id=harness.rows("SELECT id FROM deliveries")[0].id,
        destination="archive",
        called_ae_title="ARCHIVE",
        host="127.0.0.1",
        port=104,
        study_instance_uid=study,
        sop_instance_uids=tuple(row.sop_instance_uid for row in outputs),
        sop_class_uids=tuple(row.sop_class_uid for row in outputs),
        patient_id="P-17",
        attempts=1,
    )
    assert list(delivery.sop_instance_uids) == harness.destination().received


def test_failed_job_attempts_then_the_dead_job_are_told(harness: Harness, template: Dataset) -> None:
    study = generate_uid()
    harness.receive(make_image(template, study))
    harness.clock.advance(10)
    recorder = Recorder()
    pipeline = harness.pipeline(model=fake_model(harness, FakeEngine(fail_with="out of memory")), observer=recorder)
    for delay in (0, 5, 10):
        harness.clock.advance(delay)
        pipeline.run_burst(complete=True)
    [job_id] = [row.id for row in harness.rows("SELECT id FROM jobs")]
    assert recorder.of("job_finished") == [
        (job_id, study, "failed", None),
        (job_id, study, "failed", None),
        (job_id, study, "dead", None),
    ]
    assert recorder.of("delivery_finished") == []


def test_retried_then_dead_deliveries_are_told_with_their_attempts(harness: Harness, template: Dataset) -> None:
    study = generate_uid()
    harness.receive(make_image(template, study))
    harness.clock.advance(10)
    harness.destination().reachable = False
    recorder = Recorder()
    pipeline = harness.pipeline(model=fake_model(harness), observer=recorder)
    for delay in (0, 100, 100):
        harness.clock.advance(delay)
        pipeline.run_burst(complete=True)
    told = [(info.attempts, info.sop_instance_uids, outcome) for info, outcome in recorder.of("delivery_finished")]
    assert told == [(1, (), "retry"), (2, (), "retry"), (3, (), "dead")]
    assert {info.destination for info, _ in recorder.of("delivery_finished")} == {"archive"}


def test_a_delivery_whose_destination_was_removed_is_told_dead(harness: Harness, template: Dataset) -> None:
    study = generate_uid()
    harness.receive(make_image(template, study))
    harness.clock.advance(10)
    first = harness.pipeline(model=fake_model(harness))
    assert first.completer is not None
    first.outbox.prepare()
    first.completer.check()
    assert first.workers[0].run_once() is not None
    recorder = Recorder()
    without = harness.settings.model_copy(update={"destinations": {}})
    pipeline = harness.pipeline(settings=without, model=fake_model(harness), observer=recorder)
    assert pipeline.deliverers[0].run_once() is not None
    [(info, outcome)] = recorder.of("delivery_finished")
    assert outcome == "dead"
    assert (info.destination, info.called_ae_title, info.host, info.port) == ("archive", "", "", 0)
    assert (info.study_instance_uid, info.attempts, info.sop_instance_uids) == (study, 1, ())
