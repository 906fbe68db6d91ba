"""GazeX inference: DICOM pixels in, findings, boxes and an inspection trajectory out.

The gateway talks to this package only through what is exported here::

    engine = load_engine("builtin:gazex-demo")        # or a checkpoint directory
    analysis = engine.analyze(datasets)               # one study's images
    engine.identity                                   # name, version, weights SHA-256, backend

and, for ``gazex model``, the model's data and training side: phantoms (:mod:`inference.demo`),
the REFLACX converter, the trainer and the evaluation (:mod:`inference.training`).  Those
subpackages' own ``__init__`` are public too, for scripts and tests; the gateway uses the names
re-exported here only (DESIGN §3).

Names are loaded on first use (PEP 562), so ``import inference`` stays cheap: a command
that needs only the result types does not pay for torch, transformers or ONNX.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from inference.backends import AVAILABLE_BACKENDS, BackendOptions
    from inference.checkpoint import CheckpointError, builtin_checkpoints, is_demo_checkpoint, open_checkpoint
    from inference.config import GAZEX_PROMPTS, GenerationSettings, ImageSettings, Prompts
    from inference.demo import FINDING_KINDS, REPORT_STYLES, PhantomConfig, write_phantom_dataset
    from inference.engine import Engine, InferenceError, InputImageError
    from inference.geometry import CoordinateFrame, parse_frame
    from inference.importing import import_checkpoint
    from inference.onnx_export import export_cache_dir, export_onnx
    from inference.pixels import SUPPORTED_TRANSFER_SYNTAXES, PixelDataError
    from inference.presets import PRESETS
    from inference.reflacx import ReflacxFormatError
    from inference.results import (
        FINDING_LABELS,
        STATEMENT_LABELS,
        Box,
        Finding,
        Fixation,
        ImageAnalysis,
        ModelIdentity,
        Point,
        Region,
        StudyAnalysis,
    )
    from inference.runtime import GazexEngine, StudyReport, load_engine
    from inference.serialization import study_analysis_to_dict
    from inference.tensorrt_build import ProfileSettings, build_engines, tensorrt_unavailable
    from inference.testing import CheckpointShape, FakeEngine, make_tiny_checkpoint
    from inference.training import (
        AttentionSettings,
        ConversionSettings,
        LoraSettings,
        Progress,
        TrainingDataError,
        TrainingError,
        TrainingSettings,
        convert_reflacx,
        train,
    )
    from inference.training.evaluate import EvaluationError, EvaluationResult, EvaluationSettings, evaluate_checkpoint
    from inference.triton_repo import write_triton_repository

#: Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    "AVAILABLE_BACKENDS": "inference.backends",
    "BackendOptions": "inference.backends",
    "CheckpointError": "inference.checkpoint",
    "builtin_checkpoints": "inference.checkpoint",
    "is_demo_checkpoint": "inference.checkpoint",
    "import_checkpoint": "inference.importing",
    "PRESETS": "inference.presets",
    "open_checkpoint": "inference.checkpoint",
    "GAZEX_PROMPTS": "inference.config",
    "GenerationSettings": "inference.config",
    "ImageSettings": "inference.config",
    "Prompts": "inference.config",
    "FINDING_KINDS": "inference.demo",
    "PhantomConfig": "inference.demo",
    "REPORT_STYLES": "inference.demo",
    "write_phantom_dataset": "inference.demo",
    "Engine": "inference.engine",
    "InferenceError": "inference.engine",
    "InputImageError": "inference.engine",
    "CoordinateFrame": "inference.geometry",
    "parse_frame": "inference.geometry",
    "export_cache_dir": "inference.onnx_export",
    "export_onnx": "inference.onnx_export",
    "PixelDataError": "inference.pixels",
    "SUPPORTED_TRANSFER_SYNTAXES": "inference.pixels",
    "ReflacxFormatError": "inference.reflacx",
    "Box": "inference.results",
    "FINDING_LABELS": "inference.results",
    "STATEMENT_LABELS": "inference.results",
    "Finding": "inference.results",
    "Fixation": "inference.results",
    "ImageAnalysis": "inference.results",
    "ModelIdentity": "inference.results",
    "Point": "inference.results",
    "Region": "inference.results",
    "StudyAnalysis": "inference.results",
    "GazexEngine": "inference.runtime",
    "StudyReport": "inference.runtime",
    "load_engine": "inference.runtime",
    "study_analysis_to_dict": "inference.serialization",
    "ProfileSettings": "inference.tensorrt_build",
    "build_engines": "inference.tensorrt_build",
    "tensorrt_unavailable": "inference.tensorrt_build",
    "CheckpointShape": "inference.testing",
    "FakeEngine": "inference.testing",
    "make_tiny_checkpoint": "inference.testing",
    "AttentionSettings": "inference.training",
    "ConversionSettings": "inference.training",
    "LoraSettings": "inference.training",
    "Progress": "inference.training",
    "TrainingDataError": "inference.training",
    "TrainingError": "inference.training",
    "TrainingSettings": "inference.training",
    "convert_reflacx": "inference.training",
    "train": "inference.training",
    "EvaluationError": "inference.training.evaluate",
    "EvaluationResult": "inference.training.evaluate",
    "EvaluationSettings": "inference.training.evaluate",
    "evaluate_checkpoint": "inference.training.evaluate",
    "write_triton_repository": "inference.triton_repo",
}

__all__ = [
    "AVAILABLE_BACKENDS",
    "FINDING_KINDS",
    "FINDING_LABELS",
    "GAZEX_PROMPTS",
    "PRESETS",
    "REPORT_STYLES",
    "STATEMENT_LABELS",
    "SUPPORTED_TRANSFER_SYNTAXES",
    "AttentionSettings",
    "BackendOptions",
    "Box",
    "CheckpointError",
    "CheckpointShape",
    "ConversionSettings",
    "CoordinateFrame",
    "Engine",
    "EvaluationError",
    "EvaluationResult",
    "EvaluationSettings",
    "FakeEngine",
    "Finding",
    "Fixation",
    "GazexEngine",
    "GenerationSettings",
    "ImageAnalysis",
    "ImageSettings",
    "InferenceError",
    "InputImageError",
    "LoraSettings",
    "ModelIdentity",
    "PhantomConfig",
    "PixelDataError",
    "Point",
    "ProfileSettings",
    "Progress",
    "Prompts",
    "ReflacxFormatError",
    "Region",
    "StudyAnalysis",
    "StudyReport",
    "TrainingDataError",
    "TrainingError",
    "TrainingSettings",
    "build_engines",
    "builtin_checkpoints",
    "convert_reflacx",
    "evaluate_checkpoint",
    "export_cache_dir",
    "export_onnx",
    "import_checkpoint",
    "is_demo_checkpoint",
    "load_engine",
    "make_tiny_checkpoint",
    "open_checkpoint",
    "parse_frame",
    "study_analysis_to_dict",
    "tensorrt_unavailable",
    "train",
    "write_phantom_dataset",
    "write_triton_repository",
]


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'inference' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
