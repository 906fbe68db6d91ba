"""The HTTP API of a running ``gazex serve`` with real DICOM peers: a study sent with dcmtk
storescu shows up, is analysed, its delivery to a closed port is dead-lettered; C-ECHO over the
API finds the archive down, then up; a retry over the API delivers to the archive."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydicom.dataset import Dataset

from benchmarks._net import wait_for_port
from gateway.accounts import Accounts
from gateway.db import create_database_engine
from gateway.demo.archive import RecordingArchive
from tests.ingest_support import small_cr, start_serve, write_dataset
from tests.integration.pipeline_support import pipeline_config, wait_for

pytestmark = pytest.mark.integration

PASSWORD = "a long test password"  # noqa: S105 - a test account's


def test_a_dead_delivery_is_seen_echoed_and_retried_over_the_api(
    tmp_path: Path, free_port: Callable[[], int], dicom_tool: Callable[[str], Path], chest_cr: Dataset
) -> None:
    storescu = dicom_tool("storescu")
    port, http_port, archive_port = free_port(), free_port(), free_port()
    data = tmp_path / "data"
    chest = small_cr(chest_cr, rows=128, columns=128)
    study = str(chest.StudyInstanceUID)
    config = pipeline_config(
        tmp_path / "gazex.yaml",
        data,
        port,
        archive_port,  # nothing listens there yet
        delivery={"max_attempts": 1},
        http={"enabled": True, "port": http_port},
    )
    serve = start_serve(config, port, tmp_path / "serve.log")
    try:
        wait_for_port(http_port, serve.process)
        engine = create_database_engine(f"sqlite:///{data / 'gazex.db'}", create_directory=False)
        accounts = Accounts(engine)
        accounts.add_user("olga", "operator", PASSWORD)
        token, _ = accounts.create_token("olga", "integration")
        engine.dispose()
        with httpx.Client(
            base_url=f"http://127.0.0.1:{http_port}", headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as api:
            subprocess.run(
                [str(storescu), "-aet", "PACS", "-aec", "GAZEX", "127.0.0.1", str(port),
                 str(write_dataset(chest, tmp_path / "chest.dcm"))],
                check=True, capture_output=True, timeout=60,
            )  # fmt: skip

            def study_state() -> str | None:
                items: list[dict[str, Any]] = api.get("/api/v1/studies", params={"q": study}).json()["items"]
                return items[0]["state"] if items and items[0]["state"] == "delivery_dead" else None

            wait_for(study_state, timeout=60, what="the study's delivery dead-lettered")
            detail = api.get(f"/api/v1/studies/{study}").json()
            assert detail["study"]["calling_ae_titles"] == ["PACS"] and detail["study"]["instances"] == 1
            assert [job["status"] for job in detail["jobs"]] == ["done"]
            assert "No pneumothorax." in detail["report"]
            [dead] = api.get("/api/v1/deliveries", params={"status": "dead"}).json()["items"]
            assert dead["destination"] == "archive" and dead["study_instance_uid"] == study
            assert f"127.0.0.1:{archive_port}" in dead["last_error"]

            down = api.post("/api/v1/destinations/archive/echo").json()
            assert not down["ok"] and down["message"].startswith(f"cannot connect to 127.0.0.1:{archive_port}")
            with RecordingArchive(port=archive_port) as archive:
                up = api.post("/api/v1/destinations/archive/echo").json()
                assert (up["ok"], up["message"], up["calling_ae_title"]) == (True, "success", "GAZEX")
                retried = api.post(f"/api/v1/deliveries/{dead['id']}/retry")
                assert retried.status_code == 200 and retried.json()["status"] in ("pending", "sending", "delivered")

                def delivered() -> dict[str, Any] | None:
                    found: dict[str, Any] = api.get(f"/api/v1/deliveries/{dead['id']}").json()
                    return found if found["delivery"]["status"] == "delivered" else None

                done = wait_for(delivered, timeout=60, what="the retried delivery")
                assert {item["status"] for item in done["items"]} == {"acknowledged"}
                assert sorted(archive.counts().values()) == [1, 1, 1]  # SR, SEG, GSPS, each once
            again = api.post(f"/api/v1/deliveries/{dead['id']}/retry")
            assert again.status_code == 409 and "delivered already" in again.json()["detail"]
            assert api.get(f"/api/v1/studies/{study}").json()["study"]["state"] == "delivered"
        assert serve.terminate() == 0, serve.log()
    finally:
        serve.kill()
    log = serve.log()
    assert "olga made delivery" in log and "olga C-ECHOed destination archive" in log
