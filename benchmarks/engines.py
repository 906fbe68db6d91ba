"""GazeX backends side by side: per-image latency, images/s and memory, on the same inputs in one run.

Each available backend runs both stages of one image (the examine prompt, then one attention
prompt per sentence) on the same weights and the same image, with fixed work (the end token is
suppressed until the budget, as in ``benchmarks/generation.py``):

- ``hf-generate``: the peer, one Hugging Face ``generate`` per prompt (naive);
- ``torch``: ours in PyTorch (image encoded once, shared prefix cache, one batch);
- ``onnx``: ours in ONNX Runtime, from this checkpoint's ONNX export;
- ``triton``: ours through ``tritonclient`` against a loopback KServe v2 server serving the
  generated Triton repository with ONNX Runtime (``tests/kserve_server.py``): it measures the
  protocol and cache-transfer overhead, not a real Triton server's speed;
- ``tensorrt``: ours on TensorRT engines, when TensorRT and a GPU are present.

A backend that cannot run here is listed with the reason.  Columns: median seconds per image,
images per second, the host memory the backend's creation added (resident set, MiB), peak GPU
memory while it ran (CUDA only), and whether its greedy outputs equal the peer's.

    python -m benchmarks.engines                                  # tiny checkpoint, CPU
    python -m benchmarks.engines --shape qwen2-vl-2b --device cuda --dtype bfloat16 \
        --backends hf-generate,torch,tensorrt
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from benchmarks._table import format_table, machine_line, median
from benchmarks.generation import SENTENCES, add_model_arguments, build_checkpoint, run_image

ALL_BACKENDS = ("hf-generate", "torch", "onnx", "triton", "tensorrt")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument("--backends", default=",".join(ALL_BACKENDS), help="comma-separated, in table order")
    parser.add_argument("--sentences", type=int, default=4, help="report sentences (attention prompts) per image")
    parser.add_argument("--tokens-per-sentence", type=int, default=24, help="examine tokens per report sentence")
    parser.add_argument("--attention-tokens", type=int, default=96, help="tokens per attention answer")
    parser.add_argument("--repeats", type=int, default=3, help="timed images per backend (median reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch and ONNX Runtime CPU threads")
    parser.add_argument("--precision", default="bf16", help="TensorRT engine precision (fp16 or bf16)")
    parser.add_argument("--image", default=None, help="a DICOM image (default: the NEMA chest CR)")
    parser.add_argument("--cache-dir", default=None, help="export/engine cache (default: a temporary folder)")
    args = parser.parse_args(argv)
    args.backend_list = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(args.backend_list) - set(ALL_BACKENDS)
    if unknown:
        parser.error(f"unknown backends: {', '.join(sorted(unknown))}")
    if not 1 <= args.sentences <= len(SENTENCES):
        parser.error(f"--sentences must be between 1 and {len(SENTENCES)}")
    return args


def resident_mib() -> float:
    """This process's resident set size in MiB (Linux), NaN elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


@contextlib.contextmanager
def loopback_triton(checkpoint: Any, cache_dir: Path) -> Iterator[str]:
    """The checkpoint's Triton repository served over HTTP on a loopback port by ONNX Runtime."""
    from inference.onnx_export import export_cache_dir, export_onnx
    from inference.triton_repo import write_triton_repository
    from tests.conftest import allocate_port
    from tests.kserve_server import serve_http

    export = export_onnx(checkpoint, export_cache_dir(checkpoint.weights_sha256, "float32", cache_dir))
    repository = write_triton_repository(export, cache_dir / "triton", instance_kind="KIND_CPU")
    with serve_http(repository.directory, allocate_port()) as url:
        yield url


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    import pydicom
    import torch
    from pydicom.data import get_testdata_file

    from inference.backends import BackendOptions
    from inference.backends.torch_backend import resolve_device
    from inference.checkpoint import open_checkpoint
    from inference.generation import GenerationRequest
    from inference.pixels import display_image
    from inference.prompts import PromptEncoder
    from inference.vision_input import prepare_model_image

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    scratch = tempfile.TemporaryDirectory(prefix="gazex-engines-")
    cache_dir = Path(args.cache_dir) if args.cache_dir else Path(scratch.name) / "cache"
    with contextlib.ExitStack() as stack:
        stack.callback(scratch.cleanup)
        if args.shape is not None or args.checkpoint == "tiny":
            path = build_checkpoint(args, Path(scratch.name) / "checkpoint", device)
        else:
            path = Path(args.checkpoint)
        checkpoint = open_checkpoint(path)
        dataset = pydicom.dcmread(args.image or str(get_testdata_file("RG1_UNCR.dcm")))
        image = prepare_model_image(
            display_image(dataset).pixels, checkpoint.processing, checkpoint.gazex.coordinates
        ).encoded
        prompts = PromptEncoder(
            checkpoint.tokenizer, checkpoint.gazex.prompts.examine, checkpoint.gazex.prompts.attention
        )
        count = args.sentences
        examine_tokens = args.tokens_per_sentence * count
        work = [
            GenerationRequest(image, (prompts.examine(image.image_tokens),), examine_tokens, examine_tokens),
            GenerationRequest(
                image,
                tuple(prompts.attention(s, image.image_tokens) for s in SENTENCES[:count]),
                args.attention_tokens,
                args.attention_tokens,
            ),
        ]
        options = BackendOptions(cache_dir=cache_dir, precision=args.precision, threads=args.threads)
        print(
            f"GazeX backends: {checkpoint.gazex.name}, {image.image_tokens} image tokens, {count} sentences, "
            f"{examine_tokens} examine + {count} x {args.attention_tokens} attention tokens per image; "
            f"torch on {device} ({args.dtype}); median of {args.repeats}; {machine_line()}"
        )
        rows: list[list[Any]] = []
        reference: list[Any] | None = None
        for name in args.backend_list:
            row = measure(name, checkpoint, work, device, args, options, cache_dir, stack)
            if isinstance(row, str):
                rows.append([name, "n/a", "n/a", "n/a", "n/a", "n/a", "n/a", row])
                continue
            seconds, added, (peak, used), outputs = row
            if reference is None:
                reference = outputs
                same = "(reference)"
            else:
                same = f"{sum(a == b for a, b in zip(reference, outputs, strict=True))}/{len(outputs)}"
            rows.append([name, seconds, 1.0 / seconds, added, peak, used, same, ""])
            print(f"  {name}: {seconds:.3f} s / image", flush=True)
    print()
    print(
        format_table(
            [
                "backend",
                "s / image",
                "images / s",
                "host memory added (MiB)",
                "peak GPU memory, torch allocator (GiB)",
                "GPU memory in use after the run (GiB)",
                "greedy outputs equal to the first",
                "note",
            ],
            rows,
        )
    )
    return 0


def measure(
    name: str,
    checkpoint: Any,
    work: list[Any],
    device: Any,
    args: argparse.Namespace,
    options: Any,
    cache_dir: Path,
    stack: contextlib.ExitStack,
) -> tuple[float, float, tuple[float, float], list[Any]] | str:
    """(median s / image, host MiB added, (peak torch GiB, device GiB in use), outputs), or why not."""
    import torch

    from inference.backends import create_backend
    from inference.engine import InferenceError

    if name == "triton":
        try:
            import tritonclient.http  # noqa: F401
        except ImportError:
            return "tritonclient is not installed"
        url = stack.enter_context(loopback_triton(checkpoint, cache_dir))
        options = dataclasses.replace(options, triton_url=url)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    before = resident_mib()
    try:
        backend = create_backend(name, checkpoint, device=str(device), dtype=args.dtype, options=options)
    except InferenceError as exc:
        return str(exc).split(";")[0]
    added = resident_mib() - before
    warm = [dataclasses.replace(request, max_new_tokens=2, min_new_tokens=2) for request in work]
    run_image(backend, warm, device)  # kernels, allocator, lazy initialisation
    timings = []
    outputs: list[Any] = []
    for _ in range(args.repeats):
        fresh = getattr(backend, "_vision_cache", None)
        if fresh is not None:
            fresh.clear()  # every repetition encodes the image again
        examine_s, attention_s, outputs = run_image(backend, work, device)
        timings.append(examine_s + attention_s)
    peak = used = float("nan")
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**30
        free, total = torch.cuda.mem_get_info(device)
        used = (total - free) / 2**30
    del backend
    return median(timings), added, (peak, used), outputs


if __name__ == "__main__":
    sys.exit(main())
