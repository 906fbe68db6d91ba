"""The ingest commands' operator-facing behaviour: config check/example, db, echo argument errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.cli import COMMAND_MODULES, main
from gateway.db.migrate import head_revision


def test_the_commands_are_registered() -> None:
    assert {"serve", "echo", "config", "db"} <= set(COMMAND_MODULES)


def test_config_example_prints_a_file_that_config_check_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in [key for key in os.environ if key.startswith("GAZEX_") and "__" in key]:
        monkeypatch.delenv(key)
    assert main(["config", "example"]) == 0
    example = capsys.readouterr().out
    assert "reject_unknown_callers: true" in example
    path = tmp_path / "gazex.yaml"
    path.write_text(example, encoding="utf-8")
    assert main(["config", "check", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"{path}: valid" in out and "unknown callers rejected" in out
    monkeypatch.setenv("GAZEX_DICOM__PORT", "104")
    assert main(["config", "check", str(path)]) == 0
    assert "with GAZEX_* overrides of: dicom" in capsys.readouterr().out


def test_config_check_lists_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("dicom:\n  port: 0\n  max_associations: many\nstorage:\n  min_free_disk: lots\n", encoding="utf-8")
    assert main(["config", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gazex: error: invalid configuration")
    assert "dicom.port = 0" in err and "dicom.max_associations = 'many'" in err and "storage.min_free_disk" in err


def test_config_check_loads_the_tls_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate", encoding="utf-8")
    path = tmp_path / "tls.yaml"
    path.write_text(
        f"dicom:\n  tls:\n    enabled: true\n    certificate: {junk}\n    private_key: {junk}\n", encoding="utf-8"
    )
    assert main(["config", "check", str(path)]) == 2
    assert "cannot load the certificate" in capsys.readouterr().err


def test_db_status_and_upgrade(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "gazex.yaml"
    path.write_text(f"storage:\n  data_dir: {tmp_path / 'data'}\n", encoding="utf-8")
    assert main(["db", "status", "--config", str(path)]) == 1
    assert "does not exist yet" in capsys.readouterr().out
    assert not (tmp_path / "data" / "gazex.db").exists()  # status creates nothing
    assert main(["db", "upgrade", "--config", str(path)]) == 0
    head = head_revision()
    assert f"upgraded from an empty database to revision {head}" in capsys.readouterr().out
    assert main(["db", "upgrade", "--config", str(path)]) == 0
    assert f"already at revision {head}" in capsys.readouterr().out
    assert main(["db", "status", "--config", str(path)]) == 0
    assert "up to date" in capsys.readouterr().out


def test_echo_refuses_inconsistent_tls_options(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["echo", "127.0.0.1", "104", "PACS", "--tls-ca", "ca.pem"]) == 2
    assert "need --tls" in capsys.readouterr().err
    assert main(["echo", "127.0.0.1", "104", "PACS", "--tls", "--tls-cert", "c.pem"]) == 2
    assert "--tls-cert and --tls-key go together" in capsys.readouterr().err
    assert main(["echo", "127.0.0.1", "104", "PACS", "--tls", "--tls-ca", str(tmp_path / "missing.pem")]) == 2
    assert "cannot load the CA certificates" in capsys.readouterr().err
