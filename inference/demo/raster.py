"""Sampling analytic shapes on a raster whose pixels map exactly to source-image pixels.

A phantom is defined in **source pixels** (the SCOORD convention of :mod:`inference.results`:
(0, 0) is the top-left corner of the top-left pixel).  It can be rasterised at any output size;
output pixel (r, c) samples the source point ((c + 0.5) * sx, (r + 0.5) * sy) with
``sx = columns / width`` and ``sy = rows / height``.  Shapes are given as signed distances
(negative inside) and turned into coverage with a linear ramp one output pixel wide, so a
low-resolution render is an anti-aliased view of the same geometry, not a different phantom.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from inference.results import Box

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Window:
    """A rectangular block of a :class:`Grid`: its slices and the source coordinates sampled."""

    rows: slice
    columns: slice
    xs: FloatArray  # shape (1, w): source x of each column centre
    ys: FloatArray  # shape (h, 1): source y of each row centre


@dataclass(frozen=True, slots=True)
class Grid:
    """An output raster of ``height`` x ``width`` pixels over a source image of ``rows`` x ``columns``."""

    rows: int
    columns: int
    height: int
    width: int

    def __post_init__(self) -> None:
        if min(self.rows, self.columns, self.height, self.width) <= 0:
            raise ValueError(f"Grid sizes must be positive, got {self}")

    @classmethod
    def fitting(cls, rows: int, columns: int, max_side: int | None) -> Grid:
        """The grid whose longer side is ``max_side`` (the source size when None or larger)."""
        if max_side is None or max_side >= max(rows, columns):
            return cls(rows, columns, rows, columns)
        if max_side < 16:
            raise ValueError(f'Argument "max_side" must be at least 16, got {max_side}')
        scale = max_side / max(rows, columns)
        return cls(rows, columns, max(1, round(rows * scale)), max(1, round(columns * scale)))

    @property
    def sx(self) -> float:
        """Source pixels per output pixel along x."""
        return self.columns / self.width

    @property
    def sy(self) -> float:
        """Source pixels per output pixel along y."""
        return self.rows / self.height

    @property
    def softness(self) -> float:
        """Edge ramp width in source pixels: one output pixel, and at least one source pixel."""
        return max(1.0, 0.5 * (self.sx + self.sy))

    def window(self, box: Box) -> Window | None:
        """The output pixels whose centres fall inside ``box`` (source pixels), or None if none do."""
        c0 = max(0, math.ceil(box.x0 / self.sx - 0.5))
        c1 = min(self.width, math.floor(box.x1 / self.sx - 0.5) + 1)
        r0 = max(0, math.ceil(box.y0 / self.sy - 0.5))
        r1 = min(self.height, math.floor(box.y1 / self.sy - 0.5) + 1)
        if c1 <= c0 or r1 <= r0:
            return None
        xs = ((np.arange(c0, c1, dtype=np.float64) + 0.5) * self.sx)[None, :]
        ys = ((np.arange(r0, r1, dtype=np.float64) + 0.5) * self.sy)[:, None]
        return Window(slice(r0, r1), slice(c0, c1), xs, ys)

    def full(self) -> Window:
        """The whole raster as one window."""
        window = self.window(Box(0.0, 0.0, float(self.columns), float(self.rows)))
        assert window is not None
        return window


def coverage(signed_distance: FloatArray, softness: float) -> FloatArray:
    """Fraction of a pixel inside a shape: 1 well inside, 0 well outside, a linear ramp across the edge."""
    return np.clip(0.5 - signed_distance / softness, 0.0, 1.0)


def ellipse_distance(
    xs: FloatArray, ys: FloatArray, cx: float, cy: float, a: float, b: float, angle: float = 0.0
) -> tuple[FloatArray, FloatArray]:
    """Approximate signed distance to an ellipse, and its normalised radius (1 on the boundary).

    ``angle`` (radians) rotates the ``a`` axis from +x towards +y.
    """
    dx = xs - cx
    dy = ys - cy
    if angle:
        cos, sin = math.cos(angle), math.sin(angle)
        dx, dy = dx * cos + dy * sin, -dx * sin + dy * cos
    radius = np.sqrt((dx / a) ** 2 + (dy / b) ** 2)
    return (radius - 1.0) * min(a, b), radius


def ellipse_extent(a: float, b: float, angle: float) -> tuple[float, float]:
    """Half-width and half-height of the axis-aligned box around a rotated ellipse."""
    cos, sin = math.cos(angle), math.sin(angle)
    return math.hypot(a * cos, b * sin), math.hypot(a * sin, b * cos)


def segment_distance(
    xs: FloatArray, ys: FloatArray, x0: float, y0: float, x1: float, y1: float
) -> tuple[FloatArray, FloatArray]:
    """Distance from each point to the segment (x0, y0)-(x1, y1), and the projection parameter in [0, 1]."""
    vx, vy = x1 - x0, y1 - y0
    length2 = vx * vx + vy * vy
    if length2 == 0.0:
        return np.hypot(xs - x0, ys - y0), np.zeros(np.broadcast_shapes(xs.shape, ys.shape))
    t = np.clip(((xs - x0) * vx + (ys - y0) * vy) / length2, 0.0, 1.0)
    return np.hypot(xs - (x0 + t * vx), ys - (y0 + t * vy)), t


def polyline_distance(xs: FloatArray, ys: FloatArray, points: npt.NDArray[np.float64]) -> FloatArray:
    """Distance from each point to an open polyline given as an (n, 2) array of (x, y)."""
    best: FloatArray | None = None
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        distance, _ = segment_distance(xs, ys, float(x0), float(y0), float(x1), float(y1))
        best = distance if best is None else np.minimum(best, distance)
    if best is None:
        raise ValueError("a polyline needs at least two points")
    return best


def polygon_distance(xs: FloatArray, ys: FloatArray, points: npt.NDArray[np.float64]) -> FloatArray:
    """Signed distance to a simple closed polygon (n, 2): negative inside, positive outside."""
    closed = np.vstack([points, points[:1]])
    distance = polyline_distance(xs, ys, closed)
    inside = np.zeros(np.broadcast_shapes(xs.shape, ys.shape), dtype=bool)
    for (x0, y0), (x1, y1) in itertools.pairwise(closed):
        if y0 == y1:
            continue
        crosses = (ys > min(y0, y1)) & (ys <= max(y0, y1))
        x_cross = x0 + (ys - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (xs < x_cross)
    return np.where(inside, -distance, distance)


def point_in_polygon(x: float, y: float, points: npt.NDArray[np.float64]) -> bool:
    """Whether (x, y) lies inside the closed polygon (n, 2)."""
    value = polygon_distance(np.array([[x]]), np.array([[y]]), points)
    return bool(value[0, 0] < 0.0)


def points_bounds(points: npt.NDArray[np.float64], margin: float = 0.0) -> Box:
    """The box around (n, 2) points, grown by ``margin`` on every side."""
    return Box(
        float(points[:, 0].min()) - margin,
        float(points[:, 1].min()) - margin,
        float(points[:, 0].max()) + margin,
        float(points[:, 1].max()) + margin,
    )


def mask_bounds(mask: npt.NDArray[np.bool_], window: Window, grid: Grid) -> Box | None:
    """The source-pixel box covered by the ``True`` output pixels of ``mask`` (a window's shape)."""
    rows = np.flatnonzero(mask.any(axis=1))
    columns = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    r0 = window.rows.start + int(rows[0])
    r1 = window.rows.start + int(rows[-1]) + 1
    c0 = window.columns.start + int(columns[0])
    c1 = window.columns.start + int(columns[-1]) + 1
    return Box(c0 * grid.sx, r0 * grid.sy, c1 * grid.sx, r1 * grid.sy)


def smooth_curve(control: npt.NDArray[np.float64], samples: int) -> npt.NDArray[np.float64]:
    """A Catmull-Rom spline through (n, 2) control points, sampled at ``samples`` points."""
    if len(control) < 2:
        raise ValueError("a curve needs at least two control points")
    padded = np.vstack([2 * control[0] - control[1], control, 2 * control[-1] - control[-2]])
    segments = len(control) - 1
    t_all = np.linspace(0.0, segments, samples)
    index = np.minimum(t_all.astype(int), segments - 1)
    t = (t_all - index)[:, None]
    p0, p1, p2, p3 = padded[index], padded[index + 1], padded[index + 2], padded[index + 3]
    curve: npt.NDArray[np.float64] = 0.5 * (
        2 * p1 + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2 + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3
    )
    return curve


def interpolated(field: Callable[[FloatArray, FloatArray], FloatArray], window: Window, step: float) -> FloatArray:
    """``field`` on the window, evaluated on a lattice about ``step`` source pixels apart and
    interpolated bilinearly in between (exactly ``field`` when the window is already that coarse).

    Distance fields are 1-Lipschitz and nearly linear away from corners, so this keeps edges
    where they are while sparing most of the work at native resolution.
    """
    xs, ys = window.xs[0], window.ys[:, 0]
    kx = max(1, int(step / (xs[1] - xs[0]))) if len(xs) > 1 else 1
    ky = max(1, int(step / (ys[1] - ys[0]))) if len(ys) > 1 else 1
    if kx == 1 and ky == 1:
        return field(window.xs, window.ys)
    ix = np.unique(np.append(np.arange(0, len(xs), kx), len(xs) - 1))
    iy = np.unique(np.append(np.arange(0, len(ys), ky), len(ys) - 1))
    coarse = field(xs[ix][None, :], ys[iy][:, None])
    return _bilinear(coarse, xs[ix], ys[iy], xs, ys)


def _bilinear(coarse: FloatArray, cx: FloatArray, cy: FloatArray, xs: FloatArray, ys: FloatArray) -> FloatArray:
    def weights(lattice: FloatArray, points: FloatArray) -> tuple[npt.NDArray[np.intp], FloatArray]:
        if len(lattice) == 1:
            return np.zeros(len(points), dtype=np.intp), np.zeros(len(points))
        index = np.clip(np.searchsorted(lattice, points, side="right") - 1, 0, len(lattice) - 2)
        t = (points - lattice[index]) / (lattice[index + 1] - lattice[index])
        return index, t

    jx, tx = weights(cx, xs)
    jy, ty = weights(cy, ys)
    nx = np.minimum(jx + 1, len(cx) - 1)
    ny = np.minimum(jy + 1, len(cy) - 1)
    along_x = coarse[:, jx] * (1.0 - tx) + coarse[:, nx] * tx
    result: FloatArray = along_x[jy] * (1.0 - ty)[:, None] + along_x[ny] * ty[:, None]
    return result
