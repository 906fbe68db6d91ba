"""The two-stage pipeline around the model, driven by scripted answers on the real chest CR."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import pydicom
import pytest

from inference import InferenceError, InputImageError, PixelDataError
from inference.checkpoint import open_checkpoint
from inference.geometry import DownscaledFrame, ImageGeometry, NormalizedFrame
from inference.pipeline import build_image_analysis
from inference.results import Box, Point
from inference.runtime import GazexEngine
from inference.testing import ScriptedBackend

GEOMETRY = ImageGeometry(1955, 1841, DownscaledFrame(4.0), input_rows=112, input_columns=84)

REPORT = "The heart size is normal. Small right pleural effusion. Possible left lower lobe consolidation."
ANSWERS = {
    "The heart size is normal.": (
        "visual clues : [(150,180)(300,330)(225,255)] observation : [(140,170)(320,340)(230,255)]"
    ),
    "Small right pleural effusion.": (
        "visual clues : [(40,300)(120,420)(80,360),(60,380)(160,480)(110,430)] "
        "observation : [(30,290)(170,500)(100,395)]"
    ),
    "Possible left lower lobe consolidation.": "visual clues: [(300,300)(500,600)(400,450)], observation: [(290,290)",
}


def answer(prompt: str) -> str:
    """The scripted model: the report for the examine prompt, an answer per sentence otherwise."""
    match = re.search(r"radiologist's description '(.*)', mimic", prompt)
    if match is None:
        return REPORT
    return ANSWERS[match.group(1)]


@pytest.fixture
def roomy_checkpoint(tiny_checkpoint: Path, tmp_path: Path) -> Path:
    """The tiny checkpoint with token budgets that fit the scripted answers (digits are one token each)."""
    target = tmp_path / "roomy"
    shutil.copytree(tiny_checkpoint, target)
    document = json.loads((target / "gazex.json").read_text())
    document["generation"] = {"max_new_tokens_examine": 256, "max_new_tokens_attention": 256}
    (target / "gazex.json").write_text(json.dumps(document))
    return target


@pytest.fixture
def engine(roomy_checkpoint: Path) -> GazexEngine:
    checkpoint = open_checkpoint(roomy_checkpoint)
    return GazexEngine(checkpoint, ScriptedBackend(checkpoint.tokenizer, answer))


def test_build_image_analysis_maps_labels_and_orders_the_trajectory() -> None:
    sentences = list(ANSWERS)
    analysis, dropped = build_image_analysis("1.2.3", GEOMETRY, REPORT, sentences, list(ANSWERS.values()))
    heart, effusion, consolidation = analysis.findings
    assert (heart.label, heart.present, heart.uncertain) == ("cardiomegaly", False, False)
    assert (effusion.label, effusion.present) == ("pleural_effusion", True)
    assert (consolidation.label, consolidation.present, consolidation.uncertain) == ("consolidation", True, True)
    assert heart.observation is not None
    assert heart.observation.box == Box(560, 680, 1280, 1360)  # model coordinates x 4
    assert heart.observation.centroid == Point(920, 1020)
    # the last box reaches past the image: clipped to 1841 x 1955
    assert consolidation.clues[0].box == Box(1200, 1200, 1841, 1955)
    assert consolidation.observation is None
    assert dropped == ("sentence 3: observation: not a (x, y)(x, y)(x, y) region (9 characters)",)
    assert [f.index for f in analysis.trajectory] == [1, 2, 3, 4]
    assert [f.point for f in analysis.trajectory] == [
        Point(900, 1020),
        Point(320, 1440),
        Point(440, 1720),
        Point(1600, 1800),
    ]
    assert analysis.trajectory[1].region == effusion.clues[0]
    assert analysis.attention is None
    assert (analysis.rows, analysis.columns, analysis.report) == (1955, 1841, REPORT)


def test_normalized_frame_checkpoints_map_to_the_whole_image() -> None:
    geometry = ImageGeometry(1955, 1841, NormalizedFrame(1000.0), input_rows=112, input_columns=84)
    analysis, _ = build_image_analysis(
        "1.2.3", geometry, "x", ["No effusion."], ["observation: [(0,0)(1000,1000)(500,500)]"]
    )
    observation = analysis.findings[0].observation
    assert observation is not None and observation.box == Box(0, 0, 1841, 1955)


def test_regions_outside_the_image_are_dropped_and_counted() -> None:
    analysis, dropped = build_image_analysis(
        "1.2.3",
        GEOMETRY,
        "x",
        ["Nodule."],
        ["visual clues: [(900,900)(950,950)(920,920),(10,10)(5,20)(7,15)], observation: [(1,1)(2,2)(1,1)]"],
    )
    assert analysis.findings[0].clues == ()
    assert analysis.trajectory == ()
    assert len(dropped) == 2


def test_sentence_and_answer_counts_must_agree() -> None:
    with pytest.raises(ValueError, match="2 sentences but 1 attention answers"):
        build_image_analysis("1.2.3", GEOMETRY, "x", ["a", "b"], ["c"])


def test_engine_runs_both_stages_on_the_chest_cr(
    engine: GazexEngine, chest_cr: pydicom.Dataset, caplog: pytest.LogCaptureFixture
) -> None:
    chest_cr.PatientName = "Doe^Jane"
    chest_cr.PatientID = "PID-2231-SECRET"
    caplog.set_level(logging.DEBUG)
    report = engine.analyze_study([chest_cr])
    analysis = report.analysis
    assert analysis.study_instance_uid == chest_cr.StudyInstanceUID
    assert analysis.model.backend == "scripted"
    assert analysis.model.name == "gazex-tiny"
    (image,) = analysis.images
    assert image.sop_instance_uid == chest_cr.SOPInstanceUID
    assert [f.text for f in image.findings] == list(ANSWERS)
    assert [f.label for f in image.findings] == ["cardiomegaly", "pleural_effusion", "consolidation"]
    assert len(image.trajectory) == 4
    for finding in image.findings:
        for region in (finding.observation, *finding.clues):
            if region is not None:
                assert 0 <= region.box.x0 < region.box.x1 <= 1841 and 0 <= region.box.y0 < region.box.y1 <= 1955
    details = report.images[0]
    assert len(details.dropped) == 1
    assert image.omissions == details.dropped  # a dropped region makes the analysis incomplete
    assert details.timings.total >= details.timings.examine + details.timings.attention
    # one examine request, then one batched request with a prompt per sentence about the same image
    examine, attention = engine.backend.requests  # type: ignore[attr-defined]
    assert len(examine.prompts) == 1 and len(attention.prompts) == 3
    assert attention.image.key == examine.image.key
    assert attention.max_new_tokens == engine.checkpoint.gazex.generation.max_new_tokens_attention
    # the drop is logged, with the instance UID but no patient data
    assert "dropped 1 region(s)" in caplog.text
    assert chest_cr.SOPInstanceUID in caplog.text
    assert "Doe" not in caplog.text and "PID-2231" not in caplog.text


def test_unfinished_last_sentence_is_dropped(roomy_checkpoint: Path, chest_cr: pydicom.Dataset) -> None:
    checkpoint = open_checkpoint(roomy_checkpoint)
    long_report = "No pneumothorax. " + "The mediastinum is " + "very " * 300 + "wide"
    backend = ScriptedBackend(
        checkpoint.tokenizer, lambda p: long_report if "description '" not in p else "observation: [(1,1)(9,9)(5,5)]"
    )
    report = GazexEngine(checkpoint, backend).analyze_study([chest_cr])
    (image,) = report.analysis.images
    assert [f.text for f in image.findings] == ["No pneumothorax."]
    assert image.report == "No pneumothorax."  # the SR's report text is what was kept
    assert any("token budget" in note for note in report.images[0].notes)


def test_a_report_that_turns_into_an_attention_answer_is_cut_before_it(
    roomy_checkpoint: Path, chest_cr: pydicom.Dataset, caplog: pytest.LogCaptureFixture
) -> None:
    """Seen in 2 of 501 reports of a fine-tune of the demo model: the report must not carry coordinates."""
    checkpoint = open_checkpoint(roomy_checkpoint)
    garbled = (
        "The trachea is midline. No endotracheal19,10)(20,15)(22,11)] observation : [(18,10)(20,29)(18,20)]. "
        "No pneumothorax."
    )
    backend = ScriptedBackend(
        checkpoint.tokenizer, lambda p: garbled if "description '" not in p else "observation: [(1,1)(9,9)(5,5)]"
    )
    with caplog.at_level(logging.WARNING, logger="inference.pipeline"):
        report = GazexEngine(checkpoint, backend).analyze_study([chest_cr])
    (image,) = report.analysis.images
    assert image.report == "The trachea is midline."
    assert [f.text for f in image.findings] == ["The trachea is midline."]
    (note,) = report.images[0].notes
    assert note.startswith("the report turned into an attention answer (coordinates) in sentence 2; it was cut")
    assert note.endswith("(2 sentence(s) dropped)")
    assert f"SOP instance {chest_cr.SOPInstanceUID}: {note}" in caplog.text
    assert "Doe" not in caplog.text and "PID-2231" not in caplog.text
    # prose that merely holds numbers, brackets or the word "observation" is a report
    plain = "Observation: nodule (12 mm) in the right upper lobe, 3 cm from the hilum. No effusion."
    backend = ScriptedBackend(
        checkpoint.tokenizer, lambda p: plain if "description '" not in p else "observation: [(1,1)(9,9)(5,5)]"
    )
    report = GazexEngine(checkpoint, backend).analyze_study([chest_cr])
    assert report.analysis.images[0].report == plain and report.images[0].notes == ()
    assert report.analysis.images[0].omissions == ()


def test_a_report_caught_in_a_loop_is_cut_before_it(roomy_checkpoint: Path, chest_cr: pydicom.Dataset) -> None:
    """Seen in 1 of 501 reports of a fine-tune of the demo model: a word repeated, then coordinates
    in the unfinished sentence the token budget cut; neither may reach the SR."""
    checkpoint = open_checkpoint(roomy_checkpoint)
    looping = (
        "No pneumothorax. Central venous catheter via the right internal jugular vein vein vein vein, right "
        "superior vena cava. No acute fracture. vein, superior vena right internal jugular vein,3)(46,35)(43,32)"
        + "(45,44)"
        * 200
    )
    backend = ScriptedBackend(
        checkpoint.tokenizer, lambda p: looping if "description '" not in p else "observation: [(1,1)(9,9)(5,5)]"
    )
    report = GazexEngine(checkpoint, backend).analyze_study([chest_cr])
    (image,) = report.analysis.images
    assert image.report == "No pneumothorax." and [f.text for f in image.findings] == ["No pneumothorax."]
    budget, loop = report.images[0].notes
    assert "token budget" in budget
    assert loop == "the report repeats a word in a loop in sentence 2; it was cut there (2 sentence(s) dropped)"
    # the cut travels with the analysis, so the SR can say the report is incomplete
    assert image.omissions == (budget, loop)
    # a word said twice is a typo, not a loop
    prose = "The the heart is normal. Left, left lower lobe atelectasis. Very, very small right effusion."
    assert (
        GazexEngine(checkpoint, ScriptedBackend(checkpoint.tokenizer, lambda p: prose))
        .analyze_study([chest_cr])
        .images[0]
        .notes
        == ()
    )


def test_empty_report(tiny_checkpoint: Path, chest_cr: pydicom.Dataset) -> None:
    checkpoint = open_checkpoint(tiny_checkpoint)
    backend = ScriptedBackend(checkpoint.tokenizer, lambda prompt: "")
    report = GazexEngine(checkpoint, backend).analyze_study([chest_cr])
    (image,) = report.analysis.images
    assert image.findings == () and image.trajectory == () and image.report == ""
    assert report.images[0].notes == ("the model wrote no report sentence",)
    assert image.omissions == ()  # nothing was cut: an empty report is not an incomplete one
    assert len(backend.requests) == 1  # no attention stage without sentences


def test_study_rules(engine: GazexEngine, chest_cr: pydicom.Dataset) -> None:
    with pytest.raises(InferenceError, match="at least one image"):
        engine.analyze([])
    other = pydicom.Dataset()
    other.update(chest_cr)
    other.StudyInstanceUID = "1.2.3.4"
    with pytest.raises(InferenceError, match="one study at a time"):
        engine.analyze([chest_cr, other])
    del chest_cr.PixelData
    with pytest.raises(PixelDataError, match="no Pixel Data") as caught:
        engine.analyze([chest_cr])
    assert caught.value.sop_instance_uid == str(chest_cr.SOPInstanceUID)


def test_an_image_the_model_cannot_take_is_an_input_error_naming_it(
    engine: GazexEngine, chest_cr: pydicom.Dataset
) -> None:
    sliver = pydicom.Dataset()
    sliver.update(chest_cr)
    sliver.file_meta = chest_cr.file_meta
    sliver.Rows, sliver.Columns = 1, 400  # an aspect ratio over 200: no resize for the vision tower exists
    sliver.PixelData = chest_cr.pixel_array[:1, :400].copy().tobytes()
    with pytest.raises(InputImageError) as caught:
        engine.analyze([sliver])
    assert caught.value.sop_instance_uid == str(chest_cr.SOPInstanceUID)
    assert str(caught.value) == (
        f"SOP instance {chest_cr.SOPInstanceUID}: the 1 x 400 image cannot be resized for the model: "
        "aspect ratio must be below 200, got 1 x 400"
    )
