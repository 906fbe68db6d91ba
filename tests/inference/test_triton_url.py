"""``model.triton_url`` parsing and the repository's config text."""

from __future__ import annotations

import pytest

from inference.backends.triton_backend import parse_triton_url, served_sha256
from inference.engine import InferenceError
from inference.triton_repo import TensorSpec, model_config


def test_parse_triton_url() -> None:
    assert parse_triton_url("http://triton.local:8000") == ("http", "triton.local:8000")
    assert parse_triton_url("grpc://10.0.0.5:8001/") == ("grpc", "10.0.0.5:8001")
    assert parse_triton_url("localhost:8000") == ("http", "localhost:8000")
    for bad in ("triton", "http://triton", "ftp://triton:21", "http://triton:0", "http://triton:8000/v2"):
        with pytest.raises(InferenceError, match=r"model\.triton_url"):
            parse_triton_url(bad)


def test_model_config_text() -> None:
    text = model_config(
        "gazex_vision",
        [TensorSpec("pixel_values", "TYPE_FP32", (-1, 1176))],
        [TensorSpec("image_embeds", "TYPE_FP32", (-1, 1536))],
        instance_count=2,
        parameters={"gazex_checkpoint_sha256": "ab"},
    )
    assert 'backend: "onnxruntime"' in text
    assert "max_batch_size: 0" in text
    assert '{ name: "pixel_values", data_type: TYPE_FP32, dims: [ -1, 1176 ] }' in text
    assert "instance_group [ { count: 2, kind: KIND_GPU } ]" in text
    assert served_sha256({"parameters": {"gazex_checkpoint_sha256": {"string_value": "ab"}}}) == "ab"
    assert served_sha256({}) is None
    with pytest.raises(ValueError, match="KIND_GPU or KIND_CPU"):
        model_config("m", [], [], instance_kind="KIND_TPU")
