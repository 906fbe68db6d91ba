"""Parsing GazeX's attention-extraction answers: untrusted text in, model-coordinate regions out.

GazeX is trained to answer (``Create_Training_Data.py``)::

    visual clues : [(x0,y0)(x1,y1)(cx,cy),(x0,y0)(x1,y1)(cx,cy)] observation : [(x0,y0)(x1,y1)(cx,cy)]

and its prompt spells the same structure ``visual clues: [...], observation: [...]``.  The
parser accepts both and drift in whitespace, case, separators and an optional colon; answers
with only an observation (GazeX's training data has them) are fine.  It is strict about the
regions themselves: a region is exactly three ``(number, number)`` pairs, numbers have at most
12 digits, and anything else in a list (a partial region, the prompt's placeholders echoed
back, "...", words) is dropped and counted with the reason.  It never raises.

Mapping to source pixels and clipping is :meth:`inference.geometry.ImageGeometry.region_to_source`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from inference.geometry import ModelRegion

_NUMBER = r"[-+]?\d{1,12}(?:\.\d{1,12})?"
_PAIR = rf"\(\s*({_NUMBER})\s*,\s*({_NUMBER})\s*\)"
_REGION = re.compile(rf"{_PAIR}\s*{_PAIR}\s*{_PAIR}")
_CLUES_HEADER = re.compile(r"visual[\s_-]*clues?\s*:?\s*\[", re.IGNORECASE)
OBSERVATION_HEADER = re.compile(r"observation(?:[\s_-]*area)?\s*:?\s*\[", re.IGNORECASE)
_SEPARATORS = " \t\r\n,;"


@dataclass(frozen=True, slots=True)
class ParsedAttention:
    """What one answer held: the clue regions in order, the observation, and what was dropped."""

    clues: tuple[ModelRegion, ...]
    observation: ModelRegion | None
    dropped: tuple[str, ...] = ()


def _section(text: str, start: int, stop_at: re.Pattern[str] | None) -> str:
    """The list that opens at ``start``: up to its ``]``, the next header, or the end of the text."""
    end = text.find("]", start)
    end = len(text) if end < 0 else end
    if stop_at is not None:
        header = stop_at.search(text, start)
        if header is not None and header.start() < end:
            end = header.start()
    return text[start:end]


def _regions(section: str, what: str) -> tuple[list[ModelRegion], list[str]]:
    """Every well-formed region of a list, and a reason for each piece that is not one."""
    regions: list[ModelRegion] = []
    dropped: list[str] = []
    position = 0
    while True:
        while position < len(section) and section[position] in _SEPARATORS:
            position += 1
        if position >= len(section):
            break
        match = _REGION.match(section, position)
        if match is not None:
            x0, y0, x1, y1, cx, cy = (float(v) for v in match.groups())
            regions.append(ModelRegion(x0, y0, x1, y1, cx, cy))
            position = match.end()
            continue
        following = _REGION.search(section, position + 1)
        end = following.start() if following is not None else len(section)
        dropped.append(f"{what}: not a (x, y)(x, y)(x, y) region ({end - position} characters)")
        position = end
    return regions, dropped


def parse_attention(text: str) -> ParsedAttention:
    """The regions of one attention-extraction answer; never raises."""
    dropped: list[str] = []
    clues: list[ModelRegion] = []
    clues_header = _CLUES_HEADER.search(text)
    if clues_header is not None:
        found, bad = _regions(_section(text, clues_header.end(), OBSERVATION_HEADER), "visual clue")
        clues.extend(found)
        dropped.extend(bad)

    observation: ModelRegion | None = None
    search_from = clues_header.end() if clues_header is not None else 0
    observation_header = OBSERVATION_HEADER.search(text, search_from)
    if observation_header is None:
        dropped.append("observation: missing")
    else:
        found, bad = _regions(_section(text, observation_header.end(), None), "observation")
        dropped.extend(bad)
        if found:
            observation = found[0]
            dropped.extend(f"observation: extra region {i + 2} ignored" for i in range(len(found) - 1))
        elif not bad:
            dropped.append("observation: empty")
    return ParsedAttention(clues=tuple(clues), observation=observation, dropped=tuple(dropped))


def format_attention(clues: tuple[ModelRegion, ...], observation: ModelRegion | None) -> str:
    """An answer in GazeX's training format (``Create_Training_Data.py``), integers as GazeX writes them.

    Used to build training targets and test answers; :func:`parse_attention` reads it back.
    """

    def number(value: float) -> str:
        if float(value).is_integer():
            return str(int(value))
        return f"{value:.6f}".rstrip("0").rstrip(".")

    def region(r: ModelRegion) -> str:
        x0, y0, x1, y1, cx, cy = (number(v) for v in (r.x0, r.y0, r.x1, r.y1, r.cx, r.cy))
        return f"({x0},{y0})({x1},{y1})({cx},{cy})"

    parts = []
    if clues:
        parts.append("visual clues : [" + ",".join(region(c) for c in clues) + "] ")
    if observation is not None:
        parts.append(f"observation : [{region(observation)}]")
    return "".join(parts)
