"""``gazex model import`` on a checkpoint laid out as LLaMA-Factory exports it, and the gazex-upstream preset."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydicom.dataset import Dataset

from inference import load_engine
from inference.checkpoint import CheckpointError, open_checkpoint
from inference.config import GazexConfigError, parse_gazex_config
from inference.geometry import (
    MIMIC_CXR_REFERENCE,
    DownscaledFrame,
    ImageGeometry,
    ReferenceSize,
    frame_from_json,
    parse_frame,
)
from inference.importing import import_checkpoint
from inference.parsing import parse_attention
from inference.pixels import display_image
from inference.presets import gazex_upstream
from inference.prompts import (
    GAZEX_ATTENTION_PROMPT,
    GAZEX_TRAINING_EXAMINE_PROMPT,
    IMAGE_PAD,
    VISION_END,
    VISION_START,
    PromptEncoder,
    attention_text,
    render_chat,
)
from inference.testing import make_llamafactory_export
from inference.vision_input import llamafactory_size, model_input_size, smart_resize

#: The user turns of GazeX's training records, as ``Create_Training_Data.py`` writes them.
UPSTREAM_EXAMINE_TURN = (
    "<image> Given an X-ray image, using the radiologist's interpretation pattern, generate a detailed description "
    "or diagnosis for the image."
)
UPSTREAM_ATTENTION_TURN = (
    "<image>Given an X-ray image and a radiologist's description '{temp_sentence}', mimic a radiologist's "
    "interpretation pattern to identify visual clues and an overall observation area. Analyze the image to detect "
    "relevant features (e.g., abnormal opacities, fractures, lesions, or other radiological findings) that "
    "correspond to the provided description. Output as much visual clues to support your observation and generate "
    "only one observation area in the format of bounding boxes and centroids, using the structure: 'visual clues: "
    "[(xmin1, ymin1)(xmax1, ymax1)(centroidx1, centroidy1), (xmin2, ymin2)(xmax2, ymax2)(centroidx2, centroidy2), "
    "...], observation: [(xmin, ymin)(xmax, ymax)(centroidx, centroidy)]'."
)


def llamafactory_rendering(user_turn: str) -> str:
    """A training record's user turn as LLaMA-Factory's ``qwen2_vl`` template renders it (before the answer).

    The template's default system message, ``<image>`` replaced by the vision block (one
    ``<|image_pad|>`` before expansion), then the opened assistant turn.
    """
    user = user_turn.replace("<image>", f"{VISION_START}{IMAGE_PAD}{VISION_END}")
    return (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
    )


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen2-VL as LLaMA-Factory exports it (sharded, no gazex.json); do not modify."""
    return make_llamafactory_export(tmp_path_factory.mktemp("received") / "gazex-7b")


@pytest.fixture
def copy_of(export: Path, tmp_path: Path) -> Callable[[], Path]:
    def copy() -> Path:
        return Path(shutil.copytree(export, tmp_path / "copy"))

    return copy


@pytest.fixture(scope="module")
def imported(export: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("imported") / "gazex"
    import_checkpoint(export, out=out)
    return out


def test_the_export_has_the_llamafactory_layout(export: Path) -> None:
    names = {p.name for p in export.iterdir()}
    assert "gazex.json" not in names
    assert {"config.json", "model.safetensors.index.json", "tokenizer.json", "tokenizer_config.json"} <= names
    assert {"preprocessor_config.json", "chat_template.json", "generation_config.json"} <= names
    index = json.loads((export / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1


def test_import_into_a_new_folder_writes_the_preset_and_leaves_the_received_folder_as_it_was(
    export: Path, imported: Path
) -> None:
    assert not (export / "gazex.json").exists()
    document = json.loads((imported / "gazex.json").read_text(encoding="utf-8"))
    assert document == gazex_upstream()
    checkpoint = open_checkpoint(imported)
    assert checkpoint.gazex.prompts.examine == GAZEX_TRAINING_EXAMINE_PROMPT
    assert checkpoint.gazex.prompts.attention == GAZEX_ATTENTION_PROMPT
    assert checkpoint.gazex.coordinates == DownscaledFrame(4.0, ReferenceSize(2544, 3056))
    assert len(checkpoint.weight_files) > 1
    assert checkpoint.weights_sha256 == open_checkpoint(export, gazex=checkpoint.gazex).weights_sha256
    shard = checkpoint.weight_files[0]
    assert shard.stat().st_ino == (export / shard.name).stat().st_ino  # hard-linked, not copied


def test_import_in_place_with_identity_and_no_silent_overwrite(copy_of: Callable[[], Path]) -> None:
    directory = copy_of()
    (directory / "chat_template.json").unlink()  # the template only in tokenizer_config.json is enough
    result = import_checkpoint(directory, name="gazex-7b", version="2025.1", manufacturer="Site AI lab")
    assert result.target == directory and result.gazex_json == directory / "gazex.json"
    config = open_checkpoint(directory).gazex
    assert (config.name, config.version, config.manufacturer) == ("gazex-7b", "2025.1", "Site AI lab")
    with pytest.raises(CheckpointError, match=r"gazex\.json exists already; pass --force"):
        import_checkpoint(directory)
    assert import_checkpoint(directory, force=True).config.name == "gazex"


def _remove(name: str) -> Callable[[Path], None]:
    return lambda directory: (directory / name).unlink()


def _edit_json(name: str, change: Callable[[dict[str, object]], object]) -> Callable[[Path], None]:
    def edit(directory: Path) -> None:
        document = json.loads((directory / name).read_text())
        change(document)
        (directory / name).write_text(json.dumps(document))

    return edit


def _no_chat_template(directory: Path) -> None:
    (directory / "chat_template.json").unlink()
    _edit_json("tokenizer_config.json", lambda d: d.pop("chat_template"))(directory)


def _first_shard(directory: Path) -> None:
    next(iter(sorted(directory.glob("model-0*.safetensors")))).unlink()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_remove("config.json"), "config.json is missing"),
        (_edit_json("config.json", lambda d: d.pop("model_type")), "the key model_type is missing"),
        (_edit_json("config.json", lambda d: d.update(model_type="llava")), "model_type is 'llava'"),
        (_edit_json("config.json", lambda d: d.pop("vision_config")), "the key vision_config is missing"),
        (_remove("model.safetensors.index.json"), "no weights: neither model.safetensors nor"),
        (
            _first_shard,
            r"the weight shard model-00001-of-\d+.safetensors listed in model.safetensors.index.json is missing",
        ),
        (_remove("tokenizer.json"), "tokenizer.json is missing"),
        (_remove("tokenizer_config.json"), "tokenizer_config.json is missing"),
        (_remove("preprocessor_config.json"), "preprocessor_config.json is missing"),
        (_edit_json("preprocessor_config.json", lambda d: d.pop("patch_size")), "the key patch_size is missing"),
        (_no_chat_template, "no chat template"),
    ],
)
def test_import_refuses_what_it_cannot_run_naming_the_file_or_key(
    copy_of: Callable[[], Path], tmp_path: Path, damage: Callable[[Path], None], message: str
) -> None:
    directory = copy_of()
    damage(directory)
    with pytest.raises(CheckpointError, match=message):
        import_checkpoint(directory)
    with pytest.raises(CheckpointError, match=message):
        import_checkpoint(directory, out=tmp_path / "out")
    assert not (directory / "gazex.json").exists()
    assert not (tmp_path / "out").exists()


def test_load_engine_on_a_checkpoint_without_gazex_json_names_gazex_model_import(export: Path) -> None:
    with pytest.raises(CheckpointError, match=r"gazex\.json is missing.*gazex model import .* --preset gazex-upstream"):
        load_engine(export, device="cpu")


def test_the_rendered_prompts_equal_gazex_training_text(imported: Path) -> None:
    checkpoint = open_checkpoint(imported)
    prompts = checkpoint.gazex.prompts
    sentence = "a calcified granuloma is present in left lung apex."
    assert render_chat(prompts.examine) == llamafactory_rendering(UPSTREAM_EXAMINE_TURN)
    assert render_chat(attention_text(prompts.attention, sentence)) == llamafactory_rendering(
        UPSTREAM_ATTENTION_TURN.replace("{temp_sentence}", sentence)
    )
    # the checkpoint's own chat template (what transformers' apply_chat_template runs) renders the same text
    # as transformers compiles it; plain text, not HTML, so no escaping
    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    template = environment.from_string(json.loads((imported / "chat_template.json").read_text())["chat_template"])
    for user_text in (prompts.examine, attention_text(prompts.attention, sentence)):
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": user_text}]}]
        assert template.render(messages=messages, add_generation_prompt=True) == render_chat(user_text)
    # and the token ids are those of the training text
    encoder = PromptEncoder(checkpoint.tokenizer, prompts.examine, prompts.attention)
    expected = checkpoint.tokenizer.encode(
        llamafactory_rendering(UPSTREAM_EXAMINE_TURN).replace(IMAGE_PAD, IMAGE_PAD * 4), add_special_tokens=False
    ).ids
    assert list(encoder.examine(4)) == expected


def test_the_imported_checkpoint_analyses_the_real_chest_cr(imported: Path, chest_cr: Dataset) -> None:
    engine = load_engine(imported, backend="torch", device="cpu")
    analysis = engine.analyze([chest_cr])
    (image,) = analysis.images
    assert (image.rows, image.columns) == (1955, 1841)
    assert analysis.model.name == "gazex" and analysis.model.checkpoint_sha256 == engine.checkpoint.weights_sha256
    assert engine.checkpoint.gazex.generation.max_new_tokens_attention == 1024
    # the preset's pixels and grid: MIMIC-CXR-JPG's conversion; LLaMA-Factory's 768 x 768 shrink to
    # 791 x 745, then the processor's multiples of 28 (a single smart_resize at 589824 gives 784 x 728)
    settings = engine.checkpoint.gazex.image
    assert (settings.pixels, settings.jpeg_quality, settings.resize) == ("mimic-cxr-jpg", 95, "llamafactory")
    assert llamafactory_size(1955, 1841, settings.image_max_pixels) == (791, 745)
    assert model_input_size(1955, 1841, engine.checkpoint.processing) == (784, 756)
    assert smart_resize(1955, 1841, 28, 3136, 768 * 768) == (784, 728)
    display = display_image(chest_cr, settings.pixels, settings.jpeg_quality).pixels * 255
    assert 110 < float(display.mean()) < 140 and float(display.std()) > 60  # the 126 and 73


# -- the coordinate frame --------------------------------------------------------------------------


def upstream_quarter_box(xs: list[float], ys: list[float], narrow_percent: float) -> tuple[int, int, int, int]:
    """The box ``Bounding_Box_Centroid_Phase_1.py`` + ``Create_Training_Data.py`` make from gaze points.

    The gaze (source pixels of the MIMIC image) is divided by 4 and truncated to the quarter grid
    (``int(row['x'])``), the heat map's box is the extreme grid cells, narrowed by a fraction of a
    per cent, and written as integers.
    """
    qx = [int(x / 4) for x in xs]
    qy = [int(y / 4) for y in ys]
    x0, y0, x1, y1 = min(qx), min(qy), max(qx), max(qy)
    dw, dh = (x1 - x0) * narrow_percent / 100 / 2, (y1 - y0) * narrow_percent / 100 / 2
    return int(x0 + dw), int(y0 + dh), int(x1 - dw), int(y1 - dh)


def test_a_gazex_answer_for_a_mimic_sized_image_maps_to_the_box_gazex_scripts_imply() -> None:
    xs, ys = [812.0, 1203.7, 990.2], [1400.0, 1811.9, 1650.5]  # gaze on a 2544 x 3056 MIMIC image
    x0, y0, x1, y1 = upstream_quarter_box(xs, ys, 0.15)
    answer = f"visual clues : [] observation : [({x0},{y0})({x1},{y1})({(x0 + x1) // 2},{(y0 + y1) // 2})]"
    parsed = parse_attention(answer)
    assert parsed.observation is not None
    frame = DownscaledFrame(4.0, MIMIC_CXR_REFERENCE)
    geometry = ImageGeometry(3056, 2544, frame, input_rows=812, input_columns=672)
    region = geometry.region_to_source(parsed.observation)
    assert region is not None
    # on an image of the reference size the frame is exactly "source pixels / 4"
    assert (region.box.x0, region.box.y0, region.box.x1, region.box.y1) == (4 * x0, 4 * y0, 4 * x1, 4 * y1)
    # and the box covers the gaze to within two quarter cells: one for the grid, one for int() after
    # the 0.15 % narrowing (upstream's x_max is an inclusive cell index, written as its left edge)
    assert min(xs) - 8 <= region.box.x0 <= min(xs) and max(xs) - 8 <= region.box.x1 <= max(xs)
    assert min(ys) - 8 <= region.box.y0 <= min(ys) and max(ys) - 8 <= region.box.y1 <= max(ys)


def test_the_reference_frame_maps_a_smaller_image_in_proportion() -> None:
    # the NEMA chest CR, 1841 columns x 1955 rows: the same answer lands at the same fraction of the image
    answer = "visual clues : [(100,200)(300,400)(200,300)] observation : [(318,382)(600,700)(477,573)]"
    parsed = parse_attention(answer)
    assert parsed.observation is not None
    with_reference = ImageGeometry(1955, 1841, DownscaledFrame(4.0, MIMIC_CXR_REFERENCE), 756, 728)
    region = with_reference.region_to_source(parsed.observation)
    assert region is not None
    assert region.box.x0 == pytest.approx(318 * 4 * 1841 / 2544)
    assert region.box.y1 == pytest.approx(700 * 4 * 1955 / 3056)
    # the fractions of the image equal those on a MIMIC image (318*4/2544 = 0.5, 382*4/3056 = 0.5)
    assert region.box.x0 / 1841 == pytest.approx(0.5) and region.box.y0 / 1955 == pytest.approx(0.5)
    # without the reference, the same numbers are taken as this image's own pixels / 4: too large, clipped
    plain = ImageGeometry(1955, 1841, DownscaledFrame(4.0), 756, 728).region_to_source(parsed.observation)
    assert plain is not None and plain.box.x1 == 1841 and plain.box.y1 == 1955
    assert region.box.x1 == pytest.approx(600 * 4 * 1841 / 2544) and region.box.x1 < 1841


def test_the_reference_frame_in_gazex_json_and_on_the_command_line() -> None:
    document = gazex_upstream()
    assert document["coordinates"] == {"kind": "downscaled", "factor": 4, "reference": {"width": 2544, "height": 3056}}
    assert parse_gazex_config(document).coordinates == DownscaledFrame(4.0, ReferenceSize(2544, 3056))
    assert parse_frame("downscaled:4@2544x3056") == DownscaledFrame(4.0, ReferenceSize(2544, 3056))
    assert str(DownscaledFrame(4.0, ReferenceSize(2544, 3056))) == "downscaled:4@2544x3056"
    # the training records' description (records.meta.json) reads the same object
    assert frame_from_json(document["coordinates"]) == DownscaledFrame(4.0, ReferenceSize(2544, 3056))
    with pytest.raises(ValueError, match=r"coordinates\.reference must be"):
        frame_from_json({"kind": "downscaled", "factor": 4, "reference": {"width": 2544}})
    with pytest.raises(ValueError, match="reference size '2544' is not WIDTHxHEIGHT"):
        parse_frame("downscaled:4@2544")
    for bad, message in (
        ({"width": 0, "height": 3056}, "coordinates.reference.width must be an integer"),
        ({"width": 2544}, "coordinates.reference is missing the key"),
        ({"width": 2544, "height": 3056, "depth": 1}, "unknown key"),
    ):
        broken = {**document, "coordinates": {"kind": "downscaled", "factor": 4, "reference": bad}}
        with pytest.raises(GazexConfigError, match=message):
            parse_gazex_config(broken)


# -- prompts copied from abbreviated examples --------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "text"),
    [
        ("attention", "Given an X-ray image and a radiologist's description '{sentence}', mimic ... area. ..."),
        ("attention", "Given '{sentence}' \u2026"),
        ("examine", "..."),
    ],
)
def test_a_prompt_with_a_placeholder_ellipsis_is_refused(key: str, text: str) -> None:
    document = gazex_upstream()
    document["prompts"] = {**document["prompts"], key: text}
    with pytest.raises(GazexConfigError, match=f"prompts.{key} .*placeholder"):
        parse_gazex_config(document)


def test_gazex_own_attention_prompt_with_its_inner_ellipsis_is_accepted() -> None:
    assert "...]" in GAZEX_ATTENTION_PROMPT
    assert parse_gazex_config(gazex_upstream()).prompts.attention == GAZEX_ATTENTION_PROMPT
