"""TensorRT engines of a GazeX checkpoint: ``gazex model build-engine --precision fp16|bf16 --out DIR``.

The engines are built with the TensorRT Python API from this checkpoint's ONNX graphs
(:mod:`inference.onnx_export`), exported **in the target precision** (fp16 or bf16 weights and
activations, with float32 kept where the graph asks for it: RMSNorm statistics, softmax,
rotary tables, logits).  The networks are **strongly typed**: TensorRT takes every tensor's
type from the graph, as TensorRT 10.12+ recommends and 11 requires (it dropped the FP16
builder flag).

- ``vision.engine``: ``vision.onnx``, one profile over the number of patches the checkpoint's
  pixel budget allows;
- ``decoder.engine``: ``decoder_static.onnx`` (fixed-capacity cache, so a decoding step at a
  fixed batch has fixed shapes and can be replayed as a CUDA graph), one profile over batch,
  new tokens, image tokens and cache capacity;
- ``timing.cache``: TensorRT's timing cache, loaded before and saved after each build (under
  the engine cache root, shared by every build on this machine);
- ``engine.json``: the :class:`EngineKey` the engines were built for.

Engines are cached under ``<cache>/tensorrt/<key digest>/``; the key holds the GPU name, its
compute capability, the TensorRT version, the weights' SHA-256, the precision, the profiles and
the compatibility options, so any change selects (and builds) another engine.  Everything but
the builder calls is pure and tested on a CPU; the builder calls themselves need TensorRT and an
NVIDIA GPU, and say so plainly when either is missing (:func:`tensorrt_unavailable`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from inference.checkpoint import Checkpoint
from inference.engine import InferenceError
from inference.onnx_export import ModelDims, OnnxExport, default_cache_root, export_cache_dir, export_onnx, kv_names

logger = logging.getLogger(__name__)

ENGINE_FORMAT = 1
ENGINE_MANIFEST = "engine.json"
VISION_ENGINE = "vision.engine"
DECODER_ENGINE = "decoder.engine"
TIMING_CACHE = "timing.cache"

#: ``--precision`` -> the dtype the ONNX graphs are exported in.
PRECISIONS: dict[str, str] = {"fp16": "float16", "bf16": "bfloat16"}
HARDWARE_LEVELS: tuple[str, ...] = ("none", "ampere_plus", "same_compute_capability")

#: Text tokens of a prompt beside the image (system turn, GazeX's attention prompt with a long sentence).
DEFAULT_TEXT_TOKENS = 448
#: Cache capacities are rounded up to a multiple of this, so CUDA graphs are reused across images.
CAPACITY_BUCKET = 256


class EngineBuildError(InferenceError):
    """TensorRT, a GPU or the build itself failed; the message says what to do."""


@dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: tuple[int, int]


@dataclass(frozen=True)
class ProfileSettings:
    """The range of shapes the engines accept (min, opt, max per dynamic axis).

    ``opt_batch`` is the batch TensorRT tunes for (a typical report's sentence count).
    """

    max_batch: int = 16
    opt_batch: int = 8
    min_image_tokens: int = 4
    max_image_tokens: int = 729
    text_tokens: int = DEFAULT_TEXT_TOKENS
    max_new_tokens: int = 512

    def __post_init__(self) -> None:
        if not 1 <= self.opt_batch <= self.max_batch:
            raise ValueError(f'Argument "opt_batch" must be between 1 and max_batch, got {self.opt_batch}')
        if not 1 <= self.min_image_tokens <= self.max_image_tokens:
            raise ValueError('Argument "min_image_tokens" must be between 1 and max_image_tokens')
        if self.text_tokens < 1 or self.max_new_tokens < 1:
            raise ValueError('Arguments "text_tokens" and "max_new_tokens" must be positive')

    @property
    def max_sequence(self) -> int:
        """The longest run of new tokens in one pass: a whole prompt (the prefix)."""
        return self.max_image_tokens + self.text_tokens

    @property
    def max_capacity(self) -> int:
        """The largest cache: a whole prompt and its answer, rounded up to the bucket."""
        return capacity_bucket(self.max_sequence + self.max_new_tokens)

    @classmethod
    def for_checkpoint(cls, checkpoint: Checkpoint, max_batch: int = 16) -> ProfileSettings:
        """Ranges from ``gazex.json``: the pixel budget's image tokens and the larger token budget."""
        factor = checkpoint.processing.factor  # patch size x merge size: one image token's side in pixels
        min_tokens = max(1, checkpoint.processing.min_pixels // (factor * factor))
        max_tokens = max(min_tokens, checkpoint.processing.max_pixels // (factor * factor))
        generation = checkpoint.gazex.generation
        budget = max(generation.max_new_tokens_examine, generation.max_new_tokens_attention)
        return cls(
            max_batch=max_batch,
            opt_batch=min(8, max_batch),
            min_image_tokens=min_tokens,
            max_image_tokens=max_tokens,
            max_new_tokens=budget,
        )


def capacity_bucket(tokens: int, bucket: int = CAPACITY_BUCKET) -> int:
    """``tokens`` rounded up to a multiple of ``bucket``."""
    if tokens < 1:
        raise ValueError(f"a cache holds at least one token, got {tokens}")
    return math.ceil(tokens / bucket) * bucket


Shape = tuple[int, ...]
Profile = dict[str, tuple[Shape, Shape, Shape]]


def vision_profile(settings: ProfileSettings, dims: ModelDims) -> Profile:
    """min/opt/max of ``vision.onnx``'s inputs: patches = image tokens x merge^2."""
    merge = dims.merge_size**2
    low, high = settings.min_image_tokens * merge, settings.max_image_tokens * merge
    return {
        "pixel_values": ((low, dims.vision_patch_dim), (high, dims.vision_patch_dim), (high, dims.vision_patch_dim)),
        "vision_position_ids": ((low, 2), (high, 2), (high, 2)),
    }


def decoder_profile(settings: ProfileSettings, dims: ModelDims) -> Profile:
    """min/opt/max of ``decoder_static.onnx``'s inputs.

    The optimum is a decoding step (``opt_batch`` rows, one new token) on a full-size cache,
    where generation spends nearly all its time; the prefix (batch 1, a whole prompt) and the
    suffixes fit inside the range.
    """
    b_max, b_opt = settings.max_batch, settings.opt_batch
    s_max = settings.max_sequence
    c_max = settings.max_capacity
    images = settings.max_image_tokens
    profile: Profile = {
        "input_ids": ((1, 1), (b_opt, 1), (b_max, s_max)),
        "image_embeds": ((1, dims.hidden_size), (1, dims.hidden_size), (images, dims.hidden_size)),
        "position_ids": ((3, 1, 1), (3, b_opt, 1), (3, b_max, s_max)),
        "attention_mask": ((1, 1), (b_opt, c_max), (b_max, c_max)),
        "last_index": ((1,), (b_opt,), (b_max,)),
        "cache_position": ((1,), (1,), (1,)),
    }
    kv = (dims.num_kv_heads, dims.head_dim)
    for past_key, past_value, _, _ in kv_names(dims.num_layers):
        shapes = ((1, kv[0], 1, kv[1]), (b_opt, kv[0], c_max, kv[1]), (b_max, kv[0], c_max, kv[1]))
        profile[past_key] = shapes
        profile[past_value] = shapes
    return profile


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on; a change in any of it means another engine."""

    gpu_name: str
    compute_capability: tuple[int, int]
    tensorrt_version: str
    checkpoint_sha256: str
    precision: str
    profile: ProfileSettings
    version_compatible: bool = False
    hardware_compatibility: str = "none"
    format_version: int = ENGINE_FORMAT

    def document(self) -> dict[str, Any]:
        data = asdict(self)
        data["compute_capability"] = list(self.compute_capability)
        return data

    def digest(self) -> str:
        """A stable hash of the key (the engine folder's name)."""
        canonical = json.dumps(self.document(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    @classmethod
    def from_document(cls, data: Mapping[str, Any]) -> EngineKey:
        values = dict(data)
        values["compute_capability"] = tuple(values["compute_capability"])
        values["profile"] = ProfileSettings(**values["profile"])
        return cls(**values)


def engine_dir(key: EngineKey, root: Path | None = None) -> Path:
    """``<root>/tensorrt/<gpu>-sm<cc>-trt<version>-<precision>-<digest>``: readable and unique."""
    gpu = "".join(c if c.isalnum() else "-" for c in key.gpu_name.lower()).strip("-")
    major, minor = key.compute_capability
    name = f"{gpu}-sm{major}{minor}-trt{key.tensorrt_version}-{key.precision}-{key.digest()[:16]}"
    return (root or default_cache_root()) / "tensorrt" / name


def stale_reason(directory: Path, key: EngineKey) -> str | None:
    """Why the engines in ``directory`` cannot serve ``key`` (None when they can)."""
    manifest = directory / ENGINE_MANIFEST
    if not manifest.is_file():
        return "no engines built yet"
    try:
        built = EngineKey.from_document(json.loads(manifest.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"{manifest} is unreadable ({exc})"
    for name in ("gpu_name", "compute_capability", "tensorrt_version", "checkpoint_sha256", "precision"):
        if getattr(built, name) != getattr(key, name):
            return f"{name.replace('_', ' ')} changed: {getattr(built, name)} -> {getattr(key, name)}"
    if built != key:
        return "the profiles or compatibility options changed"
    for engine in (VISION_ENGINE, DECODER_ENGINE):
        if not (directory / engine).is_file():
            return f"{engine} is missing"
    return None


def tensorrt_unavailable() -> str | None:
    """Why TensorRT engines cannot be built or run here (None when they can)."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return (
            "TensorRT is not installed: install it on an NVIDIA GPU machine with pip install 'gazex-gateway[gpu]' "
            "(tensorrt>=10.12), or choose another backend (onnx, torch or triton)"
        )
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a runtime dependency
        return "PyTorch is needed for the CUDA buffers and stream of the TensorRT backend"
    if not torch.cuda.is_available():
        return (
            "TensorRT needs an NVIDIA GPU, and CUDA reports none here (check the driver with nvidia-smi), "
            "or choose another backend (onnx, torch or triton)"
        )
    return None


def require_tensorrt() -> Any:
    """``tensorrt``, or an :class:`EngineBuildError` saying why not."""
    reason = tensorrt_unavailable()
    if reason is not None:
        raise EngineBuildError(reason)
    import tensorrt

    return tensorrt


def current_gpu(device_index: int = 0) -> GpuInfo:
    import torch

    major, minor = torch.cuda.get_device_capability(device_index)
    return GpuInfo(name=str(torch.cuda.get_device_name(device_index)), compute_capability=(int(major), int(minor)))


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise EngineBuildError(f"unknown precision {precision!r}; use {' or '.join(PRECISIONS)}")
    return PRECISIONS[precision]


@dataclass(frozen=True)
class EngineSet:
    directory: Path
    key: EngineKey
    dims: ModelDims
    built: bool = False
    seconds: float = 0.0
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def vision_path(self) -> Path:
        return self.directory / VISION_ENGINE

    @property
    def decoder_path(self) -> Path:
        return self.directory / DECODER_ENGINE


# -- the TensorRT builder calls (need TensorRT and a GPU; not executed in CI) ---------------------


class _Logger:
    """Build messages through our logging (TensorRT's ILogger)."""

    def __new__(cls, trt: Any) -> Any:
        class TrtLogger(trt.ILogger):  # type: ignore[misc]
            def __init__(self) -> None:
                trt.ILogger.__init__(self)

            def log(self, severity: Any, msg: str) -> None:
                if severity <= trt.ILogger.Severity.ERROR:
                    logger.error("TensorRT: %s", msg)
                elif severity <= trt.ILogger.Severity.WARNING:
                    logger.warning("TensorRT: %s", msg)
                else:
                    logger.debug("TensorRT: %s", msg)

        return TrtLogger()


def _build_one(
    trt: Any,
    trt_logger: Any,
    onnx_path: Path,
    profile: Profile,
    target: Path,
    timing_cache_path: Path,
    *,
    version_compatible: bool,
    hardware_compatibility: str,
    workspace_bytes: int | None,
) -> None:
    builder = trt.Builder(trt_logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):  # always on (and deprecated) in TensorRT 11
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse_from_file(str(onnx_path)):  # resolves the external weight file beside the graph
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    if workspace_bytes:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    optimization = builder.create_optimization_profile()
    for index in range(network.num_inputs):
        name = network.get_input(index).name
        if name not in profile:
            raise EngineBuildError(f"{onnx_path}: input {name!r} has no optimisation profile")
        low, opt, high = profile[name]
        optimization.set_shape(name, low, opt, high)
    config.add_optimization_profile(optimization)
    blob = timing_cache_path.read_bytes() if timing_cache_path.is_file() else b""
    timing_cache = config.create_timing_cache(blob)
    config.set_timing_cache(timing_cache, ignore_mismatch=False)
    if version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    if hardware_compatibility == "ampere_plus":
        config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS
    elif hardware_compatibility == "same_compute_capability":
        config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"TensorRT could not build an engine from {onnx_path}; see the TensorRT log above")
    target.write_bytes(bytes(serialized))
    timing_cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))


def build_engines(
    checkpoint: Checkpoint,
    precision: str = "bf16",
    *,
    out: Path | None = None,
    cache_root: Path | None = None,
    settings: ProfileSettings | None = None,
    version_compatible: bool = False,
    hardware_compatibility: str = "none",
    workspace_bytes: int | None = None,
    force: bool = False,
    device_index: int = 0,
) -> EngineSet:
    """Build (or reuse) the engines of ``checkpoint`` for this GPU and TensorRT version."""
    dtype = check_precision(precision)
    if hardware_compatibility not in HARDWARE_LEVELS:
        raise EngineBuildError(f"unknown hardware compatibility {hardware_compatibility!r}; use {HARDWARE_LEVELS}")
    trt = require_tensorrt()
    gpu = current_gpu(device_index)
    settings = settings or ProfileSettings.for_checkpoint(checkpoint)
    key = EngineKey(
        gpu_name=gpu.name,
        compute_capability=gpu.compute_capability,
        tensorrt_version=str(trt.__version__),
        checkpoint_sha256=checkpoint.weights_sha256,
        precision=precision,
        profile=settings,
        version_compatible=version_compatible,
        hardware_compatibility=hardware_compatibility,
    )
    root = cache_root or default_cache_root()
    directory = out or engine_dir(key, root)
    export = export_onnx(
        checkpoint, export_cache_dir(checkpoint.weights_sha256, dtype, root), dtype=dtype, cache=("static",)
    )
    reason = "rebuild forced" if force else stale_reason(directory, key)
    if reason is None:
        return EngineSet(directory=directory, key=key, dims=export.dims)
    logger.info("building TensorRT engines in %s (%s)", directory, reason)
    started = time.perf_counter()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / ENGINE_MANIFEST).unlink(missing_ok=True)
    trt_logger = _Logger(trt)
    timing = root / "tensorrt" / TIMING_CACHE
    timing.parent.mkdir(parents=True, exist_ok=True)
    options: dict[str, Any] = {
        "version_compatible": version_compatible,
        "hardware_compatibility": hardware_compatibility,
        "workspace_bytes": workspace_bytes,
    }
    _build_one(
        trt,
        trt_logger,
        export.vision_path,
        vision_profile(settings, export.dims),
        directory / VISION_ENGINE,
        timing,
        **options,
    )
    _build_one(
        trt,
        trt_logger,
        export.decoder_path("static"),
        decoder_profile(settings, export.dims),
        directory / DECODER_ENGINE,
        timing,
        **options,
    )
    (directory / ENGINE_MANIFEST).write_text(json.dumps(key.document(), indent=2), encoding="utf-8")
    return EngineSet(
        directory=directory,
        key=key,
        dims=export.dims,
        built=True,
        seconds=time.perf_counter() - started,
        notes=(reason,),
    )


def export_for_precision(checkpoint: Checkpoint, precision: str, cache_root: Path | None = None) -> OnnxExport:
    """The fp16 or bf16 ONNX graphs TensorRT builds from (exported once, cached by weights SHA-256)."""
    dtype = check_precision(precision)
    root = cache_root or default_cache_root()
    return export_onnx(
        checkpoint, export_cache_dir(checkpoint.weights_sha256, dtype, root), dtype=dtype, cache=("static",)
    )
