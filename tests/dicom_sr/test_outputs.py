"""Every output written, read back, validated by dciodvfy/dsrdump/dcmpschk, and checked for content.

Runs on the real chest CR (MONOCHROME1, 1955 x 1841, Pixel Spacing 0\\0) and on a DX
MONOCHROME2 image derived from it.
"""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import (
    BasicTextSRStorage,
    Comprehensive3DSRStorage,
    GrayscaleSoftcopyPresentationStateStorage,
    SecondaryCaptureImageStorage,
    SegmentationStorage,
)

from dicom_sr import OUTPUT_KINDS, encode
from tests.dicom_sr.helpers import (
    WHEN,
    ToolFinder,
    child,
    concept_meaning,
    content_items,
    dciodvfy_errors,
    dcmpschk_report,
    derived_dx,
    dsrdump_problems,
    polyline_points,
    study_analysis,
    tracking_groups,
    walk,
    write,
)

pytestmark = pytest.mark.integration

CLASSES = {
    Comprehensive3DSRStorage: "sr",
    SegmentationStorage: "seg",
    GrayscaleSoftcopyPresentationStateStorage: "gsps",
    BasicTextSRStorage: "text_sr",
    SecondaryCaptureImageStorage: "sc",
}


@pytest.fixture(params=["cr", "dx"])
def source(request: pytest.FixtureRequest, chest_cr: Dataset) -> Dataset:
    return chest_cr if request.param == "cr" else derived_dx(chest_cr)


@pytest.fixture
def written(source: Dataset, tmp_path: Path) -> dict[str, Dataset]:
    """All five output kinds for ``source``, written to disk and read back."""
    datasets = encode(study_analysis(source), [source], OUTPUT_KINDS, analysis_id="job-42", content_datetime=WHEN)
    result: dict[str, Dataset] = {}
    for dataset in datasets:
        kind = CLASSES[dataset.SOPClassUID]
        assert kind not in result, f"one {kind} expected for one image"
        path = write(dataset, tmp_path, kind)
        result[kind] = pydicom.dcmread(path)
        result[kind].filename = str(path)
    assert set(result) == set(OUTPUT_KINDS)
    return result


def test_every_output_passes_dciodvfy(written: dict[str, Dataset], dicom_tool: ToolFinder) -> None:
    problems = {kind: dciodvfy_errors(dicom_tool, Path(ds.filename)) for kind, ds in written.items()}
    assert problems == {kind: [] for kind in written}, f"dciodvfy errors: {problems}"


def test_srs_pass_dsrdump(written: dict[str, Dataset], dicom_tool: ToolFinder) -> None:
    for kind in ("sr", "text_sr"):
        status, problems = dsrdump_problems(dicom_tool, Path(written[kind].filename))
        assert (status, problems) == (0, []), f"dsrdump on the {kind}: {problems}"


def test_gsps_passes_dcmpschk(written: dict[str, Dataset], dicom_tool: ToolFinder) -> None:
    status, report = dcmpschk_report(dicom_tool, Path(written["gsps"].filename))
    assert status == 0, report
    assert "Test passed" in report, report
    assert not [line for line in report.splitlines() if line.startswith(("E:", "F:"))], report


def test_every_output_is_in_the_source_study_with_its_own_series(written: dict[str, Dataset], source: Dataset) -> None:
    series = {kind: ds.SeriesInstanceUID for kind, ds in written.items()}
    assert len(set(series.values())) == len(series)
    for kind, ds in written.items():
        assert ds.StudyInstanceUID == source.StudyInstanceUID
        assert ds.SeriesInstanceUID != source.SeriesInstanceUID
        assert ds.SpecificCharacterSet == source.SpecificCharacterSet == "ISO_IR 100"
        for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID"):
            assert ds[keyword].value == source[keyword].value, (kind, keyword)
        assert ds.SeriesDescription.startswith("GazeX AI")
        assert f"({'SR' if kind in ('sr', 'text_sr') else kind.upper()})" in ds.SeriesDescription
        assert ds.ContentDate == "20240506" if "ContentDate" in ds else True
        assert ds.InstanceCreationDate == "20240506" and ds.InstanceCreationTime == "070809"


def test_no_zero_pixel_spacing_reaches_any_output(written: dict[str, Dataset]) -> None:
    for kind, ds in written.items():
        for item in walk(ds):
            for keyword in ("PixelSpacing", "ImagerPixelSpacing", "PresentationPixelSpacing"):
                if keyword in item:
                    assert all(float(v) > 0 for v in item[keyword].value), (kind, keyword, item[keyword].value)


def test_contributing_equipment_names_the_model(written: dict[str, Dataset]) -> None:
    for kind, ds in written.items():
        processing = [
            item
            for item in ds.ContributingEquipmentSequence
            if item.PurposeOfReferenceCodeSequence[0].CodeValue == "109102" and "DeviceUID" in item
        ]
        assert len(processing) == 1, kind
        item = processing[0]
        assert item.Manufacturer == "GazeX Gateway project"
        assert item.ManufacturerModelName == "gazex-fake"
        assert item.SoftwareVersions == "0"
        assert item.PurposeOfReferenceCodeSequence[0].CodingSchemeDesignator == "DCM"
        assert item.PurposeOfReferenceCodeSequence[0].CodeMeaning == "Processing Equipment"


# --- SR ---------------------------------------------------------------------------------


def test_sr_flags_and_context(written: dict[str, Dataset], source: Dataset) -> None:
    sr = written["sr"]
    assert sr.CompletionFlag == "COMPLETE"
    assert sr.VerificationFlag == "UNVERIFIED"
    assert sr.ConceptNameCodeSequence[0].CodeValue == "126000"
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    top = {concept_meaning(item): item for item in sr.ContentSequence}
    assert top["Observer Type"].ConceptCodeSequence[0].CodeValue == "121007"  # Device
    assert top["Device Observer Model Name"].TextValue == "gazex-fake 0"
    assert top["Procedure reported"].ConceptCodeSequence[0].CodeValue == "168537006"
    library = top["Image Library"]
    (group,) = library.ContentSequence
    (entry,) = group.ContentSequence
    assert entry.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert entry.ReferencedSOPSequence[0].ReferencedSOPClassUID == source.SOPClassUID
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    schemes = [item.CodingSchemeDesignator for item in sr.CodingSchemeIdentificationSequence]
    assert schemes == ["99GAZEX"]


def test_sr_finding_group_is_coded_tracked_and_boxed(written: dict[str, Dataset], source: Dataset) -> None:
    sr = written["sr"]
    groups = tracking_groups(sr)
    assert set(groups) == {
        "F1 pleural effusion",
        "F1 clue 1",
        "F1 clue 2",
        "Inspection trajectory",
    }
    effusion = groups["F1 pleural effusion"]
    assert effusion.ContentTemplateSequence[0].TemplateIdentifier == "1410"
    finding = child(effusion, "Finding", "CODE").ConceptCodeSequence[0]
    assert (finding.CodeValue, finding.CodingSchemeDesignator) == ("60046008", "SCT")
    assert child(effusion, "Finding", "TEXT").TextValue == "Small right pleural effusion."
    # The Comment is what OHIF labels a tracked measurement with: the sentence, readable.
    assert child(effusion, "Comment", "TEXT").TextValue == "F1: Small right pleural effusion."
    assert child(effusion, "Algorithm Name").TextValue == "gazex-fake"
    assert child(effusion, "Algorithm Version").TextValue == "0"
    uid = child(effusion, "Tracking Unique Identifier").UID
    assert uid.startswith("2.25.")
    region = child(effusion, "Image Region")
    assert region.GraphicType == "POLYLINE"
    points = polyline_points(region.GraphicData)
    (image,) = study_analysis(source).images
    expected = image.findings[0].observation.box.closed_polyline()  # type: ignore[union-attr]
    assert len(points) == 5 and points[0] == points[-1]
    for (x, y), point in zip(points, expected, strict=True):
        assert abs(x - point.x) <= 0.5 and abs(y - point.y) <= 0.5
    selected = region.ContentSequence[0].ReferencedSOPSequence[0]
    assert selected.ReferencedSOPInstanceUID == source.SOPInstanceUID
    clue = groups["F1 clue 2"]
    assert child(clue, "Finding", "CODE").ConceptCodeSequence[0].CodeValue == "VISUAL_CLUE"
    assert child(clue, "Comment", "TEXT").TextValue == "F1 visual clue 2: Small right pleural effusion."
    clue_points = polyline_points(child(clue, "Image Region").GraphicData)
    box = image.findings[0].clues[1].box
    assert abs(clue_points[2][0] - box.x1) <= 0.5 and abs(clue_points[2][1] - box.y1) <= 0.5


def test_sr_trajectory_keeps_reading_order(written: dict[str, Dataset], source: Dataset) -> None:
    groups = tracking_groups(written["sr"])
    (image,) = study_analysis(source).images
    expected = [(f.point.x, f.point.y) for f in image.trajectory]
    path = child(groups["Inspection trajectory"], "Image Region")
    assert path.GraphicType == "POLYLINE"
    points = polyline_points(path.GraphicData)
    assert points[0] != points[-1]  # open
    assert all(abs(a - c) <= 0.5 and abs(b - d) <= 0.5 for (a, b), (c, d) in zip(points, expected, strict=True))
    # One measurement, labelled as one thing; no NUM items that break a viewer's tracking.
    trajectory = groups["Inspection trajectory"]
    identifier = child(trajectory, "Tracking Identifier").TextValue
    assert identifier == "Cornerstone3DTools@^0.1.0:PlanarFreehandROI:Inspection trajectory"  # OHIF keeps it
    assert child(trajectory, "Comment", "TEXT").TextValue == "Inspection trajectory, 5 fixations"
    assert not [item for item in trajectory.ContentSequence if item.ValueType == "NUM"]


def test_sr_absent_findings_and_report_text(written: dict[str, Dataset]) -> None:
    evaluations = next(i for i in written["sr"].ContentSequence if concept_meaning(i) == "Qualitative Evaluations")
    codes = {
        (item.ConceptNameCodeSequence[0].CodeValue, item.ConceptCodeSequence[0].CodeValue)
        for item in evaluations.ContentSequence
        if item.ValueType == "CODE"
    }
    assert codes == {("287272002", "272519000"), ("36118008", "272519000")}  # cardiomegaly, pneumothorax: absent
    (text,) = [i for i in evaluations.ContentSequence if i.ValueType == "TEXT"]
    assert concept_meaning(text) == "Findings"
    assert text.TextValue == "Small right pleural effusion. The heart size is normal. No pneumothorax."


def test_sr_reads_back_with_highdicom(written: dict[str, Dataset]) -> None:
    sr = hd.sr.srread(written["sr"].filename)
    assert isinstance(sr, hd.sr.Comprehensive3DSR)
    report = hd.sr.MeasurementReport.from_sequence(sr.content)
    planar = report.get_planar_roi_measurement_groups()
    assert "F1 pleural effusion" in [g.tracking_identifier for g in planar]


def test_text_sr_lists_every_sentence(written: dict[str, Dataset]) -> None:
    texts = [i.TextValue for i in content_items(written["text_sr"]) if i.ValueType == "TEXT"]
    assert "Small right pleural effusion." in texts
    assert "No pneumothorax." in texts
    assert any("not for diagnosis" in t for t in texts)
    assert written["text_sr"].VerificationFlag == "UNVERIFIED"


# --- SEG --------------------------------------------------------------------------------


def test_seg_segments_and_pixels(written: dict[str, Dataset], source: Dataset) -> None:
    seg = written["seg"]
    assert seg.SegmentationType == "FRACTIONAL"
    assert seg.SegmentationFractionalType == "PROBABILITY"
    assert (seg.Rows, seg.Columns) == (source.Rows, source.Columns)
    assert "FrameOfReferenceUID" not in seg
    assert list(seg.PatientOrientation) == ["L", "F"]
    labels = [s.SegmentLabel for s in seg.SegmentSequence]
    assert labels == ["F1 Pleural effusion", "Model attention"]
    for segment in seg.SegmentSequence:
        assert segment.SegmentationAlgorithmIdentificationSequence[0].AlgorithmName == "gazex-fake"
        assert segment.SegmentAlgorithmType == "AUTOMATIC"
    effusion, attention = seg.SegmentSequence
    assert effusion.SegmentedPropertyTypeCodeSequence[0].CodeValue == "60046008"
    assert attention.SegmentedPropertyTypeCodeSequence[0].CodeValue == "130404"  # Saliency
    sr_uid = child(tracking_groups(written["sr"])["F1 pleural effusion"], "Tracking Unique Identifier").UID
    assert effusion.TrackingUID == sr_uid

    frames = seg.pixel_array
    assert frames.shape == (2, source.Rows, source.Columns)
    (image,) = study_analysis(source).images
    box = image.findings[0].observation.box  # type: ignore[union-attr]
    inside = frames[0, int(box.y0) + 2 : int(box.y1) - 2, int(box.x0) + 2 : int(box.x1) - 2]
    assert inside.min() == 255
    assert frames[0, : int(box.y0) - 1].max() == 0
    assert frames[0].sum() == pytest.approx(255 * box.area, rel=0.002)
    attention = frames[1].astype(np.float64)
    assert attention.max() == 255
    first = image.trajectory[0].point
    assert attention[int(first.y), int(first.x)] > 100
    assert attention[5, 5] < attention[int(first.y), int(first.x)]


def test_seg_reads_back_with_highdicom(written: dict[str, Dataset]) -> None:
    seg = hd.seg.segread(written["seg"].filename)
    assert seg.number_of_segments == 2
    assert seg.get_segment_description(1).segment_label == "F1 Pleural effusion"


# --- GSPS -------------------------------------------------------------------------------


def test_gsps_layers_boxes_labels_and_trajectory(written: dict[str, Dataset], source: Dataset) -> None:
    gsps = written["gsps"]
    layers = {layer.GraphicLayer: layer for layer in gsps.GraphicLayerSequence}
    assert set(layers) == {"AI FINDINGS", "AI TRAJECTORY"}
    assert list(layers["AI FINDINGS"].GraphicLayerRecommendedDisplayCIELabValue) != list(
        layers["AI TRAJECTORY"].GraphicLayerRecommendedDisplayCIELabValue
    )
    referenced = [
        image.ReferencedSOPInstanceUID
        for series in gsps.ReferencedSeriesSequence
        for image in series.ReferencedImageSequence
    ]
    assert referenced == [source.SOPInstanceUID]
    annotations = {a.GraphicLayer: a for a in gsps.GraphicAnnotationSequence}
    for annotation in annotations.values():
        assert annotation.ReferencedImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    (image,) = study_analysis(source).images
    findings = annotations["AI FINDINGS"]
    (box_object,) = findings.GraphicObjectSequence
    assert box_object.GraphicType == "POLYLINE" and box_object.GraphicAnnotationUnits == "PIXEL"
    expected = image.findings[0].observation.box  # type: ignore[union-attr]
    points = polyline_points(box_object.GraphicData)
    assert abs(points[0][0] - expected.x0) <= 0.5 and abs(points[2][1] - expected.y1) <= 0.5
    labels = {t.UnformattedTextValue: t for t in findings.TextObjectSequence}
    label = labels["F1 Pleural effusion"]
    assert [float(v) for v in label.AnchorPoint] == pytest.approx([expected.x0, expected.y0], abs=0.5)
    assert label.GraphicGroupID == box_object.GraphicGroupID
    assert any("not for diagnosis" in text for text in labels)

    trajectory = annotations["AI TRAJECTORY"]
    polylines = [g for g in trajectory.GraphicObjectSequence if g.GraphicType == "POLYLINE"]
    assert len(polylines) == 1
    expected_path = [(f.point.x, f.point.y) for f in image.trajectory]
    flat = [v for point in expected_path for v in point]
    assert [float(v) for v in polylines[0].GraphicData] == pytest.approx(flat, abs=0.5)
    numbers = [t.UnformattedTextValue for t in trajectory.TextObjectSequence]
    assert numbers == ["1", "2", "3", "4", "5"]


def test_gsps_keeps_the_display_window(written: dict[str, Dataset], source: Dataset) -> None:
    gsps = written["gsps"]
    (voi,) = gsps.SoftcopyVOILUTSequence
    assert float(voi.WindowCenter) == pytest.approx(float(source.WindowCenter))
    assert float(voi.WindowWidth) == pytest.approx(float(source.WindowWidth))
    expected_shape = "INVERSE" if source.PhotometricInterpretation == "MONOCHROME1" else "IDENTITY"
    assert gsps.PresentationLUTShape == expected_shape


# --- Secondary Capture ------------------------------------------------------------------


def test_secondary_capture_is_burned_in_rgb(written: dict[str, Dataset], source: Dataset) -> None:
    sc = written["sc"]
    assert sc.BurnedInAnnotation == "YES"
    assert sc.PhotometricInterpretation == "RGB"
    assert (sc.Rows, sc.Columns) == (source.Rows, source.Columns)
    pixels = sc.pixel_array
    yellow = (pixels[..., 0] == 255) & (pixels[..., 1] == 210) & (pixels[..., 2] == 0)
    assert yellow.sum() > 1000  # the box outline and label
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert "not for diagnosis" in sc.ImageComments
