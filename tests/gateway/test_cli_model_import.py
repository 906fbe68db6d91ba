"""``gazex model import`` and ``gazex model check`` on a tiny LLaMA-Factory-layout export."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from gateway.cli import main
from inference.presets import gazex_upstream
from inference.testing import make_llamafactory_export


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_llamafactory_export(tmp_path_factory.mktemp("received") / "gazex")


def test_import_then_check_on_the_real_chest_cr(
    export: Path, tmp_path: Path, chest_cr_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "imported"
    assert main(["model", "import", str(export), "--out", str(out), "--version", "7b-2025"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out / 'gazex.json'} (preset gazex-upstream)" in printed
    assert "coordinates: downscaled by 4 from a 2544x3056 reference image" in printed
    assert "generation: examine 1024 tokens, attention 1024 tokens" in printed
    assert "pixels mimic-cxr-jpg, jpeg_quality 95, resize llamafactory, image_max_pixels 589824" in printed
    assert f"next: gazex model check {out}" in printed
    assert json.loads((out / "gazex.json").read_text()) == gazex_upstream(version="7b-2025")
    assert not (export / "gazex.json").exists()

    assert main(["model", "check", str(out), "--image", str(chest_cr_path), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert f"model: gazex 7b-2025 from {out} (torch backend)" in printed
    assert "Image 1.3.6.1.4.1.5962.1.1.9.1.1.20040826185059.5457 (1955 rows x 1841 columns)" in printed
    assert "Timings: pixels" in printed


def test_check_without_an_image_uses_the_nema_chest_cr(
    export: Path, tmp_path: Path, chest_cr_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "imported"
    assert main(["model", "import", str(export), "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["model", "check", str(out), "--device", "cpu"]) == 0
    assert "image: the NEMA WG04 chest CR (RG1_UNCR.dcm, from pydicom-data)" in capsys.readouterr().out


def test_import_refuses_naming_the_missing_file_and_writes_nothing(
    export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = Path(shutil.copytree(export, tmp_path / "copy"))
    (directory / "preprocessor_config.json").unlink()
    assert main(["model", "import", str(directory)]) == 2
    err = capsys.readouterr().err
    assert f"gazex: error: cannot import: {directory}: preprocessor_config.json is missing" in err
    assert not (directory / "gazex.json").exists()


def test_check_on_an_unimported_checkpoint_says_to_import_it(export: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "check", str(export), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "gazex.json is missing" in err and f"gazex model import {export} --preset gazex-upstream" in err
