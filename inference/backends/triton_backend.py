"""The Triton backend: the vision encoder and the decoder pass served by NVIDIA Triton, the loop here.

The gateway stays thin: it keeps the tokenizer, the prompts and the greedy loop
(:class:`inference.backends.stepwise.StepwiseBackend`), and calls two models of the repository
``gazex model triton-repo`` writes (:mod:`inference.triton_repo`):

- ``gazex_vision`` once per image (its embeddings are kept here, by content, for both stages);
- ``gazex_decoder`` once for the shared prefix, once for the batch of suffixes, and once per
  generated token of the batch.

The decoder is stateless: the key/value cache travels with each request and comes back with
each response (binary tensors, HTTP or gRPC).  That keeps the server a stock ``onnxruntime``
model any Triton instance can answer, at the price of moving the cache each step: about
``2 x layers x kv_heads x head_dim x bytes`` per token and prompt (28 KiB for Qwen2-VL-2B in
fp16), so the transfer grows with the context.  It suits a gateway on the same fast network as
the cluster; see docs/deployment.md for the sizing.

``model.triton_url`` is ``http://HOST:PORT`` (Triton's HTTP port, 8000 by default) or
``grpc://HOST:PORT`` (8001).  At start the backend checks that the server is live, that both
models are ready and that they were exported from the checkpoint's own weights.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np

from inference.backends import BackendOptions
from inference.backends.onnx_backend import check_single_frame
from inference.backends.stepwise import FloatArray, StepwiseBackend, prefix_batch
from inference.checkpoint import Checkpoint
from inference.engine import InferenceError
from inference.generation import IntArray
from inference.onnx_export import ModelDims, dims_from_config_json, kv_names, vision_position_ids
from inference.triton_repo import DECODER_MODEL, SHA_PARAMETER, VISION_MODEL
from inference.vision_input import EncodedImage

logger = logging.getLogger(__name__)

TRITON_NUMPY: dict[str, Any] = {"FP32": np.float32, "FP16": np.float16, "INT64": np.int64}


def parse_triton_url(url: str) -> tuple[str, str]:
    """``http://HOST:PORT``, ``grpc://HOST:PORT`` or ``HOST:PORT`` (HTTP) -> (protocol, HOST:PORT)."""
    text = url.strip()
    protocol = "http"
    if "://" in text:
        protocol, _, text = text.partition("://")
        protocol = protocol.lower()
    text = text.rstrip("/")
    if protocol not in ("http", "grpc"):
        raise InferenceError(f"model.triton_url {url!r}: the scheme must be http:// or grpc://")
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in text:
        raise InferenceError(f"model.triton_url {url!r}: expected http://HOST:PORT or grpc://HOST:PORT")
    return protocol, text


class TritonClient:
    """The few calls the backend makes, over ``tritonclient.http`` or ``tritonclient.grpc``."""

    def __init__(self, url: str, timeout: float) -> None:
        self.protocol, self.address = parse_triton_url(url)
        self.timeout = timeout
        try:
            if self.protocol == "http":
                import tritonclient.http as client_module
            else:
                import tritonclient.grpc as client_module
            from tritonclient.utils import InferenceServerException
        except ImportError as exc:
            raise InferenceError(
                "the triton backend needs tritonclient, which is not installed: pip install 'gazex-gateway[triton]'"
            ) from exc
        self.module: Any = client_module
        self.errors: tuple[type[BaseException], ...] = (InferenceServerException, OSError)
        if self.protocol == "http":
            self.client: Any = client_module.InferenceServerClient(
                self.address, connection_timeout=timeout, network_timeout=timeout
            )
        else:
            self.client = client_module.InferenceServerClient(self.address)

    def _call(self, what: str, function: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except self.errors as exc:
            raise InferenceError(f"Triton at {self.protocol}://{self.address}: {what} failed: {exc}") from exc

    def check_ready(self, models: tuple[str, ...]) -> None:
        if not self._call("the liveness check", self.client.is_server_live):
            raise InferenceError(f"Triton at {self.protocol}://{self.address} is not live")
        for model in models:
            if not self._call(f"the readiness check of {model}", self.client.is_model_ready, model):
                raise InferenceError(
                    f"Triton at {self.protocol}://{self.address} has no ready model {model!r}; "
                    "serve the repository written by gazex model triton-repo"
                )

    def config(self, model: str) -> dict[str, Any]:
        if self.protocol == "http":
            config: dict[str, Any] = self._call(f"reading {model}'s config", self.client.get_model_config, model)
            return config
        document = self._call(f"reading {model}'s config", self.client.get_model_config, model, as_json=True)
        return dict(document.get("config", {}))

    def infer(self, model: str, inputs: dict[str, np.ndarray[Any, Any]], outputs: list[str]) -> list[Any]:
        module = self.module
        requested = []
        for name, array in inputs.items():
            tensor = module.InferInput(name, list(array.shape), _datatype(array))
            if self.protocol == "http":
                tensor.set_data_from_numpy(np.ascontiguousarray(array), binary_data=True)
            else:
                tensor.set_data_from_numpy(np.ascontiguousarray(array))
            requested.append(tensor)
        if self.protocol == "http":
            wanted = [module.InferRequestedOutput(name, binary_data=True) for name in outputs]
            result = self._call(f"inference on {model}", self.client.infer, model, requested, outputs=wanted)
        else:
            wanted = [module.InferRequestedOutput(name) for name in outputs]
            result = self._call(
                f"inference on {model}",
                self.client.infer,
                model,
                requested,
                outputs=wanted,
                client_timeout=self.timeout,
            )
        arrays = []
        for name in outputs:
            array = result.as_numpy(name)
            if array is None:
                raise InferenceError(f"Triton's {model} returned no {name!r}")
            arrays.append(array)
        return arrays

    def close(self) -> None:
        self.client.close()


def _datatype(array: np.ndarray[Any, Any]) -> str:
    for name, dtype in TRITON_NUMPY.items():
        if array.dtype == dtype:
            return name
    raise InferenceError(f"no Triton data type for {array.dtype}")


def served_sha256(config: dict[str, Any]) -> str | None:
    """The ``gazex_checkpoint_sha256`` parameter of a model config (JSON form), if any."""
    parameter = config.get("parameters", {}).get(SHA_PARAMETER, {})
    value = parameter.get("string_value") if isinstance(parameter, dict) else None
    return str(value) if value else None


class TritonStepModel:
    """The exported graphs on a Triton server; the cache in host arrays sent with each step."""

    def __init__(self, client: TritonClient, dims: ModelDims, kv_dtype: Any) -> None:
        self.client = client
        self.dims = dims
        self.kv_dtype = kv_dtype
        self.names = kv_names(dims.num_layers)
        self.past_names = [n for layer in self.names for n in layer[:2]]
        self.present_names = [n for layer in self.names for n in layer[2:]]
        self.dummy_image = np.zeros((1, dims.hidden_size), dtype=np.float32)
        self.past: list[Any] = []

    def image_embeddings(self, image: EncodedImage) -> Any:
        check_single_frame(image)
        inputs: dict[str, np.ndarray[Any, Any]] = {
            "pixel_values": np.ascontiguousarray(image.pixel_values, dtype=np.float32),
            "vision_position_ids": vision_position_ids(image.image_grid_thw, self.dims.merge_size),
        }
        (embeds,) = self.client.infer(VISION_MODEL, inputs, ["image_embeds"])
        if embeds.shape != (image.image_tokens, self.dims.hidden_size):
            raise InferenceError(f"Triton's {VISION_MODEL} returned embeddings of shape {embeds.shape}")
        return embeds

    def start(self, ids: IntArray, positions: IntArray, image_embeds: Any, capacity: int) -> None:
        shape = (1, self.dims.num_kv_heads, 0, self.dims.head_dim)
        self.past = [np.zeros(shape, dtype=self.kv_dtype) for _ in self.past_names]
        self._forward(*prefix_batch(ids, positions), image_embeds)

    def expand(self, batch: int) -> None:
        self.past = [np.repeat(p, batch, axis=0) for p in self.past]

    def step(self, ids: IntArray, positions: IntArray, mask: IntArray, last_index: IntArray) -> FloatArray:
        return self._forward(ids, positions, mask, last_index, self.dummy_image)

    def _forward(
        self, ids: IntArray, positions: IntArray, mask: IntArray, last_index: IntArray, image_embeds: Any
    ) -> FloatArray:
        inputs: dict[str, Any] = {
            "input_ids": np.asarray(ids, dtype=np.int64),
            "image_embeds": np.asarray(image_embeds, dtype=np.float32),
            "position_ids": np.asarray(positions, dtype=np.int64),
            "attention_mask": np.asarray(mask, dtype=np.int64),
            "last_index": np.asarray(last_index, dtype=np.int64),
        }
        inputs.update(zip(self.past_names, self.past, strict=True))
        logits, *presents = self.client.infer(DECODER_MODEL, inputs, ["logits", *self.present_names])
        self.past = presents
        result: FloatArray = np.asarray(logits, dtype=np.float32)
        return result


def connect(checkpoint: Checkpoint, options: BackendOptions) -> TritonStepModel:
    """Check the server and its models against ``checkpoint``; the step model over them."""
    client = TritonClient(options.triton_url, options.triton_timeout)
    client.check_ready((VISION_MODEL, DECODER_MODEL))
    for model in (VISION_MODEL, DECODER_MODEL):
        served = served_sha256(client.config(model))
        if served != checkpoint.weights_sha256:
            raise InferenceError(
                f"Triton at {options.triton_url} serves {model} exported from weights {str(served)[:12]}, not from "
                f"{checkpoint.path} ({checkpoint.weights_sha256[:12]}); regenerate the repository with "
                "gazex model triton-repo and reload it"
            )
    decoder_inputs = {
        entry.get("name"): entry for entry in client.config(DECODER_MODEL).get("input", []) if isinstance(entry, dict)
    }
    kv_type = str(decoder_inputs.get("past_key_0", {}).get("data_type", "TYPE_FP32")).removeprefix("TYPE_")
    if kv_type not in TRITON_NUMPY:
        raise InferenceError(f"Triton's {DECODER_MODEL} keeps its cache as {kv_type}; expected FP32 or FP16")
    document = json.loads((checkpoint.path / "config.json").read_text(encoding="utf-8"))
    return TritonStepModel(client, dims_from_config_json(document), TRITON_NUMPY[kv_type])


def triton_backend(checkpoint: Checkpoint, options: BackendOptions, *, max_batch: int = 16) -> StepwiseBackend:
    """The ``triton`` backend: a server at ``options.triton_url`` serving this checkpoint's repository."""
    model = connect(checkpoint, options)
    logger.info("using Triton at %s for %s", options.triton_url, checkpoint.gazex.name)
    return StepwiseBackend("triton", model, checkpoint.tokens, max_batch=max_batch)
