"""Reading results back as an archive holds them: what the SR says, and whether the objects hold up.

Used by ``gazex demo`` (its summary, overlay and validation) and by the end-to-end tests.
Everything is read from the received files, so this checks what a viewer would see, not what
the gateway meant to send.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import (
    Comprehensive3DSRStorage,
    GrayscaleSoftcopyPresentationStateStorage,
    SegmentationStorage,
)

from gateway.render.sr import Box, ReportedFinding, SRContent, read_sr

#: What the default chest rule asks for.
EXPECTED_SOP_CLASSES = (
    str(Comprehensive3DSRStorage),
    str(SegmentationStorage),
    str(GrayscaleSoftcopyPresentationStateStorage),
)

__all__ = [
    "EXPECTED_SOP_CLASSES",
    "Box",
    "ReportedFinding",
    "SRContent",
    "Validation",
    "read_sr",
    "referenced_instances",
    "validate_outputs",
]


def referenced_instances(dataset: Dataset) -> set[str]:
    """Every SOP Instance UID an output references (evidence, source images, referenced series)."""
    found: set[str] = set()

    def visit(ds: Dataset) -> None:
        for element in ds:
            if element.keyword == "ReferencedSOPInstanceUID":
                found.add(str(element.value))
            elif element.VR == "SQ":
                for item in element.value:
                    visit(item)

    for keyword in ("CurrentRequestedProcedureEvidenceSequence", "ReferencedSeriesSequence", "SourceImageSequence"):
        for item in dataset.get(keyword, []):
            visit(item)
    return found


@dataclass
class Validation:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    validator_errors: dict[str, int] = field(default_factory=dict)  # file name -> dciodvfy error lines

    @property
    def ok(self) -> bool:
        return not self.problems


def validate_outputs(
    files: Iterable[Path],
    source: Dataset,
    expected_sop_classes: Sequence[str] = EXPECTED_SOP_CLASSES,
    run_validators: bool = True,
) -> Validation:
    """Re-read each received file and check it against the source: study, references, SOP classes, validators."""
    result = Validation()
    paths = sorted(files)
    datasets = {path: pydicom.dcmread(path) for path in paths}
    classes = [str(ds.SOPClassUID) for ds in datasets.values()]
    for wanted in expected_sop_classes:
        if wanted not in classes:
            result.problems.append(f"no {pydicom.uid.UID(wanted).name} was received")
    source_uid = str(source.SOPInstanceUID)
    for path, ds in datasets.items():
        label = f"{path.name} ({pydicom.uid.UID(str(ds.SOPClassUID)).name})"
        if str(ds.StudyInstanceUID) != str(source.StudyInstanceUID):
            result.problems.append(f"{label} is not in the source's study")
        if str(ds.SeriesInstanceUID) == str(source.SeriesInstanceUID):
            result.problems.append(f"{label} is in the source's series, not a new one")
        if source_uid not in referenced_instances(ds):
            result.problems.append(f"{label} does not reference the source image {source_uid}")
        if str(ds.SOPClassUID) == str(SegmentationStorage) and (ds.Rows, ds.Columns) != (source.Rows, source.Columns):
            result.problems.append(f"{label} is {ds.Rows}x{ds.Columns}, the source {source.Rows}x{source.Columns}")
    if run_validators:
        _dciodvfy(paths, result)
        _dsrdump([p for p, ds in datasets.items() if str(ds.SOPClassUID) == str(Comprehensive3DSRStorage)], result)
    return result


def _dciodvfy(paths: Sequence[Path], result: Validation) -> None:
    tool = shutil.which("dciodvfy")
    if tool is None:
        result.notes.append("dciodvfy is not installed (Debian package dicom3tools): IOD check skipped")
        return
    for path in paths:
        run = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=120, check=False)
        errors = [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]
        result.validator_errors[path.name] = len(errors)
        for line in errors[:5]:
            result.problems.append(f"dciodvfy {path.name}: {line}")
    total = sum(result.validator_errors.values())
    result.notes.append(f"dciodvfy: {total} error(s) in {len(paths)} file(s)")


def _dsrdump(paths: Sequence[Path], result: Validation) -> None:
    tool = shutil.which("dsrdump")
    if tool is None or not paths:
        return
    for path in paths:
        run = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=120, check=False)
        bad = [line for line in (run.stdout + run.stderr).splitlines() if line.startswith(("E:", "F:"))]
        if run.returncode != 0 or bad:
            result.problems.append(f"dsrdump {path.name}: exit {run.returncode} {'; '.join(bad[:3])}")
    result.notes.append(f"dsrdump: the SR reads back as a valid structured report ({len(paths)} file(s))")
