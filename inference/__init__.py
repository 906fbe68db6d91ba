"""GazeX inference: DICOM pixels in, findings, boxes and an inspection trajectory out.

The gateway talks to this package only through what is exported here::

    engine = load_engine("builtin:gazex-demo")        # or a checkpoint directory
    analysis = engine.analyze(datasets)               # one study's images
    engine.identity                                   # name, version, weights SHA-256, backend

and, for ``gazex model``, the model's data and training side: phantoms (:mod:`inference.demo`),
the REFLACX converter, the trainer and the evaluation (:mod:`inference.training`).  Those
subpackages' own ``__init__`` are public too, for scripts and tests; the gateway uses the names
re-exported here only (DESIGN §3).
"""

from inference.checkpoint import CheckpointError, builtin_checkpoints
from inference.config import GAZEX_PROMPTS, GenerationSettings, ImageSettings, Prompts
from inference.demo import FINDING_KINDS, PhantomConfig, write_phantom_dataset
from inference.engine import Engine, InferenceError
from inference.geometry import CoordinateFrame, parse_frame
from inference.pixels import SUPPORTED_TRANSFER_SYNTAXES, PixelDataError
from inference.reflacx import ReflacxFormatError
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
from inference.testing import CheckpointShape, FakeEngine
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

__all__ = [
    "FINDING_KINDS",
    "FINDING_LABELS",
    "GAZEX_PROMPTS",
    "SUPPORTED_TRANSFER_SYNTAXES",
    "AttentionSettings",
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
    "LoraSettings",
    "ModelIdentity",
    "PhantomConfig",
    "PixelDataError",
    "Point",
    "Progress",
    "Prompts",
    "ReflacxFormatError",
    "Region",
    "StudyAnalysis",
    "StudyReport",
    "TrainingDataError",
    "TrainingError",
    "TrainingSettings",
    "builtin_checkpoints",
    "convert_reflacx",
    "evaluate_checkpoint",
    "load_engine",
    "parse_frame",
    "study_analysis_to_dict",
    "train",
    "write_phantom_dataset",
]
