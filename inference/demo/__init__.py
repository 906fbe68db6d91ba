"""Procedural chest-radiograph phantoms for the bundled demo model: images, ground truth,
dictated reports and synthetic scanpaths, written as DICOM and in REFLACX's file format.

Not patients, and not for clinical use: they exist so the project can train and evaluate a
small GazeX-shaped model, and test that boxes land on lesions, with nothing downloaded.
"""

from inference.demo.export import FORMATS, DatasetSummary, phantom_reading, write_phantom_dataset
from inference.demo.findings import FINDING_KINDS, REFLACX_LABELS
from inference.demo.phantoms import DEFAULT_PROBABILITIES, Phantom, PhantomConfig, generate_phantom, generate_phantoms
from inference.demo.reports import REPORT_STYLES, SECTIONS, ReportSentence
from inference.demo.truth import phantom_statements

__all__ = [
    "DEFAULT_PROBABILITIES",
    "FINDING_KINDS",
    "FORMATS",
    "REFLACX_LABELS",
    "REPORT_STYLES",
    "SECTIONS",
    "DatasetSummary",
    "Phantom",
    "PhantomConfig",
    "ReportSentence",
    "generate_phantom",
    "generate_phantoms",
    "phantom_reading",
    "phantom_statements",
    "write_phantom_dataset",
]
