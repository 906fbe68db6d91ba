"""The TensorRT backend: the engines :mod:`inference.tensorrt_build` builds, run on one CUDA stream.

Not executed in this project's CI (no TensorRT, no GPU there); written against the TensorRT 10
Python API and reviewed, with its cache bookkeeping shared with the ONNX Runtime path that CI
does run (:class:`inference.backends.onnx_backend.StaticCache` over ``decoder_static.onnx``).

- Bindings by tensor name: ``set_input_shape`` for each input, ``set_tensor_address`` for every
  input and output, then ``execute_async_v3`` on the backend's own CUDA stream.
- Device buffers are torch CUDA tensors.  The key/value cache is **preallocated** once per
  engine set: two buffers per layer and kind (key, value) of ``max_batch x kv_heads x capacity x
  head_dim`` elements, used in turn as the step's ``past`` and ``present`` (the static-cache
  graph writes the whole cache each step, so the two swap and nothing is copied back).  A
  generation uses a capacity rounded up to a multiple of 256 tokens and views the front of
  those buffers at that shape.
- **CUDA graphs** for decoding steps: with a fixed-capacity cache, a step at batch B has the
  same shapes and buffer addresses every time, so after one ordinary run it is captured once
  per (B, capacity, buffer parity) and replayed; its inputs are copied into static buffers
  first.  Prefix and suffix passes (shapes that vary) run uncaptured.  A capture TensorRT or
  CUDA refuses is logged once and the step runs uncaptured.
- Import-time: nothing is imported until the backend is created.  Creation fails with an
  :class:`inference.engine.InferenceError` that says what is missing (TensorRT, a GPU, an
  engine that cannot be deserialised on this GPU/TensorRT); run-time failures of
  ``execute_async_v3`` raise one too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from inference.backends import BackendOptions
from inference.backends.onnx_backend import StaticCache, check_single_frame
from inference.backends.stepwise import FloatArray, StepwiseBackend, prefix_batch
from inference.checkpoint import Checkpoint
from inference.engine import InferenceError
from inference.generation import IntArray
from inference.onnx_export import ModelDims, kv_names, vision_position_ids
from inference.tensorrt_build import (
    CAPACITY_BUCKET,
    EngineSet,
    ProfileSettings,
    build_engines,
    capacity_bucket,
    require_tensorrt,
)
from inference.vision_input import EncodedImage

logger = logging.getLogger(__name__)


def _torch_dtype(trt: Any, torch: Any, dtype: Any) -> Any:
    table = {
        trt.DataType.FLOAT: torch.float32,
        trt.DataType.HALF: torch.float16,
        trt.DataType.BF16: torch.bfloat16,
        trt.DataType.INT64: torch.int64,
        trt.DataType.INT32: torch.int32,
        trt.DataType.BOOL: torch.bool,
    }
    if dtype not in table:
        raise InferenceError(f"the TensorRT engine uses tensor type {dtype}, which this backend does not map")
    return table[dtype]


@dataclass
class _Engine:
    engine: Any
    context: Any
    inputs: list[str]
    outputs: list[str]
    dtypes: dict[str, Any]


class TrtStepModel:
    """The vision and decoder engines, a CUDA stream, a preallocated cache and captured decode steps."""

    def __init__(self, engines: EngineSet, *, device_index: int = 0, use_cuda_graphs: bool = True) -> None:
        trt = require_tensorrt()
        import torch

        self.trt = trt
        self.torch = torch
        self.device = torch.device("cuda", device_index)
        self.dims: ModelDims = engines.dims
        self.settings: ProfileSettings = engines.key.profile
        self.stream = torch.cuda.Stream(self.device)
        self._trt_logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self._trt_logger)
        if engines.key.version_compatible:
            self.runtime.engine_host_code_allowed = True  # a version-compatible engine carries its lean runtime
        self.vision = self._load(engines.vision_path)
        self.decoder = self._load(engines.decoder_path)
        self.names = kv_names(self.dims.num_layers)
        kv_dtype = self.decoder.dtypes[self.names[0][0]]
        elements = self.settings.max_batch * self.dims.num_kv_heads * self.settings.max_capacity * self.dims.head_dim
        with torch.cuda.device(self.device):
            # [parity][layer * 2 + (0 key | 1 value)]: flat buffers viewed at the step's shape
            self.kv = [
                [torch.zeros(elements, dtype=kv_dtype, device=self.device) for _ in range(2 * self.dims.num_layers)]
                for _ in range(2)
            ]
            self.dummy_image = torch.zeros((1, self.dims.hidden_size), dtype=torch.float32, device=self.device)
        self.parity = 0
        self.batch = 1
        self.cache: StaticCache | None = None
        self.use_cuda_graphs = use_cuda_graphs
        self._graphs: dict[tuple[int, int, int], Any] = {}
        self._graph_inputs: dict[tuple[int, int], dict[str, Any]] = {}
        self._graphs_refused = False

    # -- engines and bindings -----------------------------------------------------------------

    def _load(self, path: Any) -> _Engine:
        trt = self.trt
        try:
            engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        except OSError as exc:
            raise InferenceError(f"{path}: cannot read the TensorRT engine: {exc}") from exc
        if engine is None:
            raise InferenceError(
                f"{path}: TensorRT cannot deserialise this engine (built for another GPU or TensorRT version?); "
                "rebuild it with gazex model build-engine"
            )
        context = engine.create_execution_context()
        inputs, outputs, dtypes = [], [], {}
        for index in range(engine.num_io_tensors):
            name = engine.get_tensor_name(index)
            dtypes[name] = _torch_dtype(trt, self.torch, engine.get_tensor_dtype(name))
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                inputs.append(name)
            else:
                outputs.append(name)
        return _Engine(engine, context, inputs, outputs, dtypes)

    def _bind(self, engine: _Engine, tensors: dict[str, Any]) -> None:
        context = engine.context
        for name in engine.inputs:
            tensor = tensors[name]
            if tensor.dtype != engine.dtypes[name]:
                raise InferenceError(f"TensorRT input {name} must be {engine.dtypes[name]}, got {tensor.dtype}")
            if not context.set_input_shape(name, tuple(tensor.shape)):
                raise InferenceError(
                    f"TensorRT refused the shape {tuple(tensor.shape)} for {name} (outside the profile)"
                )
        for name in (*engine.inputs, *engine.outputs):
            tensor = tensors[name]
            if not tensor.is_contiguous():
                raise InferenceError(f"TensorRT tensor {name} must be contiguous")
            context.set_tensor_address(name, tensor.data_ptr())

    def _execute(self, engine: _Engine) -> None:
        if not engine.context.execute_async_v3(self.stream.cuda_stream):
            raise InferenceError("TensorRT execute_async_v3 failed; see the TensorRT log")

    def _device(self, array: np.ndarray[Any, Any], dtype: Any = None) -> Any:
        tensor = self.torch.from_numpy(np.ascontiguousarray(array))
        return tensor.to(self.device, dtype=dtype or tensor.dtype, non_blocking=False)

    # -- the StepModel protocol ----------------------------------------------------------------

    def image_embeddings(self, image: EncodedImage) -> Any:
        check_single_frame(image)
        torch = self.torch
        with torch.cuda.stream(self.stream):
            tensors = {
                "pixel_values": self._device(image.pixel_values, torch.float32),
                "vision_position_ids": self._device(vision_position_ids(image.image_grid_thw, self.dims.merge_size)),
                "image_embeds": torch.empty(
                    (image.image_tokens, self.dims.hidden_size), dtype=torch.float32, device=self.device
                ),
            }
            self._bind(self.vision, tensors)
            self._execute(self.vision)
        return tensors["image_embeds"]

    def _cache_views(self, parity: int, batch: int, capacity: int) -> list[Any]:
        shape = (batch, self.dims.num_kv_heads, capacity, self.dims.head_dim)
        count = batch * self.dims.num_kv_heads * capacity * self.dims.head_dim
        return [buffer[:count].view(shape) for buffer in self.kv[parity]]

    def start(self, ids: IntArray, positions: IntArray, image_embeds: Any, capacity: int) -> None:
        needed = capacity_bucket(capacity, CAPACITY_BUCKET)
        if needed > self.settings.max_capacity:
            raise InferenceError(
                f"this generation needs a cache of {capacity} tokens; the engines were built for "
                f"{self.settings.max_capacity} (rebuild with a larger profile)"
            )
        self.cache = StaticCache(capacity=needed)
        self.batch = 1
        self.parity = 0
        self._forward(*prefix_batch(ids, positions), image_embeds)

    def expand(self, batch: int) -> None:
        if self.cache is None:
            raise InferenceError("expand() before start()")
        if batch > self.settings.max_batch:
            raise InferenceError(f"batch {batch} is above the engines' maximum {self.settings.max_batch}")
        capacity = self.cache.capacity
        with self.torch.cuda.stream(self.stream):
            one = self._cache_views(self.parity, 1, capacity)
            many = self._cache_views(self.parity, batch, capacity)
            if batch > 1:
                for source, target in zip(one, many, strict=True):
                    target[1:].copy_(source.expand(batch - 1, -1, -1, -1))
        self.batch = batch

    def step(self, ids: IntArray, positions: IntArray, mask: IntArray, last_index: IntArray) -> FloatArray:
        return self._forward(ids, positions, mask, last_index, self.dummy_image)

    def _forward(
        self, ids: IntArray, positions: IntArray, mask: IntArray, last_index: IntArray, image_embeds: Any
    ) -> FloatArray:
        torch = self.torch
        cache = self.cache
        if cache is None:
            raise InferenceError("step() before start()")
        batch, length = int(ids.shape[0]), int(ids.shape[1])
        start = cache.reserve(length)
        host = {
            "input_ids": np.ascontiguousarray(ids, dtype=np.int64),
            "position_ids": np.ascontiguousarray(positions, dtype=np.int64),
            "attention_mask": cache.padded_mask(mask),
            "last_index": np.ascontiguousarray(last_index, dtype=np.int64),
            "cache_position": np.array([start], dtype=np.int64),
        }
        with torch.cuda.stream(self.stream):
            if length == 1 and self.use_cuda_graphs and not self._graphs_refused:
                logits = self._decode_with_graph(host, batch, cache.capacity)
            else:
                tensors = {name: self._device(value) for name, value in host.items()}
                tensors["image_embeds"] = image_embeds
                tensors["logits"] = torch.empty((batch, self.dims.vocab_size), dtype=torch.float32, device=self.device)
                self._bind_cache(tensors, batch, cache.capacity)
                self._bind(self.decoder, tensors)
                self._execute(self.decoder)
                logits = tensors["logits"]
            result = logits.to("cpu", non_blocking=False)
        self.stream.synchronize()
        cache.length += length
        self.parity ^= 1
        array: FloatArray = result.numpy()
        return array

    def _bind_cache(self, tensors: dict[str, Any], batch: int, capacity: int) -> None:
        past = self._cache_views(self.parity, batch, capacity)
        present = self._cache_views(self.parity ^ 1, batch, capacity)
        for index, (past_key, past_value, present_key, present_value) in enumerate(self.names):
            tensors[past_key], tensors[past_value] = past[2 * index], past[2 * index + 1]
            tensors[present_key], tensors[present_value] = present[2 * index], present[2 * index + 1]

    def _decode_with_graph(self, host: dict[str, np.ndarray[Any, Any]], batch: int, capacity: int) -> Any:
        """One decoding step at (batch, capacity), replayed from a CUDA graph after its first run."""
        torch = self.torch
        static = self._graph_inputs.get((batch, capacity))
        if static is None:
            static = {name: self._device(value) for name, value in host.items()}
            static["image_embeds"] = self.dummy_image
            static["logits"] = torch.empty((batch, self.dims.vocab_size), dtype=torch.float32, device=self.device)
            self._graph_inputs[(batch, capacity)] = static
        else:
            for name, value in host.items():
                static[name].copy_(torch.from_numpy(value), non_blocking=False)
        key = (batch, capacity, self.parity)
        graph = self._graphs.get(key)
        if graph is not None:
            graph.replay()
            return static["logits"]
        tensors = dict(static)
        self._bind_cache(tensors, batch, capacity)
        self._bind(self.decoder, tensors)
        self._execute(self.decoder)  # an ordinary run first: TensorRT settles shape-dependent state
        try:
            graph = torch.cuda.CUDAGraph()
            # capture an identical step; the cache it writes is rewritten by every replay
            with torch.cuda.graph(graph, stream=self.stream, capture_error_mode="thread_local"):
                self._execute(self.decoder)
        except (RuntimeError, InferenceError) as exc:
            self._graphs_refused = True
            logger.warning("CUDA graph capture of a TensorRT decoding step failed (%s); running uncaptured", exc)
            return static["logits"]
        self._graphs[key] = graph
        return static["logits"]


def tensorrt_backend(
    checkpoint: Checkpoint, options: BackendOptions, *, device: str = "auto", max_batch: int = 16
) -> StepwiseBackend:
    """The ``tensorrt`` backend: engines for this GPU (built on first use, then cached)."""
    require_tensorrt()
    index = 0
    if device not in ("auto", "cuda"):
        if not device.startswith("cuda:"):
            raise InferenceError(f"the tensorrt backend runs on a CUDA device, not {device!r}")
        index = int(device.split(":", 1)[1])
    settings = ProfileSettings.for_checkpoint(checkpoint, max_batch=max_batch)
    engines = build_engines(
        checkpoint,
        options.precision,
        out=options.engine_dir,
        cache_root=options.cache_dir,
        settings=settings,
        device_index=index,
    )
    model = TrtStepModel(engines, device_index=index)
    return StepwiseBackend("tensorrt", model, checkpoint.tokens, max_batch=min(max_batch, settings.max_batch))
