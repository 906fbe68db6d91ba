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
class ReferenceSize:
    """The image size a :class:`DownscaledFrame` was trained on (``width`` x ``height`` pixels)."""

    width: int
    height: int

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f'Argument "{name}" must be a positive integer, got {value!r}')


#: MIMIC-CXR's typical frontal image, 2544 columns x 3056 rows: GazeX's attention targets are
#: pixels of such images divided by 4 (docs/models.md, "Running the real GazeX weights").
MIMIC_CXR_REFERENCE = ReferenceSize(width=2544, height=3056)


@dataclass(frozen=True, slots=True)
class DownscaledFrame:
    """Model coordinates are source pixels divided by ``factor`` (GazeX: 4).

    With a ``reference`` size the model writes pixels of a ``reference.width`` x
    ``reference.height`` image divided by ``factor``, and each source image is mapped in
    proportion: ``x_src = x_model * factor * columns / reference.width`` (same for y with rows).
    A model trained on images of one typical size, seeing only the resized image, learns that
    size's frame; without a reference, the factor applies to every image's own pixels.
    """

    factor: float
    reference: ReferenceSize | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.factor) and self.factor > 0):
            raise ValueError(f'Argument "factor" must be a positive finite number, got {self.factor!r}')

    def describe(self) -> str:
        if self.reference is None:
            return f"downscaled by {self.factor:g}"
        return f"downscaled by {self.factor:g} from a {self.reference.width}x{self.reference.height} reference image"

    def source_pixels_per_unit(self, rows: int, columns: int) -> tuple[float, float]:
        """Source pixels per model unit along x and along y, for an image of ``rows`` x ``columns``."""
        if self.reference is None:
            return self.factor, self.factor
        return self.factor * columns / self.reference.width, self.factor * rows / self.reference.height

    def to_json(self) -> dict[str, Any]:
        """The ``coordinates`` object of ``gazex.json``."""
        document: dict[str, Any] = {"kind": "downscaled", "factor": _plain(self.factor)}
        if self.reference is not None:
            document["reference"] = {"width": self.reference.width, "height": self.reference.height}
        return document

    def __str__(self) -> str:
        if self.reference is None:
            return f"downscaled:{_plain(self.factor)}"
        return f"downscaled:{_plain(self.factor)}@{self.reference.width}x{self.reference.height}"


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

_FRAME_SPELLING = (
    "downscaled:FACTOR[@WIDTHxHEIGHT] or normalized:SCALE (e.g. downscaled:4 for GazeX, normalized:1000 for Qwen2-VL)"
)


def _reference_from_json(document: Any) -> ReferenceSize:
    if not isinstance(document, Mapping) or set(document) != {"width", "height"}:
        raise ValueError(f'coordinates.reference must be {{"width": W, "height": H}}, got {document!r}')
    try:
        return ReferenceSize(width=document["width"], height=document["height"])
    except ValueError as exc:
        raise ValueError(f"coordinates.reference: {exc}") from None


def frame_from_json(document: Mapping[str, Any]) -> CoordinateFrame:
    """A frame from ``gazex.json``'s ``coordinates`` object; raises ``ValueError`` naming the problem.

    ``{"kind": "downscaled", "factor": F}`` may carry ``"reference": {"width": W, "height": H}``.
    """
    kind = document.get("kind")
    key = {"downscaled": "factor", "normalized": "scale"}.get(str(kind))
    value = document.get(key) if key is not None else None
    allowed = {"kind", key, "reference"} if kind == "downscaled" else {"kind", key}
    keys = set(document)
    if (
        key is None
        or not {"kind", key} <= keys <= allowed
        or isinstance(value, bool)
        or not isinstance(value, int | float)
    ):
        expected = (
            '{"kind": "downscaled", "factor": N} (optionally with "reference": {"width": W, "height": H}) '
            'or {"kind": "normalized", "scale": N}'
        )
        raise ValueError(f"coordinates must be {expected}, got {dict(document)}")
    if kind == "normalized":
        return NormalizedFrame(float(value))
    reference = _reference_from_json(document["reference"]) if "reference" in document else None
    return DownscaledFrame(float(value), reference)


def parse_frame(text: str) -> CoordinateFrame:
    """A frame in its command-line spelling: ``downscaled:4``, ``downscaled:4@2544x3056`` or ``normalized:1000``."""
    kind, _, rest = text.partition(":")
    number, _, size = rest.partition("@")
    if kind not in ("downscaled", "normalized") or not number or (size and kind != "downscaled"):
        raise ValueError(f"coordinate frame {text!r} is not {_FRAME_SPELLING}")
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"coordinate frame {text!r}: {number!r} is not a number") from None
    if kind == "normalized":
        return NormalizedFrame(value)
    reference = None
    if size:
        width, _, height = size.partition("x")
        if not (width.isdigit() and height.isdigit()):
            raise ValueError(f"coordinate frame {text!r}: the reference size {size!r} is not WIDTHxHEIGHT")
        reference = ReferenceSize(int(width), int(height))
    return DownscaledFrame(value, reference)


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
