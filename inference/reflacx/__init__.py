"""REFLACX's file format: column names, an in-memory reading, a reader and a writer.

REFLACX (Reports and Eye-Tracking Data for Localization of Abnormalities in Chest X-rays,
PhysioNet) pairs radiologists' fixations with their timestamped dictation.  GazeX is trained
on it; the phantoms of :mod:`inference.demo` are written in the same layout so the same
converter (:mod:`inference.training`) serves both.
"""

from inference.reflacx.columns import label_columns
from inference.reflacx.model import Ellipse, ReflacxFixation, ReflacxFormatError, ReflacxReading, TranscribedWord
from inference.reflacx.reader import find_main_data, read_reflacx
from inference.reflacx.writer import write_reflacx

__all__ = [
    "Ellipse",
    "ReflacxFixation",
    "ReflacxFormatError",
    "ReflacxReading",
    "TranscribedWord",
    "find_main_data",
    "label_columns",
    "read_reflacx",
    "write_reflacx",
]
