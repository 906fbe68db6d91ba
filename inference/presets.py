"""``gazex.json`` presets: the settings ``gazex model import`` writes for a checkpoint trained elsewhere.

:func:`gazex_upstream` describes a checkpoint trained with the public GazeX recipe
(``KennyLee123/GazeX``, fine-tuned with LLaMA-Factory v0.9.x on REFLACX/MIMIC-CXR-JPG images).
Each value's source is given beside it and in docs/models.md ("Running the real GazeX weights").
Every value stays overridable by editing the written ``gazex.json``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from inference.config import FORMAT_NAME, FORMAT_VERSION, LLAMAFACTORY_IMAGE_MAX_PIXELS, parse_gazex_config
from inference.geometry import MIMIC_CXR_REFERENCE, DownscaledFrame
from inference.prompts import GAZEX_ATTENTION_PROMPT, GAZEX_TRAINING_EXAMINE_PROMPT

#: Qwen2-VL's image processor defaults (``preprocessor_config.json`` of Qwen2-VL-7B-Instruct):
#: the processor's own bounds, applied after LLaMA-Factory's shrink to ``image_max_pixels``.
QWEN2_VL_MIN_PIXELS = 56 * 56
QWEN2_VL_MAX_PIXELS = 28 * 28 * 16384

#: The JPEG quality of MIMIC-CXR-JPG: OpenCV's ``cv2.imwrite`` default (``IMWRITE_JPEG_QUALITY``
#: 95), which the maintainers' conversion (MIT-LCP/mimic-cxr issue #16) writes with; the
#: MIMIC-CXR-JPG paper (arXiv:1901.07042) states quality 95 as well.
MIMIC_CXR_JPG_QUALITY = 95

#: LLaMA-Factory's ``max_new_tokens`` default, which GazeX's inference decodes with.  Qwen2's
#: tokenizer writes every digit as its own token, so one region ``(123,456)(234,567)(178,511)``
#: costs about 25 to 30 tokens: 1024 holds about 35 regions, and the observation, written last,
#: is not cut off.  The examine stage gets the same (reports of REFLACX are a few hundred tokens).
UPSTREAM_MAX_NEW_TOKENS = 1024

#: The coordinate frame of GazeX's targets: ``Bounding_Box_Centroid_Phase_*`` divide the gaze
#: coordinates (source pixels of MIMIC-CXR images) by 4 and box the heat map on that quarter grid;
#: the model sees only the resized image, so it learns MIMIC's typical quarter frame.
UPSTREAM_COORDINATES = DownscaledFrame(4.0, MIMIC_CXR_REFERENCE)


def gazex_upstream(
    *,
    name: str = "gazex",
    version: str = "1.0",
    manufacturer: str = "GazeX (KennyLee123/GazeX)",
    description: str = "GazeX weights trained with the public GazeX recipe; gazex.json written by gazex model import "
    "--preset gazex-upstream",
) -> dict[str, Any]:
    """The ``gazex.json`` document for a checkpoint trained with the public GazeX recipe."""
    document: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "name": name,
        "version": version,
        "manufacturer": manufacturer,
        "description": description,
        "prompts": {"examine": GAZEX_TRAINING_EXAMINE_PROMPT, "attention": GAZEX_ATTENTION_PROMPT},
        "coordinates": UPSTREAM_COORDINATES.to_json(),
        "generation": {
            "max_new_tokens_examine": UPSTREAM_MAX_NEW_TOKENS,
            "max_new_tokens_attention": UPSTREAM_MAX_NEW_TOKENS,
        },
        # MIMIC-CXR-JPG's pixels (GazeX trained on its JPEGs), LLaMA-Factory's two-step resize
        # (image_max_pixels first, then the processor's smart_resize within its own bounds)
        "image": {
            "min_pixels": QWEN2_VL_MIN_PIXELS,
            "max_pixels": QWEN2_VL_MAX_PIXELS,
            "pixels": "mimic-cxr-jpg",
            "jpeg_quality": MIMIC_CXR_JPG_QUALITY,
            "resize": "llamafactory",
            "image_max_pixels": LLAMAFACTORY_IMAGE_MAX_PIXELS,
        },
        "metadata": {"preset": "gazex-upstream"},
    }
    parse_gazex_config(document)  # a preset that does not validate is a bug here, not at the site
    return document


#: The presets ``gazex model import --preset`` offers.
PRESETS: dict[str, Callable[..., dict[str, Any]]] = {"gazex-upstream": gazex_upstream}
