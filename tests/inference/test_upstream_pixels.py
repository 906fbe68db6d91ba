"""GazeX's training images, reproduced: MIMIC-CXR-JPG's pixels and LLaMA-Factory's resize grid.

The references are the upstream definitions themselves: OpenCV's ``cv2.equalizeHist`` and
``cv2.imencode`` (a test dependency, as MIMIC-CXR-JPG was made with OpenCV, MIT-LCP/mimic-cxr
issue #16), LLaMA-Factory's ``_preprocess_image`` formula (``src/llamafactory/data/mm_plugin.py``)
and Hugging Face's Qwen2-VL image processor.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize as hf_smart_resize

from inference.checkpoint import open_checkpoint
from inference.geometry import DownscaledFrame
from inference.pipeline import GazexPipeline
from inference.pixels import display_image, equalize_hist, jpeg_round_trip, min_max_uint8
from inference.testing import ScriptedBackend
from inference.vision_input import (
    ImageProcessing,
    llamafactory_size,
    model_input_size,
    prepare_model_image,
    to_uint8,
)

#: Qwen2-VL-7B-Instruct's preprocessor_config.json budget, the processor GazeX was trained with.
QWEN2_VL_MIN_PIXELS, QWEN2_VL_MAX_PIXELS = 3136, 12845056


def upstream_mimic(ds: pydicom.Dataset) -> npt.NDArray[np.uint8]:
    """MIT-LCP/mimic-cxr issue #16's ``dcm2img``, as published (without writing the file)."""
    raw_image = ds.pixel_array
    raw_image = raw_image - raw_image.min()
    normalized_image = raw_image / raw_image.max()
    rescaled_image = (normalized_image * 255).astype(np.uint8)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        rescaled_image = cv2.bitwise_not(rescaled_image)
    return np.asarray(cv2.equalizeHist(rescaled_image), dtype=np.uint8)


def upstream_llamafactory_size(height: int, width: int, image_max_pixels: int) -> tuple[int, int]:
    """LLaMA-Factory's ``BasePlugin._preprocess_image`` size arithmetic (image_min_pixels 32 * 32)."""
    if (width * height) > image_max_pixels:
        resize_factor = math.sqrt(image_max_pixels / (width * height))
        width, height = int(width * resize_factor), int(height * resize_factor)
    if (width * height) < 32 * 32:
        resize_factor = math.sqrt(32 * 32 / (width * height))
        width, height = int(width * resize_factor), int(height * resize_factor)
    if min(width, height) < 28:
        width, height = max(width, 28), max(height, 28)
    return height, width


def as_uint8(display: npt.NDArray[np.floating]) -> npt.NDArray[np.uint8]:
    return to_uint8(display)


# -- histogram equalisation against OpenCV ---------------------------------------------------


def synthetic_images() -> list[npt.NDArray[np.uint8]]:
    rng = np.random.default_rng(27)
    images: list[npt.NDArray[np.uint8]] = [
        np.zeros((5, 7), np.uint8),
        np.full((64, 48), 255, np.uint8),
        np.full((33, 17), 131, np.uint8),
        np.array([[0, 255], [255, 0]], np.uint8),
        np.array([[9]], np.uint8),
        np.tile(np.arange(256, dtype=np.uint8), (16, 1)),  # full range, flat histogram
        np.where(rng.random((200, 150)) < 0.999, 40, 41).astype(np.uint8),  # two levels, one rare
        np.where(rng.random((97, 203)) < 0.5, 0, 255).astype(np.uint8),
    ]
    for size in range(60):
        height, width = (int(v) for v in rng.integers(1, 400, 2))
        kind = size % 4
        if kind == 0:
            image = rng.integers(0, 256, (height, width), dtype=np.uint8)
        elif kind == 1:  # a narrow band
            low = int(rng.integers(0, 250))
            image = rng.integers(low, min(256, low + int(rng.integers(1, 8))), (height, width)).astype(np.uint8)
        elif kind == 2:  # radiograph-like: a skewed, clipped normal
            image = np.clip(rng.normal(170, rng.uniform(2, 70), (height, width)), 0, 255).astype(np.uint8)
        else:  # a few levels
            levels = rng.choice(256, size=int(rng.integers(2, 6)), replace=False)
            image = levels[rng.integers(0, len(levels), (height, width))].astype(np.uint8)
        images.append(image)
    return images


@pytest.mark.parametrize("image", synthetic_images(), ids=lambda image: f"{image.shape[0]}x{image.shape[1]}")
def test_equalize_hist_is_bit_identical_to_opencv(image: npt.NDArray[np.uint8]) -> None:
    ours = equalize_hist(image)
    assert ours.dtype == np.uint8 and ours.shape == image.shape
    np.testing.assert_array_equal(ours, cv2.equalizeHist(image))


@given(st.integers(1, 60), st.integers(1, 60), st.integers(0, 2**32 - 1))
@settings(max_examples=300, deadline=None)
def test_equalize_hist_matches_opencv_on_random_images(height: int, width: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    image = rng.integers(int(rng.integers(0, 256)), 256, (height, width)).astype(np.uint8)
    np.testing.assert_array_equal(equalize_hist(image), cv2.equalizeHist(image))


def test_equalize_hist_matches_opencv_past_float32_exact_counts() -> None:
    """Over 2**24 pixels OpenCV's float32 product loses integers; ours loses them the same way."""
    rng = np.random.default_rng(5)
    image = np.clip(rng.normal(120, 40, (4200, 4100)), 0, 255).astype(np.uint8)
    assert image.size > 2**24
    np.testing.assert_array_equal(equalize_hist(image), cv2.equalizeHist(image))


def test_equalize_hist_on_the_real_chest_cr(chest_cr: pydicom.Dataset, chest_cr_j2k: pydicom.Dataset) -> None:
    for image in (
        min_max_uint8(chest_cr.pixel_array),
        np.bitwise_not(min_max_uint8(chest_cr.pixel_array)),
        as_uint8(display_image(chest_cr).pixels),
        as_uint8(display_image(chest_cr_j2k).pixels)[::3, ::2].copy(),
    ):
        np.testing.assert_array_equal(equalize_hist(image), cv2.equalizeHist(image))


def test_equalize_hist_takes_only_2d_uint8() -> None:
    with pytest.raises(ValueError, match="2-D uint8"):
        equalize_hist(np.zeros((4, 4), np.uint16))


# -- the MIMIC-CXR-JPG pixel mode ------------------------------------------------------------


def test_mimic_mode_on_the_chest_cr_equals_the_published_conversion(chest_cr: pydicom.Dataset) -> None:
    reference = upstream_mimic(chest_cr)
    mimic = display_image(chest_cr, pixels="mimic-cxr-jpg")
    ours = as_uint8(mimic.pixels)
    np.testing.assert_array_equal(ours, reference)
    assert mimic.pixels.dtype == np.float32 and mimic.pixels.shape == (1955, 1841)
    assert any("MIMIC-CXR-JPG" in note for note in mimic.notes)
    # Measured: MIMIC-style mean 128.7, sd 74.3; the VOI window's mean 192.2, sd 38.8 (r = 0.93).
    assert ours.mean() == pytest.approx(128.74, abs=0.01)
    assert ours.std() == pytest.approx(74.30, abs=0.01)
    voi = as_uint8(display_image(chest_cr).pixels)
    assert voi.mean() == pytest.approx(192.17, abs=0.01)
    assert voi.std() == pytest.approx(38.84, abs=0.01)
    assert np.corrcoef(voi.ravel(), ours.ravel())[0, 1] == pytest.approx(0.927, abs=0.001)


def test_mimic_mode_inverts_only_monochrome1(chest_cr: pydicom.Dataset) -> None:
    inverted = as_uint8(display_image(chest_cr, pixels="mimic-cxr-jpg").pixels)
    chest_cr.PhotometricInterpretation = "MONOCHROME2"
    ours = as_uint8(display_image(chest_cr, pixels="mimic-cxr-jpg").pixels)
    np.testing.assert_array_equal(ours, upstream_mimic(chest_cr))
    assert np.corrcoef(inverted.ravel(), ours.ravel())[0, 1] < -0.99


def test_mimic_mode_with_jpeg_equals_opencv_imwrite_default(chest_cr: pydicom.Dataset) -> None:
    """MIMIC-CXR-JPG was written by ``cv2.imwrite``, whose default JPEG quality is 95."""
    reference = upstream_mimic(chest_cr)
    written, encoded = cv2.imencode(".jpg", reference)
    assert written
    decoded = cv2.imdecode(encoded, cv2.IMREAD_GRAYSCALE)
    assert cv2.imencode(".jpg", reference, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes() == encoded.tobytes()
    ours = as_uint8(display_image(chest_cr, pixels="mimic-cxr-jpg", jpeg_quality=95).pixels)
    np.testing.assert_array_equal(ours, decoded)
    assert 0 < np.abs(ours.astype(int) - reference).mean() < 2  # lossy, and close


def test_jpeg_round_trip_matches_opencv_at_other_qualities() -> None:
    rng = np.random.default_rng(3)
    image = np.clip(rng.normal(128, 50, (120, 90)), 0, 255).astype(np.uint8)
    for quality in (50, 75, 90, 100):
        _, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        np.testing.assert_array_equal(jpeg_round_trip(image, quality), cv2.imdecode(encoded, cv2.IMREAD_GRAYSCALE))
    with pytest.raises(ValueError, match="1 to 100"):
        jpeg_round_trip(image, 0)


def test_min_max_truncates_like_the_published_conversion_and_a_constant_image_is_black() -> None:
    values = np.array([[100, 101, 356], [228, 300, 100]], np.int64)
    np.testing.assert_array_equal(min_max_uint8(values), ((values - 100) / 256 * 255).astype(np.uint8))
    assert min_max_uint8(values)[0, 1] == 0  # 255/256 truncated, not rounded
    assert (min_max_uint8(np.full((3, 3), 7)) == 0).all()


def test_every_8_bit_level_survives_the_float_display_image() -> None:
    levels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    np.testing.assert_array_equal(to_uint8(levels.astype(np.float32) / np.float32(255.0)), levels)


def test_display_image_refuses_unknown_modes(chest_cr: pydicom.Dataset) -> None:
    with pytest.raises(ValueError, match="pixels must be one of voi, mimic-cxr-jpg"):
        display_image(chest_cr, pixels="raw")
    with pytest.raises(ValueError, match="jpeg_quality applies only"):
        display_image(chest_cr, jpeg_quality=95)


# -- LLaMA-Factory's resize grid -------------------------------------------------------------

#: (rows, columns) -> (LLaMA-Factory's intermediate size, the grid after the processor), with
#: Qwen2-VL-7B-Instruct's processor budget; MIMIC-CXR's common sizes and the NEMA chest CR.
GOLDEN = {
    (3056, 2544): ((841, 700), (840, 700)),
    (2544, 3056): ((700, 841), (700, 840)),
    (3050, 2539): ((841, 700), (840, 700)),
    (2022, 2021): ((768, 767), (756, 756)),
    (1955, 1841): ((791, 745), (784, 756)),
    (2048, 2500): ((695, 848), (700, 840)),
    (4280, 3520): ((846, 696), (840, 700)),
    (700, 500): ((700, 500), (700, 504)),
}


@pytest.mark.parametrize(("source", "expected"), GOLDEN.items(), ids=lambda v: f"{v}")
def test_llamafactory_grid_golden(source: tuple[int, int], expected: tuple[tuple[int, int], tuple[int, int]]) -> None:
    middle, grid = expected
    processing = ImageProcessing(min_pixels=QWEN2_VL_MIN_PIXELS, max_pixels=QWEN2_VL_MAX_PIXELS, resize="llamafactory")
    assert llamafactory_size(*source) == upstream_llamafactory_size(*source, 768 * 768) == middle
    assert model_input_size(*source, processing) == hf_smart_resize(*middle, 28, 3136, 12845056) == grid


def test_the_chest_cr_grid_differs_between_our_resize_and_llamafactory() -> None:
    ours = ImageProcessing(min_pixels=3136, max_pixels=768 * 768)
    upstream = ImageProcessing(min_pixels=QWEN2_VL_MIN_PIXELS, max_pixels=QWEN2_VL_MAX_PIXELS, resize="llamafactory")
    assert model_input_size(1955, 1841, ours) == (784, 728)
    assert model_input_size(1955, 1841, upstream) == (784, 756)


@given(
    st.integers(28, 5000),
    st.integers(28, 5000),
    st.sampled_from([768 * 768, 512 * 512, 1024 * 1024, 1003520]),
    st.sampled_from([(3136, 12845056), (3136, 1003520), (3136, 768 * 768)]),
)
@settings(max_examples=400, deadline=None)
def test_llamafactory_grid_matches_the_upstream_formula(
    height: int, width: int, image_max_pixels: int, budget: tuple[int, int]
) -> None:
    if max(height, width) / min(height, width) > 150:
        return
    low, high = budget
    processing = ImageProcessing(
        min_pixels=low, max_pixels=high, resize="llamafactory", image_max_pixels=image_max_pixels
    )
    middle = upstream_llamafactory_size(height, width, image_max_pixels)
    assert llamafactory_size(height, width, image_max_pixels) == middle
    assert model_input_size(height, width, processing) == hf_smart_resize(*middle, 28, low, high)


def test_llamafactory_small_and_thin_images() -> None:
    assert (
        llamafactory_size(20, 30) == upstream_llamafactory_size(20, 30, 768 * 768) == (28, 39)
    )  # up to 32 x 32 (26 x 39), then 28
    assert llamafactory_size(10, 200) == (28, 200)  # a side under 28 raised to 28
    assert llamafactory_size(28, 6000) == (28, 5040)  # aspect ratio over 200 cut to 180


def test_llamafactory_pixels_equal_the_upstream_pipeline(chest_cr: pydicom.Dataset) -> None:
    """Our two resizes and patches against PIL's resize as LLaMA-Factory calls it, then HF's processor."""
    display = display_image(chest_cr, pixels="mimic-cxr-jpg", jpeg_quality=95)
    processing = ImageProcessing(min_pixels=QWEN2_VL_MIN_PIXELS, max_pixels=QWEN2_VL_MAX_PIXELS, resize="llamafactory")
    ours = prepare_model_image(display.pixels, processing, DownscaledFrame(4))

    grey = Image.fromarray(as_uint8(display.pixels), mode="L")  # the JPEG as LLaMA-Factory opens it
    factor = math.sqrt(768 * 768 / (grey.width * grey.height))
    grey = grey.resize((int(grey.width * factor), int(grey.height * factor)))  # Pillow's default filter
    hf = Qwen2VLImageProcessorPil(min_pixels=QWEN2_VL_MIN_PIXELS, max_pixels=QWEN2_VL_MAX_PIXELS)
    theirs = hf(images=[grey.convert("RGB")], return_tensors="np")
    np.testing.assert_array_equal(ours.encoded.image_grid_thw, theirs["image_grid_thw"])
    assert ours.pixels.shape == (784, 756)
    np.testing.assert_allclose(ours.encoded.pixel_values, theirs["pixel_values"], atol=1e-5)


# -- gazex.json's image settings reach the pipeline ------------------------------------------


def test_the_checkpoint_image_settings_drive_the_pipeline(
    tiny_checkpoint: Path, tmp_path: Path, chest_cr: pydicom.Dataset
) -> None:
    target = tmp_path / "upstream"
    shutil.copytree(tiny_checkpoint, target)
    document = json.loads((target / "gazex.json").read_text())
    document["image"] = {
        "min_pixels": 3136,
        "max_pixels": 224 * 224,
        "pixels": "mimic-cxr-jpg",
        "jpeg_quality": 95,
        "resize": "llamafactory",
        "image_max_pixels": 256 * 256,
    }
    (target / "gazex.json").write_text(json.dumps(document))
    checkpoint = open_checkpoint(target)
    assert (checkpoint.processing.resize, checkpoint.processing.image_max_pixels) == ("llamafactory", 65536)

    image, notes = GazexPipeline(checkpoint, ScriptedBackend(checkpoint.tokenizer, lambda prompt: "")).model_image(
        chest_cr
    )
    assert "JPEG round trip at quality 95" in notes
    middle = llamafactory_size(1955, 1841, 256 * 256)
    assert image.pixels.shape == hf_smart_resize(*middle, 28, 3136, 224 * 224)
    mimic = display_image(chest_cr, pixels="mimic-cxr-jpg", jpeg_quality=95)
    expected = prepare_model_image(mimic.pixels, checkpoint.processing, checkpoint.gazex.coordinates)
    np.testing.assert_array_equal(image.pixels, expected.pixels)
    assert image.encoded.key == expected.encoded.key

    default = open_checkpoint(tiny_checkpoint)
    plain, _ = GazexPipeline(default, ScriptedBackend(default.tokenizer, lambda prompt: "")).model_image(chest_cr)
    voi = prepare_model_image(display_image(chest_cr).pixels, default.processing, default.gazex.coordinates)
    np.testing.assert_array_equal(plain.pixels, voi.pixels)
