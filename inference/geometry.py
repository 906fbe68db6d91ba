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
from dataclasses import dataclass

from inference.results import Box, Point, Region


@dataclass(frozen=True, slots=True)
class DownscaledFrame:
    """Model coordinates are source pixels divided by ``factor`` (GazeX: 4)."""

    factor: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.factor) and self.factor > 0):
            raise ValueError(f'Argument "factor" must be a positive finite number, got {self.factor!r}')

    def describe(self) -> str:
        return f"downscaled by {self.factor:g}"


@dataclass(frozen=True, slots=True)
class NormalizedFrame:
    """Model coordinates run from 0 to ``scale`` across the image width and height (Qwen2-VL: 1000)."""

    scale: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f'Argument "scale" must be a positive finite number, got {self.scale!r}')

    def describe(self) -> str:
        return f"normalized to 0..{self.scale:g}"


CoordinateFrame = DownscaledFrame | NormalizedFrame


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
        if isinstance(self.frame, DownscaledFrame):
            return self.frame.factor, self.frame.factor
        return self.columns / self.frame.scale, self.rows / self.frame.scale

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
