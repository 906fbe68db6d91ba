"""GazeX inference: DICOM pixels in, findings, boxes and an inspection trajectory out.

The gateway talks to this package only through what is exported here.
"""

from inference.engine import Engine, InferenceError
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
from inference.testing import FakeEngine

__all__ = [
    "FINDING_LABELS",
    "Box",
    "Engine",
    "FakeEngine",
    "Finding",
    "Fixation",
    "ImageAnalysis",
    "InferenceError",
    "ModelIdentity",
    "Point",
    "Region",
    "StudyAnalysis",
]
