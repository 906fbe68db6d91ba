"""The NVIDIA Triton Inference Server model repository of a GazeX checkpoint.

``gazex model triton-repo --model ... --out deploy/triton/`` writes::

    OUT/
      gazex_vision/config.pbtxt      the vision tower with its merger (vision.onnx)
      gazex_vision/1/model.onnx
      gazex_decoder/config.pbtxt     one decoder pass over an explicit key/value cache (decoder.onnx)
      gazex_decoder/1/model.onnx     (+ decoder.onnx.data for weights over 1 GiB)
      gazex-repository.json          checkpoint name, version, weights SHA-256, sizes

Both models run on Triton's ``onnxruntime`` backend, on GPUs (``KIND_GPU``) or CPUs, with
``instance_count`` instances each.  Each config records the checkpoint's weights SHA-256 as the
parameter ``gazex_checkpoint_sha256``; the gateway's ``triton`` backend refuses a server whose
models come from other weights.

Neither model declares ``dynamic_batching``: Triton's dynamic batcher concatenates requests
along the first dimension and needs every other dimension to agree, which these requests do
not (the vision graph's patches all attend to each other, so two images cannot share a call;
two decoder calls differ in their cache lengths).  The batching that pays is already inside
each request: all the attention prompts of one image go as one decoder batch.  Concurrency
across gateways comes from ``instance_group`` count.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from inference.onnx_export import OnnxExport

VISION_MODEL = "gazex_vision"
DECODER_MODEL = "gazex_decoder"
REPOSITORY_MANIFEST = "gazex-repository.json"
SHA_PARAMETER = "gazex_checkpoint_sha256"

#: ONNX TensorProto element types -> Triton data types.
TRITON_TYPES: dict[int, str] = {1: "TYPE_FP32", 10: "TYPE_FP16", 16: "TYPE_BF16", 7: "TYPE_INT64", 6: "TYPE_INT32"}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    data_type: str
    dims: tuple[int, ...]


@dataclass(frozen=True)
class TritonRepository:
    directory: Path
    models: tuple[str, ...]


def graph_tensors(onnx_path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The inputs and outputs of an ONNX graph, dynamic axes as -1 (weights are not loaded)."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)

    def specs(values: Iterable[Any]) -> list[TensorSpec]:
        result = []
        for value in values:
            tensor = value.type.tensor_type
            if tensor.elem_type not in TRITON_TYPES:
                raise ValueError(f"{onnx_path}: tensor {value.name!r} has element type {tensor.elem_type}")
            dims = tuple(int(d.dim_value) if d.HasField("dim_value") else -1 for d in tensor.shape.dim)
            result.append(TensorSpec(value.name, TRITON_TYPES[tensor.elem_type], dims))
        return result

    initializers = {i.name for i in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in initializers]
    return specs(inputs), specs(model.graph.output)


def model_config(
    name: str,
    inputs: list[TensorSpec],
    outputs: list[TensorSpec],
    *,
    instance_kind: str = "KIND_GPU",
    instance_count: int = 1,
    parameters: dict[str, str] | None = None,
) -> str:
    """A Triton ``config.pbtxt`` for an ONNX model that batches inside its requests (max_batch_size 0)."""
    if instance_kind not in ("KIND_GPU", "KIND_CPU"):
        raise ValueError(f'Argument "instance_kind" must be KIND_GPU or KIND_CPU, got {instance_kind!r}')
    if instance_count < 1:
        raise ValueError(f'Argument "instance_count" must be at least 1, got {instance_count}')

    def tensors(kind: str, specs: list[TensorSpec]) -> list[str]:
        lines = [f"{kind} ["]
        for index, spec in enumerate(specs):
            dims = ", ".join(str(d) for d in spec.dims)
            comma = "," if index < len(specs) - 1 else ""
            lines.append(f'  {{ name: "{spec.name}", data_type: {spec.data_type}, dims: [ {dims} ] }}{comma}')
        lines.append("]")
        return lines

    lines = [
        f'name: "{name}"',
        'backend: "onnxruntime"',
        "max_batch_size: 0",
        *tensors("input", inputs),
        *tensors("output", outputs),
        f"instance_group [ {{ count: {instance_count}, kind: {instance_kind} }} ]",
    ]
    for key, value in sorted((parameters or {}).items()):
        lines.append(f'parameters {{ key: "{key}", value: {{ string_value: "{value}" }} }}')
    return "\n".join(lines) + "\n"


def write_triton_repository(
    export: OnnxExport,
    out: Path,
    *,
    instance_kind: str = "KIND_GPU",
    instance_count: int = 1,
    checkpoint_name: str = "",
    checkpoint_version: str = "",
) -> TritonRepository:
    """Write the model repository for ``export`` into ``out`` (its two model folders are replaced)."""
    if export.dtype not in ("float32", "float16"):
        raise ValueError(
            f"Triton's onnxruntime backend and the gateway's client exchange numpy arrays; export float32 or float16, "
            f"not {export.dtype}"
        )
    out.mkdir(parents=True, exist_ok=True)
    parameters = {SHA_PARAMETER: export.checkpoint_sha256}
    sources = {VISION_MODEL: export.vision_path, DECODER_MODEL: export.decoder_path("dynamic")}
    for name, source in sources.items():
        folder = out / name
        if folder.exists():
            shutil.rmtree(folder)
        version = folder / "1"
        version.mkdir(parents=True)
        shutil.copy2(source, version / "model.onnx")
        data = source.with_name(source.name + ".data")
        if data.is_file():  # the graph names its weight file; it keeps that name beside model.onnx
            shutil.copy2(data, version / data.name)
        inputs, outputs = graph_tensors(source)
        config = model_config(
            name,
            inputs,
            outputs,
            instance_kind=instance_kind,
            instance_count=instance_count,
            parameters=parameters,
        )
        (folder / "config.pbtxt").write_text(config, encoding="utf-8")
    manifest = {
        "format": "gazex-triton-repository",
        "checkpoint_name": checkpoint_name,
        "checkpoint_version": checkpoint_version,
        "checkpoint_sha256": export.checkpoint_sha256,
        "dtype": export.dtype,
        "models": {"vision": VISION_MODEL, "decoder": DECODER_MODEL},
        "dims": asdict(export.dims),
    }
    (out / REPOSITORY_MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return TritonRepository(directory=out, models=(VISION_MODEL, DECODER_MODEL))
