"""The greedy shared-prefix loop for backends that run exported graphs (ONNX Runtime, TensorRT, Triton).

It is the algorithm of :class:`inference.backends.torch_backend.TorchBackend`, in numpy, over a
:class:`StepModel`, which owns the key/value cache wherever it lives (host arrays, device
buffers, a remote server):

1. the image is encoded once (the last few encodings are kept by content);
2. :meth:`StepModel.start` runs the prompts' common prefix at batch size 1 into a fresh cache;
3. :meth:`StepModel.expand` repeats that cache once per prompt;
4. :meth:`StepModel.step` runs the right-padded suffixes, then one token per row per step, and
   returns the float32 logits of each row's last real token.

The decoding decisions (end tokens suppressed until ``min_new_tokens``, rows that ended fed
the pad token and masked out of nothing, since they are discarded) are the torch backend's,
so greedy outputs agree token for token wherever the logits do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from inference.generation import (
    Generation,
    GenerationRequest,
    ImageEmbeddingCache,
    IntArray,
    TokenIds,
    TokenSpec,
    generate_in_batches,
    plan_shared_prefix,
)
from inference.vision_input import EncodedImage

FloatArray = npt.NDArray[np.float32]


def prefix_batch(ids: IntArray, positions: IntArray) -> tuple[IntArray, IntArray, IntArray, IntArray]:
    """The prefix ``ids`` (P,) at ``positions`` (3, P) as a batch of one: ids, positions, mask, last index."""
    length = int(ids.shape[0])
    mask = np.ones((1, length), dtype=np.int64)
    return ids[None, :], positions[:, None, :], mask, np.array([length - 1], dtype=np.int64)


class StepModel(Protocol):
    """The two graphs of an exported GazeX model behind one cache."""

    def image_embeddings(self, image: EncodedImage) -> Any:
        """The vision tower's output for ``image`` (an opaque handle the model accepts back)."""
        ...

    def start(self, ids: IntArray, positions: IntArray, image_embeds: Any, capacity: int) -> None:
        """Run the prefix ``ids`` (P,) at ``positions`` (3, P) into a fresh cache of at least ``capacity`` tokens."""
        ...

    def expand(self, batch: int) -> None:
        """Repeat the batch-1 cache ``batch`` times."""
        ...

    def step(self, ids: IntArray, positions: IntArray, mask: IntArray, last_index: IntArray) -> FloatArray:
        """Append ``ids`` (B, S) at ``positions`` (3, B, S) to the cache; ``mask`` (B, cached + S) is 0 on padding.

        Returns the logits (B, vocab) at ``last_index`` (B,) of each row.
        """
        ...


class StepwiseBackend:
    """Greedy generation over a :class:`StepModel`, the image encoded once and the prefix shared."""

    def __init__(
        self,
        name: str,
        model: StepModel,
        tokens: TokenSpec,
        *,
        max_batch: int = 16,
        vision_cache_size: int = 2,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f'Argument "max_batch" must be at least 1, got {max_batch}')
        self._name = name
        self.model = model
        self.tokens = tokens
        self.max_batch = max_batch
        self._vision_cache: ImageEmbeddingCache[Any] = ImageEmbeddingCache(vision_cache_size)

    @property
    def name(self) -> str:
        return self._name

    def generate(self, requests: Sequence[GenerationRequest]) -> list[tuple[Generation, ...]]:
        return generate_in_batches(requests, self.max_batch, self._generate_batch)

    def _generate_batch(self, request: GenerationRequest, prompts: Sequence[TokenIds]) -> list[Generation]:
        plan = plan_shared_prefix(prompts, request.image.image_grid_thw, self.tokens)
        batch = plan.batch_size
        capacity = plan.prefix_length + int(plan.suffix_ids.shape[1]) + request.max_new_tokens
        self.model.start(
            plan.prefix_ids,
            plan.prefix_positions,
            self._vision_cache.get(request.image, self.model.image_embeddings),
            capacity,
        )
        self.model.expand(batch)
        mask = plan.attention_mask
        logits = self.model.step(plan.suffix_ids, plan.suffix_positions, mask, plan.last_index)

        end_ids = np.asarray(self.tokens.end_token_ids, dtype=np.int64)
        outputs: list[list[int]] = [[] for _ in range(batch)]
        stops: list[str | None] = [None] * batch
        zeros = np.zeros(batch, dtype=np.int64)
        for step in range(request.max_new_tokens):
            if step < request.min_new_tokens:
                logits = logits.copy()
                logits[:, end_ids] = -np.inf
            chosen = logits.argmax(axis=-1)
            for row, token in enumerate(chosen.tolist()):
                if stops[row] is not None:
                    continue
                if token in self.tokens.end_token_ids:
                    stops[row] = "end"
                    continue
                outputs[row].append(int(token))
                if len(outputs[row]) >= request.max_new_tokens:
                    stops[row] = "length"
            if all(stop is not None for stop in stops):
                break
            finished = np.asarray([stop is not None for stop in stops])
            feed = np.where(finished, self.tokens.pad_token_id, chosen).astype(np.int64)[:, None]
            positions = np.broadcast_to((plan.next_position + step)[None, :, None], (3, batch, 1)).astype(np.int64)
            mask = np.concatenate([mask, np.ones((batch, 1), dtype=mask.dtype)], axis=1)
            logits = self.model.step(feed, positions, mask, zeros)
        return [
            Generation(token_ids=tuple(tokens), stop="end" if stop == "end" else "length")
            for tokens, stop in zip(outputs, stops, strict=True)
        ]
