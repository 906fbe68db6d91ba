"""Reading GazeX training records for training: the records file, its description, and the images.

A records file is a JSON list of LLaMA-Factory "sharegpt" records (:mod:`inference.training.records`).
``gazex model convert`` writes a **description** beside it, ``<records stem>.meta.json``::

    {"format": "gazex-records", "format_version": 1,
     "coordinates": {"kind": "normalized", "scale": 100},
     "prompts": {"examine": "...", "attention": "... {sentence} ..."},
     "tasks": ["examine", "attention"], "source": "...", "summary": {...}}

The coordinates and prompts are what a checkpoint trained on the records must declare in its
``gazex.json``, so the trainer takes them from there.  Records made elsewhere (e.g. by GazeX's
own ``Create_Training_Data.py``) have no description: then the coordinates must be given and
the prompts are GazeX's own.  Every record is checked against the prompts: its user turn must
be the examine prompt or the attention prompt around one sentence; anything else is an error
naming the record.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from PIL import Image

from inference.config import GAZEX_PROMPTS, Prompts
from inference.geometry import CoordinateFrame, frame_from_json
from inference.prompts import SENTENCE_SLOT
from inference.training.records import IMAGE_PLACEHOLDER

DESCRIPTION_FORMAT = "gazex-records"
DESCRIPTION_VERSION = 1

Task = Literal["examine", "attention"]


class TrainingDataError(ValueError):
    """Training records or their images are not usable; the message names the file and record."""


@dataclass(frozen=True, slots=True)
class TrainingRecord:
    """One record: an image, the user turn's text (without ``<image>``) and the answer."""

    index: int
    image: Path
    task: Task
    user: str
    answer: str
    sentence: str | None = None  # the attention record's sentence


@dataclass(frozen=True)
class RecordsDescription:
    """What a records file was made with (its ``.meta.json``)."""

    coordinates: CoordinateFrame
    prompts: Prompts
    document: Mapping[str, Any]


def description_path(records: Path) -> Path:
    """``records.json`` -> ``records.meta.json``."""
    return records.with_name(f"{records.stem}.meta.json")


def description_document(
    frame: CoordinateFrame, prompts: Prompts, tasks: Sequence[str], source: str, summary: Mapping[str, Any]
) -> dict[str, Any]:
    """The JSON document describing a records file."""
    return {
        "format": DESCRIPTION_FORMAT,
        "format_version": DESCRIPTION_VERSION,
        "coordinates": frame.to_json(),
        "prompts": {"examine": prompts.examine, "attention": prompts.attention},
        "tasks": list(tasks),
        "source": source,
        "summary": dict(summary),
    }


def read_description(records: Path) -> RecordsDescription | None:
    """The description beside ``records``, or None when there is none."""
    path = description_path(records)
    if not path.is_file():
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TrainingDataError(f"{path}: not valid JSON ({exc}); convert the records again") from exc
    if not isinstance(document, dict) or document.get("format") != DESCRIPTION_FORMAT:
        raise TrainingDataError(f'{path}: not a records description ("format" must be "{DESCRIPTION_FORMAT}")')
    if document.get("format_version") != DESCRIPTION_VERSION:
        raise TrainingDataError(f"{path}: format_version {document.get('format_version')!r} is not supported")
    try:
        frame = frame_from_json(document["coordinates"])
        prompts_obj = document["prompts"]
        prompts = Prompts(examine=str(prompts_obj["examine"]), attention=str(prompts_obj["attention"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise TrainingDataError(f"{path}: invalid coordinates or prompts ({exc}); convert the records again") from exc
    return RecordsDescription(frame, prompts, document)


def classify(user: str, prompts: Prompts) -> tuple[Task, str | None] | None:
    """Which task a user turn asks for (and the attention record's sentence), or None."""
    if user == prompts.examine:
        return "examine", None
    before, after = prompts.attention.split(SENTENCE_SLOT)
    if user.startswith(before) and user.endswith(after) and len(user) > len(before) + len(after):
        return "attention", user[len(before) : len(user) - len(after)]
    return None


def _message(record: Any, position: int, role: str, where: str) -> str:
    try:
        message = record["messages"][position]
        content = message["content"]
    except (KeyError, IndexError, TypeError):
        raise TrainingDataError(f"{where}: expected messages[{position}] with a content") from None
    if message.get("role") != role or not isinstance(content, str):
        raise TrainingDataError(f"{where}: messages[{position}] must be the {role} turn with text content")
    return content


def parse_records(document: Any, root: Path, prompts: Prompts, where: str) -> list[TrainingRecord]:
    """Check and read a records document; image paths are relative to ``root``."""
    if not isinstance(document, list) or not document:
        raise TrainingDataError(f"{where}: expected a non-empty JSON list of sharegpt records")
    records = []
    for index, record in enumerate(document):
        at = f"{where}: record {index}"
        if not isinstance(record, dict) or len(record.get("messages", ())) != 2:
            raise TrainingDataError(f"{at}: expected a user turn and an assistant turn under 'messages'")
        user = _message(record, 0, "user", at)
        answer = _message(record, 1, "assistant", at)
        images = record.get("images")
        if not isinstance(images, list) or len(images) != 1 or not isinstance(images[0], str):
            raise TrainingDataError(f"{at}: expected exactly one image path under 'images'")
        if user.count(IMAGE_PLACEHOLDER) != 1 or not user.startswith(IMAGE_PLACEHOLDER):
            raise TrainingDataError(f"{at}: the user turn must start with one {IMAGE_PLACEHOLDER} placeholder")
        text = user[len(IMAGE_PLACEHOLDER) :]
        kind = classify(text, prompts)
        if kind is None:
            raise TrainingDataError(
                f"{at}: the user turn is neither the examine prompt nor the attention prompt of these records "
                f"({text[:80]!r}...); convert the records with the prompts the checkpoint will use"
            )
        if not answer.strip():
            raise TrainingDataError(f"{at}: the assistant turn is empty")
        records.append(TrainingRecord(index, root / images[0], kind[0], text, answer, kind[1]))
    return records


def read_records(path: Path, prompts: Prompts = GAZEX_PROMPTS) -> list[TrainingRecord]:
    """The records of ``path``, checked against ``prompts``."""
    if not path.is_file():
        raise TrainingDataError(f"{path}: no such records file; make one with gazex model convert")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TrainingDataError(f"{path}: not valid JSON ({exc})") from exc
    return parse_records(document, path.parent, prompts, str(path))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(4 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def group_by_image(records: Iterable[TrainingRecord]) -> list[tuple[Path, list[TrainingRecord]]]:
    """Records grouped by image, images in order of first appearance, records in file order."""
    groups: dict[Path, list[TrainingRecord]] = {}
    for record in records:
        groups.setdefault(record.image, []).append(record)
    return list(groups.items())


def load_display_image(path: Path) -> npt.NDArray[np.float32]:
    """An image file as the runtime's display image: grey, float32 in [0, 1]."""
    try:
        with Image.open(path) as opened:
            grey = np.asarray(opened.convert("L"), dtype=np.float32)
    except (OSError, ValueError) as exc:
        raise TrainingDataError(f"{path}: cannot read the image ({exc})") from exc
    result: npt.NDArray[np.float32] = grey / np.float32(255.0)
    return result


def corpus(records: Iterable[TrainingRecord], prompts: Prompts) -> Iterable[str]:
    """The texts a new tokenizer learns its merges from: the prompts, sentences and answers."""
    yield prompts.examine
    yield prompts.attention.replace(SENTENCE_SLOT, "")
    for record in records:
        yield record.answer
