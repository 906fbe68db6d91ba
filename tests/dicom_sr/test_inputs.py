"""Input checks and cleaning (pure, no external tools)."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset

from benchmarks.encode import synthetic_radiograph
from dicom_sr import EncodeError, encode
from dicom_sr.inputs import source_header, valid_spacing
from inference.results import StudyAnalysis
from inference.testing import FAKE_IDENTITY, fixed_image_analysis
from tests.dicom_sr.helpers import WHEN, study_analysis


@pytest.fixture
def small() -> Dataset:
    return synthetic_radiograph(48, 64)


def test_source_header_drops_pixels_and_bad_spacing(chest_cr: Dataset) -> None:
    header = source_header(chest_cr)
    assert "PixelData" not in header and "PixelSpacing" not in header
    assert "PixelData" in chest_cr and "PixelSpacing" in chest_cr  # the source is untouched
    assert header.SOPInstanceUID == chest_cr.SOPInstanceUID
    assert header.WindowCenter == chest_cr.WindowCenter


def test_source_header_fills_missing_type2_attributes(small: Dataset) -> None:
    del small.PatientName, small.AccessionNumber
    header = source_header(small)
    assert header.PatientName == "" and header.AccessionNumber == ""


@pytest.mark.parametrize(
    ("value", "valid"),
    [([0.139, 0.139], True), (["0.000", "0.000"], False), ([0.1], False), ([float("nan"), 1.0], False), ("1", False)],
)
def test_valid_spacing(value: object, valid: bool) -> None:
    assert valid_spacing(value) is valid


def test_unknown_output_kind(small: Dataset) -> None:
    with pytest.raises(EncodeError, match=r"Unknown output kind\(s\) \['pdf'\]"):
        encode(study_analysis(small), [small], ("sr", "pdf"), analysis_id="x", content_datetime=WHEN)


def test_no_outputs_asked_gives_nothing(small: Dataset) -> None:
    assert encode(study_analysis(small), [small], (), analysis_id="x", content_datetime=WHEN) == []


@pytest.mark.parametrize(("analysis_id", "message"), [("", "non-empty"), ("x" * 41, "at most 40")])
def test_bad_analysis_ids(small: Dataset, analysis_id: str, message: str) -> None:
    with pytest.raises(EncodeError, match=message):
        encode(study_analysis(small), [small], analysis_id=analysis_id, content_datetime=WHEN)


def test_analysis_without_images(small: Dataset) -> None:
    analysis = StudyAnalysis(str(small.StudyInstanceUID), (), FAKE_IDENTITY, 0.0)
    with pytest.raises(EncodeError, match="no images"):
        encode(analysis, [small], analysis_id="x", content_datetime=WHEN)


def test_no_sources(small: Dataset) -> None:
    with pytest.raises(EncodeError, match="No source images"):
        encode(study_analysis(small), [], analysis_id="x", content_datetime=WHEN)


def test_analysis_of_an_image_not_given(small: Dataset) -> None:
    image = fixed_image_analysis("1.2.3.999", 48, 64)
    analysis = StudyAnalysis(str(small.StudyInstanceUID), (image,), FAKE_IDENTITY, 0.0)
    with pytest.raises(EncodeError, match=r"covers image 1\.2\.3\.999, which is not among the sources"):
        encode(analysis, [small], analysis_id="x", content_datetime=WHEN)


def test_image_analysed_twice_or_given_twice(small: Dataset) -> None:
    image = fixed_image_analysis(str(small.SOPInstanceUID), 48, 64)
    twice = StudyAnalysis(str(small.StudyInstanceUID), (image, image), FAKE_IDENTITY, 0.0)
    with pytest.raises(EncodeError, match="twice; each image is analysed once"):
        encode(twice, [small], analysis_id="x", content_datetime=WHEN)
    with pytest.raises(EncodeError, match="was given twice"):
        encode(study_analysis(small), [small, small], analysis_id="x", content_datetime=WHEN)


def test_default_content_datetime_is_now(small: Dataset) -> None:
    import datetime

    before = datetime.datetime.now()
    (sr,) = encode(study_analysis(small), [small], ("sr",), analysis_id="x")
    assert sr.ContentDate in {before.strftime("%Y%m%d"), datetime.datetime.now().strftime("%Y%m%d")}
