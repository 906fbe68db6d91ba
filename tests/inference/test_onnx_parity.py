"""ONNX Runtime parity with the torch backend, float32, on the tiny checkpoint and every bundled one.

- **Greedy outputs** of the ``onnx`` backend (dynamic cache, and the static-cache graph the
  TensorRT engines are built from) are identical, token for token, to the ``torch`` backend's,
  for the examine prompt and a batch of attention prompts, stopping at the end token or at a
  fixed length.
- **Logits**: every step's logits (the suffix pass and each decoding step, teacher-forced on
  the generated tokens) against Hugging Face's full forward pass over prompt + answer:
  ``max |onnx - hf| <= LOGITS_ATOL + LOGITS_RTOL * max |hf|`` per step.  Measured on the tiny
  checkpoint: about 2e-7 absolute (logits of magnitude ~0.5), i.e. float32 rounding.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest

from inference.backends.onnx_backend import OrtStepModel
from inference.backends.stepwise import StepwiseBackend
from inference.backends.torch_backend import TorchBackend, load_qwen2_vl
from inference.checkpoint import Checkpoint, open_checkpoint
from inference.generation import Generation, GenerationRequest
from inference.pixels import display_image
from inference.prompts import PromptEncoder
from inference.vision_input import ModelImage, prepare_model_image
from tests.inference.conftest import parity_checkpoint_names

LOGITS_ATOL = 1e-4
LOGITS_RTOL = 1e-4

SENTENCES = (
    "No pleural effusion.",
    "The heart size is normal.",
    "A calcified granuloma is present in the left lung apex.",
    "Possible small left pleural effusion.",
    "x",
    "Endotracheal tube terminates 4 cm above the carina, with its tip in good position.",
    "Bibasilar atelectasis.",
    "No acute cardiopulmonary process.",
)


class RecordingModel:
    """A step model that keeps every step's logits (for the teacher-forced comparison)."""

    def __init__(self, inner: OrtStepModel) -> None:
        self.inner = inner
        self.steps: list[np.ndarray[Any, Any]] = []
        self.vision_calls = 0

    def image_embeddings(self, image: Any) -> Any:
        self.vision_calls += 1
        return self.inner.image_embeddings(image)

    def start(self, *args: Any) -> None:
        self.steps = []
        self.inner.start(*args)

    def expand(self, batch: int) -> None:
        self.inner.expand(batch)

    def step(self, *args: Any) -> Any:
        logits = self.inner.step(*args)
        self.steps.append(logits)
        return logits


@pytest.fixture(scope="module", params=parity_checkpoint_names())
def case(
    request: pytest.FixtureRequest,
    checkpoint_paths: Callable[[str], Path],
    onnx_exports: Callable[..., Any],
    chest_cr_path: Path,
) -> tuple[Checkpoint, Any, Any, ModelImage]:
    import torch

    path = checkpoint_paths(request.param)
    checkpoint = open_checkpoint(path)
    model = load_qwen2_vl(checkpoint.path, torch.device("cpu"), torch.float32)
    display = display_image(pydicom.dcmread(chest_cr_path)).pixels
    image = prepare_model_image(display, checkpoint.processing, checkpoint.gazex.coordinates)
    return checkpoint, model, onnx_exports(path), image


def requests_for(checkpoint: Checkpoint, image: ModelImage, budget: int, minimum: int) -> list[GenerationRequest]:
    encoder = PromptEncoder(checkpoint.tokenizer, checkpoint.gazex.prompts.examine, checkpoint.gazex.prompts.attention)
    tokens = image.encoded.image_tokens
    return [
        GenerationRequest(image.encoded, (encoder.examine(tokens),), budget, minimum),
        GenerationRequest(image.encoded, tuple(encoder.attention(s, tokens) for s in SENTENCES), budget, minimum),
    ]


@pytest.mark.parametrize("minimum", [0, 24], ids=["stop-at-end", "fixed-length"])
@pytest.mark.parametrize("cache", ["dynamic", "static"])
def test_greedy_outputs_equal_the_torch_backend(case: Any, minimum: int, cache: str) -> None:
    checkpoint, model, export, image = case
    requests = requests_for(checkpoint, image, budget=24, minimum=minimum)
    expected = TorchBackend(model, checkpoint.tokens).generate(requests)
    recording = RecordingModel(OrtStepModel(export, cache=cache, threads=1))  # type: ignore[arg-type]
    got = StepwiseBackend("onnx", recording, checkpoint.tokens).generate(requests)
    assert got == expected
    assert [len(r) for r in got] == [1, len(SENTENCES)]
    assert recording.vision_calls == 1  # one encoding for both stages
    if minimum:
        assert all(len(g.token_ids) == 24 for r in got for g in r)


def teacher_forced_errors(
    model: Any, checkpoint: Checkpoint, image: ModelImage, request: GenerationRequest, steps: list[Any], result: Any
) -> tuple[float, float]:
    """The largest absolute error, and the largest error relative to the step's largest |logit|."""
    import torch

    worst_abs = worst_rel = 0.0
    for row, (prompt, generation) in enumerate(zip(request.prompts, result, strict=True)):
        generation_steps = len(generation.token_ids) + (1 if generation.stop == "end" else 0)
        ids = torch.tensor([[*prompt, *generation.token_ids]])
        with torch.no_grad():
            reference = model(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                pixel_values=torch.from_numpy(image.encoded.pixel_values),
                image_grid_thw=torch.from_numpy(image.encoded.image_grid_thw),
                mm_token_type_ids=(ids == checkpoint.tokens.image_token_id).int(),
            ).logits[0]
        for step in range(min(generation_steps, len(steps))):
            ours = steps[step][row]
            theirs = reference[len(prompt) - 1 + step].numpy()
            error = float(np.abs(ours - theirs).max())
            scale = float(np.abs(theirs).max())
            assert error <= LOGITS_ATOL + LOGITS_RTOL * scale, (row, step, error, scale)
            worst_abs = max(worst_abs, error)
            worst_rel = max(worst_rel, error / scale)
    return worst_abs, worst_rel


def test_logits_match_hugging_face_within_tolerance(case: Any) -> None:
    checkpoint, model, export, image = case
    recording = RecordingModel(OrtStepModel(export, threads=1))
    backend = StepwiseBackend("onnx", recording, checkpoint.tokens)
    worst = (0.0, 0.0)
    for request in requests_for(checkpoint, image, budget=12, minimum=0):
        (result,) = backend.generate([request])
        errors = teacher_forced_errors(model, checkpoint, image, request, recording.steps, result)
        worst = (max(worst[0], errors[0]), max(worst[1], errors[1]))
    print(f"\n{checkpoint.gazex.name}: max |logit error| {worst[0]:.3g}, relative {worst[1]:.3g}")
    assert worst[0] > 0 or worst[1] == 0  # compared something


def test_rows_that_stop_early_leave_the_others_unchanged() -> None:
    """The shared loop's stopping rules, on a scripted step model: row 1 ends at step 2, row 0 runs out."""
    from inference.generation import TokenSpec

    spec = TokenSpec(
        end_token_ids=(2, 3),
        pad_token_id=3,
        image_token_id=9,
        vision_start_token_id=7,
        vision_end_token_id=8,
        spatial_merge_size=2,
    )

    class Scripted:
        def __init__(self) -> None:
            self.calls: list[tuple[Any, ...]] = []
            self.script = [[5, 6], [5, 2], [6, 7], [7, 7]]

        def image_embeddings(self, image: Any) -> Any:
            return None

        def start(self, *args: Any) -> None:
            self.calls.append(("start", args[0].shape, args[3]))

        def expand(self, batch: int) -> None:
            self.calls.append(("expand", batch))

        def step(self, ids: Any, positions: Any, mask: Any, last: Any) -> Any:
            self.calls.append(("step", ids.tolist(), positions[:, :, -1].tolist(), mask.shape))
            logits = np.zeros((ids.shape[0], 10), dtype=np.float32)
            for row, token in enumerate(self.script[len(self.calls) - 3]):
                logits[row, token] = 1.0
            return logits

    from inference.vision_input import EncodedImage

    image = EncodedImage.create(np.zeros((16, 1176), np.float32), np.array([[1, 4, 4]]), 2)
    prompts = ((1, 7, 9, 9, 9, 9, 8, 20, 21), (1, 7, 9, 9, 9, 9, 8, 20, 22, 23))
    scripted = Scripted()
    backend = StepwiseBackend("scripted", scripted, spec)
    (result,) = backend.generate([GenerationRequest(image, prompts, max_new_tokens=3)])
    assert result == (Generation((5, 5, 6), "length"), Generation((6,), "end"))
    assert scripted.calls[0] == ("start", (8,), 8 + 2 + 3)
    assert scripted.calls[1] == ("expand", 2)
    # the first decoding step feeds what the suffix chose, each row at its own next M-RoPE position
    assert scripted.calls[3][1:3] == ([[5], [6]], [[7, 8]] * 3)
    # the next feeds row 1, which has ended, the pad token
    assert scripted.calls[4][1] == [[5], [3]]
    held = GenerationRequest(image, prompts, max_new_tokens=3, min_new_tokens=2)
    scripted = Scripted()
    (result,) = StepwiseBackend("scripted", scripted, spec).generate([held])
    # row 1's end token is suppressed at its second token, so the best remaining one (0) is taken
    assert result == (Generation((5, 5, 6), "length"), Generation((6, 0, 7), "length"))
