"""The transformers (PyTorch) backends: ours, with a shared prefix cache, and the naive one.

:class:`TorchBackend` is a small greedy decoding loop over the Qwen2-VL modules:

1. the vision tower encodes each image once (the last few encodings are cached by content,
   so the examine and attention stages of one image share one encoding);
2. the prompts' common prefix (system turn, image, prompt text before the sentence) runs once,
   at batch size 1, filling a key/value cache;
3. that cache is copied into every row of a fixed-capacity cache (one row per prompt) and the
   differing suffixes run after it as one right-padded batch;
4. the batch decodes together, one token per step, each row at its own M-RoPE position, the
   padding masked out, until every row has met an end token or its budget.  The cache, the
   4-D attention mask and the step's inputs are preallocated and updated in place, so every
   step has the same shapes: the mask is never rebuilt (transformers passes a 4-D mask
   through), attention kernels are planned once, and on CUDA the step is captured once as a
   CUDA graph and replayed (if capture fails, a warning is logged and steps run uncaptured).
   The greedy choice stays on the device; the host checks for the end every few steps.

:class:`HFGenerateBackend` is the naive way: one Hugging Face ``generate`` per prompt, the
image encoded again each time.  It is the reference the fast path is checked against and the
peer in ``benchmarks/generation.py``.

Under ``torch.inference_mode``; on CUDA the model runs in bfloat16 with SDPA attention.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import threading
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
    ImageEmbeddingCache,
    PrefixPlan,
    TokenIds,
    TokenSpec,
    generate_in_batches,
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


#: Cache capacities are rounded up to a multiple of this, so that calls of similar size share
#: one set of decoding buffers (and, on CUDA, one captured graph).
CAPACITY_STEP = 128
#: Decoding checks whether every row has ended (one device sync) once per this many steps.
STOP_CHECK_EVERY = 8
#: Decoders (buffers, and on CUDA a captured graph, per batch size and capacity) kept for reuse.
DECODERS_KEPT = 3


class _StaticCache:
    """A key/value cache of fixed capacity: (batch, kv heads, capacity, head dim) per layer.

    The text model calls :meth:`update` once per layer; the new keys and values are written at
    cache slots ``slots`` (a device tensor, changed in place between steps, so a captured CUDA
    graph reads the current slot), and attention then runs over the whole capacity, with the
    4-D additive mask the caller passes hiding the slots not yet written and the padding.
    """

    def __init__(self, layers: int, shape: tuple[int, int, int, int], dtype: Any, device: Any) -> None:
        import torch

        # zeros, not empty: masked slots are multiplied by 0, and 0 x NaN would be NaN
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.slots = torch.zeros(1, dtype=torch.long, device=device)

    def update(self, key: Any, value: Any, layer_idx: int, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        self.keys[layer_idx].index_copy_(2, self.slots, key)
        self.values[layer_idx].index_copy_(2, self.slots, value)
        return self.keys[layer_idx], self.values[layer_idx]


class _Decoder:
    """Preallocated buffers for decoding a batch of ``batch`` rows in a cache of ``capacity`` slots.

    Shapes never change while decoding (the cache and the mask span the whole capacity; the
    slot written, the positions and the mask are updated in place), so every step launches the
    same kernels with the same arguments: on CUDA the step is captured once as a CUDA graph and
    replayed.  A decoder is reused by later calls of the same (batch, capacity).
    """

    def __init__(self, m: _TorchModel, batch: int, capacity: int) -> None:
        torch = m.torch
        config = m.text.config
        heads = config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        shape = (batch, config.num_key_value_heads, capacity, head_dim)
        dtype = m.lm_head.weight.dtype
        self.m = m
        self.batch = batch
        self.capacity = capacity
        self.cache = _StaticCache(config.num_hidden_layers, shape, dtype, m.device)
        self.step_slot = self.cache.slots
        # additive (0 where visible, the dtype's minimum elsewhere), as SDPA would turn a boolean one
        self.hidden = torch.finfo(dtype).min
        self.mask = torch.full((batch, 1, 1, capacity), self.hidden, dtype=dtype, device=m.device)
        self.feed = torch.zeros((batch, 1), dtype=torch.long, device=m.device)
        self.positions = torch.zeros((3, batch, 1), dtype=torch.long, device=m.device)
        self.graph: Any = None
        self.graph_logits: Any = None

    def start(self, prefix: Any, plan: PrefixPlan, first_positions: Any) -> None:
        """Copy the batch-1 prefix cache into every row and set the mask to the plan's (prompt tokens only)."""
        length = plan.prefix_length
        for index, layer in enumerate(prefix.layers):
            self.cache.keys[index][:, :, :length].copy_(layer.keys.expand(self.batch, -1, -1, -1))
            self.cache.values[index][:, :, :length].copy_(layer.values.expand(self.batch, -1, -1, -1))
        visible = self.m.torch.from_numpy(plan.attention_mask).to(self.m.device, dtype=self.m.torch.bool)
        self.mask.fill_(self.hidden)
        self.mask[:, 0, 0, : visible.shape[1]].masked_fill_(visible, 0.0)
        self.step_slot.fill_(visible.shape[1])
        self.positions.copy_(first_positions.view(1, self.batch, 1).expand(3, -1, -1))

    def prefill(self, embeds: Any, positions: Any, start: int) -> Any:
        """Run ``embeds`` (B, S) into slots ``start``.. ``start + S``; returns the hidden states."""
        torch = self.m.torch
        length = embeds.shape[1]
        slots = torch.arange(start, start + length, device=self.m.device)
        causal = torch.arange(self.capacity, device=self.m.device)[None, :] <= slots[:, None]  # (S, capacity)
        mask = torch.where(causal[None, None], self.mask, self.hidden)  # (B, 1, S, capacity): the prompt, causally
        self.cache.slots = slots
        try:
            return self.m.forward(embeds, positions, mask, self.cache)
        finally:
            self.cache.slots = self.step_slot

    def step(self, tokens: Any, *, capture: bool = False) -> Any:
        """Feed one token per row at the next slot and position; returns float32 logits (B, vocab).

        With ``capture`` (CUDA only), the first step is captured as a CUDA graph that later
        steps replay; raises :class:`_CaptureError` (nothing advanced) when that fails.
        """
        self.feed.copy_(tokens[:, None])
        self.mask.index_fill_(3, self.step_slot, 0.0)
        if self.graph is not None:
            self.graph.replay()
            logits = self.graph_logits
        elif capture:
            logits = self._capture()
        else:
            logits = self._forward()
        self.step_slot.add_(1)
        self.positions.add_(1)
        return logits

    def _forward(self) -> Any:
        embeds = self.m.text.embed_tokens(self.feed)
        hidden = self.m.forward(embeds, self.positions, self.mask, self.cache)
        return self.m.lm_head(hidden[:, -1]).float()

    def _capture(self) -> Any:
        """Capture the pending step as a CUDA graph, checked against an ordinary run of it.

        The step runs three times, writing the same keys and values at the same slot: once
        ordinarily (which also settles lazily initialised state), once captured (nothing
        runs), once replayed; the replay must match the ordinary run.
        """
        torch = self.m.torch
        if self.m.device.type != "cuda":
            raise _CaptureError(f"CUDA graphs need a CUDA device; the model is on {self.m.device}")
        try:
            side = torch.cuda.Stream(self.m.device)
            side.wait_stream(torch.cuda.current_stream(self.m.device))
            with torch.cuda.stream(side):
                expected = self._forward()
            torch.cuda.current_stream(self.m.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                logits = self._forward()
            graph.replay()
        except RuntimeError as exc:  # torch's capture and CUDA errors
            raise _CaptureError(f"{type(exc).__name__}: {exc}") from exc
        error = float((logits - expected).abs().max()) / max(float(expected.abs().max()), 1e-6)
        if not error <= 1e-2:
            raise _CaptureError(f"the replayed step differs from the ordinary one (relative error {error:.3g})")
        self.graph, self.graph_logits = graph, logits
        return logits


class _CaptureError(Exception):
    """A decoding step could not be captured as a CUDA graph (decoding can go on uncaptured)."""


class TorchBackend:
    """Greedy generation with the image encoded once and the prompt prefix's cache shared.

    ``cuda_graphs``: replay decoding steps from CUDA graphs (``None``: on CUDA devices).  When a
    capture fails, a warning is logged and decoding runs uncaptured from then on.  Calls are
    serialised: the decoding buffers are shared between them.  The model must not be moved or
    cast while a backend holds it (captured graphs point at its weights): make a new backend.
    """

    def __init__(
        self,
        model: Any,
        tokens: TokenSpec,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        vision_cache_size: int = 2,
        cuda_graphs: bool | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f'Argument "max_batch" must be at least 1, got {max_batch}')
        self._m = _TorchModel(model)
        self.tokens = tokens
        self.max_batch = max_batch
        self._vision_cache: ImageEmbeddingCache[Any] = ImageEmbeddingCache(vision_cache_size)
        self.cuda_graphs = self._m.device.type == "cuda" if cuda_graphs is None else cuda_graphs
        self._decoders: OrderedDict[tuple[int, int], _Decoder] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return "torch"

    @property
    def model(self) -> Any:
        return self._m.model

    def generate(self, requests: Sequence[GenerationRequest]) -> list[tuple[Generation, ...]]:
        with self._lock, self._m.torch.inference_mode():
            return generate_in_batches(requests, self.max_batch, self._generate_batch)

    def _decoder(self, batch: int, capacity: int) -> _Decoder:
        key = (batch, capacity)
        decoder = self._decoders.pop(key, None) or _Decoder(self._m, batch, capacity)
        self._decoders[key] = decoder
        while len(self._decoders) > DECODERS_KEPT:
            self._decoders.popitem(last=False)
        return decoder

    def _step(self, decoder: _Decoder, tokens: Any) -> Any:
        try:
            return decoder.step(tokens, capture=self.cuda_graphs)
        except _CaptureError as exc:
            self.cuda_graphs = False
            logger.warning("CUDA graph capture of a decoding step failed (%s); decoding uncaptured from now on", exc)
            return decoder.step(tokens)

    def _generate_batch(self, request: GenerationRequest, prompts: Sequence[TokenIds]) -> list[Generation]:
        from transformers import DynamicCache

        torch = self._m.torch
        device = self._m.device
        embed = self._m.text.embed_tokens
        plan = plan_shared_prefix(prompts, request.image.image_grid_thw, self.tokens)
        batch = plan.batch_size
        known = plan.attention_mask.shape[1]  # prefix + padded suffix
        capacity = -(-(known + request.max_new_tokens) // CAPACITY_STEP) * CAPACITY_STEP

        def tensor(array: np.ndarray[Any, Any]) -> Any:
            return torch.from_numpy(np.ascontiguousarray(array)).to(device)

        # 1-2. the image and the shared prefix, once, at batch size 1
        prefix = embed(tensor(plan.prefix_ids)[None])
        prefix[0, plan.image_slice] = self._vision_cache.get(request.image, self._m.image_embeddings).to(prefix.dtype)
        prefix_cache = DynamicCache(config=self._m.model.config)
        self._m.forward(prefix, tensor(plan.prefix_positions)[:, None, :], None, prefix_cache)

        # 3. the suffixes, right-padded, after the prefix in every row of a fixed-capacity cache
        decoder = self._decoder(batch, capacity)
        decoder.start(prefix_cache, plan, tensor(plan.next_position))
        del prefix_cache
        hidden = decoder.prefill(embed(tensor(plan.suffix_ids)), tensor(plan.suffix_positions), plan.prefix_length)
        rows = torch.arange(batch, device=device)
        logits = self._m.lm_head(hidden[rows, tensor(plan.last_index)]).float()

        # 4. greedy decoding of the batch, on the device; one sync every STOP_CHECK_EVERY steps
        end_ids = torch.tensor(self.tokens.end_token_ids, device=device)
        pad = torch.full((batch,), self.tokens.pad_token_id, dtype=torch.long, device=device)
        chosen_tokens = torch.empty((batch, request.max_new_tokens), dtype=torch.long, device=device)
        ended = torch.zeros(batch, dtype=torch.bool, device=device)
        steps = request.max_new_tokens
        for step in range(request.max_new_tokens):
            if step < request.min_new_tokens:
                logits.index_fill_(1, end_ids, float("-inf"))
            chosen = logits.argmax(dim=-1)
            chosen_tokens[:, step] = chosen
            ended |= torch.isin(chosen, end_ids)
            if step + 1 == request.max_new_tokens or (
                (step + 1) % STOP_CHECK_EVERY == 0 and bool(ended.all())  # one device sync
            ):
                steps = step + 1
                break
            logits = self._step(decoder, torch.where(ended, pad, chosen))
        return [_trim(row, self.tokens) for row in chosen_tokens[:, :steps].tolist()]


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
