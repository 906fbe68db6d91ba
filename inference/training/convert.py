"""Convert a REFLACX-format data set (real or phantom) into GazeX training records.

``reading_records`` is the pure part: one reading -> its examine record and one attention
record per sentence.  ``convert_reflacx`` is the I/O around it: read the data set, write a
JPEG copy of each image next to the records (GazeX trains on JPEGs, ``image_jpg/<id>.jpg``),
and write the records as one JSON list.

Images are found from the metadata's ``image`` column, relative to ``images_root`` (default:
the REFLACX root).  For real REFLACX, whose ``image`` column is a MIMIC-CXR DICOM path
(``physionet.org/files/mimic-cxr/2.0.0/files/p1x/.../<dicom_id>.dcm``), point ``images_root``
at a MIMIC-CXR-JPG copy: ``.dcm`` is tried as ``.jpg``, with and without the
``physionet.org/files/mimic-cxr/<version>/`` prefix.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from inference.config import GAZEX_PROMPTS, Prompts
from inference.geometry import CoordinateFrame, DownscaledFrame
from inference.reflacx.model import ReflacxFormatError, ReflacxReading
from inference.reflacx.reader import read_reflacx
from inference.results import Region
from inference.training.attention import AttentionSettings, dictated_sentences, sentence_attention, window_fixations
from inference.training.data import description_document, description_path
from inference.training.ellipses import ellipse_observation, matching_ellipses
from inference.training.records import Record, attention_answer, attention_record, examine_record

TASKS = ("examine", "attention")
IMAGE_FOLDER = "image_jpg"
_MIMIC_PREFIX = re.compile(r"^(physionet\.org/files/)?mimic-cxr/[^/]+/")


@dataclass(frozen=True)
class ConversionSettings:
    frame: CoordinateFrame = field(default_factory=lambda: DownscaledFrame(4.0))
    attention: AttentionSettings = field(default_factory=AttentionSettings)
    prompts: Prompts = GAZEX_PROMPTS
    tasks: tuple[str, ...] = TASKS
    min_certainty: int = 3
    image_max_side: int | None = None  # None: keep the image's size

    def __post_init__(self) -> None:
        unknown = set(self.tasks) - set(TASKS)
        if unknown or not self.tasks:
            raise ValueError(f"tasks must be some of {', '.join(TASKS)}, got {', '.join(self.tasks) or 'none'}")


@dataclass
class ConversionSummary:
    readings: int = 0
    skipped_readings: int = 0  # eye-tracking data discarded, or no dictation
    examine_records: int = 0
    attention_records: int = 0
    sentences_without_region: int = 0  # neither an ellipse nor any fixation in the window
    observations_from_ellipses: int = 0


@dataclass(frozen=True)
class SentenceTarget:
    """What the attention record of one sentence says, in source pixels."""

    text: str
    clues: tuple[Region, ...]
    observation: Region | None
    from_ellipse: bool


def sentence_targets(reading: ReflacxReading, settings: ConversionSettings | None = None) -> list[SentenceTarget]:
    """Each dictated sentence's clues and observation region."""
    settings = settings or ConversionSettings()
    rows, columns = reading.image_size_y, reading.image_size_x
    midline = (reading.chest_box.x0 + reading.chest_box.x1) / 2.0 if reading.chest_box else columns / 2.0
    targets = []
    for sentence in dictated_sentences(reading.words):
        attention = sentence_attention(reading.fixations, sentence, rows, columns, settings.attention)
        window = window_fixations(reading.fixations, sentence, settings.attention.lead_seconds)
        chosen = matching_ellipses(sentence.text, reading.ellipses, window, midline, settings.min_certainty)
        observation = ellipse_observation(chosen, rows, columns)
        targets.append(
            SentenceTarget(sentence.text, attention.clues, observation or attention.holistic, observation is not None)
        )
    return targets


def reading_records(
    reading: ReflacxReading, image: str, settings: ConversionSettings, summary: ConversionSummary | None = None
) -> list[Record]:
    """The training records of one reading; ``image`` is the path the records reference."""
    summary = summary if summary is not None else ConversionSummary()
    rows, columns = reading.image_size_y, reading.image_size_x
    targets = sentence_targets(reading, settings)
    records: list[Record] = []
    if "examine" in settings.tasks and targets:
        records.append(examine_record(" ".join(t.text for t in targets), image, settings.prompts))
        summary.examine_records += 1
    if "attention" in settings.tasks:
        for target in targets:
            if target.observation is None:
                summary.sentences_without_region += 1
                continue
            answer = attention_answer(target.clues, target.observation, settings.frame, rows, columns)
            records.append(attention_record(target.text, answer, image, settings.prompts))
            summary.attention_records += 1
            summary.observations_from_ellipses += int(target.from_ellipse)
    return records


def resolve_image(reading: ReflacxReading, images_root: Path) -> Path:
    """The image file of a reading (see the module docstring for the rules)."""
    relative = reading.image
    candidates = [images_root / relative]
    stripped = _MIMIC_PREFIX.sub("", relative)
    if stripped != relative:
        candidates.append(images_root / stripped)
    if relative.lower().endswith(".dcm"):
        candidates += [path.with_suffix(".jpg") for path in list(candidates)]
    for candidate in candidates:
        if candidate.is_file() and candidate.suffix.lower() != ".dcm":
            return candidate
    raise ReflacxFormatError(
        f"image of reading {reading.id} not found: tried {', '.join(str(c) for c in candidates)}; "
        "give --images-root, the folder its 'image' paths are relative to (a MIMIC-CXR-JPG copy for real REFLACX)"
    )


def write_record_image(source: Path, target: Path, reading: ReflacxReading, max_side: int | None) -> None:
    """A grayscale JPEG copy of ``source``; fails if its shape contradicts the metadata's size."""
    with Image.open(source) as opened:
        image: Image.Image = opened
        if image.mode not in {"L", "RGB"}:
            array = np.asarray(image, dtype=np.float64)
            top = float(array.max()) or 1.0
            image = Image.fromarray(np.rint(array / top * 255.0).astype(np.uint8))
        image = image.convert("L")
        width, height = image.size
        expected = reading.image_size_x / reading.image_size_y
        if abs(width / height - expected) > 0.02 * expected:
            raise ReflacxFormatError(
                f"{source}: {width}x{height} does not have the aspect of the recorded image size "
                f"{reading.image_size_x}x{reading.image_size_y} of reading {reading.id}"
            )
        if max_side is not None and max(width, height) > max_side:
            scale = max_side / max(width, height)
            image = image.resize(
                (max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.LANCZOS
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        image.save(target, format="JPEG", quality=95)


def convert_reflacx(
    root: Path,
    output: Path,
    settings: ConversionSettings | None = None,
    images_root: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    readings: Sequence[ReflacxReading] | None = None,
) -> ConversionSummary:
    """Convert the REFLACX data set at ``root`` into ``output`` (a JSON list of records)."""
    settings = settings or ConversionSettings()
    images_root = images_root or root
    readings = readings if readings is not None else read_reflacx(root)
    summary = ConversionSummary()
    records: list[Record] = []
    for done, reading in enumerate(readings, start=1):
        if reading.eye_tracking_data_discarded or not reading.words:
            summary.skipped_readings += 1
            continue
        summary.readings += 1
        relative = f"{IMAGE_FOLDER}/{reading.id}.jpg"
        write_record_image(
            resolve_image(reading, images_root), output.parent / relative, reading, settings.image_max_side
        )
        records += reading_records(reading, relative, settings, summary)
        if progress is not None:
            progress(done, len(readings))
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("w", encoding="utf-8") as handle:
        json.dump(records, handle, ensure_ascii=False)
    description = description_document(settings.frame, settings.prompts, settings.tasks, str(root), asdict(summary))
    description_path(output).write_text(json.dumps(description, indent=2) + "\n", encoding="utf-8")
    return summary
