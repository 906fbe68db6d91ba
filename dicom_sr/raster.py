"""Drawing into an RGB pixel array, for the burned-in Secondary Capture: lines, boxes, rings, text.

Deliberately small and dependency-free (``dicom_sr`` may use only numpy, pydicom and
highdicom): a 5 x 7 bitmap font of capital letters, digits and common punctuation, scaled by
an integer factor.  Lower-case text is drawn in capitals; characters without a glyph as "?".
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

RGB = tuple[int, int, int]
Image = npt.NDArray[np.uint8]

GLYPH_WIDTH = 5
GLYPH_HEIGHT = 7

# Each glyph: 7 rows of 5 columns, "#" is ink.
_GLYPHS: dict[str, tuple[str, ...]] = {
    "A": (" ### ", "#   #", "#   #", "#####", "#   #", "#   #", "#   #"),
    "B": ("#### ", "#   #", "#   #", "#### ", "#   #", "#   #", "#### "),
    "C": (" ####", "#    ", "#    ", "#    ", "#    ", "#    ", " ####"),
    "D": ("#### ", "#   #", "#   #", "#   #", "#   #", "#   #", "#### "),
    "E": ("#####", "#    ", "#    ", "#### ", "#    ", "#    ", "#####"),
    "F": ("#####", "#    ", "#    ", "#### ", "#    ", "#    ", "#    "),
    "G": (" ####", "#    ", "#    ", "#  ##", "#   #", "#   #", " ####"),
    "H": ("#   #", "#   #", "#   #", "#####", "#   #", "#   #", "#   #"),
    "I": (" ### ", "  #  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### "),
    "J": ("  ###", "   # ", "   # ", "   # ", "   # ", "#  # ", " ##  "),
    "K": ("#   #", "#  # ", "# #  ", "##   ", "# #  ", "#  # ", "#   #"),
    "L": ("#    ", "#    ", "#    ", "#    ", "#    ", "#    ", "#####"),
    "M": ("#   #", "## ##", "# # #", "# # #", "#   #", "#   #", "#   #"),
    "N": ("#   #", "##  #", "# # #", "#  ##", "#   #", "#   #", "#   #"),
    "O": (" ### ", "#   #", "#   #", "#   #", "#   #", "#   #", " ### "),
    "P": ("#### ", "#   #", "#   #", "#### ", "#    ", "#    ", "#    "),
    "Q": (" ### ", "#   #", "#   #", "#   #", "# # #", "#  # ", " ## #"),
    "R": ("#### ", "#   #", "#   #", "#### ", "# #  ", "#  # ", "#   #"),
    "S": (" ####", "#    ", "#    ", " ### ", "    #", "    #", "#### "),
    "T": ("#####", "  #  ", "  #  ", "  #  ", "  #  ", "  #  ", "  #  "),
    "U": ("#   #", "#   #", "#   #", "#   #", "#   #", "#   #", " ### "),
    "V": ("#   #", "#   #", "#   #", "#   #", "#   #", " # # ", "  #  "),
    "W": ("#   #", "#   #", "#   #", "# # #", "# # #", "## ##", "#   #"),
    "X": ("#   #", "#   #", " # # ", "  #  ", " # # ", "#   #", "#   #"),
    "Y": ("#   #", "#   #", " # # ", "  #  ", "  #  ", "  #  ", "  #  "),
    "Z": ("#####", "    #", "   # ", "  #  ", " #   ", "#    ", "#####"),
    "0": (" ### ", "#   #", "#  ##", "# # #", "##  #", "#   #", " ### "),
    "1": ("  #  ", " ##  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### "),
    "2": (" ### ", "#   #", "    #", "   # ", "  #  ", " #   ", "#####"),
    "3": ("#####", "   # ", "  #  ", "   # ", "    #", "#   #", " ### "),
    "4": ("   # ", "  ## ", " # # ", "#  # ", "#####", "   # ", "   # "),
    "5": ("#####", "#    ", "#### ", "    #", "    #", "#   #", " ### "),
    "6": ("  ## ", " #   ", "#    ", "#### ", "#   #", "#   #", " ### "),
    "7": ("#####", "    #", "   # ", "  #  ", " #   ", " #   ", " #   "),
    "8": (" ### ", "#   #", "#   #", " ### ", "#   #", "#   #", " ### "),
    "9": (" ### ", "#   #", "#   #", " ####", "    #", "   # ", " ##  "),
    " ": ("     ",) * 7,
    "-": ("     ", "     ", "     ", "#####", "     ", "     ", "     "),
    ".": ("     ", "     ", "     ", "     ", "     ", " ##  ", " ##  "),
    ",": ("     ", "     ", "     ", "     ", " ##  ", "  #  ", " #   "),
    ":": ("     ", " ##  ", " ##  ", "     ", " ##  ", " ##  ", "     "),
    ";": ("     ", " ##  ", " ##  ", "     ", " ##  ", "  #  ", " #   "),
    "(": ("   # ", "  #  ", " #   ", " #   ", " #   ", "  #  ", "   # "),
    ")": (" #   ", "  #  ", "   # ", "   # ", "   # ", "  #  ", " #   "),
    "/": ("    #", "    #", "   # ", "  #  ", " #   ", "#    ", "#    "),
    "'": ("  #  ", "  #  ", " #   ", "     ", "     ", "     ", "     "),
    "%": ("##   ", "##  #", "   # ", "  #  ", " #   ", "#  ##", "   ##"),
    "?": (" ### ", "#   #", "    #", "   # ", "  #  ", "     ", "  #  "),
    "+": ("     ", "  #  ", "  #  ", "#####", "  #  ", "  #  ", "     "),
    "=": ("     ", "     ", "#####", "     ", "#####", "     ", "     "),
}

_MASKS: dict[str, npt.NDArray[np.bool_]] = {
    char: np.array([[c == "#" for c in row] for row in rows], dtype=bool) for char, rows in _GLYPHS.items()
}


def text_mask(text: str, scale: int) -> npt.NDArray[np.bool_]:
    """The ink of ``text`` at ``scale`` pixels per font pixel, one blank column between glyphs."""
    chars = [c if c in _MASKS else "?" for c in text.upper()]
    if not chars:
        return np.zeros((GLYPH_HEIGHT * scale, 0), dtype=bool)
    gap = np.zeros((GLYPH_HEIGHT, 1), dtype=bool)
    pieces: list[npt.NDArray[np.bool_]] = []
    for index, char in enumerate(chars):
        if index:
            pieces.append(gap)
        pieces.append(_MASKS[char])
    mask = np.concatenate(pieces, axis=1)
    return np.kron(mask, np.ones((scale, scale), dtype=bool)).astype(bool)


def draw_text(image: Image, text: str, x: int, y: int, scale: int, color: RGB, background: RGB | None = None) -> None:
    """Draw ``text`` with its top-left corner at (x, y), clipped to the image."""
    mask = text_mask(text, scale)
    pad = scale
    if background is not None:
        _fill(image, x - pad, y - pad, x + mask.shape[1] + pad, y + mask.shape[0] + pad, background)
    rows, columns = image.shape[:2]
    r0, c0 = max(0, y), max(0, x)
    r1, c1 = min(rows, y + mask.shape[0]), min(columns, x + mask.shape[1])
    if r1 <= r0 or c1 <= c0:
        return
    sub = mask[r0 - y : r1 - y, c0 - x : c1 - x]
    image[r0:r1, c0:c1][sub] = color


def _fill(image: Image, x0: int, y0: int, x1: int, y1: int, color: RGB) -> None:
    rows, columns = image.shape[:2]
    r0, r1 = max(0, y0), min(rows, y1)
    c0, c1 = max(0, x0), min(columns, x1)
    if r1 > r0 and c1 > c0:
        image[r0:r1, c0:c1] = color


def draw_line(image: Image, x0: float, y0: float, x1: float, y1: float, width: int, color: RGB) -> None:
    """A straight line of ``width`` pixels between two SCOORD points (pixel corners at integers)."""
    length = math.hypot(x1 - x0, y1 - y0)
    steps = max(2, math.ceil(length * 2) + 1)
    xs = np.linspace(x0, x1, steps)
    ys = np.linspace(y0, y1, steps)
    _stamp(image, xs, ys, width, color)


def _stamp(image: Image, xs: npt.NDArray[np.float64], ys: npt.NDArray[np.float64], width: int, color: RGB) -> None:
    rows, columns = image.shape[:2]
    half = width // 2
    cols = np.floor(xs).astype(np.int64)
    rws = np.floor(ys).astype(np.int64)
    for dy in range(-half, width - half):
        for dx in range(-half, width - half):
            r = rws + dy
            c = cols + dx
            keep = (r >= 0) & (r < rows) & (c >= 0) & (c < columns)
            image[r[keep], c[keep]] = color


def draw_box(image: Image, x0: float, y0: float, x1: float, y1: float, width: int, color: RGB) -> None:
    """The outline of a box given in SCOORD pixels."""
    right, bottom = max(x0, x1 - 1), max(y0, y1 - 1)
    draw_line(image, x0, y0, right, y0, width, color)
    draw_line(image, right, y0, right, bottom, width, color)
    draw_line(image, right, bottom, x0, bottom, width, color)
    draw_line(image, x0, bottom, x0, y0, width, color)


def draw_ring(image: Image, x: float, y: float, radius: float, width: int, color: RGB) -> None:
    steps = max(16, int(2 * math.pi * radius * 2))
    angles = np.linspace(0.0, 2 * math.pi, steps, endpoint=False)
    _stamp(image, x + radius * np.cos(angles), y + radius * np.sin(angles), width, color)
