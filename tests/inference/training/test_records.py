"""GazeX training records: their format, and a conversion of phantoms that recovers the ground truth."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from inference.config import Prompts
from inference.demo import PhantomConfig, generate_phantom, write_phantom_dataset
from inference.geometry import CoordinateFrame, DownscaledFrame, ImageGeometry, NormalizedFrame
from inference.prompts import GAZEX_ATTENTION_PROMPT, GAZEX_EXAMINE_PROMPT
from inference.reflacx import ReflacxFormatError, ReflacxReading, read_reflacx
from inference.results import Box, Point, Region
from inference.training import ConversionSettings, convert_reflacx
from inference.training.convert import resolve_image
from inference.training.records import attention_answer, attention_record, examine_record, format_region

REGION = re.compile(r"\((\d+),(\d+)\)\((\d+),(\d+)\)\((\d+),(\d+)\)")


def test_regions_are_written_in_the_chosen_frame() -> None:
    region = Region(Box(100.0, 200.0, 302.0, 400.0), Point(210.0, 290.0))
    assert format_region(region, DownscaledFrame(4), rows=1000, columns=800) == "(25,50)(76,100)(53,73)"
    assert format_region(region, NormalizedFrame(1000), rows=1000, columns=800) == "(125,200)(378,400)(263,290)"


def test_the_attention_answer_has_gazex_training_layout() -> None:
    frame = DownscaledFrame(4)
    clue_a = Region(Box(0, 0, 40, 40), Point(20, 20))
    clue_b = Region(Box(80, 80, 120, 120), Point(100, 100))
    observation = Region(Box(0, 0, 120, 120), Point(60, 60))
    assert (
        attention_answer([clue_a, clue_b], observation, frame, 400, 400)
        == "visual clues : [(0,0)(10,10)(5,5),(20,20)(30,30)(25,25)] observation : [(0,0)(30,30)(15,15)]"
    )
    assert attention_answer([], observation, frame, 400, 400) == "observation : [(0,0)(30,30)(15,15)]"


def test_records_are_sharegpt_messages_with_the_gazex_prompts() -> None:
    record = examine_record("No pneumothorax.", "image_jpg/P300R000001.jpg")
    assert record == {
        "messages": [
            {"content": f"<image>{GAZEX_EXAMINE_PROMPT}", "role": "user"},
            {"content": "No pneumothorax.", "role": "assistant"},
        ],
        "images": ["image_jpg/P300R000001.jpg"],
    }
    assert GAZEX_EXAMINE_PROMPT == (
        "Given an X-ray image, mimic a radiologist's eye-tracking pattern and generate a description of the image."
    )
    attention = attention_record("No pneumothorax.", "observation : [(0,0)(1,1)(0,0)]", "x.jpg")
    user = attention["messages"][0]["content"]  # type: ignore[index]
    # the runtime's prompt text (GazeX's training wording), with the sentence in its slot
    assert user == "<image>" + GAZEX_ATTENTION_PROMPT.replace("{sentence}", "No pneumothorax.")
    assert user.startswith("<image>Given an X-ray image and a radiologist's description 'No pneumothorax.', mimic")
    assert "'visual clues: [(xmin1, ymin1)(xmax1, ymax1)(centroidx1, centroidy1)" in user
    custom = Prompts(examine="Describe.", attention="Find {sentence}")
    assert attention_record("it", "a", "x.jpg", custom)["messages"][0]["content"] == "<image>Find it"  # type: ignore[index]
    with pytest.raises(ValueError, match="sentence"):
        Prompts(examine="Describe.", attention="no placeholder")


@pytest.fixture(scope="module")
def phantom_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("phantoms")
    config = PhantomConfig(rows=(700, 800))
    write_phantom_dataset(out, seed=23, count=6, formats=("reflacx",), config=config)
    return out


@pytest.mark.parametrize("frame", [DownscaledFrame(4), NormalizedFrame(1000)])
def test_converting_phantoms_recovers_their_ground_truth(
    phantom_set: Path, tmp_path: Path, frame: CoordinateFrame
) -> None:
    output = tmp_path / "records.json"
    summary = convert_reflacx(phantom_set / "reflacx", output, ConversionSettings(frame=frame))
    records = json.loads(output.read_text())
    readings = read_reflacx(phantom_set / "reflacx")
    config = PhantomConfig(rows=(700, 800))
    phantoms = [generate_phantom(23, i, config) for i in range(6)]
    assert summary.readings == 6 and summary.examine_records == 6
    assert summary.attention_records == sum(len(p.sentences) for p in phantoms)
    assert len(records) == summary.examine_records + summary.attention_records
    by_image: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_image.setdefault(record["images"][0], []).append(record)
    for phantom, reading in zip(phantoms, readings, strict=True):
        image = f"image_jpg/{reading.id}.jpg"
        assert (tmp_path / image).is_file()
        with Image.open(tmp_path / image) as jpeg:
            assert jpeg.format == "JPEG" and jpeg.size == (phantom.columns, phantom.rows)
        examine, *attention = by_image[image]
        assert examine["messages"][1]["content"] == phantom.report
        assert len(attention) == len(phantom.sentences)
        for sentence, record in zip(phantom.sentences, attention, strict=True):
            assert f"description '{sentence.text}'" in record["messages"][0]["content"]
            answer = record["messages"][1]["content"]
            assert re.fullmatch(
                r"(visual clues : \[[(),\d]+\] )?observation : \[\(\d+,\d+\)\(\d+,\d+\)\(\d+,\d+\)\]", answer
            )
            devices = {"endotracheal_tube", "central_venous_catheter"}  # REFLACX has no ellipses for devices
            if sentence.present and sentence.region is not None and sentence.label not in devices:
                # the observation is the ellipse, i.e. the ground truth, to within the frame's resolution
                x0, y0, x1, y1, _, _ = (int(v) for v in REGION.findall(answer.split("observation")[1])[0])
                geometry = ImageGeometry(phantom.rows, phantom.columns, frame, 28, 28)
                (sx0, sy0), (sx1, sy1) = geometry.model_to_source(x0, y0), geometry.model_to_source(x1, y1)
                unit = max(frame.source_pixels_per_unit(phantom.rows, phantom.columns))
                truth = sentence.region
                for got, expected in ((sx0, truth.x0), (sy0, truth.y0), (sx1, truth.x1), (sy1, truth.y1)):
                    assert abs(got - expected) <= unit / 2.0 + 1.0, sentence.text


def test_settings_choose_tasks_and_image_size(phantom_set: Path, tmp_path: Path) -> None:
    output = tmp_path / "examine.json"
    convert_reflacx(phantom_set / "reflacx", output, ConversionSettings(tasks=("examine",), image_max_side=256))
    records = json.loads(output.read_text())
    assert len(records) == 6
    with Image.open(tmp_path / records[0]["images"][0]) as jpeg:
        assert max(jpeg.size) == 256
    with pytest.raises(ValueError, match="tasks"):
        ConversionSettings(tasks=("train",))


def _reading(image: str, size: tuple[int, int] = (400, 500)) -> ReflacxReading:
    return ReflacxReading("P300R000001", 3, "train", False, image, "d", "1", size[0], size[1])


def test_mimic_cxr_paths_resolve_to_jpegs(tmp_path: Path) -> None:
    dicom_path = "physionet.org/files/mimic-cxr/2.0.0/files/p10/p10000001/s50000001/abc.dcm"
    jpeg = tmp_path / "files/p10/p10000001/s50000001/abc.jpg"
    jpeg.parent.mkdir(parents=True)
    Image.new("L", (400, 500)).save(jpeg)
    assert resolve_image(_reading(dicom_path), tmp_path) == jpeg
    with pytest.raises(ReflacxFormatError, match="--images-root"):
        resolve_image(_reading("missing/x.dcm"), tmp_path)


def test_an_image_that_contradicts_the_metadata_is_refused(phantom_set: Path, tmp_path: Path) -> None:
    readings = read_reflacx(phantom_set / "reflacx")
    image = phantom_set / "reflacx" / readings[0].image
    with Image.open(image) as opened:
        opened.transpose(Image.Transpose.ROTATE_90).save(image.with_name("rotated.png"))
    bad = [
        readings[0].__class__(
            **{
                **readings[0].__dict__,
                "image": str(image.with_name("rotated.png").relative_to(phantom_set / "reflacx")),
            }
        )
    ]
    with pytest.raises(ReflacxFormatError, match="aspect"):
        convert_reflacx(phantom_set / "reflacx", tmp_path / "r.json", readings=bad)
