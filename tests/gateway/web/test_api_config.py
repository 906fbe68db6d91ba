"""The live configuration over the API: each resource's list, create, update and delete; refusals
that change nothing; the If-Match guard; and each change reaching the observers with before/after."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.web.context import live_settings
from tests.gateway.web.support import WebApp, web_app

API = "/api/v1/config"
ARCHIVE = {"ae_title": "ARCHIVE", "host": "127.0.0.1", "port": 11112}
CHEST = {
    "name": "chest",
    "match": [{"modality": ["CR", "DX"]}],
    "destinations": ["archive"],
}


@pytest.fixture
def web(tmp_path: Path) -> Iterator[WebApp]:
    app = web_app(tmp_path, destinations={"archive": ARCHIVE}, routing={"rules": [CHEST]})
    with app.client:
        app.client.headers.update(app.bearer("admin"))
        yield app
    app.engine.dispose()


def newest(web: WebApp) -> dict[str, Any]:
    response = web.client.get(API)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert response.headers["etag"] == f'"{body["revision"]}"'
    return body


def only_change(web: WebApp) -> Any:
    assert len(web.observer.changes) == 1, web.observer.changes
    return web.observer.changes.pop()


def test_the_whole_configuration_and_its_history(web: WebApp) -> None:
    first = newest(web)
    assert first["revision"] == 1 and first["actor"] == "seed"
    assert first["document"]["destinations"]["archive"]["port"] == 11112
    assert [rule["name"] for rule in first["document"]["routing"]["rules"]] == ["chest"]

    assert web.client.put(f"{API}/ae-titles", json={"ae_titles": ["GAZEX", "GAZEX2"]}).status_code == 200
    assert web.client.patch(f"{API}/admission", json={"require_called_ae_title": False}).status_code == 200
    history = web.client.get(f"{API}/history", params={"limit": 2}).json()["items"]
    assert [item["revision"] for item in history] == [3, 2]
    assert history[0]["actor"].startswith("admin-")
    assert history[0]["summary"] == "admission: require_called_ae_title=false"
    assert history[1]["document"]["dicom"]["ae_titles"] == ["GAZEX", "GAZEX2"]
    assert web.client.get(f"{API}/history", params={"limit": 0}).status_code == 422


def test_our_ae_titles(web: WebApp) -> None:
    assert web.client.get(f"{API}/ae-titles").json() == {"revision": 1, "ae_titles": ["GAZEX"]}
    response = web.client.put(f"{API}/ae-titles", json={"ae_titles": ["GAZEX", "GAZEX_TLS"]})
    assert response.status_code == 200, response.text
    assert response.json() == {"revision": 2, "ae_titles": ["GAZEX", "GAZEX_TLS"]}
    assert response.headers["etag"] == '"2"'
    change = only_change(web)
    assert change.actor.startswith("admin-") and change.address == "testclient"
    assert change.before == {"dicom.ae_titles": ["GAZEX"]}
    assert change.after == {"dicom.ae_titles": ["GAZEX", "GAZEX_TLS"]}
    assert live_settings(web.context).current().dicom.ae_titles == ["GAZEX", "GAZEX_TLS"]


def test_the_admission_flags(web: WebApp) -> None:
    assert web.client.get(f"{API}/admission").json() == {
        "revision": 1,
        "require_called_ae_title": True,
        "reject_unknown_callers": True,
    }
    response = web.client.patch(f"{API}/admission", json={"reject_unknown_callers": False})
    assert response.status_code == 200, response.text
    assert response.json() == {"revision": 2, "require_called_ae_title": True, "reject_unknown_callers": False}
    change = only_change(web)
    assert change.before == {"dicom.reject_unknown_callers": True}
    assert change.after == {"dicom.reject_unknown_callers": False}
    assert live_settings(web.context).current().dicom.reject_unknown_callers is False


def test_allowed_callers_list_create_update_delete(web: WebApp) -> None:
    loopback = [{"ae_title": "*", "host": "127.0.0.0/8"}, {"ae_title": "*", "host": "::1"}]
    assert web.client.get(f"{API}/callers").json() == {"revision": 1, "items": loopback}

    created = web.client.post(f"{API}/callers", json={"ae_title": "MOD1", "host": "10.0.0.7"})
    assert created.status_code == 201, created.text
    assert created.json() == {"revision": 2, "index": 2, "item": {"ae_title": "MOD1", "host": "10.0.0.7"}}
    change = only_change(web)
    assert change.summary == "allow caller MOD1 from 10.0.0.7"
    assert change.before == {"dicom.allowed_callers": loopback}
    assert change.after == {"dicom.allowed_callers": [*loopback, {"ae_title": "MOD1", "host": "10.0.0.7"}]}

    updated = web.client.put(f"{API}/callers/2", json={"ae_title": "MOD1", "host": "10.0.0.0/24"})
    assert updated.status_code == 200, updated.text
    assert updated.json() == {"revision": 3, "index": 2, "item": {"ae_title": "MOD1", "host": "10.0.0.0/24"}}
    assert only_change(web).after["dicom.allowed_callers"][2]["host"] == "10.0.0.0/24"

    removed = web.client.delete(f"{API}/callers/0")
    assert removed.status_code == 200, removed.text
    assert removed.json() == {"revision": 4, "index": 0, "item": loopback[0]}
    assert only_change(web).after == {
        "dicom.allowed_callers": [loopback[1], {"ae_title": "MOD1", "host": "10.0.0.0/24"}]
    }
    callers = live_settings(web.context).current().dicom.allowed_callers
    assert [(caller.ae_title, caller.host) for caller in callers] == [("*", "::1"), ("MOD1", "10.0.0.0/24")]


def test_destinations_list_create_update_delete(web: WebApp) -> None:
    listed = web.client.get(f"{API}/destinations").json()
    assert listed["revision"] == 1
    assert [item["name"] for item in listed["items"]] == ["archive"]
    assert web.client.get(f"{API}/destinations/archive").json()["item"]["ae_title"] == "ARCHIVE"

    pacs = {"ae_title": "PACS", "host": "pacs.example", "port": 104}
    created = web.client.put(f"{API}/destinations/pacs", json=pacs)
    assert created.status_code == 201, created.text
    item = created.json()["item"]
    assert created.json()["revision"] == 2
    assert {key: item[key] for key in ("name", "ae_title", "host", "port")} == {"name": "pacs", **pacs}
    assert item["timeout_seconds"] == 30.0  # defaults filled in, as stored
    change = only_change(web)
    assert "pacs" not in change.before["destinations"] and change.after["destinations"]["pacs"]["port"] == 104

    # what a GET returns can be changed and PUT back (its name included)
    read = web.client.get(f"{API}/destinations/pacs").json()["item"]
    replaced = web.client.put(f"{API}/destinations/pacs", json={**read, "port": 11112, "timeout_seconds": 5})
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["item"]["port"] == 11112 and replaced.json()["revision"] == 3
    change = only_change(web)
    assert change.before["destinations"]["pacs"]["port"] == 104
    assert change.after["destinations"]["pacs"]["port"] == 11112
    assert live_settings(web.context).current().destinations["pacs"].timeout_seconds == 5

    removed = web.client.delete(f"{API}/destinations/pacs")
    assert removed.status_code == 200, removed.text
    assert removed.json()["item"]["name"] == "pacs" and removed.json()["revision"] == 4
    change = only_change(web)
    assert "pacs" in change.before["destinations"] and "pacs" not in change.after["destinations"]
    assert "pacs" not in live_settings(web.context).current().destinations


def test_routing_rules_list_create_update_move_delete(web: WebApp) -> None:
    assert [rule["name"] for rule in web.client.get(f"{API}/rules").json()["items"]] == ["chest"]

    everything = {"match": {}, "outputs": ["sr"]}
    created = web.client.put(f"{API}/rules/everything", json=everything)
    assert created.status_code == 201, created.text
    assert created.json()["position"] == 1 and created.json()["item"]["outputs"] == ["sr"]
    change = only_change(web)
    assert [rule["name"] for rule in change.before["routing"]["rules"]] == ["chest"]
    assert [rule["name"] for rule in change.after["routing"]["rules"]] == ["chest", "everything"]

    first = web.client.put(f"{API}/rules/urgent", params={"position": 0}, json={"match": {"calling_ae": ["ER1"]}})
    assert first.status_code == 201 and first.json()["position"] == 0
    only_change(web)

    read = web.client.get(f"{API}/rules/everything").json()
    assert read["position"] == 2
    replaced = web.client.put(f"{API}/rules/everything", json={**read["item"], "outputs": ["sr", "gsps"]})
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["position"] == 2 and replaced.json()["item"]["outputs"] == ["sr", "gsps"]
    only_change(web)

    moved = web.client.post(f"{API}/rules/everything/move", json={"position": 0})
    assert moved.status_code == 200, moved.text
    assert moved.json()["position"] == 0
    assert only_change(web).summary == "move routing rule everything to position 0"
    names = [rule.name for rule in live_settings(web.context).current().routing.rules]
    assert names == ["everything", "urgent", "chest"]

    removed = web.client.delete(f"{API}/rules/urgent")
    assert removed.status_code == 200, removed.text
    assert removed.json()["position"] == 1 and removed.json()["item"]["name"] == "urgent"
    only_change(web)
    assert [rule["name"] for rule in web.client.get(f"{API}/rules").json()["items"]] == ["everything", "chest"]


def test_a_change_that_changes_nothing_stores_nothing(web: WebApp) -> None:
    response = web.client.put(f"{API}/ae-titles", json={"ae_titles": ["GAZEX"]})
    assert response.status_code == 200 and response.json()["revision"] == 1
    assert web.observer.changes == []


REFUSALS = [
    ("POST", "/callers", b'{"ae_title": "MOD1"', 422, "not valid JSON"),
    ("PUT", "/destinations/pacs", b"", 422, "needs a JSON body"),
    ("POST", "/callers", ["MOD1"], 422, "must be a JSON object, not list"),
    ("POST", "/callers", {"ae_title": "MOD1", "port": 104}, 422, "dicom.allowed_callers[2].port: unknown key"),
    ("POST", "/callers", {"ae_title": "*", "host": "::1"}, 409, "already allows"),
    ("PUT", "/callers/7", {"ae_title": "MOD1"}, 404, "no allowed caller at index 7"),
    ("DELETE", "/callers/-1", None, 404, "no allowed caller at index -1"),
    (
        "PUT",
        "/destinations/pacs",
        {"ae_title": "PACS", "host": "pacs", "port": 104, "colour": "red"},
        422,
        "destinations.pacs.colour: unknown key",
    ),
    ("PUT", "/destinations/pacs", {"ae_title": "PACS", "host": "pacs", "port": 70000}, 422, "port = 70000"),
    ("PUT", "/destinations/pacs", {"name": "other", "ae_title": "P", "host": "p", "port": 1}, 422, "differs"),
    ("PUT", "/destinations/bad name!", {"ae_title": "P", "host": "p", "port": 1}, 422, "destinations"),
    ("GET", "/destinations/nowhere", None, 404, "no destination 'nowhere' (configured: archive)"),
    ("DELETE", "/destinations/nowhere", None, 404, "no destination 'nowhere'"),
    ("DELETE", "/destinations/archive", None, 409, "named by routing rule(s) chest"),
    ("PUT", "/rules/broken", {"match": {"modality": {"regex": "(["}}}, 422, "does not compile"),
    ("PUT", "/rules/lost", {"match": {}, "destinations": ["nowhere"]}, 422, "nowhere"),
    ("PUT", "/rules/chest", {"match": {}, "when": "always"}, 422, "when: unknown key"),
    ("GET", "/rules/nothing", None, 404, "no routing rule 'nothing' (configured: chest)"),
    ("DELETE", "/rules/nothing", None, 404, "no routing rule 'nothing'"),
    ("POST", "/rules/chest/move", {"position": 3}, 422, "position must be from 0 to 0"),
    ("POST", "/rules/chest/move", {"place": 0}, 422, "place: unknown field"),
    ("POST", "/rules/nothing/move", {"position": 0}, 404, "no routing rule 'nothing'"),
    ("PUT", "/ae-titles", {"ae_titles": ["A" * 17]}, 422, "dicom.ae_titles[0]"),
    ("PUT", "/ae-titles", {"ae_titles": []}, 422, "dicom.ae_titles"),
    ("PATCH", "/admission", {"reject_unknown_callers": "no"}, 422, "valid boolean"),
    ("PATCH", "/admission", {}, 422, "give require_called_ae_title and/or reject_unknown_callers"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "message"), REFUSALS)
def test_a_refused_request_answers_why_and_changes_nothing(
    web: WebApp, method: str, path: str, body: Any, status: int, message: str
) -> None:
    before = newest(web)
    if isinstance(body, bytes):
        response = web.client.request(method, API + path, content=body, headers={"content-type": "application/json"})
    else:
        response = web.client.request(method, API + path, json=body)
    assert response.status_code == status, response.text
    answer = response.json()
    assert message in answer["detail"], answer
    assert answer["problems"] and all(isinstance(problem, str) for problem in answer["problems"])
    assert newest(web) == before
    assert web.observer.changes == []


def test_if_match_guards_against_changes_made_since(web: WebApp) -> None:
    etag = web.client.get(f"{API}/destinations").headers["etag"]
    assert etag == '"1"'
    assert web.client.put(f"{API}/ae-titles", json={"ae_titles": ["OTHER"]}).status_code == 200
    web.observer.changes.clear()
    before = newest(web)

    stale = web.client.put(f"{API}/destinations/pacs", headers={"If-Match": etag}, json=ARCHIVE)
    assert stale.status_code == 412, stale.text
    assert "changed since revision 1 (it is now revision 2)" in stale.json()["detail"]
    assert newest(web) == before and web.observer.changes == []

    malformed = web.client.delete(f"{API}/callers/0", headers={"If-Match": "yesterday"})
    assert malformed.status_code == 400 and "If-Match" in malformed.json()["detail"]
    assert newest(web) == before

    fresh = web.client.put(f"{API}/destinations/pacs", headers={"If-Match": 'W/"2"'}, json=ARCHIVE)
    assert fresh.status_code == 201 and fresh.json()["revision"] == 3
    anything = web.client.delete(f"{API}/destinations/pacs", headers={"If-Match": "*"})
    assert anything.status_code == 200 and anything.json()["revision"] == 4


def test_viewers_read_but_do_not_change(web: WebApp) -> None:
    viewer = web.bearer("viewer")
    assert web.client.get(f"{API}/rules", headers=viewer).status_code == 200
    refused = web.client.put(f"{API}/ae-titles", headers=viewer, json={"ae_titles": ["X"]})
    assert refused.status_code == 403
    assert newest(web)["revision"] == 1


def test_the_openapi_document_describes_the_bodies_and_the_guard(web: WebApp) -> None:
    paths = web.client.get("/api/v1/openapi.json").json()["paths"]
    put = paths[f"{API}/destinations/{{name}}"]["put"]
    schema = put["requestBody"]["content"]["application/json"]["schema"]
    dicom, dicomweb = schema["oneOf"]  # C-STORE and STOW-RS destinations
    assert {"type", "ae_title", "host", "port", "tls"} <= set(dicom["properties"])
    assert {"type", "base_url", "authentication"} <= set(dicomweb["properties"])
    assert "name" not in dicom.get("required", []) + dicomweb.get("required", [])
    assert "$ref" not in str(schema)
    assert any(parameter["name"] == "If-Match" and "412" in parameter["description"] for parameter in put["parameters"])
    assert {"get", "post"} <= set(paths[f"{API}/callers"])
    assert {"put", "delete"} <= set(paths[f"{API}/callers/{{index}}"])
    assert {"get", "put", "delete"} <= set(paths[f"{API}/rules/{{name}}"])
