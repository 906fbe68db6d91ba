"""The pre-admission benchmark in a tiny mode, so it cannot rot (the real run is not a test)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_the_benchmark_runs_in_a_tiny_mode(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "benchmarks/pre_admission.py", "--connections", "3", "--max-wait", "15",
         "--attacks", "declared-16MiB", "garbage", "--scratch", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line.split("|") for line in result.stdout.splitlines() if line.startswith("| this")]
    assert [(row[2].strip(), row[3].strip(), row[8].strip()) for row in rows] == [
        ("declared-16MiB", "3", "3"),  # all three closed
        ("garbage", "1", "1"),
    ]
    assert int(rows[1][10]) <= 2  # one line for the oversized PDU, however much garbage follows
