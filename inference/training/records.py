"""GazeX training records: LLaMA-Factory "sharegpt" messages, as GazeX's ``Create_Training_Data.py`` writes.

Each record is ``{"messages": [{"content": ..., "role": "user"}, {"content": ..., "role":
"assistant"}], "images": [path]}``, with the ``<image>`` placeholder in the user turn.  Two tasks:

- **examine**: the examine prompt -> the whole report, sentences in dictation order;
- **attention**: the attention-extraction prompt with one sentence inserted -> that
  sentence's visual clues and observation region, written as GazeX's training data has them::

      visual clues : [(x0,y0)(x1,y1)(cx,cy),(x0,y0)(x1,y1)(cx,cy)] observation : [(x0,y0)(x1,y1)(cx,cy)]

  (``observation : [...]`` alone when there are no clues), in the checkpoint's coordinate frame.

The default prompts are GazeX's inference prompts (``model_inference/basic_examine_chest_xray.json``
and ``model_inference/attention_extraction.json`` in github.com/KennyLee123/GazeX), so a model
trained on these records answers the prompts the runtime sends; pass :class:`Prompts` to match
another checkpoint's ``gazex.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from inference.results import Region
from inference.training.frames import CoordinateFrame

IMAGE_PLACEHOLDER = "<image>"

EXAMINE_PROMPT = (
    "Given an X-ray image, mimic a radiologist's eye-tracking pattern and generate a description of the image."
)

ATTENTION_PROMPT = (
    "Given an X-ray image and a radiologist's description '{sentence}', mimic a radiologist's interpretation "
    "pattern to identify visual clues and an overall observation area. Analyze the image to detect relevant "
    "features (e.g., abnormal opacities, fractures, lesions, or other radiological findings) that correspond to "
    "the provided description. Output clues to support your observation and generate only one observation area "
    "in the format of bounding boxes and centroids, using the structure: 'visual clues: [(xmin1, ymin1)(xmax1, "
    "ymax1)(centroidx1, centroidy1), (xmin2, ymin2)(xmax2, ymax2)(centroidx2, centroidy2), ...], observation: "
    "[(xmin, ymin)(xmax, ymax)(centroidx, centroidy)]'."
)

Record = dict[str, object]


@dataclass(frozen=True, slots=True)
class Prompts:
    """The user-turn texts; ``attention`` must contain ``{sentence}``."""

    examine: str = EXAMINE_PROMPT
    attention: str = ATTENTION_PROMPT

    def __post_init__(self) -> None:
        if "{sentence}" not in self.attention:
            raise ValueError('Argument "attention" must contain the placeholder {sentence}')


def format_region(region: Region, frame: CoordinateFrame, rows: int, columns: int) -> str:
    """``(xmin,ymin)(xmax,ymax)(cx,cy)`` in the model's frame, integers."""
    box = region.box
    x0, y0 = frame.to_model(box.x0, box.y0, rows, columns)
    x1, y1 = frame.to_model(box.x1, box.y1, rows, columns)
    cx, cy = frame.to_model(region.centroid.x, region.centroid.y, rows, columns)
    return f"({x0},{y0})({x1},{y1})({cx},{cy})"


def attention_answer(
    clues: Sequence[Region], observation: Region, frame: CoordinateFrame, rows: int, columns: int
) -> str:
    """The assistant turn of an attention record."""
    answer = f"observation : [{format_region(observation, frame, rows, columns)}]"
    if not clues:
        return answer
    listed = ",".join(format_region(clue, frame, rows, columns) for clue in clues)
    return f"visual clues : [{listed}] {answer}"


def _record(prompt: str, answer: str, image: str) -> Record:
    return {
        "messages": [
            {"content": f"{IMAGE_PLACEHOLDER}{prompt}", "role": "user"},
            {"content": answer, "role": "assistant"},
        ],
        "images": [image],
    }


def examine_record(report: str, image: str, prompts: Prompts | None = None) -> Record:
    return _record((prompts or Prompts()).examine, report, image)


def attention_record(sentence: str, answer: str, image: str, prompts: Prompts | None = None) -> Record:
    return _record((prompts or Prompts()).attention.replace("{sentence}", sentence), answer, image)
