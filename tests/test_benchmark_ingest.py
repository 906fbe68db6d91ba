"""The ingest benchmark in a tiny mode, so it cannot rot (the real run is not a test)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from benchmarks.ingest import parse_storescu_log
from tests.conftest import missing_prerequisite, require_tool
from tests.viewer_support import dicomweb_plugin

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_parse_storescu_log() -> None:
    log = (
        "2026-01-05 08:00:00.100 Sending Store Request (MsgID 1, CR)\n"
        "XMIT: ....\n"
        "2026-01-05 08:00:00.150 Received Store Response (Success)\n"
        "2026-01-05 08:00:00.150 Sending Store Request (MsgID 2, CR)\n"
        "2026-01-05 08:00:00.400 Received Store Response (Out of Resources)\n"
    )
    successes, latencies = parse_storescu_log(log)
    assert successes == 1
    assert latencies == [pytest.approx(50.0)]


def test_the_benchmark_runs_in_a_tiny_mode(dicom_tool: Callable[[str], Path], tmp_path: Path) -> None:
    dicom_tool("storescu")
    dicom_tool("storescp")
    result = subprocess.run(
        [sys.executable, "benchmarks/ingest.py", "--count", "2", "--peers", "storescp", "--associations", "1",
         "--scratch", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    table = result.stdout
    assert "| gazex serve         | C-STORE  | 1            | 2/2" in table
    assert "| dcmtk storescp      | C-STORE  | 1            | 2/2" in table
    assert "| gazex serve STOW-RS | STOW-RS  | 1            | 2/2" in table
    assert "gazex / storescp =" in table and "gazex peak RSS" in table
    assert list(tmp_path.iterdir()) == []  # the scratch data is removed


def test_the_stow_rs_rows_are_measured_beside_orthancs_own_stow_rs(tmp_path: Path) -> None:
    require_tool("Orthanc")
    if dicomweb_plugin() is None:
        missing_prerequisite("Orthanc's DICOMweb plugin is not installed (apt-get install -y orthanc-dicomweb)")
    result = subprocess.run(
        [sys.executable, "benchmarks/ingest.py", "--count", "2", "--peers", "orthanc", "--associations", "1",
         "--protocols", "stow-rs", "--scratch", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    table = result.stdout
    assert "| gazex serve STOW-RS | STOW-RS  | 1            | 2/2" in table
    assert "| Orthanc STOW-RS     | STOW-RS  | 1            | 2/2" in table
    assert "1 client(s), STOW-RS: gazex / Orthanc =" in table
    assert "C-STORE" not in table.split("\n\n", 1)[1]  # only the protocol asked for
    assert list(tmp_path.iterdir()) == []
