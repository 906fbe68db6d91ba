"""The finding labeller on real report phrasing: labels, negation and uncertainty."""

from __future__ import annotations

import pytest

from inference.labeller import MENTIONS, SentenceLabel, label_sentence, sentence_side
from inference.results import FINDING_LABELS

PRESENT = [
    ("Small right pleural effusion.", "pleural_effusion"),
    ("Heart size is mildly enlarged.", "cardiomegaly"),
    ("Moderate cardiomegaly.", "cardiomegaly"),
    ("The mediastinum is widened.", "enlarged_cardiomediastinum"),
    ("Patchy opacity in the right lower lobe.", "lung_opacity"),
    ("A calcified granuloma is present in left lung apex.", "lung_lesion"),
    ("Stable 1.5 cm nodule in the right upper lobe.", "nodule"),
    ("Large mass in the left hilum.", "mass"),
    ("Mild pulmonary vascular congestion.", "edema"),
    ("Interstitial edema.", "edema"),
    ("Left lower lobe consolidation.", "consolidation"),
    ("Findings compatible with multifocal pneumonia.", "pneumonia"),
    ("Bibasilar atelectasis.", "atelectasis"),
    ("Small apical right pneumothorax.", "pneumothorax"),
    ("Blunting of the left costophrenic angle.", "pleural_effusion"),
    ("Biapical pleural thickening.", "pleural_other"),
    ("Acute fracture of the left seventh rib.", "fracture"),
    ("Endotracheal tube terminates 4 cm above the carina.", "endotracheal_tube"),
    ("Right internal jugular central venous catheter tip in the SVC.", "central_venous_catheter"),
    ("Left PICC line tip in the SVC.", "central_venous_catheter"),
    ("Enteric tube courses below the diaphragm.", "enteric_tube"),
    ("Nasogastric tube in the stomach.", "enteric_tube"),
    ("Left chest tube in place.", "chest_tube"),
    ("Dual-lead pacemaker in place.", "cardiac_device"),
    ("Median sternotomy wires.", "support_devices"),
    ("No acute cardiopulmonary process.", "no_finding"),
    ("No acute cardiopulmonary abnormality.", "no_finding"),
]

ABSENT = [
    ("No pleural effusion.", "pleural_effusion"),
    ("There is no pneumothorax.", "pneumothorax"),
    ("The heart size is normal.", "cardiomegaly"),
    ("Normal heart size.", "cardiomegaly"),
    ("Cardiomediastinal silhouette is within normal limits.", "enlarged_cardiomediastinum"),
    ("The lungs are clear.", "lung_opacity"),
    ("Lungs are free of focal consolidation.", "consolidation"),
    ("Negative for fracture.", "fracture"),
    ("No acute osseous abnormality.", "fracture"),
    ("Osseous structures are intact.", "fracture"),
    ("Without evidence of edema.", "edema"),
    ("No evidence of pneumothorax.", "pneumothorax"),
    ("The pneumothorax has resolved.", "pneumothorax"),
    ("Interval resolution of the left lower lobe consolidation.", "consolidation"),
    ("Interval removal of the right chest tube.", "chest_tube"),
    ("The costophrenic angles are sharp.", "pleural_effusion"),
    ("Pneumothorax is not seen.", "pneumothorax"),
    ("No focal consolidation, pleural effusion, or pneumothorax.", "consolidation"),
]

UNCERTAIN = [
    ("Possible small left pleural effusion.", "pleural_effusion"),
    ("Pneumonia cannot be excluded.", "pneumonia"),
    ("Cannot exclude a small pneumothorax.", "pneumothorax"),
    ("Right lower lobe opacity may represent atelectasis or pneumonia.", "lung_opacity"),
    ("Left lower lobe consolidation is concerning for pneumonia.", "consolidation"),
    ("Findings suggestive of mild pulmonary edema.", "edema"),
    ("Probable small right effusion.", "pleural_effusion"),
    ("Questionable nodule in the left upper lobe.", "nodule"),
    ("Atelectasis versus consolidation at the left base.", "atelectasis"),
    ("Heart size is borderline.", "cardiomegaly"),
]


@pytest.mark.parametrize(("sentence", "label"), PRESENT)
def test_present(sentence: str, label: str) -> None:
    assert label_sentence(sentence) == SentenceLabel(label, present=True)


@pytest.mark.parametrize(("sentence", "label"), ABSENT)
def test_negated(sentence: str, label: str) -> None:
    assert label_sentence(sentence) == SentenceLabel(label, present=False)


@pytest.mark.parametrize(("sentence", "label"), UNCERTAIN)
def test_uncertain(sentence: str, label: str) -> None:
    assert label_sentence(sentence) == SentenceLabel(label, present=True, uncertain=True)


@pytest.mark.parametrize(
    "sentence",
    ["The trachea is midline.", "Low lung volumes.", "Degenerative changes of the thoracic spine.", ""],
)
def test_statements_that_name_nothing_are_other(sentence: str) -> None:
    assert label_sentence(sentence) == SentenceLabel("other", present=True)


def test_a_positive_finding_wins_over_a_negated_one() -> None:
    assert label_sentence("No pneumothorax, but there is a small right effusion.") == SentenceLabel(
        "pleural_effusion", present=True
    )
    assert label_sentence("Heart size is normal and there is a small effusion.") == SentenceLabel(
        "pleural_effusion", present=True
    )


def test_negation_does_not_cross_clauses() -> None:
    assert label_sentence("No effusion; moderate cardiomegaly.").label == "cardiomegaly"
    assert label_sentence("No effusion; moderate cardiomegaly.").present


def test_pseudo_negation_is_not_negation() -> None:
    assert label_sentence("No significant change in the small left effusion.") == SentenceLabel(
        "pleural_effusion", present=True
    )
    assert label_sentence("No interval change in the right lower lobe opacity.").present


def test_case_and_spacing_do_not_matter() -> None:
    assert label_sentence("  NO   PLEURAL\nEFFUSION ") == SentenceLabel("pleural_effusion", present=False)


def test_every_label_is_in_the_vocabulary_and_reachable() -> None:
    labels = {pattern.label for pattern in MENTIONS}
    assert labels <= set(FINDING_LABELS)
    assert set(FINDING_LABELS) - labels == {"other"}


def test_sentence_side_is_the_first_side_named() -> None:
    assert sentence_side("Pleural effusion on the right, moderate.") == "right"
    assert sentence_side("Consolidation in the LEFT lower lobe.") == "left"
    assert sentence_side("Effusions on both sides.") == "bilateral"
    assert sentence_side("Bilateral pleural effusions.") == "bilateral"
    assert sentence_side("Enlarged cardiac silhouette.") is None
    assert sentence_side("The tube was rightly placed.") is None  # a whole word only
    assert sentence_side("Right internal jugular central venous catheter, tip in the SVC.") == "right"
