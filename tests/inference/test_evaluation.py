"""Evaluation metrics on a hand-worked example."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest

from inference.evaluation import (
    LabelScore,
    Statement,
    finding_scores,
    macro_f1,
    match_statements,
    observation_iou,
    side_agreement,
    statements_from_findings,
    trajectory_alignment,
)
from inference.results import Box, Finding, Point, Region


def st(label: str, present: bool, box: tuple[float, ...] | None = None, *centroids: tuple[float, float]) -> Statement:
    return Statement(label, present, Box(*box) if box else None, tuple(Point(x, y) for x, y in centroids))


TRUTH = [
    [
        st("pleural_effusion", True, (0, 0, 10, 10), (5, 5)),
        st("pneumothorax", False, None, (50, 50)),
        st("other", True),
    ],
    [st("cardiomegaly", True, (0, 0, 20, 20), (10, 10)), st("nodule", True, (30, 30, 34, 34), (32, 32))],
    [st("no_finding", True, None, (20, 20))],
]
PREDICTED = [
    [
        st("pleural_effusion", True, (5, 0, 15, 10), (6, 5), (8, 5)),
        st("pneumothorax", False, None, (50, 52)),
        st("cardiomegaly", True, (0, 0, 5, 5)),
    ],
    [st("cardiomegaly", True, (0, 0, 20, 20), (10, 10))],
    [st("no_finding", True, None, (20, 24)), st("pleural_effusion", True, (0, 0, 1, 1))],
]


def test_per_label_scores_and_macro_f1() -> None:
    scores = finding_scores(TRUTH, PREDICTED)
    assert set(scores) == {"cardiomegaly", "no_finding", "nodule", "pleural_effusion"}  # "other" ignored
    assert scores["pleural_effusion"] == LabelScore("pleural_effusion", 1, 1, 0)
    assert scores["pleural_effusion"].precision == 0.5 and scores["pleural_effusion"].recall == 1.0
    assert scores["pleural_effusion"].f1 == pytest.approx(2 / 3)
    assert scores["cardiomegaly"] == LabelScore("cardiomegaly", 1, 1, 0)
    assert scores["nodule"] == LabelScore("nodule", 0, 0, 1)
    assert scores["nodule"].precision == 0.0 and scores["nodule"].f1 == 0.0
    assert scores["no_finding"].f1 == 1.0
    assert macro_f1(scores) == pytest.approx((2 / 3 + 2 / 3 + 0.0 + 1.0) / 4)
    assert macro_f1(scores, ["no_finding", "pneumothorax"]) == pytest.approx(0.5)
    assert math.isnan(macro_f1({}))


def test_label_map_merges_labels_first() -> None:
    truth = [[st("nodule", True)], [st("mass", True)]]
    predicted = [[st("mass", True)], [st("mass", True)]]
    assert finding_scores(truth, predicted)["nodule"] == LabelScore("nodule", 0, 0, 1)
    merged = finding_scores(truth, predicted, label_map={"nodule": "lung_lesion", "mass": "lung_lesion"})
    assert merged == {"lung_lesion": LabelScore("lung_lesion", 2, 0, 0)}


def test_observation_iou_over_matched_present_findings() -> None:
    summary = observation_iou(TRUTH, PREDICTED)
    # effusion: 50 / (100 + 100 - 50); cardiomegaly: 1; the nodule was missed (not matched)
    assert summary.mean == pytest.approx((1 / 3 + 1.0) / 2)
    assert (summary.matched, summary.total) == (2, 3)
    # a matched prediction without a box scores 0
    no_box = observation_iou([[st("nodule", True, (0, 0, 2, 2))]], [[st("nodule", True)]])
    assert (no_box.mean, no_box.matched, no_box.total) == (0.0, 1, 1)


def test_trajectory_alignment_pairs_sentence_points() -> None:
    result = trajectory_alignment(TRUTH, PREDICTED)
    truth_points = [(5, 5), (50, 50), (10, 10), (20, 20)]  # effusion, pneumothorax, cardiomegaly, no finding
    predicted_points = [(7, 5), (50, 52), (10, 10), (20, 24)]  # (6 + 8) / 2 = 7 for the effusion's two clues
    assert result.pairs == 4

    def cosine(a: Sequence[float], b: Sequence[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))

    gx, gy = [p[0] for p in truth_points], [p[1] for p in truth_points]
    px, py = [p[0] for p in predicted_points], [p[1] for p in predicted_points]
    assert result.cosine_x == pytest.approx(3035 / (55 * math.sqrt(3049)))
    assert result.cosine_x == pytest.approx(cosine(gx, px))
    assert result.cosine_y == pytest.approx(cosine(gy, py))
    assert result.cosine == pytest.approx(cosine(gx + gy, px + py))
    mean_gx, mean_gy, mean_px, mean_py = (sum(v) / 4 for v in (gx, gy, px, py))
    assert result.cosine_centered == pytest.approx(
        cosine(
            [x - mean_gx for x in gx] + [y - mean_gy for y in gy], [x - mean_px for x in px] + [y - mean_py for y in py]
        )
    )
    assert result.mean_distance == pytest.approx((2 + 2 + 0 + 4) / 4)
    empty = trajectory_alignment([[]], [[]])
    assert empty.pairs == 0 and math.isnan(empty.cosine)


def test_matching_pairs_boxes_by_overlap_then_the_rest_in_order() -> None:
    truth = [st("nodule", True, (0, 0, 10, 10)), st("nodule", True, (100, 100, 110, 110)), st("nodule", False)]
    predicted = [st("nodule", True, (101, 99, 111, 109)), st("nodule", True, (1, 1, 11, 11)), st("nodule", False)]
    pairs = match_statements(truth, predicted)
    assert [(t.observation, p.observation) for t, p in pairs] == [
        (Box(0, 0, 10, 10), Box(1, 1, 11, 11)),
        (Box(100, 100, 110, 110), Box(101, 99, 111, 109)),
        (None, None),
    ]
    with pytest.raises(ValueError, match="images"):
        finding_scores([[]], [])


def test_findings_from_a_model_become_statements() -> None:
    region = Region(Box(0, 0, 10, 10), Point(4, 4))
    clue = Region(Box(1, 1, 2, 2), Point(1.5, 1.5))
    finding = Finding("Small left pleural effusion.", "pleural_effusion", True, region, (clue,))
    (statement,) = statements_from_findings([finding])
    assert statement == Statement("pleural_effusion", True, Box(0, 0, 10, 10), (Point(1.5, 1.5),), "left")
    assert statements_from_findings([Finding("No pneumothorax.", "pneumothorax", False, None)]) == [
        Statement("pneumothorax", False)
    ]


def test_side_agreement_counts_present_findings_reported_on_the_true_side() -> None:
    def sided(label: str, present: bool, side: str | None, box: tuple[float, ...] = (0, 0, 10, 10)) -> Statement:
        return Statement(label, present, Box(*box) if present else None, (), side)

    truth = [
        [
            sided("pleural_effusion", True, "right"),
            sided("pneumothorax", False, None),
            sided("cardiomegaly", True, None),
        ],
        [sided("nodule", True, "left", (0, 0, 4, 4)), sided("nodule", True, "right", (90, 0, 94, 4))],
        [sided("consolidation", True, "left")],
    ]
    predicted = [
        # the wrong side: still paired by label, so it counts against the side (and its box scores 0)
        [sided("pleural_effusion", True, "left", (90, 0, 100, 10)), sided("cardiomegaly", True, None)],
        # two nodules paired by their boxes: both on the named side
        [sided("nodule", True, "right", (90, 0, 94, 4)), sided("nodule", True, "left", (0, 0, 4, 4))],
        # no side named: disagrees
        [sided("consolidation", True, None)],
    ]
    summary = side_agreement(truth, predicted)
    assert (summary.agree, summary.pairs) == (2, 4)  # the cardiomegaly names no side and is not counted
    assert summary.rate == 0.5
    assert observation_iou(truth[:1], predicted[:1]).mean == pytest.approx(0.5)  # (0 + 1) / 2
    assert math.isnan(side_agreement([[]], [[]]).rate)
