"""``gazex analyze FILE.dcm...``: run GazeX on DICOM files and print what it found.

Files are grouped by study; each study is analysed as the gateway would analyse it.  The
default output is a table per image (findings with their observation boxes, the trajectory,
timings); ``--json`` prints one JSON document instead.  Coordinates are source-image pixels.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from gateway.cli import CommandError
from inference import (
    FINDING_LABELS,
    Box,
    CheckpointError,
    GazexEngine,
    InferenceError,
    StudyReport,
    builtin_checkpoints,
    load_engine,
    study_analysis_to_dict,
)

DEFAULT_BUILTIN = "gazex-demo"


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "analyze",
        help="run GazeX on DICOM files and print findings, boxes, the trajectory and timings",
        description="Run GazeX on DICOM images (grouped by study) and print the findings, their boxes, "
        "the inspection trajectory and timings. Coordinates are source-image pixels.",
    )
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE.dcm", help="DICOM image files")
    parser.add_argument(
        "--model",
        default=None,
        metavar="PATH|builtin:NAME",
        help=f"a GazeX checkpoint directory or builtin:NAME (default: builtin:{DEFAULT_BUILTIN} when bundled)",
    )
    parser.add_argument(
        "--backend", default="torch", help="generation backend: torch (default), hf-generate, onnx, tensorrt or triton"
    )
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    parser.set_defaults(handler=run)


def default_model() -> str:
    """``builtin:gazex-demo`` when this build bundles it."""
    bundled = builtin_checkpoints()
    if DEFAULT_BUILTIN not in bundled:
        listing = ", ".join(f"builtin:{name}" for name in bundled) or "none"
        raise CommandError(
            f"no --model given and builtin:{DEFAULT_BUILTIN} is not bundled in this build (bundled: {listing}); "
            "pass --model PATH with a GazeX checkpoint directory"
        )
    return f"builtin:{DEFAULT_BUILTIN}"


def read_datasets(files: Sequence[Path]) -> dict[str, list[Dataset]]:
    """The files' datasets grouped by Study Instance UID, in the order given."""
    studies: dict[str, list[Dataset]] = {}
    for path in files:
        try:
            dataset = pydicom.dcmread(path)
        except FileNotFoundError as exc:
            raise CommandError(f"{path}: no such file") from exc
        except IsADirectoryError as exc:
            raise CommandError(f"{path}: is a directory; pass DICOM files") from exc
        except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
            raise CommandError(f"{path}: not a readable DICOM file ({exc})") from exc
        if "PixelData" not in dataset:
            raise CommandError(f"{path}: has no pixel data; gazex analyze takes images")
        studies.setdefault(str(dataset.get("StudyInstanceUID", "")), []).append(dataset)
    return studies


def _box(box: Box) -> str:
    return f"({box.x0:.0f}, {box.y0:.0f})-({box.x1:.0f}, {box.y1:.0f})"


def format_report(report: StudyReport) -> str:
    """The human-readable tables of one study."""
    analysis = report.analysis
    lines = [f"Study {analysis.study_instance_uid}: {len(analysis.images)} image(s) in {analysis.seconds:.2f} s"]
    for image, details in zip(analysis.images, report.images, strict=True):
        lines += ["", f"Image {image.sop_instance_uid} ({image.rows} rows x {image.columns} columns)"]
        lines.append(f"  Report: {' '.join(image.report.split()) or '(empty)'}")
        if image.findings:
            lines.append(
                "  #  finding                              status     observation box             clues  sentence"
            )
            for number, finding in enumerate(image.findings, start=1):
                status = "uncertain" if finding.uncertain else ("present" if finding.present else "absent")
                box = _box(finding.observation.box) if finding.observation else "-"
                lines.append(
                    f"  {number:<2} {FINDING_LABELS[finding.label]:<36} {status:<10} {box:<27} "
                    f"{len(finding.clues):<6} {finding.text}"
                )
        else:
            lines.append("  Findings: none")
        if image.trajectory:
            steps = " -> ".join(f"{f.index}:({f.point.x:.0f}, {f.point.y:.0f})" for f in image.trajectory)
            lines.append(f"  Trajectory: {steps}")
        else:
            lines.append("  Trajectory: none")
        t = details.timings
        lines.append(
            f"  Timings: pixels {t.pixels:.2f} s, examine {t.examine:.2f} s, attention {t.attention:.2f} s, "
            f"total {t.total:.2f} s"
        )
        lines.extend(f"  Note: {note}" for note in details.notes)
        if details.dropped:
            lines.append(f"  Dropped regions: {len(details.dropped)} ({'; '.join(details.dropped)})")
    return "\n".join(lines)


def report_to_dict(report: StudyReport) -> dict[str, Any]:
    document = study_analysis_to_dict(report.analysis)
    for image, details in zip(document["images"], report.images, strict=True):
        t = details.timings
        image["timings"] = {"pixels": t.pixels, "examine": t.examine, "attention": t.attention, "total": t.total}
        image["notes"] = list(details.notes)
        image["dropped"] = list(details.dropped)
    return document


def run(args: argparse.Namespace) -> int:
    studies = read_datasets(args.files)
    model = args.model or default_model()
    try:
        engine: GazexEngine = load_engine(model, backend=args.backend, device=args.device)
    except (CheckpointError, InferenceError) as exc:
        raise CommandError(f"cannot load the model {model}: {exc}") from exc
    reports = []
    for datasets in studies.values():
        try:
            reports.append(engine.analyze_study(datasets))
        except InferenceError as exc:
            raise CommandError(str(exc)) from exc
    identity = engine.identity
    if args.json:
        document = {
            "model": {
                "name": identity.name,
                "version": identity.version,
                "checkpoint_sha256": identity.checkpoint_sha256,
                "backend": identity.backend,
                "manufacturer": identity.manufacturer,
                "demo": identity.demo,
            },
            "studies": [report_to_dict(r) for r in reports],
        }
        print(json.dumps(document, indent=2))
        return 0
    print(
        f"Model: {identity.name} {identity.version} ({identity.manufacturer}), backend {identity.backend}, "
        f"weights sha256 {identity.checkpoint_sha256}"
    )
    for report in reports:
        print()
        print(format_report(report))
    return 0
