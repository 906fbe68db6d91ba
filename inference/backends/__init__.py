"""Generation backends, chosen by name.

- ``torch``: transformers/PyTorch with the image encoded once and the prompt prefix's key/value
  cache shared across the attention prompts (the default);
- ``hf-generate``: the naive way, one Hugging Face ``generate`` per prompt (for comparison).

ONNX Runtime, TensorRT and Triton backends implement :class:`inference.generation.GenerationBackend`
too and are registered here when they exist.
"""

from __future__ import annotations

from inference.checkpoint import Checkpoint
from inference.engine import InferenceError
from inference.generation import GenerationBackend

AVAILABLE_BACKENDS: tuple[str, ...] = ("torch", "hf-generate")
PLANNED_BACKENDS: tuple[str, ...] = ("onnx", "tensorrt", "triton")


def create_backend(
    name: str, checkpoint: Checkpoint, *, device: str = "auto", dtype: str = "auto", max_batch: int = 16
) -> GenerationBackend:
    """The backend ``name`` with ``checkpoint``'s weights loaded on ``device``."""
    if name not in AVAILABLE_BACKENDS:
        if name in PLANNED_BACKENDS:
            raise InferenceError(
                f"the {name!r} backend is not part of this build; available: {', '.join(AVAILABLE_BACKENDS)}"
            )
        raise InferenceError(f"unknown backend {name!r}; available: {', '.join(AVAILABLE_BACKENDS)}")
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


__all__ = ["AVAILABLE_BACKENDS", "PLANNED_BACKENDS", "create_backend"]
