"""Phantoms as DICOM: CR or DX, MONOCHROME1 or MONOCHROME2, 12-16 bit, obviously synthetic.

The objects are CR Image Storage or Digital X-Ray Image Storage - For Presentation, with a
window that shows the chest, ``PatientOrientation`` ``L\\F`` (the standard display of a PA or
AP chest: columns run towards the patient's left, rows towards the feet), ``BodyPartExamined``
CHEST and ``ViewPosition`` PA or AP.  The patient is named ``SYNTHETIC^PHANTOM``; every
identifier and UID is derived from the phantom's seed and index, so the same phantom always
becomes the same file.
"""

from __future__ import annotations

import datetime
import hashlib
import uuid

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from inference.demo.phantoms import Phantom
from inference.pixels import apply_window

CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
DX_IMAGE_STORAGE_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"

#: SNOMED CT codes of the view (CID 4010 "DX View").
VIEW_CODES = {"PA": ("399348003", "postero-anterior"), "AP": ("272479005", "antero-posterior")}

#: The fake identity every phantom carries.
PATIENT_NAME = "SYNTHETIC^PHANTOM"
MANUFACTURER = "GazeX Gateway synthetic phantom generator"


def phantom_uid(phantom: Phantom, role: str) -> str:
    """A UID under 2.25 (UUID-derived) computed from the phantom's seed, index and a role name.

    ``pydicom.uid.generate_uid(prefix=None, ...)`` ignores its entropy sources and returns a
    random UUID, so the UUID is derived here from a SHA-256 of the inputs instead.
    """
    digest = hashlib.sha256(f"gazex-phantom/{phantom.seed}/{phantom.index}/{role}".encode()).digest()
    return f"2.25.{uuid.UUID(bytes=digest[:16], version=4).int}"


def stored_values(display: npt.NDArray[np.float32], bits_stored: int, photometric: str) -> npt.NDArray[np.uint16]:
    """Display values in [0, 1] (bright = dense) as unsigned stored values for ``photometric``."""
    if not 8 <= bits_stored <= 16:
        raise ValueError(f'Argument "bits_stored" must be 8 to 16, got {bits_stored}')
    if photometric not in {"MONOCHROME1", "MONOCHROME2"}:
        raise ValueError(f'Argument "photometric" must be MONOCHROME1 or MONOCHROME2, got {photometric!r}')
    top = (1 << bits_stored) - 1
    pedestal = 0.03 * top
    values = pedestal + np.clip(display, 0.0, 1.0).astype(np.float64) * (0.94 * top)
    if photometric == "MONOCHROME1":
        values = top - values
    return np.rint(values).astype(np.uint16)


def chest_window(values: npt.NDArray[np.uint16], phantom: Phantom) -> tuple[float, float]:
    """Window centre and width covering the chest's 1st to 99th percentile of stored values."""
    box = phantom.anatomy.chest_box()
    sy, sx = phantom.rows / values.shape[0], phantom.columns / values.shape[1]
    r0, r1 = max(0, int(box.y0 / sy)), min(values.shape[0], int(box.y1 / sy) + 1)
    c0, c1 = max(0, int(box.x0 / sx)), min(values.shape[1], int(box.x1 / sx) + 1)
    low, high = np.percentile(values[r0:r1, c0:c1], [1.0, 99.0])
    width = max(float(high - low) * 1.15, 2.0)
    return round(float(low + high) / 2.0), round(width)


def windowed_display(phantom: Phantom, display: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """``display`` (a render of ``phantom`` at any size) as a viewer shows the phantom's DICOM file.

    The DICOM pipeline is pointwise: stored values for the phantom's bits and photometric
    interpretation, then the chest window written in the file (computed here from this
    render), applied by the runtime's own :func:`inference.pixels.apply_window`, then MONOCHROME1
    inverted.  MIMIC-CXR-JPG, whose images REFLACX uses, was exported from the DICOM files with
    their window in the same way; so the phantoms' REFLACX images are written like this, and a
    model trained on them sees what the runtime makes of the DICOM files.
    """
    acquisition = phantom.acquisition
    values = stored_values(display, acquisition.bits_stored, acquisition.photometric)
    center, width = chest_window(values, phantom)
    shown = apply_window(values.astype(np.float64), center, width)
    if acquisition.photometric == "MONOCHROME1":
        shown = (1.0 - shown).astype(np.float32)
    return shown


def _identity(phantom: Phantom, date: str, time: str) -> dict[str, object]:
    """Patient (obviously synthetic), study, series and equipment attributes."""
    view = phantom.acquisition.view_position
    return {
        "PatientName": PATIENT_NAME,
        "PatientID": f"PHANTOM-{phantom.identifier}",
        "PatientBirthDate": "",
        "PatientSex": "O",
        "PatientIdentityRemoved": "NO",
        "StudyInstanceUID": phantom_uid(phantom, "study"),
        "StudyDate": date,
        "StudyTime": time,
        "ReferringPhysicianName": "",
        "StudyID": f"{phantom.index}",
        "AccessionNumber": "",
        "StudyDescription": "SYNTHETIC CHEST PHANTOM",
        "SeriesInstanceUID": phantom_uid(phantom, "series"),
        "SeriesNumber": 1,
        "SeriesDate": date,
        "SeriesTime": time,
        "SeriesDescription": f"CHEST {view} (synthetic)",
        "Modality": phantom.acquisition.modality,
        "BodyPartExamined": "CHEST",
        "ViewPosition": view,
        "Manufacturer": MANUFACTURER,
        "ManufacturerModelName": "gazex model phantoms",
        "SoftwareVersions": "1",
    }


def _image(phantom: Phantom, date: str, time: str, window: tuple[float, float]) -> dict[str, object]:
    """General image, image pixel, acquisition and VOI LUT attributes (pixel data aside)."""
    acquisition = phantom.acquisition
    spacing = f"{phantom.anatomy.pixel_spacing_mm:.6f}"
    return {
        "InstanceNumber": 1,
        "ContentDate": date,
        "ContentTime": time,
        "AcquisitionDate": date,
        "AcquisitionTime": time,
        "ImageType": ["ORIGINAL", "PRIMARY"],
        "PatientOrientation": ["L", "F"],
        "ImageComments": f"Synthetic chest phantom, not a patient (seed {phantom.seed}, index {phantom.index})",
        "BurnedInAnnotation": "NO",
        "LossyImageCompression": "00",
        "ImagerPixelSpacing": [spacing, spacing],
        "KVP": "110" if acquisition.view_position == "PA" else "90",
        "DistanceSourceToDetector": "1800" if acquisition.view_position == "PA" else "1000",
        "SamplesPerPixel": 1,
        "PhotometricInterpretation": acquisition.photometric,
        "Rows": phantom.rows,
        "Columns": phantom.columns,
        "BitsAllocated": 16,
        "BitsStored": acquisition.bits_stored,
        "HighBit": acquisition.bits_stored - 1,
        "PixelRepresentation": 0,
        "WindowCenter": window[0],
        "WindowWidth": window[1],
        "WindowCenterWidthExplanation": "CHEST",
    }


def phantom_dataset(
    phantom: Phantom, acquired: datetime.datetime | None = None, display: npt.NDArray[np.float32] | None = None
) -> Dataset:
    """The phantom as a DICOM instance at native resolution, per its ``acquisition``.

    ``display`` is the native render when the caller already has it.
    """
    acquisition = phantom.acquisition
    if display is None:
        display = phantom.render(None)
    if display.shape != (phantom.rows, phantom.columns):
        raise ValueError(f"display must be the native {phantom.rows}x{phantom.columns} render, got {display.shape}")
    values = stored_values(display, acquisition.bits_stored, acquisition.photometric)
    when = acquired or datetime.datetime(2024, 1, 1, 8, 0, 0) + datetime.timedelta(minutes=phantom.index)
    date, time = when.strftime("%Y%m%d"), when.strftime("%H%M%S")
    sop_class = CR_IMAGE_STORAGE if acquisition.modality == "CR" else DX_IMAGE_STORAGE_FOR_PRESENTATION
    sop_instance = phantom_uid(phantom, "instance")

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = pydicom.uid.UID(sop_class)
    meta.MediaStorageSOPInstanceUID = pydicom.uid.UID(sop_instance)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID

    ds = Dataset()
    ds.file_meta = meta
    attributes: dict[str, object] = {
        "SpecificCharacterSet": "ISO_IR 100",
        "SOPClassUID": sop_class,
        "SOPInstanceUID": sop_instance,
        "InstanceCreationDate": date,
        "InstanceCreationTime": time,
        **_identity(phantom, date, time),
        **_image(phantom, date, time, chest_window(values, phantom)),
    }
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    if acquisition.modality == "DX":
        _dx_modules(ds, acquisition.photometric)
        ds.ViewCodeSequence = Sequence([_code(*VIEW_CODES[acquisition.view_position])])
    ds.PixelData = values.tobytes()
    return ds


def _dx_modules(ds: Dataset, photometric: str) -> None:
    """The attributes DX Image Storage - For Presentation adds to a CR-like image."""
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.ImageType = ["ORIGINAL", "PRIMARY", ""]
    ds.ImageLaterality = "U"
    ds.AnatomicRegionSequence = Sequence([_code("51185008", "Chest")])
    ds.PixelIntensityRelationship = "LOG"
    # MONOCHROME2 here: higher values are denser, i.e. less X-ray intensity reached the detector.
    ds.PixelIntensityRelationshipSign = -1 if photometric == "MONOCHROME2" else 1
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.RescaleType = "US"
    ds.PresentationLUTShape = "IDENTITY" if photometric == "MONOCHROME2" else "INVERSE"
    ds.DetectorType = "SCINTILLATOR"
    ds.AcquisitionContextSequence = Sequence([])
    ds.PositionerType = ""


def _code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "SCT"
    item.CodeMeaning = meaning
    return item
