"""``gazex model``: the model's data (phantoms, training records), training and evaluation.

The runtime artefacts (``export-onnx``, ``build-engine``, ``triton-repo``) live in
:mod:`gateway.cli.model_engines`.

- ``gazex model phantoms --out DIR --count N --seed S [--format dicom|reflacx|both]``
  writes synthetic chest phantoms as DICOM and/or a REFLACX-format data set, with a
  ground-truth ``manifest.json``.
- ``gazex model convert REFLACX_DIR --out records.json --coordinates downscaled:4`` turns a
  REFLACX-format data set (real or phantom) into GazeX training records.
- ``gazex model train RECORDS --out DIR (--base PATH | --from-scratch) ...`` trains a checkpoint
  (:mod:`gateway.cli.model_train`).
- ``gazex model eval --model PATH|builtin:NAME --count N --seed S`` measures a checkpoint on
  held-out phantoms (:mod:`gateway.cli.model_train`).
- ``gazex model import DIR [--preset gazex-upstream] [--out DIR]`` writes ``gazex.json`` for a
  Hugging Face Qwen2-VL checkpoint trained elsewhere (:mod:`inference.importing`);
  ``gazex model check DIR [--image FILE.dcm]`` runs one image through both stages.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from gateway.cli import CommandError, model_engines
from gateway.cli.model_train import register_eval, register_train
from inference import (
    FINDING_KINDS,
    GAZEX_PROMPTS,
    REPORT_STYLES,
    AttentionSettings,
    ConversionSettings,
    PhantomConfig,
    Prompts,
    ReflacxFormatError,
    convert_reflacx,
    parse_frame,
    write_phantom_dataset,
)

FORMAT_CHOICES = {"dicom": ("dicom",), "reflacx": ("reflacx",), "both": ("dicom", "reflacx")}


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "model", help="GazeX models: synthetic phantoms, training records, training and evaluation"
    )
    parser.set_defaults(handler=lambda args: _usage(parser))
    commands = parser.add_subparsers(dest="model_command", metavar="SUBCOMMAND")

    phantoms = commands.add_parser(
        "phantoms",
        help="write synthetic chest-radiograph phantoms (DICOM and/or REFLACX format) with ground truth",
        description="Write COUNT synthetic chest phantoms made from SEED: DICOM files (CR/DX, MONOCHROME1/2), "
        "a REFLACX-format data set (fixations, dictation, ellipses) and manifest.json with the ground truth.",
    )
    phantoms.add_argument("--out", type=Path, required=True, help="output folder (new or empty)")
    phantoms.add_argument("--count", type=int, required=True, help="number of phantoms")
    phantoms.add_argument(
        "--seed", type=int, default=0, help="data-set seed (default 0); use another for held-out sets"
    )
    phantoms.add_argument(
        "--format", choices=sorted(FORMAT_CHOICES), default="both", help="what to write (default both)"
    )
    phantoms.add_argument(
        "--image-size",
        type=int,
        default=None,
        metavar="PIXELS",
        help="longer side of the REFLACX images (default: native, about 2000-2500); DICOM is always native",
    )
    phantoms.add_argument("--split", default="train", help="value of REFLACX's split column (default train)")
    phantoms.add_argument(
        "--only", nargs="*", choices=FINDING_KINDS, metavar="KIND", help="phantoms with exactly these findings"
    )
    phantoms.add_argument(
        "--report-style",
        choices=REPORT_STYLES,
        default="varied",
        help="how reports are worded: varied (free text, several wordings; default) or structured "
        "(a template stating every checklist item in one wording; what the demo model is trained on)",
    )
    phantoms.add_argument(
        "--previews", action="store_true", help="also write previews/<id>.png with boxes and scanpath"
    )
    phantoms.set_defaults(handler=run_phantoms)

    convert = commands.add_parser(
        "convert",
        help="convert a REFLACX-format data set into GazeX training records (LLaMA-Factory sharegpt JSON)",
        description="Convert REFLACX_DIR (the folder holding main_data/) into records.json plus image_jpg/ beside it.",
    )
    convert.add_argument("reflacx_dir", type=Path, metavar="REFLACX_DIR")
    convert.add_argument("--out", type=Path, required=True, help="records file to write (e.g. records.json)")
    convert.add_argument(
        "--coordinates",
        default="downscaled:4",
        help="coordinate frame of the boxes: downscaled:FACTOR[@WIDTHxHEIGHT] (GazeX: downscaled:4, or with "
        "MIMIC-CXR's reference size downscaled:4@2544x3056) or normalized:SCALE (Qwen2-VL: normalized:1000); "
        "default downscaled:4",
    )
    convert.add_argument(
        "--images-root",
        type=Path,
        default=None,
        help="folder the metadata's image paths are relative to (default REFLACX_DIR)",
    )
    convert.add_argument(
        "--image-size", type=int, default=None, metavar="PIXELS", help="longer side of the JPEGs written"
    )
    convert.add_argument(
        "--tasks", default="examine,attention", help="comma-separated tasks: examine, attention (default both)"
    )
    convert.add_argument(
        "--lead-seconds", type=float, default=2.0, help="fixations this long before a sentence count for it (default 2)"
    )
    convert.add_argument(
        "--examine-prompt",
        default=GAZEX_PROMPTS.examine,
        metavar="TEXT",
        help="the examine prompt of the checkpoint to be trained (default: GazeX's own)",
    )
    convert.add_argument(
        "--attention-prompt",
        default=GAZEX_PROMPTS.attention,
        metavar="TEXT",
        help="the attention prompt, with {sentence} once (default: GazeX's own)",
    )
    convert.set_defaults(handler=run_convert)

    register_import(commands)
    model_engines.register(commands)  # export-onnx, build-engine, triton-repo
    register_train(commands)
    register_eval(commands)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def run_phantoms(args: argparse.Namespace) -> int:
    if args.count < 1:
        raise CommandError(f"--count must be at least 1, got {args.count}")
    if args.image_size is not None and args.image_size < 64:
        raise CommandError(f"--image-size must be at least 64 pixels, got {args.image_size}")
    out: Path = args.out
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CommandError(f"{out} exists and is not an empty folder; give a new folder for --out")
    if args.only is not None:
        config = PhantomConfig.only(*args.only, report_style=args.report_style)
    else:
        config = PhantomConfig(report_style=args.report_style)
    started = time.perf_counter()
    try:
        summary = write_phantom_dataset(
            out,
            seed=args.seed,
            count=args.count,
            formats=FORMAT_CHOICES[args.format],
            config=config,
            image_max_side=args.image_size,
            split=args.split,
            previews=args.previews,
        )
    except ValueError as exc:
        raise CommandError(f"cannot make these phantoms: {exc}") from exc
    except OSError as exc:
        raise CommandError(f"cannot write under {out}: {exc}") from exc
    elapsed = time.perf_counter() - started
    print(f"wrote {summary.phantoms} phantoms (seed {args.seed}) to {out} in {elapsed:.1f} s")
    print(
        f"  DICOM files: {summary.dicom_files}; REFLACX readings: {summary.reflacx_readings}; normal: {summary.normal}"
    )
    for kind in FINDING_KINDS:
        if kind in summary.findings:
            print(f"  {kind}: {summary.findings[kind]}")
    print(f"  ground truth: {out / 'manifest.json'}")
    return 0


def run_convert(args: argparse.Namespace) -> int:
    try:
        frame = parse_frame(args.coordinates)
    except ValueError as exc:
        raise CommandError(f"--coordinates: {exc}") from exc
    tasks = tuple(task.strip() for task in args.tasks.split(",") if task.strip())
    try:
        prompts = Prompts(examine=args.examine_prompt, attention=args.attention_prompt)
    except ValueError as exc:
        raise CommandError(f"--examine-prompt/--attention-prompt: {exc}") from exc
    try:
        settings = ConversionSettings(
            frame=frame,
            attention=AttentionSettings(lead_seconds=args.lead_seconds),
            tasks=tasks,
            image_max_side=args.image_size,
            prompts=prompts,
        )
    except ValueError as exc:
        raise CommandError(f"invalid conversion options: {exc}") from exc
    if not args.reflacx_dir.is_dir():
        raise CommandError(f"{args.reflacx_dir} is not a folder; give the REFLACX folder that holds main_data/")
    started = time.perf_counter()
    try:
        summary = convert_reflacx(args.reflacx_dir, args.out, settings, images_root=args.images_root)
    except ReflacxFormatError as exc:
        raise CommandError(str(exc)) from exc
    except OSError as exc:
        raise CommandError(f"cannot read or write the data: {exc}") from exc
    elapsed = time.perf_counter() - started
    print(f"wrote {summary.examine_records + summary.attention_records} records to {args.out} in {elapsed:.1f} s")
    print(f"  description (coordinates, prompts): {args.out.with_name(args.out.stem + '.meta.json')}")
    print(f"  readings: {summary.readings} (skipped {summary.skipped_readings}); coordinates: {frame}")
    print(f"  examine records: {summary.examine_records}; attention records: {summary.attention_records}")
    print(
        f"  observations from ellipses: {summary.observations_from_ellipses}; from fixations: "
        f"{summary.attention_records - summary.observations_from_ellipses}"
    )
    if summary.sentences_without_region:
        print(f"  sentences left out (no ellipse and no fixation): {summary.sentences_without_region}")
    return 0


# -- import and check --------------------------------------------------------------------------------


def register_import(commands: Any) -> None:
    from inference import PRESETS

    importing = commands.add_parser(
        "import",
        help="write gazex.json for a Hugging Face Qwen2-VL checkpoint trained elsewhere (e.g. the real GazeX weights)",
        description="Check that DIR holds a Qwen2-VL checkpoint transformers can load (config.json, safetensors "
        "weights, tokenizer, preprocessor_config.json, chat template), then write gazex.json with the preset's "
        "settings: into DIR, or with --out into a new folder holding DIR's files (hard links where possible) and "
        "gazex.json, leaving DIR as received.",
    )
    importing.add_argument("directory", type=Path, metavar="DIR", help="the checkpoint folder as received")
    importing.add_argument(
        "--preset", choices=sorted(PRESETS), default="gazex-upstream", help="settings to write (default gazex-upstream)"
    )
    importing.add_argument("--out", type=Path, default=None, help="import into this new folder instead of DIR")
    importing.add_argument("--name", default=None, help="model name recorded in every result (default gazex)")
    importing.add_argument("--version", default=None, help="model version recorded in every result (default 1.0)")
    importing.add_argument("--manufacturer", default=None, help="manufacturer recorded in the DICOM objects")
    importing.add_argument("--force", action="store_true", help="replace an existing gazex.json in DIR")
    importing.set_defaults(handler=run_import)

    check = commands.add_parser(
        "check",
        help="run one image through both stages of a checkpoint and print the parsed output",
        description="Load the checkpoint in DIR and analyse one image: FILE.dcm, or by default the NEMA chest CR "
        "(RG1_UNCR.dcm) when pydicom-data is installed, else the bundled synthetic phantom.",
    )
    check.add_argument("directory", metavar="DIR", help="a GazeX checkpoint directory (after gazex model import)")
    check.add_argument("--image", type=Path, default=None, metavar="FILE.dcm", help="the DICOM image to analyse")
    check.add_argument("--backend", default="torch", help="generation backend (default torch)")
    check.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    check.set_defaults(handler=run_check)


def run_import(args: argparse.Namespace) -> int:
    from inference import CheckpointError, import_checkpoint

    identity = {key: getattr(args, key) for key in ("name", "version", "manufacturer") if getattr(args, key)}
    try:
        result = import_checkpoint(args.directory, preset=args.preset, out=args.out, force=args.force, **identity)
    except CheckpointError as exc:
        raise CommandError(f"cannot import: {exc}") from exc
    except OSError as exc:
        raise CommandError(f"cannot write the imported checkpoint: {exc}") from exc
    config = result.config
    print(f"wrote {result.gazex_json} (preset {args.preset})")
    if result.target != result.source:
        print(f"  files from {result.source}: {result.linked} hard-linked, {result.copied} copied")
    print(f"  model: {config.name} {config.version} ({config.manufacturer})")
    print(f"  weights: {len(result.weight_files)} file(s), sha256 {result.weights_sha256}")
    print(f"  examine prompt: {config.prompts.examine!r}")
    print(f"  attention prompt: {config.prompts.attention!r}")
    print(f"  coordinates: {config.coordinates.describe()}")
    print(
        f"  generation: examine {config.generation.max_new_tokens_examine} tokens, attention "
        f"{config.generation.max_new_tokens_attention} tokens"
    )
    image = result.document["image"]
    print("  image: " + ", ".join(f"{key} {value}" for key, value in image.items()))
    print(f"next: gazex model check {result.target}; then set model.path = {result.target} and run gazex serve")
    return 0


def _default_check_image(folder: Path) -> tuple[Path, str]:
    try:
        from pydicom.data import get_testdata_file

        found = get_testdata_file("RG1_UNCR.dcm")
    except (ImportError, OSError, ValueError):  # pydicom-data missing or unreadable: fall back to the phantom
        found = None
    if found is not None:
        return Path(str(found)), "the NEMA WG04 chest CR (RG1_UNCR.dcm, from pydicom-data)"
    from inference import PhantomConfig, write_phantom_dataset

    write_phantom_dataset(folder, seed=2024, count=1, formats=("dicom",), config=PhantomConfig.only("nodule"))
    path = next(iter(sorted(folder.rglob("*.dcm"))))
    return path, "the bundled synthetic phantom (not a patient; pydicom-data is not installed)"


def run_check(args: argparse.Namespace) -> int:
    import tempfile

    from gateway.cli.analyze import format_report, read_datasets
    from inference import InferenceError, load_engine

    with tempfile.TemporaryDirectory(prefix="gazex-check-") as scratch:
        if args.image is not None:
            path, what = args.image, str(args.image)
        else:
            path, what = _default_check_image(Path(scratch))
        studies = read_datasets([path])
        try:
            engine = load_engine(args.directory, backend=args.backend, device=args.device)
        except InferenceError as exc:
            raise CommandError(f"cannot load {args.directory}: {exc}") from exc
        gazex = engine.checkpoint.gazex
        print(f"model: {gazex.name} {gazex.version} from {engine.checkpoint.path} ({engine.backend.name} backend)")
        print(f"  coordinates: {gazex.coordinates.describe()}; image: {what}")
        (datasets,) = studies.values()
        try:
            report = engine.analyze_study(datasets)
        except InferenceError as exc:
            raise CommandError(f"the analysis failed: {exc}") from exc
    print(format_report(report))
    return 0
