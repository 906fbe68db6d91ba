"""The Triton backend against a loopback KServe v2 server (HTTP and gRPC) serving a generated repository.

The repository is what ``gazex model triton-repo`` writes; the server (``tests/kserve_server.py``)
parses each ``config.pbtxt`` into Triton's own ``ModelConfig`` protobuf and runs the ONNX models
in ONNX Runtime; the client is the real ``tritonclient.http`` / ``tritonclient.grpc``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest

from inference import BackendOptions, InferenceError, load_engine
from inference.backends.torch_backend import TorchBackend
from inference.checkpoint import open_checkpoint
from inference.generation import GenerationRequest
from inference.pixels import display_image
from inference.prompts import PromptEncoder
from inference.triton_repo import DECODER_MODEL, REPOSITORY_MANIFEST, VISION_MODEL, write_triton_repository
from inference.vision_input import prepare_model_image
from tests.conftest import missing_prerequisite

pytestmark = pytest.mark.integration

SENTENCES = ("No pleural effusion.", "The heart size is normal.", "x", "Possible small left lower lobe consolidation.")


@pytest.fixture(scope="module")
def tritonclient() -> None:
    try:
        import tritonclient.grpc
        import tritonclient.http  # noqa: F401
    except ImportError:
        missing_prerequisite("tritonclient is not installed; install it with: pip install 'gazex-gateway[triton]'")


@pytest.fixture(scope="module")
def repository(
    tritonclient: None,
    tiny_checkpoint: Path,
    onnx_exports: Callable[..., Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    out = tmp_path_factory.mktemp("triton") / "repository"
    write_triton_repository(onnx_exports(tiny_checkpoint), out, instance_kind="KIND_CPU", checkpoint_name="gazex-tiny")
    return out


@pytest.fixture(params=["http", "grpc"])
def server(request: pytest.FixtureRequest, repository: Path, free_port: Callable[[], int]) -> Iterator[str]:
    from tests.kserve_server import serve_grpc, serve_http

    serve = serve_http if request.param == "http" else serve_grpc
    with serve(repository, free_port()) as url:
        yield url


def test_the_repository_layout_and_configs(repository: Path) -> None:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    assert (repository / REPOSITORY_MANIFEST).is_file()
    for name in (VISION_MODEL, DECODER_MODEL):
        assert (repository / name / "1" / "model.onnx").is_file()
        config = text_format.Parse((repository / name / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
        assert config.name == name and config.backend == "onnxruntime" and config.max_batch_size == 0
        assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
        assert len(config.parameters["gazex_checkpoint_sha256"].string_value) == 64
    decoder = text_format.Parse(
        (repository / DECODER_MODEL / "config.pbtxt").read_text(), model_config_pb2.ModelConfig()
    )
    inputs = {i.name: list(i.dims) for i in decoder.input}
    assert inputs["past_key_0"] == [-1, 2, -1, 16]
    assert inputs["position_ids"] == [3, -1, -1]
    assert [o.name for o in decoder.output][:2] == ["logits", "present_key_0"]


def test_greedy_outputs_equal_the_torch_backend(
    server: str, tiny_checkpoint: Path, tiny_model: Any, chest_cr_path: Path
) -> None:
    checkpoint = open_checkpoint(tiny_checkpoint)
    image = prepare_model_image(
        display_image(pydicom.dcmread(chest_cr_path)).pixels, checkpoint.processing, checkpoint.gazex.coordinates
    ).encoded
    encoder = PromptEncoder(checkpoint.tokenizer, checkpoint.gazex.prompts.examine, checkpoint.gazex.prompts.attention)
    requests = [
        GenerationRequest(image, (encoder.examine(image.image_tokens),), 20),
        GenerationRequest(image, tuple(encoder.attention(s, image.image_tokens) for s in SENTENCES), 20, 20),
    ]
    engine = load_engine(tiny_checkpoint, backend="triton", options=BackendOptions(triton_url=server))
    assert engine.identity.backend == "triton"
    assert engine.backend.generate(requests) == TorchBackend(tiny_model, checkpoint.tokens).generate(requests)


def test_a_whole_analysis_through_triton(server: str, tiny_checkpoint: Path, chest_cr: Any) -> None:
    engine = load_engine(tiny_checkpoint, backend="triton", options=BackendOptions(triton_url=server))
    reference = load_engine(tiny_checkpoint, backend="torch", device="cpu")
    ours, theirs = engine.analyze([chest_cr]), reference.analyze([chest_cr])
    assert ours.images == theirs.images
    assert ours.model == dataclasses.replace(theirs.model, backend="triton")


def test_a_server_with_other_weights_is_refused(server: str, tmp_path: Path) -> None:
    from inference.testing import make_tiny_checkpoint

    other = make_tiny_checkpoint(tmp_path / "other", seed=3)
    with pytest.raises(InferenceError, match=r"exported from weights .* regenerate the repository"):
        load_engine(other, backend="triton", options=BackendOptions(triton_url=server))


def test_a_missing_model_and_a_bad_url_are_clear(
    repository: Path, tiny_checkpoint: Path, tmp_path: Path, free_port: Callable[[], int]
) -> None:
    import shutil

    from tests.kserve_server import serve_http

    partial = tmp_path / "partial"
    shutil.copytree(repository / VISION_MODEL, partial / VISION_MODEL)
    with (
        serve_http(partial, free_port()) as url,
        pytest.raises(InferenceError, match="has no ready model 'gazex_decoder'"),
    ):
        load_engine(tiny_checkpoint, backend="triton", options=BackendOptions(triton_url=url))
    with pytest.raises(InferenceError, match="the scheme must be http:// or grpc://"):
        load_engine(tiny_checkpoint, backend="triton", options=BackendOptions(triton_url="https://triton:8000"))
