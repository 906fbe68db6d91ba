"""``gazex model train`` and ``gazex model eval`` end to end on tiny phantoms (a random-ish tiny model)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import main

SMALL_ROWS = [
    "--count",
    "2",
    "--seed",
    "4",
    "--format",
    "reflacx",
    "--image-size",
    "128",
    "--report-style",
    "structured",
]


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli-train")
    assert main(["model", "phantoms", "--out", str(root / "phantoms"), *SMALL_ROWS]) == 0
    path = root / "records.json"
    arguments = ["--coordinates", "normalized:100", "--examine-prompt", "Describe this chest X-ray."]
    assert (
        main(
            [
                "model",
                "convert",
                str(root / "phantoms" / "reflacx"),
                "--out",
                str(path),
                *arguments,
                "--attention-prompt",
                "Locate '{sentence}'",
            ]
        )
        == 0
    )
    description = json.loads((root / "records.meta.json").read_text())
    assert description["coordinates"] == {"kind": "normalized", "scale": 100}
    assert description["prompts"]["attention"] == "Locate '{sentence}'"
    return path


TINY = [
    "--from-scratch",
    "--hidden-size",
    "64",
    "--layers",
    "2",
    "--heads",
    "4",
    "--kv-heads",
    "2",
    "--intermediate-size",
    "128",
    "--vision-depth",
    "1",
    "--vision-dim",
    "32",
    "--vision-heads",
    "2",
    "--vocab-size",
    "512",
    "--max-pixels",
    "12544",
    "--steps",
    "3",
    "--warmup",
    "1",
    "--attention-rows",
    "2",
    "--threads",
    "1",
    "--max-new-tokens-examine",
    "24",
    "--max-new-tokens-attention",
    "24",
]
GAZE = ["--gaze-weight", "1", "--gaze-heads", "2", "--gaze-tasks", "examine"]
WEIGHTS = ["--decision-weight", "3", "--positive-weight", "2", "--observation-weight", "4", "--side-weight", "5"]


def test_train_then_eval(records: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "model"
    # a real process, so the recorded command is the one typed
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "model",
            "train",
            str(records),
            "--out",
            str(out),
            *TINY,
            "--seed",
            "7",
            *GAZE,
            *WEIGHTS,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"wrote {out}: 3 steps" in done.stdout
    assert "step 3/3 (language): loss" in done.stdout and ", gaze " in done.stdout
    assert "3/3" in done.stderr  # the progress bar
    metadata = json.loads((out / "gazex.json").read_text())["metadata"]
    assert metadata["seed"] == 7 and metadata["data"]["phantoms"]["seed"] == 4
    assert metadata["settings"]["gaze_weight"] == 1.0 and metadata["settings"]["gaze_tasks"] == ["examine"]
    assert metadata["settings"]["decision_weight"] == 3.0 and metadata["settings"]["observation_weight"] == 4.0
    assert metadata["settings"]["positive_weight"] == 2.0 and metadata["settings"]["side_weight"] == 5.0
    assert metadata["data"]["phantoms"]["report_style"] == "structured"
    assert metadata["command"][:3] == ["gazex", "model", "train"] and "--seed" in metadata["command"]
    assert (tmp_path / "model.training" / "state.pt").is_file()

    report = tmp_path / "eval.json"
    assert main(["model", "eval", "--model", str(out), "--count", "2", "--seed", "9", "--json", str(report)]) == 0
    printed = capsys.readouterr().out
    assert "| side" in printed and "laterality: " in printed and "mean observation IoU: " in printed
    results = json.loads(report.read_text())
    assert results["summary"]["images"] == 2 and results["settings"]["seed"] == 9
    assert results["settings"]["report_style"] == "structured"  # scored against reports worded as trained
    assert results["summary"]["cpu_seconds_per_image"] > 0
    assert {"macro_f1", "observation_iou", "trajectory", "seconds_per_image"} <= results["summary"].keys()
    assert 0 <= results["summary"]["side_agree"] <= results["summary"]["side_pairs"]
    assert all(label["side_agree"] <= label["side_pairs"] for label in results["labels"])

    # the attention stage alone, on the phantoms' own sentences: one finding per true sentence
    assert (
        main(
            [
                "model",
                "eval",
                "--model",
                str(out),
                "--count",
                "1",
                "--seed",
                "9",
                "--truth-sentences",
                "--report-style",
                "varied",
                "--json",
                str(report),
            ]
        )
        == 0
    )
    results = json.loads(report.read_text())
    assert results["settings"]["truth_sentences"] is True and results["summary"]["images_without_sentences"] == 0
    assert results["settings"]["report_style"] == "varied"

    # the training seed is not held out
    assert main(["model", "eval", "--model", str(out), "--count", "1", "--seed", "4"]) == 2


def test_train_explains_bad_starts(records: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m"
    assert main(["model", "train", str(records), "--out", str(out), *TINY, "--resume"]) == 2
    assert "does not exist; start without --resume" in capsys.readouterr().err
    assert main(["model", "train", str(tmp_path / "none.json"), "--out", str(out), *TINY]) == 2
    assert "no such records file" in capsys.readouterr().err
    assert main(["model", "train", str(records), "--out", str(out), *TINY, "--work-dir", str(out / "w")]) == 2
    assert "--work-dir must not be --out or inside it" in capsys.readouterr().err
    assert main(["model", "train", str(records), "--out", str(out), *TINY, "--coordinates", "pixels"]) == 2
    assert "--coordinates" in capsys.readouterr().err
    assert main(["model", "train", str(records), "--out", str(out), *TINY, "--gaze-tasks", "report"]) == 2
    assert "invalid training options" in capsys.readouterr().err
    assert main(["model", "train", str(records), "--out", str(out), "--base", str(tmp_path / "absent")]) == 2
    assert "no such checkpoint directory" in capsys.readouterr().err


def test_eval_explains_a_missing_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "eval", "--model", str(tmp_path / "none"), "--count", "1", "--seed", "1"]) == 2
    assert "no such checkpoint directory" in capsys.readouterr().err
    assert main(["model", "eval", "--model", "builtin:none", "--count", "1", "--seed", "1"]) == 2
    assert "not bundled" in capsys.readouterr().err
