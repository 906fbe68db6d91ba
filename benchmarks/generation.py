"""GazeX generation: one HF ``generate`` per prompt (naive) against our shared-prefix batch, per image.

For each number of report sentences (default 1, 4 and 8) it measures the generation time of
one image through both stages, with both backends on the same weights in the same run:

- **naive** (``hf-generate``): one Hugging Face ``generate`` per prompt, the image encoded
  again for every prompt, as a straightforward port of GazeX's inference would do;
- **ours** (``torch``): the image encoded once, the attention prompts' common prefix run once
  and its key/value cache shared by one batch of all the sentences.

A random checkpoint writes no sensible report, so the work is fixed: the examine stage
generates exactly ``--tokens-per-sentence`` x sentences tokens (a report of that many
sentences), the attention stage gets fixed sentences and generates exactly
``--attention-tokens`` tokens each (the end token is suppressed until then, identically in
both backends).  The greedy outputs of the two are compared token by token.  Each
repetition uses a fresh backend, so no encoding is reused between repetitions.

In bfloat16 the two ways round differently (one full prefill against a shared prefix plus
a batch), and a random model's next-token scores are nearly flat, so a rounding difference
can flip a greedy choice; then the last column shows fewer identical outputs.  The run
therefore ends with the same comparison in float32 on the same weights, which must match.

    python -m benchmarks.generation                                   # tiny checkpoint, CPU
    python -m benchmarks.generation --shape qwen2-vl-2b --device cuda --dtype bfloat16
    python -m benchmarks.generation --shape qwen2-vl-2b --layers 2 --vision-depth 2 --vocab 4096  # CPU smoke
    python -m benchmarks.generation --checkpoint PATH                 # any GazeX checkpoint
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks._table import format_table, machine_line, median

SENTENCES = (
    "The heart size is normal.",
    "No pleural effusion or pneumothorax.",
    "A calcified granuloma is present in the left lung apex.",
    "Possible small left lower lobe consolidation.",
    "The mediastinum is not widened.",
    "Bibasilar atelectasis.",
    "Endotracheal tube terminates 4 cm above the carina.",
    "No acute osseous abnormality.",
)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every generation benchmark shares: which checkpoint, on which device, in which dtype."""
    parser.add_argument("--checkpoint", default="tiny", help="'tiny' (built now) or a GazeX checkpoint directory")
    parser.add_argument("--shape", choices=["tiny", "qwen2-vl-2b"], default=None, help="build a random checkpoint")
    parser.add_argument("--layers", type=int, default=None, help="override the decoder layer count of --shape")
    parser.add_argument("--vision-depth", type=int, default=None, help="override the vision tower depth of --shape")
    parser.add_argument("--vocab", type=int, default=None, help="override the embedding rows of --shape")
    parser.add_argument("--max-pixels", type=int, default=None, help="image pixel budget of a built checkpoint")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--dtype", default="auto", help="auto (bfloat16 on CUDA, float32 on CPU), float32, bfloat16")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument("--sentences", default="1,4,8", help="comma-separated sentence counts (at most 8)")
    parser.add_argument("--tokens-per-sentence", type=int, default=24, help="examine tokens per report sentence")
    parser.add_argument("--attention-tokens", type=int, default=192, help="tokens per attention answer")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions per row (median reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--image", default=None, help="a DICOM image (default: the NEMA chest CR from pydicom-data)")
    parser.add_argument(
        "--check-tokens",
        type=int,
        default=64,
        help="when timing in a 16-bit dtype: attention tokens of the extra float32 equality check (0: skip it)",
    )
    args = parser.parse_args(argv)
    args.sentence_counts = [int(n) for n in args.sentences.split(",")]
    if not all(1 <= n <= len(SENTENCES) for n in args.sentence_counts):
        parser.error(f"--sentences must be between 1 and {len(SENTENCES)}")
    return args


def build_checkpoint(args: argparse.Namespace, directory: Path, device: Any) -> Path:
    """A random checkpoint of the requested shape, written to ``directory``."""
    from inference.config import ImageSettings
    from inference.testing import SHAPES, TinyCheckpointOptions, make_tiny_checkpoint

    shape_name = args.shape or "tiny"
    shape = SHAPES[shape_name]
    overrides: dict[str, Any] = {}
    if args.layers is not None:
        overrides["num_hidden_layers"] = args.layers
    if args.vision_depth is not None:
        overrides["vision_depth"] = args.vision_depth
    if args.vocab is not None:
        overrides["model_vocab_size"] = args.vocab
    shape = dataclasses.replace(shape, **overrides)
    default_pixels = 112 * 112 if shape_name == "tiny" else 768 * 768  # GazeX infers with 768 x 768 at most
    pixels = ImageSettings(min_pixels=56 * 56, max_pixels=args.max_pixels or default_pixels)
    options = TinyCheckpointOptions(name=f"random-{shape_name}", image=pixels)
    dtype = "bfloat16" if args.dtype in ("auto", "bfloat16") and device.type == "cuda" else "float32"
    if args.dtype in ("float32", "bfloat16", "float16"):
        dtype = args.dtype
    return make_tiny_checkpoint(directory, shape=shape, options=options, dtype=dtype, device=str(device))


def synchronize(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_image(backend: Any, requests: list[Any], device: Any) -> tuple[float, float, list[Any]]:
    """Both stages of one image: (examine seconds, attention seconds, generations)."""
    synchronize(device)
    started = time.perf_counter()
    (examine,) = backend.generate(requests[:1])
    synchronize(device)
    middle = time.perf_counter()
    (attention,) = backend.generate(requests[1:])
    synchronize(device)
    return middle - started, time.perf_counter() - middle, [*examine, *attention]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    import pydicom
    import torch
    from pydicom.data import get_testdata_file

    from inference.backends.torch_backend import (
        HFGenerateBackend,
        TorchBackend,
        load_qwen2_vl,
        resolve_device,
        resolve_dtype,
    )
    from inference.checkpoint import open_checkpoint
    from inference.generation import GenerationRequest
    from inference.pixels import display_image
    from inference.prompts import PromptEncoder
    from inference.vision_input import prepare_model_image

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory(prefix="gazex-bench-") as scratch:
        started = time.perf_counter()
        if args.shape is not None or args.checkpoint == "tiny":
            path = build_checkpoint(args, Path(scratch) / "checkpoint", device)
        else:
            path = Path(args.checkpoint)
        checkpoint = open_checkpoint(path)
        model = load_qwen2_vl(checkpoint.path, device, resolve_dtype(args.dtype, device))
        setup_seconds = time.perf_counter() - started

    dataset = pydicom.dcmread(args.image or str(get_testdata_file("RG1_UNCR.dcm")))
    image = prepare_model_image(
        display_image(dataset).pixels, checkpoint.processing, checkpoint.gazex.coordinates
    ).encoded
    prompts = PromptEncoder(checkpoint.tokenizer, checkpoint.gazex.prompts.examine, checkpoint.gazex.prompts.attention)
    tokens = image.image_tokens

    def requests(count: int, examine_tokens: int, attention_tokens: int) -> list[GenerationRequest]:
        return [
            GenerationRequest(image, (prompts.examine(tokens),), examine_tokens, examine_tokens),
            GenerationRequest(
                image,
                tuple(prompts.attention(s, tokens) for s in SENTENCES[:count]),
                attention_tokens,
                attention_tokens,
            ),
        ]

    def naive() -> Any:
        return HFGenerateBackend(model, checkpoint.tokens)

    def ours() -> Any:
        return TorchBackend(model, checkpoint.tokens)

    for make in (naive, ours):  # warm-up: kernels, allocator, lazy initialisation
        run_image(make(), requests(2, 4, 4), device)

    parameters = sum(p.numel() for p in model.parameters())
    text = model.config.text_config
    vision = model.config.vision_config
    print(
        f"GazeX generation benchmark: {checkpoint.gazex.name}, {parameters / 1e6:.1f} M parameters "
        f"(decoder {text.num_hidden_layers} x {text.hidden_size}, vision {vision.depth} x {vision.embed_dim}, "
        f"vocabulary {text.vocab_size}), {device} {next(model.parameters()).dtype}, "
        f"{tokens} image tokens, built and loaded in {setup_seconds:.1f} s"
    )
    print(
        f"Fixed work per image: examine {args.tokens_per_sentence} tokens x sentences, attention "
        f"{args.attention_tokens} tokens per sentence; median of {args.repeats}; {machine_line()}"
    )
    rows = []
    all_identical = True
    for count in args.sentence_counts:
        work = requests(count, args.tokens_per_sentence * count, args.attention_tokens)
        timings: dict[str, list[tuple[float, float]]] = {"naive": [], "ours": []}
        outputs: dict[str, list[Any]] = {}
        for _ in range(args.repeats):
            for name, make in (("naive", naive), ("ours", ours)):
                examine_s, attention_s, generations = run_image(make(), work, device)
                timings[name].append((examine_s, attention_s))
                outputs[name] = generations
        identical = sum(a == b for a, b in zip(outputs["naive"], outputs["ours"], strict=True))
        all_identical &= identical == len(outputs["ours"])
        naive_total = median([e + a for e, a in timings["naive"]])
        ours_total = median([e + a for e, a in timings["ours"]])
        naive_attention = median([a for _, a in timings["naive"]])
        ours_attention = median([a for _, a in timings["ours"]])
        rows.append(
            [
                count,
                args.tokens_per_sentence * count + args.attention_tokens * count,
                naive_total,
                ours_total,
                f"{naive_total / ours_total:.2f}x",
                f"{naive_attention / ours_attention:.2f}x",
                f"{identical}/{len(outputs['ours'])}",
            ]
        )
    if device.type == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB")
    check = ""
    if next(model.parameters()).dtype != torch.float32 and args.check_tokens > 0:
        count = max(args.sentence_counts)
        model.float()  # the timings are done; the same weights in float32
        work = requests(count, 8 * count, args.check_tokens)
        _, _, reference = run_image(naive(), work, device)
        _, _, candidate = run_image(ours(), work, device)
        matched = sum(a == b for a, b in zip(reference, candidate, strict=True))
        all_identical = matched == len(reference)
        check = (
            f"float32 check on the same weights ({count} sentences, {args.check_tokens} tokens per answer): "
            f"{matched}/{len(reference)} greedy outputs identical"
        )
    print()
    print(
        format_table(
            [
                "sentences",
                "new tokens / image",
                "naive: HF generate per prompt (s / image)",
                "ours: shared prefix, one batch (s / image)",
                "speedup",
                "attention-stage speedup",
                "identical greedy outputs",
            ],
            rows,
        )
    )
    if check:
        print()
        print(check)
    if not all_identical:
        print("\nWARNING: greedy outputs differ between the two ways")
    return 0 if all_identical else 1


if __name__ == "__main__":
    sys.exit(main())
