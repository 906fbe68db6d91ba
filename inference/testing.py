"""Test doubles for code that needs an engine but must not depend on a model."""

from __future__ import annotations

import time
from collections.abc import Sequence

from pydicom.dataset import Dataset

from inference.engine import InferenceError
from inference.results import (
    Box,
    Finding,
    Fixation,
    ImageAnalysis,
    ModelIdentity,
    Point,
    Region,
    StudyAnalysis,
)

FAKE_IDENTITY = ModelIdentity(
    name="gazex-fake",
    version="0",
    checkpoint_sha256="0" * 64,
    backend="fake",
    manufacturer="GazeX Gateway project",
)


def _region(columns: int, rows: int, fx0: float, fy0: float, fx1: float, fy1: float) -> Region:
    box = Box(fx0 * columns, fy0 * rows, fx1 * columns, fy1 * rows)
    return Region(box=box, centroid=box.center)


def fixed_image_analysis(sop_instance_uid: str, rows: int, columns: int) -> ImageAnalysis:
    """A fixed, plausible analysis scaled to an image of ``rows`` x ``columns``.

    Findings: a right pleural effusion (present, two clues), a normal heart size (absent),
    and no pneumothorax (absent).  The trajectory runs through every clue centroid.
    """
    effusion_clues = (
        _region(columns, rows, 0.10, 0.62, 0.30, 0.80),
        _region(columns, rows, 0.12, 0.70, 0.35, 0.88),
    )
    heart_clues = (_region(columns, rows, 0.38, 0.45, 0.70, 0.75),)
    lung_clues = (
        _region(columns, rows, 0.10, 0.15, 0.45, 0.55),
        _region(columns, rows, 0.55, 0.15, 0.90, 0.55),
    )
    findings = (
        Finding(
            text="Small right pleural effusion.",
            label="pleural_effusion",
            present=True,
            observation=_region(columns, rows, 0.08, 0.60, 0.36, 0.90),
            clues=effusion_clues,
        ),
        Finding(
            text="The heart size is normal.",
            label="cardiomegaly",
            present=False,
            observation=_region(columns, rows, 0.36, 0.42, 0.72, 0.78),
            clues=heart_clues,
        ),
        Finding(
            text="No pneumothorax.",
            label="pneumothorax",
            present=False,
            observation=_region(columns, rows, 0.08, 0.10, 0.92, 0.60),
            clues=lung_clues,
        ),
    )
    trajectory: list[Fixation] = []
    for finding in findings:
        for clue in finding.clues:
            trajectory.append(Fixation(index=len(trajectory) + 1, point=clue.centroid, region=clue))
    return ImageAnalysis(
        sop_instance_uid=sop_instance_uid,
        rows=rows,
        columns=columns,
        report=" ".join(f.text for f in findings),
        findings=findings,
        trajectory=tuple(trajectory),
    )


class FakeEngine:
    """Returns :func:`fixed_image_analysis` for every image, without a model.

    ``fail_with`` makes :meth:`analyze` raise :class:`InferenceError`, for testing the
    gateway's handling of model errors.
    """

    def __init__(self, identity: ModelIdentity = FAKE_IDENTITY, fail_with: str | None = None) -> None:
        self._identity = identity
        self.fail_with = fail_with
        self.calls = 0

    @property
    def identity(self) -> ModelIdentity:
        return self._identity

    def analyze(self, datasets: Sequence[Dataset]) -> StudyAnalysis:
        self.calls += 1
        started = time.perf_counter()
        if self.fail_with is not None:
            raise InferenceError(self.fail_with)
        if not datasets:
            raise InferenceError("analyze() needs at least one image")
        studies = {str(ds.StudyInstanceUID) for ds in datasets}
        if len(studies) != 1:
            raise InferenceError(f"analyze() takes one study at a time, got {len(studies)}")
        images = tuple(fixed_image_analysis(str(ds.SOPInstanceUID), int(ds.Rows), int(ds.Columns)) for ds in datasets)
        return StudyAnalysis(
            study_instance_uid=studies.pop(),
            images=images,
            model=self._identity,
            seconds=time.perf_counter() - started,
        )


__all__ = ["FAKE_IDENTITY", "FakeEngine", "Point", "fixed_image_analysis"]
