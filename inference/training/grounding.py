"""Dense grounding targets: which of an image's tokens each present finding covers (training only).

A report-level loss teaches a small vision tower trained from scratch very slowly: one image
gives the examine task one bit per finding, and the language model learns the report's
prior long before the vision tower learns to see.  The attention records already say *where*
each stated finding is (their observation region), so training can also ask the vision side
directly: for every merged image token (what the language model receives), which findings'
observation regions cover it.  That is a per-token multi-label target, dozens of labelled
positions per image instead of a handful of report tokens.

The labels are the finding labels that the attention records' sentences state as present
(:func:`inference.labeller.label_sentence`), and the regions are those records' observation
boxes, mapped from the model's coordinate frame onto the merged token grid.  This works the
same for REFLACX and for phantoms.  The head that reads the targets is training-only; the
checkpoint written is a plain Qwen2-VL.

With ``sides``, a label is also split by the side the sentence names (``pleural_effusion:right``,
``:left``, ``:bilateral``; a sentence that names none keeps the plain label).  A Qwen2-VL's image
tokens carry no absolute position, only rotary (relative) ones, so nothing else makes an image
token say which side of the chest it lies on; a report's "left" or "right" must then come from the
language model comparing positions, which a small one learns last.  Side-specific targets make the
vision tower encode the side in each token (from the anatomy around it: heart, mediastinum), and
the presence head (which reads the same labels) makes the language model's state say it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from inference.geometry import CoordinateFrame
from inference.labeller import label_sentence, sentence_side
from inference.parsing import parse_attention
from inference.training.data import TrainingRecord

#: Labels that never get a region of their own.
UNGROUNDED_LABELS = frozenset({"no_finding", "other"})

#: A cell counts as covered when the box covers at least this fraction of it (the cell under
#: the box's centre always counts, so a box smaller than a cell still marks one).
MIN_COVERAGE = 0.3


def _present_label(record: TrainingRecord, sides: bool = False) -> str | None:
    if record.task != "attention" or record.sentence is None:
        return None
    stated = label_sentence(record.sentence)
    if not stated.present or stated.label in UNGROUNDED_LABELS:
        return None
    side = sentence_side(record.sentence) if sides else None
    return stated.label if side is None else f"{stated.label}:{side}"


def grounding_labels(records: Sequence[TrainingRecord], sides: bool = False) -> list[str]:
    """The labels some attention record states as present, sorted (the head's outputs); with
    ``sides``, split by the side the sentence names."""
    return sorted({label for record in records if (label := _present_label(record, sides)) is not None})


def label_kind(label: str) -> str:
    """A grounding label without its side: ``pleural_effusion:right`` -> ``pleural_effusion``."""
    return label.split(":", 1)[0]


def kind_scale(labels: Sequence[str]) -> float:
    """How many labels there are per finding kind (1.0 without sides; 1.0 for no labels).

    The grounding and presence losses are means over their labels, so splitting labels by side
    would shrink every kind's share of the gradient, the unsided ones (the endotracheal tube)
    most: 8 kinds became 15 labels in the demo records.  The trainer multiplies those losses by
    this factor, which makes them sums over labels divided by the number of kinds: each label
    weighs what one kind weighed without sides (a finding's positive cells mark one label, of its
    side, so they weigh as before).
    """
    kinds = {label_kind(label) for label in labels}
    return len(labels) / len(kinds) if kinds else 1.0


def cell_coverage(rows: int, columns: int, box: tuple[float, float, float, float]) -> npt.NDArray[np.float64]:
    """The fraction of each cell of a ``rows`` x ``columns`` grid that ``box`` (x0, y0, x1, y1, in
    cell units, ordered) covers."""
    coverage = np.zeros((rows, columns), dtype=np.float64)
    x0, y0, x1, y1 = box
    for row in range(max(0, math.floor(y0)), min(rows, math.ceil(y1))):
        height = min(y1, row + 1) - max(y0, row)
        for col in range(max(0, math.floor(x0)), min(columns, math.ceil(x1))):
            width = min(x1, col + 1) - max(x0, col)
            if width > 0 and height > 0:
                coverage[row, col] = width * height
    return coverage


def centre_cell(rows: int, columns: int, centre: tuple[float, float]) -> tuple[int, int]:
    """The grid cell under a point (in cell units), clamped to the grid: (row, column)."""
    cx, cy = centre
    return min(rows - 1, max(0, math.floor(cy))), min(columns - 1, max(0, math.floor(cx)))


def _cover(
    targets: npt.NDArray[np.float32],
    column: int,
    box: tuple[float, float, float, float],
    centre: tuple[float, float],
) -> None:
    """Mark the cells of ``targets[:, :, column]`` that the box (in cell units) covers."""
    rows, columns = targets.shape[:2]
    targets[cell_coverage(rows, columns, box) >= MIN_COVERAGE, column] = 1.0
    targets[(*centre_cell(rows, columns, centre), column)] = 1.0


def grid_positions(rows: int, columns: int) -> npt.NDArray[np.float32]:
    """``(rows * columns, 2)``: each cell's centre as (row, column) fractions of the grid's sides,
    cells in row-major order (the order of a Qwen2-VL's merged image tokens)."""
    row, column = np.meshgrid((np.arange(rows) + 0.5) / rows, (np.arange(columns) + 0.5) / columns, indexing="ij")
    return np.stack([row.ravel(), column.ravel()], axis=1).astype(np.float32)


def token_targets(
    records: Sequence[TrainingRecord],
    labels: Sequence[str],
    frame: CoordinateFrame,
    rows: int,
    columns: int,
    grid: tuple[int, int],
    sides: bool = False,
) -> npt.NDArray[np.float32]:
    """``(grid rows * grid columns, len(labels))`` 0/1 targets, tokens in row-major order.

    ``rows`` x ``columns`` is the source image size the records' coordinates refer to; ``grid``
    is the merged token grid (Qwen2-VL: the patch grid divided by the merge size).  ``sides`` as
    for :func:`grounding_labels`.
    """
    grid_rows, grid_columns = grid
    targets = np.zeros((grid_rows, grid_columns, len(labels)), dtype=np.float32)
    index = {label: i for i, label in enumerate(labels)}
    sx, sy = frame.source_pixels_per_unit(rows, columns)
    to_x, to_y = sx * grid_columns / columns, sy * grid_rows / rows  # model units -> cells
    for record in records:
        label = _present_label(record, sides)
        if label is None or label not in index:
            continue
        observation = parse_attention(record.answer).observation
        if observation is None:
            continue
        x0, x1 = sorted((observation.x0 * to_x, observation.x1 * to_x))
        y0, y1 = sorted((observation.y0 * to_y, observation.y1 * to_y))
        _cover(targets, index[label], (x0, y0, x1, y1), (observation.cx * to_x, observation.cy * to_y))
    return targets.reshape(grid_rows * grid_columns, len(labels))
