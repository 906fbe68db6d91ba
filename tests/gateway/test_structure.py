"""The strict structural check: well-formed data sets pass, anything that does not parse is refused."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file
from pydicom.dataelem import RawDataElement
from pydicom.filereader import data_element_offset_to_value, read_preamble
from pydicom.uid import UID

from gateway.dicom.header import UnreadableDatasetError, check_encoded_dataset
from gateway.dicom.structure import Encoding, MalformedDatasetError, check_deflated_structure, check_structure

EXPLICIT_LE = Encoding(implicit_vr=False, little_endian=True)
IMPLICIT_LE = Encoding(implicit_vr=True, little_endian=True)


def sample(name: str) -> Path:
    found = get_testdata_file(name)
    if found is None:
        pytest.skip(f"{name} is not in pydicom's test data")
    return Path(str(found))


def split(path: Path) -> tuple[UID, int]:
    with path.open("rb") as fp:
        read_preamble(fp, False)
        meta = pydicom.filereader._read_file_meta_info(fp)
        return UID(meta.TransferSyntaxUID), fp.tell()


def check_bytes(data: bytes, encoding: Encoding = EXPLICIT_LE) -> None:
    check_structure(io.BytesIO(data), 0, len(data), encoding)


def element(group: int, elem: int, vr: bytes, value: bytes) -> bytes:
    if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT"):
        return struct.pack("<HH2sHI", group, elem, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", group, elem, vr, len(value)) + value


SOP_CLASS = element(0x0008, 0x0016, b"UI", b"1.2.840.10008.5.1.4.1.1.7\x00")
UNDEFINED = 0xFFFFFFFF


@pytest.mark.parametrize(
    "name",
    [
        "RG1_UNCR.dcm",  # the chest CR, explicit VR little endian
        "RG1_J2KR.dcm",  # JPEG 2000, encapsulated
        "CT_small.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_implicit.dcm",
        "emri_small_RLE.dcm",
        "image_dfl.dcm",  # deflated
        "rtplan.dcm",  # nested sequences, implicit VR
        "SC_rgb_jpeg_dcmtk.dcm",
        "liver.dcm",  # a SEG with undefined-length sequences
    ],
)
def test_well_formed_files_pass(name: str) -> None:
    path = sample(name)
    transfer_syntax, offset = split(path)
    check_encoded_dataset(path, offset, transfer_syntax)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("MR_truncated.dcm", "runs past the end of the data set"),
        ("rtplan_truncated.dcm", "runs past the end"),
        ("emri_small_jpeg_2k_lossless_too_short.dcm", "truncated element header"),
        ("SC_rgb_jpeg.dcm", "invalid value representation"),  # implicit VR sent as explicit
    ],
)
def test_files_pydicom_reads_leniently_are_refused(name: str, problem: str) -> None:
    path = sample(name)
    transfer_syntax, offset = split(path)
    with pytest.raises(UnreadableDatasetError, match=problem):
        check_encoded_dataset(path, offset, transfer_syntax)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "the data set is empty"),
        (b"garbage, not DICOM at all" * 10, "invalid value representation"),
        (SOP_CLASS[:-3], "runs past the end"),
        (SOP_CLASS + b"\x10\x00", "truncated element header"),
        (element(0x0008, 0x0016, b"UI", b"1.2")[:6], "truncated element header"),
        (struct.pack("<HH2sHI", 0x0008, 0x1140, b"SQ", 0, UNDEFINED), "truncated element header"),  # no items
        (struct.pack("<HH2sH", 0x0008, 0x0016, b"UI", 0) + struct.pack("<HHI", 0xFFFE, 0xE000, 0), "unexpected item"),
        (
            struct.pack("<HH2sHI", 0x0008, 0x0100, b"UT", 0, UNDEFINED),
            r"undefined length on \(0008,0100\) with value representation UT",
        ),
        (
            struct.pack("<HH2sHI", 0x0008, 0x1140, b"SQ", 0, UNDEFINED)
            + struct.pack("<HHI", 0xFFFE, 0xE000, UNDEFINED)
            + SOP_CLASS,  # the item never ends
            "item without its item delimiter",
        ),
        (
            struct.pack("<HH2sHI", 0x0008, 0x1140, b"SQ", 0, UNDEFINED) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 4),
            "sequence delimiter with a non-zero length",
        ),
        (
            struct.pack("<HH2sHI", 0x0008, 0x1140, b"SQ", 0, 16)
            + struct.pack("<HHI", 0xFFFE, 0xE000, 100)
            + b"\x00" * 8,
            "item of 100 bytes runs past the end of its sequence",
        ),
        (
            struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, UNDEFINED)
            + struct.pack("<HHI", 0xFFFE, 0xE000, 4)
            + b"abcd",
            "truncated element header",  # no sequence delimiter after the fragments
        ),
        (
            struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, UNDEFINED)
            + struct.pack("<HHI", 0xFFFE, 0xE000, 40)
            + b"abcd",
            "pixel data fragment of 40 bytes runs past the end",
        ),
    ],
)
def test_malformed_data_sets_are_refused(data: bytes, problem: str) -> None:
    with pytest.raises(MalformedDatasetError, match=problem):
        check_bytes(data)


def test_well_formed_synthetic_sequences_pass() -> None:
    item = struct.pack("<HHI", 0xFFFE, 0xE000, UNDEFINED) + SOP_CLASS + struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
    sequence = (
        struct.pack("<HH2sHI", 0x0008, 0x1140, b"SQ", 0, UNDEFINED) + item + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    )
    defined_item = struct.pack("<HHI", 0xFFFE, 0xE000, len(SOP_CLASS)) + SOP_CLASS
    defined = struct.pack("<HH2sHI", 0x0008, 0x1150, b"SQ", 0, len(defined_item)) + defined_item
    check_bytes(SOP_CLASS + sequence + defined)
    # undefined-length UN holds implicit VR content
    implicit_item = (
        struct.pack("<HHI", 0xFFFE, 0xE000, UNDEFINED)
        + struct.pack("<HHI", 0x0008, 0x0016, 4)
        + b"1.2\x00"
        + struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
    )
    un = (
        struct.pack("<HH2sHI", 0x0009, 0x1010, b"UN", 0, UNDEFINED)
        + implicit_item
        + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    )
    check_bytes(SOP_CLASS + un)


def test_too_deep_nesting_is_refused() -> None:
    data = SOP_CLASS
    for _ in range(40):
        item = struct.pack("<HHI", 0xFFFE, 0xE000, UNDEFINED) + data + struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
        data = (
            struct.pack("<HH2sHI", 0x0008, 0x1140, b"SQ", 0, UNDEFINED) + item + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
        )
    with pytest.raises(MalformedDatasetError, match="nested deeper than 32"):
        check_bytes(data)


def test_deflated_streams_are_inflated_then_checked() -> None:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    deflated = compressor.compress(SOP_CLASS) + compressor.flush()
    check_deflated_structure(io.BytesIO(deflated), 0, len(deflated))
    with pytest.raises(MalformedDatasetError, match="truncated"):
        check_deflated_structure(io.BytesIO(deflated[:-3]), 0, len(deflated) - 3)
    with pytest.raises(MalformedDatasetError, match="does not inflate"):
        check_deflated_structure(io.BytesIO(b"\xff" * 50), 0, 50)


def _element_ends(path: Path, offset: int) -> set[int]:
    """Offsets (from the data set start) at which a top-level element ends."""
    with path.open("rb") as fp:
        fp.seek(offset)
        ends = {0}
        for raw in pydicom.filereader.data_element_generator(fp, False, True, defer_size=1):
            assert isinstance(raw, RawDataElement)
            ends.add(raw.value_tell - offset + raw.length)
    return ends


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=2000))
def test_any_cut_inside_an_element_is_detected(cut: int) -> None:
    path = sample("RG1_UNCR.dcm")
    _, offset = split(path)
    data = path.read_bytes()[offset:]
    truncated = data[:cut]
    if cut in _element_ends(path, offset):
        check_bytes(truncated)  # a cut exactly between elements leaves a well-formed, shorter data set
    else:
        with pytest.raises(MalformedDatasetError):
            check_bytes(truncated)


def test_data_element_offset_helper_exists() -> None:
    # guards the pydicom API the property test relies on
    assert callable(data_element_offset_to_value)


def test_implicit_vr_walks_nested_sequences() -> None:
    path = sample("rtplan.dcm")
    transfer_syntax, offset = split(path)
    assert transfer_syntax.is_implicit_VR
    data = path.read_bytes()[offset:]
    check_structure(io.BytesIO(data), 0, len(data), IMPLICIT_LE)
    with pytest.raises(MalformedDatasetError):
        check_structure(io.BytesIO(data[:-5]), 0, len(data) - 5, IMPLICIT_LE)


def implicit_element(group: int, elem: int, value: bytes) -> bytes:
    return struct.pack("<HHI", group, elem, len(value)) + value


def implicit_nested(depth: int, tag: tuple[int, int] = (0x0040, 0xA730)) -> bytes:
    """``depth`` defined-length sequences (``tag``) nested in implicit VR little endian."""
    data = implicit_element(0x0008, 0x0100, b"X\x00")
    for _ in range(depth):
        item = struct.pack("<HHI", 0xFFFE, 0xE000, len(data)) + data
        data = implicit_element(*tag, item)
    return data


IMPLICIT_SOP_CLASS = implicit_element(0x0008, 0x0016, b"1.2.840.10008.5.1.4.1.1.7\x00")


def test_implicit_vr_defined_length_sequences_count_towards_the_depth_limit() -> None:
    check_bytes(IMPLICIT_SOP_CLASS + implicit_nested(32), IMPLICIT_LE)  # the limit itself passes
    with pytest.raises(MalformedDatasetError, match="nested deeper than 32"):
        check_bytes(IMPLICIT_SOP_CLASS + implicit_nested(40), IMPLICIT_LE)


def test_implicit_vr_private_sequences_are_walked_when_they_are_sequences() -> None:
    with pytest.raises(MalformedDatasetError, match="nested deeper than 32"):
        check_bytes(IMPLICIT_SOP_CLASS + implicit_nested(40, tag=(0x0009, 0x1010)), IMPLICIT_LE)
    # a private value that only starts like an item is an opaque value, not a malformed data set
    opaque = implicit_element(0x0009, 0x1011, struct.pack("<HHI", 0xFFFE, 0xE000, 1000) + b"\x00" * 8)
    check_bytes(IMPLICIT_SOP_CLASS + opaque, IMPLICIT_LE)


def test_implicit_vr_values_the_dictionary_types_are_not_walked() -> None:
    # LUT Data is "US or OW" in the dictionary: bytes that look like an item header are just its value
    odd = implicit_element(0x0028, 0x3006, struct.pack("<HHI", 0xFFFE, 0xE000, 0))  # LUT Data (US or OW)
    check_bytes(IMPLICIT_SOP_CLASS + odd, IMPLICIT_LE)
    # a dictionary SQ whose value is not a sequence is malformed
    broken = implicit_element(0x0040, 0xA730, b"\x01\x02\x03\x04\x05\x06\x07\x08")
    with pytest.raises(MalformedDatasetError, match="expected an item tag"):
        check_bytes(IMPLICIT_SOP_CLASS + broken, IMPLICIT_LE)


def test_explicit_vr_un_sequences_count_towards_the_depth_limit() -> None:
    # an SQ sent as UN with a defined length holds implicit VR content (PS3.5 §6.2.2); pydicom reads it as SQ
    nested = implicit_nested(40)
    un = struct.pack("<HH2sHI", 0x0040, 0xA730, b"UN", 0, len(nested) - 8) + nested[8:]
    with pytest.raises(MalformedDatasetError, match="nested deeper than 32"):
        check_bytes(SOP_CLASS + un)
    shallow = implicit_nested(3)
    check_bytes(SOP_CLASS + struct.pack("<HH2sHI", 0x0040, 0xA730, b"UN", 0, len(shallow) - 8) + shallow[8:])
