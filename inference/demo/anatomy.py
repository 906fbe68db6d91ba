"""The normal anatomy of a frontal chest radiograph phantom, as geometry in source pixels.

One :class:`Anatomy` describes one patient: body habitus, both lungs (as polygons bounded by
the apex, the lateral chest wall, the hemidiaphragm and the mediastinum), the heart (a rotated
ellipse whose width sets the cardiothoracic ratio), the trachea and main bronchi, the spine,
posterior and anterior ribs, clavicles, humeral heads, the gastric bubble and the pulmonary
vessels.  It is sampled from a numpy ``Generator``, so it is reproducible from a seed.

Sides are the patient's: on a PA or AP radiograph in the standard display the patient's right
is on the image's left, so the right lung lies at smaller x.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from inference.demo.raster import ellipse_extent, points_bounds
from inference.results import Box

Side = Literal["right", "left"]
SIDES: tuple[Side, Side] = ("right", "left")

#: Cardiothoracic ratio ranges: normal, and enlarged (cardiomegaly).
NORMAL_CTR = (0.38, 0.47)
ENLARGED_CTR = (0.56, 0.68)


def side_sign(side: Side) -> int:
    """-1 for the patient's right (image left), +1 for the patient's left (image right)."""
    return -1 if side == "right" else 1


@dataclass(frozen=True, slots=True)
class Vessel:
    """One straight pulmonary vessel segment (source pixels), with its radius and density."""

    x0: float
    y0: float
    x1: float
    y1: float
    radius: float
    density: float


@dataclass(frozen=True, slots=True)
class Heart:
    """The cardiac silhouette: an ellipse with semi-axes ``a``, ``b`` rotated by ``angle`` radians."""

    cx: float
    cy: float
    a: float
    b: float
    angle: float

    def box(self) -> Box:
        half_width, half_height = ellipse_extent(self.a, self.b, self.angle)
        return Box(self.cx - half_width, self.cy - half_height, self.cx + half_width, self.cy + half_height)


@dataclass(frozen=True)
class Anatomy:
    """One patient's chest, in source pixels of a ``rows`` x ``columns`` image."""

    rows: int
    columns: int
    pixel_spacing_mm: float
    midline: float
    body_density: float  # soft-tissue attenuation scale: larger for larger patients
    body_half_width: float  # trunk half-width at the lung bases
    apex_y: float
    carina_y: float
    lung_half_width: tuple[float, float]  # (right, left): midline to lateral lung margin
    dome_y: tuple[float, float]  # top of each hemidiaphragm
    costophrenic_y: tuple[float, float]  # lowest lateral point of each lung
    mediastinum_half_width: tuple[float, float]
    aortic_knob: float  # bulge of the left upper mediastinal border
    trachea_x: float
    trachea_half_width: float
    heart: Heart
    cardiothoracic_ratio: float
    rib_spacing: float
    clavicle_y: float
    vessels: tuple[Vessel, ...]

    # -- lungs ---------------------------------------------------------------------------

    def _index(self, side: Side) -> int:
        return 0 if side == "right" else 1

    def lung_height(self, side: Side) -> float:
        return self.costophrenic_y[self._index(side)] - self.apex_y

    def medial_margin(self, side: Side, y: float) -> float:
        """Distance from the midline to the mediastinal border of the lung at height ``y``."""
        base = self.mediastinum_half_width[self._index(side)]
        if side == "left":
            knob_y = self.carina_y - 0.03 * self.rows
            base += self.aortic_knob * math.exp(-(((y - knob_y) / (0.035 * self.rows)) ** 2))
        return base

    def lateral_margin(self, side: Side, y: float) -> float:
        """Distance from the midline to the lateral lung margin at height ``y`` (below the apex dome)."""
        index = self._index(side)
        tau = min(max((y - self.apex_y) / self.lung_height(side), 0.0), 1.0)
        return float(self.lung_half_width[index] * (1.0 - 0.55 * (1.0 - tau) ** 2.2))

    def diaphragm_y(self, side: Side, u: float) -> float:
        """Height of the hemidiaphragm at distance ``u`` from the midline."""
        index = self._index(side)
        half_width = self.lung_half_width[index]
        dome_u = 0.5 * half_width
        dome_y, cp_y = self.dome_y[index], self.costophrenic_y[index]
        if u >= dome_u:
            return float(dome_y + (cp_y - dome_y) * ((u - dome_u) / (half_width - dome_u)) ** 1.8)
        medial = self.medial_margin(side, dome_y)
        fraction = min(max((dome_u - u) / max(dome_u - medial, 1.0), 0.0), 1.0)
        return dome_y + 0.02 * self.rows * fraction**2

    def lung_polygon(self, side: Side) -> npt.NDArray[np.float64]:
        """The lung outline as an (n, 2) array of (x, y), counter-clockwise in image space."""
        sign = side_sign(side)
        index = self._index(side)
        dome_depth = 0.06 * self.rows
        top_y = self.apex_y + dome_depth
        medial_top = self.medial_margin(side, top_y)
        lateral_top = self.lateral_margin(side, top_y)
        points: list[tuple[float, float]] = []
        # apex dome, medial to lateral
        centre, half = (medial_top + lateral_top) / 2.0, (lateral_top - medial_top) / 2.0
        for theta in np.linspace(0.0, math.pi, 14):
            points.append((centre - half * math.cos(theta), top_y - dome_depth * math.sin(theta)))
        # lateral chest wall, downwards
        cp_y = self.costophrenic_y[index]
        for y in np.linspace(top_y, cp_y, 18)[1:]:
            points.append((self.lateral_margin(side, float(y)), float(y)))
        # hemidiaphragm, lateral to medial
        medial_base = self.medial_margin(side, self.dome_y[index])
        for u in np.linspace(self.lung_half_width[index], medial_base, 18)[1:]:
            points.append((float(u), self.diaphragm_y(side, float(u))))
        # mediastinal border, upwards
        base_y = points[-1][1]
        for y in np.linspace(base_y, top_y, 16)[1:-1]:
            points.append((self.medial_margin(side, float(y)), float(y)))
        array = np.array(points, dtype=np.float64)
        array[:, 0] = self.midline + sign * array[:, 0]
        return array

    def lateral_border(self, side: Side) -> npt.NDArray[np.float64]:
        """The apical and lateral part of the lung outline (where a pneumothorax collects)."""
        polygon = self.lung_polygon(side)
        return polygon[: 14 + 17]

    def lung_box(self, side: Side) -> Box:
        return points_bounds(self.lung_polygon(side))

    # -- named regions, used as gaze targets and ground truth ----------------------------

    def zone_box(self, side: Side, zone: Literal["upper", "middle", "lower"]) -> Box:
        """A third of the lung's height (upper, middle or lower zone)."""
        box = self.lung_box(side)
        third = box.height / 3.0
        start = {"upper": 0, "middle": 1, "lower": 2}[zone]
        return Box(box.x0, box.y0 + start * third, box.x1, box.y0 + (start + 1) * third)

    def apex_box(self, side: Side) -> Box:
        box = self.lung_box(side)
        return Box(box.x0, box.y0, box.x1, box.y0 + 0.25 * box.height)

    def lateral_box(self, side: Side) -> Box:
        """The outer part of the lung's upper two thirds."""
        box = self.lung_box(side)
        if side == "right":
            return Box(box.x0, box.y0, box.x0 + 0.4 * box.width, box.y0 + 0.66 * box.height)
        return Box(box.x1 - 0.4 * box.width, box.y0, box.x1, box.y0 + 0.66 * box.height)

    def costophrenic_box(self, side: Side) -> Box:
        index = self._index(side)
        sign = side_sign(side)
        half_width = self.lung_half_width[index]
        inner = self.midline + sign * 0.72 * half_width
        outer = self.midline + sign * (half_width + 0.015 * self.columns)
        cp_y = self.costophrenic_y[index]
        return Box(min(inner, outer), cp_y - 0.09 * self.rows, max(inner, outer), cp_y + 0.015 * self.rows)

    def hemidiaphragm_box(self, side: Side) -> Box:
        index = self._index(side)
        sign = side_sign(side)
        medial = self.midline + sign * self.medial_margin(side, self.dome_y[index])
        lateral = self.midline + sign * self.lung_half_width[index]
        return Box(
            min(medial, lateral),
            self.dome_y[index] - 0.03 * self.rows,
            max(medial, lateral),
            self.costophrenic_y[index] + 0.01 * self.rows,
        )

    def heart_box(self) -> Box:
        return self.heart.box()

    def trachea_box(self) -> Box:
        half = 2.0 * self.trachea_half_width
        return Box(self.trachea_x - half, self.apex_y, self.trachea_x + half, self.carina_y + 0.02 * self.rows)

    def carina_box(self) -> Box:
        half = 0.05 * self.columns
        return Box(
            self.trachea_x - half,
            self.carina_y - 0.04 * self.rows,
            self.trachea_x + half,
            self.carina_y + 0.03 * self.rows,
        )

    def mediastinum_box(self) -> Box:
        half = max(self.mediastinum_half_width) + self.aortic_knob + 0.02 * self.columns
        return Box(self.midline - half, self.apex_y, self.midline + half, self.heart_box().y0 + 0.02 * self.rows)

    def clavicle_box(self) -> Box:
        half = 0.36 * self.columns
        return Box(
            self.midline - half,
            self.clavicle_y - 0.06 * self.rows,
            self.midline + half,
            self.clavicle_y + 0.03 * self.rows,
        )

    def chest_box(self) -> Box:
        """Around both lungs and the heart: what REFLACX's chest_bounding_box.csv holds."""
        right, left, heart = self.lung_box("right"), self.lung_box("left"), self.heart_box()
        return Box(
            min(right.x0, left.x0, heart.x0),
            min(right.y0, left.y0, heart.y0),
            max(right.x1, left.x1, heart.x1),
            max(right.y1, left.y1, heart.y1),
        )

    def thoracic_width(self) -> float:
        """Lateral lung margin to lateral lung margin at the widest level."""
        return self.lung_half_width[0] + self.lung_half_width[1]

    def pixels_per_degree(self) -> int:
        """Image pixels per degree of visual angle when the whole image fills a reading monitor."""
        return max(1, round(max(self.rows, self.columns) / 45.0))

    def mm(self, millimetres: float) -> float:
        """A length in millimetres, in source pixels."""
        return millimetres / self.pixel_spacing_mm


def sample_anatomy(
    rng: np.random.Generator,
    rows: int,
    columns: int,
    pixel_spacing_mm: float,
    cardiothoracic_ratio: float,
    body_size: float,
) -> Anatomy:
    """Draw one patient's normal anatomy.

    ``body_size`` in [0, 1] runs from a small, thin patient (thorax filling less of the detector,
    little soft tissue) to a large one (wide thorax, thick soft tissue).
    """
    height, width = float(rows), float(columns)
    midline = width * rng.uniform(0.485, 0.515)
    half_width = width * (0.29 + 0.08 * body_size) * rng.uniform(0.97, 1.03)
    lung_half_width = (half_width * rng.uniform(0.97, 1.03), half_width * rng.uniform(0.97, 1.03))
    apex_y = height * rng.uniform(0.075, 0.115)
    dome_right = height * rng.uniform(0.64, 0.71)
    dome_left = dome_right + height * rng.uniform(0.012, 0.035)
    cp_drop = height * rng.uniform(0.05, 0.075)
    carina_y = apex_y + (dome_right - apex_y) * rng.uniform(0.34, 0.40)
    mediastinum = (width * rng.uniform(0.05, 0.062), width * rng.uniform(0.055, 0.068))

    # Heart: an ellipse tilted with its long axis down and to the patient's left; its
    # horizontal extent is the cardiothoracic ratio times the thoracic width.
    angle = rng.uniform(0.30, 0.55)
    ext_x, ext_y = ellipse_extent(1.0, 0.74, angle)
    target_half_width = cardiothoracic_ratio * (lung_half_width[0] + lung_half_width[1]) / 2.0
    scale = target_half_width / ext_x
    heart_bottom = dome_left + height * rng.uniform(0.0, 0.015)
    heart = Heart(
        cx=midline + 0.25 * target_half_width,
        cy=heart_bottom - ext_y * scale,
        a=scale,
        b=0.74 * scale,
        angle=angle,
    )

    anatomy = Anatomy(
        rows=rows,
        columns=columns,
        pixel_spacing_mm=pixel_spacing_mm,
        midline=midline,
        body_density=0.85 + 0.55 * body_size,
        body_half_width=half_width + width * (0.035 + 0.07 * body_size),
        apex_y=apex_y,
        carina_y=carina_y,
        lung_half_width=lung_half_width,
        dome_y=(dome_right, dome_left),
        costophrenic_y=(dome_right + cp_drop, dome_left + cp_drop * rng.uniform(0.9, 1.1)),
        mediastinum_half_width=mediastinum,
        aortic_knob=width * rng.uniform(0.012, 0.028),
        trachea_x=midline + width * rng.uniform(-0.006, 0.006),
        trachea_half_width=width * rng.uniform(0.012, 0.016),
        heart=heart,
        cardiothoracic_ratio=cardiothoracic_ratio,
        rib_spacing=(dome_right + cp_drop - apex_y) / rng.uniform(8.6, 9.6),
        clavicle_y=apex_y + height * rng.uniform(0.03, 0.06),
        vessels=(),
    )
    vessels = _sample_vessels(rng, anatomy)
    return dataclasses.replace(anatomy, vessels=vessels)


def hilum(anatomy: Anatomy, side: Side) -> tuple[float, float]:
    """The hilar point of a lung, where its vessels start."""
    sign = side_sign(side)
    y = anatomy.carina_y + 0.07 * anatomy.rows
    u = anatomy.medial_margin(side, y) + 0.035 * anatomy.columns
    return anatomy.midline + sign * u, y


def _sample_vessels(rng: np.random.Generator, anatomy: Anatomy) -> tuple[Vessel, ...]:
    """Four generations of branching, tapering vessels from each hilum towards the periphery."""
    vessels: list[Vessel] = []
    lengths = (0.09, 0.07, 0.05, 0.035)
    radii = (0.0038, 0.0027, 0.0019, 0.0013)
    densities = (0.075, 0.06, 0.045, 0.035)

    def grow(x: float, y: float, angle: float, generation: int, sign: int) -> None:
        length = anatomy.rows * lengths[generation] * rng.uniform(0.7, 1.3)
        radius = anatomy.columns * radii[generation] * rng.uniform(0.85, 1.15)
        x1 = x + sign * math.cos(angle) * length
        y1 = y + math.sin(angle) * length
        vessels.append(Vessel(x, y, x1, y1, radius, densities[generation] * rng.uniform(0.8, 1.2)))
        if generation < len(lengths) - 1:
            for turn in (-1.0, 1.0):
                if generation > 0 and rng.random() < 0.25:
                    continue
                grow(x1, y1, angle + turn * rng.uniform(0.2, 0.55), generation + 1, sign)

    for side in SIDES:
        hx, hy = hilum(anatomy, side)
        sign = side_sign(side)
        # angle 0 points laterally; negative is upwards, positive downwards
        for angle in np.linspace(-1.3, 1.25, 5) + rng.normal(0.0, 0.1, 5):
            x = hx + sign * anatomy.columns * rng.uniform(0.0, 0.02)
            y = hy + anatomy.rows * rng.uniform(-0.025, 0.025)
            grow(x, y, float(angle), 0, sign)
    return tuple(vessels)
