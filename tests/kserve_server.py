"""A loopback KServe v2 inference server for tests: a Triton model repository served by ONNX Runtime.

It reads a repository as Triton does (``MODEL/config.pbtxt`` parsed into Triton's own
``ModelConfig`` protobuf, ``MODEL/1/model.onnx`` loaded into an ONNX Runtime session) and
answers the parts of the KServe v2 protocol, with Triton's extensions, that ``tritonclient``
uses: health, model readiness, metadata, config and inference, over

- **HTTP/REST**, JSON with the binary tensor extension (``Inference-Header-Content-Length``);
- **gRPC**, ``inference.GRPCInferenceService`` with ``raw_input_contents``.

Every inference checks the request's tensors against the config (names, data types, ranks and
fixed dimensions), as Triton does, so a config that does not fit the graph fails here too.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

NUMPY_TYPES: dict[str, Any] = {"FP32": np.float32, "FP16": np.float16, "INT64": np.int64, "INT32": np.int32}


class RequestError(Exception):
    """A bad request: answered with HTTP 400 / gRPC INVALID_ARGUMENT."""


@dataclass
class ServedModel:
    name: str
    config: Any  # tritonclient.grpc.model_config_pb2.ModelConfig
    session: Any
    lock: threading.Lock = field(default_factory=threading.Lock)

    def tensor_specs(self, kind: str) -> dict[str, tuple[str, list[int]]]:
        entries = self.config.input if kind == "input" else self.config.output
        from tritonclient.grpc import model_config_pb2

        return {
            e.name: (model_config_pb2.DataType.Name(e.data_type).removeprefix("TYPE_"), list(e.dims)) for e in entries
        }

    def metadata(self) -> dict[str, Any]:
        def tensors(kind: str) -> list[dict[str, Any]]:
            return [{"name": n, "datatype": t, "shape": d} for n, (t, d) in self.tensor_specs(kind).items()]

        return {
            "name": self.name,
            "versions": ["1"],
            "platform": "onnxruntime_onnx",
            "inputs": tensors("input"),
            "outputs": tensors("output"),
        }

    def infer(self, inputs: dict[str, np.ndarray[Any, Any]], outputs: list[str]) -> dict[str, np.ndarray[Any, Any]]:
        specs = self.tensor_specs("input")
        if set(inputs) != set(specs):
            raise RequestError(f"{self.name}: expected inputs {sorted(specs)}, got {sorted(inputs)}")
        for name, array in inputs.items():
            datatype, dims = specs[name]
            if array.dtype != NUMPY_TYPES[datatype]:
                raise RequestError(f"{self.name}: input {name} must be {datatype}, got {array.dtype}")
            if len(dims) != array.ndim or any(d not in (-1, s) for d, s in zip(dims, array.shape, strict=True)):
                raise RequestError(f"{self.name}: input {name} has shape {list(array.shape)}, config says {dims}")
        known = self.tensor_specs("output")
        wanted = outputs or list(known)
        for name in wanted:
            if name not in known:
                raise RequestError(f"{self.name}: unknown output {name}")
        with self.lock:
            results = self.session.run(wanted, inputs)
        return dict(zip(wanted, results, strict=True))


def load_repository(directory: Path) -> dict[str, ServedModel]:
    """Every model folder of a Triton repository, loaded into ONNX Runtime."""
    import onnxruntime
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    models = {}
    for config_path in sorted(directory.glob("*/config.pbtxt")):
        config = text_format.Parse(config_path.read_text(encoding="utf-8"), model_config_pb2.ModelConfig())
        if config.backend != "onnxruntime":
            raise ValueError(f"{config_path}: backend {config.backend!r}; this server runs onnxruntime models")
        if config.name != config_path.parent.name:
            raise ValueError(f"{config_path}: name {config.name!r} differs from its folder")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        session = onnxruntime.InferenceSession(
            str(config_path.parent / "1" / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        models[config.name] = ServedModel(config.name, config, session)
    return models


# -- HTTP/REST ---------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server: _HttpServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {"Content-Type": "application/json"}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, document: Any) -> None:
        self._send(status, json.dumps(document).encode("utf-8"))

    def _model(self, parts: list[str]) -> ServedModel | None:
        model = self.server.models.get(parts[2]) if len(parts) > 2 else None
        if model is None:
            self._json(400, {"error": f"Request for unknown model: '{parts[2] if len(parts) > 2 else ''}'"})
        return model

    def do_GET(self) -> None:
        from google.protobuf.json_format import MessageToDict

        parts = [p for p in self.path.split("?")[0].split("/") if p]
        if parts[:2] == ["v2", "health"]:
            self._send(200, b"")
        elif parts == ["v2"]:
            self._json(200, {"name": "gazex-test-kserve", "version": "0", "extensions": ["binary_tensor_data"]})
        elif parts[:2] == ["v2", "models"] and (model := self._model(parts)) is not None:
            tail = parts[3:]
            if tail and tail[0] == "versions":
                tail = tail[2:]
            if tail == ["ready"]:
                self._send(200, b"")
            elif tail == ["config"]:
                self._json(200, MessageToDict(model.config, preserving_proto_field_name=True))
            elif not tail:
                self._json(200, model.metadata())
            else:
                self._json(404, {"error": f"unknown path {self.path}"})
        elif parts[:2] != ["v2", "models"]:
            self._json(404, {"error": f"unknown path {self.path}"})

    def do_POST(self) -> None:
        parts = [p for p in self.path.split("?")[0].split("/") if p]
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if not (parts[:2] == ["v2", "models"] and parts[-1] == "infer"):
            self._json(404, {"error": f"unknown path {self.path}"})
            return
        model = self._model(parts)
        if model is None:
            return
        try:
            self._infer(model, body)
        except RequestError as exc:
            self._json(400, {"error": str(exc)})

    def _infer(self, model: ServedModel, body: bytes) -> None:
        header_length = self.headers.get("Inference-Header-Content-Length")
        split = int(header_length) if header_length is not None else len(body)
        request = json.loads(body[:split])
        binary = body[split:]
        offset = 0
        inputs = {}
        for entry in request.get("inputs", []):
            datatype = entry["datatype"]
            if datatype not in NUMPY_TYPES:
                raise RequestError(f"unsupported datatype {datatype}")
            dtype = NUMPY_TYPES[datatype]
            size = entry.get("parameters", {}).get("binary_data_size")
            if size is not None:
                array = np.frombuffer(binary[offset : offset + size], dtype=dtype)
                offset += size
            else:
                array = np.asarray(entry["data"], dtype=dtype)
            inputs[entry["name"]] = array.reshape(entry["shape"])
        requested = request.get("outputs", [])
        names = [o["name"] for o in requested]
        binary_all = request.get("parameters", {}).get("binary_data_output", False)
        wants_binary = {o["name"]: o.get("parameters", {}).get("binary_data", binary_all) for o in requested}
        results = model.infer(inputs, names)
        outputs = []
        blobs = []
        for name, array in results.items():
            datatype = next(k for k, v in NUMPY_TYPES.items() if array.dtype == v)
            output: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
            if wants_binary.get(name, binary_all):
                raw = np.ascontiguousarray(array).tobytes()
                output["parameters"] = {"binary_data_size": len(raw)}
                blobs.append(raw)
            else:
                output["data"] = array.reshape(-1).tolist()
            outputs.append(output)
        header = json.dumps({"model_name": model.name, "model_version": "1", "outputs": outputs}).encode("utf-8")
        if blobs:
            self._send(
                200,
                header + b"".join(blobs),
                {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header))},
            )
        else:
            self._send(200, header)


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], models: dict[str, ServedModel]) -> None:
        super().__init__(address, _Handler)
        self.models = models


@contextmanager
def serve_http(repository: Path, port: int) -> Iterator[str]:
    """Serve ``repository`` over HTTP on 127.0.0.1:``port``; yields ``http://127.0.0.1:PORT``."""
    server = _HttpServer(("127.0.0.1", port), load_repository(repository))
    thread = threading.Thread(target=server.serve_forever, name="kserve-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


# -- gRPC --------------------------------------------------------------------------------------


def _grpc_servicer(models: dict[str, ServedModel]) -> Any:
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    class Servicer(service_pb2_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
        def _model(self, name: str, context: Any) -> ServedModel:
            model = models.get(name)
            if model is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"Request for unknown model: '{name}'")
            return model  # type: ignore[return-value]

        def ServerLive(self, request: Any, context: Any) -> Any:  # noqa: N802 - the service's names
            return service_pb2.ServerLiveResponse(live=True)

        def ServerReady(self, request: Any, context: Any) -> Any:  # noqa: N802
            return service_pb2.ServerReadyResponse(ready=True)

        def ModelReady(self, request: Any, context: Any) -> Any:  # noqa: N802
            return service_pb2.ModelReadyResponse(ready=request.name in models)

        def ModelConfig(self, request: Any, context: Any) -> Any:  # noqa: N802
            return service_pb2.ModelConfigResponse(config=self._model(request.name, context).config)

        def ModelMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802
            meta = self._model(request.name, context).metadata()
            tensor = service_pb2.ModelMetadataResponse.TensorMetadata
            return service_pb2.ModelMetadataResponse(
                name=meta["name"],
                versions=meta["versions"],
                platform=meta["platform"],
                inputs=[tensor(name=t["name"], datatype=t["datatype"], shape=t["shape"]) for t in meta["inputs"]],
                outputs=[tensor(name=t["name"], datatype=t["datatype"], shape=t["shape"]) for t in meta["outputs"]],
            )

        def ModelInfer(self, request: Any, context: Any) -> Any:  # noqa: N802
            model = self._model(request.model_name, context)
            if len(request.raw_input_contents) != len(request.inputs):
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "inputs must come as raw_input_contents")
            inputs = {}
            for entry, raw in zip(request.inputs, request.raw_input_contents, strict=True):
                if entry.datatype not in NUMPY_TYPES:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unsupported datatype {entry.datatype}")
                array = np.frombuffer(raw, dtype=NUMPY_TYPES[entry.datatype])
                inputs[entry.name] = array.reshape(list(entry.shape))
            try:
                results = model.infer(inputs, [o.name for o in request.outputs])
            except RequestError as exc:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            response = service_pb2.ModelInferResponse(model_name=model.name, model_version="1")
            for name, array in results.items():
                datatype = next(k for k, v in NUMPY_TYPES.items() if array.dtype == v)
                response.outputs.add(name=name, datatype=datatype, shape=list(array.shape))
                response.raw_output_contents.append(np.ascontiguousarray(array).tobytes())
            return response

    return Servicer()


@contextmanager
def serve_grpc(repository: Path, port: int) -> Iterator[str]:
    """Serve ``repository`` over gRPC on 127.0.0.1:``port``; yields ``grpc://127.0.0.1:PORT``."""
    import grpc
    from tritonclient.grpc import service_pb2_grpc

    limit = 2**31 - 1
    options = [("grpc.max_send_message_length", limit), ("grpc.max_receive_message_length", limit)]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), options=options)
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(_grpc_servicer(load_repository(repository)), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    try:
        yield f"grpc://127.0.0.1:{port}"
    finally:
        server.stop(grace=None).wait(timeout=10)
