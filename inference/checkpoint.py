"""GazeX checkpoints: finding, validating and describing one.

A checkpoint is a directory holding a Hugging Face Qwen2-VL checkpoint (``config.json``,
``model.safetensors`` or ``model.safetensors.index.json`` with its shards, ``tokenizer.json``,
``preprocessor_config.json``) plus ``gazex.json`` (:mod:`inference.config`).  ``builtin:NAME``
names one shipped inside this package, under ``inference/checkpoints/NAME/``.

:func:`open_checkpoint` checks everything that can be checked without loading the weights
(files present, JSON valid, ``gazex.json`` valid, tokenizer and config agreeing on the special
tokens, safetensors headers whole and consistent with the file sizes) and computes the weights'
SHA-256: of the file itself for a single ``model.safetensors`` (what ``sha256sum`` prints), or
for sharded weights, of the manifest ``"<sha256>  <file name>\\n"`` per shard in file-name order.
Whether the weights fit ``config.json`` is checked when a backend loads them.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from inference.config import GazexConfig, GazexConfigError, parse_gazex_config
from inference.engine import InferenceError
from inference.generation import TokenSpec
from inference.prompts import END_OF_TEXT, IM_END, IM_START, IMAGE_PAD, VISION_END, VISION_START
from inference.vision_input import ImageProcessing, ProcessorConfigError

BUILTIN_PREFIX = "builtin:"
BUILTIN_ROOT = Path(__file__).resolve().parent / "checkpoints"

SINGLE_WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"

#: Bytes per element of each safetensors dtype.
_DTYPE_SIZES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U64": 8,
    "U32": 4,
    "U16": 2,
    "U8": 1,
    "BOOL": 1,
}
_MAX_HEADER_BYTES = 100 * 1024 * 1024


class CheckpointError(InferenceError):
    """A checkpoint is missing, incomplete or corrupt; the message says which file and what to do."""


@dataclass(frozen=True)
class Checkpoint:
    """A validated checkpoint directory and what was read from it."""

    path: Path
    gazex: GazexConfig
    processing: ImageProcessing
    tokenizer: Tokenizer
    tokens: TokenSpec
    weight_files: tuple[Path, ...]
    weights_sha256: str


def builtin_checkpoints() -> list[str]:
    """The names of the checkpoints bundled in this build (directories with a ``gazex.json``)."""
    if not BUILTIN_ROOT.is_dir():
        return []
    return sorted(p.name for p in BUILTIN_ROOT.iterdir() if (p / "gazex.json").is_file())


def resolve_checkpoint_path(path_or_builtin: str | Path) -> Path:
    """The directory ``path_or_builtin`` names; ``builtin:NAME`` must be bundled."""
    text = str(path_or_builtin)
    if text.startswith(BUILTIN_PREFIX):
        name = text[len(BUILTIN_PREFIX) :]
        bundled = builtin_checkpoints()
        if name not in bundled:
            listing = ", ".join(f"builtin:{n}" for n in bundled) if bundled else "none"
            raise CheckpointError(
                f"the built-in checkpoint {text!r} is not bundled in this build (bundled: {listing}); "
                "pass the path of a GazeX checkpoint directory instead"
            )
        return BUILTIN_ROOT / name
    return Path(text).expanduser()


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise CheckpointError(f"{path.parent}: {path.name} is missing; a GazeX checkpoint needs {what}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc}); restore the file from the original checkpoint") from exc


def _safetensors_tensors(path: Path) -> dict[str, Any]:
    """The tensor table of a safetensors file, after checking the file is whole."""
    size = path.stat().st_size
    fix = "the file is damaged or was not copied completely; copy the checkpoint again"
    if size < 8:
        raise CheckpointError(f"{path}: {size} bytes is too short for a safetensors file; {fix}")
    with path.open("rb") as handle:
        (header_length,) = struct.unpack("<Q", handle.read(8))
        if header_length > min(_MAX_HEADER_BYTES, size - 8):
            raise CheckpointError(f"{path}: the safetensors header claims {header_length} bytes; {fix}")
        raw = handle.read(header_length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: the safetensors header is not valid JSON ({exc}); {fix}") from exc
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: the safetensors header is not a JSON object; {fix}")
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    data_end = 0
    for name, info in tensors.items():
        try:
            dtype, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
            elements = 1
            for dim in shape:
                elements *= int(dim)
            expected = elements * _DTYPE_SIZES[dtype]
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: tensor {name!r} has an invalid header entry ({exc}); {fix}") from exc
        if end - begin != expected or begin < 0:
            raise CheckpointError(f"{path}: tensor {name!r} spans {end - begin} bytes, expected {expected}; {fix}")
        data_end = max(data_end, end)
    expected_size = 8 + header_length + data_end
    if size < expected_size:
        raise CheckpointError(f"{path}: truncated: {size} bytes, the header describes {expected_size}; {fix}")
    if size > expected_size:
        raise CheckpointError(f"{path}: {size - expected_size} unexpected bytes after the tensors; {fix}")
    return tensors


def weight_files(directory: Path) -> tuple[Path, ...]:
    """The safetensors files of a checkpoint, in file-name order, after checking each is whole."""
    index_path = directory / WEIGHTS_INDEX
    if index_path.is_file():
        index = _read_json(index_path, "the weight index")
        weight_map = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(weight_map, dict) or not weight_map:
            raise CheckpointError(f"{index_path}: has no weight_map; restore it from the original checkpoint")
        shards = sorted(set(weight_map.values()))
        tables: dict[str, dict[str, Any]] = {}
        for shard in shards:
            shard_path = directory / str(shard)
            if not shard_path.is_file():
                raise CheckpointError(f"{directory}: the weight shard {shard} listed in {WEIGHTS_INDEX} is missing")
            tables[str(shard)] = _safetensors_tensors(shard_path)
        for tensor, shard in weight_map.items():
            if tensor not in tables[str(shard)]:
                raise CheckpointError(f"{directory / str(shard)}: does not hold {tensor!r}, which the index puts there")
        return tuple(directory / str(s) for s in shards)
    single = directory / SINGLE_WEIGHTS
    if not single.is_file():
        raise CheckpointError(
            f"{directory}: no weights: neither {SINGLE_WEIGHTS} nor {WEIGHTS_INDEX} is there "
            "(only safetensors weights are accepted)"
        )
    _safetensors_tensors(single)
    return (single,)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(4 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def weights_sha256(files: tuple[Path, ...]) -> str:
    """The SHA-256 of the weights: of the file for one file, else of the sorted shard manifest."""
    if len(files) == 1:
        return _file_sha256(files[0])
    manifest = "".join(f"{_file_sha256(f)}  {f.name}\n" for f in sorted(files, key=lambda p: p.name))
    return hashlib.sha256(manifest.encode("utf-8")).hexdigest()


def _token_spec(directory: Path, tokenizer: Tokenizer) -> TokenSpec:
    config = _read_json(directory / "config.json", "the Hugging Face model configuration")
    if not isinstance(config, dict) or config.get("model_type") != "qwen2_vl":
        found = config.get("model_type") if isinstance(config, dict) else None
        raise CheckpointError(
            f"{directory / 'config.json'}: model_type is {found!r}; GazeX checkpoints are Qwen2-VL ('qwen2_vl')"
        )
    ids: dict[str, int] = {}
    for token in (END_OF_TEXT, IM_START, IM_END, VISION_START, VISION_END, IMAGE_PAD):
        token_id = tokenizer.token_to_id(token)
        if token_id is None:
            raise CheckpointError(
                f"{directory / 'tokenizer.json'}: the Qwen2-VL special token {token} is missing; "
                "use the tokenizer that came with the checkpoint"
            )
        ids[token] = token_id
    # Hugging Face's defaults for Qwen2-VL apply when config.json leaves an id out.
    expected = {
        "image_token_id": (ids[IMAGE_PAD], 151655),
        "vision_start_token_id": (ids[VISION_START], 151652),
        "vision_end_token_id": (ids[VISION_END], 151653),
    }
    for key, (token_id, default) in expected.items():
        configured = config.get(key, default)
        if configured != token_id:
            raise CheckpointError(
                f"{directory / 'config.json'}: {key} is {configured} but the tokenizer numbers that token {token_id}; "
                "the tokenizer does not belong to these weights"
            )
    text_config = config.get("text_config") if isinstance(config.get("text_config"), dict) else config
    vocab_size = text_config.get("vocab_size") if isinstance(text_config, dict) else None
    if not isinstance(vocab_size, int) or vocab_size <= max(ids.values()):
        raise CheckpointError(
            f"{directory / 'config.json'}: vocab_size {vocab_size!r} does not cover the tokenizer's special tokens"
        )
    vision = config.get("vision_config")
    merge = vision.get("spatial_merge_size", 2) if isinstance(vision, dict) else 2
    end_ids = [ids[IM_END], ids[END_OF_TEXT]]
    generation_path = directory / "generation_config.json"
    if generation_path.is_file():
        generation = _read_json(generation_path, "the generation configuration")
        eos = generation.get("eos_token_id") if isinstance(generation, dict) else None
        for token_id in eos if isinstance(eos, list) else [eos]:
            if isinstance(token_id, int) and token_id not in end_ids:
                end_ids.append(token_id)
    return TokenSpec(
        end_token_ids=tuple(end_ids),
        pad_token_id=ids[END_OF_TEXT],
        image_token_id=ids[IMAGE_PAD],
        vision_start_token_id=ids[VISION_START],
        vision_end_token_id=ids[VISION_END],
        spatial_merge_size=int(merge),
    )


def _read_gazex_json(directory: Path) -> Any:
    """``gazex.json``; when it is missing from a Hugging Face checkpoint, say how to write it."""
    path = directory / "gazex.json"
    if not path.is_file() and (directory / "config.json").is_file():
        raise CheckpointError(
            f"{directory}: gazex.json is missing: this is a Hugging Face checkpoint without GazeX's settings "
            "(prompts, coordinate frame, generation budgets, image settings). For weights trained with the public "
            f"GazeX recipe run: gazex model import {directory} --preset gazex-upstream "
            '(docs/models.md, "Running the real GazeX weights")'
        )
    return _read_json(path, "gazex.json (prompts, coordinate frame, generation settings)")


def is_demo_checkpoint(path_or_builtin: str | Path) -> bool:
    """Whether the checkpoint holds demo weights, not for clinical use (:attr:`GazexConfig.is_demo`).

    Reads ``gazex.json`` only (no weights), so a caller can refuse a demo model before loading it;
    raises :class:`CheckpointError` when that file is missing or invalid.
    """
    directory = resolve_checkpoint_path(path_or_builtin)
    document = _read_gazex_json(directory)
    try:
        return parse_gazex_config(document).is_demo
    except GazexConfigError as exc:
        raise CheckpointError(f"{directory / 'gazex.json'}: {exc}") from exc


def open_checkpoint(path_or_builtin: str | Path, gazex: GazexConfig | None = None) -> Checkpoint:
    """Find and validate a checkpoint; raises :class:`CheckpointError` with what to fix.

    ``gazex`` supplies the GazeX configuration instead of the directory's ``gazex.json``: training
    uses it to start from a plain Hugging Face Qwen2-VL checkpoint, which has none.
    """
    directory = resolve_checkpoint_path(path_or_builtin)
    if not directory.exists():
        raise CheckpointError(f"{directory}: no such checkpoint directory; pass a GazeX checkpoint directory")
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: a checkpoint is a directory, not a file")

    if gazex is None:
        document = _read_gazex_json(directory)
        try:
            gazex = parse_gazex_config(document)
        except GazexConfigError as exc:
            raise CheckpointError(f"{directory / 'gazex.json'}: {exc}") from exc

    processor = _read_json(directory / "preprocessor_config.json", "the image processor configuration")
    if not isinstance(processor, dict):
        raise CheckpointError(f"{directory / 'preprocessor_config.json'}: must be a JSON object")
    try:
        processing = ImageProcessing.from_configs(processor, gazex.image)
    except ProcessorConfigError as exc:
        raise CheckpointError(f"{directory}: {exc}") from exc

    tokenizer_path = directory / "tokenizer.json"
    if not tokenizer_path.is_file():
        raise CheckpointError(
            f"{directory}: tokenizer.json is missing; a GazeX checkpoint needs the fast tokenizer file"
        )
    try:
        tokenizer = Tokenizer.from_file(str(tokenizer_path))
    except Exception as exc:  # tokenizers raises a plain Exception for a bad file; translated here
        raise CheckpointError(f"{tokenizer_path}: cannot be read as a tokenizer ({exc})") from exc

    tokens = _token_spec(directory, tokenizer)
    files = weight_files(directory)
    return Checkpoint(
        path=directory,
        gazex=gazex,
        processing=processing,
        tokenizer=tokenizer,
        tokens=tokens,
        weight_files=files,
        weights_sha256=weights_sha256(files),
    )
