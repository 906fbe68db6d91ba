"""Choosing a backend: the configured one, then only the fallbacks the operator allowed, each with a warning."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from inference import BackendOptions, CheckpointError, InferenceError, load_engine
from inference.backends import AVAILABLE_BACKENDS, backend_order


def test_backend_order() -> None:
    assert AVAILABLE_BACKENDS == ("torch", "hf-generate", "onnx", "tensorrt", "triton")
    assert backend_order("tensorrt") == ("tensorrt",)
    assert backend_order("tensorrt", ("onnx", "torch", "onnx", "tensorrt")) == ("tensorrt", "onnx", "torch")
    with pytest.raises(InferenceError, match="unknown backend 'tensorflow'; available: torch, hf-generate"):
        backend_order("tensorflow")
    with pytest.raises(InferenceError, match="unknown fallback backend 'cuda'"):
        backend_order("onnx", ("cuda",))


def dead_triton(free_port: Callable[[], int]) -> BackendOptions:
    return BackendOptions(triton_url=f"http://127.0.0.1:{free_port()}", triton_timeout=5.0)


def test_no_fallback_unless_allowed(tiny_checkpoint: Path, free_port: Callable[[], int]) -> None:
    with pytest.raises(InferenceError, match=r"Triton at http://127\.0\.0\.1:\d+: the liveness check failed"):
        load_engine(tiny_checkpoint, backend="triton", options=dead_triton(free_port))


def test_an_allowed_fallback_is_used_with_a_warning(
    tiny_checkpoint: Path,
    free_port: Callable[[], int],
    onnx_exports: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    export = onnx_exports(tiny_checkpoint)
    options = dataclass_replace(dead_triton(free_port), onnx_dir=export.directory)
    with caplog.at_level(logging.WARNING, logger="inference.runtime"):
        engine = load_engine(tiny_checkpoint, backend="triton", fallback=("onnx", "torch"), options=options)
    assert engine.identity.backend == "onnx"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].startswith("the triton backend cannot be used (Triton at http://127.0.0.1:")
    assert warnings[0].endswith("; falling back to onnx as configured")


def test_every_failure_is_reported_when_none_can_be_used(tiny_checkpoint: Path, free_port: Callable[[], int]) -> None:
    with pytest.raises(InferenceError) as raised:
        load_engine(tiny_checkpoint, backend="triton", fallback=("tensorrt",), options=dead_triton(free_port))
    message = str(raised.value)
    assert message.startswith("no configured backend can be used: triton: Triton at")
    assert "; tensorrt: " in message


def test_a_broken_checkpoint_is_never_a_reason_to_fall_back(tiny_checkpoint: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_checkpoint, broken)
    (broken / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match=r"tokenizer\.json is missing"):
        load_engine(broken, backend="onnx", fallback=("torch",))


def test_an_export_of_other_weights_is_refused(
    tiny_checkpoint: Path, tmp_path: Path, onnx_exports: Callable[..., Any]
) -> None:
    from inference.testing import make_tiny_checkpoint

    other = make_tiny_checkpoint(tmp_path / "other", seed=1)
    export = onnx_exports(tiny_checkpoint)
    with pytest.raises(InferenceError, match=r"exported from weights .* export this checkpoint again"):
        load_engine(other, backend="onnx", options=BackendOptions(onnx_dir=export.directory))


def test_the_onnx_backend_exports_into_the_cache_on_first_use(
    tiny_checkpoint: Path, tmp_path: Path, chest_cr: Any
) -> None:
    engine = load_engine(tiny_checkpoint, backend="onnx", options=BackendOptions(cache_dir=tmp_path, threads=1))
    assert next(iter((tmp_path / "onnx").iterdir())).name.startswith(engine.identity.checkpoint_sha256[:32])
    analysis = engine.analyze([chest_cr])
    assert analysis.model.backend == "onnx"
    assert analysis.images[0].rows == 1955


def dataclass_replace(options: BackendOptions, **changes: Any) -> BackendOptions:
    import dataclasses

    return dataclasses.replace(options, **changes)
