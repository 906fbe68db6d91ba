"""The read API and the operators' actions over HTTP (FastAPI TestClient), with real accounts and
a database the real pipeline filled."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydicom.dataset import Dataset

from gateway.accounts import Accounts
from gateway.config import Settings
from gateway.operations import queries
from gateway.web import ApiContext, create_app, route_roles
from tests.gateway.operations.conftest import World, built_world, settle, small_chest
from tests.gateway.pipeline.support import make_image

PASSWORD = "a long test password"  # noqa: S105 - a test account's

READS = [
    ("GET", "/api/v1/studies"),
    ("GET", "/api/v1/studies/{study_instance_uid}"),
    ("GET", "/api/v1/jobs"),
    ("GET", "/api/v1/jobs/{job_id}"),
    ("GET", "/api/v1/deliveries"),
    ("GET", "/api/v1/deliveries/{delivery_id}"),
    ("GET", "/api/v1/dashboard"),
    ("POST", "/api/v1/rules/test"),
]
ACTIONS = [
    ("POST", "/api/v1/destinations/{name}/echo"),
    ("POST", "/api/v1/deliveries/{delivery_id}/retry"),
    ("POST", "/api/v1/studies/{study_instance_uid}/reprocess"),
    ("POST", "/api/v1/jobs/{job_id}/cancel"),
]


@dataclass
class Api:
    world: World
    client: TestClient
    accounts: Accounts

    def bearer(self, role: str) -> dict[str, str]:
        name = f"{role}{len(self.accounts.users())}"
        self.accounts.add_user(name, role, PASSWORD)
        secret, _ = self.accounts.create_token(name, "tests")
        return {"Authorization": f"Bearer {secret}"}


def client_for(settings: Settings, world: World) -> TestClient:
    return TestClient(
        create_app(ApiContext(settings=settings, engine=world.harness.engine)), base_url="http://127.0.0.1"
    )


@pytest.fixture(scope="session")
def template(chest_cr_path: Path) -> Dataset:
    return small_chest(chest_cr_path)


@pytest.fixture
def world(tmp_path: Path, template: Dataset) -> Iterator[World]:
    with built_world(tmp_path, template) as made:
        yield made


@pytest.fixture
def api(world: World) -> Iterator[Api]:
    client = client_for(world.harness.settings, world)
    with client:
        yield Api(world, client, Accounts(world.harness.engine))


def filled(path: str, api: Api) -> str:
    return path.format(
        study_instance_uid=api.world.chest,
        job_id=api.world.chest_job,
        delivery_id=api.world.backup_delivery,
        name="archive",
    )


def test_every_route_declares_its_role_and_refuses_the_anonymous_and_the_too_weak(api: Api) -> None:
    roles = route_roles(api.client.app)  # type: ignore[arg-type]
    assert {route: roles[route] for route in READS} == dict.fromkeys(READS, "viewer")
    assert {route: roles[route] for route in ACTIONS} == dict.fromkeys(ACTIONS, "operator")
    viewer = api.bearer("viewer")
    for method, path in READS + ACTIONS:
        answer = api.client.request(method, filled(path, api), json={"study_instance_uid": api.world.chest})
        assert answer.status_code == 401, (method, path)
    for method, path in ACTIONS:
        answer = api.client.request(method, filled(path, api), headers=viewer)
        assert answer.status_code == 403 and "needs the operator role" in answer.json()["detail"], path
    assert queries.delivery(api.world.harness.engine, api.world.backup_delivery).status == "dead"
    assert queries.list_jobs(api.world.harness.engine).total == 1


def test_studies_are_listed_in_pages_with_filters(api: Api) -> None:
    viewer = api.bearer("viewer")
    body = api.client.get("/api/v1/studies", headers=viewer).json()
    assert (body["total"], body["page"], body["page_size"]) == (3, 1, 50)
    assert [s["state"] for s in body["items"]] == ["receiving", "not_routed", "delivery_dead"]
    chest = body["items"][2]
    assert chest["study_instance_uid"] == api.world.chest and chest["state_label"] == "delivery dead"
    assert chest["modalities"] == ["CR"] and chest["instances"] == 2 and chest["job_id"] == api.world.chest_job
    page = api.client.get("/api/v1/studies", params={"page": 2, "page_size": 2}, headers=viewer).json()
    assert (page["total"], [s["study_instance_uid"] for s in page["items"]]) == (3, [api.world.chest])
    only = api.client.get("/api/v1/studies", params={"state": "not_routed", "modality": "CT"}, headers=viewer).json()
    assert [s["study_instance_uid"] for s in only["items"]] == [api.world.head]
    found = api.client.get("/api/v1/studies", params={"q": "acc1234"}, headers=viewer).json()
    assert [s["study_instance_uid"] for s in found["items"]] == [api.world.chest]
    since = chest["last_received_at"]
    newer = api.client.get("/api/v1/studies", params={"received_since": since}, headers=viewer).json()
    assert newer["total"] == 3
    older = api.client.get("/api/v1/studies", params={"received_until": since}, headers=viewer).json()
    assert [s["study_instance_uid"] for s in older["items"]] == [api.world.chest]


@pytest.mark.parametrize(
    ("path", "params", "message"),
    [
        ("/api/v1/studies", {"page_size": 501}, "query.page_size: Input should be less than or equal to 500"),
        ("/api/v1/studies", {"page": 0}, "query.page: Input should be greater than or equal to 1"),
        ("/api/v1/studies", {"state": "lost"}, "state 'lost' is not known; choose from receiving"),
        ("/api/v1/studies", {"received_since": "yesterday"}, "query.received_since: Input should be a valid datetime"),
        ("/api/v1/jobs", {"status": "lost"}, "query.status: Input should be 'queued', 'running'"),
        ("/api/v1/deliveries", {"status": "lost"}, "query.status: Input should be 'pending', 'sending'"),
        ("/api/v1/jobs/abc", {}, "path.job_id: Input should be a valid integer"),
    ],
)
def test_bad_query_parameters_get_422_with_a_message(api: Api, path: str, params: dict[str, Any], message: str) -> None:
    answer = api.client.get(path, params=params, headers=api.bearer("viewer"))
    assert answer.status_code == 422 and message in answer.json()["detail"]


def test_a_study_job_and_delivery_in_detail_and_unknown_ids_are_404(api: Api) -> None:
    viewer = api.bearer("viewer")
    study = api.client.get(f"/api/v1/studies/{api.world.chest}", headers=viewer).json()
    assert study["study"]["state"] == "delivery_dead" and "No pneumothorax." in study["report"]
    assert [e["event"] for e in study["timeline"]][:2] == ["received", "complete"]
    assert sorted(d["status"] for d in study["deliveries"]) == ["dead", "delivered"]
    job = api.client.get(f"/api/v1/jobs/{api.world.chest_job}", headers=viewer).json()
    assert job["job"]["status"] == "done" and len(job["outputs"]) == 5 and len(job["instances"]) == 2
    delivery = api.client.get(f"/api/v1/deliveries/{api.world.backup_delivery}", headers=viewer).json()
    assert delivery["delivery"]["status"] == "dead" and len(delivery["items"]) == 5
    dead = api.client.get("/api/v1/deliveries", params={"status": "dead"}, headers=viewer).json()
    assert [d["id"] for d in dead["items"]] == [api.world.backup_delivery]
    jobs = api.client.get("/api/v1/jobs", params={"status": "done"}, headers=viewer).json()
    assert jobs["total"] == 1 and jobs["items"][0]["outputs"] == ["sr", "seg", "gsps"]
    for path in ("/api/v1/studies/1.2.3", "/api/v1/jobs/999", "/api/v1/deliveries/999"):
        answer = api.client.get(path, headers=viewer)
        assert answer.status_code == 404 and answer.json()["detail"].startswith(("no study", "there is no"))


def test_the_dashboard(api: Api) -> None:
    board = api.client.get("/api/v1/dashboard", headers=api.bearer("viewer")).json()
    assert board["studies_by_state"] == {"receiving": 1, "not_routed": 1, "delivery_dead": 1}
    assert board["deliveries_by_status"] == {"delivered": 1, "dead": 1}
    assert board["queue"]["jobs_queued"] == 0 and [d["name"] for d in board["disks"]] == ["spool", "outbox"]


def test_an_operator_retries_a_dead_delivery_and_the_log_says_who(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    operator = api.bearer("operator")
    path = f"/api/v1/deliveries/{api.world.backup_delivery}/retry"
    with caplog.at_level(logging.INFO, logger="gateway.operations"):
        answer = api.client.post(path, headers=operator)
    assert answer.status_code == 200 and (answer.json()["status"], answer.json()["attempts"]) == ("pending", 0)
    assert f"operator0 made delivery {api.world.backup_delivery} to backup due again" in caplog.text
    delivered = api.client.post(f"/api/v1/deliveries/{api.world.archive_delivery}/retry", headers=operator)
    assert delivered.status_code == 409 and "delivered already" in delivered.json()["detail"]
    assert api.client.post("/api/v1/deliveries/999/retry", headers=operator).status_code == 404


def test_a_console_session_needs_its_csrf_token_for_an_action(api: Api) -> None:
    api.accounts.add_user("olga", "operator", PASSWORD)
    login = api.client.post("/api/v1/auth/login", json={"username": "olga", "password": PASSWORD})
    assert login.status_code == 200
    path = f"/api/v1/deliveries/{api.world.backup_delivery}/retry"
    refused = api.client.post(path)
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    assert queries.delivery(api.world.harness.engine, api.world.backup_delivery).status == "dead"
    accepted = api.client.post(path, headers={"X-CSRF-Token": login.json()["csrf_token"]})
    assert accepted.status_code == 200 and accepted.json()["status"] == "pending"


def test_reprocess_then_cancel_a_queued_job(api: Api) -> None:
    operator = api.bearer("operator")
    queued = api.client.post(f"/api/v1/studies/{api.world.chest}/reprocess", headers=operator)
    assert queued.status_code == 202 and queued.json()["reason"].startswith("routed by rule chest-radiograph")
    job_id = queued.json()["job_id"]
    cancelled = api.client.post(f"/api/v1/jobs/{job_id}/cancel", headers=operator)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["last_error"] == "cancelled by operator0"
    settle(api.world.harness, rounds=1)
    assert queries.job(api.world.harness.engine, job_id).status == "cancelled"
    again = api.client.post(f"/api/v1/jobs/{job_id}/cancel", headers=operator)
    assert again.status_code == 409 and "only a queued job can be cancelled" in again.json()["detail"]
    assert api.client.post("/api/v1/jobs/999/cancel", headers=operator).status_code == 404
    unroutable = api.client.post(f"/api/v1/studies/{api.world.head}/reprocess", headers=operator)
    assert unroutable.status_code == 409 and "not routed" in unroutable.json()["detail"]
    assert api.client.post("/api/v1/studies/1.2.3/reprocess", headers=operator).status_code == 404


def test_echo_answers_the_outcome_and_an_unknown_destination_is_404(api: Api) -> None:
    operator = api.bearer("operator")
    answer = api.client.post("/api/v1/destinations/archive/echo", headers=operator).json()
    assert answer["destination"] == "archive" and answer["port"] == 104 and isinstance(answer["ok"], bool)
    missing = api.client.post("/api/v1/destinations/nowhere/echo", headers=operator)
    assert missing.status_code == 404 and "configured: archive, backup" in missing.json()["detail"]


def dicom_bytes(dataset: Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_the_rules_are_tested_on_a_study_or_an_upload(api: Api, template: Dataset) -> None:
    viewer = api.bearer("viewer")
    study = api.client.post("/api/v1/rules/test", json={"study_instance_uid": api.world.chest}, headers=viewer)
    assert study.status_code == 200 and study.json()["rule"] == "chest-radiograph" and study.json()["instances"] == 2
    head = dicom_bytes(make_image(template, Modality="CT", BodyPartExamined="HEAD"))
    upload = api.client.post(
        "/api/v1/rules/test",
        files={"file": ("head.dcm", head, "application/dicom")},
        data={"calling_ae": "CTSCANNER"},
        headers=viewer,
    )
    assert upload.status_code == 200, upload.text
    assert (upload.json()["source"], upload.json()["routed"]) == ("file", False)
    assert "    ✗ modality 'CT' is not one of [CR, DX]" in upload.json()["explanation"]
    chest = dicom_bytes(make_image(template, ViewPosition="PA"))
    routed = api.client.post("/api/v1/rules/test", files={"file": ("c.dcm", chest)}, headers=viewer).json()
    assert routed["routed"] and routed["destinations"] == ["archive", "backup"]


@pytest.mark.parametrize(
    ("request_args", "status", "message"),
    [
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 422, "the body is not valid JSON"),
        ({"json": {"study_instance_uid": "1.2", "rule": "x"}}, 422, "body.rule: Extra inputs are not permitted"),
        ({"json": {}}, 422, "body.study_instance_uid: Field required"),
        ({"json": {"study_instance_uid": "9.9.9"}}, 404, "no study 9.9.9 was received"),
        ({"files": {"file": ("x.dcm", b"this is not DICOM")}}, 422, "the upload is not a DICOM file"),
        ({"files": {"other": ("x.dcm", b"DICM")}}, 422, "unknown form field(s): other"),
        ({"data": {"calling_ae": "X"}, "files": {"file": ("x.dcm", b"x")}}, 422, "not a DICOM file"),
        ({"content": b"study", "headers": {"content-type": "text/plain"}}, 415, "send JSON"),
    ],
)
def test_bad_rules_test_requests_get_a_4xx_with_a_message(
    api: Api, request_args: dict[str, Any], status: int, message: str
) -> None:
    headers = {**api.bearer("viewer"), **request_args.pop("headers", {})}
    answer = api.client.post("/api/v1/rules/test", headers=headers, **request_args)
    assert answer.status_code == status and message in answer.json()["detail"], answer.text


def test_an_oversized_upload_is_refused_with_413(world: World, template: Dataset) -> None:
    settings = world.harness.settings
    small = settings.model_copy(update={"http": settings.http.model_copy(update={"max_upload_bytes": 4096})})
    with client_for(small, world) as client:
        accounts = Accounts(world.harness.engine)
        accounts.add_user("vera", "viewer", PASSWORD)
        secret, _ = accounts.create_token("vera", "tests")
        answer = client.post(
            "/api/v1/rules/test",
            files={"file": ("big.dcm", dicom_bytes(make_image(template)))},
            headers={"Authorization": f"Bearer {secret}"},
        )
    assert answer.status_code == 413 and "larger than 4096 bytes" in answer.json()["detail"]
