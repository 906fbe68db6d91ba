"""``gazex model phantoms`` and ``gazex model convert``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import main


def test_model_without_a_subcommand_prints_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model"]) == 2
    out = capsys.readouterr().out
    assert "phantoms" in out and "convert" in out


def test_phantoms_then_convert(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "set"
    assert (
        main(
            [
                "model",
                "phantoms",
                "--out",
                str(out),
                "--count",
                "2",
                "--seed",
                "5",
                "--format",
                "reflacx",
                "--image-size",
                "256",
            ]
        )
        == 0
    )
    assert "wrote 2 phantoms" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 5 and len(manifest["phantoms"]) == 2
    assert manifest["report_style"] == "varied"
    assert (out / "reflacx" / "main_data" / "metadata_phase_3.csv").is_file()
    assert not (out / "dicom").exists()

    records = tmp_path / "training" / "records.json"
    assert (
        main(["model", "convert", str(out / "reflacx"), "--out", str(records), "--coordinates", "normalized:1000"]) == 0
    )
    printed = capsys.readouterr().out
    assert "coordinates: normalized:1000" in printed
    loaded = json.loads(records.read_text())
    sentences = sum(len(p["sentences"]) for p in manifest["phantoms"])
    assert len(loaded) == 2 + sentences
    assert all((records.parent / r["images"][0]).is_file() for r in loaded)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--coordinates", "pixels"], "--coordinates"),
        (["--tasks", "train"], "tasks"),
    ],
)
def test_convert_rejects_bad_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    assert main(["model", "convert", str(tmp_path), "--out", str(tmp_path / "r.json"), *arguments]) == 2
    assert message in capsys.readouterr().err


def test_convert_explains_a_folder_that_is_not_reflacx(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "convert", str(tmp_path), "--out", str(tmp_path / "r.json")]) == 2
    assert "no metadata_phase_<phase>.csv" in capsys.readouterr().err


def test_phantoms_refuse_a_folder_in_use_and_bad_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "keep.txt").write_text("precious")
    assert main(["model", "phantoms", "--out", str(tmp_path), "--count", "1"]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    assert main(["model", "phantoms", "--out", str(tmp_path / "new"), "--count", "0"]) == 2
    assert "--count" in capsys.readouterr().err


@pytest.mark.integration
def test_console_script_writes_dicom_phantoms(tmp_path: Path) -> None:
    out = tmp_path / "dicom-set"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "model",
            "phantoms",
            "--out",
            str(out),
            "--count",
            "1",
            "--format",
            "dicom",
            "--only",
            "nodule",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert "nodule: 1" in result.stdout
    (dicom,) = (out / "dicom").glob("*.dcm")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["phantoms"][0]["files"]["dicom"] == str(dicom.relative_to(out))
    assert [f["kind"] for f in manifest["phantoms"][0]["findings"]] == ["nodule"]
