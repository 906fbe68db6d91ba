"""GazeX training records: LLaMA-Factory "sharegpt" messages, as GazeX's ``Create_Training_Data.py`` writes.

Each record is ``{"messages": [{"content": ..., "role": "user"}, {"content": ..., "role":
"assistant"}], "images": [path]}``, with the ``<image>`` placeholder in the user turn.  Two tasks:

- **examine**: the examine prompt -> the whole report, sentences in dictation order;
- **attention**: the attention-extraction prompt with one sentence inserted -> that
  sentence's visual clues and observation region, written as GazeX's training data has them::

      visual clues : [(x0,y0)(x1,y1)(cx,cy),(x0,y0)(x1,y1)(cx,cy)] observation : [(x0,y0)(x1,y1)(cx,cy)]

  (``observation : [...]`` alone when there are no clues), in the checkpoint's coordinate frame
  (:mod:`inference.geometry`), written by the runtime's own :func:`inference.parsing.format_attention`.

The prompts are a checkpoint's :class:`inference.config.Prompts`; the default is GazeX's own
(:data:`inference.config.GAZEX_PROMPTS`, the texts of :mod:`inference.prompts`), so a model
trained on these records answers the prompts the runtime sends.  Pass the prompts of another
checkpoint's ``gazex.json`` to match it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from inference.config import GAZEX_PROMPTS, Prompts
from inference.geometry import CoordinateFrame, ModelRegion
from inference.parsing import format_attention
from inference.prompts import attention_text
from inference.results import Region

IMAGE_PLACEHOLDER = "<image>"

Record = dict[str, object]


def _nearest(value: float) -> int:
    """Round half up (52.5 -> 53), not to even as ``round`` does."""
    return math.floor(value + 0.5)


def model_point(frame: CoordinateFrame, x: float, y: float, rows: int, columns: int) -> tuple[int, int]:
    """A source-pixel point as the integers the model writes: clipped to the image, then rounded."""
    x = min(max(x, 0.0), float(columns))
    y = min(max(y, 0.0), float(rows))
    sx, sy = frame.source_pixels_per_unit(rows, columns)
    return _nearest(x / sx), _nearest(y / sy)


def model_region(region: Region, frame: CoordinateFrame, rows: int, columns: int) -> ModelRegion:
    """A source-pixel region in the model's frame, as integers."""
    box = region.box
    x0, y0 = model_point(frame, box.x0, box.y0, rows, columns)
    x1, y1 = model_point(frame, box.x1, box.y1, rows, columns)
    cx, cy = model_point(frame, region.centroid.x, region.centroid.y, rows, columns)
    return ModelRegion(x0, y0, x1, y1, cx, cy)


def format_region(region: Region, frame: CoordinateFrame, rows: int, columns: int) -> str:
    """``(xmin,ymin)(xmax,ymax)(cx,cy)`` in the model's frame, integers."""
    answer = format_attention((), model_region(region, frame, rows, columns))
    return answer[answer.index("[") + 1 : answer.rindex("]")]


def attention_answer(
    clues: Sequence[Region], observation: Region, frame: CoordinateFrame, rows: int, columns: int
) -> str:
    """The assistant turn of an attention record."""
    return format_attention(
        tuple(model_region(clue, frame, rows, columns) for clue in clues),
        model_region(observation, frame, rows, columns),
    )


def _record(prompt: str, answer: str, image: str) -> Record:
    return {
        "messages": [
            {"content": f"{IMAGE_PLACEHOLDER}{prompt}", "role": "user"},
            {"content": answer, "role": "assistant"},
        ],
        "images": [image],
    }


def examine_record(report: str, image: str, prompts: Prompts = GAZEX_PROMPTS) -> Record:
    return _record(prompts.examine, report, image)


def attention_record(sentence: str, answer: str, image: str, prompts: Prompts = GAZEX_PROMPTS) -> Record:
    return _record(attention_text(prompts.attention, sentence), answer, image)
