"""The ONNX Runtime backend: the exported vision and decoder graphs, the cache in host arrays.

The loop is :class:`inference.backends.stepwise.StepwiseBackend`; this module supplies
:class:`OrtStepModel`, which keeps the key/value cache as numpy arrays between steps:

- ``cache="dynamic"`` (``decoder.onnx``, the default): the cache grows by the new tokens each
  step (the graph returns past + new);
- ``cache="static"`` (``decoder_static.onnx``, the graph TensorRT runs): a cache of fixed
  capacity, the new tokens written at ``cache_position``.  ONNX Runtime runs it too, which is
  how the TensorRT runtime's cache bookkeeping (:class:`StaticCache`) is tested on a CPU.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from inference.backends.stepwise import FloatArray, StepwiseBackend, prefix_batch
from inference.engine import InferenceError
from inference.generation import IntArray, TokenSpec
from inference.onnx_export import CacheKind, OnnxExport, vision_position_ids
from inference.vision_input import EncodedImage

logger = logging.getLogger(__name__)

NUMPY_DTYPES: dict[str, Any] = {"float32": np.float32, "float16": np.float16}


def onnxruntime_module() -> Any:
    """``onnxruntime``, or an :class:`InferenceError` that says how to install it."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise InferenceError(
            "the onnx backend needs ONNX Runtime, which is not installed: pip install 'gazex-gateway[onnx]'"
        ) from exc
    return onnxruntime


def check_single_frame(image: EncodedImage) -> None:
    """The exported vision graph takes one single-frame image (t = 1), which every radiograph is."""
    grid = np.asarray(image.image_grid_thw)
    if grid.shape != (1, 3) or int(grid[0, 0]) != 1:
        raise InferenceError(
            f"the exported vision graph takes one single-frame image, got image_grid_thw {grid.tolist()}"
        )


@dataclass
class StaticCache:
    """Bookkeeping of a fixed-capacity cache: how much is filled, and the masks the graph wants."""

    capacity: int
    length: int = 0

    def reserve(self, tokens: int) -> int:
        """The position the next ``tokens`` tokens are written at; raises when they do not fit."""
        if self.length + tokens > self.capacity:
            raise InferenceError(
                f"the key/value cache holds {self.capacity} tokens; {self.length + tokens} were needed "
                "(raise the cache capacity or lower the token budget)"
            )
        return self.length

    def padded_mask(self, mask: IntArray) -> IntArray:
        """The (B, cached + S) mask of the loop as the (B, capacity) mask of the static graph."""
        padded = np.zeros((mask.shape[0], self.capacity), dtype=np.int64)
        padded[:, : mask.shape[1]] = mask
        return padded


class OrtStepModel:
    """The exported graphs in ONNX Runtime sessions, the cache in numpy arrays."""

    def __init__(
        self,
        export: OnnxExport,
        *,
        cache: CacheKind = "dynamic",
        providers: list[str] | None = None,
        threads: int | None = None,
    ) -> None:
        ort = onnxruntime_module()
        if export.dtype not in NUMPY_DTYPES:
            raise InferenceError(
                f"{export.directory}: a {export.dtype} export cannot run in ONNX Runtime here "
                "(numpy has no bfloat16); export float32 or float16 for the onnx backend"
            )
        self.export = export
        self.dims = export.dims
        self.static = cache == "static"
        self.dtype = NUMPY_DTYPES[export.dtype]
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        chosen = providers or ["CPUExecutionProvider"]
        try:
            self.vision = ort.InferenceSession(str(export.vision_path), options, providers=chosen)
            self.decoder = ort.InferenceSession(str(export.decoder_path(cache)), options, providers=chosen)
        except (RuntimeError, ValueError) as exc:
            raise InferenceError(f"{export.directory}: ONNX Runtime cannot load the graphs: {exc}") from exc
        self.names = export.cache_names()
        self.dummy_image = np.zeros((1, self.dims.hidden_size), dtype=np.float32)
        self.past: list[np.ndarray[Any, Any]] = []
        self.cache: StaticCache | None = None

    def _run(self, session: Any, feeds: dict[str, Any]) -> list[Any]:
        try:
            outputs: list[Any] = session.run(None, feeds)
        except (RuntimeError, ValueError) as exc:
            raise InferenceError(f"ONNX Runtime failed in {session._model_path}: {exc}") from exc
        return outputs

    def image_embeddings(self, image: EncodedImage) -> Any:
        check_single_frame(image)
        feeds = {
            "pixel_values": np.ascontiguousarray(image.pixel_values, dtype=np.float32),
            "vision_position_ids": vision_position_ids(image.image_grid_thw, self.dims.merge_size),
        }
        (embeds,) = self._run(self.vision, feeds)
        if embeds.shape[0] != image.image_tokens:
            raise InferenceError(f"the vision graph gave {embeds.shape[0]} embeddings for {image.image_tokens} tokens")
        return embeds

    def _empty(self, length: int) -> list[np.ndarray[Any, Any]]:
        shape = (1, self.dims.num_kv_heads, length, self.dims.head_dim)
        return [np.zeros(shape, dtype=self.dtype) for _ in range(2 * self.dims.num_layers)]

    def start(self, ids: IntArray, positions: IntArray, image_embeds: Any, capacity: int) -> None:
        if self.static:
            self.cache = StaticCache(capacity=capacity)
            self.past = self._empty(capacity)
        else:
            self.past = self._empty(0)
        self._forward(*prefix_batch(ids, positions), image_embeds)

    def expand(self, batch: int) -> None:
        self.past = [np.repeat(p, batch, axis=0) for p in self.past]

    def step(self, ids: IntArray, positions: IntArray, mask: IntArray, last_index: IntArray) -> FloatArray:
        return self._forward(ids, positions, mask, last_index, self.dummy_image)

    def _forward(
        self, ids: IntArray, positions: IntArray, mask: IntArray, last_index: IntArray, image_embeds: Any
    ) -> FloatArray:
        feeds: dict[str, Any] = {
            "input_ids": np.ascontiguousarray(ids, dtype=np.int64),
            "image_embeds": image_embeds,
            "position_ids": np.ascontiguousarray(positions, dtype=np.int64),
            "attention_mask": np.ascontiguousarray(mask, dtype=np.int64),
            "last_index": np.ascontiguousarray(last_index, dtype=np.int64),
        }
        if self.cache is not None and self.static:
            start = self.cache.reserve(int(ids.shape[1]))
            feeds["attention_mask"] = self.cache.padded_mask(feeds["attention_mask"])
            feeds["cache_position"] = np.array([start], dtype=np.int64)
        for index, (past_key, past_value, _, _) in enumerate(self.names):
            feeds[past_key] = self.past[2 * index]
            feeds[past_value] = self.past[2 * index + 1]
        logits, *presents = self._run(self.decoder, feeds)
        self.past = presents
        if self.cache is not None and self.static:
            self.cache.length += int(ids.shape[1])
        result: FloatArray = np.asarray(logits, dtype=np.float32)
        return result


def onnx_backend(
    export: OnnxExport,
    tokens: TokenSpec,
    *,
    max_batch: int = 16,
    cache: CacheKind = "dynamic",
    providers: list[str] | None = None,
    threads: int | None = None,
) -> StepwiseBackend:
    """The ``onnx`` backend over an export."""
    model = OrtStepModel(export, cache=cache, providers=providers, threads=threads)
    return StepwiseBackend("onnx", model, tokens, max_batch=max_batch)
