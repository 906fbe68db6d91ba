"""Rasterise a phantom: attenuation from anatomy and findings, then a display image with noise.

The image is built as an attenuation map ``D`` (arbitrary units: 0 is air outside the patient,
soft tissue about ``body_density``) by adding each structure over the output pixels it touches.
Air in the lungs subtracts; fluid, consolidation and lesions replace or add to it; bones and
devices add.  The display value is ``(D / D_ref) ** gamma`` in [0, 1] (bright = dense, as
MONOCHROME2 shows it), plus two kinds of noise:

- a smooth anatomical texture defined in source pixels (the same at every resolution), and
- white quantum noise whose standard deviation scales with the output pixel's area, so a
  low-resolution render is as noisy as a downsampled native one, not more.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from inference.demo.anatomy import SIDES, Anatomy, side_sign
from inference.demo.findings import Consolidation, Device, Effusion, Finding, Lesion, Pneumothorax
from inference.demo.raster import (
    FloatArray,
    Grid,
    Window,
    coverage,
    ellipse_distance,
    ellipse_extent,
    polyline_distance,
)
from inference.demo.regions import (
    consolidation_opacity,
    device_profile,
    effusion_fluid,
    finding_bounds,
    heart_coverage,
    lesion_shape,
    lung_coverage,
    pneumothorax_air,
)
from inference.results import Box

#: The output size at which ``Appearance.noise`` is the quantum noise's standard deviation.
NOISE_REFERENCE_SIDE = 1024


@dataclass(frozen=True, slots=True)
class Appearance:
    """How the acquisition looks: noise, contrast curve and the seed of the random textures."""

    noise: float  # quantum noise standard deviation at NOISE_REFERENCE_SIDE, display units
    texture: float  # amplitude of the smooth anatomical texture, display units
    gamma: float  # display contrast curve exponent
    seed: int


def render(
    anatomy: Anatomy, findings: tuple[Finding, ...], appearance: Appearance, grid: Grid
) -> npt.NDArray[np.float32]:
    """The display image (``grid.height`` x ``grid.width``, float32 in [0, 1], bright = dense)."""
    density = attenuation(anatomy, findings, grid)
    reference = anatomy.body_density + 0.5
    display = np.clip(density / reference, 0.0, 1.0) ** appearance.gamma
    rng = np.random.default_rng([appearance.seed, grid.height, grid.width])
    display = display + appearance.texture * _smooth_field(appearance.seed, anatomy, grid.full()) * (display > 0.02)
    pixel_area = (grid.sx * grid.sy) / (max(anatomy.rows, anatomy.columns) / NOISE_REFERENCE_SIDE) ** 2
    sigma = appearance.noise * (0.6 + 0.8 * display) / math.sqrt(pixel_area)
    display = display + rng.standard_normal(display.shape) * sigma
    return np.clip(display, 0.0, 1.0).astype(np.float32)


def attenuation(anatomy: Anatomy, findings: tuple[Finding, ...], grid: Grid) -> FloatArray:
    """The attenuation map ``D`` on the grid (no noise)."""
    soft = grid.softness
    density = np.zeros((grid.height, grid.width), dtype=np.float64)
    body = anatomy.body_density
    density += _body(anatomy, grid.full(), soft)

    # Air in the lungs, less whatever fluid or consolidation has replaced; pleural air adds more.
    air_total = np.zeros_like(density)
    pleural_air = np.zeros_like(density)
    pleural_lines = np.zeros_like(density)
    lung_soft = max(soft, 0.003 * anatomy.columns)
    for side in SIDES:
        window = grid.window(anatomy.lung_box(side).clipped(anatomy.rows, anatomy.columns))
        if window is None:
            continue
        lung, distance = lung_coverage(anatomy, side, window, lung_soft)
        index = 0 if side == "right" else 1
        depth = np.clip(-distance / (0.2 * anatomy.lung_half_width[index]), 0.0, 1.0)
        height = np.clip((window.ys - anatomy.apex_y) / anatomy.lung_height(side), 0.0, 1.0)
        air = lung * (0.5 + 0.5 * depth) * (1.0 - 0.3 * height**2)
        for finding in findings:
            if isinstance(finding, Effusion) and finding.side == side:
                air = air * (1.0 - effusion_fluid(anatomy, finding, window, soft, in_lung=False) * finding.density)
            elif isinstance(finding, Consolidation) and finding.side == side:
                air = air * (
                    1.0 - consolidation_opacity(anatomy, finding, window, soft, in_lung=False) * finding.density
                )
            elif isinstance(finding, Pneumothorax) and finding.side == side:
                rim, line = pneumothorax_air(anatomy, finding, window, soft)
                pleural_air[window.rows, window.columns] += rim
                pleural_lines[window.rows, window.columns] += line
        air_total[window.rows, window.columns] += air
    density -= 0.64 * body * air_total + 0.18 * body * pleural_air

    # Pulmonary vessels: visible where there is aerated lung and no pleural air.
    vessels = np.zeros_like(density)
    for vessel in anatomy.vessels:
        _tube(vessels, grid, np.array([[vessel.x0, vessel.y0], [vessel.x1, vessel.y1]]), vessel.radius, vessel.density)
    aerated = np.clip(air_total / 0.6, 0.0, 1.0) * np.clip(1.0 - pleural_air, 0.0, 1.0)
    density += body * np.minimum(vessels, 0.12) * aerated + 0.12 * body * pleural_lines

    _add_heart_and_hila(density, anatomy, grid)
    _add_airways(density, anatomy, grid)
    _add_bones(density, anatomy, grid)

    for finding in findings:
        window = grid.window(finding_bounds(anatomy, finding))
        if window is None:
            continue
        if isinstance(finding, Lesion):
            cover, profile = lesion_shape(finding, window, soft)
            density[window.rows, window.columns] += finding.density * body * (0.35 * cover + 0.65 * profile)
        elif isinstance(finding, Device):
            strength = 0.45 if finding.kind == "endotracheal_tube" else 0.6
            density[window.rows, window.columns] += strength * device_profile(finding, window, soft)
    return density


def _body_half_width(anatomy: Anatomy, ys: FloatArray) -> FloatArray:
    """Half-width of the patient's outline at each height: neck, shoulders, trunk."""
    rows, columns = float(anatomy.rows), float(anatomy.columns)
    neck, shoulder, trunk = 0.1 * columns, 0.62 * columns, anatomy.body_half_width
    top = max(anatomy.apex_y - 0.05 * rows, 1.0)
    bottom = anatomy.apex_y + 0.09 * rows

    def smoothstep(t: FloatArray) -> FloatArray:
        t = np.clip(t, 0.0, 1.0)
        return t * t * (3.0 - 2.0 * t)

    upper = neck + (shoulder - neck) * smoothstep(ys / top)
    lower = shoulder + (trunk - shoulder) * smoothstep((ys - top) / (bottom - top))
    below = trunk * (1.0 + 0.06 * np.clip((ys - bottom) / rows, 0.0, 1.0))
    return np.where(ys < top, upper, np.where(ys < bottom, lower, below))


def _body(anatomy: Anatomy, window: Window, soft: float) -> FloatArray:
    half_width = _body_half_width(anatomy, window.ys)
    offset = np.abs(window.xs - anatomy.midline)
    thickness = np.sqrt(np.clip(1.0 - (offset / half_width) ** 2, 0.0, 1.0))
    inside = coverage(offset - half_width, max(soft, 0.004 * anatomy.columns))
    return anatomy.body_density * (0.5 + 0.5 * np.sqrt(thickness)) * inside


def _add_ellipsoid(
    density: FloatArray, grid: Grid, cx: float, cy: float, a: float, b: float, amount: float, angle: float = 0.0
) -> None:
    """Add ``amount`` times an ellipsoid's thickness profile, on the ellipse's own window only."""
    half_width, half_height = ellipse_extent(a, b, angle)
    window = grid.window(Box(cx - half_width, cy - half_height, cx + half_width, cy + half_height))
    if window is None:
        return
    _, radius = ellipse_distance(window.xs, window.ys, cx, cy, a, b, angle)
    density[window.rows, window.columns] += amount * np.sqrt(np.clip(1.0 - radius**2, 0.0, 1.0))


def _add_heart_and_hila(density: FloatArray, anatomy: Anatomy, grid: Grid) -> None:
    heart = anatomy.heart
    window = grid.window(anatomy.heart_box())
    if window is not None:
        _, radius = ellipse_distance(window.xs, window.ys, heart.cx, heart.cy, heart.a, heart.b, heart.angle)
        profile = np.sqrt(np.clip(1.0 - radius**2, 0.0, 1.0))
        cover = heart_coverage(anatomy, window, grid.softness)
        density[window.rows, window.columns] += 0.04 * anatomy.body_density * np.maximum(profile, 0.4 * cover)
    for side in SIDES:
        sign = side_sign(side)
        y = anatomy.carina_y + 0.07 * anatomy.rows
        x = anatomy.midline + sign * (anatomy.medial_margin(side, y) + 0.02 * anatomy.columns)
        _add_ellipsoid(density, grid, x, y, 0.028 * anatomy.columns, 0.05 * anatomy.rows, 0.07 * anatomy.body_density)


def _tube(density: FloatArray, grid: Grid, points: npt.NDArray[np.float64], radius: float, amount: float) -> None:
    """Add ``amount`` times a cylinder's thickness profile along a polyline."""
    reach = radius + grid.softness
    box = Box(
        float(points[:, 0].min()) - reach,
        float(points[:, 1].min()) - reach,
        float(points[:, 0].max()) + reach,
        float(points[:, 1].max()) + reach,
    )
    window = grid.window(box)
    if window is None:
        return
    distance = polyline_distance(window.xs, window.ys, points)
    effective = max(radius, 0.5 * grid.softness)
    profile = np.sqrt(np.clip(1.0 - (distance / effective) ** 2, 0.0, 1.0)) * (radius / effective)
    density[window.rows, window.columns] += amount * profile


def _add_airways(density: FloatArray, anatomy: Anatomy, grid: Grid) -> None:
    body = anatomy.body_density
    tx, carina = anatomy.trachea_x, anatomy.carina_y
    trachea = np.array([[tx, -0.02 * anatomy.rows], [tx, carina]])
    _tube(density, grid, trachea, anatomy.trachea_half_width, -0.42 * body)
    for side, angle, length in (("right", 0.45, 0.05), ("left", 0.8, 0.07)):
        sign = side_sign(side)  # type: ignore[arg-type]
        end = (tx + sign * math.sin(angle) * length * anatomy.rows, carina + math.cos(angle) * length * anatomy.rows)
        _tube(density, grid, np.array([[tx, carina], end]), 0.7 * anatomy.trachea_half_width, -0.3 * body)
    # gastric bubble under the left hemidiaphragm
    x = anatomy.midline + 0.2 * anatomy.columns
    y = anatomy.dome_y[1] + 0.055 * anatomy.rows
    _add_ellipsoid(density, grid, x, y, 0.05 * anatomy.columns, 0.028 * anatomy.rows, -0.3 * body)


def _rib(
    density: FloatArray,
    grid: Grid,
    anatomy: Anatomy,
    sign: int,
    u_range: tuple[float, float],
    curve: tuple[float, float, float, float],
    half_thickness: float,
    amount: float,
) -> None:
    """A bone whose centreline is y = c0 + c1 u + c2 u^2 + c3 u^3, u (distance from the midline) in range."""
    c0, c1, c2, c3 = curve
    u0, u1 = u_range
    us = np.linspace(u0, u1, 17)
    ys = c0 + c1 * us + c2 * us**2 + c3 * us**3
    xs = anatomy.midline + sign * us
    reach = half_thickness + grid.softness
    box = Box(float(xs.min()) - reach, float(ys.min()) - reach, float(xs.max()) + reach, float(ys.max()) + reach)
    window = grid.window(box)
    if window is None:
        return
    u = sign * (window.xs - anatomy.midline)
    centre = c0 + c1 * u + c2 * u * u + c3 * u**3
    slope = c1 + 2.0 * c2 * u + 3.0 * c3 * u * u
    distance = np.abs(window.ys - centre) / np.sqrt(1.0 + slope * slope)
    effective = max(half_thickness, 0.5 * grid.softness)
    across = np.sqrt(np.clip(1.0 - (distance / effective) ** 2, 0.0, 1.0)) * (half_thickness / effective)
    rim = max(0.25 * half_thickness, grid.softness)
    cortex = np.clip(1.0 - np.abs(distance - 0.8 * half_thickness) / rim, 0.0, 1.0) * (half_thickness / effective)
    along = coverage(np.maximum(u0 - u, u - u1), max(grid.softness, 0.012 * anatomy.columns))
    density[window.rows, window.columns] += amount * (0.6 * across + 0.4 * cortex) * along


def _add_bones(density: FloatArray, anatomy: Anatomy, grid: Grid) -> None:
    rows, columns = float(anatomy.rows), float(anatomy.columns)
    # spine: a column of vertebral bodies with darker disc spaces, faint through the mediastinum
    window = grid.full()
    half = 0.032 * columns
    offset = np.abs(window.xs - anatomy.midline)
    across = np.sqrt(np.clip(1.0 - (offset / half) ** 2, 0.0, 1.0))
    discs = 0.75 + 0.25 * np.cos(math.pi * (window.ys - anatomy.apex_y) / (0.042 * rows)) ** 2
    density += 0.13 * across * discs

    for side in SIDES:
        sign = side_sign(side)
        lateral = anatomy.lung_half_width[0 if side == "right" else 1]
        wall = anatomy.body_half_width - lateral
        # posterior ribs: up and out from the spine, arching down along the lateral chest wall
        for k in range(10):
            y0 = anatomy.apex_y - 0.03 * rows + k * anatomy.rib_spacing
            _rib(
                density,
                grid,
                anatomy,
                sign,
                (0.035 * columns, lateral + 0.7 * wall),
                (y0, -0.05 * rows / lateral, 0.0, (0.085 + 0.004 * k) * rows / lateral**3),
                (0.0085 + 0.0003 * k) * rows,
                0.15,
            )
        # anterior ribs: fainter, running down and medially from the lateral wall
        for k in range(6):
            y0 = anatomy.apex_y + 0.02 * rows + k * 1.3 * anatomy.rib_spacing
            _rib(
                density,
                grid,
                anatomy,
                sign,
                (0.35 * lateral, lateral),
                (y0 + 0.12 * rows, -0.16 * rows / lateral, 0.04 * rows / lateral**2, 0.0),
                0.0085 * rows,
                0.07,
            )
        # clavicle: from the sternal notch laterally and up, gently S-shaped
        medial, span = 0.03 * columns, 0.3 * columns
        y_medial = anatomy.clavicle_y
        c1 = -0.025 * rows / span
        c2 = 0.025 * rows / span**2
        c3 = -0.03 * rows / span**3
        c0 = y_medial - (c1 * medial + c2 * medial**2 + c3 * medial**3)
        _rib(density, grid, anatomy, sign, (medial, medial + span), (c0, c1, c2, c3), 0.011 * rows, 0.24)
        # humeral head
        x = anatomy.midline + sign * 0.47 * columns
        _add_ellipsoid(density, grid, x, anatomy.apex_y + 0.03 * rows, 0.065 * columns, 0.07 * rows, 0.25)


def _smooth_field(seed: int, anatomy: Anatomy, window: Window) -> FloatArray:
    """A smooth random field in [-1, 1] defined on a 24 x 24 lattice over the source image."""
    lattice = np.random.default_rng([seed, 7]).uniform(-1.0, 1.0, (25, 25))
    gx = np.clip(window.xs[0] / anatomy.columns * 24.0, 0.0, 23.999)
    gy = np.clip(window.ys[:, 0] / anatomy.rows * 24.0, 0.0, 23.999)
    ix, iy = gx.astype(int), gy.astype(int)
    fx, fy = (gx - ix)[None, :], (gy - iy)[:, None]
    top = lattice[iy][:, ix] * (1 - fx) + lattice[iy][:, ix + 1] * fx
    bottom = lattice[iy + 1][:, ix] * (1 - fx) + lattice[iy + 1][:, ix + 1] * fx
    return np.asarray(top * (1 - fy) + bottom * fy)
