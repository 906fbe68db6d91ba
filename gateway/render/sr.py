"""What a GazeX TID 1500 SR holds, read back from the object itself (boxes, trajectory, report text).

Shared by ``gazex demo``, the end-to-end tests and the web console's thumbnails.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from pydicom.dataset import Dataset

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


def read_sr(sr: Dataset, for_image: str | None = None) -> SRContent:
    """The SR's findings, statements, clue boxes, trajectory and report text.

    With ``for_image`` (a SOP Instance UID) only the regions drawn on that image are kept, so a
    study of several images gets each image's own boxes.
    """
    content = SRContent(
        completion_flag=str(sr.get("CompletionFlag", "")),
        completion_description=str(sr.get("CompletionFlagDescription", "")),
        verification_flag=str(sr.get("VerificationFlag", "")),
    )
    for item in sr.get("ContentSequence", []):
        if _name(item) == "Imaging Measurements":
            for group in item.get("ContentSequence", []):
                _read_group(group, content, for_image)
        elif _name(item) == "Qualitative Evaluations":
            for evaluation in item.get("ContentSequence", []):
                if evaluation.ValueType == "CODE" and evaluation.ConceptCodeSequence[0].CodeMeaning == "Absent":
                    content.absent.append(_name(evaluation))
                elif evaluation.ValueType == "TEXT" and _name(evaluation) == "Findings":
                    content.report = str(evaluation.TextValue)
    return content


def _region_image(scoord: Dataset) -> str | None:
    """The SOP Instance UID a SCOORD is drawn on (its SELECTED FROM image), if it says."""
    for item in scoord.get("ContentSequence", []):
        if item.ValueType == "IMAGE" and item.get("ReferencedSOPSequence"):
            return str(item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
    return None


def _read_group(group: Dataset, content: SRContent, for_image: str | None = None) -> None:
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
            image = _region_image(item)
            if for_image is not None and image is not None and image != for_image:
                return  # drawn on another image of the study
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
