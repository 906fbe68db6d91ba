"""Bad and unusual inputs with a defined outcome, validated where an output is produced."""

from __future__ import annotations

import logging
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import Comprehensive3DSRStorage, SegmentationStorage

from dicom_sr import OUTPUT_KINDS, EncodeError, InstanceReference, Predecessor, encode
from inference.results import Finding, Fixation, ImageAnalysis, Point
from inference.testing import fixed_image_analysis
from tests.dicom_sr.helpers import (
    WHEN,
    ToolFinder,
    child,
    concept_meaning,
    content_items,
    dciodvfy_errors,
    dsrdump_problems,
    empty_analysis,
    hedged_analysis,
    polyline_points,
    region,
    study_analysis,
    to_bytes,
    tracking_groups,
    write,
)

pytestmark = pytest.mark.integration


def _findings_text(sr: Dataset) -> str:
    return next(i.TextValue for i in content_items(sr) if i.ValueType == "TEXT" and concept_meaning(i) == "Findings")


def _validated(datasets: list[Dataset], tmp_path: Path, dicom_tool: ToolFinder) -> list[Dataset]:
    """Write, validate (dciodvfy; dsrdump for SRs) and read back."""
    read: list[Dataset] = []
    for index, dataset in enumerate(datasets):
        path = write(dataset, tmp_path, f"out{index}")
        assert dciodvfy_errors(dicom_tool, path) == [], f"dciodvfy errors in {dataset.Modality}"
        if dataset.Modality == "SR":
            assert dsrdump_problems(dicom_tool, path) == (0, [])
        read.append(pydicom.dcmread(path))
    return read


def test_same_analysis_encodes_to_identical_bytes(chest_cr: Dataset) -> None:
    analysis = study_analysis(chest_cr)
    first = encode(analysis, [chest_cr], OUTPUT_KINDS, analysis_id="job-1", content_datetime=WHEN)
    second = encode(analysis, [chest_cr], OUTPUT_KINDS, analysis_id="job-1", content_datetime=WHEN)
    assert len(first) == len(OUTPUT_KINDS)
    assert [to_bytes(d) for d in first] == [to_bytes(d) for d in second]
    assert "_pixel_array" not in vars(chest_cr) or chest_cr._pixel_array is None  # no cache left on the source


def test_encoding_leaves_the_source_alone(chest_cr: Dataset) -> None:
    before = to_bytes(chest_cr)
    outputs = encode(study_analysis(chest_cr), [chest_cr], OUTPUT_KINDS, analysis_id="x", content_datetime=WHEN)
    assert to_bytes(chest_cr) == before
    for output in outputs:
        output.PatientName = "Changed^Afterwards"
        output.PatientOrientation = ["A", "H"]
    assert chest_cr.PatientName == "CompressedSamples^RG1"
    assert list(chest_cr.PatientOrientation) == ["L", "F"]
    assert all(o.PatientName == "Changed^Afterwards" for o in outputs)


def test_outputs_are_part10_files_even_with_a_plain_save_as(chest_cr: Dataset, tmp_path: Path) -> None:
    for index, dataset in enumerate(
        encode(study_analysis(chest_cr), [chest_cr], analysis_id="x", content_datetime=WHEN)
    ):
        path = tmp_path / f"{index}.dcm"
        dataset.save_as(path)
        assert path.read_bytes()[128:132] == b"DICM"
        assert pydicom.dcmread(path).SOPInstanceUID == dataset.SOPInstanceUID


def test_a_single_fixation_is_a_point(chest_cr: Dataset, tmp_path: Path, dicom_tool: ToolFinder) -> None:
    image = ImageAnalysis(
        str(chest_cr.SOPInstanceUID), int(chest_cr.Rows), int(chest_cr.Columns), "", (), (Fixation(1, Point(5, 6)),)
    )
    datasets = encode(study_analysis(chest_cr, image), [chest_cr], analysis_id="one", content_datetime=WHEN)
    sr, _, gsps = _validated(datasets, tmp_path, dicom_tool)
    groups = tracking_groups(sr)
    assert set(groups) == {"Inspection trajectory"}
    point = child(groups["Inspection trajectory"], "Image Region")
    assert point.GraphicType == "POINT" and polyline_points(point.GraphicData) == [(5.0, 6.0)]
    assert child(groups["Inspection trajectory"], "Comment", "TEXT").TextValue == "Inspection trajectory, 1 fixation"
    trajectory = next(a for a in gsps.GraphicAnnotationSequence if a.GraphicLayer == "AI TRAJECTORY")
    assert [g.GraphicType for g in trajectory.GraphicObjectSequence] == ["CIRCLE"]


def test_uids_follow_analysis_id_and_model(chest_cr: Dataset) -> None:
    analysis = study_analysis(chest_cr)
    first = encode(analysis, [chest_cr], analysis_id="job-1", content_datetime=WHEN)
    again_later = encode(analysis, [chest_cr], analysis_id="job-1", content_datetime=WHEN.replace(year=2030))
    other = encode(analysis, [chest_cr], analysis_id="job-2", content_datetime=WHEN)

    def uids(datasets: list[Dataset]) -> list[tuple[str, str]]:
        return [(d.SeriesInstanceUID, d.SOPInstanceUID) for d in datasets]

    assert uids(first) == uids(again_later)
    assert not set(uids(first)) & set(uids(other))
    for dataset in first:
        assert len(dataset.SOPInstanceUID) <= 64
        pydicom.uid.UID(dataset.SOPInstanceUID).is_valid  # noqa: B018


def test_empty_analysis_still_yields_a_valid_sr_that_says_so(
    chest_cr: Dataset, tmp_path: Path, dicom_tool: ToolFinder
) -> None:
    analysis = study_analysis(chest_cr, empty_analysis(chest_cr))
    datasets = encode(analysis, [chest_cr], analysis_id="empty", content_datetime=WHEN)
    sr, seg, gsps = _validated(datasets, tmp_path, dicom_tool)
    assert sr.CompletionFlag == "COMPLETE"
    assert tracking_groups(sr) == {}
    texts = [i.TextValue for i in content_items(sr) if i.ValueType == "TEXT" and concept_meaning(i) == "Findings"]
    assert texts == ["GazeX reported no findings for this image."]
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["Model attention"]
    assert seg.pixel_array.max() == 0
    (annotation,) = gsps.GraphicAnnotationSequence
    assert any("no findings" in t.UnformattedTextValue for t in annotation.TextObjectSequence)


def test_coordinates_outside_the_image_are_clipped_or_dropped(
    chest_cr: Dataset, tmp_path: Path, dicom_tool: ToolFinder, caplog: pytest.LogCaptureFixture
) -> None:
    rows, columns = int(chest_cr.Rows), int(chest_cr.Columns)
    findings = (
        Finding(
            text="Left chest tube.",
            label="chest_tube",
            present=True,
            observation=region(columns - 100, rows - 50, columns + 400, rows + 300),  # partly outside: clipped
            clues=(region(columns + 10, 10, columns + 50, 60),),  # wholly outside: dropped
        ),
    )
    trajectory = (
        Fixation(1, Point(100, 100)),
        Fixation(2, Point(columns + 5.0, 100)),  # outside: dropped
        Fixation(3, Point(200, 300)),
    )
    image = ImageAnalysis(str(chest_cr.SOPInstanceUID), rows, columns, "Left chest tube.", findings, trajectory)
    with caplog.at_level(logging.WARNING, logger="dicom_sr"):
        datasets = encode(study_analysis(chest_cr, image), [chest_cr], analysis_id="clip", content_datetime=WHEN)
    assert "dropped 2 box(es) or fixation(s)" in caplog.text
    assert str(chest_cr.PatientName) not in caplog.text
    sr, seg, gsps = _validated(datasets, tmp_path, dicom_tool)
    assert sr.CompletionFlag == "PARTIAL"
    groups = tracking_groups(sr)
    assert set(groups) == {"F1 chest tube", "Inspection trajectory"}
    points = polyline_points(child(groups["F1 chest tube"], "Image Region").GraphicData)
    assert max(x for x, _ in points) == columns and max(y for _, y in points) == rows
    path = polyline_points(child(groups["Inspection trajectory"], "Image Region").GraphicData)
    assert path == [(100.0, 100.0), (200.0, 300.0)]
    assert "2 box(es) or fixation(s) outside the image were dropped" in _findings_text(sr)
    assert seg.pixel_array[0, rows - 50 :, columns - 100 :].min() == 255
    assert gsps.GraphicAnnotationSequence[0].GraphicObjectSequence[0].GraphicType == "POLYLINE"


def test_hedged_finding_is_flagged_suspected_and_private_code_declared(
    chest_cr: Dataset, tmp_path: Path, dicom_tool: ToolFinder
) -> None:
    analysis = study_analysis(chest_cr, hedged_analysis(chest_cr))
    datasets = encode(analysis, [chest_cr], analysis_id="hedge", content_datetime=WHEN)
    sr, seg, gsps = _validated(datasets, tmp_path, dicom_tool)
    groups = tracking_groups(sr)
    consolidation = groups["F1 consolidation"]
    finding = child(consolidation, "Finding", "CODE").ConceptCodeSequence[0]
    assert (finding.CodeValue, finding.CodingSchemeDesignator) == ("CONSOLIDATION", "99GAZEX")
    certainty = child(consolidation, "Certainty of Finding").ConceptCodeSequence[0]
    assert (certainty.CodeValue, certainty.CodeMeaning) == ("415684004", "Suspected")
    assert "F2 endotracheal tube" in groups
    tube = child(groups["F2 endotracheal tube"], "Finding", "CODE").ConceptCodeSequence[0]
    assert tube.CodeValue == "26412008"
    assert [s.SegmentLabel for s in seg.SegmentSequence] == [
        "F1 Consolidation (possible)",
        "F2 Endotracheal tube",
        "Model attention",
    ]
    assert seg.SegmentSequence[1].SegmentedPropertyCategoryCodeSequence[0].CodeValue == "260787004"  # device
    for dataset in (sr, seg):
        scheme = dataset.CodingSchemeIdentificationSequence[0]
        assert scheme.CodingSchemeDesignator == "99GAZEX"
        assert scheme.CodingSchemeName
    labels = [t.UnformattedTextValue for t in gsps.GraphicAnnotationSequence[0].TextObjectSequence]
    assert "F1 Consolidation (possible)" in labels


def test_sources_from_different_studies_are_refused(chest_cr: Dataset) -> None:
    other = Dataset()
    other.update(chest_cr)
    other.StudyInstanceUID = "1.2.3.4.5"
    other.SOPInstanceUID = "1.2.3.4.5.6"
    with pytest.raises(EncodeError, match=r"belongs to study 1\.2\.3\.4\.5.*one study at a time"):
        encode(study_analysis(chest_cr), [chest_cr, other], analysis_id="x", content_datetime=WHEN)


def test_source_without_body_part_and_orientation_still_validates(
    chest_cr: Dataset, tmp_path: Path, dicom_tool: ToolFinder
) -> None:
    del chest_cr.BodyPartExamined
    del chest_cr.PatientOrientation
    del chest_cr.PatientSex
    outputs = ("sr", "seg", "gsps", "sc")
    datasets = encode(study_analysis(chest_cr), [chest_cr], outputs, analysis_id="bare", content_datetime=WHEN)
    sr, seg, gsps, sc = _validated(datasets, tmp_path, dicom_tool)
    assert seg.PatientOrientation in ("", None)
    assert sc.PatientOrientation in ("", None)
    assert "BodyPartExamined" not in gsps
    assert gsps.Laterality in ("", None)
    meanings = {concept_meaning(i) for i in content_items(sr)}
    assert "Patient Orientation Row" not in meanings and "Target Region" not in meanings
    assert sr.PatientSex in ("", None)


def test_unanalysed_source_makes_the_sr_partial(chest_cr: Dataset) -> None:
    lateral = Dataset()
    lateral.update(chest_cr)
    lateral.SOPInstanceUID = chest_cr.SOPInstanceUID + ".2"
    (sr,) = encode(study_analysis(chest_cr), [chest_cr, lateral], ("sr",), analysis_id="x", content_datetime=WHEN)
    assert sr.CompletionFlag == "PARTIAL"
    library = next(i for i in sr.ContentSequence if concept_meaning(i) == "Image Library")
    (entry,) = library.ContentSequence[0].ContentSequence
    assert entry.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == chest_cr.SOPInstanceUID


def test_predecessor_is_referenced_and_named(chest_cr: Dataset, tmp_path: Path, dicom_tool: ToolFinder) -> None:
    analysis = study_analysis(chest_cr)
    earlier = encode(analysis, [chest_cr], analysis_id="job-1", content_datetime=WHEN)
    predecessor = Predecessor("job-1", tuple(InstanceReference.from_dataset(d) for d in earlier))
    later = encode(analysis, [chest_cr], analysis_id="job-2", content_datetime=WHEN, predecessor=predecessor)
    sr, seg, gsps = _validated(later, tmp_path, dicom_tool)
    (series,) = sr.PredecessorDocumentsSequence[0].ReferencedSeriesSequence
    (reference,) = series.ReferencedSOPSequence
    assert reference.ReferencedSOPInstanceUID == earlier[0].SOPInstanceUID
    assert reference.ReferencedSOPClassUID == Comprehensive3DSRStorage
    assert series.SeriesInstanceUID == earlier[0].SeriesInstanceUID
    for dataset in (seg, gsps):
        assert dataset.ContentDescription == "GazeX analysis job-2, supersedes job-1"
    assert {d.SeriesInstanceUID for d in later}.isdisjoint(d.SeriesInstanceUID for d in earlier)
    assert earlier[1].SOPClassUID == SegmentationStorage


def test_predecessor_from_another_study_or_itself_is_refused(chest_cr: Dataset) -> None:
    analysis = study_analysis(chest_cr)
    foreign = InstanceReference("1.2.3", "1.2.3.4", Comprehensive3DSRStorage, "1.2.3.4.5")
    with pytest.raises(EncodeError, match="only outputs of the same study"):
        encode(analysis, [chest_cr], analysis_id="b", content_datetime=WHEN, predecessor=Predecessor("a", (foreign,)))
    with pytest.raises(EncodeError, match="cannot supersede itself"):
        encode(analysis, [chest_cr], analysis_id="a", content_datetime=WHEN, predecessor=Predecessor("a"))


def test_text_outside_the_character_set_is_transliterated(
    chest_cr: Dataset, tmp_path: Path, dicom_tool: ToolFinder
) -> None:
    base = fixed_image_analysis(str(chest_cr.SOPInstanceUID), int(chest_cr.Rows), int(chest_cr.Columns))
    effusion = base.findings[0]
    sentence = "Épanchement pleural droit — petit, 2 cm → à surveiller."
    changed = Finding(sentence, effusion.label, True, effusion.observation, effusion.clues)
    image = ImageAnalysis(base.sop_instance_uid, base.rows, base.columns, sentence, (changed,), base.trajectory)
    datasets = encode(study_analysis(chest_cr, image), [chest_cr], ("sr",), analysis_id="t", content_datetime=WHEN)
    (sr,) = _validated(datasets, tmp_path, dicom_tool)
    text = child(tracking_groups(sr)["F1 pleural effusion"], "Finding", "TEXT").TextValue
    assert text == "Épanchement pleural droit - petit, 2 cm ? à surveiller."  # ISO_IR 100 keeps the accents

    del chest_cr.SpecificCharacterSet
    (ascii_sr,) = encode(study_analysis(chest_cr, image), [chest_cr], ("sr",), analysis_id="t", content_datetime=WHEN)
    text = child(tracking_groups(ascii_sr)["F1 pleural effusion"], "Finding", "TEXT").TextValue
    assert text == "Epanchement pleural droit - petit, 2 cm ? a surveiller."
    assert "SpecificCharacterSet" not in ascii_sr


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda ds: delattr(ds, "SOPInstanceUID"), "lacks the required attribute"),
        (lambda ds: setattr(ds, "NumberOfFrames", 3), "3 frames"),
        (lambda ds: setattr(ds, "Rows", 1000), "is for 1955 x 1841 pixels, but the source has 1000 x 1841"),
    ],
)
def test_malformed_sources_are_refused(chest_cr: Dataset, change: object, message: str) -> None:
    analysis = study_analysis(chest_cr)
    change(chest_cr)  # type: ignore[operator]
    with pytest.raises(EncodeError, match=message):
        encode(analysis, [chest_cr], analysis_id="x", content_datetime=WHEN)


def test_colour_source_cannot_have_a_gsps(chest_cr: Dataset) -> None:
    chest_cr.PhotometricInterpretation = "RGB"
    chest_cr.SamplesPerPixel = 3
    with pytest.raises(EncodeError, match="grayscale presentation state"):
        encode(study_analysis(chest_cr), [chest_cr], ("gsps",), analysis_id="x", content_datetime=WHEN)


def test_missing_pixel_data_fails_only_the_secondary_capture(chest_cr: Dataset) -> None:
    del chest_cr.PixelData
    assert len(encode(study_analysis(chest_cr), [chest_cr], analysis_id="x", content_datetime=WHEN)) == 3
    with pytest.raises(EncodeError, match="leave 'sc' out"):
        encode(study_analysis(chest_cr), [chest_cr], ("sc",), analysis_id="x", content_datetime=WHEN)


def test_two_images_share_one_sr_and_get_a_seg_and_gsps_each(
    chest_cr: Dataset, tmp_path: Path, dicom_tool: ToolFinder
) -> None:
    second = Dataset()
    second.update(chest_cr)
    second.SOPInstanceUID = chest_cr.SOPInstanceUID + ".2"
    images = tuple(
        fixed_image_analysis(str(ds.SOPInstanceUID), int(ds.Rows), int(ds.Columns)) for ds in (chest_cr, second)
    )
    analysis = study_analysis(chest_cr)
    analysis = type(analysis)(analysis.study_instance_uid, images, analysis.model, 1.0)
    encoded = encode(analysis, [chest_cr, second], analysis_id="two", content_datetime=WHEN)
    datasets = _validated(encoded, tmp_path, dicom_tool)
    assert [d.Modality for d in datasets] == ["SR", "SEG", "SEG", "PR", "PR"]
    groups = tracking_groups(datasets[0])
    expected = {"F1 pleural effusion", "F2 pleural effusion", "Inspection trajectory, image 1"}
    assert expected | {"Inspection trajectory, image 2"} <= set(groups)
    assert datasets[1].SeriesInstanceUID == datasets[2].SeriesInstanceUID
    assert [d.InstanceNumber for d in datasets[1:3]] == [1, 2]


def test_present_finding_without_a_usable_box_is_a_group_without_a_region(
    chest_cr: Dataset, tmp_path: Path, dicom_tool: ToolFinder
) -> None:
    rows, columns = int(chest_cr.Rows), int(chest_cr.Columns)
    findings = (
        Finding("Cardiac pacemaker.", "cardiac_device", True, None),  # the model gave no box
        Finding("Rib fracture.", "fracture", True, region(columns + 1, 0, columns + 90, 50)),  # box wholly outside
    )
    image = ImageAnalysis(str(chest_cr.SOPInstanceUID), rows, columns, "Cardiac pacemaker. Rib fracture.", findings, ())
    datasets = encode(study_analysis(chest_cr, image), [chest_cr], analysis_id="nobox", content_datetime=WHEN)
    sr, seg, gsps = _validated(datasets, tmp_path, dicom_tool)
    assert sr.CompletionFlag == "PARTIAL"  # the fracture's box was dropped
    groups = tracking_groups(sr)
    assert set(groups) == {"F1 cardiac pacemaker or defibrillator", "F2 fracture"}
    for group in groups.values():
        assert group.ContentTemplateSequence[0].TemplateIdentifier == "1501"
        assert not [i for i in group.ContentSequence if i.ValueType == "SCOORD"]
        source = child(group, "Source of Measurement", "IMAGE")
        assert source.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == chest_cr.SOPInstanceUID
    assert child(groups["F2 fracture"], "Finding", "TEXT").TextValue == "Rib fracture."
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["Model attention"]
    assert "GraphicObjectSequence" not in gsps.GraphicAnnotationSequence[0]
