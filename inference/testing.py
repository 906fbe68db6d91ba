"""Test doubles and test checkpoints.

- :class:`FakeEngine` returns a fixed analysis, for gateway tests that must not depend on a model;
- :func:`make_tiny_checkpoint` writes a random-weight Qwen2-VL checkpoint with a ``gazex.json``
  that loads through exactly the same :func:`inference.load_engine` path as a real one.  Its
  size is a :class:`CheckpointShape`: :data:`TINY_SHAPE` for tests, :data:`QWEN2_VL_2B_SHAPE`
  for benchmarks shaped like Qwen2-VL-2B;
- :class:`ScriptedBackend` answers with fixed texts, to test the pipeline around the model.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

from inference.config import GAZEX_PROMPTS, GazexConfig, GenerationSettings, ImageSettings, Prompts
from inference.engine import InferenceError
from inference.generation import Generation, GenerationRequest
from inference.geometry import CoordinateFrame, DownscaledFrame
from inference.prompts import (
    GAZEX_ATTENTION_PROMPT,
    GAZEX_EXAMINE_PROMPT,
    QWEN2_VL_CHAT_TEMPLATE,
    QWEN2_VL_SPECIAL_TOKENS,
    SENTENCE_SLOT,
)
from inference.results import (
    Box,
    Finding,
    Fixation,
    ImageAnalysis,
    ModelIdentity,
    Point,
    Region,
    StudyAnalysis,
)
from inference.vision_input import CLIP_MEAN, CLIP_STD

FAKE_IDENTITY = ModelIdentity(
    name="gazex-fake",
    version="0",
    checkpoint_sha256="0" * 64,
    backend="fake",
    manufacturer="GazeX Gateway project",
)


def _region(columns: int, rows: int, fx0: float, fy0: float, fx1: float, fy1: float) -> Region:
    box = Box(fx0 * columns, fy0 * rows, fx1 * columns, fy1 * rows)
    return Region(box=box, centroid=box.center)


def fixed_image_analysis(sop_instance_uid: str, rows: int, columns: int) -> ImageAnalysis:
    """A fixed, plausible analysis scaled to an image of ``rows`` x ``columns``.

    Findings: a right pleural effusion (present, two clues), a normal heart size (absent),
    and no pneumothorax (absent).  The trajectory runs through every clue centroid.
    """
    effusion_clues = (
        _region(columns, rows, 0.10, 0.62, 0.30, 0.80),
        _region(columns, rows, 0.12, 0.70, 0.35, 0.88),
    )
    heart_clues = (_region(columns, rows, 0.38, 0.45, 0.70, 0.75),)
    lung_clues = (
        _region(columns, rows, 0.10, 0.15, 0.45, 0.55),
        _region(columns, rows, 0.55, 0.15, 0.90, 0.55),
    )
    findings = (
        Finding(
            text="Small right pleural effusion.",
            label="pleural_effusion",
            present=True,
            observation=_region(columns, rows, 0.08, 0.60, 0.36, 0.90),
            clues=effusion_clues,
        ),
        Finding(
            text="The heart size is normal.",
            label="cardiomegaly",
            present=False,
            observation=_region(columns, rows, 0.36, 0.42, 0.72, 0.78),
            clues=heart_clues,
        ),
        Finding(
            text="No pneumothorax.",
            label="pneumothorax",
            present=False,
            observation=_region(columns, rows, 0.08, 0.10, 0.92, 0.60),
            clues=lung_clues,
        ),
    )
    trajectory: list[Fixation] = []
    for finding in findings:
        for clue in finding.clues:
            trajectory.append(Fixation(index=len(trajectory) + 1, point=clue.centroid, region=clue))
    return ImageAnalysis(
        sop_instance_uid=sop_instance_uid,
        rows=rows,
        columns=columns,
        report=" ".join(f.text for f in findings),
        findings=findings,
        trajectory=tuple(trajectory),
    )


class FakeEngine:
    """Returns :func:`fixed_image_analysis` for every image, without a model.

    ``fail_with`` makes :meth:`analyze` raise :class:`InferenceError`, for testing the
    gateway's handling of model errors.
    """

    def __init__(self, identity: ModelIdentity = FAKE_IDENTITY, fail_with: str | None = None) -> None:
        self._identity = identity
        self.fail_with = fail_with
        self.calls = 0

    @property
    def identity(self) -> ModelIdentity:
        return self._identity

    def analyze(self, datasets: Sequence[Dataset]) -> StudyAnalysis:
        self.calls += 1
        started = time.perf_counter()
        if self.fail_with is not None:
            raise InferenceError(self.fail_with)
        if not datasets:
            raise InferenceError("analyze() needs at least one image")
        studies = {str(ds.StudyInstanceUID) for ds in datasets}
        if len(studies) != 1:
            raise InferenceError(f"analyze() takes one study at a time, got {len(studies)}")
        images = tuple(fixed_image_analysis(str(ds.SOPInstanceUID), int(ds.Rows), int(ds.Columns)) for ds in datasets)
        return StudyAnalysis(
            study_instance_uid=studies.pop(),
            images=images,
            model=self._identity,
            seconds=time.perf_counter() - started,
        )


# -- tiny checkpoints ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckpointShape:
    """The sizes of a Qwen2-VL model; the defaults make a tiny one for tests.

    ``model_vocab_size`` None sizes the embeddings to the tokenizer; a larger value pads them,
    as Qwen2-VL does (151936 rows for 151665 tokens).
    """

    hidden_size: int = 64
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    intermediate_size: int = 128
    vision_depth: int = 2
    vision_embed_dim: int = 32
    vision_num_heads: int = 2
    vision_mlp_ratio: int = 2
    tokenizer_vocab_size: int = 1024
    model_vocab_size: int | None = None
    tie_word_embeddings: bool = False
    rope_theta: float = 1_000_000.0
    max_position_embeddings: int = 32768
    initializer_range: float = 0.02

    def mrope_section(self) -> list[int]:
        """Qwen2-VL's split of the rotary frequencies into (temporal, height, width): 1/4, 3/8, 3/8."""
        half = self.hidden_size // self.num_attention_heads // 2
        temporal = half // 4
        height = (half - temporal) // 2
        return [temporal, height, half - temporal - height]


TINY_SHAPE = CheckpointShape()

#: Qwen2-VL-2B-Instruct's sizes (config.json of Qwen/Qwen2-VL-2B-Instruct).
QWEN2_VL_2B_SHAPE = CheckpointShape(
    hidden_size=1536,
    num_hidden_layers=28,
    num_attention_heads=12,
    num_key_value_heads=2,
    intermediate_size=8960,
    vision_depth=32,
    vision_embed_dim=1280,
    vision_num_heads=16,
    vision_mlp_ratio=4,
    model_vocab_size=151936,
    tie_word_embeddings=True,
)

SHAPES: dict[str, CheckpointShape] = {"tiny": TINY_SHAPE, "qwen2-vl-2b": QWEN2_VL_2B_SHAPE}

#: Report phrasing and answer formats the test tokenizer learns its merges from.
TOKENIZER_CORPUS: tuple[str, ...] = (
    GAZEX_EXAMINE_PROMPT,
    GAZEX_ATTENTION_PROMPT.replace(SENTENCE_SLOT, ""),
    "You are a helpful assistant.",
    "visual clues : [(120,340)(260,480)(190,410),(300,120)(420,260)(360,190)] "
    "observation : [(100,100)(450,500)(275,300)]",
    "visual clues: [(12, 34)(56, 78)(34, 56)], observation: [(10, 20)(90, 95)(50, 57)]",
    "The heart size is normal. The lungs are clear. No pleural effusion or pneumothorax.",
    "There is a small right pleural effusion. Mild cardiomegaly. Possible left lower lobe consolidation.",
    "A calcified granuloma is present in the left lung apex. No acute cardiopulmonary process.",
    "Endotracheal tube, enteric tube and right internal jugular central venous catheter in place.",
    "Left chest tube. Pacemaker leads in the right atrium and ventricle. Median sternotomy wires.",
    "Bibasilar atelectasis. Pulmonary edema. Pneumonia cannot be excluded. Rib fracture. Nodule. Mass.",
    "the trachea is midline. the mediastinum is not widened. the diaphragm is normal. osseous structures intact.",
    "0 1 2 3 4 5 6 7 8 9 10 25 50 75 100 250 500 750 1000",
)


def build_tokenizer(vocab_size: int = 1024, corpus: Iterable[str] = ()) -> Any:
    """A byte-level BPE tokenizer like Qwen2's, trained on a small corpus, with Qwen2-VL's special tokens.

    Built in code (no downloads) and deterministic: the same corpus gives the same tokenizer.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    split = (
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
        r"|\s*[\r\n]+|\s+(?!\S)|\s+"
    )
    tokenizer = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(split), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=max(vocab_size - len(QWEN2_VL_SPECIAL_TOKENS), 257),
        min_frequency=1,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tokenizer.train_from_iterator([*TOKENIZER_CORPUS, *corpus], trainer=trainer)
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN2_VL_SPECIAL_TOKENS])
    return tokenizer


GAZEX_COORDINATES = DownscaledFrame(4.0)
TINY_GENERATION = GenerationSettings(max_new_tokens_examine=48, max_new_tokens_attention=48)
TINY_IMAGE = ImageSettings(min_pixels=56 * 56, max_pixels=112 * 112)


@dataclass(frozen=True)
class TinyCheckpointOptions:
    """What goes into ``gazex.json`` of a test checkpoint."""

    name: str = "gazex-tiny"
    version: str = "0.0.1"
    manufacturer: str = "GazeX Gateway project"
    description: str = "Random weights for tests and benchmarks. Not a model; not for clinical use."
    prompts: Prompts = GAZEX_PROMPTS
    coordinates: CoordinateFrame = GAZEX_COORDINATES
    generation: GenerationSettings = TINY_GENERATION
    image: ImageSettings = TINY_IMAGE
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def gazex_config(self) -> GazexConfig:
        return GazexConfig(
            name=self.name,
            version=self.version,
            manufacturer=self.manufacturer,
            description=self.description,
            prompts=self.prompts,
            coordinates=self.coordinates,
            generation=self.generation,
            image=self.image,
            metadata=self.metadata,
        )


def qwen2_vl_config(shape: CheckpointShape, token_ids: Mapping[str, int], vocab_size: int) -> Any:
    """A ``Qwen2VLConfig`` of ``shape`` whose special token ids are ``token_ids`` (token -> id)."""
    from transformers import Qwen2VLConfig

    return Qwen2VLConfig(
        text_config={
            "vocab_size": vocab_size,
            "hidden_size": shape.hidden_size,
            "intermediate_size": shape.intermediate_size,
            "num_hidden_layers": shape.num_hidden_layers,
            "num_attention_heads": shape.num_attention_heads,
            "num_key_value_heads": shape.num_key_value_heads,
            "max_position_embeddings": shape.max_position_embeddings,
            "rms_norm_eps": 1e-6,
            "initializer_range": shape.initializer_range,
            "rope_parameters": {
                "rope_type": "default",
                "mrope_section": shape.mrope_section(),
                "rope_theta": shape.rope_theta,
            },
            "bos_token_id": token_ids["<|endoftext|>"],
            "eos_token_id": token_ids["<|im_end|>"],
            "pad_token_id": token_ids["<|endoftext|>"],
            "tie_word_embeddings": shape.tie_word_embeddings,
        },
        vision_config={
            "depth": shape.vision_depth,
            "embed_dim": shape.vision_embed_dim,
            "hidden_size": shape.hidden_size,
            "num_heads": shape.vision_num_heads,
            "mlp_ratio": shape.vision_mlp_ratio,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "in_channels": 3,
            "initializer_range": shape.initializer_range,
        },
        image_token_id=token_ids["<|image_pad|>"],
        video_token_id=token_ids["<|video_pad|>"],
        vision_start_token_id=token_ids["<|vision_start|>"],
        vision_end_token_id=token_ids["<|vision_end|>"],
        tie_word_embeddings=shape.tie_word_embeddings,
    )


def write_tokenizer_files(directory: Path, tokenizer: Any) -> None:
    """``tokenizer.json`` and the Hugging Face tokenizer and processor side files."""
    tokenizer.save(str(directory / "tokenizer.json"))
    tokenizer_config = {
        "tokenizer_class": "Qwen2Tokenizer",
        "model_max_length": 32768,
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "errors": "replace",
        "add_prefix_space": False,
        "split_special_tokens": False,
        "clean_up_tokenization_spaces": False,
        "chat_template": QWEN2_VL_CHAT_TEMPLATE,
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2), encoding="utf-8")
    (directory / "chat_template.json").write_text(
        json.dumps({"chat_template": QWEN2_VL_CHAT_TEMPLATE}, indent=2), encoding="utf-8"
    )


def write_processor_config(directory: Path, image: ImageSettings) -> None:
    """``preprocessor_config.json`` of Qwen2-VL's image processor."""
    config = {
        "image_processor_type": "Qwen2VLImageProcessor",
        "processor_class": "Qwen2VLProcessor",
        "do_resize": True,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "do_convert_rgb": True,
        "resample": 3,
        "image_mean": list(CLIP_MEAN),
        "image_std": list(CLIP_STD),
        "min_pixels": image.min_pixels,
        "max_pixels": image.max_pixels,
        "patch_size": 14,
        "temporal_patch_size": 2,
        "merge_size": 2,
    }
    (directory / "preprocessor_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")


def make_tiny_checkpoint(
    directory: str | Path,
    *,
    shape: CheckpointShape = TINY_SHAPE,
    options: TinyCheckpointOptions | None = None,
    seed: int = 0,
    corpus: Iterable[str] = (),
    dtype: str = "float32",
    device: str = "cpu",
    tokenizer: Any = None,
    model: Any = None,
    max_shard_size: int | str | None = None,
    write_gazex_json: bool = True,
) -> Path:
    """Write a random-weight GazeX checkpoint (Qwen2-VL of ``shape``) to ``directory``; returns it.

    ``corpus`` is extra text for the tokenizer's merges.  Code that trains a model passes its
    ``tokenizer`` (from :func:`build_tokenizer`) and its ``model`` (a
    ``Qwen2VLForConditionalGeneration`` built from :func:`qwen2_vl_config` with that
    tokenizer's ids); otherwise a model is initialised from ``seed`` on ``device``.
    ``max_shard_size`` saves the weights in shards with ``model.safetensors.index.json``;
    ``write_gazex_json=False`` leaves out the project's ``gazex.json``.
    """
    import torch
    from transformers import Qwen2VLForConditionalGeneration

    from inference.backends.torch_backend import quiet_transformers

    options = options or TinyCheckpointOptions()
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    if tokenizer is None:
        tokenizer = build_tokenizer(shape.tokenizer_vocab_size, corpus)
    token_ids = {token: int(tokenizer.token_to_id(token)) for token in QWEN2_VL_SPECIAL_TOKENS}
    vocab_size = max(shape.model_vocab_size or 0, tokenizer.get_vocab_size())
    if model is None:
        config = qwen2_vl_config(shape, token_ids, vocab_size)
        torch.manual_seed(seed)
        with torch.device(device):
            model = Qwen2VLForConditionalGeneration(config)
    model = model.to(getattr(torch, dtype))
    with quiet_transformers():
        if max_shard_size is None:
            model.save_pretrained(str(target))
        else:
            model.save_pretrained(str(target), max_shard_size=max_shard_size)
    generation_config = {
        "bos_token_id": token_ids["<|endoftext|>"],
        "eos_token_id": [token_ids["<|im_end|>"], token_ids["<|endoftext|>"]],
        "pad_token_id": token_ids["<|endoftext|>"],
        "do_sample": False,
    }
    (target / "generation_config.json").write_text(json.dumps(generation_config, indent=2), encoding="utf-8")
    write_tokenizer_files(target, tokenizer)
    write_processor_config(target, options.image)
    if write_gazex_json:
        (target / "gazex.json").write_text(json.dumps(options.gazex_config().to_json(), indent=2), encoding="utf-8")
    return target


def make_llamafactory_export(
    directory: str | Path,
    *,
    chat_template_in: str = "chat_template.json",
    max_shard_size: int | str = "256KB",
    seed: int = 0,
) -> Path:
    """A tiny random Qwen2-VL saved as LLaMA-Factory exports one: what a site receives with GazeX weights.

    Sharded safetensors with ``model.safetensors.index.json``, ``config.json``,
    ``generation_config.json``, the tokenizer files, ``preprocessor_config.json`` and the chat
    template (``chat_template_in``: ``"chat_template.json"``, or ``"tokenizer_config"`` for only
    the ``chat_template`` key of ``tokenizer_config.json``), and no ``gazex.json``.
    """
    if chat_template_in not in ("chat_template.json", "tokenizer_config"):
        raise ValueError(
            f'Argument "chat_template_in" must be chat_template.json or tokenizer_config, got {chat_template_in!r}'
        )
    target = make_tiny_checkpoint(directory, seed=seed, max_shard_size=max_shard_size, write_gazex_json=False)
    if chat_template_in == "tokenizer_config":
        (target / "chat_template.json").unlink()
    return target


# -- a scripted backend ---------------------------------------------------------------------------


class ScriptedBackend:
    """A generation backend that answers from a script instead of a model.

    ``answer(prompt_text) -> str`` gives the answer text for a decoded prompt; the backend
    returns its tokens under ``tokenizer`` and records every request it was given.
    """

    def __init__(self, tokenizer: Any, answer: Any, name: str = "scripted") -> None:
        self._tokenizer = tokenizer
        self._answer = answer
        self._name = name
        self.requests: list[GenerationRequest] = []

    @property
    def name(self) -> str:
        return self._name

    def generate(self, requests: Sequence[GenerationRequest]) -> list[tuple[Generation, ...]]:
        results = []
        for request in requests:
            self.requests.append(request)
            generations = []
            for prompt in request.prompts:
                text = self._tokenizer.decode(list(prompt), skip_special_tokens=False)
                ids = tuple(self._tokenizer.encode(str(self._answer(text)), add_special_tokens=False).ids)
                fits = len(ids) <= request.max_new_tokens
                generations.append(
                    Generation(token_ids=ids[: request.max_new_tokens], stop="end" if fits else "length")
                )
            results.append(tuple(generations))
        return results


__all__ = [
    "FAKE_IDENTITY",
    "QWEN2_VL_2B_SHAPE",
    "SHAPES",
    "TINY_SHAPE",
    "CheckpointShape",
    "FakeEngine",
    "Point",
    "ScriptedBackend",
    "TinyCheckpointOptions",
    "build_tokenizer",
    "fixed_image_analysis",
    "make_tiny_checkpoint",
    "qwen2_vl_config",
]


def teach_answers(
    directory: str | Path,
    gazex_document: Mapping[str, Any],
    dataset: Any,
    examine_answer: str,
    attention_answers: Mapping[str, str],
    *,
    steps: int = 300,
    learning_rate: float = 1e-2,
    margin_loss: float = 2e-3,
    max_shard_size: int | str = "256KB",
    seed: int = 0,
) -> float:
    """Overfit the tiny Qwen2-VL in ``directory`` to fixed answers for one image; returns the last loss.

    The prompts, pixels and grid are made as the runtime makes them for ``dataset`` under
    ``gazex_document`` (a ``gazex.json`` document, e.g. a preset; it is not written), so greedy
    decoding then writes ``examine_answer`` and, for each sentence, its attention answer
    (training stops once every answer token is the argmax after its prefix and the mean loss
    is under ``margin_loss``; RuntimeError if ``steps`` are not enough).
    The weights are saved back in place (sharded at ``max_shard_size``).  For end-to-end tests
    of a random-weight checkpoint that must write findings with regions.
    """
    import torch
    from transformers import Qwen2VLForConditionalGeneration

    from inference.backends.torch_backend import quiet_transformers
    from inference.checkpoint import open_checkpoint
    from inference.config import parse_gazex_config
    from inference.pipeline import GazexPipeline

    target = Path(directory)
    checkpoint = open_checkpoint(target, gazex=parse_gazex_config(dict(gazex_document)))
    pipeline = GazexPipeline(checkpoint, backend=None)  # type: ignore[arg-type]  # only its input side is used
    image, _ = pipeline.model_image(dataset)
    tokens = image.encoded.image_tokens
    end = int(checkpoint.tokens.end_token_ids[0])  # <|im_end|>
    pairs = [(pipeline.prompts.examine(tokens), examine_answer)]
    pairs += [(pipeline.prompts.attention(sentence, tokens), answer) for sentence, answer in attention_answers.items()]
    torch.manual_seed(seed)
    with quiet_transformers():
        model = Qwen2VLForConditionalGeneration.from_pretrained(str(target), torch_dtype=torch.float32)
    model.train()
    pixel_values = torch.from_numpy(image.encoded.pixel_values)
    grid = torch.from_numpy(image.encoded.image_grid_thw)
    batch_ids: list[list[int]] = []
    batch_labels: list[list[int]] = []
    for prompt, answer in pairs:
        answer_ids = [*checkpoint.tokenizer.encode(answer, add_special_tokens=False).ids, end]
        batch_ids.append(list(prompt) + answer_ids)
        batch_labels.append([-100] * len(prompt) + answer_ids)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    loss_value = float("inf")
    for _ in range(steps):
        total = torch.zeros(())
        learned = True
        for ids, labels in zip(batch_ids, batch_labels, strict=True):
            input_ids = torch.tensor([ids])
            target_ids = torch.tensor([labels])
            output = model(
                input_ids=input_ids,
                mm_token_type_ids=(input_ids == checkpoint.tokens.image_token_id).int(),
                labels=target_ids,
                pixel_values=pixel_values,
                image_grid_thw=grid,
            )
            total = total + output.loss
            # greedy decoding repeats the answer once every answer token is the argmax after its prefix
            predicted = output.logits[0, :-1].argmax(-1)
            expected = target_ids[0, 1:]
            answer = expected != -100
            learned = learned and bool((predicted[answer] == expected[answer]).all())
        loss_value = float(total.detach()) / len(batch_ids)
        if learned and loss_value < margin_loss:  # a margin, so batched decoding's rounding keeps the argmax
            break
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    else:
        raise RuntimeError(f"the answers were not learned in {steps} steps (loss {loss_value:.4f})")
    model.eval()
    for stale in [*target.glob("model*.safetensors"), target / "model.safetensors.index.json"]:
        stale.unlink(missing_ok=True)
    with quiet_transformers():
        model.save_pretrained(str(target), max_shard_size=max_shard_size)
    return loss_value
