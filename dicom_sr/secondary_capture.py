"""Optional: RGB Secondary Capture images with the overlay burned in, a last-resort fallback.

One per analysed image, same size as the source: the source displayed with its own window
(inverted when MONOCHROME1), the observation boxes and labels in yellow, the inspection
trajectory with numbered fixations in cyan, and a banner "AI GENERATED - NOT FOR DIAGNOSIS".
Burned In Annotation is YES.  This is the only output that needs the source's pixel data.
"""

from __future__ import annotations

import itertools

import highdicom as hd
import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_modality_lut
from pydicom.pixels.utils import pixel_array

from dicom_sr import raster
from dicom_sr.common import (
    SERIES_DESCRIPTIONS,
    EncodeContext,
    EncodeError,
    ImageWork,
    copy_series_anatomy,
    finalize,
)

FINDING_RGB: raster.RGB = (255, 210, 0)
TRAJECTORY_RGB: raster.RGB = (0, 200, 255)
BANNER = "AI GENERATED - NOT FOR DIAGNOSIS"


def display_gray(source: Dataset) -> npt.NDArray[np.uint8]:
    """The source as 8-bit grey levels the way a viewer shows it by default.

    Modality LUT, then the first Window Center/Width (the whole value range when there is
    none), then inverted for MONOCHROME1.
    """
    try:
        stored = pixel_array(source)  # unlike source.pixel_array, leaves no cache on the caller's dataset
    except Exception as exc:  # pydicom raises many types for missing/undecodable pixel data
        raise EncodeError(
            f"Cannot decode the pixel data of source {source.get('SOPInstanceUID')} for the 'sc' output "
            f"({type(exc).__name__}: {exc}); install its decoder or leave 'sc' out of the outputs."
        ) from exc
    values = np.asarray(apply_modality_lut(stored, source), dtype=np.float32)
    if values.ndim != 2:
        raise EncodeError(
            f"Source {source.get('SOPInstanceUID')} has pixel data of shape {values.shape}; "
            "the 'sc' output needs a single-frame grayscale image."
        )
    center, width = source.get("WindowCenter"), source.get("WindowWidth")
    if center is not None and width is not None:
        c, w = _window_value(center), max(1.0, _window_value(width))
        low, high = c - 0.5 - (w - 1) / 2, c - 0.5 + (w - 1) / 2
    else:
        low, high = float(values.min()), float(values.max())
    span = max(high - low, 1e-6)
    scaled = np.clip((values - low) / span, 0.0, 1.0) * 255.0
    gray: npt.NDArray[np.uint8] = np.rint(scaled).astype(np.uint8)
    if str(source.get("PhotometricInterpretation")) == "MONOCHROME1":
        gray = np.subtract(255, gray, dtype=np.uint8)
    return gray


def _window_value(value: object) -> float:
    if isinstance(value, (str, int, float)):
        return float(value)
    return float(value[0])  # type: ignore[index]


def burn_in(ctx: EncodeContext, image: ImageWork, gray: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """An RGB copy of ``gray`` with the findings, the trajectory and the banner drawn on it."""
    rgb = np.repeat(gray[:, :, None], 3, axis=2)
    longest = max(image.rows, image.columns)
    width = max(2, round(longest / 700))
    scale = max(2, round(longest / 450))
    text_height = raster.GLYPH_HEIGHT * scale
    for placed in image.present:
        box = placed.observation
        if box is None:
            continue
        raster.draw_box(rgb, box.x0, box.y0, box.x1, box.y1, width, FINDING_RGB)
        label = ctx.text(placed.label_text, single_line=True)
        top = int(box.y0) - text_height - 2 * scale
        raster.draw_text(rgb, label, int(box.x0), top if top >= 0 else int(box.y0) + 2 * scale, scale, FINDING_RGB)
    points = [(f.point.x, f.point.y) for f in image.trajectory]
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        raster.draw_line(rgb, x0, y0, x1, y1, width, TRAJECTORY_RGB)
    radius = max(4.0, longest / 160)
    for fixation in image.trajectory:
        x, y = fixation.point.x, fixation.point.y
        raster.draw_ring(rgb, x, y, radius, width, TRAJECTORY_RGB)
        raster.draw_text(
            rgb, str(fixation.index), int(x + radius + scale), int(y - text_height / 2), scale, TRAJECTORY_RGB
        )
    banner_scale = scale + 1
    banner_height = raster.GLYPH_HEIGHT * banner_scale
    raster.draw_text(
        rgb,
        ctx.text(ctx.disclaimer, single_line=True).upper() if ctx.model.demo else BANNER,
        2 * banner_scale,
        image.rows - banner_height - 2 * banner_scale,
        banner_scale,
        (255, 255, 255),
        background=(0, 0, 0),
    )
    return rgb


def build_secondary_capture(ctx: EncodeContext, image: ImageWork) -> Dataset:
    source = image.source
    rgb = burn_in(ctx, image, display_gray(image.original))
    orientation = [str(v) for v in (source.get("PatientOrientation") or [])]
    equipment = ctx.equipment
    sc = hd.sc.SCImage(
        pixel_array=rgb,
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        study_instance_uid=str(source.StudyInstanceUID),
        series_instance_uid=ctx.uids.uid("sc", "series"),
        series_number=ctx.settings.series_numbers.sc,
        sop_instance_uid=ctx.uids.uid("sc", "instance", image.sop_instance_uid),
        instance_number=image.number,
        manufacturer=equipment.manufacturer,
        patient_id=source.PatientID,
        patient_name=None,  # copied below with the rest of the patient module, unvalidated
        patient_birth_date=source.PatientBirthDate,
        patient_sex=source.PatientSex or None,
        accession_number=source.AccessionNumber,
        study_id=source.StudyID,
        study_date=source.StudyDate,
        study_time=source.StudyTime,
        referring_physician_name=None,  # copied below
        # highdicom insists on an orientation for the PATIENT coordinate system; the source's
        # own value (possibly empty) replaces this placeholder below.
        patient_orientation=(orientation[0], orientation[1]) if len(orientation) == 2 else ("L", "F"),
        contributing_equipment=ctx.contributing_equipment(),
        series_description=SERIES_DESCRIPTIONS["sc"],
        specific_character_set=source.get("SpecificCharacterSet"),
        manufacturer_model_name=equipment.model_name,
        software_versions=equipment.software_version,
        device_serial_number=equipment.serial_number,
        institution_name=equipment.institution_name,
        institutional_department_name=equipment.department_name,
    )
    sc.copy_patient_and_study_information(source)
    sc.PatientOrientation = list(source.get("PatientOrientation") or [])
    sc.BurnedInAnnotation = "YES"
    sc.ConversionType = "WSD"
    sc.ImageComments = ctx.text(f"{ctx.disclaimer}. {ctx.content_description()}", max_length=10240)
    reference = Dataset()
    reference.ReferencedSOPClassUID = image.sop_class_uid
    reference.ReferencedSOPInstanceUID = image.sop_instance_uid
    sc.SourceImageSequence = [reference]
    copy_series_anatomy(sc, source, unknown_laterality_empty=True)
    return finalize(sc, ctx, "sc", SERIES_DESCRIPTIONS["sc"])


def build_secondary_captures(ctx: EncodeContext) -> list[Dataset]:
    return [build_secondary_capture(ctx, image) for image in ctx.images]
