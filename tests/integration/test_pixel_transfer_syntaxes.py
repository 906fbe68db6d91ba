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
