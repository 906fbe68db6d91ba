"""From a display image to what Qwen2-VL's vision tower takes: ``pixel_values`` and ``image_grid_thw``.

This is Qwen2-VL's image processor, written out in numpy so that every backend (torch, ONNX
Runtime, TensorRT, Triton) gets the same input without torch or torchvision:

1. the display image is quantised to 8 bits, as the JPEG images GazeX was trained on were;
2. it is resized (PIL bicubic) to the size :func:`smart_resize` picks: both sides multiples of
   ``patch_size * merge_size``, the pixel count within the checkpoint's ``min_pixels`` and
   ``max_pixels``, the aspect ratio kept as closely as possible; with ``gazex.json``'s
   ``image.resize`` ``"llamafactory"``, LLaMA-Factory's own resize (:func:`llamafactory_size`)
   comes first, as it did for every image a LLaMA-Factory checkpoint was trained on;
3. grey is replicated to RGB, scaled by ``rescale_factor``, normalised with the processor's
   mean and standard deviation, and cut into patches of ``temporal_patch_size`` x
   ``patch_size`` x ``patch_size`` in the order Qwen2-VL expects.

The tests compare the result with Hugging Face's own Qwen2-VL image processor.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from inference.config import LLAMAFACTORY_IMAGE_MAX_PIXELS, ImageSettings
from inference.geometry import CoordinateFrame, ImageGeometry

#: LLaMA-Factory's default ``image_min_pixels`` (32 x 32); ``gazex.json`` does not set it.
LLAMAFACTORY_IMAGE_MIN_PIXELS = 32 * 32

#: Hugging Face's defaults for Qwen2-VL (OPENAI CLIP mean and standard deviation).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class ProcessorConfigError(ValueError):
    """``preprocessor_config.json`` does not describe a usable Qwen2-VL image processor."""


@dataclass(frozen=True, slots=True)
class ImageProcessing:
    """How images are prepared for one checkpoint."""

    patch_size: int = 14
    temporal_patch_size: int = 2
    merge_size: int = 2
    image_mean: tuple[float, float, float] = CLIP_MEAN
    image_std: tuple[float, float, float] = CLIP_STD
    rescale_factor: float = 1.0 / 255.0
    min_pixels: int = 56 * 56
    max_pixels: int = 28 * 28 * 1280
    resize: str = "qwen2-vl"
    image_max_pixels: int = LLAMAFACTORY_IMAGE_MAX_PIXELS

    @property
    def factor(self) -> int:
        return self.patch_size * self.merge_size

    @classmethod
    def from_configs(cls, processor: Mapping[str, Any], image: ImageSettings) -> ImageProcessing:
        """From ``preprocessor_config.json`` and ``gazex.json``'s ``image`` (which sets the pixel budget)."""

        def integer(key: str, default: int) -> int:
            value = processor.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ProcessorConfigError(f"preprocessor_config.json {key} must be a positive integer, got {value!r}")
            return value

        def triple(key: str, default: tuple[float, float, float]) -> tuple[float, float, float]:
            value = processor.get(key, list(default))
            if isinstance(value, int | float):
                value = [value] * 3
            if (
                not isinstance(value, list)
                or len(value) != 3
                or not all(isinstance(v, int | float) and math.isfinite(v) for v in value)
            ):
                raise ProcessorConfigError(f"preprocessor_config.json {key} must be 3 numbers, got {value!r}")
            return (float(value[0]), float(value[1]), float(value[2]))

        std = triple("image_std", CLIP_STD)
        if any(v <= 0 for v in std):
            raise ProcessorConfigError(f"preprocessor_config.json image_std must be positive, got {std}")
        for flag in ("do_rescale", "do_normalize", "do_convert_rgb"):
            if processor.get(flag, True) is not True:
                raise ProcessorConfigError(f"preprocessor_config.json {flag} must be true for Qwen2-VL, got false")
        rescale = processor.get("rescale_factor", 1.0 / 255.0)
        if isinstance(rescale, bool) or not isinstance(rescale, int | float) or not rescale > 0:
            raise ProcessorConfigError(f"preprocessor_config.json rescale_factor must be positive, got {rescale!r}")
        patch_size, merge_size = integer("patch_size", 14), integer("merge_size", 2)
        if image.min_pixels < (patch_size * merge_size) ** 2:
            raise ProcessorConfigError(
                f"gazex.json image.min_pixels ({image.min_pixels}) must be at least "
                f"(patch_size * merge_size)^2 = {(patch_size * merge_size) ** 2}"
            )
        return cls(
            patch_size=patch_size,
            temporal_patch_size=integer("temporal_patch_size", 2),
            merge_size=merge_size,
            image_mean=triple("image_mean", CLIP_MEAN),
            image_std=std,
            rescale_factor=float(rescale),
            min_pixels=image.min_pixels,
            max_pixels=image.max_pixels,
            resize=image.resize,
            image_max_pixels=image.image_max_pixels,
        )


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Qwen2-VL's choice of resized (height, width): multiples of ``factor``, pixel count in range."""
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height} x {width}")
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"aspect ratio must be below 200, got {height} x {width}")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    if h_bar <= 0 or w_bar <= 0:
        raise ValueError(f"an image of {height} x {width} resizes to nothing with min_pixels {min_pixels}")
    return h_bar, w_bar


def llamafactory_size(
    height: int,
    width: int,
    image_max_pixels: int = LLAMAFACTORY_IMAGE_MAX_PIXELS,
    image_min_pixels: int = LLAMAFACTORY_IMAGE_MIN_PIXELS,
) -> tuple[int, int]:
    """The (height, width) LLaMA-Factory v0.9.x resizes an image to before the processor sees it.

    ``BasePlugin._preprocess_image`` in ``src/llamafactory/data/mm_plugin.py``: over
    ``image_max_pixels`` pixels, both sides are scaled by ``sqrt(image_max_pixels / (w * h))``
    and truncated (``int``); under ``image_min_pixels``, scaled up the same way; then
    ``Qwen2VLPlugin`` raises a side under 28 to 28 and cuts an aspect ratio over 200 to 180.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height} x {width}")
    if width * height > image_max_pixels:
        factor = math.sqrt(image_max_pixels / (width * height))
        width, height = int(width * factor), int(height * factor)
    if width * height < image_min_pixels:
        factor = math.sqrt(image_min_pixels / (width * height))
        width, height = int(width * factor), int(height * factor)
    if min(width, height) < 28:
        width, height = max(width, 28), max(height, 28)
    if width / height > 200:
        width = height * 180
    if height / width > 200:
        height = width * 180
    return height, width


def model_input_size(height: int, width: int, processing: ImageProcessing) -> tuple[int, int]:
    """The (height, width) of the image the vision tower sees for a ``height`` x ``width`` source."""
    if processing.resize == "llamafactory":
        height, width = llamafactory_size(height, width, processing.image_max_pixels)
    return smart_resize(height, width, processing.factor, processing.min_pixels, processing.max_pixels)


def to_uint8(display: npt.NDArray[np.floating]) -> npt.NDArray[np.uint8]:
    """A [0, 1] image as 8-bit grey, rounded to nearest."""
    quantised: npt.NDArray[np.uint8] = np.rint(np.clip(display, 0.0, 1.0) * 255.0).astype(np.uint8)
    return quantised


def _bicubic(image: npt.NDArray[np.uint8], height: int, width: int) -> npt.NDArray[np.uint8]:
    if (height, width) == image.shape:
        return image
    resized = Image.fromarray(image, mode="L").resize((width, height), resample=Image.Resampling.BICUBIC)
    result: npt.NDArray[np.uint8] = np.asarray(resized, dtype=np.uint8)
    return result


def resize_for_model(image: npt.NDArray[np.uint8], processing: ImageProcessing) -> npt.NDArray[np.uint8]:
    """The 8-bit image resized (bicubic) to the size :func:`model_input_size` picks.

    With ``resize`` ``"llamafactory"`` it is two resizes, as in training: LLaMA-Factory's to
    :func:`llamafactory_size` (Pillow's default filter for a grey image, bicubic, as in the
    ``llamafactory==0.9.4.dev0`` GazeX pins; v0.9.2 passed NEAREST), then the processor's to
    :func:`smart_resize` of that size.
    """
    if processing.resize == "llamafactory":
        image = _bicubic(
            image, *llamafactory_size(int(image.shape[0]), int(image.shape[1]), processing.image_max_pixels)
        )
    height, width = smart_resize(
        int(image.shape[0]), int(image.shape[1]), processing.factor, processing.min_pixels, processing.max_pixels
    )
    return _bicubic(image, height, width)


def patchify(
    image: npt.NDArray[np.uint8], processing: ImageProcessing
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """``pixel_values`` (patches, 3 * T * P * P) and ``image_grid_thw`` (1, 3) of an 8-bit image.

    The image sides must be multiples of ``patch_size * merge_size`` (see :func:`resize_for_model`).
    """
    height, width = int(image.shape[0]), int(image.shape[1])
    p, m, t = processing.patch_size, processing.merge_size, processing.temporal_patch_size
    if height % (p * m) or width % (p * m):
        raise ValueError(f"image size {height} x {width} is not a multiple of {p * m}")
    grey = image.astype(np.float32) * np.float32(processing.rescale_factor)
    mean = np.asarray(processing.image_mean, dtype=np.float32)[:, None, None]
    std = np.asarray(processing.image_std, dtype=np.float32)[:, None, None]
    rgb = (np.broadcast_to(grey, (3, height, width)) - mean) / std  # (C, H, W)
    grid_h, grid_w = height // p, width // p
    patches = rgb.reshape(3, grid_h // m, m, p, grid_w // m, m, p)
    # -> (grid_h/m, grid_w/m, m, m, C, P, P), then the temporal copies of the one frame
    patches = patches.transpose(1, 4, 2, 5, 0, 3, 6)
    patches = np.broadcast_to(patches[:, :, :, :, :, None], (*patches.shape[:5], t, p, p))
    pixel_values = np.ascontiguousarray(patches.reshape(grid_h * grid_w, 3 * t * p * p), dtype=np.float32)
    return pixel_values, np.array([[1, grid_h, grid_w]], dtype=np.int64)


@dataclass(frozen=True, eq=False)
class EncodedImage:
    """One image as the vision tower takes it, backend-neutral (numpy arrays).

    ``key`` identifies the content, so a backend may cache the vision tower's output per image.
    """

    pixel_values: npt.NDArray[np.float32]
    image_grid_thw: npt.NDArray[np.int64]
    merge_size: int
    key: str

    @classmethod
    def create(
        cls, pixel_values: npt.NDArray[np.float32], image_grid_thw: npt.NDArray[np.int64], merge_size: int
    ) -> EncodedImage:
        digest = hashlib.sha256()
        digest.update(np.ascontiguousarray(image_grid_thw, dtype=np.int64).tobytes())
        digest.update(np.ascontiguousarray(pixel_values, dtype=np.float32).tobytes())
        return cls(pixel_values, image_grid_thw, merge_size, digest.hexdigest())

    @property
    def image_tokens(self) -> int:
        """How many ``<|image_pad|>`` tokens stand for this image in a prompt."""
        t, h, w = (int(v) for v in self.image_grid_thw[0])
        return t * h * w // (self.merge_size**2)


@dataclass(frozen=True, eq=False)
class ModelImage:
    """The model's view of one source image: the resized 8-bit pixels, their encoding and geometry."""

    pixels: npt.NDArray[np.uint8]
    encoded: EncodedImage
    geometry: ImageGeometry


def prepare_model_image(
    display: npt.NDArray[np.floating], processing: ImageProcessing, frame: CoordinateFrame
) -> ModelImage:
    """Quantise, resize and encode a display image; keep the geometry back to source pixels."""
    rows, columns = int(display.shape[0]), int(display.shape[1])
    resized = resize_for_model(to_uint8(display), processing)
    pixel_values, grid = patchify(resized, processing)
    geometry = ImageGeometry(
        rows=rows,
        columns=columns,
        frame=frame,
        input_rows=int(resized.shape[0]),
        input_columns=int(resized.shape[1]),
    )
    return ModelImage(
        pixels=resized, encoded=EncodedImage.create(pixel_values, grid, processing.merge_size), geometry=geometry
    )
