"""Study completion against a real (SQLite) index: quiet period, deadline, re-opening, routing, restarts."""

from __future__ import annotations

from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from sqlalchemy import select, update

from gateway.pipeline.completer import Completer
from gateway.pipeline.tables import INSTANCES
from tests.gateway.pipeline.support import Harness, make_image


def completer(harness: Harness) -> Completer:
    return Completer(harness.engine, harness.settings, harness.clock)


def test_a_study_completes_after_the_quiet_period_and_queues_one_job(harness: Harness, template: Dataset) -> None:
    study = generate_uid()
    harness.receive(make_image(template, study))
    harness.clock.advance(5)
    harness.receive(make_image(template, study))
    harness.clock.advance(9)
    assert completer(harness).check() == []  # 9 s since the last instance
    harness.clock.advance(1)
    [done] = completer(harness).check()
    assert (done.study_instance_uid, done.reason, done.new_job) == (study, "quiet", True)
    jobs = harness.rows("SELECT * FROM jobs")
    assert len(jobs) == 1 and jobs[0].status == "queued" and jobs[0].rule == "chest-radiograph"
    assert jobs[0].outputs == "sr,seg,gsps" and jobs[0].destinations == "archive"
    assert len(harness.rows("SELECT * FROM job_instances WHERE role = 'analyze'")) == 2
    # the state is in the database: a new completer (a restarted gateway) does not complete it again
    harness.clock.advance(100)
    assert completer(harness).check() == []
    assert len(harness.rows("SELECT * FROM jobs")) == 1


def test_the_deadline_completes_a_study_that_keeps_trickling_in(tmp_path: Path, template: Dataset) -> None:
    harness = Harness.create(tmp_path, completion={"quiet_seconds": 10, "max_wait_seconds": 30})
    try:
        study = generate_uid()
        results = []
        for _ in range(7):  # one instance every 5 s
            harness.receive(make_image(template, study))
            harness.clock.advance(5)
            results += completer(harness).check()
        [done] = results
        assert done.reason == "deadline"
        assert len(harness.rows("SELECT * FROM job_instances")) == 6  # what had arrived by the deadline
        # the seventh re-opens the study; it completes after its own quiet period
        harness.clock.advance(10)
        [again] = completer(harness).check()
        assert again.reason == "quiet" and again.new_job
        assert len(harness.rows("SELECT * FROM job_instances WHERE job_pk = :j", j=again.job_id)) == 7
    finally:
        harness.close()


def test_a_new_instance_re_opens_an_analysed_study_and_an_identical_resend_does_not(
    harness: Harness, template: Dataset
) -> None:
    study = generate_uid()
    first = make_image(template, study)
    harness.receive(first)
    harness.clock.advance(10)
    [done] = completer(harness).check()
    harness.clock.advance(30)
    harness.receive(first)  # the same bytes again: a duplicate, last_received_at does not move
    harness.clock.advance(30)
    assert completer(harness).check() == []
    harness.receive(make_image(template, study))  # a new image
    harness.clock.advance(10)
    [reopened] = completer(harness).check()
    assert reopened.new_job and reopened.job_id != done.job_id
    statuses = {row.id: row.status for row in harness.rows("SELECT id, status FROM jobs")}
    # the first job had not run yet: the new one supersedes it
    assert statuses == {done.job_id: "superseded", reopened.job_id: "queued"}
    state = harness.rows("SELECT completions, routing FROM study_states")[0]
    assert (state.completions, state.routing) == (2, "routed")


def test_a_replaced_instance_re_opens_the_study(harness: Harness, template: Dataset) -> None:
    study = generate_uid()
    image = make_image(template, study)
    harness.receive(image)
    harness.clock.advance(10)
    [done] = completer(harness).check()
    corrected = make_image(template, study, SOPInstanceUID=image.SOPInstanceUID, PatientOrientation=["R", "F"])
    harness.receive(corrected)  # same SOP Instance UID, different bytes: a replacement
    harness.clock.advance(10)
    [again] = completer(harness).check()
    assert again.new_job and again.job_id != done.job_id


def test_an_instance_committed_after_its_completion_still_re_opens_the_study(
    harness: Harness, template: Dataset
) -> None:
    study = generate_uid()
    harness.receive(make_image(template, study))
    harness.clock.advance(10)
    [done] = completer(harness).check()
    late = make_image(template, study)
    harness.receive(late)
    # simulate a store whose clock ran before the completion although it committed after it
    with harness.engine.begin() as connection:
        earlier = connection.execute(select(INSTANCES.c.received_at).order_by(INSTANCES.c.id).limit(1)).scalar_one()
        late_row = INSTANCES.c.sop_instance_uid == str(late.SOPInstanceUID)
        connection.execute(update(INSTANCES).where(late_row).values(received_at=earlier))
        connection.execute(
            update(INSTANCES.metadata.tables["studies"]).values(last_received_at=earlier)  # as if never moved
        )
    harness.clock.advance(1)
    [again] = completer(harness).check()
    assert again.new_job and again.job_id != done.job_id


def test_a_non_chest_study_is_recorded_as_not_routed_with_its_reason(harness: Harness, template: Dataset) -> None:
    study = generate_uid()
    harness.receive(make_image(template, study, Modality="CT", BodyPartExamined="HEAD"))
    harness.clock.advance(10)
    [done] = completer(harness).check()
    assert not done.decision.routed and done.job_id is None
    assert harness.rows("SELECT * FROM jobs") == []
    state = harness.rows("SELECT routing, reason FROM study_states")[0]
    assert state.routing == "not_routed"
    assert "modality 'CT' is not one of [CR, DX]" in state.reason


def test_reprocess_queues_a_new_job_for_an_unchanged_study(harness: Harness, template: Dataset) -> None:
    study = generate_uid()
    harness.receive(make_image(template, study))
    harness.clock.advance(10)
    [done] = completer(harness).check()
    study_pk = harness.rows("SELECT id FROM studies")[0].id
    again = completer(harness).complete_study(study_pk, reprocess_nonce="n1")
    assert again is not None and again.reason == "reprocess" and again.new_job
    assert again.job_id != done.job_id
    assert completer(harness).complete_study(study_pk) is None  # nothing pending


def test_completing_twice_with_the_same_instances_queues_one_job(harness: Harness, template: Dataset) -> None:
    study = generate_uid()
    harness.receive(make_image(template, study))
    harness.clock.advance(10)
    [done] = completer(harness).check()
    study_pk = harness.rows("SELECT id FROM studies")[0].id
    # as if another gateway completed it again (same instance set, same model): the key matches
    with harness.engine.begin() as connection:
        connection.execute(INSTANCES.metadata.tables["study_states"].update().values(completed_through=None))
    again = completer(harness).complete_study(study_pk)
    assert again is not None and not again.new_job and again.job_id == done.job_id
