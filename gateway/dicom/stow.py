"""STOW-RS intake (DICOM PS3.18 §10.5): a multipart/related body streamed part by part into the spool,
and the Store Instances Response.

Each part of a ``multipart/related; type="application/dicom"`` body is a DICOM Part 10 file.  Its
File Meta Information is read from the first bytes (our own small scanner: group 0002 is always
explicit VR little endian), the SOP class and transfer syntax are checked against the settings as
C-STORE's presentation contexts check them, and the data set bytes then stream into a spool
``.partial`` file exactly as a C-STORE's do, behind the same File Meta Information
(:func:`gateway.dicom.receive.file_header`), so both intakes hash and file an instance alike.
Nothing is committed until the body's closing boundary arrived: a truncated or malformed body
stores nothing.  Committing (fsync, rename, index) is :class:`gateway.dicom.store.InstanceStore`'s.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydicom.dataset import Dataset
from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header

from gateway.dicom.receive import file_header
from gateway.dicom.store import StoreResult, StoreStatus
from gateway.spool import IncomingFile, OutOfSpaceError, Spool

#: File Meta Information larger than this is not a DICOM file we accept.
MAX_META_BYTES = 64 << 10
#: Instances in one request; beyond: 413 (each part holds a spool file open until the body ends).
MAX_PARTS = 1000
MEDIA_TYPE = "application/dicom"

_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})
_UID = re.compile(r"[0-9]+(?:\.[0-9]+)*")
_MEDIA_STORAGE_SOP_CLASS_UID = 0x00020002
_MEDIA_STORAGE_SOP_INSTANCE_UID = 0x00020003
_TRANSFER_SYNTAX_UID = 0x00020010


class StowRequestError(Exception):
    """The request as a whole cannot be taken: the HTTP status and why (nothing is stored)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def is_uid(text: str) -> bool:
    return len(text) <= 64 and _UID.fullmatch(text) is not None


def request_boundary(content_type: str | None) -> bytes:
    """The boundary of a STOW-RS request's ``Content-Type``; 415 when it is not
    ``multipart/related; type="application/dicom"``, 400 without a boundary."""
    if not content_type:
        raise StowRequestError(415, f'send Content-Type: multipart/related; type="{MEDIA_TYPE}"; boundary=...')
    media_type, options = parse_options_header(content_type)
    if media_type.lower() != b"multipart/related":
        raise StowRequestError(
            415, f'the body is {media_type.decode("latin-1")!r}; STOW-RS takes multipart/related; type="{MEDIA_TYPE}"'
        )
    part_type = options.get(b"type", MEDIA_TYPE.encode()).decode("latin-1").strip().lower()
    if part_type != MEDIA_TYPE:
        raise StowRequestError(
            415, f"parts of type {part_type!r} are not accepted: only {MEDIA_TYPE} (Part 10 files), no metadata+bulk"
        )
    boundary = options.get(b"boundary")
    if not boundary:
        raise StowRequestError(400, "the multipart/related Content-Type has no boundary parameter")
    return boundary


@dataclass(frozen=True)
class PartMeta:
    """What a part's File Meta Information says."""

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str


def scan_meta(prefix: bytes | bytearray | memoryview, final: bool) -> tuple[int, dict[int, str]] | None:
    """Where the File Meta Information of a Part 10 file starting with ``prefix`` ends, and its UI values.

    None when more bytes are needed (``final``: there are none; then the meta ends at the last
    whole element).  ValueError when it is not a Part 10 file.
    """
    if len(prefix) < 132:
        if final:
            raise ValueError("not a DICOM Part 10 file: shorter than the preamble and 'DICM'")
        return None
    if prefix[128:132] != b"DICM":
        raise ValueError("not a DICOM Part 10 file: no 'DICM' after the 128-byte preamble")
    values: dict[int, str] = {}
    position = 132
    while True:
        if final and len(prefix) == position:
            return position, values
        if not _holds(prefix, position + 8, final):
            return None
        group, element = struct.unpack_from("<HH", prefix, position)
        if group != 0x0002:
            return position, values
        vr = bytes(prefix[position + 4 : position + 6])
        long_form = vr in _LONG_VRS
        start = position + (12 if long_form else 8)
        if not _holds(prefix, start, final):
            return None
        (length,) = (
            struct.unpack_from("<I", prefix, position + 8)
            if long_form
            else struct.unpack_from("<H", prefix, position + 6)
        )
        end = start + length
        if length == 0xFFFFFFFF or end > MAX_META_BYTES:
            raise ValueError("the File Meta Information is malformed (undefined or excessive length)")
        if not _holds(prefix, end, final):
            return None
        if vr == b"UI":
            values[(group << 16) | element] = bytes(prefix[start:end]).decode("ascii", "replace").rstrip("\x00 ")
        position = end


def _holds(prefix: bytes | bytearray | memoryview, needed: int, final: bool) -> bool:
    """Whether ``prefix`` holds ``needed`` bytes; ValueError when it never will (``final``)."""
    if len(prefix) >= needed:
        return True
    if final:
        raise ValueError("the File Meta Information is cut short")
    return False


def part_meta(values: dict[int, str]) -> PartMeta:
    """The part's UIDs, each a conformant UID; ValueError names the one missing or malformed."""
    found = []
    for tag, name in (
        (_MEDIA_STORAGE_SOP_CLASS_UID, "Media Storage SOP Class UID"),
        (_MEDIA_STORAGE_SOP_INSTANCE_UID, "Media Storage SOP Instance UID"),
        (_TRANSFER_SYNTAX_UID, "Transfer Syntax UID"),
    ):
        value = values.get(tag, "")
        if not is_uid(value):
            raise ValueError(f"the File Meta Information's {name} is {'malformed' if value else 'missing'}")
        found.append(value)
    return PartMeta(*found)


@dataclass
class Part:
    """One part of the body: its headers, meta, spool file, or the failure decided while receiving it."""

    number: int
    headers: dict[str, str] = field(default_factory=dict)
    meta: PartMeta | None = None
    incoming: IncomingFile | None = None
    failure: StoreResult | None = None
    complete: bool = False
    _buffer: bytearray | None = field(default_factory=bytearray)

    def fail(self, status: StoreStatus, reason: str) -> None:
        if self.failure is None:
            self.failure = StoreResult(status, reason=f"part {self.number}: {reason}")
        self._buffer = None
        if self.incoming is not None:
            self.incoming.discard()
            self.incoming = None


class StowReceiver:
    """Feeds a request body to a streaming multipart parser (python-multipart) and each part into the spool."""

    def __init__(
        self,
        boundary: bytes,
        spool: Spool,
        *,
        sop_classes: Collection[str],
        transfer_syntaxes: Collection[str],
    ) -> None:
        self.spool = spool
        self.sop_classes = frozenset(str(uid) for uid in sop_classes)
        self.transfer_syntaxes = frozenset(str(uid) for uid in transfer_syntaxes)
        self.parts: list[Part] = []
        self.ended = False
        self._header_name = bytearray()
        self._header_value = bytearray()
        callbacks: Any = {
            "on_part_begin": self._on_part_begin,
            "on_header_field": self._on_header_field,
            "on_header_value": self._on_header_value,
            "on_header_end": self._on_header_end,
            "on_headers_finished": self._on_headers_finished,
            "on_part_data": self._on_part_data,
            "on_part_end": self._on_part_end,
            "on_end": self._on_end,
        }
        try:
            self._parser = MultipartParser(boundary, callbacks)
        except ValueError as exc:  # python-multipart's FormParserError: a boundary it refuses
            raise StowRequestError(400, f"the multipart boundary is not usable: {exc}") from None

    def feed(self, chunk: bytes) -> None:
        """Parse the next bytes of the body (blocking: it writes to the spool)."""
        if self.ended:
            return  # an epilogue after the closing boundary is ignored (RFC 2046)
        try:
            self._parser.write(chunk)
        except MultipartParseError as exc:
            raise StowRequestError(400, f"the body is not a multipart/related message: {exc}") from None

    def finish(self) -> list[Part]:
        """The parts of a body that ended with its closing boundary; 400 otherwise."""
        self._parser.finalize()
        if not self.ended:
            where = f" in part {len(self.parts)}" if self.parts and not self.parts[-1].complete else ""
            raise StowRequestError(
                400, f"the multipart body ends{where} before its closing boundary (truncated); nothing was stored"
            )
        if not self.parts:
            raise StowRequestError(400, "the multipart body has no parts")
        return self.parts

    def discard(self) -> None:
        """Delete every spool file not committed (safe after a commit, and twice)."""
        for part in self.parts:
            if part.incoming is not None:
                part.incoming.discard()

    # -- python-multipart callbacks ---------------------------------------------------------
    def _on_part_begin(self) -> None:
        if len(self.parts) >= MAX_PARTS:
            raise StowRequestError(413, f"more than {MAX_PARTS} instances in one request; send them in several")
        self.parts.append(Part(len(self.parts) + 1))

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        name = self._header_name.decode("latin-1").strip().lower()
        self.parts[-1].headers[name] = self._header_value.decode("latin-1").strip()
        self._header_name.clear()
        self._header_value.clear()

    def _on_headers_finished(self) -> None:
        part = self.parts[-1]
        content_type = part.headers.get("content-type")
        if content_type is not None:
            media_type = parse_options_header(content_type)[0].decode("latin-1").lower()
            if media_type != MEDIA_TYPE:
                part.fail(StoreStatus.CANNOT_UNDERSTAND, f"a part of type {media_type!r}, not {MEDIA_TYPE}")

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self.parts[-1]
        if part.failure is not None:
            return
        chunk = memoryview(data)[start:end]  # written as it is: not copied, not kept
        if part.incoming is not None:
            part.incoming.write(chunk)
            return
        buffer = part._buffer
        assert buffer is not None
        if buffer:  # the File Meta Information came in pieces
            buffer += chunk
            self._begin(part, buffer, final=False)
        else:  # usually: it is all in the part's first bytes, which are read where they are
            self._begin(part, chunk, final=False)

    def _on_part_end(self) -> None:
        part = self.parts[-1]
        if part.failure is None and part.incoming is None:
            assert part._buffer is not None
            self._begin(part, part._buffer, final=True)
        part.complete = True

    def _on_end(self) -> None:
        self.ended = True

    def _begin(self, part: Part, prefix: bytearray | memoryview, *, final: bool) -> None:
        """Once the File Meta Information is in ``prefix`` (the part's bytes so far): check it and open the
        part's spool file, or keep ``prefix`` in the part's buffer until more bytes come."""
        try:
            scanned = scan_meta(prefix, final)
            if scanned is None:
                if prefix is not part._buffer:
                    assert part._buffer is not None
                    part._buffer += prefix
                return
            meta_end, values = scanned
            meta = part_meta(values)
        except ValueError as exc:
            part.fail(StoreStatus.CANNOT_UNDERSTAND, str(exc))
            return
        part.meta = meta
        if meta.sop_class_uid not in self.sop_classes:
            part.fail(
                StoreStatus.SOP_CLASS_NOT_SUPPORTED,
                f"SOP class {meta.sop_class_uid} is not accepted (dicom.sop_classes)",
            )
            return
        if meta.transfer_syntax_uid not in self.transfer_syntaxes:
            part.fail(
                StoreStatus.TRANSFER_SYNTAX_NOT_SUPPORTED,
                f"transfer syntax {meta.transfer_syntax_uid} is not accepted (dicom.transfer_syntaxes)",
            )
            return
        try:
            part.incoming = self.spool.begin(
                file_header(meta.sop_class_uid, meta.sop_instance_uid, meta.transfer_syntax_uid)
            )
        except OutOfSpaceError as exc:
            part.fail(StoreStatus.OUT_OF_RESOURCES, str(exc))
            return
        part.incoming.write(memoryview(prefix)[meta_end:])
        part._buffer = None


@dataclass(frozen=True)
class PartOutcome:
    """What became of one part: its UIDs (when known) and the store's result."""

    meta: PartMeta | None
    result: StoreResult

    @property
    def stored(self) -> bool:
        return self.result.status == StoreStatus.SUCCESS


def store_response(outcomes: Sequence[PartOutcome]) -> tuple[int, dict[str, Any]]:
    """The HTTP status and the Store Instances Response (DICOM JSON) of a request's outcomes.

    200: every instance stored; 409: none; 202: some (PS3.18 Table 10.5.3-1).
    """
    response = Dataset()
    referenced = []
    failed = []
    for outcome in outcomes:
        item = Dataset()
        item.ReferencedSOPClassUID = outcome.meta.sop_class_uid if outcome.meta else ""
        item.ReferencedSOPInstanceUID = outcome.meta.sop_instance_uid if outcome.meta else ""
        if outcome.stored:
            referenced.append(item)
        else:
            item.FailureReason = int(outcome.result.status)
            failed.append(item)
    if failed:
        response.FailedSOPSequence = failed
    if referenced:
        response.ReferencedSOPSequence = referenced
    status = 200 if not failed else 409 if not referenced else 202
    return status, response.to_json_dict()
