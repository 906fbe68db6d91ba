"""Fixtures for the inference tests: a tiny random-weight GazeX checkpoint, built once per session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from inference.testing import make_tiny_checkpoint


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny GazeX checkpoint directory (treat as read-only; copy it to modify).

    Tiny models run fastest on one thread, and the CI machine's two cores are shared, so the
    tests that use one run torch single-threaded.
    """
    import torch

    torch.set_num_threads(1)
    return make_tiny_checkpoint(tmp_path_factory.mktemp("checkpoints") / "gazex-tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_model(tiny_checkpoint: Path) -> Any:
    """The tiny checkpoint's Qwen2-VL model, loaded once (float32, CPU, eval mode); do not modify."""
    from transformers import Qwen2VLForConditionalGeneration

    return Qwen2VLForConditionalGeneration.from_pretrained(str(tiny_checkpoint)).eval()


#: The checkpoints every backend's parity is checked on: the tiny random one, and each
#: checkpoint bundled in this build (``builtin:NAME``, e.g. the demo model once it lands).
def parity_checkpoint_names() -> list[str]:
    from inference.checkpoint import builtin_checkpoints

    return ["tiny", *(f"builtin:{name}" for name in builtin_checkpoints())]


@pytest.fixture(scope="session")
def checkpoint_paths(tiny_checkpoint: Path) -> Callable[[str], Path]:
    """``name -> checkpoint directory`` for :func:`parity_checkpoint_names`."""
    from inference.checkpoint import resolve_checkpoint_path

    def resolve(name: str) -> Path:
        return tiny_checkpoint if name == "tiny" else resolve_checkpoint_path(name)

    return resolve


@pytest.fixture(scope="session")
def onnx_exports(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Any]:
    """``export(checkpoint_path, dtype="float32") -> OnnxExport``, each exported once per session
    (dynamic and static cache)."""
    from inference.checkpoint import open_checkpoint
    from inference.onnx_export import export_onnx

    made: dict[tuple[Path, str], Any] = {}
    root = tmp_path_factory.mktemp("onnx-exports")

    def export(path: Path, dtype: str = "float32") -> Any:
        key = (Path(path), dtype)
        if key not in made:
            target = root / f"{len(made)}-{Path(path).name}-{dtype}"
            made[key] = export_onnx(open_checkpoint(path), target, dtype=dtype, cache=("dynamic", "static"))
        return made[key]

    return export
