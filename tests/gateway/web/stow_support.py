"""STOW-RS request bodies for the intake tests: Part 10 files in a multipart/related message."""

from __future__ import annotations

import io
from collections.abc import Sequence

import pydicom
from pydicom.dataset import Dataset

BOUNDARY = "gazex-test-boundary-7f3a"
CONTENT_TYPE = f'multipart/related; type="application/dicom"; boundary="{BOUNDARY}"'


def part10(dataset: Dataset) -> bytes:
    """The dataset as a DICOM Part 10 file (preamble, DICM, File Meta Information, data set)."""
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, dataset, enforce_file_format=True)
    return buffer.getvalue()


def dataset_bytes_of(data: bytes) -> bytes:
    """The data set bytes of a Part 10 file (what follows its File Meta Information)."""
    fp = io.BytesIO(data)
    pydicom.filereader.read_preamble(fp, False)
    pydicom.filereader._read_file_meta_info(fp)
    return fp.read()


def multipart(parts: Sequence[bytes], *, part_type: str = "application/dicom", closed: bool = True) -> bytes:
    """A multipart/related body of ``parts``; ``closed=False`` leaves out the closing boundary."""
    body = b""
    for part in parts:
        body += f"--{BOUNDARY}\r\nContent-Type: {part_type}\r\n\r\n".encode() + part + b"\r\n"
    if closed:
        body += f"--{BOUNDARY}--\r\n".encode()
    return body
