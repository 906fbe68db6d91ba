"""Procedural chest-radiograph phantoms with ground truth, a dictated report and a scanpath.

``generate_phantom(seed, index)`` is deterministic: phantom ``index`` of a data set made with
``seed`` is always the same, whatever else is generated, because each phantom draws from its
own ``numpy.random.Generator`` seeded with ``(seed, index)``.  Generating a phantom builds its
geometry, report and reading only; pixels are made on demand by :meth:`Phantom.render` at any
size, with the ground truth always in source (native) pixels.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

import numpy as np
import numpy.typing as npt

from inference.demo.anatomy import ENLARGED_CTR, NORMAL_CTR, SIDES, Anatomy, Side, sample_anatomy
from inference.demo.findings import (
    FINDING_KINDS,
    Cardiomegaly,
    Finding,
    sample_central_line,
    sample_consolidation,
    sample_effusions,
    sample_endotracheal_tube,
    sample_lesion,
    sample_pneumothorax,
)
from inference.demo.raster import Grid
from inference.demo.regions import ground_truth_box
from inference.demo.render import Appearance, render
from inference.demo.reports import REPORT_STYLES, ReportSentence, report_text, write_report
from inference.demo.scanpath import Reading, simulate_reading
from inference.results import Box

#: How often each kind of finding occurs by default.  About one phantom in six is normal.
DEFAULT_PROBABILITIES: Mapping[str, float] = MappingProxyType(
    {
        "nodule": 0.18,
        "mass": 0.07,
        "pleural_effusion": 0.25,
        "cardiomegaly": 0.25,
        "pneumothorax": 0.15,
        "consolidation": 0.2,
        "endotracheal_tube": 0.18,
        "central_venous_catheter": 0.22,
    }
)

#: Modality and photometric interpretation, cycled by phantom index so every combination occurs.
ACQUISITION_CYCLE: tuple[tuple[Literal["CR", "DX"], Literal["MONOCHROME1", "MONOCHROME2"]], ...] = (
    ("CR", "MONOCHROME1"),
    ("DX", "MONOCHROME2"),
    ("CR", "MONOCHROME2"),
    ("DX", "MONOCHROME1"),
)


@dataclass(frozen=True)
class PhantomConfig:
    """What kind of phantoms to make.

    ``rows`` is the range of native image heights; ``aspect`` the range of width / height;
    ``field_of_view_mm`` the range of the detector's horizontal extent (sets the pixel spacing).
    ``probabilities`` gives each finding kind's frequency; kinds in ``force`` always occur.
    ``report_style`` is how the dictated report is worded (``REPORT_STYLES``).
    """

    rows: tuple[int, int] = (2000, 2500)
    aspect: tuple[float, float] = (0.82, 1.0)
    field_of_view_mm: tuple[float, float] = (350.0, 430.0)
    probabilities: Mapping[str, float] = field(default_factory=lambda: DEFAULT_PROBABILITIES)
    force: frozenset[str] = frozenset()
    report_style: str = "varied"

    def __post_init__(self) -> None:
        if self.report_style not in REPORT_STYLES:
            raise ValueError(
                f'Argument "report_style" must be one of {", ".join(REPORT_STYLES)}, got {self.report_style!r}'
            )
        if not (64 <= self.rows[0] <= self.rows[1]):
            raise ValueError(f'Argument "rows" must be an increasing range from at least 64, got {self.rows}')
        unknown = (set(self.probabilities) | set(self.force)) - set(FINDING_KINDS)
        if unknown:
            raise ValueError(f"unknown finding kinds {sorted(unknown)}; known: {', '.join(FINDING_KINDS)}")
        if not all(0.0 <= p <= 1.0 for p in self.probabilities.values()):
            raise ValueError('Argument "probabilities" must hold values in [0, 1]')
        if {"nodule", "mass"} <= self.force:
            raise ValueError("a phantom has at most one lung lesion: force nodule or mass, not both")

    @classmethod
    def only(cls, *kinds: str, rows: tuple[int, int] = (2000, 2500), report_style: str = "varied") -> PhantomConfig:
        """Phantoms that have exactly ``kinds`` (none: normal phantoms)."""
        probabilities = dict.fromkeys(FINDING_KINDS, 0.0)
        return cls(rows=rows, probabilities=probabilities, force=frozenset(kinds), report_style=report_style)


@dataclass(frozen=True, slots=True)
class Acquisition:
    """How the phantom is written as DICOM."""

    modality: Literal["CR", "DX"]
    photometric: Literal["MONOCHROME1", "MONOCHROME2"]
    bits_stored: int
    view_position: Literal["PA", "AP"]


@dataclass(frozen=True)
class Phantom:
    """One synthetic chest radiograph and everything known about it."""

    seed: int
    index: int
    anatomy: Anatomy
    findings: tuple[Finding, ...]
    boxes: tuple[Box, ...]  # ground truth of each finding, source pixels
    sentences: tuple[ReportSentence, ...]
    reading: Reading
    appearance: Appearance
    acquisition: Acquisition

    @property
    def rows(self) -> int:
        return self.anatomy.rows

    @property
    def columns(self) -> int:
        return self.anatomy.columns

    @property
    def identifier(self) -> str:
        """A name unique within the data sets of one seed: ``<seed>-<index>``."""
        return f"{self.seed}-{self.index:06d}"

    @property
    def report(self) -> str:
        return report_text(self.sentences)

    def render(self, max_side: int | None = None) -> npt.NDArray[np.float32]:
        """The image, float32 in [0, 1] (bright = dense), with the longer side at most ``max_side``."""
        return render(self.anatomy, self.findings, self.appearance, Grid.fitting(self.rows, self.columns, max_side))

    def without_findings(self) -> Phantom:
        """The same patient and acquisition with no findings drawn (for comparisons in tests)."""
        return dataclasses.replace(self, findings=(), boxes=())


def _choose_kinds(rng: np.random.Generator, config: PhantomConfig) -> set[str]:
    kinds = {
        kind for kind in FINDING_KINDS if kind in config.force or rng.random() < config.probabilities.get(kind, 0.0)
    }
    if {"nodule", "mass"} <= kinds:
        kinds.discard(
            "mass" if "nodule" in config.force or ("mass" not in config.force and rng.random() < 0.5) else "nodule"
        )
    return kinds


def generate_phantom(seed: int, index: int, config: PhantomConfig | None = None) -> Phantom:
    """Phantom ``index`` of the data set made with ``seed``."""
    config = config or PhantomConfig()
    rng = np.random.default_rng([seed, index])
    rows = int(rng.integers(config.rows[0], config.rows[1] + 1))
    columns = round(rows * rng.uniform(*config.aspect))
    pixel_spacing = rng.uniform(*config.field_of_view_mm) / columns
    kinds = _choose_kinds(rng, config)
    ratio = rng.uniform(*(ENLARGED_CTR if "cardiomegaly" in kinds else NORMAL_CTR))
    anatomy = sample_anatomy(rng, rows, columns, pixel_spacing, ratio, body_size=float(rng.beta(2.0, 2.0)))

    findings: list[Finding] = []
    for kind in ("nodule", "mass"):
        if kind in kinds:
            findings.append(sample_lesion(rng, anatomy, kind))
    effusion_sides: list[Side] = []
    if "pleural_effusion" in kinds:
        effusions = sample_effusions(rng, anatomy)
        findings += effusions
        effusion_sides = [e.side for e in effusions]
    if "cardiomegaly" in kinds:
        findings.append(Cardiomegaly(ratio))
    if "pneumothorax" in kinds and len(effusion_sides) < len(SIDES):
        findings.append(sample_pneumothorax(rng, anatomy, avoid=effusion_sides[0] if effusion_sides else None))
    if "consolidation" in kinds:
        findings.append(sample_consolidation(rng, anatomy))
    if "endotracheal_tube" in kinds:
        findings.append(sample_endotracheal_tube(rng, anatomy))
    if "central_venous_catheter" in kinds:
        findings.append(sample_central_line(rng, anatomy))

    boxes = tuple(ground_truth_box(anatomy, finding) for finding in findings)
    sentences = write_report(rng, anatomy, tuple(findings), boxes, config.report_style)
    reading = simulate_reading(rng, anatomy, sentences)
    appearance = Appearance(
        noise=float(rng.uniform(0.004, 0.014)),
        texture=float(rng.uniform(0.008, 0.022)),
        gamma=float(rng.uniform(0.85, 1.2)),
        seed=int(rng.integers(2**31)),
    )
    has_device = "endotracheal_tube" in kinds or "central_venous_catheter" in kinds
    modality, photometric = ACQUISITION_CYCLE[index % len(ACQUISITION_CYCLE)]
    acquisition = Acquisition(
        modality=modality,
        photometric=photometric,
        bits_stored=int(rng.choice([12, 14, 15, 16])),
        view_position="AP" if rng.random() < (0.7 if has_device else 0.2) else "PA",
    )
    return Phantom(seed, index, anatomy, tuple(findings), boxes, sentences, reading, appearance, acquisition)


def generate_phantoms(seed: int, count: int, config: PhantomConfig | None = None, start: int = 0) -> Iterator[Phantom]:
    """Phantoms ``start`` .. ``start + count - 1`` of the data set made with ``seed``."""
    for index in range(start, start + count):
        yield generate_phantom(seed, index, config)
