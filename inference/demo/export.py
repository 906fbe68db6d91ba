"""Write phantoms to disk: DICOM files, a REFLACX-format data set, and a ground-truth manifest.

Layout under the output folder::

    dicom/<dicom_id>.dcm                      (format dicom)
    reflacx/main_data/metadata_phase_3.csv    (format reflacx)
    reflacx/main_data/<reflacx id>/...        fixations, dictation, ellipses, chest box
    reflacx/images/<dicom_id>.png             the image the metadata's "image" column names
    manifest.json                             every phantom's ground truth, in source pixels
    previews/<dicom_id>.png                   (optional) image with boxes and scanpath

The REFLACX reading of a phantom follows the dataset's conventions: one ellipse per localised
finding with its REFLACX label and certainty 5 ("Consistent with"); none for support devices
(REFLACX's radiologists were asked not to draw them); image-level certainties in the metadata;
the chest box around lungs and heart.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from inference.demo.dicom import phantom_dataset, phantom_uid, windowed_display
from inference.demo.findings import REFLACX_LABELS, Device, finding_kind
from inference.demo.phantoms import Phantom, PhantomConfig, generate_phantom
from inference.reflacx.model import Ellipse, ReflacxFixation, ReflacxReading, TranscribedWord
from inference.reflacx.writer import write_metadata, write_reading
from inference.results import Box

FORMATS = ("dicom", "reflacx")
PHASE = 3
SCREEN = (2560, 1440)  # the reading monitor the synthetic radiologist uses, pixels


def reflacx_id(phantom: Phantom) -> str:
    """REFLACX's id pattern for phase 3 readings: ``P300R`` and six digits."""
    return f"P{PHASE}00R{phantom.index:06d}"


def dicom_id(phantom: Phantom) -> str:
    return f"phantom-{phantom.seed}-{phantom.index:06d}"


def _screen_rect(phantom: Phantom) -> tuple[int, int, int, int]:
    scale = min(SCREEN[0] / phantom.columns, SCREEN[1] / phantom.rows)
    width, height = phantom.columns * scale, phantom.rows * scale
    x0, y0 = (SCREEN[0] - width) / 2.0, (SCREEN[1] - height) / 2.0
    return round(x0), round(y0), round(x0 + width), round(y0 + height)


def phantom_reading(phantom: Phantom, image: str, split: str = "train") -> ReflacxReading:
    """The phantom as a REFLACX phase-3 reading whose image is at ``image``."""
    ellipses = []
    certainties: dict[str, int | bool] = {}
    for finding, box in zip(phantom.findings, phantom.boxes, strict=True):
        label = REFLACX_LABELS[finding_kind(finding)]
        if isinstance(finding, Device):
            certainties["Support devices"] = True
            continue
        ellipses.append(Ellipse(box.x0, box.y0, box.x1, box.y1, 5, frozenset({label})))
        certainties[label] = 5
    rng = np.random.default_rng([phantom.seed, phantom.index, 17])
    ppd = float(phantom.anatomy.pixels_per_degree())
    shown = (0, 0, phantom.columns, phantom.rows)
    screen = _screen_rect(phantom)
    fixations = tuple(
        ReflacxFixation(
            start=f.start,
            end=f.end,
            x=float(round(f.x)),
            y=float(round(f.y)),
            pupil_area_normalized=round(float(rng.normal(1.0, 0.06)), 3),
            pixels_per_degree_x=ppd,
            pixels_per_degree_y=ppd,
            window_width=1.0,
            window_level=0.5,
            shown_from_image=shown,
            in_screen=screen,
        )
        for f in phantom.reading.fixations
    )
    chest = phantom.anatomy.chest_box().clipped(phantom.rows, phantom.columns)
    return ReflacxReading(
        id=reflacx_id(phantom),
        phase=PHASE,
        split=split,
        eye_tracking_data_discarded=False,
        image=image,
        dicom_id=dicom_id(phantom),
        subject_id=f"9{phantom.index:07d}",
        image_size_x=phantom.columns,
        image_size_y=phantom.rows,
        labels=certainties,
        fixations=fixations,
        words=tuple(TranscribedWord(w.text, w.start, w.end) for w in phantom.reading.words),
        transcription=phantom.report,
        ellipses=tuple(ellipses),
        chest_box=Box(round(chest.x0), round(chest.y0), round(chest.x1), round(chest.y1)),
    )


def _box(box: Box | None) -> list[float] | None:
    return None if box is None else [round(box.x0, 1), round(box.y0, 1), round(box.x1, 1), round(box.y1, 1)]


def manifest_entry(phantom: Phantom, files: dict[str, str]) -> dict[str, object]:
    """Everything known about a phantom, as JSON (boxes are [x0, y0, x1, y1] in source pixels)."""
    acquisition = phantom.acquisition
    return {
        "index": phantom.index,
        "dicom_id": dicom_id(phantom),
        "reflacx_id": reflacx_id(phantom),
        "sop_instance_uid": phantom_uid(phantom, "instance"),
        "study_instance_uid": phantom_uid(phantom, "study"),
        "files": files,
        "rows": phantom.rows,
        "columns": phantom.columns,
        "pixel_spacing_mm": round(phantom.anatomy.pixel_spacing_mm, 6),
        "cardiothoracic_ratio": round(phantom.anatomy.cardiothoracic_ratio, 4),
        "acquisition": {
            "modality": acquisition.modality,
            "photometric_interpretation": acquisition.photometric,
            "bits_stored": acquisition.bits_stored,
            "view_position": acquisition.view_position,
        },
        "findings": [
            {"kind": finding_kind(f), "label": f.label, "side": getattr(f, "side", None), "box": _box(box)}
            for f, box in zip(phantom.findings, phantom.boxes, strict=True)
        ],
        "report": phantom.report,
        "sentences": [
            {
                "text": s.text,
                "label": s.label,
                "present": s.present,
                "uncertain": s.uncertain,
                "section": s.section,
                "region": _box(s.region),
                "spoken": [span[1], span[2]],
            }
            for s, span in zip(phantom.sentences, phantom.reading.spans, strict=True)
        ],
    }


def display_png(display: np.ndarray, path: Path) -> None:
    """An 8-bit grayscale PNG of a display image in [0, 1]."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.rint(np.clip(display, 0.0, 1.0) * 255.0).astype(np.uint8)).save(path)


@dataclass
class DatasetSummary:
    phantoms: int = 0
    dicom_files: int = 0
    reflacx_readings: int = 0
    findings: dict[str, int] = field(default_factory=dict)
    normal: int = 0


def write_phantom_dataset(
    out: Path,
    seed: int,
    count: int,
    formats: Sequence[str] = FORMATS,
    config: PhantomConfig | None = None,
    image_max_side: int | None = None,
    split: str = "train",
    previews: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> DatasetSummary:
    """Generate ``count`` phantoms with ``seed`` and write them in ``formats`` under ``out``."""
    unknown = set(formats) - set(FORMATS)
    if unknown or not formats:
        raise ValueError(f"formats must be some of {', '.join(FORMATS)}, got {', '.join(formats) or 'none'}")
    summary = DatasetSummary()
    readings: list[ReflacxReading] = []
    entries = []
    main_data = out / "reflacx" / "main_data"
    for index in range(count):
        phantom = generate_phantom(seed, index, config)
        files: dict[str, str] = {}
        native = None
        if "dicom" in formats:
            native = phantom.render(None)
            path = out / "dicom" / f"{dicom_id(phantom)}.dcm"
            path.parent.mkdir(parents=True, exist_ok=True)
            phantom_dataset(phantom, display=native).save_as(path, enforce_file_format=True)
            files["dicom"] = str(path.relative_to(out))
            summary.dicom_files += 1
        if "reflacx" in formats:
            image = f"images/{dicom_id(phantom)}.png"
            display = native if native is not None and image_max_side is None else phantom.render(image_max_side)
            display_png(windowed_display(phantom, display), out / "reflacx" / image)
            reading = phantom_reading(phantom, image, split)
            write_reading(main_data, reading)
            readings.append(_metadata_only(reading))
            files["reflacx"] = f"reflacx/main_data/{reading.id}"
            files["image"] = f"reflacx/{image}"
            summary.reflacx_readings += 1
        if previews:
            from inference.demo.preview import draw_preview

            path = out / "previews" / f"{dicom_id(phantom)}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            draw_preview(phantom).save(path)
            files["preview"] = str(path.relative_to(out))
        entries.append(manifest_entry(phantom, files))
        summary.phantoms += 1
        for finding in phantom.findings:
            kind = finding_kind(finding)
            summary.findings[kind] = summary.findings.get(kind, 0) + 1
        summary.normal += int(not any(not isinstance(f, Device) for f in phantom.findings))
        if progress is not None:
            progress(index + 1, count)
    if readings:
        write_metadata(main_data, PHASE, readings)
    manifest = {
        "generator": "gazex model phantoms",
        "seed": seed,
        "count": count,
        "formats": list(formats),
        "split": split,
        "report_style": (config or PhantomConfig()).report_style,
        "note": "Synthetic phantoms, not patients. Boxes are [x0, y0, x1, y1] in source pixels (DICOM SCOORD).",
        "phantoms": entries,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return summary


def _metadata_only(reading: ReflacxReading) -> ReflacxReading:
    """The metadata row of a reading, without its (large) fixation and word lists."""
    from dataclasses import replace

    return replace(reading, fixations=(), words=(), transcription="")
