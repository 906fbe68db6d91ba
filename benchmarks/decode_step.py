"""One greedy decoding step at batch 1 and at larger batches: the earlier loop beside ours.

A decoding step feeds one token per prompt.  On a GPU a 2B model's step is bound by launches
and memory latency, so a step at batch 4 or 8 should cost about what one at batch 1 does.
Rows (milliseconds per step, median):

- ``before: 2-D mask, growing cache``: the torch backend's earlier loop, re-created here: the
  prefix cache repeated per prompt (``DynamicCache.batch_repeat_interleave``), a 2-D padding
  mask grown by ``torch.cat`` each step and turned into a 4-D mask by transformers in every
  forward, each layer's cache grown by ``torch.cat``, one device sync per step;
- ``before, cuDNN attention off`` (CUDA only): the same with PyTorch's cuDNN SDPA kernel
  disabled, to show whether that kernel is what makes the masked steps slow (PyTorch prefers
  it on Hopper, and it plans anew for every new key length);
- ``ours, eager``: :class:`~inference.backends.torch_backend.TorchBackend` without CUDA
  graphs: a fixed-capacity cache and a 4-D mask updated in place, so every step has the same
  shapes; one sync per 8 steps;
- ``ours, CUDA graphs`` (CUDA only): the same, each step replayed from a CUDA graph.

Ours is measured through ``TorchBackend.generate`` itself: the time for ``n + steps`` tokens
minus the time for ``n`` tokens, over ``steps``.  ``--profile`` adds torch.profiler's op table
for a few steps of the earlier loop at the largest batch.

    python -m benchmarks.decode_step --shape qwen2-vl-2b --layers 2 --vision-depth 2 --vocab 4096
    python -m benchmarks.decode_step --checkpoint PATH --device cuda --dtype bfloat16 --profile
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._table import format_table, machine_line, median
from benchmarks.generation import SENTENCES, add_model_arguments, build_checkpoint, synchronize


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument("--batches", default="1,4,8", help="comma-separated batch sizes (prompts decoded together)")
    parser.add_argument("--steps", type=int, default=32, help="decoding steps timed per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="measurements per cell (median reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--image", default=None, help="a DICOM image (default: the NEMA chest CR from pydicom-data)")
    parser.add_argument("--profile", action="store_true", help="print the op table of the earlier loop's steps")
    args = parser.parse_args(argv)
    args.batch_sizes = [int(n) for n in args.batches.split(",")]
    if not all(1 <= n <= len(SENTENCES) for n in args.batch_sizes):
        parser.error(f"--batches must be between 1 and {len(SENTENCES)}")
    return args


@contextlib.contextmanager
def attention_kernels(cudnn: bool) -> Iterator[None]:
    """PyTorch's SDPA kernels as they are, or all but cuDNN's."""
    if cudnn:
        yield
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]):
        yield


def before_steps(model: Any, tokens: Any, request: Any, steps: int, cudnn: bool = True, around: Any = None) -> float:
    """Milliseconds per step of the earlier decoding loop (median over ``steps``); the steps (not
    the prefill) run inside the context manager ``around`` when one is given."""
    import torch
    from transformers import DynamicCache

    from inference.backends.torch_backend import _TorchModel
    from inference.generation import plan_shared_prefix

    m = _TorchModel(model)
    plan = plan_shared_prefix(request.prompts, request.image.image_grid_thw, tokens)
    batch = plan.batch_size

    def tensor(array: Any) -> Any:
        return torch.from_numpy(np.ascontiguousarray(array)).to(m.device)

    embed = m.text.embed_tokens
    times = []
    with torch.inference_mode(), attention_kernels(cudnn):
        prefix = embed(tensor(plan.prefix_ids)[None])
        prefix[0, plan.image_slice] = m.image_embeddings(request.image).to(prefix.dtype)
        cache = DynamicCache(config=model.config)
        m.forward(prefix, tensor(plan.prefix_positions)[:, None, :], None, cache)
        if batch > 1:
            cache.batch_repeat_interleave(batch)
        mask = tensor(plan.attention_mask)
        m.forward(embed(tensor(plan.suffix_ids)), tensor(plan.suffix_positions), mask, cache)
        feed = torch.full((batch,), tokens.pad_token_id, dtype=torch.long, device=m.device)
        next_position = tensor(plan.next_position)
        ones = torch.ones((batch, 1), dtype=mask.dtype, device=m.device)
        with around if around is not None else contextlib.nullcontext():
            for step in range(steps):
                synchronize(m.device)
                started = time.perf_counter()
                positions = (next_position + step).view(1, batch, 1).expand(3, batch, 1)
                mask = torch.cat([mask, ones], dim=1)
                hidden = m.forward(embed(feed[:, None]), positions, mask, cache)
                feed = m.lm_head(hidden[:, -1]).float().argmax(dim=-1)
                feed.tolist()  # the earlier loop's one device sync per step
                times.append(time.perf_counter() - started)
    return median(times[2:] or times) * 1e3


def our_steps(backend: Any, request: Any, base: int, steps: int, repeats: int) -> float:
    """Milliseconds per step of ``backend`` (generate ``base + steps`` tokens minus ``base`` tokens)."""
    import dataclasses

    short = dataclasses.replace(request, max_new_tokens=base, min_new_tokens=base)
    long = dataclasses.replace(request, max_new_tokens=base + steps, min_new_tokens=base + steps)

    def seconds(work: Any) -> float:
        synchronize(backend.model.device)
        started = time.perf_counter()
        backend.generate([work])
        synchronize(backend.model.device)
        return time.perf_counter() - started

    seconds(short)  # warm-up: buffers (and CUDA graphs) for both capacities
    seconds(long)
    shorts, longs = [], []
    for _ in range(repeats):
        shorts.append(seconds(short))
        longs.append(seconds(long))
    return (median(longs) - median(shorts)) / steps * 1e3


def compare_graphs(model: Any, tokens: Any, request: Any) -> None:
    """Print whether CUDA-graph steps give the greedy outputs of uncaptured ones."""
    from inference.backends.torch_backend import TorchBackend

    (plain,) = TorchBackend(model, tokens, cuda_graphs=False).generate([request])
    (replayed,) = TorchBackend(model, tokens, cuda_graphs=True).generate([request])
    same = sum(a == b for a, b in zip(plain, replayed, strict=True))
    print(f"\ngreedy outputs, CUDA graphs against uncaptured steps (batch {len(plain)}): {same}/{len(plain)} identical")


def print_profile(model: Any, tokens: Any, request: Any, on_cuda: bool) -> None:
    """torch.profiler's op tables for a few steps of the earlier loop."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if on_cuda else [])]
    profiler = profile(activities=activities)
    before_steps(model, tokens, request, 4, around=profiler)
    sort = "self_device_time_total" if on_cuda else "self_cpu_time_total"
    print(f"\ntorch.profiler, 4 steps of the earlier loop at batch {len(request.prompts)}, by {sort}:")
    print(profiler.key_averages().table(sort_by=sort, row_limit=15, max_name_column_width=60))
    if on_cuda:
        print(f"by self CPU time:\n{profiler.key_averages().table(sort_by='self_cpu_time_total', row_limit=12)}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    import pydicom
    import torch
    from pydicom.data import get_testdata_file

    from inference.backends.torch_backend import TorchBackend, load_qwen2_vl, resolve_device, resolve_dtype
    from inference.checkpoint import open_checkpoint
    from inference.generation import GenerationRequest
    from inference.pixels import display_image
    from inference.prompts import PromptEncoder
    from inference.vision_input import prepare_model_image

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory(prefix="gazex-bench-") as scratch:
        if args.shape is not None or args.checkpoint == "tiny":
            path = build_checkpoint(args, Path(scratch) / "checkpoint", device)
        else:
            path = Path(args.checkpoint)
        checkpoint = open_checkpoint(path)
        model = load_qwen2_vl(checkpoint.path, device, resolve_dtype(args.dtype, device))
    dataset = pydicom.dcmread(args.image or str(get_testdata_file("RG1_UNCR.dcm")))
    image = prepare_model_image(
        display_image(dataset).pixels, checkpoint.processing, checkpoint.gazex.coordinates
    ).encoded
    prompts = PromptEncoder(checkpoint.tokenizer, checkpoint.gazex.prompts.examine, checkpoint.gazex.prompts.attention)

    def request(batch: int) -> GenerationRequest:
        texts = tuple(prompts.attention(s, image.image_tokens) for s in SENTENCES[:batch])
        return GenerationRequest(image, texts, args.steps, args.steps)

    on_cuda = device.type == "cuda"
    text = model.config.text_config
    print(
        f"Decoding step: {checkpoint.gazex.name}, decoder {text.num_hidden_layers} x {text.hidden_size}, "
        f"vocabulary {text.vocab_size}, {device} {next(model.parameters()).dtype}, {image.image_tokens} image "
        f"tokens; attention prompts; {args.steps} steps, median of {args.repeats}; {machine_line()}"
    )
    print(f"torch {torch.__version__}", end="")
    if on_cuda:
        print(
            f", {torch.cuda.get_device_name(device)}, cuDNN {torch.backends.cudnn.version()}, "
            f"cuDNN SDPA enabled: {torch.backends.cuda.cudnn_sdp_enabled()}",
            end="",
        )
    print()
    rows: list[list[object]] = []
    modes: list[tuple[str, Any]] = [
        ("before: 2-D mask, growing cache", lambda b: before_steps(model, checkpoint.tokens, request(b), args.steps))
    ]
    if on_cuda:
        modes.append(
            (
                "before, cuDNN attention off",
                lambda b: before_steps(model, checkpoint.tokens, request(b), args.steps, cudnn=False),
            )
        )
    eager = TorchBackend(model, checkpoint.tokens, cuda_graphs=False)
    graphs = TorchBackend(model, checkpoint.tokens, cuda_graphs=True) if on_cuda else None
    for label, backend in [("ours, eager", eager), *([("ours, CUDA graphs", graphs)] if graphs else [])]:
        modes.append((label, lambda b, backend=backend: our_steps(backend, request(b), 8, args.steps, args.repeats)))
    for label, measure in modes:
        cells: list[object] = [label]
        for batch in args.batch_sizes:
            try:
                cells.append(measure(batch))
            except (RuntimeError, ValueError) as exc:  # a report of what failed; the other cells still run
                print(f"{label}, batch {batch}: failed: {type(exc).__name__}: {exc}")
                cells.append("failed")
        rows.append(cells)
        print(f"  {label}: " + ", ".join(str(c) for c in cells[1:]), flush=True)
    if graphs is not None and not graphs.cuda_graphs:
        rows[-1][0] = "ours, CUDA graphs (capture FAILED: ran uncaptured, see the warning)"
    print()
    print(format_table(["ms per decoding step", *(f"batch {b}" for b in args.batch_sizes)], rows))
    if graphs is not None:
        compare_graphs(model, checkpoint.tokens, request(max(args.batch_sizes)))
    if args.profile:
        print_profile(model, checkpoint.tokens, request(max(args.batch_sizes)), on_cuda)
    return 0


if __name__ == "__main__":
    sys.exit(main())
