"""``gazex model train`` and ``gazex model eval``: train a GazeX checkpoint, and measure one.

- ``gazex model train RECORDS --out DIR (--base PATH|builtin:NAME | --from-scratch) [options]``
  fine-tunes a Qwen2-VL checkpoint on GazeX records (optionally with LoRA), or trains a new
  one of the given shape; a progress bar shows the loss; ``--work-dir`` receives the periodic
  training state that ``--resume`` continues from.
- ``gazex model eval --model PATH|builtin:NAME --count N --seed S [--json OUT]`` analyses N
  held-out phantoms (made with seed S, written as DICOM) with the real runtime and prints
  per-label precision/recall/F1, macro F1, observation IoU, trajectory alignment and time per
  image.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from pathlib import Path
from typing import Any

from gateway.cli import CommandError
from inference import (
    REPORT_STYLES,
    CheckpointError,
    CheckpointShape,
    EvaluationError,
    EvaluationResult,
    EvaluationSettings,
    GenerationSettings,
    ImageSettings,
    InferenceError,
    LoraSettings,
    PhantomConfig,
    Progress,
    TrainingDataError,
    TrainingError,
    TrainingSettings,
    parse_frame,
    train,
)
from inference import (
    evaluate_checkpoint as run_evaluation,
)

DEFAULT_SHAPE = CheckpointShape(
    hidden_size=256,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=768,
    vision_depth=4,
    vision_embed_dim=128,
    vision_num_heads=2,
    vision_mlp_ratio=4,
    tokenizer_vocab_size=768,
    rope_theta=10000.0,
)


def register_train(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "train",
        help="train a GazeX checkpoint on GazeX records: fine-tune a Qwen2-VL checkpoint, or train one from scratch",
        description="Train on RECORDS (from gazex model convert) and write a complete GazeX checkpoint to --out. "
        "Start from --base (a GazeX or plain Qwen2-VL checkpoint directory, or builtin:NAME) or --from-scratch "
        "(a new Qwen2-VL of the shape below, with a tokenizer learnt from the records).",
    )
    parser.add_argument("records", type=Path, metavar="RECORDS", help="records file (records.json)")
    parser.add_argument("--out", type=Path, required=True, help="checkpoint directory to write")
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="where the training state is saved for --resume (default: OUT.training beside --out)",
    )
    start = parser.add_mutually_exclusive_group(required=True)
    start.add_argument("--base", metavar="PATH|builtin:NAME", help="checkpoint to fine-tune")
    start.add_argument("--from-scratch", action="store_true", help="train a new model of the shape below")
    parser.add_argument("--resume", action="store_true", help="continue the run saved in --work-dir")
    _shape_arguments(parser)
    _config_arguments(parser)
    _optimisation_arguments(parser)
    _run_arguments(parser)
    parser.set_defaults(handler=run_train)


def _shape_arguments(parser: argparse.ArgumentParser) -> None:
    shape = parser.add_argument_group("shape (with --from-scratch)")
    d = DEFAULT_SHAPE
    shape.add_argument("--hidden-size", type=int, default=d.hidden_size, help=f"default {d.hidden_size}")
    shape.add_argument("--layers", type=int, default=d.num_hidden_layers, help=f"default {d.num_hidden_layers}")
    shape.add_argument("--heads", type=int, default=d.num_attention_heads, help=f"default {d.num_attention_heads}")
    shape.add_argument("--kv-heads", type=int, default=d.num_key_value_heads, help=f"default {d.num_key_value_heads}")
    shape.add_argument(
        "--intermediate-size", type=int, default=d.intermediate_size, help=f"default {d.intermediate_size}"
    )
    shape.add_argument("--vision-depth", type=int, default=d.vision_depth, help=f"default {d.vision_depth}")
    shape.add_argument("--vision-dim", type=int, default=d.vision_embed_dim, help=f"default {d.vision_embed_dim}")
    shape.add_argument("--vision-heads", type=int, default=d.vision_num_heads, help=f"default {d.vision_num_heads}")
    shape.add_argument(
        "--vocab-size",
        type=int,
        default=d.tokenizer_vocab_size,
        help=f"tokenizer size (default {d.tokenizer_vocab_size})",
    )
    shape.add_argument("--rope-theta", type=float, default=d.rope_theta, help=f"default {d.rope_theta:g}")


def _config_arguments(parser: argparse.ArgumentParser) -> None:
    config = parser.add_argument_group("gazex.json of the result")
    config.add_argument(
        "--coordinates",
        default=None,
        help="the records' coordinate frame, when they have no .meta.json (e.g. downscaled:4)",
    )
    config.add_argument("--min-pixels", type=int, default=None, help="image.min_pixels (default: base's, or 3136)")
    config.add_argument(
        "--max-pixels", type=int, default=None, help="image.max_pixels (default: base's, or 224x224 from scratch)"
    )
    config.add_argument("--max-new-tokens-examine", type=int, default=512, help="default 512")
    config.add_argument("--max-new-tokens-attention", type=int, default=256, help="default 256")
    config.add_argument("--name", default="gazex-trained", help="checkpoint name (default gazex-trained)")
    config.add_argument("--version", dest="model_version", default="0.1.0", help="checkpoint version (default 0.1.0)")
    config.add_argument("--description", default="", help="free text for gazex.json")


def _optimisation_arguments(parser: argparse.ArgumentParser) -> None:
    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--steps", type=int, default=1000, help="optimiser steps (default 1000)")
    optim.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (default 1e-3)")
    optim.add_argument("--min-lr-ratio", type=float, default=0.1, help="final / peak learning rate (default 0.1)")
    optim.add_argument("--warmup", type=int, default=100, help="warm-up steps (default 100)")
    optim.add_argument("--weight-decay", type=float, default=0.01, help="default 0.01")
    optim.add_argument("--gradient-accumulation", type=int, default=1, help="images per optimiser step (default 1)")
    optim.add_argument(
        "--attention-rows",
        type=int,
        default=None,
        help="attention records per image visit: those reporting a finding first, the rest at random (default: all)",
    )
    optim.add_argument(
        "--coordinate-weight", type=float, default=1.0, help="loss weight of the coordinates' digits (default 1)"
    )
    optim.add_argument(
        "--examine-weight", type=float, default=1.0, help="loss weight of the examine answers' tokens (default 1)"
    )
    optim.add_argument(
        "--decision-weight",
        type=float,
        default=1.0,
        help="times the examine weight, for the first token of each examine sentence (default 1)",
    )
    optim.add_argument(
        "--positive-weight",
        type=float,
        default=1.0,
        help="further times that, where the sentence states a finding as present (default 1)",
    )
    optim.add_argument(
        "--side-weight",
        type=float,
        default=1.0,
        help="further times the examine weight, for the token of each word that names a side: right, left, "
        "bilateral (default 1)",
    )
    optim.add_argument(
        "--observation-weight",
        type=float,
        default=None,
        help="loss weight of the observation region's digits (default: the coordinate weight)",
    )
    optim.add_argument("--freeze-vision", action="store_true", help="do not train the vision tower")
    optim.add_argument(
        "--vision-steps",
        type=int,
        default=0,
        help="first train the vision tower alone for N of the --steps, on dense grounding targets from the "
        "attention records' regions (default 0)",
    )
    optim.add_argument("--vision-batch", type=int, default=16, help="images per vision-phase step (default 16)")
    optim.add_argument(
        "--grounding-weight",
        type=float,
        default=0.0,
        help="weight of the grounding loss beside the language loss after the vision phase (default 0)",
    )
    optim.add_argument(
        "--grounding-sides",
        action="store_true",
        help="split the grounding and presence labels by the side the sentence names (pleural_effusion:right, "
        ":left, :bilateral), so the image tokens and the language model's state say the side; both losses are "
        "scaled so that each label weighs what one finding kind weighs unsplit",
    )
    optim.add_argument(
        "--presence-weight",
        type=float,
        default=0.0,
        help="weight of a loss that reads the image's findings from the language model's state at every "
        "examine answer position (default 0)",
    )
    optim.add_argument(
        "--position-weight",
        type=float,
        default=0.0,
        help="weight of a loss that reads each image token's row and column from the language model's state "
        "after --position-layer layers, so the image tokens carry where they are (default 0)",
    )
    optim.add_argument(
        "--position-layer",
        type=int,
        default=1,
        help="the language-model layer whose output the position loss reads (default 1; 0: its input)",
    )
    optim.add_argument(
        "--gaze-weight",
        type=float,
        default=0.0,
        help="weight of gaze-supervised attention: while writing a sentence, --gaze-heads heads of every "
        "language-model layer but the first attend over the image where the reader looked while dictating it "
        "(its visual clues and observation region; default 0)",
    )
    optim.add_argument(
        "--gaze-heads", type=int, default=1, help="heads per layer that --gaze-weight supervises (default 1)"
    )
    optim.add_argument(
        "--gaze-tasks",
        default="examine",
        help="comma-separated answers --gaze-weight supervises: examine (each sentence's tokens), attention "
        "(the whole answer about its sentence) (default examine)",
    )
    optim.add_argument("--lora", action="store_true", help="train LoRA adapters (needs peft) instead of all weights")
    optim.add_argument("--lora-rank", type=int, default=16, help="default 16")
    optim.add_argument("--lora-alpha", type=float, default=32.0, help="default 32")
    optim.add_argument("--lora-dropout", type=float, default=0.05, help="default 0.05")


def _run_arguments(parser: argparse.ArgumentParser) -> None:
    run = parser.add_argument_group("run")
    run.add_argument("--seed", type=int, default=0, help="default 0")
    run.add_argument("--save-every", type=int, default=100, help="save the training state every N steps (default 100)")
    run.add_argument("--log-every", type=int, default=25, help="record the loss every N steps (default 25)")
    run.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    run.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    run.add_argument(
        "--save-dtype", choices=("float32", "bfloat16", "float16"), default="float32", help="weights' dtype"
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")


def settings_from_args(args: argparse.Namespace) -> TrainingSettings:
    shape = None
    if args.from_scratch:
        shape = CheckpointShape(
            hidden_size=args.hidden_size,
            num_hidden_layers=args.layers,
            num_attention_heads=args.heads,
            num_key_value_heads=args.kv_heads,
            intermediate_size=args.intermediate_size,
            vision_depth=args.vision_depth,
            vision_embed_dim=args.vision_dim,
            vision_num_heads=args.vision_heads,
            vision_mlp_ratio=4,
            tokenizer_vocab_size=args.vocab_size,
            rope_theta=args.rope_theta,
        )
    try:
        frame = parse_frame(args.coordinates) if args.coordinates else None
    except ValueError as exc:
        raise CommandError(f"--coordinates: {exc}") from exc
    image = None
    if args.min_pixels is not None or args.max_pixels is not None:
        image = ImageSettings(
            min_pixels=args.min_pixels or 56 * 56,
            max_pixels=args.max_pixels or 224 * 224,
        )
    try:
        return TrainingSettings(
            records=args.records,
            out=args.out,
            work_dir=args.work_dir or args.out.with_name(args.out.name + ".training"),
            base=args.base,
            shape=shape,
            vocab_size=args.vocab_size,
            coordinates=frame,
            image=image,
            generation=GenerationSettings(args.max_new_tokens_examine, args.max_new_tokens_attention),
            steps=args.steps,
            learning_rate=args.lr,
            min_learning_rate_ratio=args.min_lr_ratio,
            warmup_steps=args.warmup,
            weight_decay=args.weight_decay,
            gradient_accumulation=args.gradient_accumulation,
            attention_rows=args.attention_rows,
            coordinate_weight=args.coordinate_weight,
            examine_weight=args.examine_weight,
            decision_weight=args.decision_weight,
            positive_weight=args.positive_weight,
            observation_weight=args.observation_weight,
            side_weight=args.side_weight,
            freeze_vision=args.freeze_vision,
            vision_steps=args.vision_steps,
            vision_batch=args.vision_batch,
            grounding_weight=args.grounding_weight,
            grounding_sides=args.grounding_sides,
            presence_weight=args.presence_weight,
            position_weight=args.position_weight,
            position_layer=args.position_layer,
            gaze_weight=args.gaze_weight,
            gaze_heads=args.gaze_heads,
            gaze_tasks=tuple(task.strip() for task in args.gaze_tasks.split(",") if task.strip()),
            lora=LoraSettings(args.lora_rank, args.lora_alpha, args.lora_dropout) if args.lora else None,
            seed=args.seed,
            save_every=args.save_every,
            log_every=args.log_every,
            threads=args.threads,
            device=args.device,
            save_dtype=args.save_dtype,
            name=args.name,
            version=args.model_version,
            description=args.description,
        )
    except ValueError as exc:
        raise CommandError(f"invalid training options: {exc}") from exc


def run_train(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    if args.out.resolve() == settings.work_dir.resolve() or settings.work_dir.resolve().is_relative_to(
        args.out.resolve()
    ):
        raise CommandError("--work-dir must not be --out or inside it: the checkpoint gets only the final weights")
    bar: Any = None

    def progress(report: Progress) -> None:
        nonlocal bar
        if bar is None and not args.no_progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=settings.steps, initial=report.step - 1, unit="step", dynamic_ncols=True, file=sys.stderr)
        if bar is not None:
            bar.n = report.step
            bar.set_postfix(
                phase=report.phase,
                loss=f"{report.loss:.3f}",
                examine=f"{report.examine_loss:.3f}",
                attention=f"{report.attention_loss:.3f}",
                grounding=f"{report.grounding_loss:.3f}",
                presence=f"{report.presence_loss:.3f}",
                gaze=f"{report.gaze_loss:.3f}",
                position=f"{report.position_loss:.3f}",
                lr=f"{report.learning_rate:.1e}",
                refresh=False,
            )
            bar.refresh()
        if report.step % settings.log_every == 0 or report.step == report.steps:
            grounding = "" if math.isnan(report.grounding_loss) else f", grounding {report.grounding_loss:.4f}"
            if not math.isnan(report.presence_loss):
                grounding += f", presence {report.presence_loss:.4f}"
            if not math.isnan(report.gaze_loss):
                grounding += f", gaze {report.gaze_loss:.4f}"
            if not math.isnan(report.position_loss):
                grounding += f", position {report.position_loss:.4f}"
            print(
                f"step {report.step}/{report.steps} ({report.phase}): loss {report.loss:.4f} "
                f"(examine {report.examine_loss:.4f}, attention {report.attention_loss:.4f}{grounding}), "
                f"lr {report.learning_rate:.2e}, images {report.images}, {report.seconds:.0f} s",
                flush=True,
            )

    command = ["gazex", *args.argv]
    try:
        metadata = train(settings, resume=args.resume, progress=progress, command=command)
    except (TrainingError, TrainingDataError, CheckpointError) as exc:
        raise CommandError(str(exc)) from exc
    except InferenceError as exc:
        raise CommandError(f"training failed: {exc}") from exc
    except OSError as exc:
        raise CommandError(f"cannot read or write the training files: {exc}") from exc
    finally:
        if bar is not None:
            bar.close()
    metrics = metadata["metrics"]
    print(
        f"wrote {args.out}: {metrics['steps']} steps, {metrics['images_seen']} images "
        f"({metrics['epochs']} epochs), final loss {metrics['final_loss']}, {metrics['wall_seconds']:.0f} s wall"
    )
    print(f"  command: {shlex.join(command)}")
    return 0


# -- eval ---------------------------------------------------------------------------------------


def register_eval(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "eval",
        help="measure a checkpoint on held-out phantoms (findings F1, observation IoU, trajectory, time)",
        description="Generate COUNT phantoms with SEED (held out: not the training seed), write each as DICOM, "
        "analyse it with the runtime (load_engine(...).analyze) and compare with the ground truth.",
    )
    parser.add_argument("--model", required=True, metavar="PATH|builtin:NAME", help="the checkpoint to measure")
    parser.add_argument("--count", type=int, required=True, help="number of held-out phantoms")
    parser.add_argument("--seed", type=int, required=True, help="phantom seed (must differ from the training seed)")
    parser.add_argument("--start", type=int, default=0, help="index of the first phantom (default 0)")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT", help="also write the results as JSON")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    parser.add_argument("--backend", default="torch", help="generation backend (default torch)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument(
        "--truth-sentences",
        action="store_true",
        help="skip the examine stage: give the attention stage the phantoms' own report sentences "
        "(localisation apart from detection)",
    )
    parser.add_argument(
        "--report-style",
        choices=REPORT_STYLES,
        default=None,
        help="wording of the held-out phantoms' reports, the truth the findings are scored against "
        "(default: as the checkpoint's training phantoms, from its gazex.json; else varied)",
    )
    parser.set_defaults(handler=run_eval)


def _number(value: float, digits: int = 3) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def _percent(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.0f} %" if whole else "-"


def format_evaluation(result: EvaluationResult) -> str:
    """The evaluation as a Markdown table and a summary."""
    headers = ["label", "trained", "support", "predicted", "precision", "recall", "F1", "obs. IoU", "IoU pairs", "side"]
    rows = [
        [
            label.label,
            "yes" if label.trained else "no",
            str(label.support),
            str(label.predicted),
            _number(label.precision),
            _number(label.recall),
            _number(label.f1),
            _number(label.iou),
            str(label.iou_pairs),
            f"{label.side_agree}/{label.side_pairs}" if label.side_pairs else "-",
        ]
        for label in result.labels
    ]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    trajectory = result.trajectory
    stages = "attention stage on the true sentences" if result.settings.get("truth_sentences") else "both stages"
    lines = [
        f"{result.model['name']} {result.model['version']} on {result.images} held-out phantoms "
        f"(seed {result.settings['seed']}, from index {result.settings['start']}), {stages}, "
        f"{result.settings['device']}, {result.settings['threads']} threads",
        "",
        line(headers),
        "| " + " | ".join("-" * w for w in widths) + " |",
        *(line(r) for r in rows),
        "",
        f"macro F1 over {len(result.macro_labels)} trained labels: {_number(result.macro_f1)}",
        f"mean observation IoU: {_number(result.observation_iou)} "
        f"({result.observation_pairs} matched of {result.observation_total} present findings with a box)",
        f"laterality: {result.side_agree} of {result.side_pairs} matched findings whose true sentence names "
        f"a side are reported on that side ({_percent(result.side_agree, result.side_pairs)})",
        f"trajectory alignment: cosine {_number(float(trajectory['cosine']))} "
        f"(x {_number(float(trajectory['cosine_x']))}, y {_number(float(trajectory['cosine_y']))}, "
        f"centred {_number(float(trajectory['cosine_centered']))}), mean distance "
        f"{_number(float(trajectory['mean_distance_pixels']), 1)} px over {trajectory['pairs']} sentences",
        f"time per image: {result.seconds_per_image:.2f} s wall (p95 {result.seconds_p95:.2f} s), "
        f"{result.cpu_seconds_per_image:.2f} s CPU",
        f"dropped regions: {result.dropped_regions}; images without a report sentence: "
        f"{result.images_without_sentences}",
    ]
    return "\n".join(lines)


def run_eval(args: argparse.Namespace) -> int:
    try:
        settings = EvaluationSettings(
            model=args.model,
            count=args.count,
            seed=args.seed,
            start=args.start,
            backend=args.backend,
            device=args.device,
            threads=args.threads,
            truth_sentences=args.truth_sentences,
            phantoms=None if args.report_style is None else PhantomConfig(report_style=args.report_style),
        )
    except ValueError as exc:
        raise CommandError(f"invalid evaluation options: {exc}") from exc
    try:
        result = run_evaluation(settings)
    except (CheckpointError, EvaluationError) as exc:
        raise CommandError(str(exc)) from exc
    except InferenceError as exc:
        raise CommandError(f"evaluation failed: {exc}") from exc
    print(format_evaluation(result))
    if args.json is not None:
        try:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result.to_json(), indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"cannot write {args.json}: {exc}") from exc
        print(f"results written to {args.json}")
    return 0
