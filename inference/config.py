"""``gazex.json``: what a GazeX checkpoint adds to a Hugging Face Qwen2-VL checkpoint.

An example (abbreviated: ``<...>`` stands for text left out here; a prompt that starts or ends
with ``...`` or holds ``\u2026`` is refused, :func:`inference.prompts.placeholder_problem`;
``gazex model import --preset gazex-upstream`` writes a complete one, :mod:`inference.presets`)::

    {
      "format": "gazex-checkpoint", "format_version": 1,
      "name": "gazex", "version": "1.0", "manufacturer": "<who made the weights>",
      "description": "free text for the model card",
      "prompts": {"examine": "<the examine prompt>", "attention": "<text with '{sentence}' once>"},
      "coordinates": {"kind": "downscaled", "factor": 4},
      "generation": {"max_new_tokens_examine": 512, "max_new_tokens_attention": 256},
      "image": {"min_pixels": 3136, "max_pixels": 589824},
      "metadata": {}
    }

``image`` may also say how the pixels are made and resized (each optional, defaults first):
``"pixels"``: ``"voi"`` (the DICOM VOI window, :func:`inference.pixels.display_image`) or
``"mimic-cxr-jpg"`` (MIMIC-CXR-JPG's conversion: min-max of the stored values, MONOCHROME1
inverted, histogram equalisation); ``"jpeg_quality"``: ``null`` or 1..100, a JPEG round trip of
the 8-bit image (``mimic-cxr-jpg`` only); ``"resize"``: ``"qwen2-vl"`` (the processor's
``smart_resize`` alone) or ``"llamafactory"`` (LLaMA-Factory's shrink to ``"image_max_pixels"``
pixels, default 589824, first; ``image_max_pixels`` is for ``llamafactory`` only).

``coordinates`` is ``{"kind": "downscaled", "factor": F}`` (model coordinates are source pixels
divided by F), optionally with ``"reference": {"width": W, "height": H}`` (pixels of a W x H
image divided by F, mapped to each source image in proportion: ``x_src = x * F * columns / W``;
GazeX: 2544 x 3056, MIMIC-CXR's typical frontal size, :data:`inference.geometry.MIMIC_CXR_REFERENCE`),
or ``{"kind": "normalized", "scale": S}`` (0..S across the image width and height).
``metadata`` is an optional free-form object (training provenance, metrics); every other key is
checked, and an unknown key is an error, so a typo never passes silently.

``"demo": true`` (optional, default false) marks demo weights that are not for clinical use:
``gazex serve`` refuses them unless ``model.allow_demo`` is set.  A checkpoint named
``gazex-demo`` (the bundled demo model, whatever retrain wrote its ``gazex.json``) is one too
(:attr:`GazexConfig.is_demo`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from inference.geometry import CoordinateFrame, DownscaledFrame, NormalizedFrame, ReferenceSize
from inference.prompts import GAZEX_ATTENTION_PROMPT, GAZEX_EXAMINE_PROMPT, SENTENCE_SLOT, placeholder_problem

FORMAT_NAME = "gazex-checkpoint"
FORMAT_VERSION = 1

#: The bundled demo model's name (``builtin:gazex-demo``): a demo checkpoint by name.
DEMO_MODEL_NAME = "gazex-demo"

#: The most tokens one answer may be given; guards against a typo such as 5120000.
MAX_TOKEN_BUDGET = 32768


class GazexConfigError(ValueError):
    """``gazex.json`` is not valid; the message names the key and what is expected."""


@dataclass(frozen=True, slots=True)
class Prompts:
    """A checkpoint's two user-turn texts; ``attention`` holds ``{sentence}`` exactly once.

    The runtime renders them with :func:`inference.prompts.render_chat`, and training renders
    its records with the same function, so both see identical token sequences.
    """

    examine: str
    attention: str

    def __post_init__(self) -> None:
        if not self.examine.strip():
            raise ValueError('Argument "examine" must be a non-empty prompt')
        if self.attention.count(SENTENCE_SLOT) != 1:
            raise ValueError(
                f'Argument "attention" must contain the placeholder {SENTENCE_SLOT} exactly once '
                f"(found {self.attention.count(SENTENCE_SLOT)})"
            )
        for name in ("examine", "attention"):
            problem = placeholder_problem(getattr(self, name))
            if problem:
                raise ValueError(f'Argument "{name}" {problem}')


#: GazeX's own prompts (:mod:`inference.prompts`).
GAZEX_PROMPTS = Prompts(examine=GAZEX_EXAMINE_PROMPT, attention=GAZEX_ATTENTION_PROMPT)


@dataclass(frozen=True, slots=True)
class GenerationSettings:
    max_new_tokens_examine: int
    max_new_tokens_attention: int


#: ``image.pixels``: how the source pixels become an 8-bit image (:mod:`inference.pixels`).
PIXEL_MODES = ("voi", "mimic-cxr-jpg")
#: ``image.resize``: how that image is resized for the vision tower (:mod:`inference.vision_input`).
RESIZE_MODES = ("qwen2-vl", "llamafactory")
#: LLaMA-Factory's default ``image_max_pixels`` (768 x 768).
LLAMAFACTORY_IMAGE_MAX_PIXELS = 768 * 768


@dataclass(frozen=True, slots=True)
class ImageSettings:
    """How the image the vision tower sees is made: the pixel mode, the resize and its pixel budget.

    The defaults are this project's own pipeline (VOI window, one ``smart_resize``); the others
    reproduce how GazeX's training images were made (MIMIC-CXR-JPG, LLaMA-Factory).
    """

    min_pixels: int
    max_pixels: int
    pixels: str = "voi"
    jpeg_quality: int | None = None
    resize: str = "qwen2-vl"
    image_max_pixels: int = LLAMAFACTORY_IMAGE_MAX_PIXELS

    def __post_init__(self) -> None:
        if self.pixels not in PIXEL_MODES:
            raise ValueError(f"pixels must be one of {', '.join(PIXEL_MODES)}, got {self.pixels!r}")
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {self.resize!r}")
        if self.jpeg_quality is not None and not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be from 1 to 100, got {self.jpeg_quality}")
        if self.image_max_pixels < 1:
            raise ValueError(f"image_max_pixels must be positive, got {self.image_max_pixels}")

    def to_json(self) -> dict[str, Any]:
        """``gazex.json``'s ``image`` object; keys left at their defaults are not written."""
        document: dict[str, Any] = {"min_pixels": self.min_pixels, "max_pixels": self.max_pixels}
        if self.pixels != "voi":
            document["pixels"] = self.pixels
        if self.jpeg_quality is not None:
            document["jpeg_quality"] = self.jpeg_quality
        if self.resize != "qwen2-vl":
            document["resize"] = self.resize
            document["image_max_pixels"] = self.image_max_pixels
        return document


@dataclass(frozen=True)
class GazexConfig:
    name: str
    version: str
    manufacturer: str
    description: str
    prompts: Prompts
    coordinates: CoordinateFrame
    generation: GenerationSettings
    image: ImageSettings
    metadata: Mapping[str, Any] = field(default_factory=dict)
    demo: bool = False

    @property
    def is_demo(self) -> bool:
        """Demo weights, not for clinical use: ``"demo": true``, or the bundled demo model's name."""
        return self.demo or self.name == DEMO_MODEL_NAME

    def to_json(self) -> dict[str, Any]:
        """The ``gazex.json`` document for this configuration."""
        coordinates = self.coordinates.to_json()
        document: dict[str, Any] = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "version": self.version,
            "manufacturer": self.manufacturer,
            "description": self.description,
            "prompts": {"examine": self.prompts.examine, "attention": self.prompts.attention},
            "coordinates": coordinates,
            "generation": {
                "max_new_tokens_examine": self.generation.max_new_tokens_examine,
                "max_new_tokens_attention": self.generation.max_new_tokens_attention,
            },
            "image": self.image.to_json(),
        }
        if self.demo:
            document["demo"] = True
        if self.metadata:
            document["metadata"] = dict(self.metadata)
        return document


_TOP_KEYS = {
    "format",
    "format_version",
    "name",
    "version",
    "manufacturer",
    "description",
    "prompts",
    "coordinates",
    "generation",
    "image",
    "demo",
    "metadata",
}


def _object(document: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(document, dict):
        raise GazexConfigError(f"{where} must be a JSON object, got {type(document).__name__}")
    return document


def _check_keys(obj: Mapping[str, Any], where: str, required: set[str], optional: frozenset[str] = frozenset()) -> None:
    missing = sorted(required - obj.keys())
    if missing:
        raise GazexConfigError(f"{where} is missing the key(s) {', '.join(repr(k) for k in missing)}")
    unknown = sorted(obj.keys() - required - optional)
    if unknown:
        known = ", ".join(sorted(required | optional))
        raise GazexConfigError(f"{where} has unknown key(s) {', '.join(repr(k) for k in unknown)}; known: {known}")


def _text(obj: Mapping[str, Any], key: str, where: str, *, allow_empty: bool = False) -> str:
    value = obj[key]
    if not isinstance(value, str) or (not allow_empty and not value.strip()):
        raise GazexConfigError(f"{where}.{key} must be a non-empty string, got {value!r}")
    return value


def _integer(obj: Mapping[str, Any], key: str, where: str, low: int, high: int) -> int:
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise GazexConfigError(f"{where}.{key} must be an integer from {low} to {high}, got {value!r}")
    return value


def _positive_number(obj: Mapping[str, Any], key: str, where: str) -> float:
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise GazexConfigError(f"{where}.{key} must be a positive number, got {value!r}")
    return float(value)


def _coordinates(document: Any) -> CoordinateFrame:
    where = "coordinates"
    obj = _object(document, where)
    kind = obj.get("kind")
    if kind == "downscaled":
        _check_keys(obj, where, {"kind", "factor"}, frozenset({"reference"}))
        factor = _positive_number(obj, "factor", where)
        reference = None
        if "reference" in obj:
            ref = _object(obj["reference"], "coordinates.reference")
            _check_keys(ref, "coordinates.reference", {"width", "height"})
            reference = ReferenceSize(
                width=_integer(ref, "width", "coordinates.reference", 1, 1 << 16),
                height=_integer(ref, "height", "coordinates.reference", 1, 1 << 16),
            )
        return DownscaledFrame(factor, reference)
    if kind == "normalized":
        _check_keys(obj, where, {"kind", "scale"})
        return NormalizedFrame(_positive_number(obj, "scale", where))
    raise GazexConfigError(f'coordinates.kind must be "downscaled" or "normalized", got {kind!r}')


def _choice(obj: Mapping[str, Any], key: str, where: str, choices: tuple[str, ...]) -> str:
    value = obj.get(key, choices[0])
    if value not in choices:
        allowed = " or ".join(f'"{c}"' for c in choices)
        raise GazexConfigError(f"{where}.{key} must be {allowed}, got {value!r}")
    return str(value)


def _image(document: Any) -> ImageSettings:
    where = "image"
    obj = _object(document, where)
    _check_keys(
        obj, where, {"min_pixels", "max_pixels"}, frozenset({"pixels", "jpeg_quality", "resize", "image_max_pixels"})
    )
    min_pixels = _integer(obj, "min_pixels", where, 1, 2**31)
    max_pixels = _integer(obj, "max_pixels", where, 1, 2**31)
    if max_pixels < min_pixels:
        raise GazexConfigError(f"image.max_pixels ({max_pixels}) must not be below image.min_pixels ({min_pixels})")
    pixels = _choice(obj, "pixels", where, PIXEL_MODES)
    resize = _choice(obj, "resize", where, RESIZE_MODES)
    jpeg_quality = None
    if obj.get("jpeg_quality") is not None:
        jpeg_quality = _integer(obj, "jpeg_quality", where, 1, 100)
        if pixels != "mimic-cxr-jpg":
            raise GazexConfigError(
                f'image.jpeg_quality applies only to image.pixels "mimic-cxr-jpg" (pixels is "{pixels}"); '
                "remove it or set pixels"
            )
    image_max_pixels = LLAMAFACTORY_IMAGE_MAX_PIXELS
    if "image_max_pixels" in obj:
        image_max_pixels = _integer(obj, "image_max_pixels", where, 1, 2**31)
        if resize != "llamafactory":
            raise GazexConfigError(
                f'image.image_max_pixels applies only to image.resize "llamafactory" (resize is "{resize}"); '
                "remove it or set resize"
            )
    return ImageSettings(
        min_pixels=min_pixels,
        max_pixels=max_pixels,
        pixels=pixels,
        jpeg_quality=jpeg_quality,
        resize=resize,
        image_max_pixels=image_max_pixels,
    )


def parse_gazex_config(document: Any) -> GazexConfig:
    """Validate a parsed ``gazex.json`` document; raises :class:`GazexConfigError`."""
    top = _object(document, "gazex.json")
    if top.get("format") != FORMAT_NAME:
        raise GazexConfigError(f'gazex.json "format" must be "{FORMAT_NAME}", got {top.get("format")!r}')
    version = top.get("format_version")
    if version != FORMAT_VERSION:
        raise GazexConfigError(
            f'gazex.json "format_version" {version!r} is not supported: this build reads version {FORMAT_VERSION}'
        )
    _check_keys(
        top,
        "gazex.json",
        {
            "format",
            "format_version",
            "name",
            "version",
            "manufacturer",
            "prompts",
            "coordinates",
            "generation",
            "image",
        },
        frozenset(_TOP_KEYS),
    )

    prompts_obj = _object(top["prompts"], "prompts")
    _check_keys(prompts_obj, "prompts", {"examine", "attention"})
    attention = _text(prompts_obj, "attention", "prompts")
    if attention.count(SENTENCE_SLOT) != 1:
        raise GazexConfigError(
            f"prompts.attention must contain the placeholder {SENTENCE_SLOT} exactly once "
            f"(found {attention.count(SENTENCE_SLOT)})"
        )
    examine = _text(prompts_obj, "examine", "prompts")
    for key, text in (("examine", examine), ("attention", attention)):
        problem = placeholder_problem(text)
        if problem:
            raise GazexConfigError(f"prompts.{key} {problem}")
    prompts = Prompts(examine=examine, attention=attention)

    generation_obj = _object(top["generation"], "generation")
    _check_keys(generation_obj, "generation", {"max_new_tokens_examine", "max_new_tokens_attention"})
    generation = GenerationSettings(
        max_new_tokens_examine=_integer(generation_obj, "max_new_tokens_examine", "generation", 1, MAX_TOKEN_BUDGET),
        max_new_tokens_attention=_integer(
            generation_obj, "max_new_tokens_attention", "generation", 1, MAX_TOKEN_BUDGET
        ),
    )

    image = _image(top["image"])

    metadata = top.get("metadata", {})
    _object(metadata, "metadata")
    description = top.get("description", "")
    if not isinstance(description, str):
        raise GazexConfigError(f"gazex.json description must be a string, got {description!r}")
    demo = top.get("demo", False)
    if not isinstance(demo, bool):
        raise GazexConfigError(f"gazex.json demo must be true or false, got {demo!r}")

    return GazexConfig(
        name=_text(top, "name", "gazex.json"),
        version=_text(top, "version", "gazex.json"),
        manufacturer=_text(top, "manufacturer", "gazex.json"),
        description=description,
        prompts=prompts,
        coordinates=_coordinates(top["coordinates"]),
        generation=generation,
        image=image,
        metadata=metadata,
        demo=demo,
    )
