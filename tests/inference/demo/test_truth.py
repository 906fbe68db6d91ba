"""A phantom's ground truth as evaluation statements, and the metrics on it."""

from __future__ import annotations

from inference.demo import generate_phantoms, phantom_statements
from inference.evaluation import finding_scores, macro_f1, observation_iou, trajectory_alignment


def test_ground_truth_statements_score_perfectly_against_themselves() -> None:
    phantoms = list(generate_phantoms(41, 12))
    truth = [phantom_statements(p) for p in phantoms]
    for phantom, statements in zip(phantoms, truth, strict=True):
        assert [(s.label, s.present) for s in statements] == [(s.label, s.present) for s in phantom.sentences]
        assert sum(1 for s in statements if s.centroids) >= len(statements) - 1
    assert macro_f1(finding_scores(truth, truth)) == 1.0
    assert observation_iou(truth, truth).mean == 1.0
    alignment = trajectory_alignment(truth, truth)
    assert alignment.mean_distance == 0.0 and alignment.cosine > 0.999999


def test_a_model_that_always_says_normal_scores_zero_recall() -> None:
    phantoms = list(generate_phantoms(42, 12))
    truth = [phantom_statements(p) for p in phantoms]
    lazy = [[s for s in statements if not s.present] for statements in truth]
    scores = finding_scores(truth, lazy)
    assert all(score.recall == 0.0 for score in scores.values())
    assert macro_f1(scores) == 0.0
