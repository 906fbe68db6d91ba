"""Phantom DICOM files pass dciodvfy and carry what a chest radiograph should."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.pixels.processing import apply_voi_lut

from inference.demo import PhantomConfig, generate_phantom
from inference.demo.dicom import phantom_dataset

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("index", [0, 1, 2, 3])  # CR/MONOCHROME1, DX/MONOCHROME2, CR/MONOCHROME2, DX/MONOCHROME1
def test_phantom_dicom_is_valid_and_displays_as_a_chest(
    index: int, tmp_path: Path, dicom_tool: Callable[[str], Path]
) -> None:
    dciodvfy = dicom_tool("dciodvfy")
    phantom = generate_phantom(77, index, PhantomConfig(rows=(640, 720)))
    path = tmp_path / "phantom.dcm"
    phantom_dataset(phantom).save_as(path, enforce_file_format=True)
    result = subprocess.run([str(dciodvfy), str(path)], capture_output=True, text=True, timeout=120, check=False)
    report = result.stdout + result.stderr
    assert not [line for line in report.splitlines() if line.startswith("Error")], report
    assert ("CRImage" if index % 2 == 0 else "DXImageForPresentation") in report

    ds = pydicom.dcmread(path)
    expected = phantom.acquisition
    assert (ds.Modality, ds.PhotometricInterpretation) == (expected.modality, expected.photometric)
    assert ds.BodyPartExamined == "CHEST" and ds.ViewPosition in {"PA", "AP"}
    assert list(ds.PatientOrientation) == ["L", "F"]
    assert str(ds.PatientName) == "SYNTHETIC^PHANTOM" and ds.PatientID.startswith("PHANTOM-")
    assert 12 <= ds.BitsStored <= 16 and ds.HighBit == ds.BitsStored - 1
    pixels = ds.pixel_array
    assert pixels.shape == (phantom.rows, phantom.columns)
    assert int(pixels.max()) < 2**ds.BitsStored and int(pixels.max()) - int(pixels.min()) > 2 ** (ds.BitsStored - 2)

    # windowed and shown as the photometric interpretation says, the lungs are darker than the mediastinum
    shown = apply_voi_lut(pixels, ds).astype(np.float64)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        shown = shown.max() - shown
    anatomy = phantom.anatomy
    lung = anatomy.zone_box("right", "middle")
    mediastinum = anatomy.mediastinum_box()
    lung_value = shown[
        int(lung.y0) : int(lung.y1), int(lung.x0 + lung.width / 3) : int(lung.x1 - lung.width / 3)
    ].mean()
    mediastinum_value = shown[
        int(mediastinum.y0) : int(mediastinum.y1), int(anatomy.midline) - 5 : int(anatomy.midline) + 5
    ].mean()
    assert lung_value < mediastinum_value - 0.15 * (shown.max() - shown.min())


def test_the_same_phantom_is_the_same_file(tmp_path: Path) -> None:
    phantom = generate_phantom(78, 1, PhantomConfig(rows=(300, 320)))
    first, second = tmp_path / "a.dcm", tmp_path / "b.dcm"
    phantom_dataset(phantom).save_as(first, enforce_file_format=True)
    phantom_dataset(phantom).save_as(second, enforce_file_format=True)
    assert first.read_bytes() == second.read_bytes()
    ds = pydicom.dcmread(first)
    assert len({ds.SOPInstanceUID, ds.SeriesInstanceUID, ds.StudyInstanceUID}) == 3
    assert all(uid.startswith("2.25.") and len(uid) <= 64 for uid in (ds.SOPInstanceUID, ds.StudyInstanceUID))
    other = generate_phantom(78, 2, PhantomConfig(rows=(300, 320)))
    assert phantom_dataset(other).SOPInstanceUID != ds.SOPInstanceUID
