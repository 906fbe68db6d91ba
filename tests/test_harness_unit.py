"""Unit tests of the harness's skip-or-fail rule (no external tools needed)."""

from __future__ import annotations

import _pytest.outcomes
import pytest

from tests.conftest import find_tool, require_tool


def test_missing_tool_skips_without_ci_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GAZEX_REQUIRE_INTEGRATION", raising=False)
    with pytest.raises(_pytest.outcomes.Skipped, match="apt-get install"):
        require_tool("no-such-dicom-tool-xyz")


def test_missing_tool_fails_under_ci_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GAZEX_REQUIRE_INTEGRATION", "1")
    with pytest.raises(_pytest.outcomes.Failed, match="GAZEX_REQUIRE_INTEGRATION=1"):
        require_tool("no-such-dicom-tool-xyz")


def test_find_tool_finds_a_program_on_path() -> None:
    assert find_tool("sh") is not None
    assert find_tool("no-such-dicom-tool-xyz") is None
