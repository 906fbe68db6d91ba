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

#: What the default chest rule asks for.
EXPECTED_SOP_CLASSES = (
    str(Comprehensive3DSRStorage),
    str(SegmentationStorage),
    str(GrayscaleSoftcopyPresentationStateStorage),
)

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class ReportedFinding:
    tracking_id: str
    finding: str
    text: str
    box: Box | None


@dataclass
class SRContent:
    """What a GazeX TID 1500 SR holds, as read back."""

    findings: list[ReportedFinding] = field(default_factory=list)
    statements: list[ReportedFinding] = field(default_factory=list)
    clue_boxes: list[tuple[str, Box]] = field(default_factory=list)
    trajectory: list[tuple[float, float]] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)
    report: str = ""
    completion_flag: str = ""
    completion_description: str = ""
    verification_flag: str = ""


def _name(item: Dataset) -> str:
    sequence = item.get("ConceptNameCodeSequence")
    return str(sequence[0].CodeMeaning) if sequence else ""


def _box(points: Sequence[float]) -> Box:
    xs, ys = points[0::2], points[1::2]
    return (min(xs), min(ys), max(xs), max(ys))


def read_sr(sr: Dataset) -> SRContent:
    content = SRContent(
        completion_flag=str(sr.get("CompletionFlag", "")),
        completion_description=str(sr.get("CompletionFlagDescription", "")),
        verification_flag=str(sr.get("VerificationFlag", "")),
    )
    for item in sr.get("ContentSequence", []):
        if _name(item) == "Imaging Measurements":
            for group in item.get("ContentSequence", []):
                _read_group(group, content)
        elif _name(item) == "Qualitative Evaluations":
            for evaluation in item.get("ContentSequence", []):
                if evaluation.ValueType == "CODE" and evaluation.ConceptCodeSequence[0].CodeMeaning == "Absent":
                    content.absent.append(_name(evaluation))
                elif evaluation.ValueType == "TEXT" and _name(evaluation) == "Findings":
                    content.report = str(evaluation.TextValue)
    return content


def _read_group(group: Dataset, content: SRContent) -> None:
    tracking = finding = text = comment = ""
    polyline: list[float] | None = None
    for item in group.get("ContentSequence", []):
        name = _name(item)
        if item.ValueType == "TEXT" and name == "Tracking Identifier":
            tracking = str(item.TextValue)
        elif item.ValueType == "CODE" and name == "Finding":
            finding = str(item.ConceptCodeSequence[0].CodeMeaning)
        elif item.ValueType == "TEXT" and name == "Finding":
            text = str(item.TextValue)
        elif item.ValueType == "TEXT" and name == "Comment":
            comment = str(item.TextValue)
        elif item.ValueType == "SCOORD" and item.GraphicType in ("POLYLINE", "POINT"):
            polyline = [float(v) for v in item.GraphicData]
    if "Inspection trajectory" in tracking and polyline is not None:  # after a viewer's prefix, if any
        content.trajectory.extend(zip(polyline[0::2], polyline[1::2], strict=True))
    elif " clue " in f" {tracking} " and polyline is not None:
        content.clue_boxes.append((tracking, _box(polyline)))
    elif tracking.startswith("S") and not finding:  # a statement: "S1: The trachea is midline."
        key = tracking.split(" ", 1)[0]
        sentence = comment.split(f"{key}: ", 1)[-1]  # after "S1: " (and a demo notice before it)
        content.statements.append(ReportedFinding(tracking, "", sentence, _box(polyline) if polyline else None))
    elif tracking:
        content.findings.append(ReportedFinding(tracking, finding, text, _box(polyline) if polyline else None))


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
