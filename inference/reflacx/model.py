"""One REFLACX reading in memory: metadata, fixations, dictation, ellipses and chest box."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from inference.results import Box


class ReflacxFormatError(ValueError):
    """A REFLACX file is missing or does not have the published layout."""


@dataclass(frozen=True, slots=True)
class ReflacxFixation:
    """A row of ``fixations.csv``; positions are image pixels, times seconds from the audio start."""

    start: float
    end: float
    x: float
    y: float
    pupil_area_normalized: float | None = None
    pixels_per_degree_x: float | None = None
    pixels_per_degree_y: float | None = None
    window_width: float | None = None
    window_level: float | None = None
    shown_from_image: tuple[int, int, int, int] | None = None  # xmin, ymin, xmax, ymax
    in_screen: tuple[int, int, int, int] | None = None

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class TranscribedWord:
    """A row of ``timestamps_transcription.csv``: a word, or "." / "," / "/" as dictated."""

    word: str
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class Ellipse:
    """A row of ``anomaly_location_ellipses.csv``: the ellipse's extreme points, certainty and labels."""

    xmin: float
    ymin: float
    xmax: float
    ymax: float
    certainty: int
    labels: frozenset[str]

    @property
    def box(self) -> Box:
        return Box(
            min(self.xmin, self.xmax), min(self.ymin, self.ymax), max(self.xmin, self.xmax), max(self.ymin, self.ymax)
        )


@dataclass(frozen=True)
class ReflacxReading:
    """One reading (one radiologist, one chest x-ray): a row of the metadata table and its folder.

    ``labels`` holds each label column's value: a certainty 0-5, or a bool for the Boolean
    labels.  ``other`` is the "Other" column split on "|".  Readings whose eye-tracking data was
    discarded have no fixations, words or transcription.
    """

    id: str
    phase: int
    split: str
    eye_tracking_data_discarded: bool
    image: str
    dicom_id: str
    subject_id: str
    image_size_x: int
    image_size_y: int
    labels: Mapping[str, int | bool] = field(default_factory=dict)
    other: tuple[str, ...] = ()
    fixations: tuple[ReflacxFixation, ...] = ()
    words: tuple[TranscribedWord, ...] = ()
    transcription: str = ""
    ellipses: tuple[Ellipse, ...] = ()
    chest_box: Box | None = None
