"""The console's Pulls page: a viewer sees the pulls, an operator asks for one or cancels it; a bad
request is refused with its reason and records nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.config import load_settings
from gateway.db import create_database_engine, upgrade
from gateway.pull.listing import pull_summaries
from gateway.web import ApiContext, create_app
from tests.gateway.web.console.conftest import Console


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    values: dict[str, Any] = {
        "storage": {"data_dir": str(tmp_path / "data"), "min_free_disk": 0},
        "sources": {"pacs": {"type": "dicom", "ae_title": "PACS", "host": "127.0.0.1", "port": 104}},
    }
    settings = load_settings(overrides=values, environ={})
    engine = create_database_engine(settings.database_url)
    upgrade(engine)
    context = ApiContext(settings=settings, engine=engine)
    client = TestClient(create_app(context), base_url="http://127.0.0.1", follow_redirects=False)
    with client:
        yield Console(settings, engine, context, client)
    engine.dispose()


def test_an_operator_asks_for_a_pull_sees_it_queued_and_cancels_it(console: Console) -> None:
    csrf = console.log_in("otto", "operator")
    page = console.client.get("/pulls")
    assert page.status_code == 200 and 'id="new-pull"' in page.text and "<option>pacs</option>" in page.text
    asked = console.post(
        "/pulls", {"source": "pacs", "modalities": "cr,dx", "body_part": "CHEST", "date_from": "20261130"}, csrf
    )
    assert asked.status_code == 303 and asked.headers["location"] == "/pulls"
    [pull] = pull_summaries(console.engine)
    assert (pull.source, pull.state, pull.created_by) == ("pacs", "queued", "otto")
    assert pull.query.modalities == ["CR", "DX"] and pull.query.body_part == "CHEST"
    listed = console.client.get("/pulls").text
    assert f'data-pull="{pull.id}"' in listed and "queued" in listed and "pull 1 queued" in listed
    cancelled = console.post(f"/pulls/{pull.id}/cancel", {}, csrf)
    assert cancelled.status_code == 303
    assert pull_summaries(console.engine)[0].state == "cancelled"


def test_a_bad_pull_request_is_refused_with_its_reason_and_records_nothing(console: Console) -> None:
    csrf = console.log_in("otto", "operator")
    for data, reason in (
        ({"source": "pacs", "date_from": "12/31/26"}, "YYYYMMDD"),
        ({"source": "elsewhere", "study_uid": "1.2.3"}, "no source named &#39;elsewhere&#39;"),
        ({"source": "pacs", "study_uid": "not a uid"}, "is not a UID"),
    ):
        response = console.post("/pulls", data, csrf)
        assert response.status_code == 303
        assert reason in console.client.get("/pulls").text, data
    assert pull_summaries(console.engine) == []
    assert console.post("/pulls", {"source": "pacs", "study_uid": "1.2.3"}, "wrong").status_code == 403
    assert pull_summaries(console.engine) == []


def test_a_viewer_sees_the_pulls_but_no_form_and_cannot_ask_for_one(console: Console) -> None:
    csrf = console.log_in("vera", "viewer")
    page = console.client.get("/pulls")
    assert page.status_code == 200 and 'id="new-pull"' not in page.text and "No pulls." in page.text
    refused = console.post("/pulls", {"source": "pacs", "study_uid": "1.2.3"}, csrf)
    assert refused.status_code == 403
    assert pull_summaries(console.engine) == []
