"""The header fields the index needs, read from a received file without its pixels."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pydicom.uid import UID

from gateway.dicom.header import MissingIdentifiersError, header_from_dataset, read_header


def split_offset(path: Path) -> tuple[UID, int]:
    with path.open("rb") as fp:
        pydicom.filereader.read_preamble(fp, False)
        meta = pydicom.filereader._read_file_meta_info(fp)
        return UID(meta.TransferSyntaxUID), fp.tell()


def test_the_chest_cr_header(chest_cr_path: Path) -> None:
    transfer_syntax, offset = split_offset(chest_cr_path)
    header = read_header(chest_cr_path, offset, transfer_syntax)
    assert header.sop_class_uid == "1.2.840.10008.5.1.4.1.1.1"
    assert header.sop_instance_uid == "1.3.6.1.4.1.5962.1.1.9.1.1.20040826185059.5457"
    assert header.study_instance_uid.startswith("1.3.6.1.4.1.5962.1.2.9")
    assert header.modality == "CR"
    assert header.body_part_examined == "CHEST"
    assert header.view_position == "PA"
    assert header.patient_orientation == "L\\F"
    assert header.photometric_interpretation == "MONOCHROME1"
    assert (header.rows, header.columns) == (1955, 1841)
    assert header.patient_name == "CompressedSamples^RG1"
    assert header.image_type == "DERIVED\\PRIMARY"


def test_the_jpeg2000_chest_cr_header(chest_cr_j2k_path: Path) -> None:
    transfer_syntax, offset = split_offset(chest_cr_j2k_path)
    header = read_header(chest_cr_j2k_path, offset, transfer_syntax)
    assert (header.modality, header.rows, header.columns) == ("CR", 1955, 1841)


def base() -> Dataset:
    dataset = Dataset()
    dataset.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    dataset.SOPInstanceUID = "1.2.3.4"
    dataset.StudyInstanceUID = "1.2.3"
    dataset.SeriesInstanceUID = "1.2.3.1"
    return dataset


def test_missing_study_or_series_uid_cannot_be_filed() -> None:
    dataset = base()
    del dataset.StudyInstanceUID
    with pytest.raises(MissingIdentifiersError, match="no StudyInstanceUID"):
        header_from_dataset(dataset)
    dataset = base()
    dataset.SeriesInstanceUID = ""
    with pytest.raises(MissingIdentifiersError, match="no SeriesInstanceUID"):
        header_from_dataset(dataset)


def test_values_are_cleaned_and_bad_numbers_dropped() -> None:
    dataset = base()
    dataset.PatientName = "DOE^JANE\x00"
    dataset.SeriesDescription = "  PA chest  "
    # as read from a file: converted (and found invalid) only when accessed
    dataset[0x00200013] = RawDataElement(Tag(0x00200013), "IS", 12, b"not-a-number", 0, False, True)
    dataset.Rows = 512
    dataset.Laterality = ""
    with pytest.warns(UserWarning, match="Invalid value for VR IS"):  # pydicom's, when the value is read
        header = header_from_dataset(dataset)
    assert header.patient_name == "DOE^JANE"
    assert header.series_description == "PA chest"
    assert header.instance_number is None
    assert header.rows == 512
    assert header.laterality is None
    assert header.patient_id == ""  # absent: the empty key
