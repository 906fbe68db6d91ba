"""Routing and delivery follow the live configuration: a change applies to the next completed study."""

from __future__ import annotations

from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from gateway.config import edits
from gateway.config.live import LiveSettings
from tests.gateway.pipeline.support import Harness, make_image

RULE = "chest-radiograph"


def send_study(harness: Harness, template: Dataset) -> str:
    study = generate_uid()
    harness.receive(make_image(template, study))
    harness.clock.advance(11)  # past the quiet period
    return study


def routing_of(harness: Harness, study: str) -> tuple[str, str | None]:
    [row] = harness.rows(
        "SELECT s.routing, j.destinations FROM study_states s JOIN studies t ON t.id = s.study_pk "
        "LEFT JOIN jobs j ON j.study_pk = s.study_pk WHERE t.study_instance_uid = :uid",
        uid=study,
    )
    return row.routing, row.destinations


def with_rule_destinations(document: dict[str, Any], destinations: list[str]) -> dict[str, Any]:
    [rule] = [rule for rule in document["routing"]["rules"] if rule["name"] == RULE]
    return edits.put_rule(document, RULE, {**rule, "destinations": destinations})


def test_a_routing_change_applies_to_the_next_completed_study(harness: Harness, template: Dataset) -> None:
    live = LiveSettings(harness.engine, harness.settings, refresh_seconds=0)
    live.seed()
    pipeline = harness.pipeline(live=live.current)

    first = send_study(harness, template)
    pipeline.run_burst(complete=True)
    assert routing_of(harness, first) == ("routed", "archive")
    assert len(harness.destination("archive").received) == 3

    live.apply(
        lambda doc: with_rule_destinations(
            edits.put_destination(doc, "second", {"ae_title": "SECOND", "host": "127.0.0.1", "port": 105}), ["second"]
        ),
        actor="alice",
        summary="send chest results to the second archive",
    )
    second = send_study(harness, template)
    pipeline.run_burst(complete=True)
    assert routing_of(harness, second) == ("routed", "second")
    assert len(harness.destination("second").received) == 3  # the deliverer found the new destination
    assert len(harness.destination("archive").received) == 3  # nothing more went to the first one
    assert harness.sender.opened[-1][0] == "second"

    live.apply(lambda doc: edits.put_rule(doc, RULE, {"match": {"modality": ["MR"]}}), actor="alice", summary="MR only")
    third = send_study(harness, template)
    pipeline.run_burst(complete=True)
    assert routing_of(harness, third) == ("not_routed", None)


def test_a_destination_removed_live_is_dead_lettered_with_the_reason(harness: Harness, template: Dataset) -> None:
    live = LiveSettings(harness.engine, harness.settings, refresh_seconds=0)
    live.seed()
    pipeline = harness.pipeline(live=live.current)
    send_study(harness, template)
    pipeline.run_burst(complete=False)  # not completed yet: the completion check has not run
    assert pipeline.completer is not None
    pipeline.completer.check()
    assert pipeline.workers[0].run_once() is not None  # analysed: one delivery to archive waits
    live.apply(
        lambda doc: edits.delete_destination(
            with_rule_destinations(
                edits.put_destination(doc, "second", {"ae_title": "SECOND", "host": "127.0.0.1", "port": 105}),
                ["second"],
            ),
            "archive",
        ),
        actor="alice",
        summary="replace the archive",
    )
    result = pipeline.deliverers[0].run_once()
    assert result is not None and result.status == "dead"
    [row] = harness.rows("SELECT last_error FROM deliveries")
    assert "destination 'archive' is no longer configured (configured: second)" in row.last_error
