"""Where each anatomical structure and each finding lies: coverage on a raster window, and boxes.

The same coverage functions draw the phantom (:mod:`inference.demo.render`) and give the
ground-truth boxes (:func:`ground_truth_box`), so a box can never disagree with the pixels.
Ground truth is measured on a fixed grid of :data:`GROUND_TRUTH_SIDE` samples along the
image's longer side, whatever resolution the phantom is later rendered at.
"""

from __future__ import annotations

import numpy as np

from inference.demo.anatomy import Anatomy, Side
from inference.demo.findings import (
    Cardiomegaly,
    Consolidation,
    Device,
    Effusion,
    Finding,
    Lesion,
    Pneumothorax,
)
from inference.demo.raster import (
    FloatArray,
    Grid,
    Window,
    coverage,
    ellipse_distance,
    interpolated,
    mask_bounds,
    points_bounds,
    polygon_distance,
    polyline_distance,
)
from inference.results import Box

#: Samples along the longer image side used to measure ground-truth boxes.
GROUND_TRUTH_SIDE = 512


#: Lattice spacing (source pixels) of the distance fields that are interpolated in between.
DISTANCE_STEP = 10.0


def lung_distance(anatomy: Anatomy, side: Side, window: Window) -> FloatArray:
    """Signed distance (source pixels) to a lung's outline, negative inside."""
    polygon = anatomy.lung_polygon(side)
    return interpolated(lambda xs, ys: polygon_distance(xs, ys, polygon), window, DISTANCE_STEP)


def lung_coverage(anatomy: Anatomy, side: Side, window: Window, softness: float) -> tuple[FloatArray, FloatArray]:
    """Coverage of a lung (without the heart's overlap) and its signed distance, on a window."""
    distance = lung_distance(anatomy, side, window)
    return coverage(distance, softness) * (1.0 - heart_coverage(anatomy, window, softness)), distance


def heart_coverage(anatomy: Anatomy, window: Window, softness: float) -> FloatArray:
    heart = anatomy.heart
    distance, _ = ellipse_distance(window.xs, window.ys, heart.cx, heart.cy, heart.a, heart.b, heart.angle)
    return coverage(distance, softness)


def lesion_shape(lesion: Lesion, window: Window, softness: float) -> tuple[FloatArray, FloatArray]:
    """Coverage of a nodule or mass, and its spherical thickness profile (1 at the centre)."""
    dx, dy = window.xs - lesion.cx, window.ys - lesion.cy
    radius = np.hypot(dx, dy)
    theta = np.arctan2(dy, dx)
    edge = lesion.radius * (1.0 + lesion.lobulation * np.sin(3.0 * theta + lesion.phase))
    profile = np.sqrt(np.clip(1.0 - (radius / edge) ** 2, 0.0, 1.0))
    return coverage(radius - edge, softness), profile


def effusion_fluid(
    anatomy: Anatomy, effusion: Effusion, window: Window, softness: float, in_lung: bool = True
) -> FloatArray:
    """Fraction of each pixel's lung filled by pleural fluid; with ``in_lung`` False, not clipped to the lung."""
    side = effusion.side
    index = 0 if side == "right" else 1
    sign = -1.0 if side == "right" else 1.0
    half_width = anatomy.lung_half_width[index]
    inner = 0.25 * half_width
    u = sign * (window.xs - anatomy.midline)
    lateral = np.clip((u - inner) / (half_width - inner), 0.0, 1.0)
    surface = anatomy.costophrenic_y[index] - effusion.height * (0.45 + 0.55 * lateral**2)
    fluid = coverage(surface - window.ys, max(softness, 0.012 * anatomy.rows))
    if not in_lung:
        return fluid
    lung, _ = lung_coverage(anatomy, side, window, softness)
    return np.asarray(fluid * lung)


def pneumothorax_air(
    anatomy: Anatomy, pneumothorax: Pneumothorax, window: Window, softness: float
) -> tuple[FloatArray, FloatArray]:
    """Pleural air coverage (no lung markings), and the visceral pleural line's intensity."""
    side = pneumothorax.side
    in_lung = coverage(lung_distance(anatomy, side, window), softness)
    lateral = anatomy.lateral_border(side)
    border = interpolated(lambda xs, ys: polyline_distance(xs, ys, lateral), window, DISTANCE_STEP)
    span = pneumothorax.bottom_y - anatomy.apex_y
    taper = np.clip((pneumothorax.bottom_y - window.ys) / (0.35 * span), 0.0, 1.0)
    depth = pneumothorax.depth * np.sqrt(taper)
    air = coverage(border - depth, softness) * in_lung * (taper > 0.0)
    line_width = max(softness, anatomy.mm(1.2))
    line = np.clip(1.0 - np.abs(border - depth) / line_width, 0.0, 1.0) * in_lung * (taper > 0.02)
    return air, line


def consolidation_opacity(
    anatomy: Anatomy, consolidation: Consolidation, window: Window, softness: float, in_lung: bool = True
) -> FloatArray:
    """Airspace opacity in [0, 1] of a consolidation; clipped to its lung unless ``in_lung`` is False."""
    field = np.zeros(np.broadcast_shapes(window.xs.shape, window.ys.shape))
    for x, y, sigma in consolidation.blobs:
        field += np.exp(-((window.xs - x) ** 2 + (window.ys - y) ** 2) / (2.0 * sigma * sigma))
    opacity = np.clip((field - 0.5) / 0.4, 0.0, 1.0)
    if not in_lung:
        return opacity
    lung, _ = lung_coverage(anatomy, consolidation.side, window, softness)
    return np.asarray(opacity * lung)


def device_profile(device: Device, window: Window, softness: float) -> FloatArray:
    """Radiopacity profile of a tube (bright walls) or line (solid) across its centreline."""
    distance = polyline_distance(window.xs, window.ys, device.polyline())
    radius = max(device.radius, 0.5 * softness)
    solid = np.sqrt(np.clip(1.0 - (distance / radius) ** 2, 0.0, 1.0))
    if device.kind != "endotracheal_tube":
        return np.asarray(np.maximum(solid, coverage(distance - radius, softness) * 0.5))
    inner = 0.8 * radius
    hollow = solid - np.sqrt(np.clip(1.0 - (distance / inner) ** 2, 0.0, 1.0)) * 0.8
    return np.asarray(np.maximum(hollow, coverage(np.abs(distance - 0.9 * radius) - 0.1 * radius, softness) * 0.5))


def finding_bounds(anatomy: Anatomy, finding: Finding) -> Box:
    """A box (source pixels) outside which the finding has no effect."""
    if isinstance(finding, Lesion):
        reach = finding.radius * (1.0 + finding.lobulation) + 2.0
        return Box(finding.cx - reach, finding.cy - reach, finding.cx + reach, finding.cy + reach)
    if isinstance(finding, Effusion | Pneumothorax):
        return anatomy.lung_box(finding.side)
    if isinstance(finding, Consolidation):
        reach = max(sigma for _, _, sigma in finding.blobs) * 3.0
        xs = [x for x, _, _ in finding.blobs]
        ys = [y for _, y, _ in finding.blobs]
        return Box(min(xs) - reach, min(ys) - reach, max(xs) + reach, max(ys) + reach)
    if isinstance(finding, Cardiomegaly):
        return anatomy.heart_box()
    return points_bounds(finding.polyline(), margin=finding.radius + 2.0)


def finding_coverage(anatomy: Anatomy, finding: Finding, window: Window, softness: float) -> FloatArray:
    """Coverage in [0, 1] of the finding's region (what its ground-truth box encloses)."""
    if isinstance(finding, Lesion):
        return lesion_shape(finding, window, softness)[0]
    if isinstance(finding, Effusion):
        return effusion_fluid(anatomy, finding, window, softness)
    if isinstance(finding, Pneumothorax):
        return pneumothorax_air(anatomy, finding, window, softness)[0]
    if isinstance(finding, Consolidation):
        return consolidation_opacity(anatomy, finding, window, softness)
    if isinstance(finding, Cardiomegaly):
        return heart_coverage(anatomy, window, softness)
    distance = polyline_distance(window.xs, window.ys, finding.polyline())
    return coverage(distance - finding.radius, softness)


def ground_truth_box(anatomy: Anatomy, finding: Finding) -> Box:
    """The finding's ground-truth region in source pixels, clipped to the image."""
    if isinstance(finding, Cardiomegaly):
        return anatomy.heart_box().clipped(anatomy.rows, anatomy.columns)
    if isinstance(finding, Device):
        return finding_bounds(anatomy, finding).clipped(anatomy.rows, anatomy.columns)
    grid = Grid.fitting(anatomy.rows, anatomy.columns, GROUND_TRUTH_SIDE)
    bounds = finding_bounds(anatomy, finding)
    window = grid.window(bounds)
    box = None
    if window is not None:
        box = mask_bounds(finding_coverage(anatomy, finding, window, 1.0) >= 0.5, window, grid)
    if box is None:  # smaller than one ground-truth sample: fall back to its analytic extent
        box = bounds
    return box.clipped(anatomy.rows, anatomy.columns)


def union(boxes: list[Box]) -> Box:
    """The smallest box containing every box in ``boxes``."""
    if not boxes:
        raise ValueError("union of no boxes")
    return Box(min(b.x0 for b in boxes), min(b.y0 for b in boxes), max(b.x1 for b in boxes), max(b.y1 for b in boxes))
