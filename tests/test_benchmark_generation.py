"""benchmarks/generation.py runs end to end in a tiny mode (the figures are for the closing note)."""

from __future__ import annotations

import pytest

from benchmarks.generation import main


def test_tiny_checkpoint_run(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--sentences", "1,3", "--tokens-per-sentence", "2", "--attention-tokens", "3", "--repeats", "1"]
    assert main([*argv, "--threads", "1", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "| sentences | new tokens / image | naive: HF generate per prompt (s / image)" in out
    lines = [line for line in out.splitlines() if line.startswith("| 1 ") or line.startswith("| 3 ")]
    assert len(lines) == 2
    assert lines[1].rstrip().endswith("| 4/4                      |")


def test_qwen2_vl_2b_shape_with_one_layer_in_bfloat16(capsys: pytest.CaptureFixture[str]) -> None:
    """The 2B-shaped path (hidden 1536, 12 heads, 2 KV heads, vision embed 1280), cut to one layer."""
    argv = ["--shape", "qwen2-vl-2b", "--layers", "1", "--vision-depth", "1", "--vocab", "1024"]
    argv += ["--max-pixels", "3136", "--sentences", "2", "--tokens-per-sentence", "2", "--attention-tokens", "2"]
    argv += ["--repeats", "1", "--check-tokens", "2", "--device", "cpu", "--dtype", "bfloat16", "--threads", "1"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "decoder 1 x 1536, vision 1 x 1280, vocabulary 1024" in out
    assert "cpu torch.bfloat16" in out
    assert "float32 check on the same weights (2 sentences, 2 tokens per answer): 3/3 greedy outputs identical" in out
