"""``gazex analyze`` with a tiny checkpoint: tables, JSON, and operator errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import main
from inference.testing import make_tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    torch.set_num_threads(1)  # a tiny model on a shared two-core machine
    return make_tiny_checkpoint(tmp_path_factory.mktemp("cli") / "gazex-tiny")


def test_table_output(checkpoint: Path, chest_cr_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", str(chest_cr_path), "--model", str(checkpoint), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Model: gazex-tiny 0.0.1 (GazeX Gateway project), backend torch, weights sha256 ")
    assert "Study 1.3.6.1.4.1.5962.1.2.9.20040826185059.5457: 1 image(s)" in out
    assert "Image 1.3.6.1.4.1.5962.1.1.9.1.1.20040826185059.5457 (1955 rows x 1841 columns)" in out
    assert "Timings: pixels " in out and "Trajectory:" in out


def test_json_output(
    checkpoint: Path, chest_cr_path: Path, chest_cr_j2k_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["analyze", str(chest_cr_path), str(chest_cr_j2k_path), "--model", str(checkpoint), "--json"]
    assert main([*argv, "--device", "cpu"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["model"]["name"] == "gazex-tiny"
    assert len(document["model"]["checkpoint_sha256"]) == 64
    (study,) = document["studies"]  # both files belong to one study
    assert len(study["images"]) == 2
    image = study["images"][0]
    assert (image["rows"], image["columns"]) == (1955, 1841)
    assert set(image["timings"]) == {"pixels", "examine", "attention", "total"}
    assert isinstance(image["findings"], list) and isinstance(image["trajectory"], list)
    for finding in image["findings"]:
        assert set(finding) == {"text", "label", "present", "uncertain", "observation", "clues"}


def test_without_model_and_without_the_bundled_demo(
    chest_cr_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import gateway.cli.analyze

    monkeypatch.setattr(gateway.cli.analyze, "builtin_checkpoints", list)  # a build without bundled checkpoints
    assert main(["analyze", str(chest_cr_path)]) == 2
    err = capsys.readouterr().err
    assert "builtin:gazex-demo is not bundled in this build" in err
    assert "pass --model PATH" in err


def test_without_model_the_bundled_demo_is_used(chest_cr_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", str(chest_cr_path), "--device", "cpu", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["model"]["name"] == "gazex-demo"


@pytest.mark.parametrize(
    ("make_input", "message"),
    [
        (lambda tmp: tmp / "absent.dcm", "no such file"),
        (lambda tmp: (tmp / "notes.txt").write_text("hello") and tmp / "notes.txt", "not a readable DICOM file"),
    ],
)
def test_bad_input_files(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], make_input, message: str
) -> None:
    assert main(["analyze", str(make_input(tmp_path)), "--model", str(checkpoint)]) == 2
    assert message in capsys.readouterr().err


def test_corrupt_checkpoint(
    checkpoint: Path, chest_cr_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(checkpoint, broken)
    (broken / "gazex.json").write_text("{")
    assert main(["analyze", str(chest_cr_path), "--model", str(broken)]) == 2
    err = capsys.readouterr().err
    assert f"gazex: error: cannot load the model {broken}" in err
    assert "gazex.json: not valid JSON" in err


def test_as_a_separate_process(checkpoint: Path, chest_cr_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "analyze", str(chest_cr_path), "--model", str(checkpoint), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["studies"][0]["images"][0]["rows"] == 1955
    assert "PatientName" not in result.stderr
