"""Write readings in REFLACX's layout: ``main_data/metadata_phase_<p>.csv`` and ``main_data/<id>/``.

Values are formatted as the published files have them: CRLF line endings, ``True``/``False``
for Booleans, pixel coordinates and angular resolutions as integers, timestamps rounded to
milliseconds, pupil area to 3 decimals and window values to 5.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path

from inference.reflacx import columns as col
from inference.reflacx.model import ReflacxReading


def _number(value: float | None, decimals: int) -> str:
    if value is None:
        return ""
    if decimals == 0:
        return str(round(value))
    return repr(round(float(value), decimals))


def _bool(value: bool) -> str:
    return "True" if value else "False"


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow(header)
        writer.writerows(rows)


def _label_value(reading: ReflacxReading, label: str, phase: int) -> str:
    if label == col.OTHER_LABEL:
        return "|".join(reading.other)
    value = reading.labels.get(label, False if label in col.boolean_labels(phase) else 0)
    if label in col.boolean_labels(phase):
        return _bool(bool(value))
    return str(int(value))


def write_metadata(main_data: Path, phase: int, readings: Sequence[ReflacxReading]) -> Path:
    """Write ``metadata_phase_<phase>.csv`` for ``readings`` (all of that phase)."""
    labels = col.label_columns(phase)
    path = main_data / col.METADATA_FILE.format(phase=phase)
    rows = []
    for reading in readings:
        if reading.phase != phase:
            raise ValueError(f"reading {reading.id} is from phase {reading.phase}, not {phase}")
        rows.append(
            [
                reading.id,
                reading.split,
                _bool(reading.eye_tracking_data_discarded),
                reading.image,
                reading.dicom_id,
                reading.subject_id,
                str(reading.image_size_x),
                str(reading.image_size_y),
                *(_label_value(reading, label, phase) for label in labels),
            ]
        )
    _write_csv(path, (*col.METADATA_COLUMNS, *labels), rows)
    return path


def write_reading(main_data: Path, reading: ReflacxReading) -> Path:
    """Write one reading's folder ``main_data/<id>/``; returns the folder."""
    folder = main_data / reading.id
    folder.mkdir(parents=True, exist_ok=True)
    labels = col.label_columns(reading.phase)
    _write_csv(
        folder / col.ELLIPSES_FILE,
        (*col.BOX_COLUMNS, col.CERTAINTY_COLUMN, *labels),
        (
            [
                _number(e.xmin, 0),
                _number(e.ymin, 0),
                _number(e.xmax, 0),
                _number(e.ymax, 0),
                str(e.certainty),
                *(_bool(label in e.labels) for label in labels),
            ]
            for e in reading.ellipses
        ),
    )
    if reading.chest_box is not None:
        box = reading.chest_box
        _write_csv(
            folder / col.CHEST_BOX_FILE,
            col.BOX_COLUMNS,
            [[_number(box.x0, 0), _number(box.y0, 0), _number(box.x1, 0), _number(box.y1, 0)]],
        )
    if reading.eye_tracking_data_discarded:
        return folder
    _write_csv(
        folder / col.FIXATIONS_FILE,
        col.FIXATION_COLUMNS,
        (
            [
                _number(f.start, 3),
                _number(f.end, 3),
                _number(f.x, 0),
                _number(f.y, 0),
                _number(f.pupil_area_normalized, 3),
                _number(f.pixels_per_degree_x, 0),
                _number(f.pixels_per_degree_y, 0),
                _number(f.window_width, 5),
                _number(f.window_level, 5),
                *(str(v) for v in (f.shown_from_image or ("",) * 4)),
                *(str(v) for v in (f.in_screen or ("",) * 4)),
            ]
            for f in reading.fixations
        ),
    )
    _write_csv(
        folder / col.TRANSCRIPTION_TIMESTAMPS_FILE,
        col.TRANSCRIPTION_COLUMNS,
        ([w.word, _number(w.start, 3), _number(w.end, 3)] for w in reading.words),
    )
    (folder / col.TRANSCRIPTION_FILE).write_text(reading.transcription, encoding="utf-8")
    return folder


def write_reflacx(root: Path, readings: Sequence[ReflacxReading]) -> Path:
    """Write ``readings`` under ``root/main_data`` (one metadata table per phase); returns main_data."""
    main_data = root / col.MAIN_DATA
    main_data.mkdir(parents=True, exist_ok=True)
    for phase in sorted({r.phase for r in readings}):
        write_metadata(main_data, phase, [r for r in readings if r.phase == phase])
    for reading in readings:
        write_reading(main_data, reading)
    return main_data
