"""Helpers for the dicom_sr tests: analyses, a derived DX image, writing and validating outputs."""

from __future__ import annotations

import datetime
import io
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import DigitalXRayImageStorageForPresentation, generate_uid

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
from inference.testing import FAKE_IDENTITY, fixed_image_analysis

WHEN = datetime.datetime(2024, 5, 6, 7, 8, 9)
ToolFinder = Callable[[str], Path]


def study_analysis(
    source: Dataset, image: ImageAnalysis | None = None, model: ModelIdentity = FAKE_IDENTITY
) -> StudyAnalysis:
    """An analysis of ``source``: the FakeEngine's fixed one unless ``image`` is given."""
    if image is None:
        image = fixed_image_analysis(str(source.SOPInstanceUID), int(source.Rows), int(source.Columns))
    return StudyAnalysis(str(source.StudyInstanceUID), (image,), model, 1.0)


def region(x0: float, y0: float, x1: float, y1: float) -> Region:
    box = Box(x0, y0, x1, y1)
    return Region(box, box.center)


def empty_analysis(source: Dataset) -> ImageAnalysis:
    return ImageAnalysis(str(source.SOPInstanceUID), int(source.Rows), int(source.Columns), "", (), ())


def hedged_analysis(source: Dataset) -> ImageAnalysis:
    """One hedged present finding (private code) and one clear present finding, plus a path."""
    rows, columns = int(source.Rows), int(source.Columns)
    findings = (
        Finding(
            text="Possible consolidation in the left lower lobe.",
            label="consolidation",
            present=True,
            observation=region(1000.25, 1100.5, 1500.75, 1600.0),
            clues=(region(1100, 1200, 1300, 1400),),
            uncertain=True,
        ),
        Finding(
            text="Endotracheal tube in place.",
            label="endotracheal_tube",
            present=True,
            observation=region(850, 100, 1000, 600),
        ),
    )
    trajectory = tuple(
        Fixation(i, Point(float(x), float(y))) for i, (x, y) in enumerate([(900, 300), (1200, 1300), (1400, 1500)], 1)
    )
    return ImageAnalysis(
        str(source.SOPInstanceUID), rows, columns, " ".join(f.text for f in findings), findings, trajectory
    )


def derived_dx(cr: Dataset) -> Dataset:
    """A DX MONOCHROME2 image derived from the chest CR: inverted pixels, new class, modality and UIDs."""
    dx = Dataset()
    dx.update(cr)
    dx.file_meta = pydicom.dataset.FileMetaDataset()
    dx.file_meta.update(cr.file_meta)
    stored = cr.pixel_array
    maximum = (1 << int(cr.BitsStored)) - 1
    inverted = (maximum - stored.astype(np.int32)).astype(stored.dtype)
    dx.PixelData = inverted.tobytes()
    dx.PhotometricInterpretation = "MONOCHROME2"
    dx.SOPClassUID = DigitalXRayImageStorageForPresentation
    dx.file_meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    dx.Modality = "DX"
    dx.SOPInstanceUID = generate_uid(entropy_srcs=["gazex-test-dx", str(cr.SOPInstanceUID)])
    dx.file_meta.MediaStorageSOPInstanceUID = dx.SOPInstanceUID
    dx.SeriesInstanceUID = generate_uid(entropy_srcs=["gazex-test-dx-series", str(cr.SeriesInstanceUID)])
    dx.StudyInstanceUID = generate_uid(entropy_srcs=["gazex-test-dx-study", str(cr.StudyInstanceUID)])
    dx.WindowCenter = maximum - float(cr.WindowCenter)
    dx.WindowWidth = cr.WindowWidth
    dx.PixelSpacing = [0.2, 0.2]
    dx.ImagerPixelSpacing = [0.2, 0.2]
    dx.PresentationIntentType = "FOR PRESENTATION"
    return dx


def to_bytes(dataset: Dataset) -> bytes:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, dataset, enforce_file_format=True)
    return buffer.getvalue()


def write(dataset: Dataset, directory: Path, name: str) -> Path:
    path = directory / f"{name}.dcm"
    pydicom.dcmwrite(path, dataset, enforce_file_format=True)
    return path


def run_tool(tool: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tool), *args], capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=120, check=False
    )


def dciodvfy_errors(find_tool: ToolFinder, path: Path) -> list[str]:
    """The "Error" lines dciodvfy reports for ``path``."""
    result = run_tool(find_tool("dciodvfy"), str(path))
    output = result.stdout + result.stderr
    return [line for line in output.splitlines() if line.startswith("Error")]


def dsrdump_problems(find_tool: ToolFinder, path: Path) -> tuple[int, list[str]]:
    """dsrdump's exit status and its error/warning lines (E: / W: / F:) for ``path``."""
    result = run_tool(find_tool("dsrdump"), str(path))
    lines = (result.stdout + result.stderr).splitlines()
    return result.returncode, [line for line in lines if line[:2] in ("E:", "W:", "F:")]


def dcmpschk_report(find_tool: ToolFinder, path: Path) -> tuple[int, str]:
    result = run_tool(find_tool("dcmpschk"), str(path))
    return result.returncode, result.stdout + result.stderr


def walk(dataset: Dataset) -> Iterator[Dataset]:
    """``dataset`` and every item of every sequence in it, depth first."""
    yield dataset
    for element in dataset:
        if element.VR == "SQ":
            for item in element.value:
                yield from walk(item)


def content_items(dataset: Dataset) -> Iterator[Dataset]:
    """Every SR content item below the root, depth first."""
    for item in dataset.get("ContentSequence", []):
        yield item
        yield from content_items(item)


def concept_meaning(item: Dataset) -> str:
    return str(item.ConceptNameCodeSequence[0].CodeMeaning)


#: The viewer prefix of the trajectory's Tracking Identifier (dicom_sr.sr.OHIF_OPEN_PATH_PREFIX).
OHIF_PREFIX = "Cornerstone3DTools@^0.1.0:PlanarFreehandROI:"


def tracking_groups(sr: Dataset) -> dict[str, Dataset]:
    """Measurement groups of an SR by tracking identifier, less the OHIF prefix (tested on its own)."""
    groups = {}
    for item in content_items(sr):
        if item.ValueType == "CONTAINER" and concept_meaning(item) == "Measurement Group":
            for child in item.ContentSequence:
                if child.ValueType == "TEXT" and concept_meaning(child) == "Tracking Identifier":
                    groups[str(child.TextValue).removeprefix(OHIF_PREFIX)] = item
    return groups


def child(item: Dataset, meaning: str, value_type: str | None = None) -> Dataset:
    matches = [
        c
        for c in item.ContentSequence
        if concept_meaning(c) == meaning and (value_type is None or c.ValueType == value_type)
    ]
    assert len(matches) == 1, f"expected one {meaning!r} under the item, got {len(matches)}"
    return matches[0]


def polyline_points(graphic_data: list[float]) -> list[tuple[float, float]]:
    values = [float(v) for v in graphic_data]
    return list(zip(values[0::2], values[1::2], strict=True))
