"""Segmentations: one per analysed image, pixel-aligned with it, that OHIF v3 can open.

Segments, in this order:

1. one per present finding with an observation box: the box;
2. "Model attention": where the model looked. ``ImageAnalysis.attention`` when the engine gives
   it; otherwise a deterministic density built here from the inspection trajectory (a Gaussian
   at each fixation) and the visual clue boxes of every finding, scaled to a maximum of 1.

The SEG is FRACTIONAL (PROBABILITY, maximum 255).  By default every stored value is one of two
levels, 0 or 255: a box holds the pixels it covers at least half of, the attention segment the
pixels where the density is at least half its peak.  OHIF 3.13 opens exactly these fractional
SEGs (it reads them as binary) and refuses any other value.  A BINARY SEG (1 bit per pixel)
would say the same, but neither OHIF 3.13 nor Orthanc 1.10 read one whose frames do not fill
whole bytes (an image width that is not a multiple of 8, like the NEMA chest CR's 1841 columns).
``EncodeSettings.seg_exact_fractions`` keeps the exact values instead (the fraction of each
edge pixel a box covers, the attention density), for consumers that read fractional SEGs.

Radiographs have no frame of reference, so the SEG has none either; each frame maps onto its
source pixel for pixel through the Derivation Image functional group.  OHIF v3 also needs Pixel
Measures and Plane Orientation (Patient) functional groups, which the Segmentation IOD provides
for SEGs with a frame of reference: :func:`add_plane_groups` writes them, shared, with the
source's pixel spacing and the identity orientation an image without orientation has in OHIF
(docs/outputs.md, "The SEG", explains the choice; dciodvfy reports nothing about them).  Patient
Orientation is copied from the source.  Every segment carries an Algorithm Identification
Sequence, and finding segments carry the same tracking identifier and UID as their group in
the SR.

How the pixels are written (:func:`segmentation`): highdicom builds the whole IOD (modules,
functional groups, segment descriptions, references) from a 1 x 1 all-zero placeholder, and
the frames are then written here.  Handing highdicom the float array instead makes it check
every value with ``np.unique`` and an overlap sum over all segments, then copy every frame
three times: about 0.4 s for one 2k x 2k image against a total budget of 0.2 s (see
``benchmarks/encode.py``).  The quantisation is highdicom's own, ``round(value * 255)``, and the
two levels are taken from it (a stored value of at least 128 is a fraction of at least one
half); unit tests compare both paths, exact and two-level, attribute by attribute and byte for
byte.
"""

from __future__ import annotations

import math
from typing import Any

import highdicom as hd
import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from dicom_sr import codes
from dicom_sr.common import SERIES_DESCRIPTIONS, EncodeContext, ImageWork, copy_series_anatomy, finalize
from inference.results import Box, Point

MAX_FRACTIONAL_VALUE = 255
#: In the two-level encoding a pixel is in a segment from this stored value on: a fraction of at
#: least one half (the quantisation rounds 0.5 * 255 to 128).
LEVEL_THRESHOLD = 128
#: Pixel Measures for OHIF when the source has no spacing, and its Slice Thickness when the
#: source has none (a projection radiograph has no slice; highdicom's reader requires a value).
NOMINAL_PIXEL_SPACING = ("1", "1")
NOMINAL_SLICE_THICKNESS = "1"
#: Plane Orientation (Patient) for OHIF: rows and columns as in the source image.
IDENTITY_ORIENTATION = (1, 0, 0, 0, 1, 0)
#: Standard deviation of the Gaussian drawn at each fixation, as a fraction of the longer image side.
FIXATION_SIGMA_FRACTION = 0.04
#: Weight of a clue box in the derived density, relative to a fixation's peak.
CLUE_WEIGHT = 0.5

_FINDING_COLOR = hd.color.CIELabColor.from_rgb(255, 210, 0)
_ATTENTION_COLOR = hd.color.CIELabColor.from_rgb(255, 64, 64)


def coverage(low: float, high: float, size: int) -> npt.NDArray[np.float32]:
    """For each of ``size`` unit pixels, the fraction of it that [low, high) covers."""
    edges = np.arange(size, dtype=np.float64)
    covered = np.minimum(high, edges + 1.0) - np.maximum(low, edges)
    result: npt.NDArray[np.float32] = np.clip(covered, 0.0, 1.0).astype(np.float32)
    return result


def box_fraction(box: Box, rows: int, columns: int) -> npt.NDArray[np.float32]:
    """The fraction of each pixel that ``box`` covers, shape (rows, columns)."""
    return np.outer(coverage(box.y0, box.y1, rows), coverage(box.x0, box.x1, columns))


def quantize(fraction: npt.NDArray[np.floating]) -> npt.NDArray[np.uint8]:
    """Fractions in [0, 1] -> stored values, exactly as highdicom does: round(f * 255)."""
    stored = np.empty(fraction.shape, dtype=np.uint8)
    quantize_into(stored, np.array(fraction, dtype=np.float32))
    return stored


def quantize_into(stored: npt.NDArray[np.uint8], fraction: npt.NDArray[np.float32]) -> None:
    """:func:`quantize` written into ``stored``; ``fraction`` (float32) is used as scratch space."""
    np.multiply(fraction, np.float32(MAX_FRACTIONAL_VALUE), out=fraction)
    np.rint(fraction, out=fraction)
    np.copyto(stored, fraction, casting="unsafe")


def two_levels_into(stored: npt.NDArray[np.uint8]) -> None:
    """Stored values -> 0 or the maximum, in place: the maximum from :data:`LEVEL_THRESHOLD` on."""
    np.multiply(stored >= LEVEL_THRESHOLD, MAX_FRACTIONAL_VALUE, out=stored, casting="unsafe")


def two_levels(stored: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """:func:`two_levels_into` on a copy."""
    result = stored.copy()
    two_levels_into(result)
    return result


def fill_box(frame: npt.NDArray[np.uint8], box: Box, *, exact: bool = True) -> None:
    """Write the stored values of a box segment into an all-zero frame, touching only the box.

    ``exact``: the fraction of each pixel the box covers; otherwise two levels (:func:`two_levels`).
    """
    rows, columns = frame.shape
    row_slice, column_slice = _box_slices(box, rows, columns)
    r0, r1, c0, c1 = row_slice.start, row_slice.stop, column_slice.start, column_slice.stop
    if r1 > r0 and c1 > c0:
        ys = coverage(box.y0 - r0, box.y1 - r0, r1 - r0)
        xs = coverage(box.x0 - c0, box.x1 - c0, c1 - c0)
        quantize_into(frame[r0:r1, c0:c1], np.outer(ys, xs))
        if not exact:
            two_levels_into(frame[r0:r1, c0:c1])


def box_frame(box: Box, rows: int, columns: int, *, exact: bool = True) -> npt.NDArray[np.uint8]:
    """The stored frame of a box segment."""
    frame = np.zeros((rows, columns), dtype=np.uint8)
    fill_box(frame, box, exact=exact)
    return frame


def fixation_sigma(rows: int, columns: int) -> float:
    return max(1.0, FIXATION_SIGMA_FRACTION * max(rows, columns))


def derived_attention(
    rows: int, columns: int, fixations: tuple[Point, ...], clues: tuple[Box, ...]
) -> npt.NDArray[np.float32]:
    """A density in [0, 1] from Gaussians at the fixations plus the clue boxes.

    Every term is separable (a product of a function of the row and one of the column), so
    the sum of K terms is one (rows x K) @ (K x columns) matrix product.
    """
    terms = len(fixations) + len(clues)
    if terms == 0:
        return np.zeros((rows, columns), dtype=np.float32)
    by_row = np.empty((rows, terms), dtype=np.float32)
    by_column = np.empty((terms, columns), dtype=np.float32)
    sigma = fixation_sigma(rows, columns)
    y = np.arange(rows, dtype=np.float32) + 0.5
    x = np.arange(columns, dtype=np.float32) + 0.5
    for k, point in enumerate(fixations):
        by_row[:, k] = np.exp(-0.5 * ((y - point.y) / sigma) ** 2)
        by_column[k, :] = np.exp(-0.5 * ((x - point.x) / sigma) ** 2)
    for k, box in enumerate(clues, start=len(fixations)):
        by_row[:, k] = CLUE_WEIGHT * coverage(box.y0, box.y1, rows)
        by_column[k, :] = coverage(box.x0, box.x1, columns)
    density = by_row @ by_column
    peak = float(density.max())
    if peak > 0:
        density /= peak
    return np.clip(density, 0.0, 1.0, out=density)


def attention_fraction(image: ImageWork) -> tuple[npt.NDArray[np.float32], str]:
    """The attention density of an image and a note on where it came from."""
    given = image.analysis.attention
    if given is not None:
        values = np.nan_to_num(np.asarray(given, dtype=np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        return np.clip(values, 0.0, 1.0), "model"
    sigma = fixation_sigma(image.rows, image.columns)
    density = derived_attention(image.rows, image.columns, tuple(f.point for f in image.trajectory), image.all_clues)
    return density, f"derived: gaussian at each fixation (sigma {sigma:.1f} px) plus clue boxes x {CLUE_WEIGHT}"


def _algorithm(ctx: EncodeContext, extra: dict[str, str] | None = None) -> hd.AlgorithmIdentificationSequence:
    parameters = dict(p.split("=", 1) for p in ctx.algorithm_parameters())
    parameters.update(extra or {})
    return hd.AlgorithmIdentificationSequence(
        name=ctx.text(ctx.model.name, max_length=64, single_line=True),
        family=codes.ALGORITHM_FAMILY,
        version=ctx.text(ctx.model.version, max_length=64, single_line=True),
        source=ctx.text(ctx.model.manufacturer, max_length=64, single_line=True),
        parameters={k: ctx.text(v, max_length=1024, single_line=True) for k, v in parameters.items()},
    )


def _box_slices(box: Box, rows: int, columns: int) -> tuple[slice, slice]:
    return (
        slice(max(0, math.floor(box.y0)), min(rows, math.ceil(box.y1))),
        slice(max(0, math.floor(box.x0)), min(columns, math.ceil(box.x1))),
    )


def _overlap(frames: list[npt.NDArray[np.uint8]], boxes: list[Box]) -> str:
    """SegmentsOverlap: YES when two segments have a non-zero value at the same pixel.

    Only the pixels where both can be non-zero are looked at: the intersection of the boxes,
    or the box for a box and the attention segment (the last frame, anywhere in the image).
    """
    rows, columns = frames[-1].shape
    extents = [_box_slices(box, rows, columns) for box in boxes] + [(slice(0, rows), slice(0, columns))]
    for i in range(len(frames)):
        for j in range(i + 1, len(frames)):
            (ri, ci), (rj, cj) = extents[i], extents[j]
            region = (
                slice(max(ri.start, rj.start), min(ri.stop, rj.stop)),
                slice(max(ci.start, cj.start), min(ci.stop, cj.stop)),
            )
            if region[0].stop <= region[0].start or region[1].stop <= region[1].start:
                continue
            if np.any((frames[i][region] > 0) & (frames[j][region] > 0)):
                return "YES"
    return "NO"


def _without_pixel_spacing(source: Dataset) -> Dataset:
    """The source header without Pixel Spacing, so highdicom writes no Pixel Measures.

    A radiograph has no frame of reference and no slice thickness; from a spacing alone
    highdicom writes a Pixel Measures item without Slice Thickness, which highdicom's own
    reader then rejects. The SEG is pixel-aligned with its source, whose spacing applies.
    """
    if "PixelSpacing" not in source:
        return source
    header = Dataset()
    header.update(source)
    del header.PixelSpacing
    return header


def add_plane_groups(seg: Dataset, source: Dataset) -> None:
    """Shared Pixel Measures and Plane Orientation (Patient) functional groups, which OHIF v3 needs.

    OHIF's SEG viewport reads Pixel Measures from the shared functional groups and fails
    without them; its loader needs an Image Orientation (Patient) equal to the source image's,
    which for an image without one is the identity.  Pixel Spacing is the source's (else its
    Imager Pixel Spacing, else nominal); Slice Thickness the source's, else nominal.  A value
    that is not a positive number (the NEMA chest CR's Pixel Spacing is 0\\0) counts as absent.
    Nothing else changes: frames still map onto the source through the Derivation Image group.
    """
    spacing = next(
        (value for value in (source.get("PixelSpacing"), source.get("ImagerPixelSpacing")) if _positive(value, 2)),
        NOMINAL_PIXEL_SPACING,
    )
    thickness = source.get("SliceThickness")
    measures = Dataset()
    measures.PixelSpacing = [str(value) for value in spacing]
    measures.SliceThickness = str(thickness) if _positive(thickness, 1) else NOMINAL_SLICE_THICKNESS
    orientation = Dataset()
    orientation.ImageOrientationPatient = list(IDENTITY_ORIENTATION)
    if not seg.get("SharedFunctionalGroupsSequence"):
        seg.SharedFunctionalGroupsSequence = [Dataset()]
    shared = seg.SharedFunctionalGroupsSequence[0]
    shared.PixelMeasuresSequence = [measures]
    shared.PlaneOrientationSequence = [orientation]


def _positive(value: Any, count: int) -> bool:
    """``value`` holds ``count`` numbers, all greater than zero."""
    if value is None or value == "":
        return False
    values = list(value) if isinstance(value, (list, tuple, MultiValue)) else [value]
    try:
        return len(values) == count and all(float(v) > 0 for v in values)
    except (TypeError, ValueError):
        return False


def _frame_segment(seg: Dataset, frame: Dataset) -> int:
    """The segment a frame belongs to (highdicom moves it to the shared group when there is one)."""
    item = frame if "SegmentIdentificationSequence" in frame else seg.SharedFunctionalGroupsSequence[0]
    return int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)


def segmentation(
    source: Dataset,
    stack: npt.NDArray[np.uint8],
    descriptions: list[hd.seg.SegmentDescription],
    *,
    segments_overlap: str,
    **kwargs: Any,
) -> hd.seg.Segmentation:
    """highdicom's FRACTIONAL (PROBABILITY) Segmentation of ``source`` with the stored frames ``stack``.

    ``stack`` holds one frame of stored values (0-255) per segment, in segment order; the
    other keyword arguments go to ``highdicom.seg.Segmentation``.  highdicom builds the IOD
    from a 1 x 1 all-zero placeholder of a 1 x 1 copy of the source header, and the real size,
    frames and maximum fractional value are set afterwards: nothing else in a SEG without a
    frame of reference depends on them (a unit test compares the result with highdicom's own
    float path, attribute by attribute).  The placeholder keeps highdicom from checking,
    flattening, copying and joining every pixel of every frame just before we replace them.
    """
    rows, columns = stack.shape[1:]
    shape_only = Dataset()
    shape_only.update(_without_pixel_spacing(source))
    shape_only.add_new(0x00280010, "US", 1)  # Rows: a new element, the source's is shared
    shape_only.add_new(0x00280011, "US", 1)  # Columns
    placeholder = np.zeros((1, 1, 1, len(descriptions)), dtype=np.uint8)
    seg = hd.seg.Segmentation(
        source_images=[shape_only],
        pixel_array=placeholder,
        segmentation_type="FRACTIONAL",
        segment_descriptions=descriptions,
        fractional_type="PROBABILITY",
        max_fractional_value=1,  # so that highdicom does not scale the placeholder; set below
        omit_empty_frames=False,
        **kwargs,
    )
    seg.Rows, seg.Columns = rows, columns
    order = [_frame_segment(seg, f) for f in seg.PerFrameFunctionalGroupsSequence]
    natural = list(range(1, len(descriptions) + 1))
    if sorted(order) != natural:  # pragma: no cover - highdicom contract
        raise RuntimeError(f"highdicom laid out frames for segments {order}, expected one per segment")
    pixel_data = (stack if order == natural else stack[np.array(order) - 1]).tobytes()
    if len(pixel_data) % 2:
        pixel_data += b"\x00"
    seg.PixelData = pixel_data
    seg.MaximumFractionalValue = MAX_FRACTIONAL_VALUE
    seg.SegmentsOverlap = segments_overlap
    return seg


def build_seg(ctx: EncodeContext, image: ImageWork) -> Dataset:
    """The SEG of one image (two levels unless ``seg_exact_fractions``)."""
    rows, columns = image.rows, image.columns
    descriptions: list[hd.seg.SegmentDescription] = []
    boxes: list[Box] = []
    for placed in image.present:
        if placed.observation is None:
            continue
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=len(descriptions) + 1,
                segment_label=ctx.text(placed.label_text, max_length=64, single_line=True),
                segmented_property_category=codes.segment_category(placed.finding.label),
                segmented_property_type=codes.finding_code(placed.finding.label),
                algorithm_type="AUTOMATIC",
                algorithm_identification=_algorithm(ctx),
                tracking_uid=placed.tracking_uid,
                tracking_id=ctx.text(placed.tracking_id, max_length=64, single_line=True),
                display_color=_FINDING_COLOR,
            )
        )
        boxes.append(placed.observation)
    density, origin = attention_fraction(image)
    attention_parameters = {"attention": origin}
    if not ctx.settings.seg_exact_fractions:
        attention_parameters["levels"] = "255 from half the peak attention on; 0 below"
    attention_id = "Model attention" if len(ctx.images) == 1 else f"Model attention, image {image.number}"
    descriptions.append(
        hd.seg.SegmentDescription(
            segment_number=len(descriptions) + 1,
            segment_label="Model attention",
            segmented_property_category=codes.CATEGORY_SPATIAL,
            segmented_property_type=codes.MODEL_ATTENTION,
            algorithm_type="AUTOMATIC",
            algorithm_identification=_algorithm(ctx, attention_parameters),
            tracking_uid=ctx.uids.uid("tracking", image.sop_instance_uid, "attention"),
            tracking_id=attention_id,
            display_color=_ATTENTION_COLOR,
        )
    )
    # The stored frames, in segment order: the boxes, then the attention.
    exact = ctx.settings.seg_exact_fractions
    stack = np.zeros((len(descriptions), rows, columns), dtype=np.uint8)
    for frame, box in zip(stack, boxes, strict=False):
        fill_box(frame, box, exact=exact)
    quantize_into(stack[-1], density)
    if not exact:
        two_levels_into(stack[-1])

    equipment = ctx.equipment
    seg = segmentation(
        image.source,
        stack,
        descriptions,
        segments_overlap=_overlap(list(stack), boxes),
        series_instance_uid=ctx.uids.uid("seg", "series"),
        series_number=ctx.settings.series_numbers.seg,
        sop_instance_uid=ctx.uids.uid("seg", "instance", image.sop_instance_uid),
        instance_number=image.number,
        content_description=ctx.content_description(),
        content_label="GAZEX_AI",
        contributing_equipment=ctx.contributing_equipment(),
        content_date=ctx.when.date(),
        content_time=ctx.when.time(),
        series_description=SERIES_DESCRIPTIONS["seg"],
        manufacturer=equipment.manufacturer,
        manufacturer_model_name=equipment.model_name,
        software_versions=equipment.software_version,
        device_serial_number=equipment.serial_number,
        institution_name=equipment.institution_name,
        institutional_department_name=equipment.department_name,
    )
    add_plane_groups(seg, image.source)
    seg.PatientOrientation = list(image.source.get("PatientOrientation") or [])
    copy_series_anatomy(seg, image.source)
    return finalize(seg, ctx, "seg", SERIES_DESCRIPTIONS["seg"])


def build_segs(ctx: EncodeContext) -> list[Dataset]:
    return [build_seg(ctx, image) for image in ctx.images]
