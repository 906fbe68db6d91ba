"""The pipeline benchmark in a tiny mode, so it cannot rot (the real run is not a test)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# slow: three PostgreSQL databases and three gazex worker processes, about 25 s on 2 cores
pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_the_benchmark_runs_in_a_tiny_mode(postgres_url: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.pipeline", "--studies", "3", "--rows", "64", "--scratch", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={"GAZEX_TEST_POSTGRES_URL": postgres_url, "PATH": "/usr/bin:/bin:/usr/local/bin"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    table = result.stdout
    assert "| floor: encode + 1 association, no queue, no fsync" in table
    assert "| gazex worker x2, all studies queued at once" in table
    assert "gateway overhead p50 = gazex p50 - floor p50 =" in table
    assert "2 workers / 1 worker =" in table
    assert list(tmp_path.iterdir()) == []  # the scratch data is removed
