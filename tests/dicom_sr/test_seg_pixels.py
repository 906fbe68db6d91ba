"""SEG pixels: box coverage, the attention density, the two levels OHIF reads, the functional
groups OHIF needs, and equality with highdicom's own path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from benchmarks.encode import synthetic_radiograph
from dicom_sr import EncodeSettings, encode
from dicom_sr.seg import (
    add_plane_groups,
    box_fraction,
    box_frame,
    coverage,
    derived_attention,
    quantize,
    segmentation,
    two_levels,
)
from inference.results import Box, Finding, Fixation, ImageAnalysis, Point
from tests.dicom_sr.helpers import WHEN, region, study_analysis, write


def test_coverage_of_partial_pixels() -> None:
    assert coverage(1.5, 3.25, 5).tolist() == [0.0, 0.5, 1.0, 0.25, 0.0]
    assert coverage(-3, 10, 4).tolist() == [1.0, 1.0, 1.0, 1.0]


def test_box_frame_equals_the_quantized_fraction() -> None:
    box = Box(10.5, 3.25, 30.75, 20.0)
    assert np.array_equal(box_frame(box, 32, 40), quantize(box_fraction(box, 32, 40)))
    assert box_frame(box, 32, 40).sum() == pytest.approx(255 * box.area, rel=0.01)


def test_derived_attention_peaks_at_fixations_and_is_deterministic() -> None:
    fixations = (Point(10.5, 10.5), Point(50.5, 30.5))
    density = derived_attention(40, 64, fixations, (Box(0, 0, 8, 8),))
    assert density.dtype == np.float32 and density.shape == (40, 64)
    assert density.max() == pytest.approx(1.0) and density.min() >= 0.0
    assert density[10, 10] > density[25, 30] and density[30, 50] > density[25, 30]
    assert np.array_equal(density, derived_attention(40, 64, fixations, (Box(0, 0, 8, 8),)))
    assert derived_attention(40, 64, (), ()).max() == 0.0


def test_two_levels_are_the_half_threshold_of_the_fraction() -> None:
    edges = np.array([0.5, 0.4999, 0.5001], dtype=np.float32)
    fractions = np.concatenate([np.linspace(0, 1, 1001, dtype=np.float32), edges])
    expected = np.where(fractions >= 0.5, 255, 0)
    assert np.array_equal(two_levels(quantize(fractions)), expected)
    box = Box(10.5, 3.25, 30.75, 20.0)
    assert np.array_equal(box_frame(box, 32, 40, exact=False), np.where(box_fraction(box, 32, 40) >= 0.5, 255, 0))
    assert set(np.unique(box_frame(box, 32, 40, exact=False)).tolist()) == {0, 255}


@pytest.mark.parametrize("exact", [False, True])
def test_model_attention_is_used_when_given(exact: bool) -> None:
    source = synthetic_radiograph(24, 32)
    attention = np.zeros((24, 32), dtype=np.float32)
    attention[5:10, 6:12] = 0.5
    attention[15:20, 6:12] = 0.3
    image = ImageAnalysis(str(source.SOPInstanceUID), 24, 32, "", (), (), attention=attention)
    (seg,) = encode(
        study_analysis(source, image), [source], ("seg",), analysis_id="x", content_datetime=WHEN,
        settings=EncodeSettings(seg_exact_fractions=exact),
    )  # fmt: skip
    frame = np.frombuffer(seg.PixelData[: 24 * 32], dtype=np.uint8).reshape(24, 32)
    high, low = (128, 76) if exact else (255, 0)
    assert frame[5:10, 6:12].min() == high and frame[15:20, 6:12].max() == low
    assert frame.sum() == (high + low) * 30
    params = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0].AlgorithmParameters
    assert "attention=model" in params
    assert ("levels=255 from half the peak" in params) is not exact


def _flat(dataset: Dataset, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for element in dataset:
        if element.VR == "SQ":
            for index, item in enumerate(element.value):
                out.update(_flat(item, f"{prefix}{element.keyword}[{index}]."))
        else:
            out[prefix + element.keyword] = element.value
    return out


@pytest.mark.parametrize("exact", [True, False])
def test_segmentation_equals_highdicoms_float_path(exact: bool) -> None:
    """Same segments through highdicom's default (float) path give the same dataset and pixels:
    the exact fractions, and the two levels (highdicom given the fractions thresholded at 0.5)."""
    source = synthetic_radiograph(48, 64)
    planes = np.stack(
        [
            box_fraction(Box(3.25, 4.5, 20.75, 30.0), 48, 64),
            box_fraction(Box(30.1, 10.9, 63.0, 47.5), 48, 64),
            derived_attention(48, 64, (Point(10, 10), Point(40, 30)), ()),
        ]
    )
    stack = np.stack([quantize(plane) for plane in planes])
    if not exact:
        planes = (planes >= 0.5).astype(np.float32)
        stack = np.stack([two_levels(frame) for frame in stack])
    algorithm = hd.AlgorithmIdentificationSequence(name="x", family=codes.cid7162.ArtificialIntelligence, version="0")
    descriptions = [
        hd.seg.SegmentDescription(k + 1, f"s{k}", codes.cid7150.Tissue, codes.SCT.Lesion, "AUTOMATIC", algorithm)
        for k in range(3)
    ]
    common: dict[str, Any] = {
        "series_instance_uid": "1.2.3",
        "series_number": 1,
        "sop_instance_uid": "1.2.3.4",
        "instance_number": 1,
        "manufacturer": "m",
        "manufacturer_model_name": "m",
        "software_versions": "0",
        "device_serial_number": "0",
        "content_label": "GAZEX_AI",
    }
    ours = segmentation(source, stack, descriptions, segments_overlap="YES", **common)
    header = Dataset()
    header.update(source)
    del header.PixelSpacing, header.PixelData
    reference = hd.seg.Segmentation(
        [header], planes.transpose(1, 2, 0)[None], "FRACTIONAL", descriptions,
        fractional_type="PROBABILITY", omit_empty_frames=False, **common,
    )  # fmt: skip
    assert ours.PixelData == reference.PixelData
    differing = {
        key for key in _flat(ours).keys() | _flat(reference).keys() if _flat(ours).get(key) != _flat(reference).get(key)
    }
    # highdicom fills these from the clock or at random (finalize() pins them), and leaves
    # Segments Overlap UNDEFINED for truly fractional data, where we read it from the pixels.
    if exact:
        assert reference.SegmentsOverlap == "UNDEFINED"
    assert all(
        key.endswith(("DimensionOrganizationUID", "ContributionDateTime", "CreationTime", "ContentTime"))
        or key == "SegmentsOverlap"
        for key in differing
    ), differing


@pytest.mark.parametrize("exact", [False, True])
def test_encoded_seg_frames_are_the_quantized_segments(exact: bool) -> None:
    source = synthetic_radiograph(48, 64)
    findings = (
        Finding("A.", "nodule", True, region(3.25, 4.5, 20.75, 30.0)),
        Finding("B.", "mass", True, region(30.1, 10.9, 63.0, 47.5)),
    )
    trajectory = (Fixation(1, Point(10, 10)), Fixation(2, Point(40, 30)))
    image = ImageAnalysis(str(source.SOPInstanceUID), 48, 64, "A. B.", findings, trajectory)
    (seg,) = encode(
        study_analysis(source, image), [source], ("seg",), analysis_id="x", content_datetime=WHEN,
        settings=EncodeSettings(seg_exact_fractions=exact),
    )  # fmt: skip
    expected = [box_frame(f.observation.box, 48, 64) for f in findings if f.observation]
    expected.append(quantize(derived_attention(48, 64, tuple(f.point for f in trajectory), ())))
    if not exact:
        expected = [two_levels(frame) for frame in expected]
    assert seg.PixelData == np.stack(expected).tobytes()
    assert seg.SegmentationType == "FRACTIONAL" and seg.SegmentationFractionalType == "PROBABILITY"
    assert seg.MaximumFractionalValue == 255
    assert seg.SegmentsOverlap == "YES"


@pytest.mark.parametrize("exact", [False, True])
def test_segments_overlap_is_read_from_the_pixels(exact: bool) -> None:
    source = synthetic_radiograph(40, 40)
    apart = (
        Finding("A.", "nodule", True, region(0, 0, 10, 10)),
        Finding("B.", "mass", True, region(20, 20, 30, 30)),
    )
    touching = (apart[0], Finding("B.", "mass", True, region(10, 0, 20, 10)))  # shares an edge, no pixel
    grazing = (apart[0], Finding("B.", "mass", True, region(9.5, 9.5, 20, 20)))  # a quarter of pixel (9, 9)
    crossing = (apart[0], Finding("B.", "mass", True, region(8.5, 8.5, 20, 20)))
    overlaps = []
    for findings in (apart, touching, grazing, crossing):
        image = ImageAnalysis(str(source.SOPInstanceUID), 40, 40, "", findings, ())  # no attention
        (seg,) = encode(
            study_analysis(source, image), [source], ("seg",), analysis_id="x", content_datetime=WHEN,
            settings=EncodeSettings(seg_exact_fractions=exact),
        )  # fmt: skip
        overlaps.append(seg.SegmentsOverlap)
    # two levels: a quarter of a pixel is not in the segment, so the grazing boxes do not overlap
    assert overlaps == ["NO", "NO", "YES" if exact else "NO", "YES"]


@pytest.mark.parametrize(
    ("spacing", "expected"),
    [
        ({"PixelSpacing": ["0.2", "0.25"]}, ["0.2", "0.25"]),
        ({"ImagerPixelSpacing": ["0.15", "0.15"]}, ["0.15", "0.15"]),
        ({}, ["1", "1"]),
        ({"PixelSpacing": ["0.000", "0.000"]}, ["1", "1"]),  # the NEMA chest CR's
        ({"PixelSpacing": ["0", "0"], "ImagerPixelSpacing": ["0.1", "0.1"]}, ["0.1", "0.1"]),
    ],
)
def test_plane_groups_ohif_needs(spacing: dict[str, list[str]], expected: list[str], tmp_path: Path) -> None:
    """Shared Pixel Measures and Plane Orientation (identity), no frame of reference, and the
    SEG still reads back with highdicom, frames mapped onto the source image."""
    source = synthetic_radiograph(16, 24)
    del source.PixelSpacing
    for keyword, value in spacing.items():
        setattr(source, keyword, value)
    finding = Finding("A.", "nodule", True, region(2, 2, 9, 9))
    image = ImageAnalysis(str(source.SOPInstanceUID), 16, 24, "A.", (finding,), ())
    (seg,) = encode(study_analysis(source, image), [source], ("seg",), analysis_id="x", content_datetime=WHEN)
    shared = seg.SharedFunctionalGroupsSequence[0]
    assert [str(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing] == expected
    assert float(shared.PixelMeasuresSequence[0].SliceThickness) == 1.0
    assert [float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    assert "FrameOfReferenceUID" not in seg
    for frame in seg.PerFrameFunctionalGroupsSequence:
        assert "PlanePositionSequence" not in frame
        [derivation] = frame.DerivationImageSequence
        assert derivation.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    read = hd.seg.segread(write(seg, tmp_path, "seg"))
    assert read.number_of_segments == 2
    assert read.get_segment_description(1).segment_label == "F1 Nodule"


def test_plane_groups_keep_an_existing_shared_group() -> None:
    source = synthetic_radiograph(8, 8)
    seg = Dataset()
    item = Dataset()
    item.SegmentIdentificationSequence = [Dataset()]
    seg.SharedFunctionalGroupsSequence = [item]
    add_plane_groups(seg, source)
    assert "SegmentIdentificationSequence" in seg.SharedFunctionalGroupsSequence[0]
    assert "PixelMeasuresSequence" in seg.SharedFunctionalGroupsSequence[0]
