"""The source image with the boxes and the trajectory an SR holds: a PNG for the demo, a thumbnail for the console."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_modality_lut, apply_voi_lut

from gateway.render.sr import Box, SRContent

FINDING = (255, 214, 0)
CLUE = (0, 200, 255)
TRAJECTORY = (255, 110, 40)
TRUTH = (60, 220, 90)


def display_image(dataset: Dataset) -> Image.Image:
    """The image as a viewer shows it by default: modality LUT, first window, MONOCHROME1 inverted, 8 bits."""
    pixels = dataset.pixel_array
    if pixels.ndim == 3 and dataset.get("SamplesPerPixel", 1) == 1:
        pixels = pixels[0]
    values = apply_modality_lut(pixels, dataset)
    if "WindowCenter" in dataset or "VOILUTSequence" in dataset:
        values = apply_voi_lut(values, dataset, index=0)
    values = values.astype(np.float64)
    low, high = float(np.percentile(values, 0.5)), float(np.percentile(values, 99.5))
    scaled = np.clip((values - low) / max(high - low, 1e-6), 0, 1)
    if dataset.get("PhotometricInterpretation") == "MONOCHROME1":
        scaled = 1.0 - scaled
    return Image.fromarray((scaled * 255).astype(np.uint8), mode="L").convert("RGB")


def render_overlay(
    source: Dataset,
    content: SRContent,
    *,
    truth: Sequence[tuple[str, Box]] = (),
    max_side: int = 1024,
    title: str = "GazeX demo - AI generated, not for diagnosis",
) -> Image.Image:
    """The image, at most ``max_side`` pixels a side, with the SR's finding and clue boxes and its trajectory."""
    image = display_image(source)
    scale = min(1.0, max_side / max(image.size))
    if scale < 1.0:
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
    draw = ImageDraw.Draw(image)

    def box(b: Box) -> tuple[float, float, float, float]:
        return (b[0] * scale, b[1] * scale, b[2] * scale, b[3] * scale)

    for label, b in truth:
        draw.rectangle(box(b), outline=TRUTH, width=2)
        draw.text((b[0] * scale, b[3] * scale + 2), f"truth: {label}", fill=TRUTH)
    for _, b in content.clue_boxes:
        draw.rectangle(box(b), outline=CLUE, width=1)
    for finding in content.findings:
        if finding.box is None:
            continue
        draw.rectangle(box(finding.box), outline=FINDING, width=3)
        draw.text((finding.box[0] * scale + 3, finding.box[1] * scale + 3), finding.tracking_id, fill=FINDING)
    points = [(x * scale, y * scale) for x, y in content.trajectory]
    if len(points) >= 2:
        draw.line(points, fill=TRAJECTORY, width=2)
    for number, (x, y) in enumerate(points, start=1):
        draw.ellipse((x - 4, y - 4, x + 4, y + 4), outline=TRAJECTORY, width=2)
        draw.text((x + 5, y - 5), str(number), fill=TRAJECTORY)
    if title:
        draw.rectangle((0, 0, image.width, 14), fill=(0, 0, 0))
        draw.text((4, 2), title, fill=(255, 255, 255))
    return image


def draw_overlay(
    source: Dataset,
    content: SRContent,
    path: Path,
    *,
    truth: Sequence[tuple[str, Box]] = (),
    max_side: int = 1024,
    title: str = "GazeX demo - AI generated, not for diagnosis",
) -> Path:
    """:func:`render_overlay` saved as a PNG at ``path``."""
    image = render_overlay(source, content, truth=truth, max_side=max_side, title=title)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def thumbnail_png(
    source: Dataset, content: SRContent, *, max_side: int = 512, title: str = "AI generated, not for diagnosis"
) -> bytes:
    """:func:`render_overlay` as PNG bytes, small enough for a web page."""
    buffer = io.BytesIO()
    render_overlay(source, content, max_side=max_side, title=title).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
