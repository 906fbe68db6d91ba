"""The phantoms' REFLACX images show what the runtime makes of their DICOM files (the chest window applied)."""

from __future__ import annotations

import io

import numpy as np
import pydicom

from inference.config import ImageSettings
from inference.demo import PhantomConfig, generate_phantom
from inference.demo.dicom import phantom_dataset, windowed_display
from inference.pixels import display_image
from inference.vision_input import ImageProcessing, resize_for_model, to_uint8

PROCESSING = ImageProcessing.from_configs({}, ImageSettings(3136, 168 * 168))


def _model_input(display: np.ndarray) -> np.ndarray:
    return resize_for_model(to_uint8(display), PROCESSING).astype(np.float64)


def test_a_small_windowed_render_gives_the_model_what_the_dicom_file_gives() -> None:
    config = PhantomConfig(rows=(900, 1000))
    for index in range(4):  # CR/DX x MONOCHROME1/2
        phantom = generate_phantom(21, index, config)
        buffer = io.BytesIO()
        phantom_dataset(phantom).save_as(buffer, enforce_file_format=True)
        buffer.seek(0)
        from_dicom = _model_input(display_image(pydicom.dcmread(buffer)).pixels)
        small = phantom.render(320)
        windowed = np.abs(_model_input(windowed_display(phantom, small)) - from_dicom).mean()
        raw = np.abs(_model_input(small) - from_dicom).mean()
        assert windowed < 6.0, (phantom.acquisition, windowed)
        assert windowed < raw / 2, (phantom.acquisition, windowed, raw)
