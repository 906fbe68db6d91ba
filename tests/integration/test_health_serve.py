"""``gazex health`` against a real ``gazex serve``: healthy while it runs, not once it stopped."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.ingest_support import run_gazex, serve_config, start_serve, write_config

pytestmark = pytest.mark.integration


def _health(config: Path) -> subprocess.CompletedProcess[str]:
    return run_gazex("health", "--config", str(config))


def test_health_follows_the_running_node(tmp_path: Path, free_port: Callable[[], int]) -> None:
    port = free_port()
    config = write_config(tmp_path / "gazex.yaml", serve_config(tmp_path / "data", port))
    serve = start_serve(config, port, tmp_path / "serve.log")
    try:
        healthy = _health(config)
        assert healthy.returncode == 0, healthy.stdout + healthy.stderr
        assert [line.split()[:2] for line in healthy.stdout.splitlines()] == [
            ["ok", "database"],
            ["ok", "spool"],
            ["ok", "outbox"],
            ["ok", "listener"],
        ]
    finally:
        assert serve.terminate() == 0
    # the probe connections left no trace in the node's log
    assert "accepted the association" not in serve.log()
    stopped = _health(config)
    assert stopped.returncode == 1
    assert stopped.stdout.splitlines()[-1].startswith("FAIL  listener")
