"""The shared-prefix batched backend gives exactly the greedy outputs of one HF ``generate`` per prompt."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pydicom
import pytest

from inference.backends.torch_backend import HFGenerateBackend, TorchBackend
from inference.checkpoint import Checkpoint, open_checkpoint
from inference.generation import Generation, GenerationBackend, GenerationRequest
from inference.pixels import display_image
from inference.prompts import PromptEncoder
from inference.vision_input import ModelImage, prepare_model_image

SENTENCES = (
    "No pleural effusion.",
    "The heart size is normal.",
    "A calcified granuloma is present in the left lung apex.",
    "Possible small left pleural effusion.",
    "Bibasilar atelectasis.",
    "x",
    "Endotracheal tube terminates 4 cm above the carina, with its tip in good position.",
    "No acute cardiopulmonary process.",
)


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint: Path) -> Checkpoint:
    return open_checkpoint(tiny_checkpoint)


@pytest.fixture(scope="module")
def image(checkpoint: Checkpoint, chest_cr_path: Path) -> ModelImage:
    display = display_image(pydicom.dcmread(chest_cr_path)).pixels
    return prepare_model_image(display, checkpoint.processing, checkpoint.gazex.coordinates)


def requests_for(
    checkpoint: Checkpoint, image: ModelImage, sentences: tuple[str, ...], budget: int, minimum: int = 0
) -> list[GenerationRequest]:
    encoder = PromptEncoder(checkpoint.tokenizer, checkpoint.gazex.prompts.examine, checkpoint.gazex.prompts.attention)
    tokens = image.encoded.image_tokens
    return [
        GenerationRequest(image.encoded, (encoder.examine(tokens),), budget, minimum),
        GenerationRequest(image.encoded, tuple(encoder.attention(s, tokens) for s in sentences), budget, minimum),
    ]


def generate(backend: GenerationBackend, requests: list[GenerationRequest]) -> list[tuple[Generation, ...]]:
    return backend.generate(requests)


@pytest.mark.parametrize("minimum", [0, 24], ids=["stop-at-end", "fixed-length"])
def test_batched_shared_prefix_equals_one_generate_per_prompt(
    tiny_model: Any, checkpoint: Checkpoint, image: ModelImage, minimum: int
) -> None:
    requests = requests_for(checkpoint, image, SENTENCES, budget=24, minimum=minimum)
    ours = TorchBackend(tiny_model, checkpoint.tokens).generate(requests)
    naive = HFGenerateBackend(tiny_model, checkpoint.tokens).generate(requests)
    assert [len(r) for r in ours] == [1, len(SENTENCES)]
    assert ours == naive
    assert all(len(g.token_ids) == 24 for r in ours for g in r)


def test_batched_equals_unbatched_with_our_own_loop(tiny_model: Any, checkpoint: Checkpoint, image: ModelImage) -> None:
    backend = TorchBackend(tiny_model, checkpoint.tokens)
    (batched,) = backend.generate(requests_for(checkpoint, image, SENTENCES, budget=16)[1:])
    one_by_one = [backend.generate(requests_for(checkpoint, image, (s,), budget=16)[1:])[0][0] for s in SENTENCES]
    assert list(batched) == one_by_one
    chunked = TorchBackend(tiny_model, checkpoint.tokens, max_batch=3).generate(
        requests_for(checkpoint, image, SENTENCES, budget=16)[1:]
    )
    assert list(chunked[0]) == one_by_one


def eos_prone(model: Any, checkpoint: Checkpoint, token: int) -> Any:
    """A copy of ``model`` whose end token scores 1.5 times what ``token`` scores, so it wins there."""
    import torch

    changed = copy.deepcopy(model)
    with torch.no_grad():
        changed.lm_head.weight[checkpoint.tokens.end_token_ids[0]] = changed.lm_head.weight[token] * 1.5
    return changed


def test_rows_that_stop_early_leave_the_others_unchanged(
    tiny_model: Any, checkpoint: Checkpoint, image: ModelImage
) -> None:
    """Make the end token win wherever a token some rows produce would: rows stop at different steps."""
    requests = requests_for(checkpoint, image, SENTENCES, budget=20)
    free_run = TorchBackend(tiny_model, checkpoint.tokens).generate(requests)
    counts: dict[int, int] = {}
    for generation in free_run[1]:
        for token in set(generation.token_ids):
            counts[token] = counts.get(token, 0) + 1
    token = max((t for t, n in counts.items() if n < len(SENTENCES)), key=lambda t: counts[t])
    model = eos_prone(tiny_model, checkpoint, token)
    ours = TorchBackend(model, checkpoint.tokens).generate(requests)
    naive = HFGenerateBackend(model, checkpoint.tokens).generate(requests)
    assert ours == naive
    assert {g.stop for g in ours[1]} == {"end", "length"}
    assert len({len(g.token_ids) for g in ours[1]}) > 1


def test_min_new_tokens_suppresses_the_end_token(tiny_model: Any, checkpoint: Checkpoint, image: ModelImage) -> None:
    requests = requests_for(checkpoint, image, SENTENCES[:3], budget=8)
    first = TorchBackend(tiny_model, checkpoint.tokens).generate(requests)[1][0].token_ids[0]
    model = eos_prone(tiny_model, checkpoint, first)
    free = TorchBackend(model, checkpoint.tokens).generate(requests)
    assert free[1][0] == Generation(token_ids=(), stop="end")  # the end token now comes first
    held = requests_for(checkpoint, image, SENTENCES[:3], budget=8, minimum=5)
    ours = TorchBackend(model, checkpoint.tokens).generate(held)
    assert ours == HFGenerateBackend(model, checkpoint.tokens).generate(held)
    assert all(len(g.token_ids) >= 5 for r in ours for g in r)


def test_the_image_is_encoded_once_per_image(
    tiny_model: Any, checkpoint: Checkpoint, image: ModelImage, monkeypatch: pytest.MonkeyPatch
) -> None:
    visual = tiny_model.model.visual
    calls = []
    original = visual.forward

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(visual, "forward", counting)
    requests = requests_for(checkpoint, image, SENTENCES[:4], budget=4)
    TorchBackend(tiny_model, checkpoint.tokens).generate(requests)
    assert len(calls) == 1  # examine and attention share one encoding
    calls.clear()
    HFGenerateBackend(tiny_model, checkpoint.tokens).generate(requests)
    assert len(calls) == 5  # the naive way encodes it for every prompt


def test_a_reused_decoder_gives_what_a_fresh_one_gives(
    tiny_model: Any, checkpoint: Checkpoint, image: ModelImage
) -> None:
    """The decoding buffers of one (batch, capacity) serve later calls: nothing of the last call leaks."""
    backend = TorchBackend(tiny_model, checkpoint.tokens)
    backend.generate(requests_for(checkpoint, image, SENTENCES[:4], budget=24, minimum=24))
    later = requests_for(checkpoint, image, SENTENCES[4:], budget=20)
    reused = backend.generate(later)
    assert len(backend._decoders) == 2  # white box: examine (batch 1) and attention (batch 4), reused
    assert reused == TorchBackend(tiny_model, checkpoint.tokens).generate(later)
    assert reused == HFGenerateBackend(tiny_model, checkpoint.tokens).generate(later)


def test_decoding_fills_the_cache_to_its_last_slot(tiny_model: Any, checkpoint: Checkpoint, image: ModelImage) -> None:
    from inference.backends.torch_backend import CAPACITY_STEP
    from inference.generation import plan_shared_prefix

    (request,) = requests_for(checkpoint, image, SENTENCES[:3], budget=1)[1:]
    known = plan_shared_prefix(request.prompts, request.image.image_grid_thw, checkpoint.tokens).attention_mask.shape[1]
    budget = CAPACITY_STEP - known % CAPACITY_STEP  # prompt + budget is exactly the cache's capacity
    requests = requests_for(checkpoint, image, SENTENCES[:3], budget=budget, minimum=budget)[1:]
    ours = TorchBackend(tiny_model, checkpoint.tokens).generate(requests)
    assert ours == HFGenerateBackend(tiny_model, checkpoint.tokens).generate(requests)
    assert all(len(g.token_ids) == budget for g in ours[0])


def test_a_failed_cuda_graph_capture_falls_back_to_uncaptured_steps(
    tiny_model: Any, checkpoint: Checkpoint, image: ModelImage, caplog: pytest.LogCaptureFixture
) -> None:
    """Capture is asked for on the CPU, where it must fail: a warning, then the same outputs uncaptured."""
    requests = requests_for(checkpoint, image, SENTENCES[:3], budget=12)
    backend = TorchBackend(tiny_model, checkpoint.tokens, cuda_graphs=True)
    with caplog.at_level("WARNING", logger="inference.backends.torch_backend"):
        ours = backend.generate(requests)
    assert backend.cuda_graphs is False
    assert [r.getMessage() for r in caplog.records] == [
        "CUDA graph capture of a decoding step failed (CUDA graphs need a CUDA device; the model is on cpu); "
        "decoding uncaptured from now on"
    ]
    assert ours == HFGenerateBackend(tiny_model, checkpoint.tokens).generate(requests)
