"""Reading training records: the description beside them, and clear errors for records that do not fit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inference.config import GAZEX_PROMPTS, Prompts
from inference.geometry import NormalizedFrame
from inference.training.data import (
    TrainingDataError,
    classify,
    description_document,
    description_path,
    load_display_image,
    read_description,
    read_records,
)
from inference.training.records import attention_record, examine_record

PROMPTS = Prompts(examine="Describe this chest X-ray.", attention="Locate '{sentence}'")


def _write(path: Path, records: object) -> Path:
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


def test_records_are_read_by_task_with_their_sentence(tmp_path: Path) -> None:
    records = [
        examine_record("No pneumothorax.", "image_jpg/a.jpg", PROMPTS),
        attention_record("No pneumothorax.", "observation : [(1,2)(3,4)(2,3)]", "image_jpg/a.jpg", PROMPTS),
    ]
    loaded = read_records(_write(tmp_path / "records.json", records), PROMPTS)
    assert [(r.task, r.sentence) for r in loaded] == [("examine", None), ("attention", "No pneumothorax.")]
    assert loaded[0].image == tmp_path / "image_jpg" / "a.jpg"
    assert loaded[1].user == "Locate 'No pneumothorax.'"


def test_gazex_prompts_are_recognised_by_default() -> None:
    user = GAZEX_PROMPTS.attention.replace("{sentence}", "Mild cardiomegaly.")
    assert classify(user, GAZEX_PROMPTS) == ("attention", "Mild cardiomegaly.")
    assert classify(GAZEX_PROMPTS.examine, GAZEX_PROMPTS) == ("examine", None)
    assert classify("Describe.", GAZEX_PROMPTS) is None


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ({"messages": []}, "non-empty JSON list"),
        ([], "non-empty JSON list"),
        ([{"messages": [{"role": "user", "content": "<image>x"}]}], "record 0: expected a user turn"),
        (
            [{"messages": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "b"}], "images": ["i"]}],
            "must be the user turn",
        ),
        (
            [
                {
                    "messages": [
                        {"role": "user", "content": "<image>Describe."},
                        {"role": "assistant", "content": "a"},
                    ],
                    "images": ["i"],
                }
            ],
            "neither the examine prompt nor the attention prompt",
        ),
        (
            [
                {
                    "messages": [
                        {"role": "user", "content": "Describe this chest X-ray."},
                        {"role": "assistant", "content": "a"},
                    ],
                    "images": ["i"],
                }
            ],
            "one <image> placeholder",
        ),
        (
            [
                {
                    "messages": [
                        {"role": "user", "content": "<image>Describe this chest X-ray."},
                        {"role": "assistant", "content": "a"},
                    ],
                    "images": [],
                }
            ],
            "exactly one image",
        ),
        (
            [
                {
                    "messages": [
                        {"role": "user", "content": "<image>Describe this chest X-ray."},
                        {"role": "assistant", "content": " "},
                    ],
                    "images": ["i"],
                }
            ],
            "assistant turn is empty",
        ),
    ],
)
def test_records_that_do_not_fit_are_refused_with_their_index(tmp_path: Path, records: object, message: str) -> None:
    with pytest.raises(TrainingDataError, match=message):
        read_records(_write(tmp_path / "records.json", records), PROMPTS)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(TrainingDataError, match="no such records file"):
        read_records(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text("[{", encoding="utf-8")
    with pytest.raises(TrainingDataError, match="not valid JSON"):
        read_records(tmp_path / "bad.json")
    (tmp_path / "image.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(TrainingDataError, match="cannot read the image"):
        load_display_image(tmp_path / "image.jpg")


def test_the_description_round_trips_and_is_checked(tmp_path: Path) -> None:
    records = tmp_path / "records.json"
    assert description_path(records) == tmp_path / "records.meta.json"
    assert read_description(records) is None
    document = description_document(NormalizedFrame(100), PROMPTS, ("examine", "attention"), "src", {"readings": 2})
    description_path(records).write_text(json.dumps(document), encoding="utf-8")
    description = read_description(records)
    assert description is not None
    assert description.coordinates == NormalizedFrame(100) and description.prompts == PROMPTS
    description_path(records).write_text(json.dumps({**document, "coordinates": {"kind": "x"}}), encoding="utf-8")
    with pytest.raises(TrainingDataError, match="invalid coordinates or prompts"):
        read_description(records)
    description_path(records).write_text(json.dumps({**document, "format": "other"}), encoding="utf-8")
    with pytest.raises(TrainingDataError, match="not a records description"):
        read_description(records)
