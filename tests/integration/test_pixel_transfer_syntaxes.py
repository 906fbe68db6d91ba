"""Every lossless transfer syntax gives the same model input: the chest CR transcoded by dcmtk."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest

from inference.geometry import DownscaledFrame
from inference.pixels import SUPPORTED_TRANSFER_SYNTAXES, display_image
from inference.vision_input import ImageProcessing, prepare_model_image

PROCESSING = ImageProcessing(min_pixels=56 * 56, max_pixels=768 * 768)

# dcmtk tool and options -> the transfer syntax it writes
TRANSCODES = {
    "jpeg-ls-lossless": (["dcmcjpls"], "1.2.840.10008.1.2.4.80"),
    "jpeg-lossless-sv1": (["dcmcjpeg"], "1.2.840.10008.1.2.4.70"),
    "jpeg-lossless-p14": (["dcmcjpeg", "+el"], "1.2.840.10008.1.2.4.57"),
    "rle": (["dcmcrle"], "1.2.840.10008.1.2.5"),
    "explicit-big-endian": (["dcmconv", "+tb"], "1.2.840.10008.1.2.2"),
    "implicit-little-endian": (["dcmconv", "+ti"], "1.2.840.10008.1.2"),
    "deflated": (["dcmconv", "+td"], "1.2.840.10008.1.2.1.99"),
}


@pytest.mark.integration
@pytest.mark.parametrize("name", sorted(TRANSCODES))
def test_transcoded_chest_cr_gives_the_same_model_input(
    name: str, chest_cr_path: Path, tmp_path: Path, dicom_tool: Callable[[str], Path]
) -> None:
    command, syntax = TRANSCODES[name]
    tool = dicom_tool(command[0])
    target = tmp_path / f"{name}.dcm"
    subprocess.run([str(tool), *command[1:], str(chest_cr_path), str(target)], check=True, capture_output=True)
    transcoded = pydicom.dcmread(target)
    assert transcoded.file_meta.TransferSyntaxUID == syntax
    assert syntax in SUPPORTED_TRANSFER_SYNTAXES

    frame = DownscaledFrame(4.0)
    reference = prepare_model_image(display_image(pydicom.dcmread(chest_cr_path)).pixels, PROCESSING, frame)
    result = prepare_model_image(display_image(transcoded).pixels, PROCESSING, frame)
    np.testing.assert_array_equal(result.encoded.pixel_values, reference.encoded.pixel_values)
    assert result.encoded.key == reference.encoded.key


def reduced_depth_copy(source: Path, bits: int, target: Path) -> Path:
    """The chest CR with ``bits`` stored bits (as a lossy JPEG process needs), window adjusted."""
    ds = pydicom.dcmread(source)
    values = ds.pixel_array >> (15 - bits)
    ds.BitsAllocated = 8 if bits == 8 else 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.WindowCenter = 2 ** (bits - 1)
    ds.WindowWidth = 2**bits
    ds.PixelData = values.astype(np.uint8 if bits == 8 else np.uint16).tobytes()
    ds.save_as(target)
    return target


# name -> (stored bits, dcmtk command or None for pydicom's JPEG 2000 encoder, transfer syntax)
LOSSY = {
    "jpeg-baseline": (8, ["dcmcjpeg", "+eb"], "1.2.840.10008.1.2.4.50"),
    "jpeg-extended": (12, ["dcmcjpeg", "+ee"], "1.2.840.10008.1.2.4.51"),
    "jpeg-ls-near-lossless": (12, ["dcmcjpls", "+en"], "1.2.840.10008.1.2.4.81"),
    "jpeg-2000": (12, None, "1.2.840.10008.1.2.4.91"),
}


@pytest.mark.integration
@pytest.mark.parametrize("name", sorted(LOSSY))
def test_lossy_transfer_syntaxes_decode_close_to_the_original(
    name: str, chest_cr_path: Path, tmp_path: Path, dicom_tool: Callable[[str], Path]
) -> None:
    bits, command, syntax = LOSSY[name]
    original = reduced_depth_copy(chest_cr_path, bits, tmp_path / "original.dcm")
    target = tmp_path / f"{name}.dcm"
    if command is None:
        from pydicom.uid import JPEG2000

        ds = pydicom.dcmread(original)
        ds.compress(JPEG2000, j2k_cr=[20])
        ds.save_as(target)
    else:
        tool = dicom_tool(command[0])
        subprocess.run([str(tool), *command[1:], str(original), str(target)], check=True, capture_output=True)
    compressed = pydicom.dcmread(target)
    assert compressed.file_meta.TransferSyntaxUID == syntax
    assert syntax in SUPPORTED_TRANSFER_SYNTAXES
    reference = display_image(pydicom.dcmread(original)).pixels
    decoded = display_image(compressed).pixels
    assert decoded.shape == reference.shape
    assert float(np.abs(decoded - reference).mean()) < 0.01


def test_every_supported_transfer_syntax_is_tested_here() -> None:
    tested = {syntax for _, syntax in TRANSCODES.values()} | {syntax for _, _, syntax in LOSSY.values()}
    tested |= {"1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.90"}  # the chest CR fixtures themselves
    assert tested == set(SUPPORTED_TRANSFER_SYNTAXES)
