"""gazex.json: strict validation with errors that name the key."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from inference.config import GazexConfigError, parse_gazex_config
from inference.geometry import DownscaledFrame, NormalizedFrame
from inference.prompts import GAZEX_ATTENTION_PROMPT, GAZEX_EXAMINE_PROMPT

VALID: dict[str, Any] = {
    "format": "gazex-checkpoint",
    "format_version": 1,
    "name": "gazex",
    "version": "1.0",
    "manufacturer": "Example Hospital AI Lab",
    "description": "GazeX fine-tuned on REFLACX",
    "prompts": {"examine": GAZEX_EXAMINE_PROMPT, "attention": GAZEX_ATTENTION_PROMPT},
    "coordinates": {"kind": "downscaled", "factor": 4},
    "generation": {"max_new_tokens_examine": 512, "max_new_tokens_attention": 256},
    "image": {"min_pixels": 3136, "max_pixels": 589824},
}


def with_change(path: str, value: Any) -> dict[str, Any]:
    document = copy.deepcopy(VALID)
    *parents, key = path.split(".")
    target = document
    for parent in parents:
        target = target[parent]
    if value is KeyError:
        del target[key]
    else:
        target[key] = value
    return document


def test_valid_document_and_round_trip() -> None:
    config = parse_gazex_config(VALID)
    assert config.coordinates == DownscaledFrame(4.0)
    assert config.generation.max_new_tokens_attention == 256
    assert config.image.max_pixels == 589824
    assert parse_gazex_config(config.to_json()) == config


def test_normalized_coordinates_and_metadata() -> None:
    document = with_change("coordinates", {"kind": "normalized", "scale": 1000})
    document["metadata"] = {"trained_on": "phantoms", "seed": 7}
    config = parse_gazex_config(document)
    assert config.coordinates == NormalizedFrame(1000.0)
    assert config.metadata["seed"] == 7


def test_description_is_optional() -> None:
    assert parse_gazex_config(with_change("description", KeyError)).description == ""


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("format", "something-else", '"format" must be "gazex-checkpoint"'),
        ("format_version", 2, 'format_version" 2 is not supported'),
        ("name", KeyError, "missing the key\\(s\\) 'name'"),
        ("name", "  ", "gazex.json.name must be a non-empty string"),
        ("version", 3, "gazex.json.version must be a non-empty string"),
        ("colour", "blue", "unknown key\\(s\\) 'colour'"),
        ("prompts", "examine", "prompts must be a JSON object"),
        ("prompts.attention", "Describe the image.", "exactly once"),
        ("prompts.attention", "{sentence} and {sentence}", "exactly once"),
        ("prompts.examine", "", "prompts.examine must be a non-empty string"),
        ("prompts.extra", "x", "unknown key\\(s\\) 'extra'"),
        ("coordinates", {"kind": "pixels"}, 'coordinates.kind must be "downscaled" or "normalized"'),
        ("coordinates", {"kind": "downscaled", "factor": 0}, "coordinates.factor must be a positive number"),
        ("coordinates", {"kind": "downscaled", "scale": 4}, "missing the key\\(s\\) 'factor'"),
        ("coordinates", {"kind": "normalized", "scale": True}, "coordinates.scale must be a positive number"),
        ("generation.max_new_tokens_examine", 0, "max_new_tokens_examine must be an integer from 1"),
        ("generation.max_new_tokens_attention", 99999999, "max_new_tokens_attention must be an integer"),
        ("generation.max_new_tokens_attention", 25.5, "max_new_tokens_attention must be an integer"),
        ("image.max_pixels", 100, "must not be below image.min_pixels"),
        ("image", {"min_pixels": 3136}, "missing the key\\(s\\) 'max_pixels'"),
        ("metadata", [], "metadata must be a JSON object"),
        ("image.pixels", "dicom", 'image.pixels must be "voi" or "mimic-cxr-jpg", got \'dicom\''),
        ("image.pixels", None, "image.pixels must be"),
        ("image.resize", "bilinear", 'image.resize must be "qwen2-vl" or "llamafactory"'),
        ("image.jpeg_quality", 95, 'image.jpeg_quality applies only to image.pixels "mimic-cxr-jpg"'),
        ("image.image_max_pixels", 589824, 'image.image_max_pixels applies only to image.resize "llamafactory"'),
        ("image.max_pixel", 1, "image has unknown key\\(s\\) 'max_pixel'"),
    ],
)
def test_invalid_documents_name_the_problem(path: str, value: Any, message: str) -> None:
    with pytest.raises(GazexConfigError, match=message):
        parse_gazex_config(with_change(path, value))


def test_not_an_object() -> None:
    with pytest.raises(GazexConfigError, match="must be a JSON object"):
        parse_gazex_config([VALID])


def test_demo_weights_are_marked_by_the_demo_key_or_the_bundled_demo_name() -> None:
    assert not parse_gazex_config(VALID).is_demo
    marked = parse_gazex_config(with_change("demo", True))
    assert marked.demo and marked.is_demo
    assert marked.to_json()["demo"] is True and parse_gazex_config(marked.to_json()) == marked
    assert "demo" not in parse_gazex_config(VALID).to_json()
    assert not parse_gazex_config(with_change("demo", False)).is_demo
    assert parse_gazex_config(with_change("name", "gazex-demo")).is_demo  # the bundled one, however retrained
    with pytest.raises(GazexConfigError, match=r"gazex\.json demo must be true or false, got 'yes'"):
        parse_gazex_config(with_change("demo", "yes"))


def test_image_defaults_keep_the_voi_window_and_one_smart_resize() -> None:
    image = parse_gazex_config(VALID).image
    assert (image.pixels, image.jpeg_quality, image.resize, image.image_max_pixels) == (
        "voi",
        None,
        "qwen2-vl",
        768 * 768,
    )
    # Defaults are not written back, so existing gazex.json files keep their exact text.
    assert parse_gazex_config(VALID).to_json()["image"] == {"min_pixels": 3136, "max_pixels": 589824}


def test_image_upstream_settings_round_trip() -> None:
    document = with_change(
        "image",
        {
            "min_pixels": 3136,
            "max_pixels": 12845056,
            "pixels": "mimic-cxr-jpg",
            "jpeg_quality": 95,
            "resize": "llamafactory",
            "image_max_pixels": 1000000,
        },
    )
    config = parse_gazex_config(document)
    assert config.image.pixels == "mimic-cxr-jpg"
    assert config.image.jpeg_quality == 95
    assert config.image.resize == "llamafactory"
    assert config.image.image_max_pixels == 1000000
    assert config.to_json()["image"] == document["image"]
    assert parse_gazex_config(config.to_json()) == config
    # null is the default for jpeg_quality; image_max_pixels defaults to 768 x 768
    minimal = with_change("image", {"min_pixels": 3136, "max_pixels": 589824, "resize": "llamafactory"})
    minimal["image"]["pixels"] = "mimic-cxr-jpg"
    minimal["image"]["jpeg_quality"] = None
    image = parse_gazex_config(minimal).image
    assert (image.jpeg_quality, image.image_max_pixels) == (None, 589824)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("jpeg_quality", 0, "image.jpeg_quality must be an integer from 1 to 100, got 0"),
        ("jpeg_quality", 101, "image.jpeg_quality must be an integer from 1 to 100, got 101"),
        ("jpeg_quality", 95.0, "image.jpeg_quality must be an integer from 1 to 100"),
        ("jpeg_quality", True, "image.jpeg_quality must be an integer from 1 to 100"),
        ("image_max_pixels", 0, "image.image_max_pixels must be an integer from 1"),
        ("image_max_pixels", "768*768", "image.image_max_pixels must be an integer from 1"),
    ],
)
def test_bad_upstream_image_values_name_the_key(key: str, value: Any, message: str) -> None:
    image = {"min_pixels": 3136, "max_pixels": 589824, "pixels": "mimic-cxr-jpg", "resize": "llamafactory"}
    image[key] = value
    with pytest.raises(GazexConfigError, match=message):
        parse_gazex_config(with_change("image", image))
