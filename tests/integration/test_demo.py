"""``gazex demo``, the README's main-job command, end to end as an operator runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import require_tool
from tests.ingest_support import run_gazex

# slow: it makes a tiny checkpoint (when the demo model is not bundled), loads torch and runs the
# model: about 20 s on the project's 2 cores; it is the product's main command, so it runs whole
pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_gazex_demo_delivers_valid_results_and_writes_the_overlay(tmp_path: Path) -> None:
    require_tool("storescu")
    require_tool("dciodvfy")
    out = tmp_path / "demo"
    run = run_gazex("demo", "--out", str(out), timeout=900)
    assert run.returncode == 0, run.stdout + run.stderr
    printed = run.stdout
    assert "SYNTHETIC phantom (not a patient)" in printed
    assert "sent phantom-2024-000000.dcm with dcmtk storescu" in printed
    assert "dciodvfy: 0 error(s) in 3 file(s)" in printed
    assert "demo passed: results delivered, re-read and valid" in printed
    if "builtin:gazex-demo is not bundled" in printed:
        assert "a random model produces no meaningful findings" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["validation"]["ok"] is True
    assert sorted(o["sop_class"] for o in summary["outputs"]) == [
        "Comprehensive 3D SR Storage",
        "Grayscale Softcopy Presentation State Storage",
        "Segmentation Storage",
    ]
    assert summary["ground_truth"][0]["label"] == "nodule"
    with Image.open(out / "overlay.png") as overlay:
        assert overlay.format == "PNG" and max(overlay.size) == 1024
