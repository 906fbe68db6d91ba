"""A picture of a phantom with its ground truth and scanpath, for people to look at."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from inference.demo.findings import finding_kind
from inference.demo.phantoms import Phantom

#: Outline colour of each finding kind's ground-truth box.
COLOURS: dict[str, tuple[int, int, int]] = {
    "nodule": (255, 64, 64),
    "mass": (255, 64, 64),
    "pleural_effusion": (64, 160, 255),
    "cardiomegaly": (255, 200, 0),
    "pneumothorax": (200, 80, 255),
    "consolidation": (255, 140, 0),
    "endotracheal_tube": (0, 220, 120),
    "central_venous_catheter": (0, 220, 220),
}


def draw_preview(phantom: Phantom, max_side: int = 1024) -> Image.Image:
    """The phantom with ground-truth boxes (by kind), the scanpath and the report."""
    display = phantom.render(max_side)
    height, width = display.shape
    sx, sy = width / phantom.columns, height / phantom.rows
    gray = np.rint(display * 255.0).astype(np.uint8)
    text_height = 14 * (len(phantom.sentences) + 1)
    canvas = Image.new("RGB", (width, height + text_height), (0, 0, 0))
    canvas.paste(Image.fromarray(gray).convert("RGB"), (0, 0))
    draw = ImageDraw.Draw(canvas, "RGBA")

    fixations = phantom.reading.fixations
    points = [(f.x * sx, f.y * sy) for f in fixations]
    if len(points) > 1:
        draw.line(points, fill=(255, 255, 0, 90), width=1)
    for f, (x, y) in zip(fixations, points, strict=True):
        radius = 2.0 + 6.0 * math.sqrt(f.duration)
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), outline=(255, 255, 0, 200))

    for finding, box in zip(phantom.findings, phantom.boxes, strict=True):
        kind = finding_kind(finding)
        colour = COLOURS.get(kind, (255, 255, 255))
        draw.rectangle((box.x0 * sx, box.y0 * sy, box.x1 * sx, box.y1 * sy), outline=(*colour, 255), width=2)
        draw.text((box.x0 * sx + 3, box.y0 * sy + 2), kind, fill=(*colour, 255))

    y = height + 2
    for sentence in phantom.sentences:
        mark = "+" if sentence.present else "-"
        draw.text((4, y), f"[{sentence.section}] {mark}{sentence.label}: {sentence.text}", fill=(230, 230, 230))
        y += 14
    return canvas
