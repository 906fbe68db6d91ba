"""Our numpy Qwen2-VL image input against Hugging Face's own Qwen2-VL image processor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
    Qwen2VLImageProcessorPil,
)
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
    smart_resize as hf_smart_resize,
)

from inference.config import ImageSettings
from inference.geometry import DownscaledFrame
from inference.vision_input import (
    EncodedImage,
    ImageProcessing,
    ProcessorConfigError,
    patchify,
    prepare_model_image,
    resize_for_model,
    smart_resize,
)


@given(
    st.integers(min_value=28, max_value=4000),
    st.integers(min_value=28, max_value=4000),
    st.sampled_from([(56 * 56, 28 * 28 * 1280), (3136, 768 * 768), (3136, 112 * 112), (28 * 28, 28 * 28 * 4)]),
)
@settings(max_examples=200)
def test_smart_resize_matches_hugging_face(height: int, width: int, budget: tuple[int, int]) -> None:
    low, high = budget
    if max(height, width) / min(height, width) > 200:
        return
    assert smart_resize(height, width, 28, low, high) == hf_smart_resize(height, width, 28, low, high)


def test_patchify_matches_the_hugging_face_processor() -> None:
    rng = np.random.default_rng(7)
    image = rng.integers(0, 256, size=(84, 112), dtype=np.uint8)
    processing = ImageProcessing()
    ours, grid = patchify(image, processing)
    hf = Qwen2VLImageProcessorPil(min_pixels=processing.min_pixels, max_pixels=processing.max_pixels)
    theirs = hf(images=[Image.fromarray(image).convert("RGB")], do_resize=False, return_tensors="np")
    np.testing.assert_array_equal(grid, theirs["image_grid_thw"])
    assert ours.shape == theirs["pixel_values"].shape == (6 * 8, 3 * 2 * 14 * 14)
    np.testing.assert_allclose(ours, theirs["pixel_values"], atol=1e-5)


def test_whole_preparation_matches_the_processor_fed_our_resized_image() -> None:
    display = np.linspace(0, 1, 300 * 200, dtype=np.float32).reshape(300, 200)
    processing = ImageProcessing(min_pixels=3136, max_pixels=224 * 224)
    image = prepare_model_image(display, processing, DownscaledFrame(4))
    hf = Qwen2VLImageProcessorPil(min_pixels=3136, max_pixels=224 * 224)
    theirs = hf(images=[Image.fromarray(image.pixels).convert("RGB")], return_tensors="np")  # resize is a no-op
    np.testing.assert_allclose(image.encoded.pixel_values, theirs["pixel_values"], atol=1e-5)
    np.testing.assert_array_equal(image.encoded.image_grid_thw, theirs["image_grid_thw"])


def test_resize_is_bicubic_to_the_smart_size() -> None:
    image = np.full((1955, 1841), 200, np.uint8)
    resized = resize_for_model(image, ImageProcessing(min_pixels=3136, max_pixels=768 * 768))
    assert resized.shape == smart_resize(1955, 1841, 28, 3136, 768 * 768)
    assert (resized == 200).all()


def test_encoded_image_key_follows_content() -> None:
    values = np.zeros((4, 1176), np.float32)
    grid = np.array([[1, 2, 2]])
    a = EncodedImage.create(values, grid, 2)
    b = EncodedImage.create(values.copy(), grid, 2)
    values2 = values.copy()
    values2[0, 0] = 1
    assert a.key == b.key
    assert EncodedImage.create(values2, grid, 2).key != a.key
    assert a.image_tokens == 1


def test_processing_reads_the_processor_config(tiny_checkpoint: Path) -> None:
    import json

    config = json.loads((tiny_checkpoint / "preprocessor_config.json").read_text())
    processing = ImageProcessing.from_configs(config, ImageSettings(3136, 12544))
    assert (processing.patch_size, processing.merge_size, processing.temporal_patch_size) == (14, 2, 2)
    assert processing.max_pixels == 12544


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"patch_size": 0}, "patch_size"),
        ({"image_std": [0.2, 0.0, 0.2]}, "image_std"),
        ({"image_mean": [0.5, 0.5]}, "image_mean"),
        ({"do_normalize": False}, "do_normalize"),
        ({"rescale_factor": -1}, "rescale_factor"),
    ],
)
def test_processing_rejects_unusable_configs(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ProcessorConfigError, match=message):
        ImageProcessing.from_configs(config, ImageSettings(3136, 12544))


def test_min_pixels_must_allow_one_merged_patch() -> None:
    with pytest.raises(ProcessorConfigError, match="min_pixels"):
        ImageProcessing.from_configs({}, ImageSettings(100, 12544))
