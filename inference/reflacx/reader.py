"""Read a REFLACX data set (real or phantom) into :class:`ReflacxReading` objects.

The reader looks columns up by name, so column order does not matter, and accepts what pandas
writes (``2544.0`` for an integer, ``True``/``False``, empty cells).  Anything else missing or
malformed raises :class:`ReflacxFormatError` naming the file, the line and the column.
"""

from __future__ import annotations

import csv
import dataclasses
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from inference.reflacx import columns as col
from inference.reflacx.model import Ellipse, ReflacxFixation, ReflacxFormatError, ReflacxReading, TranscribedWord
from inference.results import Box

_METADATA_PATTERN = re.compile(r"^metadata_phase_(\d+)\.csv$")


def find_main_data(root: Path) -> Path:
    """The ``main_data`` folder of a REFLACX root (the root itself if it holds the metadata tables)."""
    for candidate in (root / col.MAIN_DATA, root):
        if candidate.is_dir() and any(_METADATA_PATTERN.match(p.name) for p in candidate.iterdir()):
            return candidate
    raise ReflacxFormatError(
        f"{root}: no metadata_phase_<phase>.csv found here or in {root / col.MAIN_DATA}; "
        "give the folder that holds REFLACX's main_data/ (or main_data itself)"
    )


def _rows(path: Path, required: Iterable[str]) -> Iterator[tuple[int, dict[str, str]]]:
    try:
        handle = path.open(encoding="utf-8-sig", newline="")
    except FileNotFoundError:
        raise ReflacxFormatError(f"{path}: file is missing") from None
    with handle:
        reader = csv.DictReader(handle)
        header = [name.strip() for name in reader.fieldnames or []]
        missing = [name for name in required if name not in header]
        if missing:
            raise ReflacxFormatError(
                f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(header) or 'none'}"
            )
        reader.fieldnames = header
        for line, row in enumerate(reader, start=2):
            yield line, {key: (value or "").strip() for key, value in row.items() if key is not None}


class _Cells:
    """Typed access to one CSV row, with errors that say where."""

    def __init__(self, path: Path, line: int, row: dict[str, str]) -> None:
        self.path, self.line, self.row = path, line, row

    def _fail(self, column: str, what: str) -> ReflacxFormatError:
        return ReflacxFormatError(f"{self.path}:{self.line}: column {column!r} {what}, got {self.row.get(column)!r}")

    def text(self, column: str) -> str:
        return self.row.get(column, "")

    def number(self, column: str) -> float:
        try:
            return float(self.row[column])
        except (KeyError, ValueError):
            raise self._fail(column, "must be a number") from None

    def optional_number(self, column: str) -> float | None:
        return None if self.row.get(column, "") == "" else self.number(column)

    def integer(self, column: str) -> int:
        value = self.number(column)
        if value != int(value):
            raise self._fail(column, "must be a whole number")
        return int(value)

    def boolean(self, column: str) -> bool:
        value = self.row.get(column, "").lower()
        if value in {"true", "1", "1.0"}:
            return True
        if value in {"false", "0", "0.0", ""}:
            return False
        raise self._fail(column, "must be True or False")

    def quad(self, names: tuple[str, str, str, str]) -> tuple[int, int, int, int] | None:
        if any(self.row.get(name, "") == "" for name in names):
            return None
        a, b, c, d = (round(self.number(name)) for name in names)
        return a, b, c, d


def _read_fixations(path: Path) -> tuple[ReflacxFixation, ...]:
    required = ("timestamp_start_fixation", "timestamp_end_fixation", "x_position", "y_position")
    fixations = []
    for line, row in _rows(path, required):
        cells = _Cells(path, line, row)
        fixations.append(
            ReflacxFixation(
                start=cells.number("timestamp_start_fixation"),
                end=cells.number("timestamp_end_fixation"),
                x=cells.number("x_position"),
                y=cells.number("y_position"),
                pupil_area_normalized=cells.optional_number("pupil_area_normalized"),
                pixels_per_degree_x=cells.optional_number("angular_resolution_x_pixels_per_degree"),
                pixels_per_degree_y=cells.optional_number("angular_resolution_y_pixels_per_degree"),
                window_width=cells.optional_number("window_width"),
                window_level=cells.optional_number("window_level"),
                shown_from_image=cells.quad(
                    ("xmin_shown_from_image", "ymin_shown_from_image", "xmax_shown_from_image", "ymax_shown_from_image")
                ),
                in_screen=cells.quad(
                    (
                        "xmin_in_screen_coordinates",
                        "ymin_in_screen_coordinates",
                        "xmax_in_screen_coordinates",
                        "ymax_in_screen_coordinates",
                    )
                ),
            )
        )
    return tuple(fixations)


def _read_words(path: Path) -> tuple[TranscribedWord, ...]:
    words = []
    for line, row in _rows(path, col.TRANSCRIPTION_COLUMNS):
        cells = _Cells(path, line, row)
        words.append(
            TranscribedWord(
                cells.text("word"), cells.number("timestamp_start_word"), cells.number("timestamp_end_word")
            )
        )
    return tuple(words)


def _read_ellipses(path: Path, labels: tuple[str, ...]) -> tuple[Ellipse, ...]:
    ellipses = []
    for line, row in _rows(path, (*col.BOX_COLUMNS, col.CERTAINTY_COLUMN)):
        cells = _Cells(path, line, row)
        present = frozenset(label for label in row if label in labels and cells.boolean(label))
        # labels not in this phase's list (a newer release, say) are kept when set
        extra = frozenset(
            name
            for name in row
            if name not in labels
            and name not in col.BOX_COLUMNS
            and name != col.CERTAINTY_COLUMN
            and row[name].lower() == "true"
        )
        ellipses.append(
            Ellipse(
                cells.number("xmin"),
                cells.number("ymin"),
                cells.number("xmax"),
                cells.number("ymax"),
                cells.integer(col.CERTAINTY_COLUMN),
                present | extra,
            )
        )
    return tuple(ellipses)


def _read_chest_box(path: Path) -> Box | None:
    if not path.exists():
        return None
    for line, row in _rows(path, col.BOX_COLUMNS):
        cells = _Cells(path, line, row)
        x0, y0, x1, y1 = (cells.number(name) for name in col.BOX_COLUMNS)
        return Box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
    return None


def read_metadata(path: Path, phase: int) -> list[ReflacxReading]:
    """The rows of one ``metadata_phase_<phase>.csv`` (without their folders' data)."""
    labels = col.label_columns(phase)
    booleans = col.boolean_labels(phase)
    readings = []
    for line, row in _rows(path, col.METADATA_COLUMNS):
        cells = _Cells(path, line, row)
        values: dict[str, int | bool] = {}
        for label in labels:
            if label == col.OTHER_LABEL or label not in row:
                continue
            values[label] = (
                cells.boolean(label) if label in booleans else round(cells.number(label) if row[label] else 0)
            )
        other = tuple(item for item in row.get(col.OTHER_LABEL, "").split("|") if item)
        readings.append(
            ReflacxReading(
                id=cells.text("id"),
                phase=phase,
                split=cells.text("split"),
                eye_tracking_data_discarded=cells.boolean("eye_tracking_data_discarded"),
                image=cells.text("image"),
                dicom_id=cells.text("dicom_id"),
                subject_id=cells.text("subject_id"),
                image_size_x=cells.integer("image_size_x"),
                image_size_y=cells.integer("image_size_y"),
                labels=values,
                other=other,
            )
        )
    return readings


def read_reading(main_data: Path, reading: ReflacxReading) -> ReflacxReading:
    """``reading`` (a metadata row) with the contents of its folder."""
    folder = main_data / reading.id
    if not folder.is_dir():
        raise ReflacxFormatError(f"{folder}: the folder of reading {reading.id} (listed in the metadata) is missing")
    labels = col.label_columns(reading.phase)
    ellipses_path = folder / col.ELLIPSES_FILE
    ellipses = _read_ellipses(ellipses_path, labels) if ellipses_path.exists() else ()
    chest_box = _read_chest_box(folder / col.CHEST_BOX_FILE)
    if reading.eye_tracking_data_discarded:
        return _with(reading, ellipses=ellipses, chest_box=chest_box)
    transcription_path = folder / col.TRANSCRIPTION_FILE
    if not transcription_path.exists():
        raise ReflacxFormatError(f"{transcription_path}: file is missing")
    return _with(
        reading,
        fixations=_read_fixations(folder / col.FIXATIONS_FILE),
        words=_read_words(folder / col.TRANSCRIPTION_TIMESTAMPS_FILE),
        transcription=transcription_path.read_text(encoding="utf-8").strip(),
        ellipses=ellipses,
        chest_box=chest_box,
    )


def _with(reading: ReflacxReading, **changes: object) -> ReflacxReading:
    return dataclasses.replace(reading, **changes)  # type: ignore[arg-type]


def read_reflacx(root: Path, phases: Iterable[int] | None = None) -> list[ReflacxReading]:
    """Every reading of the data set under ``root`` (all phases found, or only ``phases``)."""
    main_data = find_main_data(root)
    wanted = set(phases) if phases is not None else None
    readings: list[ReflacxReading] = []
    for path in sorted(main_data.iterdir()):
        match = _METADATA_PATTERN.match(path.name)
        if match is None:
            continue
        phase = int(match.group(1))
        if wanted is not None and phase not in wanted:
            continue
        try:
            col.label_columns(phase)
        except ValueError as exc:
            raise ReflacxFormatError(f"{path}: {exc}") from None
        readings += [read_reading(main_data, row) for row in read_metadata(path, phase)]
    return readings
