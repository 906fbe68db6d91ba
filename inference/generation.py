"""The generation backend interface, and the backend-neutral planning every backend shares.

A backend turns :class:`GenerationRequest` objects into :class:`Generation` objects::

    backend.generate(requests) -> [(Generation, ...) per request]

A request is one image (``pixel_values`` and ``image_grid_thw`` as numpy arrays) with one or
more prompts about it (token ids, with the image's ``<|image_pad|>`` run already expanded).
Everything crossing the interface is numpy or plain Python, so the torch, ONNX Runtime,
TensorRT and Triton backends all fit it, and so does a naive one (one ``generate`` per prompt).

The contract, which :mod:`tests.inference.test_generation_parity` checks for the torch backends:

- greedy decoding; at most ``max_new_tokens`` tokens per prompt; until ``min_new_tokens`` have
  been produced the end tokens are suppressed (as Hugging Face's ``min_new_tokens`` does);
  a prompt stops at its first end token, which is not part of the result;
- every prompt's result equals what greedy decoding of that prompt alone would give.

The functions below plan the fast way of meeting it: encode the image once, run the prompts'
common prefix (system turn, image, prompt text up to the sentence) once, share its key/value
cache across a batch of the differing suffixes, and decode the batch together.  They work on
token ids only, so a backend in any runtime can use them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Literal, Protocol, TypeVar, runtime_checkable

import numpy as np
import numpy.typing as npt

from inference.vision_input import EncodedImage

TokenIds = tuple[int, ...]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class TokenSpec:
    """The token ids and vision constants a backend needs."""

    end_token_ids: tuple[int, ...]
    pad_token_id: int
    image_token_id: int
    vision_start_token_id: int
    vision_end_token_id: int
    spatial_merge_size: int


@dataclass(frozen=True)
class GenerationRequest:
    """Prompts about one image, all generated with the same token budget."""

    image: EncodedImage
    prompts: tuple[TokenIds, ...]
    max_new_tokens: int
    min_new_tokens: int = 0

    def __post_init__(self) -> None:
        if not self.prompts:
            raise ValueError("a generation request needs at least one prompt")
        if self.max_new_tokens < 1:
            raise ValueError(f'Argument "max_new_tokens" must be at least 1, got {self.max_new_tokens}')
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise ValueError(
                f'Argument "min_new_tokens" must be between 0 and max_new_tokens, got {self.min_new_tokens}'
            )


@dataclass(frozen=True, slots=True)
class Generation:
    """The tokens generated for one prompt, without the end token; why generation stopped."""

    token_ids: TokenIds
    stop: Literal["end", "length"]


@runtime_checkable
class GenerationBackend(Protocol):
    """Greedy generation for batches of prompts about images (see the module docstring)."""

    @property
    def name(self) -> str: ...

    def generate(self, requests: Sequence[GenerationRequest]) -> list[tuple[Generation, ...]]: ...


class Decoder(Protocol):
    """Turns token ids into text (the runtime owns the tokenizer, not the backends)."""

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str: ...


# -- planning ---------------------------------------------------------------------------------


def common_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """The length of the longest prefix all ``sequences`` share."""
    if not sequences:
        return 0
    shortest = min(len(s) for s in sequences)
    first = sequences[0]
    for index in range(shortest):
        token = first[index]
        if any(s[index] != token for s in sequences[1:]):
            return index
    return shortest


def mrope_positions(
    ids: Sequence[int], grids: IntArray, image_token_id: int, spatial_merge_size: int
) -> tuple[IntArray, int]:
    """Qwen2-VL's multimodal rotary positions (3, len(ids)) for one sequence, and its rope delta.

    Text tokens advance all three components together; each run of image tokens is laid out
    over (temporal, height, width) from the position where it starts, and the text after it
    continues from that start plus the larger of the merged height and width, as Hugging
    Face's ``Qwen2VLModel.get_rope_index`` does.  A token generated after ``n`` tokens sits at
    position ``n + delta`` in all three components.
    """
    length = len(ids)
    positions = np.zeros((3, length), dtype=np.int64)
    tokens = np.asarray(ids, dtype=np.int64)
    current = 0
    index = 0
    image = 0
    while index < length:
        if tokens[index] != image_token_id:
            run_end = index
            while run_end < length and tokens[run_end] != image_token_id:
                run_end += 1
            positions[:, index:run_end] = np.arange(current, current + run_end - index)
            current += run_end - index
            index = run_end
            continue
        if image >= len(grids):
            raise ValueError("the prompt holds more image-token runs than there are images")
        t, h, w = (int(v) for v in grids[image])
        llm_h, llm_w = h // spatial_merge_size, w // spatial_merge_size
        count = t * llm_h * llm_w
        if index + count > length or not (tokens[index : index + count] == image_token_id).all():
            raise ValueError(f"image {image + 1} needs {count} consecutive image tokens at position {index}")
        tt, hh, ww = np.meshgrid(np.arange(t), np.arange(llm_h), np.arange(llm_w), indexing="ij")
        positions[0, index : index + count] = tt.reshape(-1) + current
        positions[1, index : index + count] = hh.reshape(-1) + current
        positions[2, index : index + count] = ww.reshape(-1) + current
        current += max(h, w) // spatial_merge_size
        index += count
        image += 1
    if image != len(grids):
        raise ValueError(f"the prompt holds {image} image-token runs for {len(grids)} images")
    return positions, current - length


@dataclass(frozen=True)
class PrefixPlan:
    """How to run a batch of prompts about one image with a shared prefix.

    - ``prefix_ids`` (P,) and ``prefix_positions`` (3, P): run once, batch 1; the image's
      embeddings replace the tokens at ``image_slice``;
    - ``suffix_ids`` (B, S), right-padded, and ``suffix_positions`` (3, B, S): run on a cache
      holding the prefix once per row; ``attention_mask`` (B, P + S) is 0 on the padding;
    - the first generated token of row i comes from the suffix output at ``last_index[i]``;
    - the k-th generated token (k from 0) of row i is fed at position ``next_position[i] + k``.
    """

    prefix_ids: IntArray
    prefix_positions: IntArray
    image_slice: slice
    suffix_ids: IntArray
    suffix_positions: IntArray
    attention_mask: IntArray
    last_index: IntArray
    next_position: IntArray

    @property
    def batch_size(self) -> int:
        return int(self.suffix_ids.shape[0])

    @property
    def prefix_length(self) -> int:
        return int(self.prefix_ids.shape[0])


def plan_shared_prefix(
    prompts: Sequence[Sequence[int]],
    image_grid_thw: IntArray,
    spec: TokenSpec,
    max_prefix_length: int | None = None,
) -> PrefixPlan:
    """Plan one batch of prompts about one image (each holding that image's tokens once).

    The prefix is the prompts' common prefix, leaving at least one token of every prompt in
    its suffix, and at most ``max_prefix_length`` tokens (training uses this to keep every
    predicted token's input in the suffix).
    """
    if not prompts:
        raise ValueError("nothing to plan: no prompts")
    shortest = min(len(p) for p in prompts)
    prefix_length = min(common_prefix_length(prompts), shortest - 1)
    if max_prefix_length is not None:
        prefix_length = min(prefix_length, max_prefix_length)
    first = np.asarray(prompts[0], dtype=np.int64)
    image_at = np.flatnonzero(first == spec.image_token_id)
    if image_at.size == 0:
        raise ValueError("the prompts hold no image tokens")
    image_slice = slice(int(image_at[0]), int(image_at[-1]) + 1)
    if prefix_length < image_slice.stop:
        raise ValueError("the prompts of one request must share the image and everything before it")

    positions = []
    deltas = []
    for prompt in prompts:
        pos, delta = mrope_positions(prompt, image_grid_thw, spec.image_token_id, spec.spatial_merge_size)
        positions.append(pos)
        deltas.append(delta)
    batch = len(prompts)
    suffix_lengths = [len(p) - prefix_length for p in prompts]
    width = max(suffix_lengths)
    suffix_ids = np.full((batch, width), spec.pad_token_id, dtype=np.int64)
    suffix_positions = np.zeros((3, batch, width), dtype=np.int64)
    attention_mask = np.zeros((batch, prefix_length + width), dtype=np.int64)
    attention_mask[:, :prefix_length] = 1
    for row, (prompt, pos, length) in enumerate(zip(prompts, positions, suffix_lengths, strict=True)):
        suffix_ids[row, :length] = prompt[prefix_length:]
        suffix_positions[:, row, :length] = pos[:, prefix_length:]
        suffix_positions[:, row, length:] = pos[:, -1:]
        attention_mask[row, prefix_length : prefix_length + length] = 1
    return PrefixPlan(
        prefix_ids=first[:prefix_length].copy(),
        prefix_positions=positions[0][:, :prefix_length].copy(),
        image_slice=image_slice,
        suffix_ids=suffix_ids,
        suffix_positions=suffix_positions,
        attention_mask=attention_mask,
        last_index=np.asarray([length - 1 for length in suffix_lengths], dtype=np.int64),
        next_position=np.asarray([len(p) + d for p, d in zip(prompts, deltas, strict=True)], dtype=np.int64),
    )


def decode_texts(decoder: Decoder, generations: Sequence[Generation]) -> list[str]:
    """The texts of ``generations`` (special tokens dropped)."""
    return [decoder.decode(list(g.token_ids), skip_special_tokens=True) for g in generations]


Embedding = TypeVar("Embedding")


class ImageEmbeddingCache(Generic[Embedding]):
    """The vision tower's output for the last few images, by content key (``EncodedImage.key``).

    One ``analyze`` sends an image twice (the examine prompt, then the attention prompts);
    every backend keeps its encoding here so the vision tower runs once per image.
    """

    def __init__(self, size: int = 2) -> None:
        if size < 0:
            raise ValueError(f'Argument "size" must not be negative, got {size}')
        self.size = size
        self._entries: OrderedDict[str, Embedding] = OrderedDict()

    def get(self, image: EncodedImage, encode: Callable[[EncodedImage], Embedding]) -> Embedding:
        """The cached embedding of ``image``, or ``encode(image)``, remembered."""
        cached = self._entries.get(image.key)
        if cached is not None:
            self._entries.move_to_end(image.key)
            return cached
        embedding = encode(image)
        if self.size > 0:
            self._entries[image.key] = embedding
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return embedding

    def clear(self) -> None:
        """Forget every encoding (benchmarks use it so each repetition encodes again)."""
        self._entries.clear()


def generate_in_batches(
    requests: Sequence[GenerationRequest],
    max_batch: int,
    generate_batch: Callable[[GenerationRequest, Sequence[TokenIds]], list[Generation]],
) -> list[tuple[Generation, ...]]:
    """Each request's prompts, generated ``max_batch`` at a time by ``generate_batch``."""
    results: list[tuple[Generation, ...]] = []
    for request in requests:
        generations: list[Generation] = []
        for start in range(0, len(request.prompts), max_batch):
            generations.extend(generate_batch(request, request.prompts[start : start + max_batch]))
        results.append(tuple(generations))
    return results
