"""Analyses as plain JSON-ready dictionaries (``gazex analyze --json``, the HTTP API)."""

from __future__ import annotations

from typing import Any

from inference.results import Box, Finding, Fixation, ImageAnalysis, ModelIdentity, Point, Region, StudyAnalysis


def _point(point: Point) -> list[float]:
    return [point.x, point.y]


def _box(box: Box) -> list[float]:
    return [box.x0, box.y0, box.x1, box.y1]


def region_to_dict(region: Region | None) -> dict[str, Any] | None:
    if region is None:
        return None
    return {"box": _box(region.box), "centroid": _point(region.centroid)}


def finding_to_dict(finding: Finding) -> dict[str, Any]:
    return {
        "text": finding.text,
        "label": finding.label,
        "present": finding.present,
        "uncertain": finding.uncertain,
        "observation": region_to_dict(finding.observation),
        "clues": [region_to_dict(c) for c in finding.clues],
    }


def fixation_to_dict(fixation: Fixation) -> dict[str, Any]:
    return {"index": fixation.index, "point": _point(fixation.point), "region": region_to_dict(fixation.region)}


def image_analysis_to_dict(image: ImageAnalysis) -> dict[str, Any]:
    """An image's analysis; coordinates are source pixels (SCOORD), boxes ``[x0, y0, x1, y1]``."""
    return {
        "sop_instance_uid": image.sop_instance_uid,
        "rows": image.rows,
        "columns": image.columns,
        "report": image.report,
        "findings": [finding_to_dict(f) for f in image.findings],
        "trajectory": [fixation_to_dict(f) for f in image.trajectory],
    }


def model_identity_to_dict(identity: ModelIdentity) -> dict[str, str | bool]:
    return {
        "name": identity.name,
        "version": identity.version,
        "checkpoint_sha256": identity.checkpoint_sha256,
        "backend": identity.backend,
        "manufacturer": identity.manufacturer,
        "demo": identity.demo,
    }


def study_analysis_to_dict(analysis: StudyAnalysis) -> dict[str, Any]:
    return {
        "study_instance_uid": analysis.study_instance_uid,
        "model": model_identity_to_dict(analysis.model),
        "seconds": analysis.seconds,
        "images": [image_analysis_to_dict(i) for i in analysis.images],
    }
