"""benchmarks/decode_step.py runs end to end in a tiny mode (the GPU run's figures are for the closing note)."""

from __future__ import annotations

import pytest

from benchmarks.decode_step import main


def test_tiny_checkpoint_run(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--batches", "1,3", "--steps", "3", "--repeats", "1", "--threads", "1", "--device", "cpu", "--profile"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "| ms per decoding step            | batch 1 | batch 3 |" in out
    rows = [line for line in out.splitlines() if line.startswith("| before") or line.startswith("| ours")]
    assert [row.split("|")[1].strip() for row in rows] == ["before: 2-D mask, growing cache", "ours, eager"]
    assert all("failed" not in row for row in rows)
    assert "torch.profiler, 4 steps of the earlier loop at batch 3, by self_cpu_time_total:" in out
    assert "aten::mm" in out
