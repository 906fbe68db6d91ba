"""The analysis result types: the contract between ``inference``, ``dicom_sr`` and ``gateway``.

Frozen dataclasses with no behaviour beyond small geometric helpers.

Coordinates are **source-image pixels** in the DICOM SCOORD convention: (0, 0) is the
top-left corner of the top-left pixel, x runs along the columns and y along the rows, so a
pixel (row r, column c) covers [c, c + 1) x [r, r + 1) and its centre is (c + 0.5, r + 0.5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

#: The finding vocabulary: key -> human-readable name.  The 14 CheXpert observations, the
#: lesion kinds "nodule" and "mass", the kinds of support device, and "other" for a
#: sentence that names nothing in the vocabulary.  ``dicom_sr`` maps each key to a code.
FINDING_LABELS: dict[str, str] = {
    # The 14 CheXpert observations
    "no_finding": "No finding",
    "enlarged_cardiomediastinum": "Enlarged cardiomediastinum",
    "cardiomegaly": "Cardiomegaly",
    "lung_opacity": "Lung opacity",
    "lung_lesion": "Lung lesion",
    "edema": "Edema",
    "consolidation": "Consolidation",
    "pneumonia": "Pneumonia",
    "atelectasis": "Atelectasis",
    "pneumothorax": "Pneumothorax",
    "pleural_effusion": "Pleural effusion",
    "pleural_other": "Pleural abnormality, other",
    "fracture": "Fracture",
    "support_devices": "Support device",
    # Lesion kinds
    "nodule": "Nodule",
    "mass": "Mass",
    # Kinds of support device
    "endotracheal_tube": "Endotracheal tube",
    "central_venous_catheter": "Central venous catheter",
    "enteric_tube": "Enteric tube",
    "chest_tube": "Chest tube",
    "cardiac_device": "Cardiac pacemaker or defibrillator",
    # A statement that names nothing above (e.g. "The trachea is midline.")
    "other": "Other statement",
}

#: Labels of sentences that are statements, not findings: a normal or unlabelled sentence ("The
#: trachea is midline.", "No acute cardiopulmonary process.") is neither counted nor coded as a finding.
STATEMENT_LABELS: frozenset[str] = frozenset({"no_finding", "other"})


@dataclass(frozen=True, slots=True)
class Point:
    """A point in source-image pixel space (SCOORD convention)."""

    x: float
    y: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.x) and math.isfinite(self.y)):
            raise ValueError(f"Point coordinates must be finite, got ({self.x}, {self.y})")


@dataclass(frozen=True, slots=True)
class Box:
    """An axis-aligned box in source-image pixels; ``x0 <= x1`` and ``y0 <= y1``."""

    x0: float
    y0: float
    x1: float
    y1: float

    def __post_init__(self) -> None:
        values = (self.x0, self.y0, self.x1, self.y1)
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"Box coordinates must be finite, got {values}")
        if self.x0 > self.x1 or self.y0 > self.y1:
            raise ValueError(f"Box must have x0 <= x1 and y0 <= y1, got {values}")

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def area(self) -> float:
        return self.width * self.height

    @property
    def center(self) -> Point:
        return Point((self.x0 + self.x1) / 2.0, (self.y0 + self.y1) / 2.0)

    def clipped(self, rows: int, columns: int) -> Box:
        """This box clipped to an image of ``rows`` x ``columns`` pixels."""
        return Box(
            min(max(self.x0, 0.0), float(columns)),
            min(max(self.y0, 0.0), float(rows)),
            min(max(self.x1, 0.0), float(columns)),
            min(max(self.y1, 0.0), float(rows)),
        )

    def iou(self, other: Box) -> float:
        """Intersection over union with ``other``; 0.0 when both are empty."""
        ix = max(0.0, min(self.x1, other.x1) - max(self.x0, other.x0))
        iy = max(0.0, min(self.y1, other.y1) - max(self.y0, other.y0))
        inter = ix * iy
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0

    def closed_polyline(self) -> tuple[Point, ...]:
        """The box as a closed 5-point polyline, clockwise from the top-left corner."""
        return (
            Point(self.x0, self.y0),
            Point(self.x1, self.y0),
            Point(self.x1, self.y1),
            Point(self.x0, self.y1),
            Point(self.x0, self.y0),
        )


@dataclass(frozen=True, slots=True)
class Region:
    """A box the model looked at, with the centroid it reported for it."""

    box: Box
    centroid: Point


@dataclass(frozen=True, slots=True)
class Finding:
    """One report sentence, labelled and grounded.

    ``label`` is a key of :data:`FINDING_LABELS`.  ``present`` is False for a negated
    statement ("no pleural effusion").  ``uncertain`` marks hedged statements ("possible
    consolidation"); they are reported as present and flagged.  ``observation`` is the
    overall area the model assigned to the sentence; ``clues`` are the visual clue regions,
    in the order the model produced them.
    """

    text: str
    label: str
    present: bool
    observation: Region | None
    clues: tuple[Region, ...] = ()
    uncertain: bool = False

    def __post_init__(self) -> None:
        if self.label not in FINDING_LABELS:
            raise ValueError(f'Argument "label" must be a key of FINDING_LABELS, got {self.label!r}')


@dataclass(frozen=True, slots=True)
class Fixation:
    """One step of the inspection trajectory, in reading order (``index`` starts at 1)."""

    index: int
    point: Point
    region: Region | None = None


@dataclass(frozen=True)
class ImageAnalysis:
    """What the model produced for one source image.

    ``attention`` is an optional float32 density of shape (rows, columns) in [0, 1]; it is
    excluded from equality comparison.  ``omissions`` says, in words a reader of the report
    understands, what the runtime cut or dropped from the model's output for this image (a
    report cut at a loop, an unfinished sentence, a region that did not parse); the encoder
    marks such an analysis incomplete and says why.
    """

    sop_instance_uid: str
    rows: int
    columns: int
    report: str
    findings: tuple[Finding, ...]
    trajectory: tuple[Fixation, ...]
    attention: npt.NDArray[np.float32] | None = field(default=None, compare=False, repr=False)
    omissions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.rows <= 0 or self.columns <= 0:
            raise ValueError(f"ImageAnalysis needs a positive size, got rows={self.rows}, columns={self.columns}")
        if self.attention is not None and tuple(self.attention.shape) != (self.rows, self.columns):
            raise ValueError(
                f"attention must have shape ({self.rows}, {self.columns}), got {tuple(self.attention.shape)}"
            )


@dataclass(frozen=True, slots=True)
class ModelIdentity:
    """Which model produced an analysis; recorded in every output and in job keys.

    ``demo``: demo weights, not for clinical use (the checkpoint's ``gazex.json`` says so, or it is
    the bundled ``gazex-demo``); outputs must say so where a reader sees them.
    """

    name: str
    version: str
    checkpoint_sha256: str
    backend: str
    manufacturer: str
    demo: bool = False


@dataclass(frozen=True)
class StudyAnalysis:
    """The analysis of one study: one :class:`ImageAnalysis` per analysed image."""

    study_instance_uid: str
    images: tuple[ImageAnalysis, ...]
    model: ModelIdentity
    seconds: float
