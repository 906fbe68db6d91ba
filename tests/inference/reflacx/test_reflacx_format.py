"""REFLACX files: exact column names, a write-then-read round trip, and clear errors."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import pytest

from inference.demo import PhantomConfig, generate_phantom, phantom_reading
from inference.reflacx import ReflacxFormatError, ReflacxReading, label_columns, read_reflacx, write_reflacx
from inference.reflacx import columns as col
from inference.reflacx.model import Ellipse, ReflacxFixation, TranscribedWord
from inference.results import Box

#: The columns as the REFLACX description on PhysioNet lists them (phase 3).
PUBLISHED_FIXATION_COLUMNS = [
    "timestamp_start_fixation",
    "timestamp_end_fixation",
    "x_position",
    "y_position",
    "pupil_area_normalized",
    "angular_resolution_x_pixels_per_degree",
    "angular_resolution_y_pixels_per_degree",
    "window_width",
    "window_level",
    "xmin_shown_from_image",
    "ymin_shown_from_image",
    "xmax_shown_from_image",
    "ymax_shown_from_image",
    "xmin_in_screen_coordinates",
    "ymin_in_screen_coordinates",
    "xmax_in_screen_coordinates",
    "ymax_in_screen_coordinates",
]
PUBLISHED_PHASE_3_LABELS = [
    "Abnormal mediastinal contour",
    "Acute fracture",
    "Atelectasis",
    "Consolidation",
    "Enlarged cardiac silhouette",
    "Enlarged hilum",
    "Groundglass opacity",
    "Hiatal hernia",
    "High lung volume / emphysema",
    "Interstitial lung disease",
    "Lung nodule or mass",
    "Other",
    "Pleural abnormality",
    "Pneumothorax",
    "Pulmonary edema",
    "Support devices",
]


def _header(path: Path) -> list[str]:
    with path.open(newline="") as handle:
        return next(csv.reader(handle))


@pytest.fixture
def readings() -> list[ReflacxReading]:
    config = PhantomConfig(rows=(300, 360))
    return [phantom_reading(generate_phantom(5, i, config), f"images/{i}.png") for i in range(3)]


def test_files_have_the_published_names_columns_and_line_endings(
    tmp_path: Path, readings: list[ReflacxReading]
) -> None:
    main_data = write_reflacx(tmp_path, readings)
    metadata = main_data / "metadata_phase_3.csv"
    assert _header(metadata) == [
        "id",
        "split",
        "eye_tracking_data_discarded",
        "image",
        "dicom_id",
        "subject_id",
        "image_size_x",
        "image_size_y",
        *PUBLISHED_PHASE_3_LABELS,
    ]
    folder = main_data / readings[0].id
    assert sorted(p.name for p in folder.iterdir()) == [
        "anomaly_location_ellipses.csv",
        "chest_bounding_box.csv",
        "fixations.csv",
        "timestamps_transcription.csv",
        "transcription.txt",
    ]
    assert _header(folder / "fixations.csv") == PUBLISHED_FIXATION_COLUMNS
    assert _header(folder / "timestamps_transcription.csv") == ["word", "timestamp_start_word", "timestamp_end_word"]
    assert _header(folder / "chest_bounding_box.csv") == ["xmin", "ymin", "xmax", "ymax"]
    assert _header(folder / "anomaly_location_ellipses.csv") == [
        "xmin",
        "ymin",
        "xmax",
        "ymax",
        "certainty",
        *PUBLISHED_PHASE_3_LABELS,
    ]
    assert b"\r\n" in metadata.read_bytes()
    # REFLACX's own invariant between the transcription and its word table
    words = [row[0] for row in csv.reader((folder / "timestamps_transcription.csv").open(newline=""))][1:]
    text = (folder / "transcription.txt").read_text()
    assert text.replace(".", " .").replace(",", " ,") == " ".join(words)


def test_write_then_read_gives_the_readings_back(tmp_path: Path, readings: list[ReflacxReading]) -> None:
    write_reflacx(tmp_path, readings)
    back = read_reflacx(tmp_path)
    assert [r.id for r in back] == [r.id for r in readings]
    for original, read in zip(readings, back, strict=True):
        for field in (
            "phase",
            "split",
            "eye_tracking_data_discarded",
            "image",
            "dicom_id",
            "subject_id",
            "transcription",
        ):
            assert getattr(read, field) == getattr(original, field), field
        assert (read.image_size_x, read.image_size_y) == (original.image_size_x, original.image_size_y)
        assert dict(read.labels) == {
            label: original.labels.get(label, 0) for label in read.labels if label != "Support devices"
        } | {"Support devices": bool(original.labels.get("Support devices", False))}
        assert read.words == original.words
        assert len(read.fixations) == len(original.fixations)
        for a, b in zip(read.fixations, original.fixations, strict=True):
            assert (a.start, a.end, a.x, a.y) == (b.start, b.end, b.x, b.y)
            assert a.pupil_area_normalized == b.pupil_area_normalized
            assert a.shown_from_image == b.shown_from_image and a.in_screen == b.in_screen
        assert [(e.box, e.certainty, e.labels) for e in read.ellipses] == [
            (Box(round(e.xmin), round(e.ymin), round(e.xmax), round(e.ymax)), e.certainty, e.labels)
            for e in original.ellipses
        ]
        assert read.chest_box == original.chest_box


def test_phase_1_and_discarded_readings_round_trip(tmp_path: Path) -> None:
    reading = ReflacxReading(
        id="P102R000001",
        phase=1,
        split="test",
        eye_tracking_data_discarded=True,
        image="physionet.org/files/mimic-cxr/2.0.0/files/p10/p10000001/s50000001/abc.dcm",
        dicom_id="abc",
        subject_id="10000001",
        image_size_x=2544,
        image_size_y=3056,
        labels={"Nodule": 4, "Quality issue": True, "Support devices": False},
        other=("hernia", "scoliosis"),
        ellipses=(Ellipse(10, 20, 110, 220, 4, frozenset({"Nodule"})),),
        chest_box=Box(5, 6, 2500, 3000),
    )
    write_reflacx(tmp_path, [reading])
    assert _header(tmp_path / "main_data" / "metadata_phase_1.csv")[8:] == list(label_columns(1))
    assert "Quality issue" in label_columns(1) and "Wide mediastinum" in label_columns(1)
    (back,) = read_reflacx(tmp_path)
    assert back.eye_tracking_data_discarded and back.fixations == () and back.words == ()
    assert back.labels["Nodule"] == 4 and back.labels["Quality issue"] is True and back.labels["Mass"] == 0
    assert back.other == ("hernia", "scoliosis")
    assert back.ellipses == reading.ellipses
    assert not (tmp_path / "main_data" / reading.id / "fixations.csv").exists()


def test_pandas_style_values_are_accepted(tmp_path: Path, readings: list[ReflacxReading]) -> None:
    main_data = write_reflacx(tmp_path, readings[:1])
    metadata = main_data / "metadata_phase_3.csv"
    text = metadata.read_text()
    header, row = text.splitlines()[:2]
    cells = row.split(",")
    cells[6] = cells[6] + ".0"  # image_size_x as pandas writes a float column
    metadata.write_text(header + "\r\n" + ",".join(cells) + "\r\n")
    (back,) = read_reflacx(main_data)  # main_data itself is accepted as the root too
    assert back.image_size_x == readings[0].image_size_x


def test_a_missing_column_names_the_file_and_the_column(tmp_path: Path, readings: list[ReflacxReading]) -> None:
    main_data = write_reflacx(tmp_path, readings[:1])
    fixations = main_data / readings[0].id / "fixations.csv"
    lines = fixations.read_text().splitlines()
    fixations.write_text("\r\n".join([lines[0].replace("x_position", "x_pos"), *lines[1:]]) + "\r\n")
    with pytest.raises(ReflacxFormatError, match=r"fixations\.csv: missing column\(s\) x_position"):
        read_reflacx(tmp_path)


def test_a_bad_value_names_the_line_and_the_column(tmp_path: Path, readings: list[ReflacxReading]) -> None:
    main_data = write_reflacx(tmp_path, readings[:1])
    words = main_data / readings[0].id / "timestamps_transcription.csv"
    lines = words.read_text().splitlines()
    lines[2] = "word,soon,1.0"
    words.write_text("\r\n".join(lines) + "\r\n")
    with pytest.raises(ReflacxFormatError, match=r"timestamps_transcription\.csv:3: column 'timestamp_start_word'"):
        read_reflacx(tmp_path)


def test_missing_data_sets_and_folders_are_reported(tmp_path: Path, readings: list[ReflacxReading]) -> None:
    with pytest.raises(ReflacxFormatError, match="no metadata_phase"):
        read_reflacx(tmp_path)
    write_reflacx(tmp_path, readings[:1])
    for child in (tmp_path / "main_data" / readings[0].id).iterdir():
        child.unlink()
    (tmp_path / "main_data" / readings[0].id).rmdir()
    with pytest.raises(ReflacxFormatError, match="folder of reading P300R000000"):
        read_reflacx(tmp_path)


def test_the_column_lists_match_the_published_ones() -> None:
    assert list(col.FIXATION_COLUMNS) == PUBLISHED_FIXATION_COLUMNS
    assert list(label_columns(3)) == PUBLISHED_PHASE_3_LABELS == list(label_columns(2))
    with pytest.raises(ValueError, match="phases 1, 2 and 3"):
        label_columns(4)
    fixation = ReflacxFixation(1.0, 1.25, 3.0, 4.0)
    assert fixation.duration == 0.25
    assert dataclasses.replace(TranscribedWord("a", 0.0, 1.0), word=".").word == "."
