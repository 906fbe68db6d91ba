"""Gaze-supervised attention: while it writes a sentence, the model looks where the reader looked.

This is what eye-tracking adds to a report: for every dictated sentence, REFLACX (and the
phantoms) record where the radiologist fixated while saying it.  The attention records already
hold that as the sentence's visual clues (the fixation clusters of its time window) and, for a
finding, its observation region.  Training can use it directly: at every position of the
examine answer that predicts a token of sentence *s*, some of the language model's attention
heads are asked to put their attention over the image tokens where the reader looked during
*s* (a cross-entropy between that gaze map and the heads' attention, renormalised over the
image tokens).

Why it is needed: a small language model trained only on the report's tokens attends to the
image almost uniformly, so it reads findings that cover many image tokens (cardiomegaly,
consolidation) and misses those that cover one or two (a nodule, a blunted costophrenic angle),
although the image tokens carry them.  The position that predicts a sentence's first token
(the token that says whether the finding is there) is supervised with that sentence's map, so
the model learns to look at the right region *before* it decides.

Everything here is pure numpy on token offsets and regions, tested without a model; the
heads stay ordinary attention heads, and the checkpoint written is a plain Qwen2-VL.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from inference.geometry import CoordinateFrame, ModelRegion
from inference.parsing import parse_attention
from inference.sentences import split_sentences
from inference.training.data import TrainingRecord
from inference.training.grounding import cell_coverage, centre_cell

#: The observation region (the finding itself) weighs this much more, per cell, than the clues.
OBSERVATION_WEIGHT = 2.0


def sentence_key(sentence: str) -> str:
    """How a sentence is matched between the examine answer and the attention records."""
    return " ".join(sentence.lower().split())


def _cover(cells: npt.NDArray[np.float64], region: ModelRegion, to_x: float, to_y: float, weight: float) -> None:
    """Add ``weight`` times the fraction of each cell that ``region`` covers (model units -> cells
    by ``to_x``, ``to_y``); a degenerate or out-of-image region marks the cell under its centre."""
    rows, columns = cells.shape
    x0, x1 = sorted((region.x0 * to_x, region.x1 * to_x))
    y0, y1 = sorted((region.y0 * to_y, region.y1 * to_y))
    coverage = cell_coverage(rows, columns, (x0, y0, x1, y1))
    if coverage.any():
        cells += weight * coverage
    else:
        cells[centre_cell(rows, columns, (region.cx * to_x, region.cy * to_y))] += weight


def sentence_gaze_maps(
    records: Sequence[TrainingRecord],
    frame: CoordinateFrame,
    rows: int,
    columns: int,
    grid: tuple[int, int],
) -> dict[str, npt.NDArray[np.float32]]:
    """Each attention record's sentence (:func:`sentence_key`) -> a distribution over the image tokens.

    The map is where the reader looked while dictating the sentence: the area of each merged
    token cell that the visual clues cover, plus :data:`OBSERVATION_WEIGHT` times what the
    observation region covers, normalised to sum to 1; tokens in row-major order.  ``rows`` x
    ``columns`` is the source image size the records' coordinates refer to.  Sentences whose
    answer holds no region get no map.
    """
    grid_rows, grid_columns = grid
    sx, sy = frame.source_pixels_per_unit(rows, columns)
    to_x, to_y = sx * grid_columns / columns, sy * grid_rows / rows  # model units -> cells
    maps: dict[str, npt.NDArray[np.float32]] = {}
    for record in records:
        if record.task != "attention" or record.sentence is None:
            continue
        parsed = parse_attention(record.answer)
        cells = np.zeros((grid_rows, grid_columns), dtype=np.float64)
        for clue in parsed.clues:
            _cover(cells, clue, to_x, to_y, 1.0)
        if parsed.observation is not None:
            _cover(cells, parsed.observation, to_x, to_y, OBSERVATION_WEIGHT)
        total = float(cells.sum())
        if total > 0:
            maps[sentence_key(record.sentence)] = (cells / total).reshape(-1).astype(np.float32)
    return maps


def sentence_spans(text: str) -> list[tuple[int, int, str]]:
    """The character span of each of ``text``'s sentences (:func:`inference.sentences.split_sentences`)."""
    spans: list[tuple[int, int, str]] = []
    cursor = 0
    for sentence in split_sentences(text):
        pattern = r"\s+".join(re.escape(word) for word in sentence.split())
        match = re.compile(pattern).search(text, cursor)
        if match is None:  # cannot happen for split_sentences' own output; skip rather than guess
            continue
        spans.append((match.start(), match.end(), sentence))
        cursor = match.end()
    return spans


def answer_gaze_targets(
    answer: str,
    token_starts: Sequence[int],
    maps: dict[str, npt.NDArray[np.float32]],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Which of the answer's tokens are supervised, and the gaze map of each.

    ``token_starts`` is each answer token's first character in ``answer`` (tokens past its end,
    such as ``<|im_end|>``, have none).  A token belongs to the first sentence that ends after
    it starts, so the white space before a sentence goes with that sentence; a sentence with a
    map gives it to all its tokens.  Returns the token indices, ``(n,)``, and their maps,
    ``(n, cells)``.
    """
    spans = sentence_spans(answer)
    indices: list[int] = []
    targets: list[npt.NDArray[np.float32]] = []
    span = 0
    for index, start in enumerate(token_starts):
        if start >= len(answer):
            break
        while span < len(spans) and spans[span][1] <= start:
            span += 1
        if span == len(spans):
            break
        found = maps.get(sentence_key(spans[span][2]))
        if found is not None:
            indices.append(index)
            targets.append(found)
    if not indices:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
    return np.asarray(indices, dtype=np.int64), np.stack(targets)
