"""``gazex --help`` and ``gazex version``."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gateway.cli import main


def test_help_lists_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    assert "version" in capsys.readouterr().out


def test_version_reports_runtimes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    out = capsys.readouterr().out
    for key in ("gazex-gateway", "python", "torch", "cuda", "tensorrt", "onnxruntime"):
        assert any(line.split()[0] == key for line in out.splitlines()), (key, out)


def test_console_script_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "version"], capture_output=True, text=True, timeout=120, check=True
    )
    assert "gazex-gateway" in result.stdout


def test_only_the_named_command_is_imported() -> None:
    code = (
        "import sys; from gateway.cli import build_parser; build_parser(['--log-level', 'DEBUG', 'version']); "
        "print(sorted(m for m in sys.modules if m.startswith('gateway.cli.')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "['gateway.cli.version']"


def test_unknown_command_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["no-such-command"])
    err = capsys.readouterr().err
    for command in ("serve", "worker", "model", "health"):
        assert command in err
