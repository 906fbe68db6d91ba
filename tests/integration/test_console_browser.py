"""The web console in a real browser: Debian's chromium, driven by puppeteer-core, against ``gazex serve``.

``gazex serve`` (FakeEngine, HTTP on a free loopback port) receives a chest CR from dcmtk
storescu and delivers its results to an archive (pynetdicom, loopback) and to a destination
where nothing listens, whose delivery goes dead.  An admin made with ``gazex users add
--password-stdin`` then, in chromium (``tools/viewer/console-check.mjs``): logs in, opens the
delivered study and sees its thumbnail (the image with our boxes, drawn from the delivered SR),
adds a destination on the configuration page and presses its C-ECHO button, and retries the
dead delivery once its peer has been started.  Screenshots go to ``var/console-screenshots/``;
the study page's is copied to ``docs/images/console-study.png`` for docs/console.md.  Install:
``scripts/install-system-deps.sh`` (chromium, node, dcmtk) and ``scripts/install-viewer.sh``
(puppeteer-core).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydicom
import pytest
import yaml
from pydicom.dataset import Dataset

from benchmarks._net import wait_for_port
from gateway.demo.archive import RecordingArchive
from tests.conftest import missing_prerequisite
from tests.ingest_support import REPO_ROOT, clean_environment, small_cr, start_serve, write_config, write_dataset
from tests.integration.pipeline_support import pipeline_config, query, wait_for
from tests.viewer_support import PUPPETEER, VIEWER_TOOLS

pytestmark = pytest.mark.integration

SCRIPT = VIEWER_TOOLS / "console-check.mjs"
SCREENSHOTS = REPO_ROOT / "var" / "console-screenshots"
README_IMAGE = REPO_ROOT / "docs" / "images" / "console-study.png"
ADMIN, PASSWORD = "it-admin", "console test password"


def _add_admin(config: Path) -> None:
    command = ["users", "add", ADMIN, "--role", "admin", "--password-stdin", "--config", str(config)]
    run = subprocess.run(
        [sys.executable, "-m", "gateway.cli", *command],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_environment(),
        cwd=REPO_ROOT,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def _step(result: dict[str, Any], name: str) -> dict[str, Any]:
    [found] = [step for step in result["steps"] if step["name"] == name]
    assert found["ok"], found
    value: dict[str, Any] = found["value"]
    return value


def test_it_logs_in_sees_the_thumbnail_adds_a_destination_echoes_it_and_retries_a_dead_delivery(
    tmp_path: Path, free_port: Callable[[], int], dicom_tool: Callable[[str], Path], chest_cr: Dataset
) -> None:
    storescu, node, chromium = dicom_tool("storescu"), dicom_tool("node"), dicom_tool("chromium")
    if not PUPPETEER.is_file():
        missing_prerequisite("puppeteer-core is not installed; run scripts/install-viewer.sh (make tools)")
    port, http_port, archive_port, dead_port, second_port = (free_port() for _ in range(5))
    data = tmp_path / "data"
    url = f"sqlite:///{data / 'gazex.db'}"
    config = pipeline_config(
        tmp_path / "gazex.yaml",
        data,
        port,
        archive_port,
        http={"enabled": True, "host": "127.0.0.1", "port": http_port},
        delivery={"max_attempts": 2, "base_delay_seconds": 0.2, "max_delay_seconds": 0.5},
    )
    values = yaml.safe_load(config.read_text())
    values["destinations"]["offline"] = {"ae_title": "OFFLINE", "host": "127.0.0.1", "port": dead_port}
    write_config(config, values)
    _add_admin(config)
    chest = write_dataset(small_cr(chest_cr, rows=384, columns=384), tmp_path / "chest.dcm")
    study_uid = str(pydicom.dcmread(chest).StudyInstanceUID)
    out = tmp_path / "browser"
    with RecordingArchive(archive_port) as archive:
        serve = start_serve(config, port, tmp_path / "serve.log")
        try:
            wait_for_port(http_port, serve.process)
            subprocess.run(
                [str(storescu), "-aet", "PACS", "-aec", "GAZEX", "127.0.0.1", str(port), str(chest)],
                check=True,
                capture_output=True,
                timeout=60,
            )
            wait_for(
                lambda: query(url, "SELECT id FROM deliveries WHERE destination = 'archive' AND status = 'delivered'"),
                what="the delivery to the archive",
            )
            [dead] = wait_for(
                lambda: query(url, "SELECT id FROM deliveries WHERE destination = 'offline' AND status = 'dead'"),
                what="the dead letter of the offline destination",
            )
            plan = {
                "url": f"http://127.0.0.1:{http_port}",
                "chromium": str(chromium),
                "out": str(out),
                "timeout_ms": 30000,
                "username": ADMIN,
                "password": PASSWORD,
                "study": study_uid,
                "destination": {"name": "second", "ae_title": "SECOND", "host": "127.0.0.1", "port": second_port},
                "dead_delivery": dead.id,
            }
            (tmp_path / "plan.json").write_text(json.dumps(plan))
            # the offline destination's peer comes up; the browser retries its dead delivery; the second
            # destination (added in the browser) answers C-ECHO
            with (
                RecordingArchive(dead_port, ae_title="OFFLINE") as offline,
                RecordingArchive(second_port, ae_title="SECOND"),
            ):
                run = subprocess.run(
                    [str(node), str(SCRIPT), str(tmp_path / "plan.json")],
                    capture_output=True,
                    text=True,
                    timeout=300,
                    cwd=VIEWER_TOOLS,
                    check=False,
                )
                offline_counts = offline.counts()
            archive_counts = archive.counts()
            assert serve.terminate() == 0, serve.log()
        finally:
            serve.kill()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for shot in out.glob("*.png"):
        shutil.copy2(shot, SCREENSHOTS / shot.name)
    print(f"console screenshots: {SCREENSHOTS}")
    result_file = out / "result.json"
    assert result_file.is_file(), run.stdout + run.stderr
    result = json.loads(result_file.read_text())
    assert run.returncode == 0, json.dumps(result, indent=1) + run.stderr[-3000:]

    login = _step(result, "login")
    assert login["redirected"] == "/login" and login["landed"] == f"/studies/{study_uid}"
    study = _step(result, "study")
    [image] = study["images"]
    assert image["width"] > 0 and image["height"] > 0, image
    assert max(image["width"], image["height"]) == 384  # the thumbnail of a 384-pixel image, unscaled
    assert study["report"] and "analysed" in study["timeline"] and "delivered" in study["timeline"]
    added = _step(result, "add-destination")
    assert "second" in added["rows"], added
    echo = _step(result, "echo")
    assert any("C-ECHO second" in f["text"] and "success" in f["text"] for f in echo["flashes"]), echo
    retry = _step(result, "retry")
    assert retry["status"] == "delivered", retry
    assert len(offline_counts) == 3 and set(offline_counts.values()) == {1}  # SR, SEG, GSPS, each once
    assert len(archive_counts) == 3 and set(archive_counts.values()) == {1}
    assert not result["console"], result["console"]  # no console error, page error or failed request
    README_IMAGE.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(out / "study.png", README_IMAGE)
