"""Where a radiologist looked while dictating a sentence: visual clues and a holistic region.

This is GazeX's idea (``preprocessing_scripts/Bounding_Box_Centroid_Phase_*.py``), restated
for REFLACX's fixations:

1. **Sentences.** The dictation's words are grouped into sentences at each "." word; a
   sentence spans from its first word's start to its last word's end.
2. **Window.** The fixations of a sentence are those overlapping
   ``[start - lead_seconds, end]``: radiologists look before they speak (GazeX uses 2 s).
3. **Visual clues.** The window's fixations are clustered with DBSCAN (radius
   ``eps_degrees`` of visual angle, at least ``min_samples`` fixations); fixations in no
   cluster are dropped as stray glances.  Each cluster becomes a region: the box around its
   fixations grown by ``foveal_degrees`` (the sharply seen area around a fixation point),
   and the fixation-duration-weighted mean position as its centroid.  Clues are ordered by
   their fixations' mean time.
4. **Holistic region.** All clustered fixations of the window (all of them when none
   cluster): the same box-and-centroid construction.  It is the observation region of a
   sentence that has no ellipse (see :mod:`inference.training.ellipses`).

Visual angle is converted to pixels with the fixations' own
``angular_resolution_*_pixels_per_degree`` (REFLACX records them per fixation); when they
are missing, with ``max(rows, columns) / 45`` (a chest image filling a reading monitor).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from inference.reflacx.model import ReflacxFixation, TranscribedWord
from inference.results import Box, Point, Region
from inference.training.clustering import NOISE, dbscan


@dataclass(frozen=True, slots=True)
class DictatedSentence:
    """One sentence of a dictation, with the time it was spoken (seconds from the audio start)."""

    text: str
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class AttentionSettings:
    lead_seconds: float = 2.0
    eps_degrees: float = 2.0
    min_samples: int = 2
    foveal_degrees: float = 1.0

    def __post_init__(self) -> None:
        if self.lead_seconds < 0 or self.eps_degrees <= 0 or self.min_samples < 1 or self.foveal_degrees < 0:
            raise ValueError(f"invalid attention settings {self}")


@dataclass(frozen=True)
class SentenceAttention:
    """The clues (in time order) and the holistic region of one sentence; empty without fixations."""

    clues: tuple[Region, ...]
    holistic: Region | None


def join_words(words: Sequence[str]) -> str:
    """Dictated words as text: "no pneumothorax ." -> "no pneumothorax." (REFLACX's inverse)."""
    return " ".join(words).replace(" .", ".").replace(" ,", ",")


def dictated_sentences(words: Sequence[TranscribedWord]) -> list[DictatedSentence]:
    """The sentences of a dictation, split at each "." word; trailing words form a last sentence."""
    sentences: list[DictatedSentence] = []
    current: list[TranscribedWord] = []
    for word in words:
        current.append(word)
        if word.word == ".":
            if len(current) > 1:
                sentences.append(
                    DictatedSentence(join_words([w.word for w in current]), current[0].start, current[-1].end)
                )
            current = []
    if current and any(w.word not in {".", ","} for w in current):
        sentences.append(DictatedSentence(join_words([w.word for w in current]), current[0].start, current[-1].end))
    return sentences


def window_fixations(
    fixations: Sequence[ReflacxFixation], sentence: DictatedSentence, lead_seconds: float
) -> list[ReflacxFixation]:
    """The fixations overlapping ``[sentence.start - lead_seconds, sentence.end]``."""
    start = sentence.start - lead_seconds
    return [f for f in fixations if f.end >= start and f.start <= sentence.end]


def pixels_per_degree(fixations: Sequence[ReflacxFixation], rows: int, columns: int) -> float:
    """The mean recorded angular resolution, or the monitor-filling default."""
    values = [
        (f.pixels_per_degree_x + f.pixels_per_degree_y) / 2.0
        for f in fixations
        if f.pixels_per_degree_x and f.pixels_per_degree_y
    ]
    return float(np.mean(values)) if values else max(rows, columns) / 45.0


def region_of(fixations: Sequence[ReflacxFixation], margin: float, rows: int, columns: int) -> Region:
    """The box around the fixations grown by ``margin``, clipped; centroid weighted by duration."""
    xs = np.array([f.x for f in fixations])
    ys = np.array([f.y for f in fixations])
    weights = np.array([max(f.duration, 1e-3) for f in fixations])
    box = Box(float(xs.min()) - margin, float(ys.min()) - margin, float(xs.max()) + margin, float(ys.max()) + margin)
    box = box.clipped(rows, columns)
    cx = float(np.average(xs, weights=weights))
    cy = float(np.average(ys, weights=weights))
    centroid = Point(min(max(cx, box.x0), box.x1), min(max(cy, box.y0), box.y1))
    return Region(box, centroid)


def sentence_attention(
    fixations: Sequence[ReflacxFixation],
    sentence: DictatedSentence,
    rows: int,
    columns: int,
    settings: AttentionSettings | None = None,
) -> SentenceAttention:
    """The visual clues and holistic region of one sentence."""
    settings = settings or AttentionSettings()
    window = window_fixations(fixations, sentence, settings.lead_seconds)
    if not window:
        return SentenceAttention((), None)
    ppd = pixels_per_degree(window, rows, columns)
    points = np.array([[f.x, f.y] for f in window], dtype=np.float64)
    labels = dbscan(points, settings.eps_degrees * ppd, settings.min_samples)
    margin = settings.foveal_degrees * ppd
    groups: list[list[ReflacxFixation]] = [
        [f for f, label in zip(window, labels, strict=True) if label == cluster]
        for cluster in range(int(labels.max()) + 1)
    ]
    groups.sort(key=lambda group: float(np.mean([(f.start + f.end) / 2.0 for f in group])))
    clues = tuple(region_of(group, margin, rows, columns) for group in groups)
    clustered = [f for f, label in zip(window, labels, strict=True) if label != NOISE] or window
    return SentenceAttention(clues, region_of(clustered, margin, rows, columns))
