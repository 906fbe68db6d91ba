"""ONNX export of a GazeX checkpoint: the vision tower with its merger, and the text decoder.

Two graphs, written with the TorchScript-based exporter of ``torch.onnx`` from small wrapper
modules that reuse the checkpoint's own layers (weights, norms, MLPs, rotary tables) and spell
out the few parts Hugging Face computes with data-dependent Python (the vision tower's
per-image attention split, the decoder's cache objects and mask building):

``vision.onnx``
    inputs ``pixel_values`` (N, C*T*P*P) and ``vision_position_ids`` (N, 2) int64 (each patch's
    row and column, :func:`vision_position_ids`); output ``image_embeds`` (N / merge^2, hidden).
    One image per call (``image_grid_thw`` t = 1, which is what a radiograph always gives): its
    patches attend to each other, as Qwen2-VL's vision tower does within one image.

``decoder.onnx`` (``cache="dynamic"``, for ONNX Runtime and Triton)
    inputs ``input_ids`` (B, S), ``image_embeds`` (I, hidden) that replace the
    ``<|image_pad|>`` tokens of ``input_ids`` in order (pass one row of zeros when there are
    none), ``position_ids`` (3, B, S) (Qwen2-VL's M-RoPE positions, computed by
    :func:`inference.generation.mrope_positions`), ``attention_mask`` (B, P + S) int64 over the
    cache and the new tokens, ``last_index`` (B,) (the position in S whose logits are wanted),
    and ``past_key_<i>``/``past_value_<i>`` (B, kv_heads, P, head_dim) per layer; outputs
    ``logits`` (B, vocab) float32 and ``present_key_<i>``/``present_value_<i>``
    (B, kv_heads, P + S, head_dim).  B, S, P and I are dynamic axes.

``decoder_static.onnx`` (``cache="static"``, for TensorRT)
    the same, except that the cache has a fixed capacity C: ``past_*`` and ``present_*`` are
    (B, kv_heads, C, head_dim), the new keys and values are scattered in at ``cache_position``
    (a (1,) int64: the first free slot), and ``attention_mask`` is (B, C).  No shape depends on
    ``cache_position`` (it is not a TensorRT shape tensor), so a decoding step at a fixed batch
    has the same shapes every time, which is what CUDA graphs need.

``export.json`` beside the graphs records the checkpoint's weights SHA-256, the dtype, the
sizes and the tensor names; :func:`export_onnx` reuses an export whose record matches.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from inference.checkpoint import Checkpoint
from inference.engine import InferenceError

logger = logging.getLogger(__name__)

EXPORT_FORMAT = 1
OPSET = 17
MANIFEST = "export.json"
VISION_FILE = "vision.onnx"
DECODER_FILES = {"dynamic": "decoder.onnx", "static": "decoder_static.onnx"}
CACHE_ENV = "GAZEX_CACHE_DIR"

CacheKind = Literal["dynamic", "static"]
ExportDtype = Literal["float32", "float16", "bfloat16"]
EXPORT_DTYPES: tuple[str, ...] = ("float32", "float16", "bfloat16")


class ExportError(InferenceError):
    """The ONNX export failed or an export on disk is unusable; the message says what to do."""


@dataclass(frozen=True)
class ModelDims:
    """The sizes the runtimes need to feed the graphs."""

    hidden_size: int
    num_layers: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    vision_patch_dim: int
    merge_size: int
    image_token_id: int


@dataclass(frozen=True)
class OnnxExport:
    """An export directory and what its manifest says."""

    directory: Path
    checkpoint_sha256: str
    dtype: str
    dims: ModelDims
    cache: tuple[str, ...]
    static_capacity: int | None

    @property
    def vision_path(self) -> Path:
        return self.directory / VISION_FILE

    def decoder_path(self, cache: CacheKind = "dynamic") -> Path:
        if cache not in self.cache:
            raise ExportError(f"{self.directory}: has no {cache}-cache decoder; export it with cache={cache!r}")
        return self.directory / DECODER_FILES[cache]

    def cache_names(self) -> list[tuple[str, str, str, str]]:
        """(past key, past value, present key, present value) names per layer."""
        return kv_names(self.dims.num_layers)


def kv_names(num_layers: int) -> list[tuple[str, str, str, str]]:
    return [(f"past_key_{i}", f"past_value_{i}", f"present_key_{i}", f"present_value_{i}") for i in range(num_layers)]


def vision_position_ids(image_grid_thw: npt.NDArray[np.int64], merge_size: int) -> npt.NDArray[np.int64]:
    """Each patch's (row, column) in the order Qwen2-VL lays patches out (merge blocks first).

    The same as ``transformers.vision_utils.get_vision_position_ids`` for t = 1, in numpy.
    """
    rows = []
    for grid in np.asarray(image_grid_thw).reshape(-1, 3):
        t, h, w = (int(v) for v in grid)
        if h % merge_size or w % merge_size:
            raise ValueError(f"grid {h} x {w} is not a multiple of the merge size {merge_size}")
        grid_h, grid_w = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        shape = (h // merge_size, merge_size, w // merge_size, merge_size)
        hpos = grid_h.reshape(shape).transpose(0, 2, 1, 3).reshape(-1)
        wpos = grid_w.reshape(shape).transpose(0, 2, 1, 3).reshape(-1)
        rows.append(np.tile(np.stack([hpos, wpos], axis=-1), (t, 1)))
    return np.ascontiguousarray(np.concatenate(rows, axis=0), dtype=np.int64)


def dims_from_config_json(document: dict[str, Any]) -> ModelDims:
    """The sizes from a checkpoint's ``config.json`` (without loading torch or the weights)."""
    from types import SimpleNamespace

    text = dict(document.get("text_config") or document)
    vision = dict(document.get("vision_config") or {})
    config = SimpleNamespace(
        text_config=SimpleNamespace(**text),
        vision_config=SimpleNamespace(
            in_channels=vision.get("in_channels", 3),
            temporal_patch_size=vision.get("temporal_patch_size", 2),
            patch_size=vision.get("patch_size", 14),
            spatial_merge_size=vision.get("spatial_merge_size", 2),
        ),
        image_token_id=document.get("image_token_id", 151655),
    )
    return model_dims(config)


def model_dims(config: Any) -> ModelDims:
    """The sizes of a ``Qwen2VLConfig``."""
    text = config.text_config
    vision = config.vision_config
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    kv_heads = getattr(text, "num_key_value_heads", None) or text.num_attention_heads
    return ModelDims(
        hidden_size=int(text.hidden_size),
        num_layers=int(text.num_hidden_layers),
        num_kv_heads=int(kv_heads),
        head_dim=int(head_dim),
        vocab_size=int(text.vocab_size),
        vision_patch_dim=int(vision.in_channels * vision.temporal_patch_size * vision.patch_size**2),
        merge_size=int(vision.spatial_merge_size),
        image_token_id=int(config.image_token_id),
    )


# -- the wrapper modules ------------------------------------------------------------------------


def _modules() -> tuple[Any, Any]:
    """The wrapper module classes (built lazily: torch is only imported when exporting)."""
    import torch
    from torch import nn
    from transformers.models.qwen2_vl.modeling_qwen2_vl import apply_rotary_pos_emb_vision, rotate_half

    def _repeat_kv(states: Any, groups: int) -> Any:
        if groups == 1:
            return states
        b, heads, t, d = states.shape
        return states[:, :, None].expand(b, heads, groups, t, d).reshape(b, heads * groups, t, d)

    class VisionGraph(nn.Module):  # type: ignore[misc]
        """Qwen2-VL's vision tower and merger for one image whose patches all attend to each other."""

        def __init__(self, visual: Any) -> None:
            super().__init__()
            self.visual = visual

        def forward(self, pixel_values: Any, position_ids: Any) -> Any:
            visual = self.visual
            # the patch embedding is a Conv3d whose kernel is the whole patch: a matrix product on the
            # flattened patches (ONNX's Conv has no bfloat16 before opset 22; TensorRT runs a GEMM anyway)
            weight = visual.patch_embed.proj.weight
            hidden = torch.matmul(pixel_values.to(weight.dtype), weight.reshape(weight.shape[0], -1).t())
            cos, sin = visual.rotary_pos_emb(hidden, position_ids)
            for block in visual.blocks:
                attn = block.attn
                x = block.norm1(hidden)
                qkv = attn.qkv(x).reshape(x.shape[0], 3, attn.num_heads, -1).permute(1, 0, 2, 3)
                q, k = apply_rotary_pos_emb_vision(qkv[0], qkv[1], cos, sin)
                v = qkv[2]
                q, k, v = (t.transpose(0, 1) for t in (q, k, v))  # (heads, N, D)
                scores = torch.matmul(q, k.transpose(1, 2)) * attn.scaling
                weights = torch.softmax(scores.float(), dim=-1).to(q.dtype)
                out = torch.matmul(weights, v).transpose(0, 1).reshape(x.shape[0], -1)
                hidden = hidden + attn.proj(out)
                hidden = hidden + block.mlp(block.norm2(hidden))
            return visual.merger(hidden)

    class DecoderGraph(nn.Module):  # type: ignore[misc]
        """Qwen2-VL's text decoder over explicit key/value tensors, with the image merged in."""

        def __init__(self, model: Any, static: bool) -> None:
            super().__init__()
            self.text = model.model.language_model
            self.lm_head = model.lm_head
            self.image_token_id = int(model.config.image_token_id)
            self.static = static

        def forward(  # noqa: PLR0915 - one decoder pass, spelled out
            self, input_ids: Any, image_embeds: Any, position_ids: Any, attention_mask: Any, *rest: Any
        ) -> Any:
            text = self.text
            if self.static:
                last_index, cache_position, *past = rest
            else:
                last_index, *past = rest
            batch = input_ids.shape[0]
            length = input_ids.shape[1]
            embeds = text.embed_tokens(input_ids)
            is_image = input_ids == self.image_token_id
            order = torch.cumsum(is_image.reshape(-1).to(torch.int64), dim=0) - 1
            last_row = torch.ones_like(image_embeds[:, 0], dtype=torch.int64).sum() - 1
            order = torch.minimum(torch.clamp(order, min=0), last_row)
            from_image = image_embeds.to(embeds.dtype).index_select(0, order).reshape(batch, length, -1)
            hidden = torch.where(is_image.unsqueeze(-1), from_image, embeds)

            cos, sin = text.rotary_emb(hidden, position_ids)  # (B, S, D), M-RoPE sections recomposed
            cos = cos.unsqueeze(1)
            sin = sin.unsqueeze(1)

            total = attention_mask.shape[1]
            keys = torch.arange(total, device=input_ids.device)
            if self.static:
                queries = torch.arange(length, device=input_ids.device) + cache_position
            else:
                queries = torch.arange(length, device=input_ids.device) + (total - length)
            causal = keys.unsqueeze(0) <= queries.unsqueeze(1)  # (S, T)
            allowed = causal.unsqueeze(0) & (attention_mask.unsqueeze(1) != 0)  # (B, S, T)
            zero = torch.zeros((), dtype=torch.float32)
            blocked = torch.full((), torch.finfo(torch.float32).min, dtype=torch.float32)
            mask = torch.where(allowed, zero, blocked).unsqueeze(1)  # (B, 1, S, T)

            presents = []
            for index, layer in enumerate(text.layers):
                attn = layer.self_attn
                residual = hidden
                x = layer.input_layernorm(hidden)
                q = attn.q_proj(x).reshape(batch, length, -1, attn.head_dim).transpose(1, 2)
                k = attn.k_proj(x).reshape(batch, length, -1, attn.head_dim).transpose(1, 2)
                v = attn.v_proj(x).reshape(batch, length, -1, attn.head_dim).transpose(1, 2)
                q = q * cos + rotate_half(q) * sin
                k = k * cos + rotate_half(k) * sin
                past_key, past_value = past[2 * index], past[2 * index + 1]
                if self.static:
                    # scattered, not sliced: no shape depends on cache_position (TensorRT shape tensors,
                    # CUDA graphs), only values do
                    slots = (torch.arange(length, device=input_ids.device) + cache_position).view(1, 1, -1, 1)
                    k_all = past_key.scatter(2, slots.expand_as(k), k)
                    v_all = past_value.scatter(2, slots.expand_as(v), v)
                else:
                    k_all = torch.cat([past_key, k], dim=2)
                    v_all = torch.cat([past_value, v], dim=2)
                presents += [k_all, v_all]
                k_heads = _repeat_kv(k_all, attn.num_key_value_groups)
                v_heads = _repeat_kv(v_all, attn.num_key_value_groups)
                scores = torch.matmul(q, k_heads.transpose(2, 3)) * attn.scaling
                weights = torch.softmax(scores.float() + mask, dim=-1).to(q.dtype)
                out = torch.matmul(weights, v_heads).transpose(1, 2).reshape(batch, length, -1)
                hidden = residual + attn.o_proj(out)
                hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
            hidden = text.norm(hidden)
            rows = torch.arange(batch, device=input_ids.device)
            logits = self.lm_head(hidden[rows, last_index]).float()
            return (logits, *presents)

    return VisionGraph, DecoderGraph


# -- exporting ----------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    """The exporter's tracer and deprecation warnings are about code paths we do not take."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=FutureWarning)
        warnings.simplefilter("ignore", category=UserWarning)
        yield


def _torch_dtype(dtype: str) -> Any:
    import torch

    choices = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if dtype not in choices:
        raise ExportError(f"unknown export dtype {dtype!r}; use one of {', '.join(EXPORT_DTYPES)}")
    return choices[dtype]


#: Above this many bytes of weights a graph keeps them in one external file (protobuf's 2 GiB limit).
EXTERNAL_DATA_BYTES = 1 << 30


def _finish(onnx_path: Path) -> None:
    """Re-save with the weights in one external file when large; check the graph."""
    import onnx

    if onnx_path.stat().st_size > EXTERNAL_DATA_BYTES or any(
        p.name != onnx_path.name for p in onnx_path.parent.iterdir()
    ):
        model = onnx.load(str(onnx_path), load_external_data=True)
        for stray in list(onnx_path.parent.iterdir()):
            stray.unlink()
        data_name = onnx_path.name + ".data"
        onnx.save_model(
            model,
            str(onnx_path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=data_name,
            size_threshold=1024,
        )
    onnx.checker.check_model(str(onnx_path), full_check=True)


def _export(module: Any, args: tuple[Any, ...], target: Path, names: tuple[list[str], list[str]], axes: Any) -> None:
    """Export ``module`` to ``target`` (via a scratch folder, so a failure leaves nothing behind)."""
    import torch

    inputs, outputs = names
    with tempfile.TemporaryDirectory(prefix="gazex-onnx-", dir=target.parent) as scratch:
        path = Path(scratch) / target.name
        with _quiet_export(), torch.inference_mode(False), torch.no_grad():
            torch.onnx.export(
                module,
                args,
                str(path),
                input_names=inputs,
                output_names=outputs,
                dynamic_axes=axes,
                opset_version=OPSET,
                dynamo=False,
                do_constant_folding=True,
            )
        _finish(path)
        for produced in Path(scratch).iterdir():
            os.replace(produced, target.parent / produced.name)


def export_vision(model: Any, target: Path) -> None:
    """``vision.onnx`` of ``model`` (a loaded ``Qwen2VLForConditionalGeneration``)."""
    import torch

    vision_graph, _ = _modules()
    dims = model_dims(model.config)
    grid = np.array([[1, 4 * dims.merge_size, 2 * dims.merge_size]], dtype=np.int64)
    patches = int(grid[0, 1] * grid[0, 2])
    pixel_values = torch.randn(patches, dims.vision_patch_dim, dtype=torch.float32)
    positions = torch.from_numpy(vision_position_ids(grid, dims.merge_size))
    _export(
        vision_graph(model.model.visual).eval(),
        (pixel_values, positions),
        target,
        (["pixel_values", "vision_position_ids"], ["image_embeds"]),
        {
            "pixel_values": {0: "patches"},
            "vision_position_ids": {0: "patches"},
            "image_embeds": {0: "image_tokens"},
        },
    )


def export_decoder(model: Any, target: Path, cache: CacheKind = "dynamic") -> None:
    """``decoder.onnx`` (``cache="dynamic"``) or ``decoder_static.onnx`` of ``model``."""
    import torch

    _, decoder_graph = _modules()
    dims = model_dims(model.config)
    dtype = next(model.parameters()).dtype
    batch, length, past, images = 2, 3, 5, 2
    capacity = past + length + 2
    input_ids = torch.randint(0, min(dims.vocab_size, 100), (batch, length), dtype=torch.int64)
    image_embeds = torch.randn(images, dims.hidden_size, dtype=torch.float32)
    position_ids = torch.arange(length, dtype=torch.int64).view(1, 1, length).expand(3, batch, length) + past
    static = cache == "static"
    cache_length = capacity if static else past
    mask_length = capacity if static else past + length
    attention_mask = torch.ones((batch, mask_length), dtype=torch.int64)
    last_index = torch.full((batch,), length - 1, dtype=torch.int64)
    kv_shape = (batch, dims.num_kv_heads, cache_length, dims.head_dim)
    past_tensors = [torch.randn(kv_shape, dtype=dtype) for _ in range(2 * dims.num_layers)]
    names = kv_names(dims.num_layers)
    past_names = [n for layer in names for n in layer[:2]]
    present_names = [n for layer in names for n in layer[2:]]
    cache_axis = "capacity" if static else "past"
    present_axis = "capacity" if static else "total"
    axes: dict[str, dict[int, str]] = {
        "input_ids": {0: "batch", 1: "sequence"},
        "image_embeds": {0: "image_tokens"},
        "position_ids": {1: "batch", 2: "sequence"},
        "attention_mask": {0: "batch", 1: present_axis},
        "last_index": {0: "batch"},
        "logits": {0: "batch"},
    }
    axes.update({n: {0: "batch", 2: cache_axis} for n in past_names})
    axes.update({n: {0: "batch", 2: present_axis} for n in present_names})
    inputs = ["input_ids", "image_embeds", "position_ids", "attention_mask", "last_index"]
    args: list[Any] = [input_ids, image_embeds, position_ids, attention_mask, last_index]
    if static:
        inputs.append("cache_position")
        args.append(torch.tensor([past], dtype=torch.int64))
    _export(
        decoder_graph(model, static).eval(),
        (*args, *past_tensors),
        target,
        ([*inputs, *past_names], ["logits", *present_names]),
        axes,
    )


def default_cache_root() -> Path:
    """``$GAZEX_CACHE_DIR`` or ``~/.cache/gazex``: where exports and engines are kept."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "gazex"


def export_cache_dir(checkpoint_sha256: str, dtype: str, root: Path | None = None) -> Path:
    """The cache folder of one checkpoint's export in one dtype (keyed by the weights' SHA-256)."""
    return (root or default_cache_root()) / "onnx" / f"{checkpoint_sha256[:32]}-{dtype}-v{EXPORT_FORMAT}"


def _manifest(
    checkpoint: Checkpoint, dtype: str, dims: ModelDims, cache: tuple[str, ...], static_capacity: int | None
) -> dict[str, Any]:
    return {
        "format": "gazex-onnx",
        "format_version": EXPORT_FORMAT,
        "checkpoint_sha256": checkpoint.weights_sha256,
        "checkpoint_name": checkpoint.gazex.name,
        "checkpoint_version": checkpoint.gazex.version,
        "dtype": dtype,
        "opset": OPSET,
        "cache": list(cache),
        "static_capacity": static_capacity,
        "dims": asdict(dims),
        "files": [VISION_FILE, *(DECODER_FILES[c] for c in cache)],
    }


def read_export(directory: Path) -> OnnxExport:
    """The export in ``directory``; raises :class:`ExportError` when it is incomplete."""
    path = directory / MANIFEST
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        dims = ModelDims(**document["dims"])
        export = OnnxExport(
            directory=directory,
            checkpoint_sha256=str(document["checkpoint_sha256"]),
            dtype=str(document["dtype"]),
            dims=dims,
            cache=tuple(document["cache"]),
            static_capacity=document.get("static_capacity"),
        )
        files = [str(f) for f in document["files"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ExportError(
            f"{path}: not a usable ONNX export ({exc}); export again with gazex model export-onnx"
        ) from exc
    if document.get("format_version") != EXPORT_FORMAT:
        raise ExportError(f"{path}: export format {document.get('format_version')!r}, this build reads {EXPORT_FORMAT}")
    missing = [f for f in files if not (directory / f).is_file()]
    if missing:
        raise ExportError(f"{directory}: {', '.join(missing)} missing; export again with gazex model export-onnx")
    return export


def export_onnx(  # noqa: PLR0912 - reuse, re-export and error translation in one place
    checkpoint: Checkpoint,
    out: Path | None = None,
    *,
    dtype: str = "float32",
    cache: tuple[CacheKind, ...] = ("dynamic",),
    model: Any = None,
    force: bool = False,
) -> OnnxExport:
    """Export ``checkpoint`` to ``out`` (default: the cache folder of its weights' SHA-256).

    An existing export with the same weights, dtype and cache kinds is reused unless ``force``.
    ``model`` may be the checkpoint's already loaded model (float32, CPU); it is not modified.
    """
    import copy

    import torch

    for kind in cache:
        if kind not in DECODER_FILES:
            raise ExportError(f"unknown cache kind {kind!r}; use dynamic or static")
    torch_dtype = _torch_dtype(dtype)
    directory = Path(out) if out is not None else export_cache_dir(checkpoint.weights_sha256, dtype)
    if not force and (directory / MANIFEST).is_file():
        try:
            existing = read_export(directory)
        except ExportError as exc:
            logger.warning("re-exporting: %s", exc)
        else:
            if existing.checkpoint_sha256 == checkpoint.weights_sha256 and existing.dtype == dtype:
                if set(cache) <= set(existing.cache):
                    return existing
                kinds: tuple[CacheKind, ...] = ("dynamic", "static")
                cache = tuple(k for k in kinds if k in set(cache) | set(existing.cache))
    directory.mkdir(parents=True, exist_ok=True)
    if model is None:
        from inference.backends.torch_backend import load_qwen2_vl

        model = load_qwen2_vl(checkpoint.path, torch.device("cpu"), torch_dtype)
    elif next(model.parameters()).dtype != torch_dtype:
        model = copy.deepcopy(model).to(torch_dtype)
    dims = model_dims(model.config)
    (directory / MANIFEST).unlink(missing_ok=True)
    try:
        export_vision(model, directory / VISION_FILE)
        for kind in cache:
            export_decoder(model, directory / DECODER_FILES[kind], kind)
    except (RuntimeError, ValueError, TypeError, OSError) as exc:
        raise ExportError(f"the ONNX export of {checkpoint.path} to {directory} failed: {exc}") from exc
    except Exception as exc:  # onnx.checker raises its own ValidationError; translated here
        if type(exc).__name__ == "ValidationError":
            raise ExportError(f"the exported graph in {directory} does not pass onnx.checker: {exc}") from exc
        raise
    manifest = _manifest(checkpoint, dtype, dims, tuple(cache), None)
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    logger.info(
        "exported %s (weights %s) to %s in %s", checkpoint.gazex.name, checkpoint.weights_sha256[:12], directory, dtype
    )
    return read_export(directory)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(4 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def copy_export(export: OnnxExport, target: Path) -> None:
    """Copy the graphs of ``export`` (and their weight files) into ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    for item in export.directory.iterdir():
        if item.is_file():
            shutil.copy2(item, target / item.name)
