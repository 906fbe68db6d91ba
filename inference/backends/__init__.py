"""Generation backends, chosen by name, and the choice between them.

- ``torch``: transformers/PyTorch with the image encoded once and the prompt prefix's key/value
  cache shared across the attention prompts (the default);
- ``hf-generate``: the naive way, one Hugging Face ``generate`` per prompt (for comparison);
- ``onnx``: the exported graphs in ONNX Runtime (:mod:`inference.backends.onnx_backend`);
- ``tensorrt``: TensorRT engines built from the exported graphs
  (:mod:`inference.backends.tensorrt_backend`, :mod:`inference.tensorrt_build`);
- ``triton``: the exported graphs served by NVIDIA Triton Inference Server, the decoding loop
  here (:mod:`inference.backends.triton_backend`).

All but the first two share :class:`inference.backends.stepwise.StepwiseBackend`.
:func:`backend_order` decides which backends to try, in order, from the configured one and the
operator's fallbacks; :func:`inference.load_engine` tries them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from inference.checkpoint import Checkpoint
from inference.engine import InferenceError
from inference.generation import GenerationBackend

logger = logging.getLogger(__name__)

AVAILABLE_BACKENDS: tuple[str, ...] = ("torch", "hf-generate", "onnx", "tensorrt", "triton")
#: Kept for callers of the first build; every backend is part of this one.
PLANNED_BACKENDS: tuple[str, ...] = ()


@dataclass(frozen=True)
class BackendOptions:
    """What the exported-graph backends need beyond the checkpoint (all optional).

    - ``onnx_dir``: an ONNX export to use (default: export into the cache, keyed by the
      weights' SHA-256, or reuse the one there);
    - ``cache_dir``: root of the export and engine cache (default ``$GAZEX_CACHE_DIR`` or
      ``~/.cache/gazex``);
    - ``engine_dir``: where TensorRT engines are kept (default: under ``cache_dir``);
    - ``precision``: TensorRT engine precision, ``bf16`` or ``fp16``;
    - ``triton_url``: ``http://HOST:PORT`` or ``grpc://HOST:PORT`` of a Triton server serving
      the repository ``gazex model triton-repo`` wrote;
    - ``triton_timeout``: seconds for one Triton request;
    - ``threads``: ONNX Runtime intra-op threads (default: ONNX Runtime's choice).
    """

    onnx_dir: Path | None = None
    cache_dir: Path | None = None
    engine_dir: Path | None = None
    precision: str = "bf16"
    triton_url: str = "http://127.0.0.1:8000"
    triton_timeout: float = 60.0
    threads: int | None = None


def backend_order(backend: str, fallback: Sequence[str] = ()) -> tuple[str, ...]:
    """The backends to try, in order: ``backend``, then each allowed fallback once."""
    order: list[str] = []
    for name in (backend, *fallback):
        if name not in AVAILABLE_BACKENDS:
            where = "backend" if name == backend else "fallback backend"
            raise InferenceError(f"unknown {where} {name!r}; available: {', '.join(AVAILABLE_BACKENDS)}")
        if name not in order:
            order.append(name)
    return tuple(order)


def create_backend(
    name: str,
    checkpoint: Checkpoint,
    *,
    device: str = "auto",
    dtype: str = "auto",
    max_batch: int = 16,
    options: BackendOptions | None = None,
) -> GenerationBackend:
    """The backend ``name`` with ``checkpoint``'s weights loaded on ``device``."""
    (name,) = backend_order(name)
    options = options or BackendOptions()
    if name == "onnx":
        from inference.backends.onnx_backend import onnx_backend
        from inference.onnx_export import export_cache_dir, export_onnx, read_export

        if options.onnx_dir is not None:
            export = read_export(options.onnx_dir)
        else:
            directory = export_cache_dir(checkpoint.weights_sha256, "float32", options.cache_dir)
            export = export_onnx(checkpoint, directory, dtype="float32")
        if export.checkpoint_sha256 != checkpoint.weights_sha256:
            raise InferenceError(
                f"{export.directory}: exported from weights {export.checkpoint_sha256[:12]}, not from "
                f"{checkpoint.path} ({checkpoint.weights_sha256[:12]}); export this checkpoint again"
            )
        return onnx_backend(export, checkpoint.tokens, max_batch=max_batch, threads=options.threads)
    if name == "tensorrt":
        from inference.backends.tensorrt_backend import tensorrt_backend

        return tensorrt_backend(checkpoint, options, device=device, max_batch=max_batch)
    if name == "triton":
        from inference.backends.triton_backend import triton_backend

        return triton_backend(checkpoint, options, max_batch=max_batch)
    from inference.backends.torch_backend import (
        HFGenerateBackend,
        TorchBackend,
        load_qwen2_vl,
        resolve_device,
        resolve_dtype,
    )

    resolved_device = resolve_device(device)
    model = load_qwen2_vl(checkpoint.path, resolved_device, resolve_dtype(dtype, resolved_device))
    if name == "hf-generate":
        return HFGenerateBackend(model, checkpoint.tokens)
    return TorchBackend(model, checkpoint.tokens, max_batch=max_batch)


__all__ = ["AVAILABLE_BACKENDS", "PLANNED_BACKENDS", "BackendOptions", "backend_order", "create_backend"]
