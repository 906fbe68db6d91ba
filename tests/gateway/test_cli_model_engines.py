"""``gazex model export-onnx``, ``build-engine`` and ``triton-repo``."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from gateway.cli import main


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from inference.testing import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("cli") / "tiny")


def test_export_onnx(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "export"
    assert main(["model", "export-onnx", "--model", str(checkpoint), "--out", str(out), "--static-cache"]) == 0
    printed = capsys.readouterr().out
    assert f"ONNX export of gazex-tiny 0.0.1 (float32) in {out}" in printed
    assert "checked with onnx.checker" in printed
    for name in ("vision.onnx", "decoder.onnx", "decoder_static.onnx"):
        onnx.checker.check_model(str(out / name))
    assert json.loads((out / "export.json").read_text())["cache"] == ["dynamic", "static"]


def test_triton_repo(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GAZEX_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "deploy" / "triton"
    argv = ["model", "triton-repo", "--model", str(checkpoint), "--out", str(out), "--instances", "2"]
    assert main(argv) == 0
    assert "serve it with: tritonserver --model-repository" in capsys.readouterr().out
    config = (out / "gazex_decoder" / "config.pbtxt").read_text()
    assert "instance_group [ { count: 2, kind: KIND_GPU } ]" in config
    assert (out / "gazex_vision" / "1" / "model.onnx").is_file()
    assert list((tmp_path / "cache" / "onnx").iterdir())  # the export went to the cache, not the repository


def test_build_engine_says_what_is_missing(checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from inference import tensorrt_unavailable

    if tensorrt_unavailable() is None:  # pragma: no cover - on a GPU machine with TensorRT
        pytest.skip("TensorRT is usable here")
    assert main(["model", "build-engine", "--model", str(checkpoint), "--precision", "bf16"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("gazex: error: cannot build TensorRT engines here: TensorRT is not installed")


def test_a_missing_checkpoint_is_an_operator_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "export-onnx", "--model", str(tmp_path / "nothing")]) == 2
    assert "no such checkpoint directory" in capsys.readouterr().err
