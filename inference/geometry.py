"""Where the model's coordinates lie on the source image, and back.

Three frames are involved:

- **source pixels**: the DICOM image, SCOORD convention ((0, 0) is the top-left corner of the
  top-left pixel, x along the columns); every result leaves this package in this frame;
- **model coordinates**: the numbers the model writes in its answers, described by the
  checkpoint's ``gazex.json`` ``coordinates`` entry (:class:`DownscaledFrame` or
  :class:`NormalizedFrame`);
- **input pixels**: the resized image the vision tower sees (``input_rows`` x ``input_columns``).

:class:`ImageGeometry` maps between them.  Every mapping is affine with a positive scale, so it
preserves the order of corners and maps the image rectangle onto the image rectangle.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from inference.results import Box, Point, Region


def _plain(value: float) -> float | int:
    """``4.0`` as ``4``: how a frame's number is written in JSON and on the command line."""
    return int(value) if float(value).is_integer() else value


@dataclass(frozen=True, slots=True)
class DownscaledFrame:
    """Model coordinates are source pixels divided by ``factor`` (GazeX: 4)."""

    factor: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.factor) and self.factor > 0):
            raise ValueError(f'Argument "factor" must be a positive finite number, got {self.factor!r}')

    def describe(self) -> str:
        return f"downscaled by {self.factor:g}"

    def source_pixels_per_unit(self, rows: int, columns: int) -> tuple[float, float]:
        """Source pixels per model unit along x and along y, for an image of ``rows`` x ``columns``."""
        return self.factor, self.factor

    def to_json(self) -> dict[str, Any]:
        """The ``coordinates`` object of ``gazex.json``."""
        return {"kind": "downscaled", "factor": _plain(self.factor)}

    def __str__(self) -> str:
        return f"downscaled:{_plain(self.factor)}"


@dataclass(frozen=True, slots=True)
class NormalizedFrame:
    """Model coordinates run from 0 to ``scale`` across the image width and height (Qwen2-VL: 1000)."""

    scale: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f'Argument "scale" must be a positive finite number, got {self.scale!r}')

    def describe(self) -> str:
        return f"normalized to 0..{self.scale:g}"

    def source_pixels_per_unit(self, rows: int, columns: int) -> tuple[float, float]:
        """Source pixels per model unit along x and along y, for an image of ``rows`` x ``columns``."""
        return columns / self.scale, rows / self.scale

    def to_json(self) -> dict[str, Any]:
        """The ``coordinates`` object of ``gazex.json``."""
        return {"kind": "normalized", "scale": _plain(self.scale)}

    def __str__(self) -> str:
        return f"normalized:{_plain(self.scale)}"


CoordinateFrame = DownscaledFrame | NormalizedFrame

_FRAME_SPELLING = "downscaled:FACTOR or normalized:SCALE (e.g. downscaled:4 for GazeX, normalized:1000 for Qwen2-VL)"


def frame_from_json(document: Mapping[str, Any]) -> CoordinateFrame:
    """A frame from ``gazex.json``'s ``coordinates`` object; raises ``ValueError`` naming the problem."""
    kind = document.get("kind")
    key = {"downscaled": "factor", "normalized": "scale"}.get(str(kind))
    value = document.get(key) if key is not None else None
    if key is None or set(document) != {"kind", key} or isinstance(value, bool) or not isinstance(value, int | float):
        expected = '{"kind": "downscaled", "factor": N} or {"kind": "normalized", "scale": N}'
        raise ValueError(f"coordinates must be {expected}, got {dict(document)}")
    return DownscaledFrame(float(value)) if kind == "downscaled" else NormalizedFrame(float(value))


def parse_frame(text: str) -> CoordinateFrame:
    """A frame in its command-line spelling, ``downscaled:4`` or ``normalized:1000``."""
    kind, _, number = text.partition(":")
    if kind not in ("downscaled", "normalized") or not number:
        raise ValueError(f"coordinate frame {text!r} is not {_FRAME_SPELLING}")
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"coordinate frame {text!r}: {number!r} is not a number") from None
    return DownscaledFrame(value) if kind == "downscaled" else NormalizedFrame(value)


@dataclass(frozen=True, slots=True)
class ModelRegion:
    """A box and its centroid as the model wrote them, in model coordinates (unvalidated)."""

    x0: float
    y0: float
    x1: float
    y1: float
    cx: float
    cy: float


@dataclass(frozen=True, slots=True)
class ImageGeometry:
    """The geometry of one analysed image: its source size, the model's frame and the input size."""

    rows: int
    columns: int
    frame: CoordinateFrame
    input_rows: int
    input_columns: int

    def __post_init__(self) -> None:
        for name in ("rows", "columns", "input_rows", "input_columns"):
            value = getattr(self, name)
            if value <= 0:
                raise ValueError(f'Argument "{name}" must be positive, got {value}')

    # -- model coordinates <-> source pixels -------------------------------------------------
    def _model_scale(self) -> tuple[float, float]:
        """Source pixels per model unit, along x and along y."""
        return self.frame.source_pixels_per_unit(self.rows, self.columns)

    def model_to_source(self, x: float, y: float) -> tuple[float, float]:
        sx, sy = self._model_scale()
        return x * sx, y * sy

    def source_to_model(self, x: float, y: float) -> tuple[float, float]:
        sx, sy = self._model_scale()
        return x / sx, y / sy

    @property
    def model_extent(self) -> tuple[float, float]:
        """The width and height of the whole image in model coordinates."""
        return self.source_to_model(float(self.columns), float(self.rows))

    # -- input pixels <-> source pixels ------------------------------------------------------
    def input_to_source(self, x: float, y: float) -> tuple[float, float]:
        return x * self.columns / self.input_columns, y * self.rows / self.input_rows

    def source_to_input(self, x: float, y: float) -> tuple[float, float]:
        return x * self.input_columns / self.columns, y * self.input_rows / self.rows

    # -- regions -----------------------------------------------------------------------------
    def region_to_source(self, region: ModelRegion) -> Region | None:
        """``region`` in source pixels, clipped to the image; None when nothing usable is left.

        The box is clipped to the image; a box with no area left (entirely outside, or
        degenerate) gives None.  The centroid is mapped and then clamped into the clipped box,
        so a result is always inside the image.
        """
        values = (region.x0, region.y0, region.x1, region.y1, region.cx, region.cy)
        if not all(math.isfinite(v) for v in values):
            return None
        if region.x0 > region.x1 or region.y0 > region.y1:
            return None
        x0, y0 = self.model_to_source(region.x0, region.y0)
        x1, y1 = self.model_to_source(region.x1, region.y1)
        cx, cy = self.model_to_source(region.cx, region.cy)
        if not all(math.isfinite(v) for v in (x0, y0, x1, y1, cx, cy)):
            return None
        box = Box(x0, y0, x1, y1).clipped(self.rows, self.columns)
        if box.width <= 0 or box.height <= 0:
            return None
        centroid = Point(min(max(cx, box.x0), box.x1), min(max(cy, box.y0), box.y1))
        return Region(box=box, centroid=centroid)
