"""``$GAZEX_CONFIG`` names the configuration file when ``--config`` is not given."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import main


def _config(path: Path, data_dir: Path) -> Path:
    path.write_text(f"storage:\n  data_dir: {data_dir}\n", encoding="utf-8")
    return path


def test_gazex_config_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from_env = _config(tmp_path / "env.yaml", tmp_path / "env-data")
    from_flag = _config(tmp_path / "flag.yaml", tmp_path / "flag-data")
    monkeypatch.setenv("GAZEX_CONFIG", str(from_env))
    assert main(["db", "upgrade"]) == 0
    assert str(tmp_path / "env-data" / "gazex.db") in capsys.readouterr().out
    assert main(["db", "upgrade", "--config", str(from_flag)]) == 0  # the flag wins
    assert str(tmp_path / "flag-data" / "gazex.db") in capsys.readouterr().out


def test_empty_gazex_config_means_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GAZEX_CONFIG", "")
    assert main(["db", "status"]) == 1
    assert "sqlite:///var/gazex.db" in capsys.readouterr().out


def test_a_missing_gazex_config_file_is_an_operator_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GAZEX_CONFIG", str(tmp_path / "nowhere.yaml"))
    assert main(["health"]) == 2
    assert "nowhere.yaml" in capsys.readouterr().err
