"""A strict structural check of an encoded data set: every element must fit, no value is decoded.

pydicom reads almost anything (garbage becomes a few odd elements, a truncated file just ends
early), so it cannot tell "does not parse" from "parses".  This walker follows the element
headers of the whole data set exactly as PS3.5 §7 lays them out, skipping every value,
including the pixel data (native or encapsulated), and raises :class:`MalformedDatasetError` with
the offset of the first problem.  It reads only element headers, so it costs a few hundred
small reads whatever the image size.

Sequences are walked (and their nesting depth limited to :data:`MAX_DEPTH`) in every transfer
syntax.  In explicit VR an element says it is a sequence (VR SQ).  In implicit VR (and inside
an explicit UN value, which holds implicit VR content, PS3.5 §6.2.2) only the data dictionary
knows (PS3.5 §7.1.3): an element the dictionary lists as SQ is walked as a sequence, one it
lists with another VR is skipped, and a value of a tag it does not know (private tags) is
walked as a sequence when it is one, that is when it starts with an item tag and its items
fill it exactly; otherwise it is an opaque value.  An undefined length outside pixel data can
only be a sequence, whatever the dictionary says.
"""

from __future__ import annotations

import functools
import struct
import tempfile
import zlib
from dataclasses import dataclass
from typing import BinaryIO

from pydicom.datadict import dictionary_VR

_VALID_VRS = frozenset(
    b"AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV".split()
)
#: VRs with a reserved field and a 4-byte length in explicit VR (PS3.5 Table 7.1-1).
_LONG_VRS = frozenset(b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())
_UNDEFINED = 0xFFFFFFFF
_ITEM = 0xFFFEE000
_ITEM_DELIMITER = 0xFFFEE00D
_SEQUENCE_DELIMITER = 0xFFFEE0DD
_PIXEL_DATA = 0x7FE00010
#: Deepest nesting of sequences accepted (a data set inside 32 sequences).
MAX_DEPTH = 32
_MAX_DEPTH = MAX_DEPTH
#: An inflated (deflate transfer syntax) data set larger than this is refused.
MAX_INFLATED_BYTES = 4 << 30


class MalformedDatasetError(ValueError):
    """The data set does not follow the DICOM encoding of its transfer syntax."""

    def __init__(self, reason: str, offset: int) -> None:
        super().__init__(f"{reason} at byte {offset} of the data set")
        self.reason = reason
        self.offset = offset


class NestingTooDeepError(MalformedDatasetError):
    """Sequences are nested deeper than :data:`MAX_DEPTH`."""


@functools.lru_cache(maxsize=4096)
def _dictionary_vr(tag: int) -> str | None:
    """The VR the data dictionary gives ``tag`` ("SQ", "US or SS", ...), or None when it does not know the tag."""
    if tag >> 16 & 1:  # private: its VR depends on the private creator
        return None
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return None


@dataclass(frozen=True)
class Encoding:
    implicit_vr: bool
    little_endian: bool


class _Walker:
    def __init__(self, fp: BinaryIO, base: int, encoding: Encoding) -> None:
        self.fp = fp
        self.base = base  # file offset of the data set's first byte
        self.encoding = encoding
        endian = "<" if encoding.little_endian else ">"
        self._tag = struct.Struct(endian + "HH")
        self._u16 = struct.Struct(endian + "H")
        self._u32 = struct.Struct(endian + "I")
        self._tag_len = struct.Struct(endian + "HHI")

    def read(self, offset: int, size: int, end: int) -> bytes:
        if offset + size > end:
            raise MalformedDatasetError("truncated element header", offset)
        self.fp.seek(self.base + offset)
        data = self.fp.read(size)
        if len(data) != size:
            raise MalformedDatasetError("truncated element header", offset)
        return data

    def dataset(  # noqa: PLR0912 - one branch per encoding rule of PS3.5 §7
        self, offset: int, end: int, depth: int, *, implicit: bool, in_undefined_item: bool
    ) -> int:
        """Walk elements from ``offset``; returns the offset after the data set (or its item delimiter)."""
        if depth > _MAX_DEPTH:
            raise NestingTooDeepError(f"sequences nested deeper than {_MAX_DEPTH} levels", offset)
        while offset < end:
            group, element = self._tag.unpack(self.read(offset, 4, end))
            tag = group << 16 | element
            if tag == _ITEM_DELIMITER and in_undefined_item:
                (length,) = self._u32.unpack(self.read(offset + 4, 4, end))
                if length != 0:
                    raise MalformedDatasetError("item delimiter with a non-zero length", offset)
                return offset + 8
            if group == 0xFFFE:
                raise MalformedDatasetError(f"unexpected item tag ({group:04X},{element:04X}) among elements", offset)
            if implicit:
                (length,) = self._u32.unpack(self.read(offset + 4, 4, end))
                vr = b""
                value_offset = offset + 8
            else:
                vr = self.read(offset + 4, 2, end)
                if vr not in _VALID_VRS:
                    raise MalformedDatasetError(
                        f"invalid value representation {vr!r} of ({group:04X},{element:04X})", offset
                    )
                if vr in _LONG_VRS:
                    (length,) = self._u32.unpack(self.read(offset + 8, 4, end))
                    value_offset = offset + 12
                else:
                    (length,) = self._u16.unpack(self.read(offset + 6, 2, end))
                    value_offset = offset + 8
            if length == _UNDEFINED:
                if tag == _PIXEL_DATA and vr in (b"OB", b"OW", b""):
                    offset = self.fragments(value_offset, end)
                elif implicit or vr == b"SQ":
                    offset = self.sequence(value_offset, end, depth + 1, implicit=implicit)
                elif vr == b"UN":
                    # PS3.5 §6.2.2: undefined-length UN holds implicit VR little endian content
                    offset = self.sequence(value_offset, end, depth + 1, implicit=True)
                else:
                    raise MalformedDatasetError(
                        f"undefined length on ({group:04X},{element:04X}) with value representation {vr.decode()}",
                        offset,
                    )
                continue
            if value_offset + length > end:
                raise MalformedDatasetError(
                    f"value of ({group:04X},{element:04X}) ({length} bytes) runs past the end of the data set", offset
                )
            if length:
                self.defined_value(tag, vr, value_offset, value_offset + length, depth + 1, implicit=implicit)
            offset = value_offset + length
        if in_undefined_item:
            raise MalformedDatasetError("item without its item delimiter", offset)
        return offset

    def defined_value(self, tag: int, vr: bytes, offset: int, end: int, depth: int, *, implicit: bool) -> None:
        """A defined-length value: walked when it is a sequence (``depth`` is the sequence's)."""
        if vr == b"SQ":
            self.sequence_defined(offset, end, depth, implicit=implicit)
        elif vr in (b"", b"UN"):  # implicit VR, or UN (implicit VR content): the dictionary decides
            dictionary = _dictionary_vr(tag)
            if dictionary == "SQ":
                self.sequence_defined(offset, end, depth, implicit=True)
            elif dictionary is None:
                self.maybe_sequence(offset, end, depth)

    def maybe_sequence(self, offset: int, end: int, depth: int) -> None:
        """A defined-length value whose VR the dictionary does not know: walked if it is a sequence.

        Only nesting that is too deep is an error here; a value that is not a well-formed
        sequence is an opaque value of some other VR.
        """
        if end - offset < 8 or self._item_header(offset, end)[0] != _ITEM:
            return
        try:
            self.sequence_defined(offset, end, depth, implicit=True)
        except NestingTooDeepError:
            raise
        except MalformedDatasetError:
            return

    def sequence(self, offset: int, end: int, depth: int, *, implicit: bool) -> int:
        """An undefined-length sequence: items until the sequence delimiter."""
        while True:
            tag, length = self._item_header(offset, end)
            if tag == _SEQUENCE_DELIMITER:
                if length != 0:
                    raise MalformedDatasetError("sequence delimiter with a non-zero length", offset)
                return offset + 8
            offset = self._item(tag, length, offset, end, depth, implicit=implicit)

    def sequence_defined(self, offset: int, end: int, depth: int, *, implicit: bool) -> None:
        """A defined-length sequence: items exactly filling the value."""
        while offset < end:
            tag, length = self._item_header(offset, end)
            offset = self._item(tag, length, offset, end, depth, implicit=implicit)

    def _item(self, tag: int, length: int, offset: int, end: int, depth: int, *, implicit: bool) -> int:
        if tag != _ITEM:
            raise MalformedDatasetError(f"expected an item tag, found ({tag >> 16:04X},{tag & 0xFFFF:04X})", offset)
        if length == _UNDEFINED:
            return self.dataset(offset + 8, end, depth, implicit=implicit, in_undefined_item=True)
        if offset + 8 + length > end:
            raise MalformedDatasetError(f"item of {length} bytes runs past the end of its sequence", offset)
        self.dataset(offset + 8, offset + 8 + length, depth, implicit=implicit, in_undefined_item=False)
        return offset + 8 + length

    def fragments(self, offset: int, end: int) -> int:
        """Encapsulated pixel data: defined-length items until the sequence delimiter; never decoded."""
        while True:
            tag, length = self._item_header(offset, end)
            if tag == _SEQUENCE_DELIMITER:
                return offset + 8
            if tag != _ITEM or length == _UNDEFINED:
                raise MalformedDatasetError("encapsulated pixel data must hold defined-length items", offset)
            if offset + 8 + length > end:
                raise MalformedDatasetError(f"pixel data fragment of {length} bytes runs past the end", offset)
            offset += 8 + length

    def _item_header(self, offset: int, end: int) -> tuple[int, int]:
        # item and delimiter tags never carry a VR, in any transfer syntax
        group, element, length = self._tag_len.unpack(self.read(offset, 8, end))
        return group << 16 | element, length


def check_structure(fp: BinaryIO, start: int, end: int, encoding: Encoding) -> None:
    """Raise :class:`MalformedDatasetError` unless bytes ``start``..``end`` of ``fp`` are a well-formed data set."""
    if end <= start:
        raise MalformedDatasetError("the data set is empty", 0)
    walker = _Walker(fp, start, encoding)
    walker.dataset(0, end - start, 0, implicit=encoding.implicit_vr, in_undefined_item=False)


def check_deflated_structure(fp: BinaryIO, start: int, end: int) -> None:
    """Inflate a deflated explicit VR little endian data set (bounded), then check its structure."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    fp.seek(start)
    remaining = end - start
    with tempfile.SpooledTemporaryFile(max_size=32 << 20) as inflated:
        size = 0
        try:
            while remaining > 0:
                chunk = fp.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                remaining -= len(chunk)
                data = inflater.decompress(chunk, MAX_INFLATED_BYTES - size + 1)
                size += len(data)
                if size > MAX_INFLATED_BYTES or inflater.unconsumed_tail:
                    raise MalformedDatasetError(f"deflated data set inflates beyond {MAX_INFLATED_BYTES} bytes", 0)
                inflated.write(data)
            tail = inflater.flush()
        except zlib.error as exc:
            raise MalformedDatasetError(f"deflated data set does not inflate ({exc})", 0) from None
        inflated.write(tail)
        size += len(tail)
        if not inflater.eof:
            raise MalformedDatasetError("deflated data set is truncated", end - start)
        check_structure(inflated, 0, size, Encoding(implicit_vr=False, little_endian=True))  # type: ignore[arg-type]
