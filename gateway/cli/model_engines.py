"""``gazex model export-onnx | build-engine | triton-repo``: the model's runtime artefacts.

- ``gazex model export-onnx --model PATH|builtin:NAME [--out DIR] [--dtype float32|float16|bfloat16] [--static-cache]``
  writes ``vision.onnx``, ``decoder.onnx`` (and ``decoder_static.onnx``) and ``export.json``;
  without ``--out`` into the cache folder keyed by the weights' SHA-256.
- ``gazex model build-engine --model ... --precision fp16|bf16 [--out DIR]`` builds the TensorRT
  engines (needs TensorRT and an NVIDIA GPU, and says so when either is missing).
- ``gazex model triton-repo --model ... --out deploy/triton/`` writes a Triton model repository.

Registered by :mod:`gateway.cli.model` into its subcommands.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Literal

from gateway.cli import CommandError
from inference import (
    CheckpointError,
    InferenceError,
    ProfileSettings,
    build_engines,
    export_cache_dir,
    export_onnx,
    open_checkpoint,
    tensorrt_unavailable,
    write_triton_repository,
)


def register(commands: Any) -> None:
    """Add the three subcommands to ``gazex model``'s subparsers."""
    export = commands.add_parser(
        "export-onnx",
        help="export the checkpoint's vision tower and text decoder to ONNX (checked with onnx.checker)",
        description="Export vision.onnx (vision tower and merger) and decoder.onnx (text decoder with key/value "
        "cache inputs and outputs, dynamic batch and sequence axes) of a GazeX checkpoint.",
    )
    _model_argument(export)
    export.add_argument("--out", type=Path, default=None, help="output folder (default: the cache, keyed by weights)")
    export.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32")
    export.add_argument(
        "--static-cache", action="store_true", help="also export decoder_static.onnx (fixed-capacity cache, TensorRT)"
    )
    export.add_argument("--force", action="store_true", help="export again even if a matching export exists")
    export.set_defaults(handler=run_export)

    build = commands.add_parser(
        "build-engine",
        help="build TensorRT engines (strongly typed, fp16 or bf16) for this GPU; needs TensorRT and a GPU",
        description="Build TensorRT engines of a GazeX checkpoint for this GPU and TensorRT version. Engines are "
        "cached by GPU, compute capability, TensorRT version, weights SHA-256, precision and profiles.",
    )
    _model_argument(build)
    build.add_argument("--precision", choices=["fp16", "bf16"], required=True)
    build.add_argument("--out", type=Path, default=None, help="engine folder (default: the engine cache)")
    build.add_argument("--max-batch", type=int, default=16, help="largest batch of attention prompts (default 16)")
    build.add_argument("--version-compatible", action="store_true", help="build version-compatible engines")
    build.add_argument(
        "--hardware-compatibility",
        choices=["none", "ampere_plus", "same_compute_capability"],
        default="none",
        help="hardware compatibility level (default none: this GPU only)",
    )
    build.add_argument("--force", action="store_true", help="rebuild even if cached engines match")
    build.set_defaults(handler=run_build)

    triton = commands.add_parser(
        "triton-repo",
        help="write an NVIDIA Triton model repository (ONNX models and config.pbtxt) for this checkpoint",
        description="Write gazex_vision and gazex_decoder (onnxruntime backend) with their config.pbtxt.",
    )
    _model_argument(triton)
    triton.add_argument("--out", type=Path, required=True, help="repository folder, e.g. deploy/triton/")
    triton.add_argument("--dtype", choices=["float32", "float16"], default="float32")
    triton.add_argument("--instances", type=int, default=1, help="instances per model (default 1)")
    triton.add_argument("--kind", choices=["gpu", "cpu"], default="gpu", help="instance kind (default gpu)")
    triton.set_defaults(handler=run_triton_repo)


def _model_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="a GazeX checkpoint directory or builtin:NAME")


def _checkpoint(model: str) -> Any:
    try:
        return open_checkpoint(model)
    except CheckpointError as exc:
        raise CommandError(str(exc)) from exc


def run_export(args: argparse.Namespace) -> int:
    checkpoint = _checkpoint(args.model)
    started = time.perf_counter()
    cache: tuple[Literal["dynamic", "static"], ...] = ("dynamic", "static") if args.static_cache else ("dynamic",)
    try:
        export = export_onnx(checkpoint, args.out, dtype=args.dtype, cache=cache, force=args.force)
    except InferenceError as exc:
        raise CommandError(str(exc)) from exc
    print(f"ONNX export of {checkpoint.gazex.name} {checkpoint.gazex.version} ({args.dtype}) in {export.directory}")
    for path in sorted(export.directory.iterdir()):
        print(f"  {path.name}: {path.stat().st_size / 2**20:.1f} MiB")
    print(
        f"  weights sha256 {export.checkpoint_sha256}; checked with onnx.checker; {time.perf_counter() - started:.1f} s"
    )
    return 0


def run_build(args: argparse.Namespace) -> int:
    checkpoint = _checkpoint(args.model)
    reason = tensorrt_unavailable()
    if reason is not None:
        raise CommandError(f"cannot build TensorRT engines here: {reason}")
    if args.max_batch < 1:
        raise CommandError(f"--max-batch must be at least 1, got {args.max_batch}")
    try:
        engines = build_engines(
            checkpoint,
            args.precision,
            out=args.out,
            settings=ProfileSettings.for_checkpoint(checkpoint, max_batch=args.max_batch),
            version_compatible=args.version_compatible,
            hardware_compatibility=args.hardware_compatibility,
            force=args.force,
        )
    except InferenceError as exc:
        raise CommandError(str(exc)) from exc
    what = f"built in {engines.seconds:.0f} s" if engines.built else "up to date (cached)"
    print(
        f"TensorRT engines ({args.precision}) for {engines.key.gpu_name}, "
        f"TensorRT {engines.key.tensorrt_version}: {what}"
    )
    print(f"  {engines.directory}")
    return 0


def run_triton_repo(args: argparse.Namespace) -> int:
    if args.instances < 1:
        raise CommandError(f"--instances must be at least 1, got {args.instances}")
    checkpoint = _checkpoint(args.model)
    try:
        export = export_onnx(checkpoint, export_cache_dir(checkpoint.weights_sha256, args.dtype), dtype=args.dtype)
        repository = write_triton_repository(
            export,
            args.out,
            instance_kind="KIND_GPU" if args.kind == "gpu" else "KIND_CPU",
            instance_count=args.instances,
            checkpoint_name=checkpoint.gazex.name,
            checkpoint_version=checkpoint.gazex.version,
        )
    except InferenceError as exc:
        raise CommandError(str(exc)) from exc
    except OSError as exc:
        raise CommandError(f"cannot write the repository under {args.out}: {exc}") from exc
    print(f"Triton model repository for {checkpoint.gazex.name} {checkpoint.gazex.version} in {repository.directory}")
    for model in repository.models:
        print(f"  {model}/config.pbtxt, {model}/1/model.onnx")
    print(f"serve it with: tritonserver --model-repository {repository.directory.resolve()}")
    return 0
