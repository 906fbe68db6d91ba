"""benchmarks/engines.py runs every backend side by side in a tiny mode (the figures are for the closing note)."""

from __future__ import annotations

import pytest

from benchmarks.engines import main


def test_tiny_run_of_every_backend(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("tritonclient.http")
    argv = ["--sentences", "2", "--tokens-per-sentence", "2", "--attention-tokens", "3", "--repeats", "1"]
    assert main([*argv, "--threads", "1", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ")}
    assert rows["hf-generate"].count("(reference)") == 1
    for name in ("torch", "onnx", "triton"):
        assert "| 3/3 " in rows[name], rows[name]
    assert "tensorrt" in rows
