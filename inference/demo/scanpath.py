"""A synthetic reading: the dictation's word timestamps and the radiologist's fixations.

It follows how REFLACX was recorded: timestamps count seconds from the start of the audio
recording; the reader first surveys the whole chest, then for each sentence looks at the
regions it concerns (a pause of a few seconds before speaking, longer for an abnormality)
and keeps looking there while dictating it.  Fixations last a few hundred milliseconds
(log-normal), longer on abnormalities; saccades between them take 20-60 ms; positions scatter
around each target with about 0.3 degrees of fixation noise, and an occasional stray fixation
lands anywhere in the chest.  Punctuation is dictated, so periods and commas are words with
their own timestamps, as in REFLACX's ``timestamps_transcription.csv``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from inference.demo.anatomy import Anatomy
from inference.demo.reports import ReportSentence
from inference.results import Box


@dataclass(frozen=True, slots=True)
class Word:
    """One dictated word (or punctuation mark) with its start and end, in seconds."""

    text: str
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class GazeFixation:
    """One fixation: when it started and ended (seconds) and where (source pixels)."""

    start: float
    end: float
    x: float
    y: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Reading:
    """A dictated reading: words, fixations, and each sentence's (gaze start, speech start, end)."""

    words: tuple[Word, ...]
    fixations: tuple[GazeFixation, ...]
    spans: tuple[tuple[float, float, float], ...]


def tokenize(text: str) -> list[str]:
    """Split a sentence into dictated words the way REFLACX does: periods and commas are words."""
    return text.replace(".", " .").replace(",", " ,").split()


def _dictate(rng: np.random.Generator, text: str, start: float) -> list[Word]:
    words = []
    time = start
    for token in tokenize(text):
        time += rng.uniform(0.02, 0.1)
        if token in {".", ","}:
            duration = rng.uniform(0.25, 0.4)  # "period", "comma"
        else:
            duration = (0.1 + 0.055 * len(token)) * rng.uniform(0.85, 1.15)
        words.append(Word(token, round(time, 3), round(time + duration, 3)))
        time += duration
    return words


def _fixate(
    rng: np.random.Generator,
    anatomy: Anatomy,
    targets: tuple[Box, ...],
    start: float,
    end: float,
    dwell: float,
    uniform: bool = False,
) -> list[GazeFixation]:
    """Fixations filling [start, end], visiting ``targets`` in order for equal shares of time."""
    fixations: list[GazeFixation] = []
    noise = 0.3 * anatomy.pixels_per_degree()
    chest = anatomy.chest_box()
    time = start
    while True:
        duration = min(max(rng.lognormal(math.log(0.24 * dwell), 0.35), 0.08), 1.2)
        stop = min(time + duration, end)
        if stop - time < 0.06:
            break
        share = min(int((time - start) / (end - start) * len(targets)), len(targets) - 1)
        target = targets[share]
        if uniform:
            x, y = rng.uniform(target.x0, target.x1), rng.uniform(target.y0, target.y1)
        elif rng.random() < 0.05:
            x, y = rng.uniform(chest.x0, chest.x1), rng.uniform(chest.y0, chest.y1)
        else:
            cx, cy = (target.x0 + target.x1) / 2.0, (target.y0 + target.y1) / 2.0
            x = min(max(rng.normal(cx, target.width / 4.0), target.x0), target.x1)
            y = min(max(rng.normal(cy, target.height / 4.0), target.y0), target.y1)
        x = min(max(x + rng.normal(0.0, noise), 0.0), anatomy.columns - 1.0)
        y = min(max(y + rng.normal(0.0, noise), 0.0), anatomy.rows - 1.0)
        fixations.append(GazeFixation(round(time, 3), round(stop, 3), x, y))
        time = stop + rng.uniform(0.02, 0.06)
    return fixations


def simulate_reading(rng: np.random.Generator, anatomy: Anatomy, sentences: tuple[ReportSentence, ...]) -> Reading:
    """Dictate ``sentences`` in order while fixating each one's targets."""
    words: list[Word] = []
    fixations: list[GazeFixation] = []
    spans: list[tuple[float, float, float]] = []
    time = rng.uniform(0.3, 0.8)
    survey_end = time + rng.uniform(1.5, 3.0)
    fixations += _fixate(rng, anatomy, (anatomy.chest_box(),), time, survey_end, 1.0, uniform=True)
    gaze_start = survey_end
    for sentence in sentences:
        abnormal = sentence.present and sentence.region is not None
        pause = rng.uniform(2.6, 4.2) if abnormal else rng.uniform(2.0, 3.2)
        spoken = _dictate(rng, sentence.text, gaze_start + pause)
        end = spoken[-1].end
        fixations += _fixate(rng, anatomy, sentence.targets, gaze_start, end, 1.4 if abnormal else 1.0)
        words += spoken
        spans.append((round(gaze_start, 3), spoken[0].start, end))
        gaze_start = end + 0.05
    return Reading(tuple(words), tuple(fixations), tuple(spans))
