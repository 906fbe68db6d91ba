"""Pictures of results: the source image with the boxes and trajectory an SR holds (demo and console)."""

from gateway.render.overlay import display_image, draw_overlay, render_overlay, thumbnail_png
from gateway.render.sr import Box, ReportedFinding, SRContent, read_sr

__all__ = [
    "Box",
    "ReportedFinding",
    "SRContent",
    "display_image",
    "draw_overlay",
    "read_sr",
    "render_overlay",
    "thumbnail_png",
]
