"""Studies, jobs, deliveries and the dashboard as the API and the console read them, from a
database the real pipeline filled."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gateway.operations import OperationError, queries
from gateway.pipeline import status
from tests.gateway.operations.conftest import World


def test_studies_are_listed_newest_first_with_their_state_in_code_and_in_words(world: World) -> None:
    page = queries.list_studies(world.harness.engine)
    assert page.total == 3 and (page.page, page.page_size) == (1, queries.DEFAULT_PAGE_SIZE)
    assert [s.study_instance_uid for s in page.items] == [world.receiving, world.head, world.chest]
    receiving, head, chest = page.items
    assert (receiving.state, head.state, chest.state) == ("receiving", "not_routed", "delivery_dead")
    # the words are those of gazex studies
    words = {row.study_instance_uid: row.state for row in status.studies(world.harness.engine)}
    assert {s.study_instance_uid: s.state_label for s in page.items} == words
    assert (chest.instances, chest.series, chest.modalities, chest.calling_ae_titles) == (2, 1, ["CR"], ["PACS"])
    assert chest.accession_number == "ACC12345" and chest.rule == "chest-radiograph"
    assert chest.job_id == world.chest_job
    assert head.calling_ae_titles == ["CTSCANNER"] and head.detail.startswith("not routed")


def test_studies_are_filtered_and_paged_with_a_total(world: World) -> None:
    db = world.harness.engine

    def uids(**filters: object) -> list[str]:
        return [s.study_instance_uid for s in queries.list_studies(db, **filters).items]  # type: ignore[arg-type]

    assert uids(state="not_routed") == [world.head]
    assert uids(state="delivered") == []
    assert uids(calling_ae="CTSCANNER") == [world.head]
    assert uids(modality="ct") == [world.head]
    assert uids(text="acc123") == [world.chest]  # part of the accession number, any case
    assert uids(text=world.head[-12:]) == [world.head]  # part of the UID
    assert uids(text="50%_") == []  # LIKE wildcards are plain characters
    chest = queries.study_detail(db, world.chest).study
    assert uids(received_until=chest.last_received_at) == [world.chest]
    assert uids(received_since=chest.last_received_at + timedelta(seconds=1)) == [world.receiving, world.head]
    second = queries.list_studies(db, page=2, page_size=1)
    assert (second.total, [s.study_instance_uid for s in second.items]) == (3, [world.head])
    assert queries.list_studies(db, page=4, page_size=1).items == []


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"state": "lost"}, "state 'lost' is not known; choose from receiving"),
        ({"page": 0}, "page must be 1 or more"),
        ({"page_size": 501}, "page_size must be between 1 and 500"),
        ({"page_size": 0}, "page_size must be between 1 and 500"),
    ],
)
def test_bad_filters_are_refused_with_what_is_allowed(world: World, filters: dict[str, object], message: str) -> None:
    with pytest.raises(OperationError, match=message) as caught:
        queries.list_studies(world.harness.engine, **filters)  # type: ignore[arg-type]
    assert caught.value.kind == "invalid"


def test_a_study_shows_its_series_timeline_jobs_deliveries_and_report(world: World) -> None:
    detail = queries.study_detail(world.harness.engine, world.chest, world.harness.settings)
    assert [s.instances for s in detail.series] == [2] and detail.series[0].modality == "CR"
    assert detail.completion_reason == "quiet" and detail.completions == 1
    assert detail.routing_reason is not None and detail.routing_reason.startswith("routed by rule chest-radiograph")
    events = [event.event for event in detail.timeline]
    assert events[:3] == ["received", "complete", "routed"]  # both instances came at one (fake) moment
    assert {"routed", "analysis started", "analysed", "delivered", "delivery dead"} <= set(events)
    assert events.index("routed") < events.index("analysed") < events.index("delivered")
    assert [event.at for event in detail.timeline] == sorted(event.at for event in detail.timeline)
    assert [(job.id, job.status) for job in detail.jobs] == [(world.chest_job, "done")]
    outcomes = sorted((d.destination, d.status) for d in detail.deliveries)
    assert outcomes == [("archive", "delivered"), ("backup", "dead")]
    assert detail.report is not None and "No pneumothorax." in detail.report  # the FakeEngine's sentences
    assert detail.report_job_id == world.chest_job and detail.report_note is None


def test_a_study_without_analysis_says_why_it_has_no_report(world: World) -> None:
    detail = queries.study_detail(world.harness.engine, world.head, world.harness.settings)
    assert detail.report is None and detail.report_note == "the study has no finished analysis"
    assert [e.event for e in detail.timeline][-1] == "not routed" and detail.jobs == [] and detail.deliveries == []


def test_an_unknown_study_job_or_delivery_is_not_found(world: World) -> None:
    db = world.harness.engine
    for call in (
        lambda: queries.study_detail(db, "1.2.3.4"),
        lambda: queries.job_detail(db, 999),
        lambda: queries.delivery_detail(db, 999),
    ):
        with pytest.raises(OperationError) as caught:
            call()
        assert caught.value.kind == "not_found"


def test_jobs_and_a_job_with_its_instances_outputs_and_deliveries(world: World) -> None:
    db = world.harness.engine
    page = queries.list_jobs(db, status="done")
    assert page.total == 1 and page.items[0].id == world.chest_job
    assert queries.list_jobs(db, status="queued").total == 0
    assert queries.list_jobs(db, study_instance_uid=world.head).items == []
    job = page.items[0]
    assert job.outputs == ["sr", "seg", "gsps"] and job.destinations == ["archive", "backup"]
    assert job.model == status.jobs(db)[0].model and job.model.endswith("(fake)")  # as gazex jobs shows it
    detail = queries.job_detail(db, world.chest_job)
    assert [i.role for i in detail.instances] == ["analyze", "analyze"]
    assert sorted(o.kind for o in detail.outputs) == ["gsps", "gsps", "seg", "seg", "sr"]  # SEG, GSPS per image
    assert {d.id for d in detail.deliveries} == {world.archive_delivery, world.backup_delivery}
    with pytest.raises(OperationError, match="status 'lost' is not known"):
        queries.list_jobs(db, status="lost")


def test_deliveries_filtered_by_state_destination_and_study_with_their_items(world: World) -> None:
    db = world.harness.engine
    dead = queries.list_deliveries(db, status="dead")
    assert [(d.id, d.destination, d.attempts) for d in dead.items] == [(world.backup_delivery, "backup", 3)]
    assert dead.items[0].last_error is not None and "unreachable" in dead.items[0].last_error
    assert [d.id for d in queries.list_deliveries(db, destination="archive").items] == [world.archive_delivery]
    assert queries.list_deliveries(db, study_instance_uid=world.chest).total == 2
    assert queries.list_deliveries(db, job_id=world.chest_job + 1).total == 0
    detail = queries.delivery_detail(db, world.archive_delivery)
    assert (detail.delivery.acknowledged, detail.delivery.total) == (5, 5)
    assert {(i.status, i.status_code, i.sends) for i in detail.items} == {("acknowledged", 0, 1)}
    assert sorted(i.kind for i in detail.items) == ["gsps", "gsps", "seg", "seg", "sr"]
    assert [i.status for i in queries.delivery_detail(db, world.backup_delivery).items] == ["pending"] * 5


def test_the_dashboard_counts_states_queue_failures_and_disk(world: World) -> None:
    harness = world.harness
    board = queries.dashboard_counts(harness.engine, harness.settings, now=harness.clock.now())
    assert board.studies_by_state == {"receiving": 1, "not_routed": 1, "delivery_dead": 1}
    assert board.jobs_by_status == {"done": 1}
    assert board.deliveries_by_status == {"delivered": 1, "dead": 1}
    assert (board.queue.jobs_queued, board.queue.deliveries_pending, board.queue.oldest_queued_seconds) == (0, 0, None)
    recent = board.last_24h
    assert (recent.studies_received, recent.jobs_done, recent.jobs_failed) == (3, 1, 0)
    assert (recent.deliveries_delivered, recent.deliveries_dead, recent.studies_not_routed) == (1, 1, 1)
    later = queries.dashboard_counts(harness.engine, harness.settings, now=harness.clock.now() + timedelta(days=2))
    assert later.last_24h.studies_received == 0 and later.last_24h.deliveries_dead == 0
    assert [disk.name for disk in board.disks] == ["spool", "outbox"]
    assert all(disk.free_bytes is not None and disk.free_bytes > 0 and not disk.below_reserve for disk in board.disks)
