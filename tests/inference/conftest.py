"""Fixtures for the inference tests: a tiny random-weight GazeX checkpoint, built once per session."""

from __future__ import annotations

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
