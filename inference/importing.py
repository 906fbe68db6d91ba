"""``gazex model import``: a Hugging Face Qwen2-VL checkpoint trained elsewhere, made a GazeX checkpoint.

A site that obtains GazeX weights receives a LLaMA-Factory export: ``config.json``
(``model_type`` ``qwen2_vl``), safetensors weights (one ``model.safetensors``, or shards with
``model.safetensors.index.json``), the tokenizer (``tokenizer.json``, ``tokenizer_config.json``),
``preprocessor_config.json`` and the chat template (``chat_template.json``,
``chat_template.jinja`` or ``tokenizer_config.json``'s ``chat_template``), and no ``gazex.json``.
:func:`import_checkpoint` checks all of that, refusing with the missing file or key named,
validates the whole checkpoint with the preset's ``gazex.json`` (:func:`open_checkpoint`) and
only then writes ``gazex.json``:

- without ``out``: into the directory itself (nothing else there is changed);
- with ``out``: into a new folder that receives every file of the directory, hard-linked where
  the file system allows and copied otherwise, so the received directory stays as it came.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference.checkpoint import SINGLE_WEIGHTS, WEIGHTS_INDEX, CheckpointError, open_checkpoint
from inference.config import GazexConfig, GazexConfigError, parse_gazex_config
from inference.presets import PRESETS

GAZEX_JSON = "gazex.json"
CHAT_TEMPLATE_FILES = ("chat_template.json", "chat_template.jinja")


@dataclass(frozen=True)
class ImportResult:
    """What :func:`import_checkpoint` did."""

    source: Path
    target: Path
    gazex_json: Path
    document: dict[str, Any]
    config: GazexConfig
    weight_files: tuple[Path, ...]
    weights_sha256: str
    linked: int
    copied: int


def _json_object(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc}); restore the file from the checkpoint received") from exc
    if not isinstance(document, dict):
        raise CheckpointError(f"{path}: must be a JSON object")
    return document


def check_hf_layout(directory: Path) -> None:
    """Refuse a directory that does not hold a Qwen2-VL checkpoint transformers can load.

    Raises :class:`CheckpointError` naming the first missing file or key.  Weights, tokenizer
    and processor are checked in depth afterwards by :func:`open_checkpoint`.
    """
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: no such directory; give the folder the checkpoint was received in")
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise CheckpointError(
            f"{directory}: config.json is missing; a Hugging Face Qwen2-VL checkpoint has one (model_type qwen2_vl)"
        )
    config = _json_object(config_path)
    if "model_type" not in config:
        raise CheckpointError(f"{config_path}: the key model_type is missing; a Qwen2-VL checkpoint says 'qwen2_vl'")
    if config["model_type"] != "qwen2_vl":
        raise CheckpointError(
            f"{config_path}: model_type is {config['model_type']!r}; gazex model import takes Qwen2-VL ('qwen2_vl') "
            "checkpoints"
        )
    if "vision_config" not in config:
        raise CheckpointError(
            f"{config_path}: the key vision_config is missing; the checkpoint is not a whole Qwen2-VL"
        )
    if not (directory / SINGLE_WEIGHTS).is_file() and not (directory / WEIGHTS_INDEX).is_file():
        bins = sorted(p.name for p in directory.glob("*.bin"))
        hint = (
            f" (found {', '.join(bins)}: re-export with safe_serialization, e.g. LLaMA-Factory's default)"
            if bins
            else ""
        )
        raise CheckpointError(f"{directory}: no weights: neither {SINGLE_WEIGHTS} nor {WEIGHTS_INDEX} is there{hint}")
    for name, what in (
        ("tokenizer.json", "the fast tokenizer"),
        ("tokenizer_config.json", "the tokenizer configuration"),
        ("preprocessor_config.json", "the Qwen2-VL image processor configuration"),
    ):
        if not (directory / name).is_file():
            raise CheckpointError(f"{directory}: {name} is missing ({what}); copy it from the checkpoint received")
    tokenizer_config = _json_object(directory / "tokenizer_config.json")
    if not any((directory / n).is_file() for n in CHAT_TEMPLATE_FILES) and "chat_template" not in tokenizer_config:
        raise CheckpointError(
            f"{directory}: no chat template: neither {' nor '.join(CHAT_TEMPLATE_FILES)} nor a chat_template key in "
            "tokenizer_config.json; copy the chat template from the checkpoint received (or from Qwen2-VL-7B-Instruct)"
        )
    processor = _json_object(directory / "preprocessor_config.json")
    for key in ("patch_size", "merge_size", "temporal_patch_size"):
        if key not in processor:
            raise CheckpointError(
                f"{directory / 'preprocessor_config.json'}: the key {key} is missing; it is not a Qwen2-VL image "
                "processor configuration"
            )


def _populate(source: Path, target: Path) -> tuple[int, int]:
    """Every file of ``source`` (recursively) in ``target``, hard-linked or copied; (linked, copied)."""
    linked = copied = 0
    for path in sorted(source.rglob("*")):
        if path.is_dir() or (path.name == GAZEX_JSON and path.parent == source):
            continue
        destination = target / path.relative_to(source)
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, destination)
            linked += 1
        except OSError:
            shutil.copy2(path, destination)
            copied += 1
    return linked, copied


def import_checkpoint(
    directory: str | Path,
    *,
    preset: str = "gazex-upstream",
    out: str | Path | None = None,
    force: bool = False,
    **identity: str,
) -> ImportResult:
    """Check ``directory`` and write its ``gazex.json`` from ``preset`` (into ``out`` when given).

    ``identity`` overrides the preset's ``name``, ``version``, ``manufacturer`` or
    ``description``.  Raises :class:`CheckpointError` naming what is missing; writes nothing then.
    """
    source = Path(directory).expanduser()
    if preset not in PRESETS:
        raise CheckpointError(f"unknown preset {preset!r}; the presets are: {', '.join(sorted(PRESETS))}")
    check_hf_layout(source)
    try:
        document = PRESETS[preset](**identity)
        config = parse_gazex_config(document)
    except (GazexConfigError, ValueError) as exc:
        raise CheckpointError(
            f"the preset {preset} with the given name/version/manufacturer is invalid: {exc}"
        ) from exc
    # The whole checkpoint (tokenizer ids against config.json, processor, every weight shard) is
    # checked with the preset's settings before anything is written.
    checkpoint = open_checkpoint(source, gazex=config)

    if out is None:
        target = source
        if (target / GAZEX_JSON).exists() and not force:
            raise CheckpointError(
                f"{target / GAZEX_JSON} exists already; pass --force to replace it, or --out DIR to import into a "
                "new folder"
            )
        linked = copied = 0
    else:
        target = Path(out).expanduser()
        if target.resolve() == source.resolve():
            raise CheckpointError(f"--out {target} is the checkpoint itself; leave --out out to write gazex.json there")
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise CheckpointError(f"{target} exists and is not an empty folder; give a new folder for --out")
        target.mkdir(parents=True, exist_ok=True)
        linked, copied = _populate(source, target)

    gazex_json = target / GAZEX_JSON
    temporary = gazex_json.with_name(GAZEX_JSON + ".tmp")
    temporary.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(temporary, gazex_json)
    weights = tuple(target / p.name for p in checkpoint.weight_files)
    return ImportResult(
        source=source,
        target=target,
        gazex_json=gazex_json,
        document=document,
        config=config,
        weight_files=weights,
        weights_sha256=checkpoint.weights_sha256,
        linked=linked,
        copied=copied,
    )
