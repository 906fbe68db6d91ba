"""/api/v1/pulls: operators ask for pulls, viewers follow them; bad bodies get 422 and record nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway.web.support import WebApp, web_app


@pytest.fixture
def web(tmp_path: Path) -> Iterator[WebApp]:
    app = web_app(tmp_path, sources={"pacs": {"ae_title": "PACS", "host": "127.0.0.1", "port": 104}})
    yield app
    app.engine.dispose()


def test_an_operator_asks_for_a_pull_and_a_viewer_follows_it(web: WebApp) -> None:
    operator, viewer = web.bearer("operator"), web.bearer("viewer")
    body = {"source": "pacs", "modalities": ["CR", "DX"], "body_part": "CHEST", "date_from": "20250101"}
    assert web.client.post("/api/v1/pulls", json=body, headers=viewer).status_code == 403
    answer = web.client.post("/api/v1/pulls", json=body, headers=operator)
    assert answer.status_code == 202, answer.text
    pull = answer.json()
    assert pull["state"] == "queued" and pull["found"] is None and pull["created_by"].startswith("operator")
    assert pull["description"] == "modality CR,DX, body part CHEST, dates 20250101-…"
    listed = web.client.get("/api/v1/pulls", headers=viewer)
    assert [p["id"] for p in listed.json()] == [pull["id"]]
    one = web.client.get(f"/api/v1/pulls/{pull['id']}", headers=viewer).json()
    assert one["items"] == [] and one["query"]["modalities"] == ["CR", "DX"]
    assert web.client.get("/api/v1/pulls/99", headers=viewer).status_code == 404
    cancelled = web.client.post(f"/api/v1/pulls/{pull['id']}/cancel", headers=operator)
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert web.client.get("/api/v1/pulls?state=cancelled", headers=viewer).json()[0]["id"] == pull["id"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"source": "elsewhere", "study_uid": "1.2.3"}, "no source named 'elsewhere' is configured (sources: pacs)"),
        ({"source": "pacs"}, "give exactly one of"),
        ({"source": "pacs", "study_uid": "1.2", "accession": "A1"}, "give exactly one of"),
        ({"source": "pacs", "date_from": "2025-02-30"}, "is not a calendar date"),
        ({"source": "pacs", "study_uid": "1.2", "extra": 1}, "extra"),
    ],
)
def test_a_bad_pull_is_refused_and_nothing_is_recorded(web: WebApp, body: dict[str, object], message: str) -> None:
    operator = web.bearer("operator")
    answer = web.client.post("/api/v1/pulls", json=body, headers=operator)
    assert answer.status_code == 422 and message in answer.json()["detail"], answer.text
    assert web.client.get("/api/v1/pulls", headers=operator).json() == []
