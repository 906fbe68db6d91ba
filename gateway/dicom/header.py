"""The header fields the index holds, read from a received file without touching pixel data."""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from gateway.dicom.structure import Encoding, MalformedDatasetError, check_deflated_structure, check_structure

#: The elements the index needs; pydicom reads only these (and the character set).
HEADER_KEYWORDS: tuple[str, ...] = (
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "PatientID",
    "IssuerOfPatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "StudyID",
    "StudyDescription",
    "Modality",
    "BodyPartExamined",
    "SeriesDescription",
    "SeriesNumber",
    "Laterality",
    "InstanceNumber",
    "ImageType",
    "ViewPosition",
    "ImageLaterality",
    "PatientOrientation",
    "PhotometricInterpretation",
    "Rows",
    "Columns",
    "NumberOfFrames",
)


@dataclass(frozen=True)
class InstanceHeader:
    """What the index records about one instance (strings with NULs and padding removed)."""

    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    patient_id: str = ""
    issuer_of_patient_id: str = ""
    patient_name: str | None = None
    patient_birth_date: str | None = None
    patient_sex: str | None = None
    study_date: str | None = None
    study_time: str | None = None
    accession_number: str | None = None
    study_id: str | None = None
    study_description: str | None = None
    modality: str | None = None
    body_part_examined: str | None = None
    series_description: str | None = None
    series_number: int | None = None
    laterality: str | None = None
    instance_number: int | None = None
    image_type: str | None = None
    view_position: str | None = None
    image_laterality: str | None = None
    patient_orientation: str | None = None
    photometric_interpretation: str | None = None
    rows: int | None = None
    columns: int | None = None
    number_of_frames: int | None = None


class UnreadableDatasetError(ValueError):
    """The data set does not parse (status 0xC210)."""


class MissingIdentifiersError(ValueError):
    """The data set parses but lacks the UIDs needed to file it (status 0xC210 family)."""


def check_encoded_dataset(path: Path, dataset_offset: int, transfer_syntax: UID) -> None:
    """Raise :class:`UnreadableDatasetError` unless the data set after ``dataset_offset`` is well formed."""
    size = os.path.getsize(path)
    with path.open("rb") as fp:
        try:
            if transfer_syntax.is_deflated:
                check_deflated_structure(fp, dataset_offset, size)
            else:
                encoding = Encoding(
                    implicit_vr=transfer_syntax.is_implicit_VR, little_endian=transfer_syntax.is_little_endian
                )
                check_structure(fp, dataset_offset, size, encoding)
        except MalformedDatasetError as exc:
            raise UnreadableDatasetError(str(exc)) from None


def read_header(path: Path, dataset_offset: int, transfer_syntax: UID) -> InstanceHeader:
    """Check the structure, then read the header elements of a spooled file (never its pixels)."""
    check_encoded_dataset(path, dataset_offset, transfer_syntax)
    try:
        dataset = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(HEADER_KEYWORDS), force=False)
    except (InvalidDicomError, EOFError, ValueError, KeyError, TypeError, NotImplementedError, struct.error) as exc:
        raise UnreadableDatasetError(f"the data set does not parse: {type(exc).__name__}") from None
    return header_from_dataset(dataset)


def header_from_dataset(dataset: Dataset) -> InstanceHeader:
    """The index fields of a decoded data set; raises :class:`MissingIdentifiersError` without Study/Series UIDs.

    The SOP Class and Instance UIDs may be empty here: the C-STORE handler compares them with
    the request and answers 0xA900 when they disagree.
    """
    study = _text(dataset, "StudyInstanceUID")
    series = _text(dataset, "SeriesInstanceUID")
    missing = [name for name, value in (("StudyInstanceUID", study), ("SeriesInstanceUID", series)) if not value]
    if missing:
        raise MissingIdentifiersError(f"the data set has no {' and no '.join(missing)}, so it cannot be filed")
    assert study is not None and series is not None
    return InstanceHeader(
        sop_class_uid=_text(dataset, "SOPClassUID") or "",
        sop_instance_uid=_text(dataset, "SOPInstanceUID") or "",
        study_instance_uid=study,
        series_instance_uid=series,
        patient_id=_text(dataset, "PatientID") or "",
        issuer_of_patient_id=_text(dataset, "IssuerOfPatientID") or "",
        patient_name=_text(dataset, "PatientName"),
        patient_birth_date=_text(dataset, "PatientBirthDate"),
        patient_sex=_text(dataset, "PatientSex"),
        study_date=_text(dataset, "StudyDate"),
        study_time=_text(dataset, "StudyTime"),
        accession_number=_text(dataset, "AccessionNumber"),
        study_id=_text(dataset, "StudyID"),
        study_description=_text(dataset, "StudyDescription"),
        modality=_text(dataset, "Modality"),
        body_part_examined=_text(dataset, "BodyPartExamined"),
        series_description=_text(dataset, "SeriesDescription"),
        series_number=_integer(dataset, "SeriesNumber"),
        laterality=_text(dataset, "Laterality"),
        instance_number=_integer(dataset, "InstanceNumber"),
        image_type=_text(dataset, "ImageType"),
        view_position=_text(dataset, "ViewPosition"),
        image_laterality=_text(dataset, "ImageLaterality"),
        patient_orientation=_text(dataset, "PatientOrientation"),
        photometric_interpretation=_text(dataset, "PhotometricInterpretation"),
        rows=_integer(dataset, "Rows"),
        columns=_integer(dataset, "Columns"),
        number_of_frames=_integer(dataset, "NumberOfFrames"),
    )


def _raw_value(dataset: Dataset, keyword: str) -> Any:
    """The element's value, or None when absent, empty or undecodable (never raises)."""
    try:
        element = dataset.data_element(keyword)
        if element is None:
            return None
        return element.value
    except (ValueError, TypeError, KeyError, LookupError, UnicodeError):
        return None


def _text(dataset: Dataset, keyword: str) -> str | None:
    value = _raw_value(dataset, keyword)
    if value is None:
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        text = "\\".join(str(item) for item in value)
    elif isinstance(value, bytes):
        text = value.decode("ascii", "replace")
    else:
        text = str(value)
    text = text.replace("\x00", "").strip()
    return text or None


def _integer(dataset: Dataset, keyword: str) -> int | None:
    value = _raw_value(dataset, keyword)
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0] if len(value) else None
    if value is None or value == "":
        return None
    try:
        number = int(str(value).strip())
    except ValueError:
        return None
    return number if -(2**31) <= number < 2**31 else None
