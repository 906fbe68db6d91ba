"""What a reader of the outputs is told: labels a viewer shows, statements that are not
findings, a report the runtime cut, a demo model, and boxes that are not drawn twice."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset

from dicom_sr import encode
from inference.results import Finding, Fixation, ImageAnalysis, Point
from inference.testing import FAKE_IDENTITY
from tests.dicom_sr.helpers import (
    WHEN,
    ToolFinder,
    child,
    concept_meaning,
    content_items,
    dciodvfy_errors,
    dcmpschk_report,
    dsrdump_problems,
    region,
    study_analysis,
    tracking_groups,
    write,
)


def _analysis(source: Dataset, *, report: str | None = None, omissions: tuple[str, ...] = ()) -> ImageAnalysis:
    """A finding whose first clue repeats its observation box, a normal statement with its evidence,
    and a short trajectory."""
    findings = (
        Finding(
            text="Small left pleural effusion.",
            label="pleural_effusion",
            present=True,
            observation=region(1200, 1300, 1600, 1700),
            clues=(region(1200, 1300, 1600, 1700), region(1250, 1350, 1500, 1650), region(1250, 1350, 1500, 1650)),
        ),
        Finding(
            text="The trachea is midline.",
            label="other",
            present=True,
            observation=region(850, 100, 1050, 600),
            clues=(region(900, 150, 1000, 500),),
        ),
        Finding(text="No acute cardiopulmonary process.", label="no_finding", present=True, observation=None),
    )
    trajectory = (Fixation(1, Point(1375, 1500)), Fixation(2, Point(950, 325)), Fixation(3, Point(900, 900)))
    text = report if report is not None else " ".join(f.text for f in findings)
    return ImageAnalysis(
        str(source.SOPInstanceUID),
        int(source.Rows),
        int(source.Columns),
        text,
        findings,
        trajectory,
        omissions=omissions,
    )


def _encode(source: Dataset, image: ImageAnalysis, *, demo: bool = False) -> list[Dataset]:
    model = dataclasses.replace(FAKE_IDENTITY, demo=demo)
    return encode(study_analysis(source, image, model=model), [source], analysis_id="viewer", content_datetime=WHEN)


def _findings_text(sr: Dataset) -> str:
    return next(i.TextValue for i in content_items(sr) if i.ValueType == "TEXT" and concept_meaning(i) == "Findings")


def test_every_measurement_group_has_a_comment_a_radiologist_reads(chest_cr: Dataset) -> None:
    sr, _, _ = _encode(chest_cr, _analysis(chest_cr))
    groups = tracking_groups(sr)
    comments = {name: child(group, "Comment", "TEXT").TextValue for name, group in groups.items()}
    assert comments == {
        "F1 pleural effusion": "F1: Small left pleural effusion.",
        "F1 clue 1": "F1 visual clue 1: Small left pleural effusion.",
        "S1 statement": "S1: The trachea is midline.",
        "S1 clue 1": "S1 visual clue 1: The trachea is midline.",
        "Inspection trajectory": "Inspection trajectory, 3 fixations",
    }


def test_a_clue_repeating_the_observation_or_another_clue_is_not_drawn_twice(chest_cr: Dataset) -> None:
    sr = _encode(chest_cr, _analysis(chest_cr))[0]
    boxes = [
        tuple(child(group, "Image Region").GraphicData)
        for name, group in tracking_groups(sr).items()
        if name.startswith("F1")
    ]
    assert len(boxes) == 2 and len(set(boxes)) == 2
    assert sr.CompletionFlag == "COMPLETE"  # a repeat is not a loss


def test_a_normal_statement_is_not_coded_or_segmented_as_a_finding(chest_cr: Dataset) -> None:
    sr, seg, gsps = _encode(chest_cr, _analysis(chest_cr))
    statement = tracking_groups(sr)["S1 statement"]
    assert [i for i in statement.ContentSequence if concept_meaning(i) == "Finding"] == []
    assert child(statement, "Image Region").GraphicType == "POLYLINE"  # its evidence box stays
    coded = [
        i.ConceptCodeSequence[0].CodeValue
        for i in content_items(sr)
        if i.ValueType == "CODE" and concept_meaning(i) == "Finding"
    ]
    assert "OTHER_STATEMENT" not in coded and "17621005" not in coded  # neither "other" nor "Normal"
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["F1 Pleural effusion", "Model attention"]
    layers = {a.GraphicLayer: a for a in gsps.GraphicAnnotationSequence}
    labels = [t.UnformattedTextValue for t in layers["AI FINDINGS"].TextObjectSequence]
    assert "F1 Pleural effusion" in labels and not any("Other statement" in t for t in labels)
    assert [t.UnformattedTextValue for t in layers["AI STATEMENTS"].TextObjectSequence] == [
        "S1: The trachea is midline."
    ]
    assert "AI TRAJECTORY" in layers
    assert "The trachea is midline." in _findings_text(sr)


def test_a_cut_report_makes_the_sr_partial_and_says_what_was_dropped(chest_cr: Dataset) -> None:
    cut = "the report repeats a word in a loop in sentence 2; it was cut there (10 sentence(s) dropped)"
    sr, _, gsps = _encode(chest_cr, _analysis(chest_cr, report="Small left pleural effusion.", omissions=(cut,)))
    assert sr.CompletionFlag == "PARTIAL"
    assert "see Findings" in sr.CompletionFlagDescription
    text = _findings_text(sr)
    assert text.startswith("Small left pleural effusion.")
    assert f"[INCOMPLETE: {cut}.]" in text
    notices = [t.UnformattedTextValue for a in gsps.GraphicAnnotationSequence for t in a.TextObjectSequence]
    assert any("INCOMPLETE" in n for n in notices)
    # the text SR, which is what OHIF shows as text, says it too
    image = _analysis(chest_cr, report="Small left pleural effusion.", omissions=(cut,))
    (text_sr,) = encode(
        study_analysis(chest_cr, image), [chest_cr], ("text_sr",), analysis_id="v", content_datetime=WHEN
    )
    assert text_sr.CompletionFlag == "PARTIAL"
    comments = [
        i.TextValue for i in content_items(text_sr) if i.ValueType == "TEXT" and concept_meaning(i) == "Comment"
    ]
    assert f"INCOMPLETE: {cut}." in comments


def test_a_whole_report_stays_complete(chest_cr: Dataset) -> None:
    sr, _, _ = _encode(chest_cr, _analysis(chest_cr))
    assert sr.CompletionFlag == "COMPLETE"
    assert "CompletionFlagDescription" not in sr
    assert "INCOMPLETE" not in _findings_text(sr)


def test_a_demo_model_says_so_wherever_a_radiologist_looks(chest_cr: Dataset) -> None:
    notice = "DEMO MODEL - NOT FOR CLINICAL USE"  # the en dash, in the source's ASCII character set
    outputs = _encode(chest_cr, _analysis(chest_cr), demo=True)
    for dataset in outputs:
        assert dataset.SeriesDescription.startswith(notice), dataset.Modality
    sr, _, gsps = outputs
    assert _findings_text(sr).startswith(notice)
    for group in tracking_groups(sr).values():
        assert child(group, "Comment", "TEXT").TextValue.startswith(notice)
    texts = [t.UnformattedTextValue for a in gsps.GraphicAnnotationSequence for t in a.TextObjectSequence]
    assert any(t.startswith(f"GazeX: {notice}") for t in texts)
    assert "DEMO: F1 Pleural effusion" in texts


def test_a_real_model_carries_no_demo_notice(chest_cr: Dataset) -> None:
    for dataset in _encode(chest_cr, _analysis(chest_cr)):
        assert "DEMO" not in dataset.SeriesDescription


@pytest.mark.integration
@pytest.mark.parametrize("demo", [False, True], ids=["model", "demo"])
def test_the_new_encoding_validates(chest_cr: Dataset, tmp_path: Path, dicom_tool: ToolFinder, demo: bool) -> None:
    cut = ("the report reached the token budget; its unfinished last sentence was dropped",)
    for index, dataset in enumerate(_encode(chest_cr, _analysis(chest_cr, omissions=cut), demo=demo)):
        path = write(dataset, tmp_path, f"out{index}")
        assert dciodvfy_errors(dicom_tool, path) == [], dataset.Modality
        if dataset.Modality == "SR":
            assert dsrdump_problems(dicom_tool, path) == (0, [])
        if dataset.Modality == "PR":
            code, report = dcmpschk_report(dicom_tool, path)
            assert code == 0, report
        assert pydicom.dcmread(path).SOPInstanceUID == dataset.SOPInstanceUID
