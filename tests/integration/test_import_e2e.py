"""The issue's "done when": a checkpoint as LLaMA-Factory exports it goes from ``gazex model import`` to
SR, SEG and GSPS in an archive (gazex serve with the imported checkpoint, dcmtk storescu and storescp)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset

from gateway.demo.results import EXPECTED_SOP_CLASSES, read_sr, validate_outputs
from inference.presets import gazex_upstream
from inference.results import FINDING_LABELS
from inference.testing import make_llamafactory_export, teach_answers
from tests.conftest import require_tool
from tests.ingest_support import run_gazex, small_cr, start_serve, write_dataset
from tests.integration.pipeline_support import pipeline_config, query, wait_for

pytestmark = pytest.mark.integration

SENTENCE = "There is a nodule in the right upper lobe."
#: A GazeX-format answer (Create_Training_Data.py's "visual clues : [...] observation : [...]").
ATTENTION = "visual clues : [(120,150)(180,210)(150,180)] observation : [(110,140)(190,220)(150,180)]"


def test_a_llamafactory_export_goes_from_gazex_model_import_to_sr_seg_and_gsps_in_the_archive(
    tmp_path: Path, free_port: Callable[[], int], dicom_tool: Callable[[str], Path], chest_cr: Dataset
) -> None:
    storescu, storescp = dicom_tool("storescu"), dicom_tool("storescp")
    require_tool("dciodvfy")
    chest_dataset = small_cr(chest_cr, rows=128, columns=128)
    chest = write_dataset(chest_dataset, tmp_path / "chest.dcm")
    # what a site receives: a LLaMA-Factory export, here a tiny Qwen2-VL taught (with the preset's
    # prompts, pixels and grid for this image) to write one finding and a GazeX-format answer, so
    # that the results hold a region; no gazex.json
    received = make_llamafactory_export(tmp_path / "received")
    teach_answers(received, gazex_upstream(), chest_dataset, SENTENCE, {SENTENCE: ATTENTION})
    assert not (received / "gazex.json").exists()
    assert (received / "model.safetensors.index.json").is_file()

    imported = tmp_path / "gazex-model"
    run = run_gazex(
        "model", "import", str(received), "--preset", "gazex-upstream",
        "--out", str(imported), "--name", "gazex", "--version", "1.0", "--manufacturer", "Site",
        timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"wrote {imported / 'gazex.json'} (preset gazex-upstream)" in run.stdout
    assert json.loads((imported / "gazex.json").read_text())["name"] == "gazex"

    port, archive_port = free_port(), free_port()
    data, archived = tmp_path / "data", tmp_path / "archive"
    archived.mkdir()
    url = f"sqlite:///{data / 'gazex.db'}"
    config = pipeline_config(
        tmp_path / "gazex.yaml", data, port, archive_port, model={"path": str(imported), "device": "cpu"}
    )
    archive = subprocess.Popen(
        [str(storescp), "-aet", "ARCHIVE", "-od", str(archived), str(archive_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    serve = start_serve(config, port, tmp_path / "serve.log")
    try:
        subprocess.run(
            [str(storescu), "-aet", "PACS", "-aec", "GAZEX", "127.0.0.1", str(port), str(chest)],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        wait_for(lambda: query(url, "SELECT * FROM deliveries WHERE status = 'delivered'"), 300, "the delivery")
        files = wait_for(lambda: sorted(archived.iterdir()) if len(list(archived.iterdir())) >= 3 else None)
        assert serve.terminate() == 0, serve.log()
    finally:
        serve.kill()
        archive.kill()
        archive.wait()
    assert "gazex 1.0" in serve.log() and str(imported) in serve.log()
    validation = validate_outputs(files, pydicom.dcmread(chest))
    assert validation.ok, validation.problems
    assert sorted(str(pydicom.dcmread(f).SOPClassUID) for f in files) == sorted(EXPECTED_SOP_CLASSES)
    assert validation.validator_errors and set(validation.validator_errors.values()) == {0}
    [sr_file] = [f for f in files if f.name.startswith("SR")]
    content = read_sr(pydicom.dcmread(sr_file))
    assert [f.finding for f in content.findings] == [FINDING_LABELS["nodule"]]
    # the observation (110,140)-(190,220) in the preset's frame: 4 x the pixels of a 2544 x 3056
    # image, mapped in proportion onto this 128 x 128 one
    box = content.findings[0].box
    assert box is not None
    expected = (110 * 4 * 128 / 2544, 140 * 4 * 128 / 3056, 190 * 4 * 128 / 2544, 220 * 4 * 128 / 3056)
    assert box == pytest.approx(expected, abs=0.01)
