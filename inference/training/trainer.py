"""``gazex model train``: fine-tune a Qwen2-VL checkpoint on GazeX records, or train one from scratch.

The model starts from one of:

- **a base checkpoint** (``TrainingSettings.base``): a GazeX checkpoint, or a plain Hugging Face
  Qwen2-VL directory of any size (e.g. Qwen2-VL-2B-Instruct), whose weights, tokenizer and image
  processor are used as they are; optionally with LoRA adapters (``peft``) on the language
  model's attention projections, merged into the weights at the end;
- **scratch** (``TrainingSettings.shape``): a new Qwen2-VL of that shape, with a byte-level BPE
  tokenizer learnt from the records (digits stay single tokens), written by
  :func:`inference.testing.make_tiny_checkpoint` to ``<work dir>/init`` and loaded from there
  like any checkpoint.

Each step reads whole images: an image's examine record and (up to ``attention_rows`` of) its
attention records form one batch that shares the image's vision encoding and prompt prefix
(:mod:`inference.training.batching`); ``gradient_accumulation`` images make one optimiser
step.  Prompts are rendered and images prepared by the runtime's own code
(:func:`inference.prompts.render_chat`, :mod:`inference.vision_input`), and the loss is on
the assistant tokens only.  AdamW, linear warm-up then cosine decay, gradient clipping at 1.

The data order is a function of the seed: epoch ``e`` visits the images in the permutation
drawn from ``(seed, e)``, and the attention rows of a visit are drawn from ``(seed, e,
position)``.  Every ``save_every`` steps, and at the end, the work directory gets
``state.pt``: the trainable weights, optimiser, scheduler, random generators, the data
position and the history, written atomically; ``resume`` continues from it and gives the same
result as an uninterrupted run.  The output is a complete GazeX checkpoint whose
``gazex.json`` ``metadata`` records the command, seed, data and metrics.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import os
import platform
import random
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from inference.checkpoint import Checkpoint, open_checkpoint, resolve_checkpoint_path
from inference.config import GAZEX_PROMPTS, GazexConfig, GenerationSettings, ImageSettings, Prompts
from inference.engine import InferenceError
from inference.geometry import CoordinateFrame
from inference.labeller import label_sentence
from inference.prompts import IM_END, PromptEncoder
from inference.testing import CheckpointShape, TinyCheckpointOptions, build_tokenizer, make_tiny_checkpoint
from inference.training.batching import (
    TASK_CODES,
    MicroBatch,
    TokenisedRecord,
    answer_lengths,
    digit_token_ids,
    generation_shortfalls,
    plan_micro_batch,
    tokenise_record,
)
from inference.training.data import (
    Task,
    TrainingDataError,
    TrainingRecord,
    corpus,
    file_sha256,
    group_by_image,
    load_display_image,
    read_description,
    read_records,
)
from inference.training.gaze import answer_gaze_targets, sentence_gaze_maps, sentence_key
from inference.training.grounding import grid_positions, grounding_labels, kind_scale, token_targets
from inference.vision_input import ImageProcessing, patchify, resize_for_model, to_uint8

logger = logging.getLogger(__name__)

STATE_FILE = "state.pt"
STATE_FORMAT = 1
INIT_FOLDER = "init"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")


DEFAULT_GENERATION = GenerationSettings(max_new_tokens_examine=512, max_new_tokens_attention=256)


class TrainingError(InferenceError):
    """Training cannot start or go on; the message says what was wrong and what to do."""


@dataclass(frozen=True)
class LoraSettings:
    rank: int = 16
    alpha: float = 32.0
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")


@dataclass(frozen=True)
class TrainingSettings:
    """Everything that decides a training run (the fingerprint checked on resume)."""

    records: Path
    out: Path
    work_dir: Path
    base: str | None = None  # checkpoint directory or builtin:NAME; None: from scratch
    shape: CheckpointShape | None = None  # from scratch
    vocab_size: int = 1024
    coordinates: CoordinateFrame | None = None  # None: the records' description decides
    image: ImageSettings | None = None  # None: the base's gazex.json, or 56x56..224x224 from scratch
    generation: GenerationSettings = DEFAULT_GENERATION
    steps: int = 1000
    learning_rate: float = 1e-3
    min_learning_rate_ratio: float = 0.1
    warmup_steps: int = 100
    weight_decay: float = 0.01
    gradient_accumulation: int = 1
    attention_rows: int | None = None  # attention records per image visit; None: all
    coordinate_weight: float = 1.0
    examine_weight: float = 1.0
    # the first token of each examine sentence (where "present" and "absent" part) weighs this many
    # times the other examine tokens: the few tokens that carry the findings, among many that follow
    # the template
    decision_weight: float = 1.0
    positive_weight: float = 1.0  # further times that where the sentence states a finding present
    observation_weight: float | None = None  # the observation region's digits; None: coordinate_weight
    # examine tokens that name a side ("right", "left", "bilateral") weigh this many times more: the
    # report's laterality, one token per sided finding among many that follow the template
    side_weight: float = 1.0
    freeze_vision: bool = False
    # dense grounding (inference.training.grounding): a training-only head on the image tokens
    vision_steps: int = 0  # first steps train the vision tower alone, vision_batch images each
    vision_batch: int = 16
    grounding_weight: float = 0.0  # the grounding loss's weight beside the language loss afterwards
    # the grounding and presence labels split by the side the sentence names (grounding.py); their
    # losses are scaled so that each label weighs what one finding kind weighs unsplit (kind_scale)
    grounding_sides: bool = False
    # a training-only head reading the image's findings from the language model's hidden state at
    # every examine answer position (so the report is written from the image, not from its prior)
    presence_weight: float = 0.0
    # a training-only head reading each image token's place on the token grid (row and column, 0..1)
    # from the language model's hidden state after position_layer layers: rotary positions move
    # attention weights, not the values attention passes on, so nothing else asks the image tokens
    # to carry where they are in a form the answer's coordinates can be read from
    position_weight: float = 0.0
    position_layer: int = 1
    # gaze-supervised attention (inference.training.gaze): the first gaze_heads heads of every
    # language-model layer but the first look, over the image, where the reader looked while
    # dictating the sentence being written (in the examine answers; optionally also in the attention
    # answers, which are about one sentence each: measured worse for the demo model, MODEL_CARD.md)
    gaze_weight: float = 0.0
    gaze_heads: int = 1
    gaze_tasks: tuple[Task, ...] = ("examine",)
    lora: LoraSettings | None = None
    seed: int = 0
    save_every: int = 100
    log_every: int = 25
    threads: int | None = None
    device: str = "cpu"
    save_dtype: str = "float32"
    name: str = "gazex-trained"
    version: str = "0.1.0"
    manufacturer: str = "GazeX Gateway project"
    description: str = ""
    extra_metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.base is None) == (self.shape is None):
            raise ValueError("give either a base checkpoint or a shape to train from scratch, not both or neither")
        if self.steps < 1 or self.gradient_accumulation < 1 or self.save_every < 1 or self.log_every < 1:
            raise ValueError("steps, gradient_accumulation, save_every and log_every must be at least 1")
        if not (self.learning_rate > 0 and 0 <= self.min_learning_rate_ratio <= 1 and self.warmup_steps >= 0):
            raise ValueError("the learning rate must be positive, its minimum ratio in [0, 1], warm-up >= 0")
        if self.attention_rows is not None and self.attention_rows < 0:
            raise ValueError('Argument "attention_rows" must be at least 0')
        weights = (
            self.coordinate_weight,
            self.examine_weight,
            self.decision_weight,
            self.positive_weight,
            self.side_weight,
        )
        if any(weight <= 0 for weight in weights) or (
            self.observation_weight is not None and self.observation_weight <= 0
        ):
            raise ValueError(
                'Arguments "coordinate_weight", "examine_weight", "decision_weight", "positive_weight", '
                '"side_weight" and "observation_weight" must be positive'
            )
        if not (0 <= self.vision_steps < self.steps) or self.vision_batch < 1:
            raise ValueError("vision_steps must be at least 0 and fewer than steps, vision_batch at least 1")
        if min(self.grounding_weight, self.presence_weight, self.gaze_weight, self.position_weight) < 0:
            raise ValueError("grounding_weight, presence_weight, gaze_weight and position_weight must be at least 0")
        if self.position_layer < 0:
            raise ValueError('Argument "position_layer" must be at least 0')
        if self.gaze_heads < 1:
            raise ValueError('Argument "gaze_heads" must be at least 1')
        if not self.gaze_tasks or set(self.gaze_tasks) - set(TASK_CODES):
            raise ValueError(f'Argument "gaze_tasks" must be some of {", ".join(TASK_CODES)}')
        if self.vision_steps and self.freeze_vision:
            raise ValueError("vision_steps trains the vision tower; it cannot be combined with freeze_vision")
        if self.save_dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError('Argument "save_dtype" must be float32, bfloat16 or float16')

    def fingerprint(self) -> dict[str, Any]:
        """What must not change between a run and its resumption."""
        keep = (
            "base",
            "vocab_size",
            "steps",
            "learning_rate",
            "min_learning_rate_ratio",
            "warmup_steps",
            "weight_decay",
            "gradient_accumulation",
            "attention_rows",
            "coordinate_weight",
            "examine_weight",
            "decision_weight",
            "positive_weight",
            "observation_weight",
            "side_weight",
            "freeze_vision",
            "vision_steps",
            "vision_batch",
            "grounding_weight",
            "grounding_sides",
            "presence_weight",
            "position_weight",
            "position_layer",
            "gaze_weight",
            "gaze_heads",
            "gaze_tasks",
            "seed",
        )
        document = {key: getattr(self, key) for key in keep}
        document["shape"] = asdict(self.shape) if self.shape else None
        document["lora"] = asdict(self.lora) if self.lora else None
        document["coordinates"] = self.coordinates.to_json() if self.coordinates else None
        document["image"] = asdict(self.image) if self.image else None
        normalised: dict[str, Any] = json.loads(json.dumps(document))
        return normalised


@dataclass
class Progress:
    """What a progress display is told after every optimiser step."""

    step: int
    steps: int
    loss: float
    examine_loss: float
    attention_loss: float
    learning_rate: float
    images: int
    seconds: float
    grounding_loss: float = math.nan
    presence_loss: float = math.nan
    gaze_loss: float = math.nan
    position_loss: float = math.nan
    phase: str = "language"


# -- the schedule and the data order ----------------------------------------------------------


def _warmup_cosine(step: int, steps: int, warmup: int, low: float) -> float:
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return low + (1.0 - low) * 0.5 * (1.0 + math.cos(math.pi * progress))


def learning_rate_factor(step: int, settings: TrainingSettings) -> float:
    """Linear warm-up to 1, then cosine decay to ``min_learning_rate_ratio`` at the last step.

    With ``vision_steps``, the vision-only phase and the rest each have their own warm-up and
    decay (the language model starts from the peak rate, not from where the vision phase ended).
    """
    low, vision = settings.min_learning_rate_ratio, settings.vision_steps
    if step < vision:
        return _warmup_cosine(step, vision, min(settings.warmup_steps, vision // 10), low)
    return _warmup_cosine(step - vision, settings.steps - vision, settings.warmup_steps, low)


@dataclass
class DataCursor:
    """Where the run is in its data: epoch ``epoch``, ``position`` images into its permutation."""

    seed: int
    images: int
    epoch: int = 0
    position: int = 0

    def order(self) -> npt.NDArray[np.int64]:
        permutation: npt.NDArray[np.int64] = np.random.default_rng([self.seed, self.epoch]).permutation(self.images)
        return permutation

    def next(self) -> tuple[int, np.random.Generator]:
        """The next image index, and the generator for this visit's choices."""
        if self.position >= self.images:
            self.epoch += 1
            self.position = 0
        image = int(self.order()[self.position])
        rng = np.random.default_rng([self.seed, self.epoch, self.position])
        self.position += 1
        return image, rng


def reports_a_finding(record: TrainingRecord) -> bool:
    """Whether an attention record's sentence reports a finding as present (the labeller's reading)."""
    if record.sentence is None:
        return False
    label = label_sentence(record.sentence)
    return label.present and label.label not in ("other", "no_finding")


def choose_rows(records: Sequence[TrainingRecord], limit: int | None, rng: np.random.Generator) -> list[TrainingRecord]:
    """An image's examine records and up to ``limit`` of its attention records, in file order.

    Sentences that report a finding are chosen first (they carry the observation boxes that
    matter most), the rest at random by ``rng``.
    """
    examine = [r for r in records if r.task == "examine"]
    attention = [r for r in records if r.task == "attention"]
    if limit is not None and len(attention) > limit:
        positive = [i for i, r in enumerate(attention) if reports_a_finding(r)]
        others = [i for i, r in enumerate(attention) if not reports_a_finding(r)]
        order = list(rng.permutation(positive)) + list(rng.permutation(others))
        chosen = sorted(int(i) for i in order[:limit])
        attention = [attention[i] for i in chosen]
    return examine + attention


# -- the starting checkpoint --------------------------------------------------------------------


@dataclass(frozen=True)
class Start:
    """The checkpoint training starts from, and the GazeX configuration the result will have."""

    checkpoint: Checkpoint
    gazex: GazexConfig
    base: GazexConfig | None = None  # the base checkpoint's own gazex.json, where it has one


def _resolve_data(settings: TrainingSettings, base_gazex: GazexConfig | None) -> tuple[CoordinateFrame, Prompts]:
    description = read_description(settings.records)
    if description is not None:
        frame = description.coordinates
        if settings.coordinates is not None and settings.coordinates != frame:
            raise TrainingError(
                f"--coordinates {settings.coordinates} contradicts {settings.records}'s description ({frame}); "
                "the checkpoint must declare the frame its records were written in"
            )
        return frame, description.prompts
    frame_or_none = settings.coordinates or (base_gazex.coordinates if base_gazex else None)
    if frame_or_none is None:
        raise TrainingError(
            f"{settings.records} has no description (.meta.json) saying its coordinate frame; "
            "give --coordinates as it was converted (e.g. downscaled:4)"
        )
    return frame_or_none, base_gazex.prompts if base_gazex else GAZEX_PROMPTS


def _gazex_config(
    settings: TrainingSettings, frame: CoordinateFrame, prompts: Prompts, image: ImageSettings
) -> GazexConfig:
    return GazexConfig(
        name=settings.name,
        version=settings.version,
        manufacturer=settings.manufacturer,
        description=settings.description,
        prompts=prompts,
        coordinates=frame,
        generation=settings.generation,
        image=image,
    )


def _base_identity(settings: TrainingSettings, start: Start) -> dict[str, Any]:
    """Which weights a fine-tune started from: ``builtin:NAME`` or a directory names whatever is there at
    the time, so the metadata also keeps the base's weights digest and, for a GazeX checkpoint, its name
    and version."""
    if settings.base is None:
        return {}
    return {
        "base_weights_sha256": start.checkpoint.weights_sha256,
        "base_name": start.base.name if start.base else None,
        "base_version": start.base.version if start.base else None,
    }


def prepare_start(settings: TrainingSettings, records_text: Callable[[Prompts], list[TrainingRecord]]) -> Start:
    """Open the base checkpoint, or write the scratch one into ``<work dir>/init`` (once)."""
    if settings.base is not None:
        # a plain Hugging Face Qwen2-VL directory has no gazex.json: the records and settings make one
        has_gazex = (resolve_checkpoint_path(settings.base) / "gazex.json").is_file()
        base_gazex = open_checkpoint(settings.base).gazex if has_gazex else None
        frame, prompts = _resolve_data(settings, base_gazex)
        image = settings.image or (base_gazex.image if base_gazex else ImageSettings(3136, 589824))
        gazex = _gazex_config(settings, frame, prompts, image)
        return Start(open_checkpoint(settings.base, gazex=gazex), gazex, base_gazex)

    assert settings.shape is not None
    frame, prompts = _resolve_data(settings, None)
    image = settings.image or ImageSettings(56 * 56, 224 * 224)
    gazex = _gazex_config(settings, frame, prompts, image)
    init = settings.work_dir / INIT_FOLDER
    if not (init / "gazex.json").is_file():
        tokenizer = build_tokenizer(settings.vocab_size, corpus(records_text(prompts), prompts))
        options = TinyCheckpointOptions(
            name=gazex.name,
            version=gazex.version,
            manufacturer=gazex.manufacturer,
            description=gazex.description,
            prompts=prompts,
            coordinates=frame,
            generation=settings.generation,
            image=image,
        )
        partial = settings.work_dir / f"{INIT_FOLDER}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        make_tiny_checkpoint(partial, shape=settings.shape, options=options, seed=settings.seed, tokenizer=tokenizer)
        partial.rename(init)
    return Start(open_checkpoint(init, gazex=gazex), gazex)


# -- the model side ----------------------------------------------------------------------------


def _require_peft() -> Any:
    try:
        import peft
    except ImportError:
        raise TrainingError(
            "LoRA needs the peft package, which is not installed; install it with "
            "pip install 'gazex-gateway[train]' (or pip install peft), or train without --lora"
        ) from None
    return peft


def _attach_lora(model: Any, lora: LoraSettings) -> Any:
    peft = _require_peft()
    config = peft.LoraConfig(
        r=lora.rank,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=r".*language_model.*\.(" + "|".join(lora.target_modules) + r")$",
    )
    return peft.get_peft_model(model, config)


class _Model:
    """The Qwen2-VL pieces training drives (the same modules the runtime's backend uses)."""

    def __init__(self, model: Any) -> None:
        import torch

        self.torch = torch
        self.model = model
        self.visual = model.model.visual
        self.text = model.model.language_model
        self.lm_head = model.lm_head
        self.device = next(model.parameters()).device
        parameters = inspect.signature(self.text.forward).parameters
        self.cache_argument = "cache" if "cache" in parameters else "past_key_values"

    def tensor(self, array: np.ndarray[Any, Any]) -> Any:
        return self.torch.from_numpy(np.ascontiguousarray(array)).to(self.device)

    def image_tokens(self, pixel_values: npt.NDArray[np.float32], grid: npt.NDArray[np.int64]) -> Any:
        """The merged image tokens the language model receives, (tokens, hidden), images in order."""
        output = self.visual(self.tensor(pixel_values).to(self.visual.dtype), grid_thw=self.tensor(grid))
        return getattr(output, "pooler_output", output)

    def loss(
        self,
        batch: MicroBatch,
        pixel_values: npt.NDArray[np.float32],
        grid: npt.NDArray[np.int64],
        *,
        attentions: bool = False,
        image_layer: int | None = None,
    ) -> tuple[Any, Any, Any, Any, Any]:
        """Per-target cross-entropy (unweighted), shape (N,), the image tokens, the language
        model's last hidden state at each target's position, (N, hidden), with ``attentions``
        the suffix's attention weights per layer, (rows, heads, suffix, prefix + suffix) each
        (else None; they need the eager attention, :meth:`eager_text_attention`), and with
        ``image_layer`` the language model's hidden state at the image tokens after that many
        layers, (tokens, hidden) (else None)."""
        from transformers import DynamicCache

        torch = self.torch
        tensor = self.tensor
        plan = batch.plan
        image = self.image_tokens(pixel_values, grid)
        embed = self.text.embed_tokens
        prefix = embed(tensor(plan.prefix_ids)[None])
        before, after = prefix[:, : plan.image_slice.start], prefix[:, plan.image_slice.stop :]
        prefix = torch.cat([before, image[None].to(prefix.dtype), after], dim=1)
        cache = DynamicCache(config=self.model.config)
        prefix_output = self.text(
            inputs_embeds=prefix,
            position_ids=tensor(plan.prefix_positions)[:, None, :],
            use_cache=True,
            output_hidden_states=image_layer is not None,
            **{self.cache_argument: cache},
        )
        image_hidden = None
        if image_layer is not None:
            image_hidden = prefix_output.hidden_states[image_layer][0, plan.image_slice]
        if plan.batch_size > 1:
            cache.batch_repeat_interleave(plan.batch_size)
        output = self.text(
            inputs_embeds=embed(tensor(plan.suffix_ids)),
            position_ids=tensor(plan.suffix_positions),
            attention_mask=tensor(plan.attention_mask),
            use_cache=True,
            output_attentions=attentions,
            **{self.cache_argument: cache},
        )
        selected = output.last_hidden_state[tensor(batch.target_rows), tensor(batch.target_positions)]
        logits = self.lm_head(selected).float()
        losses = torch.nn.functional.cross_entropy(logits, tensor(batch.target_ids), reduction="none")
        weights = output.attentions if attentions else None
        if attentions and (not weights or any(w is None for w in weights)):
            raise TrainingError("the language model returned no attention weights; use eager attention")
        return losses, image, selected, weights, image_hidden

    def eager_text_attention(self) -> None:
        """Make the language model compute its attention weights explicitly (so they can be read
        and supervised); the vision tower keeps its own implementation."""
        self.text.config._attn_implementation = "eager"

    def gaze_loss(
        self,
        weights: Sequence[Any],
        batch: MicroBatch,
        targets: tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]],
        heads: int,
    ) -> Any:
        """Cross-entropy between the gaze maps and the supervised heads' attention over the image
        tokens (renormalised there), minus the maps' entropy (so 0 when they agree), averaged over
        the supervised positions, heads and layers (all but the first)."""
        torch = self.torch
        indices, maps = targets
        rows = self.tensor(batch.target_rows[indices])
        positions = self.tensor(batch.target_positions[indices])
        image = batch.plan.image_slice
        target = self.tensor(maps)[:, None, :]
        entropy = -(target * torch.log(target.clamp_min(1e-12))).sum(-1)
        total = []
        for layer in weights[1:]:
            attention = layer[rows, :heads, positions][..., image.start : image.stop].float()
            attention = attention / attention.sum(-1, keepdim=True).clamp_min(1e-12)
            cross = -(target * torch.log(attention.clamp_min(1e-12))).sum(-1)
            total.append((cross - entropy).mean())
        return torch.stack(total).mean()


@dataclass
class _ImageData:
    """An image resized for the model (8-bit), kept in memory, and its records' tokens."""

    pixels: npt.NDArray[np.uint8]
    grid: npt.NDArray[np.int64]
    records: list[TrainingRecord]
    source_shape: tuple[int, int]  # rows, columns of the image the records' coordinates refer to
    tokens: dict[int, TokenisedRecord] = field(default_factory=dict)
    targets: npt.NDArray[np.float32] | None = None  # grounding targets, made on first use
    gaze_maps: dict[str, npt.NDArray[np.float32]] | None = None  # per sentence, made on first use
    gaze: dict[int, tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]] = field(default_factory=dict)


class _Data:
    """The records grouped by image; images are read and resized on first use, tokens on first use."""

    def __init__(self, records: list[TrainingRecord], start: Start, settings: TrainingSettings) -> None:
        self.groups = group_by_image(records)
        self.processing: ImageProcessing = start.checkpoint.processing
        self.tokenizer = start.checkpoint.tokenizer
        self.encoder = PromptEncoder(self.tokenizer, start.gazex.prompts.examine, start.gazex.prompts.attention)
        self.spec = start.checkpoint.tokens
        self.settings = settings
        self.digits = digit_token_ids(self.tokenizer)
        self.frame = start.gazex.coordinates
        self.grounding = grounding_labels(records, settings.grounding_sides)
        self.kind_scale = kind_scale(self.grounding)  # labels per finding kind: > 1 only with sides
        self._cache: dict[int, _ImageData] = {}

    def __len__(self) -> int:
        return len(self.groups)

    def image(self, index: int) -> _ImageData:
        cached = self._cache.get(index)
        if cached is None:
            path, records = self.groups[index]
            display = load_display_image(path)
            pixels = resize_for_model(to_uint8(display), self.processing)
            p = self.processing.patch_size
            grid = np.array([[1, pixels.shape[0] // p, pixels.shape[1] // p]], dtype=np.int64)
            cached = _ImageData(pixels, grid, records, (int(display.shape[0]), int(display.shape[1])))
            self._cache[index] = cached
        return cached

    def grounding_targets(self, index: int) -> npt.NDArray[np.float32]:
        """The image's per-token grounding targets (:mod:`inference.training.grounding`)."""
        data = self.image(index)
        if data.targets is None:
            rows, columns = data.source_shape
            data.targets = token_targets(
                data.records, self.grounding, self.frame, rows, columns, self._grid(data), self.settings.grounding_sides
            )
        return data.targets

    def _grid(self, data: _ImageData) -> tuple[int, int]:
        m = self.processing.merge_size
        return int(data.grid[0, 1]) // m, int(data.grid[0, 2]) // m

    def gaze_targets(
        self, index: int, records: Sequence[TrainingRecord]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """The supervised targets of a micro-batch of ``records`` (in its order) and their gaze
        maps (:mod:`inference.training.gaze`), for the ``gaze_tasks``: the examine answers' tokens
        whose sentence has a map, and every target of an attention record whose sentence has one."""
        data = self.image(index)
        if data.gaze_maps is None:
            rows, columns = data.source_shape
            data.gaze_maps = sentence_gaze_maps(data.records, self.frame, rows, columns, self._grid(data))
        indices, maps, offset = [], [], 0
        for record in records:
            count = data.tokens[record.index].target_count
            found = data.gaze.get(record.index)
            if found is None and record.task in self.settings.gaze_tasks:
                if record.task == "examine":
                    encoded = self.tokenizer.encode(record.answer + IM_END, add_special_tokens=False)
                    starts = [start for start, _ in encoded.offsets]
                    found = answer_gaze_targets(record.answer, starts, data.gaze_maps)
                else:
                    sentence_map = data.gaze_maps.get(sentence_key(record.sentence or ""))
                    found = (
                        (np.arange(count, dtype=np.int64), np.tile(sentence_map, (count, 1)))
                        if sentence_map is not None
                        else (np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32))
                    )
                data.gaze[record.index] = found
            if found is not None and len(found[0]):
                indices.append(found[0] + offset)
                maps.append(found[1])
            offset += count
        if not indices:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
        return np.concatenate(indices), np.concatenate(maps)

    def vision_batch(self, indices: Sequence[int]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """The images' patches and grids, concatenated as the vision tower takes several images."""
        patched = [patchify(self.image(index).pixels, self.processing) for index in indices]
        return np.concatenate([p for p, _ in patched]), np.concatenate([g for _, g in patched])

    def micro_batch(
        self, index: int, rng: np.random.Generator
    ) -> tuple[MicroBatch, npt.NDArray[np.float32], Any, list[TrainingRecord]]:
        """The image's batch of this visit, its patches and grid, and the records in the batch's order."""
        data = self.image(index)
        image_tokens = int(data.grid[0].prod()) // (self.processing.merge_size**2)
        rows = choose_rows(data.records, self.settings.attention_rows, rng)
        tokenised = []
        for record in rows:
            cached = data.tokens.get(record.index)
            if cached is None:
                cached = tokenise_record(
                    record,
                    self.encoder,
                    self.tokenizer,
                    image_tokens,
                    coordinate_weight=self.settings.coordinate_weight,
                    examine_weight=self.settings.examine_weight,
                    decision_weight=self.settings.decision_weight,
                    positive_weight=self.settings.positive_weight,
                    observation_weight=self.settings.observation_weight,
                    side_weight=self.settings.side_weight,
                    digit_ids=self.digits,
                )
                data.tokens[record.index] = cached
            tokenised.append(cached)
        pixel_values, grid = patchify(data.pixels, self.processing)
        return plan_micro_batch(tokenised, grid, self.spec), pixel_values, grid, rows


# -- state ---------------------------------------------------------------------------------------


def _rng_state() -> dict[str, Any]:
    import torch

    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def _set_rng_state(state: Mapping[str, Any]) -> None:
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def _save_state(path: Path, state: dict[str, Any]) -> None:
    import torch

    partial = path.with_name(path.name + ".partial")
    torch.save(state, partial)
    os.replace(partial, path)


def _trainable(model: Any) -> dict[str, Any]:
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def _load_state(path: Path) -> dict[str, Any]:
    import torch

    try:
        state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError) as exc:
        raise TrainingError(f"{path}: cannot read the training state ({exc}); start again without --resume") from exc
    if state.get("format") != STATE_FORMAT:
        raise TrainingError(f"{path}: not a training state of this version; start again without --resume")
    return state


# -- the output ---------------------------------------------------------------------------------


def trained_labels(records: Sequence[TrainingRecord]) -> list[str]:
    """The finding labels the examine answers state as present (what the model was trained to find)."""
    from inference.sentences import split_sentences

    labels = set()
    for record in records:
        if record.task == "examine":
            for sentence in split_sentences(record.answer):
                label = label_sentence(sentence)
                if label.present and label.label != "other":
                    labels.add(label.label)
    return sorted(labels)


def write_checkpoint(
    out: Path, model: Any, source: Path, gazex: GazexConfig, metadata: Mapping[str, Any], dtype: str
) -> None:
    """A complete checkpoint in ``out``: the weights, ``source``'s other files, ``gazex.json``."""
    import torch

    from inference.backends.torch_backend import quiet_transformers

    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for item in sorted(source.iterdir()):
        # the weights and configs are written anew; a base's model card describes other weights
        skip = item.name in (*WEIGHT_FILES, "gazex.json", "config.json", "MODEL_CARD.md", "README.md")
        skip = skip or item.name.startswith("model-")
        if item.is_file() and not skip:
            shutil.copy2(item, partial / item.name)
    with quiet_transformers():
        model.to(getattr(torch, dtype)).save_pretrained(str(partial))
    document = replace(gazex, metadata=dict(metadata)).to_json()
    (partial / "gazex.json").write_text(json.dumps(document, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial.rename(out)


def _json_number(value: float) -> float | None:
    """A loss for the history: rounded, and None where there is none (JSON has no NaN)."""
    return round(value, 5) if math.isfinite(value) else None


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


# -- the loop -------------------------------------------------------------------------------------


def _same_fingerprint(saved: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    """Whether a saved run's fingerprint matches the current settings'.

    A setting added after the run was saved is missing from its fingerprint; the run was made with
    that setting's default, so it matches when the current value is the default too.
    """
    defaults = {item.name: item.default for item in fields(TrainingSettings) if item.default is not MISSING}
    for key in set(saved) | set(current):
        if key in saved and key in current:
            if saved[key] != current[key]:
                return False
        elif key in saved or key not in defaults or current[key] != json.loads(json.dumps(defaults[key])):
            return False
    return True


def _check_state(settings: TrainingSettings, resume: bool) -> dict[str, Any] | None:
    """The saved state to resume from (checked against ``settings``), or None for a new run."""
    state_path = settings.work_dir / STATE_FILE
    if not resume:
        if state_path.exists():
            raise TrainingError(
                f"{settings.work_dir} holds a training state already; pass --resume to continue it, "
                "or choose another --work-dir"
            )
        return None
    if not state_path.is_file():
        raise TrainingError(f"--resume: {state_path} does not exist; start without --resume")
    state = _load_state(state_path)
    if not _same_fingerprint(state["fingerprint"], settings.fingerprint()):
        raise TrainingError(
            f"--resume: the settings differ from those {state_path} was made with; resume with the same "
            "options, or start again in a new --work-dir"
        )
    return state


def _phantom_source(records: Path) -> dict[str, Any] | None:
    """The phantom data set the records were converted from (its seed and count), when they were."""
    description = read_description(records)
    if description is None:
        return None
    manifest = Path(str(description.document.get("source", ""))).parent / "manifest.json"
    try:
        document = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(document, dict) or document.get("generator") != "gazex model phantoms":
        return None
    return {
        "seed": document.get("seed"),
        "count": document.get("count"),
        "report_style": document.get("report_style", "varied"),
        "manifest": str(manifest),
    }


class TrainingRun:
    """One training run: the model, optimiser, schedule and data position, step by step."""

    def __init__(self, settings: TrainingSettings, state: dict[str, Any] | None) -> None:
        import torch

        from inference.backends.torch_backend import load_qwen2_vl, resolve_device

        self.settings = settings
        self.torch = torch
        settings.work_dir.mkdir(parents=True, exist_ok=True)

        def load_records(prompts: Prompts) -> list[TrainingRecord]:
            return read_records(settings.records, prompts)

        self.start = prepare_start(settings, load_records)
        self.records = load_records(self.start.gazex.prompts)
        self.records_sha256 = file_sha256(settings.records)
        if state is not None and state["records_sha256"] != self.records_sha256:
            raise TrainingError(f"--resume: {settings.records} changed since the run started; start again")
        self.data = _Data(self.records, self.start, settings)
        lengths = answer_lengths(self.records, self.data.tokenizer)
        self.answer_tokens = {task: max(found) for task, found in lengths.items() if found}
        for message in generation_shortfalls(lengths, self.start.gazex.generation):
            logger.warning("%s", message)

        model = load_qwen2_vl(self.start.checkpoint.path, resolve_device(settings.device), torch.float32)
        torch.manual_seed(settings.seed)
        self.peft_model = _attach_lora(model, settings.lora) if settings.lora is not None else None
        if settings.freeze_vision:
            for parameter in model.model.visual.parameters():
                parameter.requires_grad_(False)
        model.train()
        self.model = model
        self.wrapper = _Model(model)
        if settings.gaze_weight:
            self._prepare_gaze()
        self.grounding_head, self.presence_head, self.position_head = self._heads()
        self.parameters = [p for p in model.parameters() if p.requires_grad]
        for head in (self.grounding_head, self.presence_head, self.position_head):
            if head is not None:
                self.parameters += list(head.parameters())
        self.optimizer = torch.optim.AdamW(
            [
                {"params": [p for p in self.parameters if p.ndim >= 2], "weight_decay": settings.weight_decay},
                {"params": [p for p in self.parameters if p.ndim < 2], "weight_decay": 0.0},
            ],
            lr=settings.learning_rate,
            betas=(0.9, 0.98),
            eps=1e-8,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: learning_rate_factor(step, settings)
        )
        self.cursor = DataCursor(settings.seed, len(self.data))
        self.history: list[dict[str, Any]] = []
        self.step = 0
        self.tokens = 0
        elapsed = cpu_elapsed = 0.0
        if state is not None:
            self._restore(state)
            elapsed, cpu_elapsed = float(state["seconds"]), float(state["cpu_seconds"])
        self.started = time.perf_counter() - elapsed
        self.cpu_started = time.process_time() - cpu_elapsed
        self.window: dict[str, list[float]] = {
            "loss": [],
            "examine": [],
            "attention": [],
            "grounding": [],
            "presence": [],
            "gaze": [],
            "position": [],
        }

    def _heads(self) -> tuple[Any, Any, Any]:
        """The training-only linear read-outs (not part of the checkpoint): grounding (of the image
        tokens), presence (of the language model's state at the examine answer's positions) and
        position (of the image tokens' state after ``position_layer`` layers); None where unused."""
        settings, torch = self.settings, self.torch
        hidden = int(self.wrapper.text.embed_tokens.embedding_dim)  # what the merger writes, too
        grounding = presence = position = None
        if settings.vision_steps or settings.grounding_weight or settings.presence_weight:
            if not self.data.grounding:
                raise TrainingError(
                    "--vision-steps/--grounding-weight/--presence-weight need attention records that state a "
                    "finding with a region; these records have none"
                )
            labels = len(self.data.grounding)
            if settings.vision_steps or settings.grounding_weight:
                grounding = torch.nn.Linear(hidden, labels).to(self.wrapper.device)
            if settings.presence_weight:
                presence = torch.nn.Linear(hidden, labels).to(self.wrapper.device)
        if settings.position_weight:
            layers = int(self.model.config.text_config.num_hidden_layers)
            if settings.position_layer > layers:
                raise TrainingError(
                    f"--position-layer {settings.position_layer}: the language model has {layers} layers"
                )
            position = torch.nn.Linear(hidden, 2).to(self.wrapper.device)
        return grounding, presence, position

    def _prepare_gaze(self) -> None:
        text = self.model.config.text_config
        heads, layers = int(text.num_attention_heads), int(text.num_hidden_layers)
        if self.settings.gaze_heads > heads or layers < 2:
            raise TrainingError(
                f"--gaze-heads {self.settings.gaze_heads}: the language model has {heads} attention heads and "
                f"{layers} layers; gaze supervision needs at most that many heads and at least 2 layers"
            )
        self.wrapper.eager_text_attention()

    def _restore(self, state: dict[str, Any]) -> None:
        missing = set(_trainable(self.model)) - set(state["model"])
        if missing:
            raise TrainingError(f"the saved state lacks {len(missing)} trainable tensors; start again")
        with self.torch.no_grad():
            named = dict(self.model.named_parameters())
            for name, value in state["model"].items():
                named[name].copy_(value)
        if self.grounding_head is not None:
            self.grounding_head.load_state_dict(state["grounding_head"])
        if self.presence_head is not None:
            self.presence_head.load_state_dict(state["presence_head"])
        if self.position_head is not None:
            self.position_head.load_state_dict(state["position_head"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        self.cursor = DataCursor(self.settings.seed, len(self.data), state["epoch"], state["position"])
        self.history = list(state["history"])
        self.step = int(state["step"])
        self.tokens = int(state["tokens"])
        logger.info("resumed at step %d (epoch %d, image %d)", self.step, self.cursor.epoch, self.cursor.position)

    def snapshot(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "fingerprint": self.settings.fingerprint(),
            "records_sha256": self.records_sha256,
            "step": self.step,
            "epoch": self.cursor.epoch,
            "position": self.cursor.position,
            "model": _trainable(self.model),
            "grounding_head": self.grounding_head.state_dict() if self.grounding_head is not None else None,
            "presence_head": self.presence_head.state_dict() if self.presence_head is not None else None,
            "position_head": self.position_head.state_dict() if self.position_head is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": _rng_state(),
            "history": self.history,
            "seconds": time.perf_counter() - self.started,
            "cpu_seconds": time.process_time() - self.cpu_started,
            "tokens": self.tokens,
        }

    def grounding_loss(self, image: Any, indices: Sequence[int]) -> Any:
        """Binary cross-entropy of the grounding head on the images' tokens (mean over cells; over
        labels, times the labels per finding kind: see :func:`~inference.training.grounding.kind_scale`)."""
        assert self.grounding_head is not None
        targets = np.concatenate([self.data.grounding_targets(index) for index in indices])
        logits = self.grounding_head(image.float())
        loss = self.torch.nn.functional.binary_cross_entropy_with_logits(logits, self.wrapper.tensor(targets))
        return loss * self.data.kind_scale

    def presence_loss(self, hidden: Any, index: int) -> Any:
        """Binary cross-entropy of the presence head at each examine answer position: which findings
        the image holds (the labels its grounding targets mark anywhere); scaled as the grounding loss."""
        assert self.presence_head is not None
        present = self.data.grounding_targets(index).max(axis=0)
        targets = self.wrapper.tensor(np.broadcast_to(present, (hidden.shape[0], present.shape[0])))
        logits = self.presence_head(hidden.float())
        return self.torch.nn.functional.binary_cross_entropy_with_logits(logits, targets) * self.data.kind_scale

    def position_loss(self, hidden: Any, grid: npt.NDArray[np.int64]) -> Any:
        """Mean squared error of the position head: each image token's row and column on the merged
        token grid, as fractions of the grid's sides (cell centres), tokens in row-major order."""
        assert self.position_head is not None
        merge = self.data.processing.merge_size
        _, height, width = (int(v) // f for v, f in zip(grid[0], (1, merge, merge), strict=True))
        targets = grid_positions(height, width)
        predicted = self.position_head(hidden.float())
        return self.torch.nn.functional.mse_loss(predicted, self.wrapper.tensor(targets))

    def run_step(self) -> Progress:
        """One optimiser step: ``vision_batch`` images of grounding alone in the vision phase, else
        ``gradient_accumulation`` images of language loss (plus the grounding loss when weighted)."""
        if self.step < self.settings.vision_steps:
            return self._vision_step()
        if self.step == self.settings.vision_steps:
            self.window["loss"] = []  # the language phase's loss is another quantity
        torch = self.torch
        settings = self.settings
        self.optimizer.zero_grad(set_to_none=True)
        sums = dict.fromkeys(
            (
                "loss",
                *("examine", "examine_n", "attention", "attention_n"),
                *("grounding", "presence", "presence_n", "gaze", "gaze_n", "position", "position_n"),
            ),
            0.0,
        )
        for _ in range(settings.gradient_accumulation):
            index, rng = self.cursor.next()
            batch, pixel_values, grid, rows = self.data.micro_batch(index, rng)
            gazing = settings.gaze_weight > 0
            losses, image, hidden, attentions, image_hidden = self.wrapper.loss(
                batch,
                pixel_values,
                grid,
                attentions=gazing,
                image_layer=settings.position_layer if self.position_head is not None else None,
            )
            weights = torch.from_numpy(batch.target_weights).to(losses.device)
            loss = (losses * weights).sum() / weights.sum()
            if gazing:
                targets = self.data.gaze_targets(index, rows)
                if len(targets[0]):
                    gaze = self.wrapper.gaze_loss(attentions, batch, targets, settings.gaze_heads)
                    sums["gaze"] += float(gaze.detach())
                    sums["gaze_n"] += 1.0
                    loss = loss + settings.gaze_weight * gaze
            if settings.grounding_weight:
                grounding = self.grounding_loss(image, [index])
                sums["grounding"] += float(grounding.detach()) / settings.gradient_accumulation
                loss = loss + settings.grounding_weight * grounding
            if self.presence_head is not None:
                examine = torch.from_numpy(batch.target_tasks == TASK_CODES["examine"]).to(hidden.device)
                if bool(examine.any()):
                    presence = self.presence_loss(hidden[examine], index)
                    sums["presence"] += float(presence.detach())
                    sums["presence_n"] += 1.0
                    loss = loss + settings.presence_weight * presence
            if self.position_head is not None:
                position = self.position_loss(image_hidden, grid)
                sums["position"] += float(position.detach())
                sums["position_n"] += 1.0
                loss = loss + settings.position_weight * position
            (loss / settings.gradient_accumulation).backward()
            detached = losses.detach().cpu().numpy()
            for task, code in TASK_CODES.items():
                chosen = batch.target_tasks == code
                sums[task] += float(detached[chosen].sum())
                sums[f"{task}_n"] += float(chosen.sum())
            sums["loss"] += float(loss.detach()) / settings.gradient_accumulation
            self.tokens += batch.tokens
        if settings.grounding_weight:
            sums["grounding_n"] = 1.0
        return self._finish_step(sums, "language")

    def _vision_step(self) -> Progress:
        """A step of the vision phase: the grounding loss of ``vision_batch`` images."""
        self.optimizer.zero_grad(set_to_none=True)
        indices = [self.cursor.next()[0] for _ in range(self.settings.vision_batch)]
        image = self.wrapper.image_tokens(*self.data.vision_batch(indices))
        loss = self.grounding_loss(image, indices)
        loss.backward()
        value = float(loss.detach())
        sums = {"loss": value, "grounding": value, "grounding_n": 1.0, "examine_n": 0.0, "attention_n": 0.0}
        return self._finish_step(sums, "vision")

    @property
    def images_seen(self) -> int:
        settings = self.settings
        vision = min(self.step, settings.vision_steps)
        return vision * settings.vision_batch + (self.step - vision) * settings.gradient_accumulation

    def _finish_step(self, sums: dict[str, float], phase: str) -> Progress:
        torch, settings = self.torch, self.settings
        torch.nn.utils.clip_grad_norm_(self.parameters, 1.0)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1

        keep = settings.log_every
        self.window["loss"] = [*self.window["loss"][-keep + 1 :], sums["loss"]]
        for task in ("examine", "attention", "grounding", "presence", "gaze", "position"):
            if sums.get(f"{task}_n"):
                self.window[task] = [*self.window[task][-keep + 1 :], sums[task] / sums[f"{task}_n"]]
        report = Progress(
            step=self.step,
            steps=settings.steps,
            loss=float(np.mean(self.window["loss"])),
            examine_loss=float(np.mean(self.window["examine"] or [math.nan])),
            attention_loss=float(np.mean(self.window["attention"] or [math.nan])),
            grounding_loss=float(np.mean(self.window["grounding"] or [math.nan])),
            presence_loss=float(np.mean(self.window["presence"] or [math.nan])),
            gaze_loss=float(np.mean(self.window["gaze"] or [math.nan])),
            position_loss=float(np.mean(self.window["position"] or [math.nan])),
            phase=phase,
            learning_rate=float(self.scheduler.get_last_lr()[0]),
            images=self.images_seen,
            seconds=time.perf_counter() - self.started,
        )
        if self.step % keep == 0 or self.step == settings.steps:
            entry = {**asdict(report), "load_average": _load_average(), "epoch": self.cursor.epoch}
            self.history.append({k: _json_number(v) if isinstance(v, float) else v for k, v in entry.items()})
        if self.step % settings.save_every == 0 or self.step == settings.steps:
            _save_state(settings.work_dir / STATE_FILE, self.snapshot())
        return report

    def metadata(self, final: Any, command: Sequence[str] | None) -> dict[str, Any]:
        settings = self.settings
        description = read_description(settings.records)
        loads = [h["load_average"] for h in self.history if h.get("load_average") is not None]
        last = self.history[-1] if self.history else {}
        return {
            "kind": "trained by gazex model train",
            "command": list(command) if command is not None else None,
            "seed": settings.seed,
            "data": {
                "records": str(settings.records),
                "records_sha256": self.records_sha256,
                "records_count": len(self.records),
                "images": len(self.data),
                "examine_records": sum(1 for r in self.records if r.task == "examine"),
                "attention_records": sum(1 for r in self.records if r.task == "attention"),
                "longest_answer_tokens": self.answer_tokens,
                "description": dict(description.document) if description is not None else None,
                "phantoms": _phantom_source(settings.records),
            },
            "trained_labels": trained_labels(self.records),
            "grounding": {
                "labels": self.data.grounding,
                "heads": [
                    name for name in ("grounding", "presence", "position") if getattr(self, f"{name}_head") is not None
                ],
            }
            if self.grounding_head is not None or self.presence_head is not None or self.position_head is not None
            else None,
            "start": {
                "base": settings.base,
                **_base_identity(settings, self.start),
                "shape": asdict(settings.shape) if settings.shape else None,
            },
            "settings": settings.fingerprint(),
            "metrics": {
                "steps": self.step,
                "images_seen": self.images_seen,
                "epochs": round(self.images_seen / max(1, len(self.data)), 3),
                "tokens_seen": self.tokens,
                "final_loss": last.get("loss"),
                "final_examine_loss": last.get("examine_loss"),
                "final_attention_loss": last.get("attention_loss"),
                "wall_seconds": round(time.perf_counter() - self.started, 1),
                "cpu_seconds": round(time.process_time() - self.cpu_started, 1),
                "load_average_mean": round(float(np.mean(loads)), 2) if loads else None,
                "load_average_max": round(float(np.max(loads)), 2) if loads else None,
                "parameters": sum(p.numel() for p in final.parameters()),
                "history": self.history,
            },
            "environment": {
                "python": platform.python_version(),
                "torch": self.torch.__version__,
                "threads": self.torch.get_num_threads(),
                "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
            },
            **dict(settings.extra_metadata),
        }

    def finish(self, command: Sequence[str] | None) -> dict[str, Any]:
        """Write the output checkpoint (LoRA merged); returns its metadata."""
        final = self.peft_model.merge_and_unload() if self.peft_model is not None else self.model
        final.eval()
        metadata = self.metadata(final, command)
        write_checkpoint(
            self.settings.out, final, self.start.checkpoint.path, self.start.gazex, metadata, self.settings.save_dtype
        )
        logger.info("wrote %s after %d steps", self.settings.out, self.step)
        return metadata


def train(
    settings: TrainingSettings,
    *,
    resume: bool = False,
    progress: Callable[[Progress], None] | None = None,
    command: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Train, checkpointing into ``settings.work_dir``; write the result to ``settings.out``.

    Returns the metadata recorded in the output's ``gazex.json``.
    """
    import torch

    if not settings.records.is_file():
        raise TrainingDataError(f"{settings.records}: no such records file; make one with gazex model convert")
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    run = TrainingRun(settings, _check_state(settings, resume))
    while run.step < settings.steps:
        report = run.run_step()
        if progress is not None:
            progress(report)
    return run.finish(command)
