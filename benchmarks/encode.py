"""How long ``dicom_sr.encode`` takes to make the SR + SEG + GSPS of one image.

Target (issue 5): under 200 ms for a 2k x 2k image on the project's 2-core machine.

Measured on the real chest CR (1955 x 1841, from pydicom-data) and on a synthetic
2048 x 2048 radiograph, each with a typical analysis (8 sentences, 4 of them present findings
with 3 clue boxes each, 20 fixations).  Beside it, in the same run:

- pydicom writing the source image itself to memory (the cost of touching the image once);
- highdicom's default SEG path, handing it the float array (the path ``dicom_sr.seg`` avoids);
- our encode followed by writing the three outputs to memory.

Usage::

    .venv/bin/python -m benchmarks.encode            # 30 runs per row
    .venv/bin/python -m benchmarks.encode --tiny     # a 64 x 64 image, 2 runs (used by the tests)
"""

from __future__ import annotations

import argparse
import datetime
import io
import os
import time
from collections.abc import Callable, Sequence

import highdicom as hd
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.uid import ComputedRadiographyImageStorage, ExplicitVRLittleEndian, generate_uid

from benchmarks._table import format_table, machine_line, median, percentile
from dicom_sr import encode
from dicom_sr.common import EncodeSettings
from dicom_sr.inputs import prepare
from dicom_sr.seg import attention_fraction, box_fraction
from inference.results import Box, Finding, Fixation, ImageAnalysis, Point, Region, StudyAnalysis
from inference.testing import FAKE_IDENTITY

WHEN = datetime.datetime(2024, 5, 6, 7, 8, 9)
LABELS = (
    ("pleural_effusion", True),
    ("cardiomegaly", False),
    ("lung_opacity", True),
    ("pneumothorax", False),
    ("atelectasis", True),
    ("edema", False),
    ("support_devices", True),
    ("fracture", False),
)


def synthetic_radiograph(rows: int, columns: int, seed: int = 0) -> Dataset:
    """A CR-like MONOCHROME2 image with plausible headers and 12-bit noise."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ComputedRadiographyImageStorage
    ds.SOPClassUID = ComputedRadiographyImageStorage
    ds.SOPInstanceUID = generate_uid(entropy_srcs=["benchmark", str(rows), str(columns), str(seed), "sop"])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = generate_uid(entropy_srcs=["benchmark", str(rows), str(columns), str(seed), "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["benchmark", str(rows), str(columns), str(seed), "series"])
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = "Synthetic^Patient"
    ds.PatientID = "SYN-1"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.AccessionNumber = "A1"
    ds.StudyID = "1"
    ds.StudyDate = "20240101"
    ds.StudyTime = "120000"
    ds.ReferringPhysicianName = ""
    ds.Modality = "CR"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.PatientOrientation = ["L", "F"]
    ds.Manufacturer = "Synthetic"
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelSpacing = [0.139, 0.139]
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    pixels = np.random.default_rng(seed).integers(0, 4096, size=(rows, columns), dtype=np.uint16)
    ds.PixelData = pixels.tobytes()
    return ds


def _region(rows: int, columns: int, fx0: float, fy0: float, fx1: float, fy1: float) -> Region:
    box = Box(fx0 * columns, fy0 * rows, fx1 * columns, fy1 * rows)
    return Region(box, box.center)


def typical_analysis(source: Dataset) -> StudyAnalysis:
    """8 sentences, 4 present (3 clues each), 4 absent (2 clues each), 20 fixations."""
    rows, columns = int(source.Rows), int(source.Columns)
    rng = np.random.default_rng(7)
    findings: list[Finding] = []
    trajectory: list[Fixation] = []
    for label, present in LABELS:
        x, y = rng.uniform(0.1, 0.6), rng.uniform(0.1, 0.6)
        clues = tuple(
            _region(rows, columns, x + 0.05 * k, y + 0.04 * k, x + 0.05 * k + 0.12, y + 0.04 * k + 0.1)
            for k in range(3 if present else 2)
        )
        findings.append(
            Finding(
                text=f"Statement about {label.replace('_', ' ')}.",
                label=label,
                present=present,
                observation=_region(rows, columns, x, y, x + 0.3, y + 0.25),
                clues=clues,
            )
        )
        for clue in clues[:2] if present else clues[:3]:
            trajectory.append(Fixation(len(trajectory) + 1, clue.centroid, clue))
    while len(trajectory) < 20:
        trajectory.append(Fixation(len(trajectory) + 1, Point(rng.uniform(0, columns), rng.uniform(0, rows))))
    image = ImageAnalysis(
        str(source.SOPInstanceUID),
        rows,
        columns,
        " ".join(f.text for f in findings),
        tuple(findings),
        tuple(trajectory),
    )
    return StudyAnalysis(str(source.StudyInstanceUID), (image,), FAKE_IDENTITY, 1.0)


def _time(runs: int, work: Callable[[], object]) -> list[float]:
    work()  # warm-up: imports, caches
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        seconds.append(time.perf_counter() - started)
    return seconds


def _write(dataset: Dataset) -> int:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, dataset, enforce_file_format=True)
    return buffer.tell()


def _highdicom_default_seg(analysis: StudyAnalysis, source: Dataset) -> Dataset:
    """The SEG through highdicom's default path: our segments as one float array."""
    ctx = prepare(
        analysis, [source], analysis_id="bench", content_datetime=WHEN, settings=EncodeSettings(), predecessor=None
    )
    (image,) = ctx.images
    planes = [box_fraction(p.observation, image.rows, image.columns) for p in image.present if p.observation]
    planes.append(attention_fraction(image)[0])
    array = np.stack(planes, axis=-1)[None]
    algorithm = hd.AlgorithmIdentificationSequence(
        name="bench", family=codes.cid7162.ArtificialIntelligence, version="0"
    )
    descriptions = [
        hd.seg.SegmentDescription(
            k + 1, f"s{k + 1}", codes.cid7150.MorphologicallyAbnormalStructure, codes.SCT.Lesion, "AUTOMATIC", algorithm
        )
        for k in range(array.shape[-1])
    ]
    return hd.seg.Segmentation(
        [image.source],
        array,
        "FRACTIONAL",
        descriptions,
        hd.UID(),
        1,
        hd.UID(),
        1,
        "m",
        "m",
        "0",
        "0",
        omit_empty_frames=False,
    )


def measure(name: str, source: Dataset, runs: int) -> list[list[object]]:
    analysis = typical_analysis(source)
    outputs = ("sr", "seg", "gsps")

    def ours() -> list[Dataset]:
        return encode(analysis, [source], outputs, analysis_id="bench", content_datetime=WHEN)

    rows: list[list[object]] = []
    cases: Sequence[tuple[str, Callable[[], object]]] = (
        ("gazex encode SR+SEG+GSPS", ours),
        ("gazex encode + write the 3 objects", lambda: [_write(d) for d in ours()]),
        ("peer: pydicom writes the source image", lambda: _write(source)),
        ("peer: highdicom SEG from float array", lambda: _highdicom_default_seg(analysis, source)),
    )
    for what, work in cases:
        seconds = _time(runs, work)
        rows.append([name, what, 1000 * median(seconds), 1000 * percentile(seconds, 95), len(seconds)])
    return rows


def main(argv: Sequence[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="timed runs per row (default 30)")
    parser.add_argument("--tiny", action="store_true", help="a 64 x 64 synthetic image and 2 runs, for the tests")
    args = parser.parse_args(argv)
    images: list[tuple[str, Dataset]]
    if args.tiny:
        images = [("synthetic 64x64", synthetic_radiograph(64, 64))]
        runs = min(args.runs, 2)
    else:
        from pydicom.data import get_testdata_file

        chest = pydicom.dcmread(str(get_testdata_file("RG1_UNCR.dcm")))
        images = [("chest CR 1955x1841", chest), ("synthetic 2048x2048", synthetic_radiograph(2048, 2048))]
        runs = args.runs
    load_before = os.getloadavg()[0]
    table_rows: list[list[object]] = []
    for name, source in images:
        table_rows.extend(measure(name, source, runs))
    table = format_table(["image", "what", "median ms", "p95 ms", "runs"], table_rows)
    load = f"1-minute load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after (the machine is shared)"
    text = f"{table}\n\n{machine_line()}\n{load}"
    print(text)
    return text


if __name__ == "__main__":
    main()
