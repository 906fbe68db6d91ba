"""GazeX inference: DICOM pixels in, findings, boxes and an inspection trajectory out.

The gateway talks to this package only through what is exported here::

    engine = load_engine("builtin:gazex-demo")        # or a checkpoint directory
    analysis = engine.analyze(datasets)               # one study's images
    engine.identity                                   # name, version, weights SHA-256, backend
"""

from inference.backends import AVAILABLE_BACKENDS, BackendOptions
from inference.checkpoint import CheckpointError, builtin_checkpoints, open_checkpoint
from inference.engine import Engine, InferenceError
from inference.onnx_export import export_cache_dir, export_onnx
from inference.pixels import SUPPORTED_TRANSFER_SYNTAXES, PixelDataError
from inference.results import (
    FINDING_LABELS,
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
from inference.testing import FakeEngine
from inference.triton_repo import write_triton_repository

__all__ = [
    "AVAILABLE_BACKENDS",
    "FINDING_LABELS",
    "SUPPORTED_TRANSFER_SYNTAXES",
    "BackendOptions",
    "Box",
    "CheckpointError",
    "Engine",
    "FakeEngine",
    "Finding",
    "Fixation",
    "GazexEngine",
    "ImageAnalysis",
    "InferenceError",
    "ModelIdentity",
    "PixelDataError",
    "Point",
    "ProfileSettings",
    "Region",
    "StudyAnalysis",
    "StudyReport",
    "build_engines",
    "builtin_checkpoints",
    "export_cache_dir",
    "export_onnx",
    "load_engine",
    "open_checkpoint",
    "study_analysis_to_dict",
    "tensorrt_unavailable",
    "write_triton_repository",
]
