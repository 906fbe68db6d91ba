"""Evaluation metrics for GazeX outputs against ground truth, as pure functions.

Both sides are lists (one per image) of :class:`Statement`: a report sentence's finding label
(a ``FINDING_LABELS`` key), whether it says the finding is present, its observation box and
its gaze centroids (the model's clue centroids, or the radiologist's fixation-cluster
centroids), all in source pixels.

**Findings** (:func:`finding_scores`, :func:`macro_f1`).  Per image, a label is *positive*
when some statement says it is present.  Per label, over images: a true positive is an image
where truth and prediction are both positive, a false positive where only the prediction is,
a false negative where only the truth is.  Precision = TP / (TP + FP), recall = TP / (TP +
FN), F1 their harmonic mean; each is 0 when its denominator is 0.  Macro F1 is the mean F1
over the labels *present in the data*, i.e. with at least one positive image in the truth.
Labels in ``ignore`` (default: ``other``) are left out; ``label_map`` can merge labels first
(e.g. ``{"nodule": "lung_lesion", "mass": "lung_lesion"}``).

**Matching** (:func:`match_statements`).  Within an image, truth and predicted statements
are paired when they have the same (label, present): pairs with boxes on both sides greedily
by highest IoU, the rest in order of appearance.

**Observation IoU** (:func:`observation_iou`).  The mean IoU between the observation boxes of
matched pairs whose truth is present and has a box (a predicted statement without a box
scores 0).  ``total`` counts all such truth statements, so missed findings are visible.

**Laterality** (:func:`side_agreement`).  Over matched pairs whose truth is present and names a
side ("right pleural effusion", "left internal jugular catheter"; :func:`inference.labeller.sentence_side`):
how many predicted sentences name the same side.  A pair is matched by label and presence only, so
a finding reported on the wrong side still pairs with the truth; its box is then usually on the
other side and scores an IoU near 0.  A predicted sentence that names no side disagrees.

**Trajectory alignment** (:func:`trajectory_alignment`), after the GazeX paper's comparison of
the model's attention centroids with radiologists' (``quantitative_metrics/
compare_gazex_radiologist_attention_centriods.py`` plots, per sentence, the ground-truth
centroid against the predicted one for x and for y).  Per matched pair, the predicted point
is the mean of the predicted clue centroids and the truth point the mean of the ground-truth
fixation-cluster centroids (each falls back to its observation box's centre).  Over the N
pairs, with G and P the truth and predicted points:

- ``cosine_x`` = sum(Gx Px) / (|Gx| |Px|), ``cosine_y`` likewise, and ``cosine`` over the
  2N-vectors (Gx..., Gy...) and (Px..., Py...): the paper's cosine similarity;
- ``cosine_centered``: the same after subtracting the mean x and mean y of each side (a
  Pearson-like correlation), reported because raw cosines of positive pixel coordinates are high even for
  unrelated points;
- ``mean_distance``: the mean Euclidean distance |G - P| in source pixels.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from inference.labeller import sentence_side
from inference.results import Box, Finding, Point

DEFAULT_IGNORE: frozenset[str] = frozenset({"other"})


@dataclass(frozen=True, slots=True)
class Statement:
    """One report sentence as the metrics see it."""

    label: str
    present: bool
    observation: Box | None = None
    centroids: tuple[Point, ...] = ()
    side: str | None = None  # the side the sentence names: right, left, bilateral; None


def statements_from_findings(findings: Iterable[Finding]) -> list[Statement]:
    """A model's findings (``ImageAnalysis.findings``) as statements."""
    return [
        Statement(
            f.label,
            f.present,
            f.observation.box if f.observation is not None else None,
            tuple(clue.centroid for clue in f.clues),
            sentence_side(f.text),
        )
        for f in findings
    ]


@dataclass(frozen=True, slots=True)
class LabelScore:
    label: str
    true_positives: int
    false_positives: int
    false_negatives: int

    @property
    def support(self) -> int:
        """Images where the truth is positive."""
        return self.true_positives + self.false_negatives

    @property
    def precision(self) -> float:
        denominator = self.true_positives + self.false_positives
        return self.true_positives / denominator if denominator else 0.0

    @property
    def recall(self) -> float:
        return self.true_positives / self.support if self.support else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2.0 * p * r / (p + r) if p + r else 0.0


def _mapped(label: str, label_map: Mapping[str, str] | None) -> str:
    return label_map.get(label, label) if label_map else label


def _check_lengths(truth: Sequence[object], predicted: Sequence[object]) -> None:
    if len(truth) != len(predicted):
        raise ValueError(f"truth has {len(truth)} images but predictions have {len(predicted)}")


def finding_scores(
    truth: Sequence[Sequence[Statement]],
    predicted: Sequence[Sequence[Statement]],
    ignore: frozenset[str] = DEFAULT_IGNORE,
    label_map: Mapping[str, str] | None = None,
) -> dict[str, LabelScore]:
    """Per-label counts over images (see the module docstring), sorted by label."""
    _check_lengths(truth, predicted)
    counts: dict[str, list[int]] = {}
    for truth_image, predicted_image in zip(truth, predicted, strict=True):
        positives = {_mapped(s.label, label_map) for s in truth_image if s.present}
        claimed = {_mapped(s.label, label_map) for s in predicted_image if s.present}
        for label in (positives | claimed) - ignore:
            tp_fp_fn = counts.setdefault(label, [0, 0, 0])
            tp_fp_fn[0] += int(label in positives and label in claimed)
            tp_fp_fn[1] += int(label in claimed and label not in positives)
            tp_fp_fn[2] += int(label in positives and label not in claimed)
    return {label: LabelScore(label, *counts[label]) for label in sorted(counts)}


def macro_f1(scores: Mapping[str, LabelScore], labels: Iterable[str] | None = None) -> float:
    """Mean F1 over ``labels``, or over the labels with positives in the truth; NaN when none."""
    chosen = list(labels) if labels is not None else [label for label, s in scores.items() if s.support > 0]
    if not chosen:
        return math.nan
    return float(np.mean([scores[label].f1 if label in scores else 0.0 for label in chosen]))


def match_statements(
    truth: Sequence[Statement],
    predicted: Sequence[Statement],
    ignore: frozenset[str] = DEFAULT_IGNORE,
    label_map: Mapping[str, str] | None = None,
) -> list[tuple[Statement, Statement]]:
    """Pairs (truth, predicted) of one image with the same (label, present)."""
    pairs: list[tuple[Statement, Statement]] = []
    keys = []
    for s in truth:
        key = (_mapped(s.label, label_map), s.present)
        if key[0] not in ignore and key not in keys:
            keys.append(key)
    for key in keys:
        left = [s for s in truth if (_mapped(s.label, label_map), s.present) == key]
        right = [s for s in predicted if (_mapped(s.label, label_map), s.present) == key]
        boxed = [
            (-a.observation.iou(b.observation), i, j)
            for i, a in enumerate(left)
            for j, b in enumerate(right)
            if a.observation is not None and b.observation is not None
        ]
        boxed.sort()
        used_left: set[int] = set()
        used_right: set[int] = set()
        for _, i, j in boxed:
            if i not in used_left and j not in used_right:
                used_left.add(i)
                used_right.add(j)
                pairs.append((left[i], right[j]))
        rest_left = [i for i in range(len(left)) if i not in used_left]
        rest_right = [j for j in range(len(right)) if j not in used_right]
        pairs += [(left[i], right[j]) for i, j in zip(rest_left, rest_right, strict=False)]
    return pairs


@dataclass(frozen=True, slots=True)
class IoUSummary:
    mean: float  # NaN when nothing matched
    matched: int
    total: int


def observation_iou(
    truth: Sequence[Sequence[Statement]],
    predicted: Sequence[Sequence[Statement]],
    ignore: frozenset[str] = DEFAULT_IGNORE,
    label_map: Mapping[str, str] | None = None,
) -> IoUSummary:
    """Mean observation-box IoU over matched present findings with a ground-truth box."""
    _check_lengths(truth, predicted)
    values: list[float] = []
    total = 0
    for truth_image, predicted_image in zip(truth, predicted, strict=True):
        total += sum(
            1
            for s in truth_image
            if s.present and s.observation is not None and _mapped(s.label, label_map) not in ignore
        )
        for t, p in match_statements(truth_image, predicted_image, ignore, label_map):
            if t.present and t.observation is not None:
                values.append(t.observation.iou(p.observation) if p.observation is not None else 0.0)
    return IoUSummary(float(np.mean(values)) if values else math.nan, len(values), total)


@dataclass(frozen=True, slots=True)
class SideSummary:
    agree: int  # pairs whose predicted sentence names the truth's side
    pairs: int  # matched present pairs whose truth names a side

    @property
    def rate(self) -> float:
        """``agree / pairs``; NaN when no pair names a side."""
        return self.agree / self.pairs if self.pairs else math.nan


def side_agreement(
    truth: Sequence[Sequence[Statement]],
    predicted: Sequence[Sequence[Statement]],
    ignore: frozenset[str] = DEFAULT_IGNORE,
    label_map: Mapping[str, str] | None = None,
) -> SideSummary:
    """How often a matched present finding is reported on the side the truth names."""
    _check_lengths(truth, predicted)
    agree = pairs = 0
    for truth_image, predicted_image in zip(truth, predicted, strict=True):
        for t, p in match_statements(truth_image, predicted_image, ignore, label_map):
            if t.present and t.side is not None:
                pairs += 1
                agree += int(p.side == t.side)
    return SideSummary(agree, pairs)


@dataclass(frozen=True, slots=True)
class TrajectoryAlignment:
    cosine_x: float
    cosine_y: float
    cosine: float
    cosine_centered: float
    mean_distance: float  # source pixels
    pairs: int


def _point(statement: Statement) -> tuple[float, float] | None:
    if statement.centroids:
        return (
            float(np.mean([c.x for c in statement.centroids])),
            float(np.mean([c.y for c in statement.centroids])),
        )
    if statement.observation is not None:
        centre = statement.observation.center
        return centre.x, centre.y
    return None


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.dot(a, b) / norm) if norm > 0 else math.nan


def trajectory_alignment(
    truth: Sequence[Sequence[Statement]],
    predicted: Sequence[Sequence[Statement]],
    ignore: frozenset[str] = DEFAULT_IGNORE,
    label_map: Mapping[str, str] | None = None,
) -> TrajectoryAlignment:
    """Cosine similarity and mean distance between matched sentences' gaze points."""
    _check_lengths(truth, predicted)
    gt: list[tuple[float, float]] = []
    pred: list[tuple[float, float]] = []
    for truth_image, predicted_image in zip(truth, predicted, strict=True):
        for t, p in match_statements(truth_image, predicted_image, ignore, label_map):
            a, b = _point(t), _point(p)
            if a is not None and b is not None:
                gt.append(a)
                pred.append(b)
    if not gt:
        return TrajectoryAlignment(math.nan, math.nan, math.nan, math.nan, math.nan, 0)
    g, q = np.array(gt), np.array(pred)
    both_g, both_q = g.T.reshape(-1), q.T.reshape(-1)  # (x..., y...)
    centered = _cosine((g - g.mean(axis=0)).T.reshape(-1), (q - q.mean(axis=0)).T.reshape(-1))
    return TrajectoryAlignment(
        cosine_x=_cosine(g[:, 0], q[:, 0]),
        cosine_y=_cosine(g[:, 1], q[:, 1]),
        cosine=_cosine(both_g, both_q),
        cosine_centered=centered,
        mean_distance=float(np.mean(np.hypot(g[:, 0] - q[:, 0], g[:, 1] - q[:, 1]))),
        pairs=len(gt),
    )
