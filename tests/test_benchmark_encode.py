"""The encode benchmark runs (tiny mode), so it cannot rot; it asserts no timings."""

from __future__ import annotations

import pytest

from benchmarks.encode import main


def test_encode_benchmark_runs_in_tiny_mode(capsys: pytest.CaptureFixture[str]) -> None:
    text = main(["--tiny"])
    assert text == capsys.readouterr().out.strip()
    lines = text.splitlines()
    assert lines[0].startswith("| image")
    rows = [line for line in lines if line.startswith("| synthetic 64x64")]
    assert len(rows) == 4
    assert any("gazex encode SR+SEG+GSPS" in row for row in rows)
    assert any("peer: pydicom writes the source image" in row for row in rows)
