"""The transformers (PyTorch) backends: ours, with a shared prefix cache, and the naive one.

:class:`TorchBackend` is a small greedy decoding loop over the Qwen2-VL modules:

1. the vision tower encodes each image once (the last few encodings are cached by content,
   so the examine and attention stages of one image share one encoding);
2. the prompts' common prefix (system turn, image, prompt text before the sentence) runs once,
   at batch size 1, filling a key/value cache;
3. the cache is repeated per prompt and the differing suffixes run as one right-padded batch;
4. the batch decodes together, one token per step, each row at its own M-RoPE position, the
   padding masked out, until every row has met an end token or its budget.

:class:`HFGenerateBackend` is the naive way: one Hugging Face ``generate`` per prompt, the
image encoded again each time.  It is the reference the fast path is checked against and the
peer in ``benchmarks/generation.py``.

Under ``torch.inference_mode``; on CUDA the model runs in bfloat16 with SDPA attention.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inference.checkpoint import CheckpointError
from inference.engine import InferenceError
from inference.generation import (
    Generation,
    GenerationRequest,
    TokenIds,
    TokenSpec,
    plan_shared_prefix,
)
from inference.vision_input import EncodedImage

logger = logging.getLogger(__name__)

#: Prompts decoded together at most, so a very long report cannot exhaust memory.
DEFAULT_MAX_BATCH = 16


def resolve_device(device: str) -> Any:
    """``"auto"`` is CUDA when available, else the CPU; anything else is passed to torch."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise InferenceError(f"unknown device {device!r}: {exc}; use auto, cpu, cuda or cuda:N") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InferenceError(f"device {device!r} was asked for but CUDA is not available; use --device cpu")
    return resolved


def resolve_dtype(dtype: str, device: Any) -> Any:
    """``"auto"`` is bfloat16 on CUDA and float32 elsewhere."""
    import torch

    choices = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in choices:
        raise InferenceError(f"unknown dtype {dtype!r}; use auto, {', '.join(choices)}")
    return choices[dtype]


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' progress bars and load report; our own errors say what matters."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def load_qwen2_vl(path: Path, device: Any, dtype: Any) -> Any:
    """Load the Qwen2-VL weights of a checkpoint; raises :class:`CheckpointError` when they do not fit."""
    from transformers import Qwen2VLForConditionalGeneration

    with quiet_transformers():
        try:
            model, info = Qwen2VLForConditionalGeneration.from_pretrained(
                str(path),
                dtype=dtype,
                attn_implementation="sdpa",
                ignore_mismatched_sizes=True,
                output_loading_info=True,
            )
        except (OSError, ValueError, RuntimeError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{path}: the Qwen2-VL model cannot be loaded: {exc}") from exc
    problems = []
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        keys = sorted(str(k) for k in info.get(kind, ()))
        if keys:
            shown = ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
            problems.append(f"{kind.replace('_', ' ')}: {shown}")
    if problems:
        raise CheckpointError(
            f"{path}: the weights do not match config.json ({'; '.join(problems)}); "
            "config.json and the safetensors files must come from the same checkpoint"
        )
    return model.to(device).eval()


class _TorchModel:
    """The pieces of a loaded Qwen2-VL model both backends use."""

    def __init__(self, model: Any) -> None:
        import torch

        self.model = model
        self.device = next(model.parameters()).device
        self.text = model.model.language_model
        self.visual = model.model.visual
        self.lm_head = model.lm_head
        parameters = inspect.signature(self.text.forward).parameters
        self.cache_argument = "cache" if "cache" in parameters else "past_key_values"
        self.torch = torch

    def image_embeddings(self, image: EncodedImage) -> Any:
        torch = self.torch
        pixel_values = torch.from_numpy(np.ascontiguousarray(image.pixel_values)).to(
            self.device, dtype=self.visual.dtype
        )
        grid = torch.from_numpy(np.ascontiguousarray(image.image_grid_thw)).to(self.device)
        output = self.visual(pixel_values, grid_thw=grid)
        embeddings = getattr(output, "pooler_output", output)
        if embeddings.shape[0] != image.image_tokens:
            raise InferenceError(
                f"the vision tower gave {embeddings.shape[0]} embeddings for {image.image_tokens} image tokens"
            )
        return embeddings

    def forward(self, embeds: Any, positions: Any, mask: Any, cache: Any) -> Any:
        output = self.text(
            inputs_embeds=embeds,
            position_ids=positions,
            attention_mask=mask,
            use_cache=True,
            **{self.cache_argument: cache},
        )
        return output.last_hidden_state


class TorchBackend:
    """Greedy generation with the image encoded once and the prompt prefix's cache shared."""

    def __init__(
        self, model: Any, tokens: TokenSpec, *, max_batch: int = DEFAULT_MAX_BATCH, vision_cache_size: int = 2
    ) -> None:
        if max_batch < 1:
            raise ValueError(f'Argument "max_batch" must be at least 1, got {max_batch}')
        self._m = _TorchModel(model)
        self.tokens = tokens
        self.max_batch = max_batch
        self._vision_cache: OrderedDict[str, Any] = OrderedDict()
        self._vision_cache_size = vision_cache_size

    @property
    def name(self) -> str:
        return "torch"

    @property
    def model(self) -> Any:
        return self._m.model

    def generate(self, requests: Sequence[GenerationRequest]) -> list[tuple[Generation, ...]]:
        results: list[tuple[Generation, ...]] = []
        with self._m.torch.inference_mode():
            for request in requests:
                generations: list[Generation] = []
                for start in range(0, len(request.prompts), self.max_batch):
                    chunk = request.prompts[start : start + self.max_batch]
                    generations.extend(self._generate_batch(request, chunk))
                results.append(tuple(generations))
        return results

    def _image_embeddings(self, image: EncodedImage) -> Any:
        cached = self._vision_cache.get(image.key)
        if cached is not None:
            self._vision_cache.move_to_end(image.key)
            return cached
        embeddings = self._m.image_embeddings(image)
        if self._vision_cache_size > 0:
            self._vision_cache[image.key] = embeddings
            while len(self._vision_cache) > self._vision_cache_size:
                self._vision_cache.popitem(last=False)
        return embeddings

    def _generate_batch(self, request: GenerationRequest, prompts: Sequence[TokenIds]) -> list[Generation]:
        from transformers import DynamicCache

        torch = self._m.torch
        device = self._m.device
        embed = self._m.text.embed_tokens
        plan = plan_shared_prefix(prompts, request.image.image_grid_thw, self.tokens)
        batch = plan.batch_size

        def tensor(array: np.ndarray[Any, Any]) -> Any:
            return torch.from_numpy(np.ascontiguousarray(array)).to(device)

        # 1-2. the image and the shared prefix, once
        prefix = embed(tensor(plan.prefix_ids)[None])
        prefix[0, plan.image_slice] = self._image_embeddings(request.image).to(prefix.dtype)
        cache = DynamicCache(config=self._m.model.config)
        self._m.forward(prefix, tensor(plan.prefix_positions)[:, None, :], None, cache)
        if batch > 1:
            cache.batch_repeat_interleave(batch)

        # 3. the suffixes, right-padded, on the shared cache
        mask = tensor(plan.attention_mask)
        hidden = self._m.forward(embed(tensor(plan.suffix_ids)), tensor(plan.suffix_positions), mask, cache)
        rows = torch.arange(batch, device=device)
        logits = self._m.lm_head(hidden[rows, tensor(plan.last_index)]).float()

        # 4. greedy decoding of the batch
        end_ids = torch.tensor(self.tokens.end_token_ids, device=device)
        next_position = tensor(plan.next_position)
        outputs: list[list[int]] = [[] for _ in range(batch)]
        stops: list[str | None] = [None] * batch
        for step in range(request.max_new_tokens):
            if step < request.min_new_tokens:
                logits[:, end_ids] = float("-inf")
            chosen = logits.argmax(dim=-1)
            is_end = torch.isin(chosen, end_ids)
            tokens, ended_rows = torch.stack([chosen, is_end.to(chosen.dtype)]).tolist()  # one device sync
            for row, (token, ended) in enumerate(zip(tokens, ended_rows, strict=True)):
                if stops[row] is not None:
                    continue
                if ended:
                    stops[row] = "end"
                    continue
                outputs[row].append(int(token))
                if len(outputs[row]) >= request.max_new_tokens:
                    stops[row] = "length"
            if all(stop is not None for stop in stops):
                break
            finished = torch.tensor([stop is not None for stop in stops], device=device)
            feed = torch.where(finished, torch.full_like(chosen, self.tokens.pad_token_id), chosen)
            positions = (next_position + step).view(1, batch, 1).expand(3, batch, 1)
            mask = torch.cat([mask, torch.ones((batch, 1), dtype=mask.dtype, device=device)], dim=1)
            hidden = self._m.forward(embed(feed[:, None]), positions, mask, cache)
            logits = self._m.lm_head(hidden[:, -1]).float()
        return [
            Generation(token_ids=tuple(tokens), stop="end" if stop == "end" else "length")
            for tokens, stop in zip(outputs, stops, strict=True)
        ]


class HFGenerateBackend:
    """The naive way: one Hugging Face ``generate`` per prompt, the image encoded each time."""

    def __init__(self, model: Any, tokens: TokenSpec) -> None:
        self._m = _TorchModel(model)
        self.tokens = tokens

    @property
    def name(self) -> str:
        return "hf-generate"

    @property
    def model(self) -> Any:
        return self._m.model

    def generate(self, requests: Sequence[GenerationRequest]) -> list[tuple[Generation, ...]]:
        from transformers import GenerationConfig

        torch = self._m.torch
        device = self._m.device
        results: list[tuple[Generation, ...]] = []
        with torch.inference_mode():
            for request in requests:
                config = GenerationConfig(
                    do_sample=False,
                    num_beams=1,
                    max_new_tokens=request.max_new_tokens,
                    min_new_tokens=request.min_new_tokens,
                    eos_token_id=list(self.tokens.end_token_ids),
                    pad_token_id=self.tokens.pad_token_id,
                    repetition_penalty=1.0,
                )
                generations = []
                for prompt in request.prompts:
                    input_ids = torch.tensor([prompt], dtype=torch.long, device=device)
                    output = self._m.model.generate(
                        input_ids=input_ids,
                        attention_mask=torch.ones_like(input_ids),
                        pixel_values=torch.from_numpy(request.image.pixel_values).to(device),
                        image_grid_thw=torch.from_numpy(request.image.image_grid_thw).to(device),
                        mm_token_type_ids=(input_ids == self.tokens.image_token_id).int(),
                        generation_config=config,
                    )
                    new = [int(t) for t in output[0, input_ids.shape[1] :].tolist()]
                    generations.append(_trim(new, self.tokens))
                results.append(tuple(generations))
        return results


def _trim(tokens: list[int], spec: TokenSpec) -> Generation:
    """A generated sequence cut at its first end token."""
    for index, token in enumerate(tokens):
        if token in spec.end_token_ids:
            return Generation(token_ids=tuple(tokens[:index]), stop="end")
    return Generation(token_ids=tuple(tokens), stop="length")
