"""Reports follow the reading order, agree with the ground truth, and vary in phrasing."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from inference.demo import SECTIONS, PhantomConfig, generate_phantoms
from inference.demo.findings import Device, Effusion, finding_kind
from inference.demo.phantoms import Phantom
from inference.demo.regions import union
from inference.demo.reports import ReportSentence
from inference.demo.scanpath import tokenize
from inference.results import FINDING_LABELS, Box
from inference.training.attention import join_words


@pytest.fixture(scope="module")
def phantoms() -> list[Phantom]:
    return list(generate_phantoms(31, 80))


def test_sentences_follow_the_reading_order(phantoms: list[Phantom]) -> None:
    for phantom in phantoms:
        order = [SECTIONS.index(s.section) for s in phantom.sentences]
        assert order == sorted(order), phantom.report


def test_every_finding_is_reported_once_and_never_denied(phantoms: list[Phantom]) -> None:
    for phantom in phantoms:
        reported = Counter(i for s in phantom.sentences for i in s.findings)
        assert sorted(reported) == list(range(len(phantom.findings))), phantom.report
        assert set(reported.values()) <= {1}
        positive_labels = {f.label for f in phantom.findings}
        for sentence in phantom.sentences:
            assert sentence.label in FINDING_LABELS
            if not sentence.present:
                assert sentence.label not in positive_labels, sentence.text
            for index in sentence.findings:
                assert sentence.present and sentence.label == phantom.findings[index].label
        if any(f.label == "cardiomegaly" for f in phantom.findings):
            assert not any(s.label == "no_finding" for s in phantom.sentences)


def test_positive_sentences_carry_their_ground_truth_region(phantoms: list[Phantom]) -> None:
    for phantom in phantoms:
        for sentence in phantom.sentences:
            if sentence.findings:
                expected = union([phantom.boxes[i] for i in sentence.findings])
                assert sentence.region == expected
            else:
                assert sentence.region is None


def test_bilateral_effusions_are_one_sentence_over_both_sides() -> None:
    found = False
    for phantom in generate_phantoms(4, 40, PhantomConfig.only("pleural_effusion")):
        effusions = [f for f in phantom.findings if isinstance(f, Effusion)]
        if len(effusions) == 2:
            (sentence,) = [s for s in phantom.sentences if s.label == "pleural_effusion"]
            assert "bilateral" in sentence.text
            assert len(sentence.findings) == 2
            found = True
    assert found


def test_sentences_tokenize_like_reflacx(phantoms: list[Phantom]) -> None:
    for phantom in phantoms:
        for sentence in phantom.sentences:
            text = sentence.text
            assert text[0].isupper() and text.endswith(".")
            assert text.count(".") == 1, text  # no decimals or abbreviations to confuse the splitter
            assert join_words(tokenize(text)) == text
            assert "  " not in text


def test_both_positive_and_negative_statements_with_varied_phrasing(phantoms: list[Phantom]) -> None:
    texts: dict[tuple[str, bool], set[str]] = {}
    for phantom in phantoms:
        for s in phantom.sentences:
            texts.setdefault((s.label, s.present), set()).add(s.text)
    for key in [
        ("pleural_effusion", False),
        ("pneumothorax", False),
        ("cardiomegaly", False),
        ("consolidation", False),
    ]:
        assert len(texts[key]) >= 2, key
    for key in [("pleural_effusion", True), ("cardiomegaly", True), ("nodule", True), ("endotracheal_tube", True)]:
        assert key in texts, key
    everything = {t for group in texts.values() for t in group}
    for standard in ("No pleural effusion.", "No pneumothorax.", "Heart size is normal.", "The heart is enlarged."):
        assert standard in everything


def test_devices_are_reported_in_their_section(phantoms: list[Phantom]) -> None:
    for phantom in phantoms:
        for sentence in phantom.sentences:
            if sentence.label == "endotracheal_tube":
                assert sentence.section == "airway"
            if sentence.label == "central_venous_catheter":
                assert sentence.section == "everything_else"
        kinds = {finding_kind(f) for f in phantom.findings if isinstance(f, Device)}
        assert kinds <= {s.label for s in phantom.sentences}


def test_a_sentence_needs_a_known_label_and_section() -> None:
    box = Box(0, 0, 1, 1)
    with pytest.raises(ValueError, match="FINDING_LABELS"):
        ReportSentence("Bad.", "pleural effusion", False, "breathing", None, (box,))
    with pytest.raises(ValueError, match="section"):
        ReportSentence("Bad.", "pneumothorax", False, "circulation", None, (box,))
    assert np.isfinite(box.area)


def test_hedged_statements_are_present_and_uncertain(phantoms: list[Phantom]) -> None:
    hedged = [s for p in phantoms for s in p.sentences if s.uncertain]
    assert hedged, "some positive findings should be reported with hedging"
    for sentence in hedged:
        assert sentence.present and sentence.region is not None
        assert sentence.text.startswith("Possible") or "may be present" in sentence.text
    assert all(not s.uncertain for p in phantoms for s in p.sentences if not s.present)
