"""From a DICOM dataset's pixel data to a display image, the way a viewer would show it.

The pipeline, per PS3.3 C.11 (each step a pure function on arrays):

1. decode frame 1 of the pixel data (every transfer syntax in :data:`SUPPORTED_TRANSFER_SYNTAXES`,
   through pydicom with pylibjpeg/openjpeg/libjpeg); a multi-frame image is analysed on its
   first frame only, and the result says so;
2. keep only the stored bits (BitsStored < BitsAllocated), sign-extended for signed data;
3. mark the padding (PixelPaddingValue, up to PixelPaddingRangeLimit);
4. the Modality LUT (Rescale Slope/Intercept or the Modality LUT Sequence);
5. the VOI LUT Sequence when present, else the first window (LINEAR, LINEAR_EXACT or SIGMOID),
   else a window from robust percentiles of the non-padding pixels;
6. MONOCHROME1 (or a Presentation LUT Shape of INVERSE) is inverted, so that 1.0 is white;
7. padding is set to black.

The result is a float32 image in [0, 1] at the source resolution.  Resizing for the model is
:mod:`inference.vision_input`'s job.

``pixels="mimic-cxr-jpg"`` (``gazex.json`` ``image.pixels``) makes instead the image GazeX was
trained on: MIMIC-CXR-JPG's conversion as its maintainers published it (MIT-LCP/mimic-cxr
issue #16): the stored values of frame 1 (no Modality LUT, window or padding), min-max scaled
to 8 bits (truncated), inverted for MONOCHROME1, histogram-equalised exactly as OpenCV's
``cv2.equalizeHist`` (:func:`equalize_hist`), then optionally a JPEG round trip.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.processing import apply_modality_lut, apply_voi
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from inference.config import PIXEL_MODES
from inference.engine import InputImageError

logger = logging.getLogger(__name__)

FloatImage = npt.NDArray[np.float32]

#: The transfer syntaxes whose pixel data this package decodes.
SUPPORTED_TRANSFER_SYNTAXES: tuple[UID, ...] = (
    ImplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    JPEG2000Lossless,
    JPEG2000,
    RLELossless,
)
# HTJ2K (1.2.840.10008.1.2.4.201-203) has a decoder in pylibjpeg-openjpeg but no sample or
# encoder here to test it with; it joins the list when a test can prove it.

#: Percentiles of the non-padding pixels used as a window when the image carries none.
ROBUST_PERCENTILES = (0.5, 99.5)


class PixelDataError(InputImageError):
    """The pixel data cannot be turned into an image for the model; the message says why.

    An input error: the same data fails the same way on every try.
    """


class _PluginFailuresAtDebug(logging.Filter):
    """pydicom logs each decoding plugin's failure with its traceback at ERROR before it raises one
    error naming every plugin's message; that error is ours to report (once, without a traceback),
    so those per-plugin records are kept at DEBUG, without their traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and record.exc_info and record.funcName == "_decode_frame":
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            record.exc_info, record.exc_text = None, None
        return True


_DECODER_LOGGER = "pydicom.pixels.decoders.base"
if not any(isinstance(f, _PluginFailuresAtDebug) for f in logging.getLogger(_DECODER_LOGGER).filters):
    logging.getLogger(_DECODER_LOGGER).addFilter(_PluginFailuresAtDebug())


@dataclass(frozen=True)
class DisplayImage:
    """A grey-scale image in [0, 1] (0 black, 1 white) at the source resolution.

    ``notes`` records anything the reader should know about how it was made (first frame of
    several, percentile window, ...); it never holds patient data.
    """

    pixels: FloatImage
    notes: tuple[str, ...] = ()

    @property
    def rows(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def columns(self) -> int:
        return int(self.pixels.shape[1])


# -- pure steps ------------------------------------------------------------------------------


def stored_values(raw: npt.NDArray[np.integer], bits_stored: int, signed: bool) -> npt.NDArray[np.int64]:
    """Only the ``bits_stored`` low bits of each value, sign-extended when ``signed``.

    Idempotent: values already masked (or sign-extended) come back unchanged.
    """
    if not 1 <= bits_stored <= 32:
        raise PixelDataError(f"BitsStored {bits_stored} is outside 1..32")
    values = raw.astype(np.int64) & ((1 << bits_stored) - 1)
    if signed:
        values = np.where(values >= (1 << (bits_stored - 1)), values - (1 << bits_stored), values)
    return values


def padding_mask(
    stored: npt.NDArray[np.int64], padding_value: int | None, range_limit: int | None
) -> npt.NDArray[np.bool_]:
    """True where a pixel is padding: equal to ``padding_value``, or between it and ``range_limit``."""
    if padding_value is None:
        return np.zeros(stored.shape, dtype=bool)
    if range_limit is None:
        return np.asarray(stored == padding_value)
    low, high = sorted((padding_value, range_limit))
    return np.asarray((stored >= low) & (stored <= high))


def apply_window(values: npt.NDArray[np.floating], center: float, width: float, function: str = "LINEAR") -> FloatImage:
    """A VOI window (PS3.3 C.11.2.1.2) mapping ``values`` to [0, 1]."""
    x = values.astype(np.float64)
    function = function.upper()
    if function == "SIGMOID":
        if width <= 0:
            raise ValueError(f"window width must be positive, got {width}")
        out = 1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
    elif function == "LINEAR_EXACT":
        if width <= 0:
            raise ValueError(f"window width must be positive, got {width}")
        out = (x - center) / width + 0.5
    elif function == "LINEAR":
        if width < 1:
            raise ValueError(f"a LINEAR window width must be at least 1, got {width}")
        out = (x >= center - 0.5).astype(np.float64) if width == 1 else (x - (center - 0.5)) / (width - 1) + 0.5
    else:
        raise ValueError(f"unknown VOI LUT Function {function!r}")
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def percentile_window(
    values: npt.NDArray[np.floating],
    valid: npt.NDArray[np.bool_],
    percentiles: tuple[float, float] = ROBUST_PERCENTILES,
) -> FloatImage:
    """Map ``values`` to [0, 1] between robust percentiles of the ``valid`` pixels."""
    sample = values[valid]
    if sample.size == 0:
        return np.zeros(values.shape, dtype=np.float32)
    low, high = (float(v) for v in np.percentile(sample, percentiles))
    if high <= low:
        return np.where(values > low, 1.0, 0.0).astype(np.float32)
    return np.clip((values.astype(np.float64) - low) / (high - low), 0.0, 1.0).astype(np.float32)


def rgb_luminance(rgb: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
    """ITU-R BT.601 luma of an (rows, columns, 3) array."""
    weights = np.array([0.299, 0.587, 0.114])
    return np.asarray(rgb.astype(np.float64) @ weights)


def equalize_hist(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """Histogram equalisation of an 8-bit image, bit for bit what OpenCV's ``cv2.equalizeHist`` gives.

    OpenCV (``modules/imgproc/src/histogram.cpp``): the lowest occupied level ``i`` maps to 0;
    an image of one level keeps it; otherwise level ``j`` maps to the cumulative count above
    ``i`` times ``255 / (total - count[i])``, both in float32, rounded half to even and saturated.
    """
    if image.dtype != np.uint8 or image.ndim != 2:
        raise ValueError(f"equalize_hist takes a 2-D uint8 image, got {image.ndim}-D {image.dtype}")
    if image.size == 0:
        return image.copy()
    counts = np.bincount(image.ravel(), minlength=256)
    first = int(np.flatnonzero(counts)[0])
    total = int(image.size)
    if counts[first] == total:
        return np.full(image.shape, first, dtype=np.uint8)
    scale = np.float32(255.0) / np.float32(total - int(counts[first]))
    cumulative = np.cumsum(counts).astype(np.int64) - int(counts[first])  # the sum after ``first``
    mapped = np.rint(cumulative.astype(np.float32) * scale)
    lut = np.clip(mapped, 0, 255).astype(np.uint8)
    lut[: first + 1] = 0
    result: npt.NDArray[np.uint8] = lut[image]
    return result


def min_max_uint8(values: npt.NDArray[np.integer | np.floating]) -> npt.NDArray[np.uint8]:
    """``values`` min-max scaled to 0..255 and truncated, as MIMIC-CXR-JPG's conversion does it.

    A constant image, where that conversion divides by zero, is all 0.
    """
    shifted = values - values.min()
    peak = shifted.max()
    if peak == 0:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled: npt.NDArray[np.uint8] = ((shifted / peak) * 255).astype(np.uint8)
    return scaled


def jpeg_round_trip(image: npt.NDArray[np.uint8], quality: int) -> npt.NDArray[np.uint8]:
    """``image`` encoded as a baseline grey JPEG at ``quality`` (libjpeg's scale, 1..100) and decoded."""
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be from 1 to 100, got {quality}")
    buffer = io.BytesIO()
    Image.fromarray(image, mode="L").save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        result: npt.NDArray[np.uint8] = np.asarray(decoded.convert("L"), dtype=np.uint8)
    return result


def mimic_cxr_jpg(stored: npt.NDArray[np.integer | np.floating], monochrome1: bool) -> npt.NDArray[np.uint8]:
    """MIMIC-CXR-JPG's 8-bit image of stored values: min-max, MONOCHROME1 inverted, equalised."""
    scaled = min_max_uint8(stored)
    if monochrome1:
        scaled = np.bitwise_not(scaled)
    return equalize_hist(scaled)


# -- the dataset-level pipeline --------------------------------------------------------------


def _first(value: object) -> float:
    """The first value of a possibly multi-valued numeric element."""
    if isinstance(value, list | tuple) or (hasattr(value, "__iter__") and not isinstance(value, str | bytes)):
        items = list(value)
        if not items:
            raise ValueError("empty multi-valued element")
        return float(items[0])
    return float(value)  # type: ignore[arg-type]


def _decode_first_frame(ds: Dataset, where: str) -> npt.NDArray[np.generic]:
    file_meta = getattr(ds, "file_meta", None)
    syntax = getattr(file_meta, "TransferSyntaxUID", None) if file_meta is not None else None
    if syntax is None:
        raise PixelDataError(f"{where}: the dataset has no Transfer Syntax UID in its file meta information")
    syntax = UID(str(syntax))
    if syntax not in SUPPORTED_TRANSFER_SYNTAXES:
        raise PixelDataError(
            f"{where}: transfer syntax {syntax} ({syntax.name}) is not supported; "
            f"supported: {', '.join(uid.name for uid in SUPPORTED_TRANSFER_SYNTAXES)}"
        )
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError as exc:
        raise PixelDataError(f"{where}: no pixel data decoder for {syntax.name}: {exc}") from exc
    if not decoder.is_available:
        raise PixelDataError(
            f"{where}: the decoder for {syntax.name} is not installed; install pylibjpeg, "
            "pylibjpeg-openjpeg and pylibjpeg-libjpeg"
        )
    try:
        array, _ = decoder.as_array(ds, index=0)
    except (ValueError, RuntimeError, AttributeError, KeyError, TypeError, NotImplementedError) as exc:
        raise PixelDataError(f"{where}: cannot decode the pixel data ({syntax.name}): {exc}") from exc
    return array


def display_image(ds: Dataset, pixels: str = "voi", jpeg_quality: int | None = None) -> DisplayImage:
    """The display image of frame 1 of ``ds``; raises :class:`PixelDataError` when impossible.

    ``pixels`` is ``"voi"`` (the viewer's image, steps 1 to 7 above) or ``"mimic-cxr-jpg"``
    (MIMIC-CXR-JPG's conversion, then a JPEG round trip at ``jpeg_quality`` unless it is None).
    The error carries the image's SOP Instance UID (``sop_instance_uid``) and names it in its message.
    """
    if pixels not in PIXEL_MODES:
        raise ValueError(f"pixels must be one of {', '.join(PIXEL_MODES)}, got {pixels!r}")
    if jpeg_quality is not None and pixels != "mimic-cxr-jpg":
        raise ValueError('jpeg_quality applies only to pixels "mimic-cxr-jpg"')
    uid = ds.get("SOPInstanceUID")
    try:
        return _display_image(ds, f"SOP instance {uid if uid else '(no SOPInstanceUID)'}", pixels, jpeg_quality)
    except PixelDataError as exc:
        if exc.sop_instance_uid is None and uid:
            exc.sop_instance_uid = str(uid)
        raise


def _mimic_display(
    array: npt.NDArray[np.generic], photometric: str, jpeg_quality: int | None, notes: list[str]
) -> DisplayImage:
    image = mimic_cxr_jpg(array, photometric == "MONOCHROME1")  # type: ignore[arg-type]
    notes.append("MIMIC-CXR-JPG pixels: stored values min-max scaled, histogram-equalised")
    if jpeg_quality is not None:
        image = jpeg_round_trip(image, jpeg_quality)
        notes.append(f"JPEG round trip at quality {jpeg_quality}")
    pixels = (image.astype(np.float32) / np.float32(255.0)).astype(np.float32)
    return DisplayImage(pixels=np.ascontiguousarray(pixels), notes=tuple(notes))


def _colour_display(
    array: npt.NDArray[np.generic],
    shape: tuple[int, int],
    bits_stored: int,
    photometric: str,
    where: str,
    mode: str,
    jpeg_quality: int | None,
    notes: list[str],
) -> DisplayImage:
    """A colour image's luminance: scaled to [0, 1] by its bit depth, or through MIMIC's conversion."""
    if array.shape != (*shape, 3):
        raise PixelDataError(f"{where}: decoded shape {array.shape} does not match {shape[0]} x {shape[1]} x 3")
    luminance = rgb_luminance(array.astype(np.float64))
    notes.append(f"colour image ({photometric}) converted to luminance")
    if mode == "mimic-cxr-jpg":
        return _mimic_display(luminance, "RGB", jpeg_quality, notes)
    maximum = float((1 << bits_stored) - 1)
    pixels = np.clip(luminance / maximum, 0.0, 1.0).astype(np.float32)
    return DisplayImage(pixels=pixels, notes=tuple(notes))


def _display_image(ds: Dataset, where: str, mode: str = "voi", jpeg_quality: int | None = None) -> DisplayImage:
    if "PixelData" not in ds:
        raise PixelDataError(f"{where}: the dataset has no Pixel Data, so it is not an image")
    notes: list[str] = []
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
        bits_allocated = int(ds.BitsAllocated)
        bits_stored = int(ds.get("BitsStored", bits_allocated))
        signed = int(ds.get("PixelRepresentation", 0)) == 1
        samples = int(ds.get("SamplesPerPixel", 1))
        photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (AttributeError, TypeError, ValueError) as exc:
        raise PixelDataError(f"{where}: the Image Pixel module is incomplete or invalid: {exc}") from exc
    if rows <= 0 or columns <= 0:
        raise PixelDataError(f"{where}: Rows and Columns must be positive, got {rows} x {columns}")

    if frames > 1:
        notes.append(f"multi-frame image with {frames} frames: analysed frame 1 only")
        logger.warning("%s: multi-frame image with %d frames; analysing frame 1 only", where, frames)

    array = _decode_first_frame(ds, where)

    if samples == 3:
        return _colour_display(array, (rows, columns), bits_stored, photometric, where, mode, jpeg_quality, notes)
    if samples != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise PixelDataError(
            f"{where}: PhotometricInterpretation {photometric} with {samples} samples per pixel is not supported; "
            "expected MONOCHROME1, MONOCHROME2 or RGB"
        )
    if array.shape != (rows, columns):
        raise PixelDataError(f"{where}: decoded shape {array.shape} does not match {rows} x {columns}")
    if not np.issubdtype(array.dtype, np.integer):
        raise PixelDataError(f"{where}: float pixel data is not supported")

    stored = stored_values(array.astype(np.int64), bits_stored, signed)
    if mode == "mimic-cxr-jpg":
        return _mimic_display(stored, photometric, jpeg_quality, notes)
    padding_value = ds.get("PixelPaddingValue")
    range_limit = ds.get("PixelPaddingRangeLimit")
    padding = padding_mask(
        stored,
        int(padding_value) if padding_value is not None else None,
        int(range_limit) if range_limit is not None else None,
    )

    try:
        modality = np.asarray(apply_modality_lut(stored, ds), dtype=np.float64)
    except (ValueError, TypeError, AttributeError, IndexError) as exc:
        raise PixelDataError(f"{where}: cannot apply the Modality LUT: {exc}") from exc

    display = _voi(stored, modality, padding, ds, where, notes)

    presentation_shape = str(ds.get("PresentationLUTShape", "")).strip().upper()
    if photometric == "MONOCHROME1" or presentation_shape == "INVERSE":
        display = (1.0 - display).astype(np.float32)
    if padding.any():
        display = np.where(padding, np.float32(0.0), display).astype(np.float32)
    return DisplayImage(pixels=np.ascontiguousarray(display, dtype=np.float32), notes=tuple(notes))


def _voi(
    stored: npt.NDArray[np.int64],
    modality: npt.NDArray[np.float64],
    padding: npt.NDArray[np.bool_],
    ds: Dataset,
    where: str,
    notes: list[str],
) -> FloatImage:
    """Step 5: the VOI LUT Sequence, else the first window, else robust percentiles."""
    if ds.get("VOILUTSequence"):
        try:
            descriptor = ds.VOILUTSequence[0].LUTDescriptor
            depth = int(descriptor[2])
            # A VOI LUT indexes the Modality LUT output; that is integral for the
            # Modality LUT Sequence and for identity rescale, the only cases PS3.3 allows.
            looked_up = apply_voi(np.rint(modality).astype(np.int64), ds, index=0)
        except (ValueError, TypeError, AttributeError, IndexError, KeyError, NotImplementedError) as exc:
            raise PixelDataError(f"{where}: the VOI LUT Sequence cannot be applied: {exc}") from exc
        return np.clip(np.asarray(looked_up, dtype=np.float64) / float((1 << depth) - 1), 0.0, 1.0).astype(np.float32)
    if "WindowCenter" in ds and "WindowWidth" in ds:
        try:
            center = _first(ds.WindowCenter)
            width = _first(ds.WindowWidth)
            function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR")
            return apply_window(modality, center, width, function)
        except (ValueError, TypeError) as exc:
            notes.append(f"window unusable ({exc}); used the {ROBUST_PERCENTILES} percentiles instead")
            logger.warning("%s: window unusable (%s); using robust percentiles", where, exc)
    else:
        notes.append(f"no VOI LUT or window; used the {ROBUST_PERCENTILES} percentiles of the pixels")
    return percentile_window(modality, ~padding)
