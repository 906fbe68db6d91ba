"""``gazex serve`` as a process with the bundled demo model: refused unless model.allow_demo is set."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from benchmarks._net import port_listens
from tests.ingest_support import clean_environment, run_gazex, serve_config, start_serve, write_config

pytestmark = pytest.mark.integration


def test_serve_refuses_the_demo_model_without_the_switch_and_runs_it_with_the_switch(
    tmp_path: Path, free_port: Callable[[], int]
) -> None:
    port = free_port()
    values = serve_config(tmp_path / "data", port)
    del values["model"]  # the defaults: model.path is builtin:gazex-demo, allow_demo false
    config = write_config(tmp_path / "gazex.yaml", values)
    refused = run_gazex("serve", "--config", str(config))
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "model.path 'builtin:gazex-demo' is a demo model" in refused.stderr
    assert "GAZEX_MODEL__ALLOW_DEMO=true" in refused.stderr
    assert not port_listens(port)  # it never listened
    assert not (tmp_path / "data").exists()
    serve = start_serve(
        config, port, tmp_path / "serve.log", env={**clean_environment(), "GAZEX_MODEL__ALLOW_DEMO": "true"}
    )
    try:
        assert serve.process.poll() is None
    finally:
        assert serve.terminate() == 0
