"""Checkpoints: what a valid one records, and the clear error each kind of damage gives."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import inference.checkpoint as checkpoint_module
from inference import CheckpointError, load_engine
from inference.checkpoint import builtin_checkpoints, open_checkpoint, resolve_checkpoint_path


@pytest.fixture
def copy_of(tiny_checkpoint: Path, tmp_path: Path) -> Callable[[], Path]:
    def copy() -> Path:
        target = tmp_path / f"copy{len(list(tmp_path.iterdir()))}"
        shutil.copytree(tiny_checkpoint, target)
        return target

    return copy


def edit_json(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


def test_a_valid_checkpoint_and_its_weights_hash(tiny_checkpoint: Path) -> None:
    checkpoint = open_checkpoint(tiny_checkpoint)
    expected = hashlib.sha256((tiny_checkpoint / "model.safetensors").read_bytes()).hexdigest()
    assert checkpoint.weights_sha256 == expected  # what sha256sum model.safetensors prints
    assert checkpoint.gazex.name == "gazex-tiny"
    tokens = checkpoint.tokens
    assert tokens.image_token_id == checkpoint.tokenizer.token_to_id("<|image_pad|>")
    assert tokens.end_token_ids[:2] == (
        checkpoint.tokenizer.token_to_id("<|im_end|>"),
        checkpoint.tokenizer.token_to_id("<|endoftext|>"),
    )


def test_sharded_weights_are_checked_and_hashed_in_order(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from transformers import Qwen2VLForConditionalGeneration

    target = tmp_path / "sharded"
    shutil.copytree(tiny_checkpoint, target)
    (target / "model.safetensors").unlink()
    model = Qwen2VLForConditionalGeneration.from_pretrained(str(tiny_checkpoint))
    model.save_pretrained(str(target), max_shard_size="300KB")
    shards = sorted(target.glob("model-*.safetensors"))
    assert len(shards) > 1
    checkpoint = open_checkpoint(target)
    manifest = "".join(f"{hashlib.sha256(s.read_bytes()).hexdigest()}  {s.name}\n" for s in shards)
    assert checkpoint.weights_sha256 == hashlib.sha256(manifest.encode()).hexdigest()
    assert checkpoint.weight_files == tuple(shards)
    shards[1].unlink()
    with pytest.raises(CheckpointError, match=f"the weight shard {shards[1].name} .* is missing"):
        open_checkpoint(target)


def test_builtin_that_is_not_bundled() -> None:
    with pytest.raises(CheckpointError, match="'builtin:no-such-model' is not bundled in this build") as error:
        resolve_checkpoint_path("builtin:no-such-model")
    bundled = builtin_checkpoints()
    listing = ", ".join(f"builtin:{n}" for n in bundled) if bundled else "none"
    assert f"(bundled: {listing})" in str(error.value)


def test_builtin_checkpoints_load_through_the_same_path(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(tiny_checkpoint, tmp_path / "gazex-test")
    monkeypatch.setattr(checkpoint_module, "BUILTIN_ROOT", tmp_path)
    assert builtin_checkpoints() == ["gazex-test"]
    engine = load_engine("builtin:gazex-test", device="cpu")
    assert engine.identity.name == "gazex-tiny"
    assert engine.checkpoint.path == tmp_path / "gazex-test"


def test_missing_directory_and_file_instead_of_directory(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such checkpoint directory"):
        open_checkpoint(tmp_path / "absent")
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match="a checkpoint is a directory"):
        open_checkpoint(tmp_path / "file")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("gazex.json", "gazex.json is missing"),
        ("config.json", "config.json is missing"),
        ("tokenizer.json", "tokenizer.json is missing"),
        ("preprocessor_config.json", "preprocessor_config.json is missing"),
        ("model.safetensors", "no weights: neither model.safetensors nor model.safetensors.index.json"),
    ],
)
def test_missing_files(copy_of: Callable[[], Path], name: str, message: str) -> None:
    directory = copy_of()
    (directory / name).unlink()
    with pytest.raises(CheckpointError, match=message):
        open_checkpoint(directory)


@pytest.mark.parametrize("name", ["gazex.json", "config.json", "preprocessor_config.json"])
def test_bad_json(copy_of: Callable[[], Path], name: str) -> None:
    directory = copy_of()
    (directory / name).write_text('{"format": "gazex-checkpoint",')
    with pytest.raises(CheckpointError, match=f"{name}: not valid JSON"):
        open_checkpoint(directory)


def test_invalid_gazex_json_names_file_and_key(copy_of: Callable[[], Path]) -> None:
    directory = copy_of()
    edit_json(directory / "gazex.json", lambda d: d["coordinates"].update(kind="pixels"))
    with pytest.raises(CheckpointError, match=r"gazex\.json: coordinates\.kind must be"):
        open_checkpoint(directory)


def test_truncated_weights(copy_of: Callable[[], Path]) -> None:
    directory = copy_of()
    weights = directory / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) - 1000])
    with pytest.raises(CheckpointError, match=r"truncated: .* copy the checkpoint again"):
        open_checkpoint(directory)


def test_weights_with_trailing_bytes(copy_of: Callable[[], Path]) -> None:
    directory = copy_of()
    with (directory / "model.safetensors").open("ab") as handle:
        handle.write(b"\0" * 10)
    with pytest.raises(CheckpointError, match="10 unexpected bytes"):
        open_checkpoint(directory)


@pytest.mark.parametrize("content", [b"", b"\xff" * 8 + b"{}", b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!"])
def test_garbage_weights(copy_of: Callable[[], Path], content: bytes) -> None:
    directory = copy_of()
    (directory / "model.safetensors").write_bytes(content)
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        open_checkpoint(directory)


def test_wrong_model_type(copy_of: Callable[[], Path]) -> None:
    directory = copy_of()
    edit_json(directory / "config.json", lambda d: d.update(model_type="llama"))
    with pytest.raises(CheckpointError, match="model_type is 'llama'; GazeX checkpoints are Qwen2-VL"):
        open_checkpoint(directory)


def test_tokenizer_that_does_not_belong_to_the_weights(copy_of: Callable[[], Path]) -> None:
    directory = copy_of()
    edit_json(directory / "config.json", lambda d: d.update(image_token_id=5))
    with pytest.raises(CheckpointError, match="image_token_id is 5 but the tokenizer numbers that token"):
        open_checkpoint(directory)


def test_tokenizer_without_qwen2_vl_special_tokens(copy_of: Callable[[], Path]) -> None:
    directory = copy_of()

    def drop_image_pad(document: dict[str, Any]) -> None:
        document["added_tokens"] = [t for t in document["added_tokens"] if t["content"] != "<|image_pad|>"]

    edit_json(directory / "tokenizer.json", drop_image_pad)
    with pytest.raises(CheckpointError, match=r"special token <\|image_pad\|> is missing"):
        open_checkpoint(directory)


def test_unreadable_tokenizer(copy_of: Callable[[], Path]) -> None:
    directory = copy_of()
    (directory / "tokenizer.json").write_text('{"version": "1.0"}')
    with pytest.raises(CheckpointError, match="cannot be read as a tokenizer"):
        open_checkpoint(directory)


def test_config_that_does_not_fit_the_weights(copy_of: Callable[[], Path]) -> None:
    directory = copy_of()
    edit_json(directory / "config.json", lambda d: d["text_config"].update(intermediate_size=96))
    open_checkpoint(directory)  # the files themselves are whole
    with pytest.raises(CheckpointError, match=r"the weights do not match config\.json .*mismatched keys: .*mlp"):
        load_engine(directory, device="cpu")


def test_weights_missing_a_tensor(copy_of: Callable[[], Path]) -> None:
    from safetensors.torch import load_file, save_file

    directory = copy_of()
    weights = directory / "model.safetensors"
    tensors = load_file(str(weights))
    del tensors["model.layers.0.mlp.down_proj.weight"]
    save_file(tensors, str(weights), metadata={"format": "pt"})
    expected = re.escape("missing keys: model.language_model.layers.0.mlp.down_proj.weight")
    with pytest.raises(CheckpointError, match=expected):
        load_engine(directory, device="cpu")


def test_unknown_backends(tiny_checkpoint: Path) -> None:
    from inference import InferenceError

    with pytest.raises(InferenceError, match="unknown backend 'magic'; available: torch, hf-generate"):
        load_engine(tiny_checkpoint, backend="magic")


def test_unusable_devices_and_dtypes(tiny_checkpoint: Path) -> None:
    import torch

    from inference import InferenceError

    if not torch.cuda.is_available():
        with pytest.raises(InferenceError, match="CUDA is not available; use --device cpu"):
            load_engine(tiny_checkpoint, device="cuda")
    with pytest.raises(InferenceError, match="unknown device 'abacus'"):
        load_engine(tiny_checkpoint, device="abacus")
    with pytest.raises(InferenceError, match="unknown dtype 'float8'"):
        load_engine(tiny_checkpoint, device="cpu", dtype="float8")
