"""The pure parts of the TensorRT engine build: cache keys and invalidation, profiles, the missing-TensorRT message.

The builder and runtime calls need TensorRT and an NVIDIA GPU, neither of which CI has; they
are not executed here (see docs/models.md and the GPU check script).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx
import pytest

from inference.checkpoint import open_checkpoint
from inference.engine import InferenceError
from inference.tensorrt_build import (
    DECODER_ENGINE,
    ENGINE_MANIFEST,
    VISION_ENGINE,
    EngineBuildError,
    EngineKey,
    ProfileSettings,
    build_engines,
    capacity_bucket,
    decoder_profile,
    engine_dir,
    stale_reason,
    tensorrt_unavailable,
    vision_profile,
)

KEY = EngineKey(
    gpu_name="NVIDIA H100 80GB HBM3",
    compute_capability=(9, 0),
    tensorrt_version="10.13.0.35",
    checkpoint_sha256="a" * 64,
    precision="bf16",
    profile=ProfileSettings(),
)


def test_the_key_digest_is_stable_and_changes_with_every_field() -> None:
    assert KEY.digest() == EngineKey.from_document(json.loads(json.dumps(KEY.document()))).digest()
    changes: dict[str, Any] = {
        "gpu_name": "NVIDIA L40S",
        "compute_capability": (8, 9),
        "tensorrt_version": "10.14.1",
        "checkpoint_sha256": "b" * 64,
        "precision": "fp16",
        "profile": ProfileSettings(max_batch=8),
        "version_compatible": True,
        "hardware_compatibility": "ampere_plus",
    }
    digests = {KEY.digest()}
    for field, value in changes.items():
        digests.add(dataclasses.replace(KEY, **{field: value}).digest())
    assert len(digests) == len(changes) + 1


def test_engine_folders_are_named_for_people_and_unique(tmp_path: Path) -> None:
    folder = engine_dir(KEY, tmp_path)
    assert folder.parent == tmp_path / "tensorrt"
    assert folder.name.startswith("nvidia-h100-80gb-hbm3-sm90-trt10.13.0.35-bf16-")
    assert engine_dir(dataclasses.replace(KEY, precision="fp16"), tmp_path) != folder


def write_engines(folder: Path, key: EngineKey) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / VISION_ENGINE).write_bytes(b"plan")
    (folder / DECODER_ENGINE).write_bytes(b"plan")
    (folder / ENGINE_MANIFEST).write_text(json.dumps(key.document()))


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("gpu_name", "NVIDIA A100-SXM4-80GB", "gpu name changed: NVIDIA A100-SXM4-80GB -> NVIDIA H100 80GB HBM3"),
        ("compute_capability", (8, 0), "compute capability changed: (8, 0) -> (9, 0)"),
        ("tensorrt_version", "10.12.0", "tensorrt version changed: 10.12.0 -> 10.13.0.35"),
        ("checkpoint_sha256", "c" * 64, "checkpoint sha256 changed"),
        ("precision", "fp16", "precision changed: fp16 -> bf16"),
        ("profile", ProfileSettings(max_batch=4, opt_batch=4), "the profiles or compatibility options changed"),
    ],
)
def test_engines_are_rebuilt_when_anything_they_depend_on_changes(
    tmp_path: Path, field: str, value: Any, reason: str
) -> None:
    write_engines(tmp_path, dataclasses.replace(KEY, **{field: value}))
    found = stale_reason(tmp_path, KEY)
    assert found is not None and found.startswith(reason)


def test_matching_engines_are_reused_and_damage_is_noticed(tmp_path: Path) -> None:
    assert stale_reason(tmp_path, KEY) == "no engines built yet"
    write_engines(tmp_path, KEY)
    assert stale_reason(tmp_path, KEY) is None
    (tmp_path / DECODER_ENGINE).unlink()
    assert stale_reason(tmp_path, KEY) == "decoder.engine is missing"
    (tmp_path / ENGINE_MANIFEST).write_text("{not json")
    assert "is unreadable" in str(stale_reason(tmp_path, KEY))


def test_profile_ranges_come_from_the_checkpoint(tiny_checkpoint: Path) -> None:
    checkpoint = open_checkpoint(tiny_checkpoint)
    settings = ProfileSettings.for_checkpoint(checkpoint, max_batch=12)
    # TINY_IMAGE: 56 x 56 .. 112 x 112 pixels, one image token per 28 x 28
    assert (settings.min_image_tokens, settings.max_image_tokens) == (4, 16)
    assert settings.max_new_tokens == 48
    assert (settings.max_batch, settings.opt_batch) == (12, 8)
    assert settings.max_capacity == capacity_bucket(16 + settings.text_tokens + 48) == 512
    assert capacity_bucket(1) == 256 and capacity_bucket(256) == 256 and capacity_bucket(257) == 512
    with pytest.raises(ValueError, match="opt_batch"):
        ProfileSettings(max_batch=4, opt_batch=8)


def test_profiles_cover_every_graph_input_and_are_ordered(
    tiny_checkpoint: Path, onnx_exports: Callable[..., Any]
) -> None:
    export = onnx_exports(tiny_checkpoint)
    settings = ProfileSettings(max_batch=16, opt_batch=8, min_image_tokens=4, max_image_tokens=16)
    for path, profile in (
        (export.vision_path, vision_profile(settings, export.dims)),
        (export.decoder_path("static"), decoder_profile(settings, export.dims)),
    ):
        graph = onnx.load(str(path)).graph
        assert set(profile) == {v.name for v in graph.input}
        for value in graph.input:
            low, opt, high = profile[value.name]
            fixed = [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]
            assert len(low) == len(opt) == len(high) == len(fixed)
            for a, b, c, size in zip(low, opt, high, fixed, strict=True):
                assert 1 <= a <= b <= c
                if size is not None:
                    assert a == b == c == size, value.name
    decoder = decoder_profile(settings, export.dims)
    assert decoder["input_ids"] == ((1, 1), (8, 1), (16, 16 + settings.text_tokens))
    assert decoder["past_key_0"][1] == (8, 2, settings.max_capacity, 16)
    assert vision_profile(settings, export.dims)["pixel_values"] == ((16, 1176), (64, 1176), (64, 1176))


def test_without_tensorrt_the_message_says_what_to_do(tiny_checkpoint: Path) -> None:
    reason = tensorrt_unavailable()
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        assert reason is not None and "TensorRT is not installed" in reason and "gazex-gateway[gpu]" in reason
    else:  # pragma: no cover - on a GPU machine with TensorRT
        return
    with pytest.raises(EngineBuildError, match="TensorRT is not installed") as raised:
        build_engines(open_checkpoint(tiny_checkpoint), "bf16")
    assert isinstance(raised.value, InferenceError)
    with pytest.raises(EngineBuildError, match="unknown precision 'int8'; use fp16 or bf16"):
        build_engines(open_checkpoint(tiny_checkpoint), "int8")


def test_the_tensorrt_backend_fails_clearly_without_tensorrt(tiny_checkpoint: Path) -> None:
    from inference import load_engine

    if tensorrt_unavailable() is None:  # pragma: no cover - on a GPU machine with TensorRT
        pytest.skip("TensorRT is usable here")
    with pytest.raises(InferenceError, match="TensorRT is not installed"):
        load_engine(tiny_checkpoint, backend="tensorrt")
