"""The abnormalities a phantom can carry, and how each one is drawn from a ``Generator``.

Each finding is a frozen dataclass holding its geometry in source pixels.  Its ground-truth
region is derived from the same coverage function that renders it (see
:mod:`inference.demo.regions`), so the box always matches the pixels.

| kind | ``label`` (``FINDING_LABELS``) | REFLACX (phases 2-3) label |
|---|---|---|
| nodule (<= 3 cm) | ``nodule`` | Lung nodule or mass |
| mass (> 3 cm) | ``mass`` | Lung nodule or mass |
| pleural effusion | ``pleural_effusion`` | Pleural abnormality |
| cardiomegaly | ``cardiomegaly`` | Enlarged cardiac silhouette |
| pneumothorax | ``pneumothorax`` | Pneumothorax |
| consolidation | ``consolidation`` | Consolidation |
| endotracheal tube | ``endotracheal_tube`` | Support devices |
| central venous catheter | ``central_venous_catheter`` | Support devices |
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from inference.demo.anatomy import SIDES, Anatomy, Side, side_sign
from inference.demo.raster import ellipse_distance, polygon_distance, smooth_curve

Zone = Literal["upper", "middle", "lower"]
Size = Literal["small", "moderate", "large"]

#: Every kind of finding, in the order the generator considers them.
FINDING_KINDS: tuple[str, ...] = (
    "nodule",
    "mass",
    "pleural_effusion",
    "cardiomegaly",
    "pneumothorax",
    "consolidation",
    "endotracheal_tube",
    "central_venous_catheter",
)

#: The REFLACX label (phases 2 and 3) of each kind of finding.
REFLACX_LABELS: dict[str, str] = {
    "nodule": "Lung nodule or mass",
    "mass": "Lung nodule or mass",
    "pleural_effusion": "Pleural abnormality",
    "cardiomegaly": "Enlarged cardiac silhouette",
    "pneumothorax": "Pneumothorax",
    "consolidation": "Consolidation",
    "endotracheal_tube": "Support devices",
    "central_venous_catheter": "Support devices",
}


@dataclass(frozen=True, slots=True)
class Lesion:
    """A pulmonary nodule (diameter <= 30 mm) or mass (> 30 mm): a lobulated sphere."""

    kind: Literal["nodule", "mass"]
    side: Side
    zone: Zone
    cx: float
    cy: float
    radius: float
    density: float
    lobulation: float  # relative amplitude of the contour's 3-lobed wobble
    phase: float

    @property
    def label(self) -> str:
        return self.kind

    def diameter_mm(self, anatomy: Anatomy) -> float:
        return 2.0 * self.radius * anatomy.pixel_spacing_mm


@dataclass(frozen=True, slots=True)
class Effusion:
    """Pleural fluid layering in one costophrenic angle, with a meniscus rising laterally."""

    side: Side
    size: Size
    height: float  # fluid height at the lateral chest wall above the costophrenic angle
    density: float
    label: str = "pleural_effusion"


@dataclass(frozen=True, slots=True)
class Pneumothorax:
    """Pleural air along the apex and lateral chest wall: no lung markings, a visceral pleural line."""

    side: Side
    size: Size
    depth: float  # pleural air rim thickness at its widest
    bottom_y: float  # where the rim tapers to nothing along the lateral wall
    label: str = "pneumothorax"


@dataclass(frozen=True, slots=True)
class Consolidation:
    """Patchy airspace opacity in one lobe: a cluster of soft blobs clipped to the lung."""

    side: Side
    zone: Zone
    blobs: tuple[tuple[float, float, float], ...]  # (x, y, sigma)
    density: float
    label: str = "consolidation"


@dataclass(frozen=True, slots=True)
class Cardiomegaly:
    """An enlarged cardiac silhouette; its geometry is the anatomy's heart."""

    ratio: float
    label: str = "cardiomegaly"

    @property
    def severity(self) -> str:
        if self.ratio < 0.6:
            return "mild"
        if self.ratio < 0.64:
            return "moderate"
        return "marked"


@dataclass(frozen=True, slots=True)
class Device:
    """A radiopaque tube or line, as a centreline polyline with a radius."""

    kind: Literal["endotracheal_tube", "central_venous_catheter"]
    points: tuple[tuple[float, float], ...]
    radius: float
    route: str  # "endotracheal", "right internal jugular", "left subclavian", ...
    tip_description: str  # e.g. "4 cm above the carina", "in the superior vena cava"

    @property
    def label(self) -> str:
        return self.kind

    def polyline(self) -> npt.NDArray[np.float64]:
        return np.array(self.points, dtype=np.float64)

    @property
    def tip(self) -> tuple[float, float]:
        return self.points[-1]


Finding = Lesion | Effusion | Pneumothorax | Consolidation | Cardiomegaly | Device


def finding_kind(finding: Finding) -> str:
    """The kind name of a finding (a key of :data:`REFLACX_LABELS`)."""
    if isinstance(finding, Lesion | Device):
        return finding.kind
    return finding.label


def zone_of(anatomy: Anatomy, side: Side, y: float) -> Zone:
    """The lobe-like zone of a height in a lung: thirds on the right, halves on the left (no middle lobe)."""
    box = anatomy.lung_box(side)
    fraction = (y - box.y0) / box.height
    if side == "left":
        return "upper" if fraction < 0.5 else "lower"
    if fraction < 1.0 / 3.0:
        return "upper"
    return "middle" if fraction < 2.0 / 3.0 else "lower"


def _zone_range(side: Side, zone: Zone) -> tuple[float, float]:
    if side == "left":
        return (0.12, 0.5) if zone == "upper" else (0.5, 0.85)
    return {"upper": (0.12, 0.33), "middle": (0.36, 0.64), "lower": (0.67, 0.85)}[zone]


def _point_in_lung(
    rng: np.random.Generator, anatomy: Anatomy, side: Side, zone: Zone, clearance: float
) -> tuple[float, float]:
    """A point in the given lung zone, ``clearance`` inside the lung and clear of the heart.

    Candidates are drawn in one batch; when none has the full clearance (a large mass in a
    small zone) the clearance is relaxed step by step rather than leaving the lung.
    """
    polygon = anatomy.lung_polygon(side)
    box = anatomy.lung_box(side)
    low, high = _zone_range(side, zone)
    heart = anatomy.heart
    xs = rng.uniform(box.x0, box.x1, 256)[None, :]
    ys = (box.y0 + box.height * rng.uniform(low, high, 256))[None, :]
    inside = -polygon_distance(xs, ys, polygon)[0]
    _, heart_radius = ellipse_distance(xs, ys, heart.cx, heart.cy, heart.a, heart.b, heart.angle)
    for relax in (1.0, 0.75, 0.5, 0.25, 0.0):
        ok = (inside >= clearance * relax) & (heart_radius[0] > 1.0 + clearance * relax / heart.b) & (inside > 0)
        if ok.any():
            first = int(np.argmax(ok))
            return float(xs[0, first]), float(ys[0, first])
    best = int(np.argmax(inside))
    return float(xs[0, best]), float(ys[0, best])


def sample_lesion(rng: np.random.Generator, anatomy: Anatomy, kind: Literal["nodule", "mass"]) -> Lesion:
    side: Side = SIDES[int(rng.integers(2))]
    zones: tuple[Zone, ...] = ("upper", "middle", "lower") if side == "right" else ("upper", "lower")
    zone = zones[int(rng.integers(len(zones)))]
    diameter = rng.uniform(8.0, 28.0) if kind == "nodule" else rng.uniform(36.0, 62.0)
    radius = anatomy.mm(diameter) / 2.0
    cx, cy = _point_in_lung(rng, anatomy, side, zone, clearance=radius * 1.2 + 0.01 * anatomy.columns)
    density = rng.uniform(0.28, 0.6) if kind == "nodule" else rng.uniform(0.45, 0.75)
    lobulation = rng.uniform(0.0, 0.06) if kind == "nodule" else rng.uniform(0.05, 0.14)
    return Lesion(
        kind, side, zone_of(anatomy, side, cy), cx, cy, radius, density, lobulation, rng.uniform(0, 2 * math.pi)
    )


def _size(rng: np.random.Generator) -> Size:
    return ("small", "moderate", "large")[int(rng.choice(3, p=[0.45, 0.4, 0.15]))]


def sample_effusions(rng: np.random.Generator, anatomy: Anatomy) -> tuple[Effusion, ...]:
    """One effusion, or two (bilateral, in 25% of cases)."""
    bilateral = rng.random() < 0.25
    sides: tuple[Side, ...] = SIDES if bilateral else (SIDES[int(rng.integers(2))],)
    size = _size(rng)
    fraction = {"small": (0.07, 0.1), "moderate": (0.14, 0.21), "large": (0.26, 0.36)}[size]
    effusions = []
    for side in sides:
        height = anatomy.lung_height(side) * rng.uniform(*fraction)
        effusions.append(Effusion(side, size, height, rng.uniform(0.9, 1.05)))
    return tuple(effusions)


def sample_pneumothorax(rng: np.random.Generator, anatomy: Anatomy, avoid: Side | None) -> Pneumothorax:
    side: Side = SIDES[int(rng.integers(2))]
    if side == avoid:
        side = "left" if avoid == "right" else "right"
    size = _size(rng)
    depth_mm = {"small": (9.0, 18.0), "moderate": (20.0, 34.0), "large": (38.0, 55.0)}[size]
    extent = {"small": (0.3, 0.45), "moderate": (0.45, 0.65), "large": (0.65, 0.85)}[size]
    return Pneumothorax(
        side,
        size,
        anatomy.mm(rng.uniform(*depth_mm)),
        anatomy.apex_y + anatomy.lung_height(side) * rng.uniform(*extent),
    )


def sample_consolidation(rng: np.random.Generator, anatomy: Anatomy) -> Consolidation:
    side: Side = SIDES[int(rng.integers(2))]
    zones: tuple[Zone, ...] = ("upper", "middle", "lower") if side == "right" else ("upper", "lower")
    zone = zones[int(rng.choice(len(zones), p=[0.25, 0.25, 0.5] if side == "right" else [0.4, 0.6]))]
    spread = anatomy.columns * rng.uniform(0.035, 0.065)
    cx, cy = _point_in_lung(rng, anatomy, side, zone, clearance=spread)
    blobs = []
    for _ in range(int(rng.integers(9, 16))):
        blobs.append(
            (
                float(cx + rng.normal(0.0, spread)),
                float(cy + rng.normal(0.0, spread * 0.8)),
                float(anatomy.columns * rng.uniform(0.012, 0.028)),
            )
        )
    return Consolidation(side, zone_of(anatomy, side, cy), tuple(blobs), rng.uniform(0.45, 0.75))


def sample_endotracheal_tube(rng: np.random.Generator, anatomy: Anatomy) -> Device:
    above_carina_cm = int(rng.integers(3, 7))
    tip_y = anatomy.carina_y - anatomy.mm(10.0 * above_carina_cm)
    x = anatomy.trachea_x
    control = np.array(
        [
            [x + anatomy.columns * rng.uniform(-0.02, 0.02), -0.02 * anatomy.rows],
            [x + anatomy.columns * rng.uniform(-0.006, 0.006), (tip_y - 0.02 * anatomy.rows) / 2.0],
            [x + anatomy.columns * rng.uniform(-0.003, 0.003), tip_y],
        ]
    )
    points = smooth_curve(control, 12)
    return Device(
        "endotracheal_tube",
        tuple((float(px), float(py)) for px, py in points),
        anatomy.mm(5.0),
        "endotracheal",
        f"{above_carina_cm} cm above the carina",
    )


def sample_central_line(rng: np.random.Generator, anatomy: Anatomy) -> Device:
    route = ("right internal jugular", "left subclavian", "right subclavian")[int(rng.choice(3, p=[0.5, 0.25, 0.25]))]
    width, height, xc = anatomy.columns, anatomy.rows, anatomy.midline
    in_svc = rng.random() < 0.5
    tip_y = anatomy.carina_y + height * (rng.uniform(0.02, 0.045) if in_svc else rng.uniform(0.055, 0.08))
    tip_x = xc - width * rng.uniform(0.032, 0.045)
    clavicle = anatomy.clavicle_y
    if route == "right internal jugular":
        control = [
            (xc - width * 0.12, -0.01 * height),
            (xc - width * 0.1, clavicle - 0.01 * height),
            (xc - width * 0.065, clavicle + 0.07 * height),
            (tip_x - width * 0.006, anatomy.carina_y - 0.03 * height),
            (tip_x, tip_y),
        ]
    else:
        sign = side_sign("left" if route == "left subclavian" else "right")
        control = [
            (xc + sign * width * 0.36, clavicle + 0.05 * height),
            (xc + sign * width * 0.22, clavicle + 0.035 * height),
            (xc + sign * width * 0.09, clavicle + 0.06 * height),
            (tip_x + (0.012 * width if sign > 0 else 0.0), anatomy.carina_y - 0.025 * height),
            (tip_x, tip_y),
        ]
    jitter = rng.normal(0.0, 0.004 * width, (len(control), 2))
    jitter[-1] = 0.0
    points = smooth_curve(np.array(control) + jitter, 28)
    tip = "in the superior vena cava" if in_svc else "at the cavoatrial junction"
    return Device(
        "central_venous_catheter",
        tuple((float(px), float(py)) for px, py in points),
        anatomy.mm(1.3),
        route,
        tip,
    )
