"""The overlay drawn from an SR as encoded: the FakeEngine's analysis of a chest CR, through dicom_sr."""

from __future__ import annotations

import io

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset

from dicom_sr import encode
from gateway.render import display_image, read_sr, render_overlay, thumbnail_png
from inference import FakeEngine
from tests.ingest_support import small_cr


def _sr_and_source(chest_cr: Dataset) -> tuple[Dataset, Dataset]:
    source = small_cr(chest_cr, rows=256, columns=256)
    source = pydicom.dcmread(io.BytesIO(_bytes(source)))
    analysis = FakeEngine().analyze([source])
    [sr] = encode(analysis, [source], ["sr"], analysis_id="0123456789abcdef")
    return sr, source


def _bytes(dataset: Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_the_sr_read_back_for_its_image_holds_the_findings_and_the_trajectory(chest_cr: Dataset) -> None:
    sr, source = _sr_and_source(chest_cr)
    content = read_sr(sr, for_image=str(source.SOPInstanceUID))
    assert [f.finding for f in content.findings] == ["Pleural effusion"]
    assert all(f.box is not None for f in content.findings)
    assert len(content.trajectory) == 5
    assert content.report
    # regions drawn on another image are left out
    other = read_sr(sr, for_image="1.2.3.4")
    assert other.findings == [] and other.trajectory == [] and other.clue_boxes == []


def test_the_thumbnail_is_a_small_png_with_the_boxes_drawn(chest_cr: Dataset) -> None:
    sr, source = _sr_and_source(chest_cr)
    content = read_sr(sr, for_image=str(source.SOPInstanceUID))
    png = thumbnail_png(source, content, max_side=128)
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and max(image.size) == 128
    plain = np.asarray(display_image(source).resize(image.size).convert("RGB"), dtype=np.int16)
    drawn = np.asarray(image.convert("RGB"), dtype=np.int16)
    coloured = np.abs(drawn[..., 0] - drawn[..., 2]) > 60  # the boxes and the trajectory are coloured
    assert coloured.sum() > 50
    assert not (np.abs(plain[..., 0] - plain[..., 2]) > 60).any()  # the image itself is grey
    # without a title bar, the top rows are the image's
    bare = np.asarray(render_overlay(source, type(content)(), max_side=128, title=""), dtype=np.int16)
    assert not (np.abs(bare[..., 0] - bare[..., 2]) > 60).any()
