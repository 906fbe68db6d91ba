"""Reports follow the reading order, agree with the ground truth, and vary in phrasing
(``varied``) or state every checklist item in one wording (``structured``)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from inference.demo import REPORT_STYLES, SECTIONS, PhantomConfig, generate_phantom, generate_phantoms
from inference.demo.findings import Device, Effusion, finding_kind
from inference.demo.phantoms import Phantom
from inference.demo.regions import union
from inference.demo.reports import ReportSentence, write_report
from inference.demo.scanpath import tokenize
from inference.labeller import label_sentence
from inference.results import FINDING_LABELS, Box
from inference.training.attention import join_words


@pytest.fixture(scope="module")
def phantoms() -> list[Phantom]:
    return list(generate_phantoms(31, 80))


@pytest.fixture(scope="module")
def structured() -> list[Phantom]:
    return list(generate_phantoms(31, 80, PhantomConfig(report_style="structured")))


@pytest.fixture(scope="module", params=REPORT_STYLES)
def any_style(request: pytest.FixtureRequest) -> list[Phantom]:
    return list(generate_phantoms(31, 80, PhantomConfig(report_style=request.param)))


def test_sentences_follow_the_reading_order(any_style: list[Phantom]) -> None:
    for phantom in any_style:
        order = [SECTIONS.index(s.section) for s in phantom.sentences]
        assert order == sorted(order), phantom.report


def test_every_finding_is_reported_once_and_never_denied(any_style: list[Phantom]) -> None:
    for phantom in any_style:
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


def test_positive_sentences_carry_their_ground_truth_region(any_style: list[Phantom]) -> None:
    for phantom in any_style:
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


def test_sentences_tokenize_like_reflacx(any_style: list[Phantom]) -> None:
    for phantom in any_style:
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


def test_devices_are_reported_in_their_section(any_style: list[Phantom]) -> None:
    for phantom in any_style:
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


CHECKLIST = (
    "endotracheal_tube",
    "nodule",
    "mass",
    "consolidation",
    "pleural_effusion",
    "pneumothorax",
    "cardiomegaly",
    "central_venous_catheter",
)


def test_structured_reports_state_every_checklist_item_once(structured: list[Phantom]) -> None:
    for phantom in structured:
        labels = Counter(s.label for s in phantom.sentences)
        assert all(labels[label] == 1 for label in CHECKLIST), phantom.report
        normal = not any(not isinstance(f, Device) for f in phantom.findings)
        assert labels["no_finding"] == int(normal), phantom.report
        assert not any(s.uncertain for s in phantom.sentences)
    # the same phantom (same seed and index) has the same findings in either style
    varied = generate_phantom(31, 7)
    assert [finding_kind(f) for f in varied.findings] == [finding_kind(f) for f in structured[7].findings]


def test_structured_statements_have_one_opening_per_label_and_presence(structured: list[Phantom]) -> None:
    openings: dict[tuple[str, bool], set[str]] = {}
    for phantom in structured:
        for s in phantom.sentences:
            openings.setdefault((s.label, s.present), set()).add(s.text.split()[0])
    for label in CHECKLIST:
        assert len(openings[(label, False)]) == 1, (label, openings[(label, False)])
        if (label, True) in openings:
            assert len(openings[(label, True)]) == 1, (label, openings[(label, True)])
    # positives and negatives part at one word: the first, or right after a shared opening
    assert openings[("pleural_effusion", True)] == {"Pleural"} and openings[("pleural_effusion", False)] == {"No"}
    assert openings[("cardiomegaly", True)] == openings[("cardiomegaly", False)] == {"The"}


def test_the_labeller_reads_every_structured_statement_as_meant(structured: list[Phantom]) -> None:
    checked = 0
    for phantom in structured:
        for sentence in phantom.sentences:
            if sentence.label == "other":
                continue
            labelled = label_sentence(sentence.text)
            assert (labelled.label, labelled.present) == (sentence.label, sentence.present), sentence.text
            checked += 1
    assert checked >= 10 * len(structured)


def test_an_unknown_report_style_is_refused() -> None:
    with pytest.raises(ValueError, match="report_style"):
        PhantomConfig(report_style="telegraphic")
    phantom = generate_phantom(1, 0)
    with pytest.raises(ValueError, match="style"):
        write_report(np.random.default_rng(0), phantom.anatomy, phantom.findings, phantom.boxes, "telegraphic")
