"""Linking report sentences to REFLACX's anomaly ellipses."""

from __future__ import annotations

import pytest

from inference.reflacx.model import Ellipse, ReflacxFixation
from inference.results import Box
from inference.training.ellipses import ellipse_observation, matching_ellipses, named_labels


@pytest.mark.parametrize(
    ("sentence", "expected"),
    [
        ("No pleural effusion.", set()),
        ("There is no pneumothorax.", set()),
        ("The heart is not enlarged.", set()),
        ("Heart size is normal.", set()),
        ("Lungs are clear without consolidation.", set()),
        ("Moderate right pleural effusion.", {"Pleural abnormality", "Pleural effusion"}),
        ("The heart is enlarged.", {"Enlarged cardiac silhouette"}),
        ("Moderate cardiomegaly.", {"Enlarged cardiac silhouette"}),
        ("There is a 2 cm nodule in the left upper lobe.", {"Lung nodule or mass", "Nodule"}),
        ("Right lower lobe consolidation.", {"Consolidation"}),
        ("Small left apical pneumothorax.", {"Pneumothorax"}),
        ("Endotracheal tube in satisfactory position.", set()),
    ],
)
def test_labels_named_without_negation(sentence: str, expected: set[str]) -> None:
    assert named_labels(sentence) == expected


RIGHT = Ellipse(100, 800, 400, 1000, 5, frozenset({"Pleural abnormality"}))  # image left = patient right
LEFT = Ellipse(1200, 820, 1500, 1020, 5, frozenset({"Pleural abnormality"}))
UNSURE = Ellipse(600, 300, 700, 400, 2, frozenset({"Lung nodule or mass"}))
NODULE_A = Ellipse(300, 300, 360, 360, 4, frozenset({"Lung nodule or mass"}))
NODULE_B = Ellipse(1100, 500, 1160, 560, 5, frozenset({"Lung nodule or mass"}))
MIDLINE = 800.0


def test_laterality_picks_the_patient_side() -> None:
    ellipses = [RIGHT, LEFT]
    assert matching_ellipses("Small right pleural effusion.", ellipses, [], MIDLINE) == [RIGHT]
    assert matching_ellipses("Small left pleural effusion.", ellipses, [], MIDLINE) == [LEFT]
    assert matching_ellipses("Small bilateral pleural effusions.", ellipses, [], MIDLINE) == [RIGHT, LEFT]
    assert matching_ellipses("No pleural effusion.", ellipses, [], MIDLINE) == []


def test_uncertain_ellipses_are_ignored_and_gaze_breaks_ties() -> None:
    assert matching_ellipses("Pulmonary nodule.", [UNSURE], [], MIDLINE) == []
    looked_at_b = [ReflacxFixation(0.0, 1.0, 1130.0, 530.0), ReflacxFixation(1.1, 1.2, 330.0, 330.0)]
    assert matching_ellipses("Pulmonary nodule.", [NODULE_A, NODULE_B], looked_at_b, MIDLINE) == [NODULE_B]
    assert matching_ellipses("Pulmonary nodule.", [NODULE_A, NODULE_B], [], MIDLINE) == [NODULE_A]


def test_the_observation_is_the_ellipses_box_clipped() -> None:
    region = ellipse_observation([RIGHT, LEFT], rows=1010, columns=2000)
    assert region is not None
    assert region.box == Box(100, 800, 1500, 1010)
    assert region.centroid == region.box.center
    assert ellipse_observation([], 10, 10) is None
