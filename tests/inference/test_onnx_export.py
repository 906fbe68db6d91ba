"""The ONNX export: checked graphs, dynamic axes, the export cache, and the fp16/bf16 graphs for TensorRT."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from inference.checkpoint import open_checkpoint
from inference.onnx_export import (
    DECODER_FILES,
    MANIFEST,
    VISION_FILE,
    ExportError,
    dims_from_config_json,
    export_cache_dir,
    export_onnx,
    model_dims,
    read_export,
    vision_position_ids,
)


def dims_of(value: Any) -> list[str | int]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def test_graphs_pass_the_checker_with_dynamic_axes(tiny_checkpoint: Path, onnx_exports: Callable[..., Any]) -> None:
    export = onnx_exports(tiny_checkpoint)
    for path in (export.vision_path, export.decoder_path("dynamic"), export.decoder_path("static")):
        onnx.checker.check_model(str(path), full_check=True)
    vision = onnx.load(str(export.vision_path))
    assert [v.name for v in vision.graph.input] == ["pixel_values", "vision_position_ids"]
    assert dims_of(vision.graph.input[0]) == ["patches", 1176]
    assert dims_of(vision.graph.output[0]) == ["image_tokens", 64]
    decoder = onnx.load(str(export.decoder_path("dynamic")))
    inputs = {v.name: dims_of(v) for v in decoder.graph.input}
    assert inputs["input_ids"] == ["batch", "sequence"]
    assert inputs["position_ids"] == [3, "batch", "sequence"]
    assert inputs["attention_mask"] == ["batch", "total"]
    assert inputs["past_key_0"] == ["batch", 2, "past", 16]
    outputs = {v.name: dims_of(v) for v in decoder.graph.output}
    assert outputs["logits"] == ["batch", 757]
    assert outputs["present_value_1"] == ["batch", 2, "total", 16]
    static = onnx.load(str(export.decoder_path("static")))
    static_inputs = {v.name: dims_of(v) for v in static.graph.input}
    assert static_inputs["past_key_0"] == ["batch", 2, "capacity", 16]
    assert static_inputs["cache_position"] == [1]


def test_the_manifest_records_weights_and_sizes(tiny_checkpoint: Path, onnx_exports: Callable[..., Any]) -> None:
    export = onnx_exports(tiny_checkpoint)
    document = json.loads((export.directory / MANIFEST).read_text())
    checkpoint = open_checkpoint(tiny_checkpoint)
    assert document["checkpoint_sha256"] == checkpoint.weights_sha256
    assert document["dims"]["num_layers"] == 2
    assert set(document["files"]) == {VISION_FILE, *DECODER_FILES.values()}
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    assert dims_from_config_json(config) == export.dims


def test_an_export_is_reused_and_redone_when_the_weights_change(
    tiny_checkpoint: Path, tmp_path: Path, tiny_model: Any
) -> None:
    checkpoint = open_checkpoint(tiny_checkpoint)
    target = export_cache_dir(checkpoint.weights_sha256, "float32", tmp_path)
    assert target.name.startswith(checkpoint.weights_sha256[:32])
    first = export_onnx(checkpoint, target, model=tiny_model)
    stamp = first.vision_path.stat().st_mtime_ns
    again = export_onnx(checkpoint, target, model=tiny_model)
    assert again.vision_path.stat().st_mtime_ns == stamp  # reused, not exported again
    assert again.cache == ("dynamic",)
    both = export_onnx(checkpoint, target, model=tiny_model, cache=("static",))
    assert both.cache == ("dynamic", "static")  # what was there is kept
    manifest = target / MANIFEST
    document = json.loads(manifest.read_text())
    document["checkpoint_sha256"] = "f" * 64
    manifest.write_text(json.dumps(document))
    redone = export_onnx(checkpoint, target, model=tiny_model)
    assert redone.checkpoint_sha256 == checkpoint.weights_sha256


def test_an_incomplete_export_is_refused_with_a_remedy(
    tiny_checkpoint: Path, onnx_exports: Callable[..., Any], tmp_path: Path
) -> None:
    export = onnx_exports(tiny_checkpoint)
    copy = tmp_path / "export"
    shutil.copytree(export.directory, copy)
    (copy / VISION_FILE).unlink()
    with pytest.raises(ExportError, match=r"vision\.onnx missing; export again with gazex model export-onnx"):
        read_export(copy)
    with pytest.raises(ExportError, match="not a usable ONNX export"):
        read_export(tmp_path)
    with pytest.raises(ExportError, match="unknown export dtype"):
        export_onnx(open_checkpoint(tiny_checkpoint), tmp_path / "x", dtype="int8")


@pytest.mark.parametrize("grid", [(1, 4, 6), (1, 8, 2), (1, 10, 10)])
def test_vision_positions_match_hugging_face(grid: tuple[int, int, int]) -> None:
    import torch
    from transformers.vision_utils import get_vision_position_ids

    ours = vision_position_ids(np.array([grid]), 2)
    theirs = get_vision_position_ids(torch.tensor([grid]), 2).numpy()
    np.testing.assert_array_equal(ours, theirs)


def test_the_vision_graph_equals_the_vision_tower(
    tiny_checkpoint: Path, onnx_exports: Callable[..., Any], tiny_model: Any
) -> None:
    import onnxruntime
    import torch

    export = onnx_exports(tiny_checkpoint)
    rng = np.random.default_rng(0)
    grid = np.array([[1, 6, 10]])
    pixels = rng.standard_normal((60, 1176)).astype(np.float32)
    session = onnxruntime.InferenceSession(str(export.vision_path), providers=["CPUExecutionProvider"])
    (ours,) = session.run(None, {"pixel_values": pixels, "vision_position_ids": vision_position_ids(grid, 2)})
    with torch.no_grad():
        theirs = tiny_model.model.visual(torch.from_numpy(pixels), grid_thw=torch.from_numpy(grid)).pooler_output
    np.testing.assert_allclose(ours, theirs.numpy(), atol=1e-5, rtol=1e-4)
    assert model_dims(tiny_model.config) == export.dims


def decoder_feeds(export: Any, dtype: Any, batch: int = 3, past: int = 6, length: int = 4) -> dict[str, Any]:
    """Random inputs for decoder_static.onnx (a cache of capacity past + length + 2)."""
    rng = np.random.default_rng(1)
    dims = export.dims
    capacity = past + length + 2
    feeds: dict[str, Any] = {
        "input_ids": rng.integers(0, 700, (batch, length)),
        "image_embeds": np.zeros((1, dims.hidden_size), np.float32),
        "position_ids": np.broadcast_to(np.arange(past, past + length), (3, batch, length)).copy(),
        "attention_mask": np.concatenate([np.ones((batch, past + length)), np.zeros((batch, 2))], axis=1).astype(
            np.int64
        ),
        "last_index": np.full(batch, length - 1),
        "cache_position": np.array([past]),
    }
    shape = (batch, dims.num_kv_heads, capacity, dims.head_dim)
    for index in range(dims.num_layers):
        for kind in ("key", "value"):
            cache = rng.standard_normal(shape).astype(np.float32) * 0.5
            cache[:, :, past:] = 0
            feeds[f"past_{kind}_{index}"] = cache.astype(dtype)
    return feeds


def test_fp16_graphs_for_tensorrt_run_in_onnx_runtime(tiny_checkpoint: Path, onnx_exports: Callable[..., Any]) -> None:
    """The fp16 export (what ``build-engine --precision fp16`` parses) against the float32 one."""
    import onnxruntime

    reference = onnx_exports(tiny_checkpoint)
    half = onnx_exports(tiny_checkpoint, "float16")
    model = onnx.load(str(half.decoder_path("static")))
    types = {v.name: v.type.tensor_type.elem_type for v in [*model.graph.input, *model.graph.output]}
    assert types["past_key_0"] == onnx.TensorProto.FLOAT16
    assert types["present_value_1"] == onnx.TensorProto.FLOAT16
    assert types["logits"] == onnx.TensorProto.FLOAT  # logits stay float32
    assert types["image_embeds"] == onnx.TensorProto.FLOAT
    outputs = {}
    for export, dtype in ((reference, np.float32), (half, np.float16)):
        session = onnxruntime.InferenceSession(str(export.decoder_path("static")), providers=["CPUExecutionProvider"])
        outputs[dtype] = session.run(None, decoder_feeds(export, dtype))
    np.testing.assert_allclose(outputs[np.float16][0], outputs[np.float32][0], atol=2e-2)
    np.testing.assert_allclose(outputs[np.float16][1].astype(np.float32), outputs[np.float32][1], atol=2e-2)


def test_bf16_graphs_for_tensorrt_are_valid_and_typed(tiny_checkpoint: Path, onnx_exports: Callable[..., Any]) -> None:
    """bf16: checked and strictly shape-inferred (ONNX Runtime's CPU kernels lack bf16 for most ops)."""
    export = onnx_exports(tiny_checkpoint, "bfloat16")
    for path in (export.vision_path, export.decoder_path("static")):
        onnx.checker.check_model(str(path), full_check=True)
        inferred = onnx.shape_inference.infer_shapes(onnx.load(str(path)), strict_mode=True, check_type=True)
        assert inferred.graph.node
    model = onnx.load(str(export.decoder_path("static")))
    types = {v.name: v.type.tensor_type.elem_type for v in [*model.graph.input, *model.graph.output]}
    assert types["past_key_0"] == onnx.TensorProto.BFLOAT16
    assert types["logits"] == onnx.TensorProto.FLOAT
    weights = {i.data_type for i in model.graph.initializer if len(i.dims) == 2}
    assert weights == {onnx.TensorProto.BFLOAT16}
