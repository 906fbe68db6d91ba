"""GazeX inference: DICOM pixels in, findings, boxes and an inspection trajectory out.

The gateway talks to this package only through what is exported here::

    engine = load_engine("builtin:gazex-demo")        # or a checkpoint directory
    analysis = engine.analyze(datasets)               # one study's images
    engine.identity                                   # name, version, weights SHA-256, backend
"""

from inference.backends import AVAILABLE_BACKENDS, BackendOptions
from inference.checkpoint import CheckpointError, builtin_checkpoints
from inference.engine import Engine, InferenceError
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
from inference.testing import FakeEngine

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
    "Region",
    "StudyAnalysis",
    "StudyReport",
    "builtin_checkpoints",
    "load_engine",
    "study_analysis_to_dict",
]
