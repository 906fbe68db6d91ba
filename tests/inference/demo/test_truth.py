"""A phantom's ground truth as evaluation statements, and the metrics on it."""

from __future__ import annotations

from inference.demo import generate_phantoms, phantom_statements
from inference.demo.findings import Device
from inference.evaluation import finding_scores, macro_f1, observation_iou, side_agreement, trajectory_alignment


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


def test_ground_truth_statements_name_the_side_of_their_findings() -> None:
    phantoms = list(generate_phantoms(43, 24))
    truth = [phantom_statements(p) for p in phantoms]
    sided = 0
    for phantom, statements in zip(phantoms, truth, strict=True):
        for written, statement in zip(phantom.sentences, statements, strict=True):
            findings = [phantom.findings[i] for i in written.findings]
            if not written.present or not findings or statement.label == "other":
                continue
            sides = {f.route.split()[0] if isinstance(f, Device) else getattr(f, "side", None) for f in findings}
            expected = None if sides <= {None, "endotracheal"} else sides.pop() if len(sides) == 1 else "bilateral"
            assert statement.side == expected, written.text
            sided += statement.side is not None
    assert sided >= 10
    assert side_agreement(truth, truth).agree == side_agreement(truth, truth).pairs == sided
