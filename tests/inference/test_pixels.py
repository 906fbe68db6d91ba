"""The DICOM pixel pipeline: the real chest CR, and small synthetic images for each rule."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import MPEG2MPML, ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from inference.config import ImageSettings
from inference.geometry import DownscaledFrame
from inference.pixels import (
    PixelDataError,
    apply_window,
    display_image,
    padding_mask,
    percentile_window,
    stored_values,
)
from inference.vision_input import ImageProcessing, prepare_model_image

GAZEX_PROCESSING = ImageProcessing(min_pixels=56 * 56, max_pixels=768 * 768)


def region_mean(pixels: np.ndarray, rows: tuple[float, float], columns: tuple[float, float]) -> float:
    r, c = pixels.shape
    return float(pixels[int(rows[0] * r) : int(rows[1] * r), int(columns[0] * c) : int(columns[1] * c)].mean())


def lungs_and_mediastinum(pixels: np.ndarray) -> tuple[float, float, float]:
    """Mean brightness of the right lung, the left lung and the mediastinum of a PA chest image."""
    band = (0.30, 0.55)
    return (
        region_mean(pixels, band, (0.20, 0.35)),
        region_mean(pixels, band, (0.65, 0.80)),
        region_mean(pixels, band, (0.45, 0.55)),
    )


# -- the real chest CR ---------------------------------------------------------------------------


def test_chest_cr_monochrome1_is_inverted_so_lungs_are_dark(chest_cr: pydicom.Dataset) -> None:
    assert chest_cr.PhotometricInterpretation == "MONOCHROME1"
    image = display_image(chest_cr)
    assert image.pixels.shape == (1955, 1841)
    assert image.pixels.dtype == np.float32
    assert image.pixels.min() >= 0.0 and image.pixels.max() <= 1.0
    right_lung, left_lung, mediastinum = lungs_and_mediastinum(image.pixels)
    # Air is dark on a radiograph, the mediastinum bright.
    assert mediastinum > right_lung + 0.15
    assert mediastinum > left_lung + 0.15
    assert image.notes == ()


def test_chest_cr_read_as_monochrome2_would_show_bright_lungs(chest_cr: pydicom.Dataset) -> None:
    """The control: without the inversion the lungs would be brighter than the mediastinum."""
    chest_cr.PhotometricInterpretation = "MONOCHROME2"
    right_lung, left_lung, mediastinum = lungs_and_mediastinum(display_image(chest_cr).pixels)
    assert right_lung > mediastinum and left_lung > mediastinum


def test_chest_cr_uses_its_window(chest_cr: pydicom.Dataset) -> None:
    """Window 15000/30000 (linear) applied to the 15-bit stored values, then inverted."""
    raw = chest_cr.pixel_array.astype(np.float64)
    expected = 1.0 - np.clip((raw - 14999.5) / 29999 + 0.5, 0, 1)
    np.testing.assert_allclose(display_image(chest_cr).pixels, expected, atol=1e-6)


def test_jpeg2000_and_uncompressed_copies_give_the_same_model_input(
    chest_cr: pydicom.Dataset, chest_cr_j2k: pydicom.Dataset
) -> None:
    assert chest_cr_j2k.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.90"
    frame = DownscaledFrame(4.0)
    plain = prepare_model_image(display_image(chest_cr).pixels, GAZEX_PROCESSING, frame)
    j2k = prepare_model_image(display_image(chest_cr_j2k).pixels, GAZEX_PROCESSING, frame)
    np.testing.assert_array_equal(plain.pixels, j2k.pixels)
    np.testing.assert_array_equal(plain.encoded.pixel_values, j2k.encoded.pixel_values)
    np.testing.assert_array_equal(plain.encoded.image_grid_thw, j2k.encoded.image_grid_thw)
    assert plain.encoded.key == j2k.encoded.key
    assert plain.geometry == j2k.geometry


def test_chest_cr_model_image_keeps_its_geometry(chest_cr: pydicom.Dataset) -> None:
    image = prepare_model_image(display_image(chest_cr).pixels, GAZEX_PROCESSING, DownscaledFrame(4.0))
    g = image.geometry
    assert (g.rows, g.columns) == (1955, 1841)
    assert (g.input_rows, g.input_columns) == image.pixels.shape
    assert g.input_rows % 28 == 0 and g.input_columns % 28 == 0
    assert g.input_rows * g.input_columns <= 768 * 768
    # the aspect ratio survives the resize to within one merged patch
    assert abs(g.input_rows / g.input_columns - 1955 / 1841) < 28 / g.input_columns
    t, h, w = image.encoded.image_grid_thw[0]
    assert (t, h * 14, w * 14) == (1, g.input_rows, g.input_columns)
    assert image.encoded.image_tokens == h * w // 4


def test_processing_follows_the_checkpoint_pixel_budget() -> None:
    processing = ImageProcessing.from_configs({"patch_size": 14, "merge_size": 2}, ImageSettings(3136, 112 * 112))
    image = prepare_model_image(np.zeros((1955, 1841), np.float32), processing, DownscaledFrame(4.0))
    assert image.pixels.shape == (112, 84)


# -- synthetic images, one rule each ---------------------------------------------------------------


def make_image(
    values: np.ndarray,
    *,
    bits_stored: int = 12,
    signed: bool = False,
    photometric: str = "MONOCHROME2",
    frames: int = 1,
    **attributes: object,
) -> Dataset:
    """A small secondary-capture image dataset holding ``values`` (frames stacked on axis 0)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    rows, columns = values.shape[-2:]
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = values.astype(np.int16 if signed else np.uint16).tobytes()
    for key, value in attributes.items():
        setattr(ds, key, value)
    return ds


def ramp(rows: int = 8, columns: int = 8, high: int = 4095) -> np.ndarray:
    return np.linspace(0, high, rows * columns).round().astype(np.int64).reshape(rows, columns)


def test_stored_values_masks_high_bits_and_sign_extends() -> None:
    raw = np.array([0x0FFF, 0xF123, 0x8000 | 0x0800], dtype=np.uint16)
    assert stored_values(raw, 12, signed=False).tolist() == [0x0FFF, 0x0123, 0x0800]
    assert stored_values(raw, 12, signed=True).tolist() == [-1, 0x0123, -2048]
    already = np.array([-1, 291, -2048], dtype=np.int16)
    assert stored_values(already, 12, signed=True).tolist() == [-1, 291, -2048]


def test_bits_above_bits_stored_do_not_change_the_image() -> None:
    values = ramp()
    clean = make_image(values, WindowCenter=2048, WindowWidth=4096)
    dirty = make_image(values | 0xF000, WindowCenter=2048, WindowWidth=4096)
    np.testing.assert_array_equal(display_image(clean).pixels, display_image(dirty).pixels)


def test_linear_window_follows_the_standard_formula() -> None:
    values = np.array([0.0, 39.5, 40.0, 50.0, 60.0, 61.0, 100.0])
    out = apply_window(values, center=50, width=21)
    expected = np.clip((values - 49.5) / 20 + 0.5, 0, 1)
    np.testing.assert_allclose(out, expected, atol=1e-7)
    assert out[0] == 0.0 and out[-1] == 1.0


def test_linear_exact_and_sigmoid_windows() -> None:
    values = np.array([0.0, 50.0, 100.0])
    np.testing.assert_allclose(apply_window(values, 50, 100, "LINEAR_EXACT"), [0.0, 0.5, 1.0])
    sigmoid = apply_window(values, 50, 100, "SIGMOID")
    assert sigmoid[1] == pytest.approx(0.5)
    assert 0 < sigmoid[0] < 0.5 < sigmoid[2] < 1


def test_window_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        apply_window(np.zeros(3), 10, 0)
    with pytest.raises(ValueError, match="VOI LUT Function"):
        apply_window(np.zeros(3), 10, 10, "CUBIC")


def test_first_window_of_several_is_used() -> None:
    ds = make_image(ramp(), WindowCenter=[1000, 3000], WindowWidth=[500, 100])
    pixels = display_image(ds).pixels
    np.testing.assert_allclose(pixels, apply_window(ramp().astype(float), 1000, 500), atol=1e-7)


def test_rescale_slope_and_intercept_come_before_the_window() -> None:
    values = ramp()
    ds = make_image(values, RescaleSlope=2, RescaleIntercept=-1000, WindowCenter=1000, WindowWidth=2000)
    expected = apply_window(values * 2.0 - 1000, 1000, 2000)
    np.testing.assert_allclose(display_image(ds).pixels, expected, atol=1e-7)


def test_voi_lut_sequence_is_preferred_to_the_window() -> None:
    values = np.array([[0, 1, 2, 3]], dtype=np.int64)
    item = Dataset()
    item.add_new("LUTDescriptor", "US", [4, 0, 8])
    item.add_new("LUTData", "US", [255, 0, 128, 64])
    ds = make_image(values, bits_stored=8, VOILUTSequence=Sequence([item]), WindowCenter=1, WindowWidth=2)
    np.testing.assert_allclose(display_image(ds).pixels, [[1.0, 0.0, 128 / 255, 64 / 255]], atol=1e-6)


def test_without_window_robust_percentiles_are_used_and_noted() -> None:
    values = ramp()
    ds = make_image(values)
    image = display_image(ds)
    assert any("percentiles" in note for note in image.notes)
    assert image.pixels.min() == 0.0 and image.pixels.max() == 1.0
    np.testing.assert_allclose(image.pixels, percentile_window(values.astype(float), np.ones_like(values, bool)))


def test_padding_is_black_and_ignored_by_the_percentiles() -> None:
    values = ramp(high=1000)
    values[:, :2] = 4000  # collimator padding
    ds = make_image(values, PixelPaddingValue=4000)
    pixels = display_image(ds).pixels
    assert (pixels[:, :2] == 0.0).all()
    assert pixels[:, 2:].max() == 1.0  # the scale comes from the image, not from the padding


def test_padding_range_limit() -> None:
    stored = np.array([0, 10, 11, 15, 16])
    assert padding_mask(stored, 15, 10).tolist() == [False, True, True, True, False]
    assert padding_mask(stored, 15, None).tolist() == [False, False, False, True, False]
    assert not padding_mask(stored, None, None).any()


def test_monochrome1_padding_stays_black() -> None:
    values = ramp(high=1000)
    values[0, :] = 0
    ds = make_image(values, photometric="MONOCHROME1", PixelPaddingValue=0, WindowCenter=500, WindowWidth=1000)
    pixels = display_image(ds).pixels
    assert (pixels[0] == 0.0).all()
    assert pixels[1, 0] > pixels[-1, -1]  # inverted: low values are bright


def test_presentation_lut_shape_inverse_inverts_monochrome2() -> None:
    values = ramp()
    plain = display_image(make_image(values, WindowCenter=2048, WindowWidth=4096)).pixels
    inverse = display_image(make_image(values, WindowCenter=2048, WindowWidth=4096, PresentationLUTShape="INVERSE"))
    np.testing.assert_allclose(inverse.pixels, 1.0 - plain, atol=1e-7)


def test_signed_pixels() -> None:
    values = np.array([[-1024, 0, 1023]])
    ds = make_image(values, signed=True, WindowCenter=0, WindowWidth=2048)
    pixels = display_image(ds).pixels
    assert pixels[0, 0] < 0.01 and abs(pixels[0, 1] - 0.5) < 0.01 and pixels[0, 2] > 0.99


def test_multi_frame_uses_frame_one_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    frames = np.stack([ramp(), ramp()[::-1], np.zeros((8, 8), np.int64)])
    ds = make_image(frames, frames=3, WindowCenter=2048, WindowWidth=4096)
    image = display_image(ds)
    np.testing.assert_allclose(image.pixels, apply_window(ramp().astype(float), 2048, 4096), atol=1e-7)
    assert any("3 frames" in note and "frame 1" in note for note in image.notes)
    assert "frame 1" in caplog.text


def test_rgb_images_become_luminance() -> None:
    ds = make_image(np.zeros((2, 2)), bits_stored=8)
    rgb = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [255, 255, 255]]], dtype=np.uint8)
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.SamplesPerPixel = 3
    ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = "RGB"
    ds.PixelData = rgb.tobytes()
    pixels = display_image(ds).pixels
    np.testing.assert_allclose(pixels, [[0.299, 0.587], [0.114, 1.0]], atol=1e-6)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda ds: delattr(ds, "PixelData"), "no Pixel Data"),
        (lambda ds: setattr(ds.file_meta, "TransferSyntaxUID", MPEG2MPML), "not supported"),
        (lambda ds: delattr(ds.file_meta, "TransferSyntaxUID"), "no Transfer Syntax UID"),
        (lambda ds: setattr(ds, "PhotometricInterpretation", "PALETTE COLOR"), "PALETTE COLOR"),
        (lambda ds: setattr(ds, "PixelData", b"\x00" * 10), "cannot decode"),
        (lambda ds: setattr(ds, "Rows", 0), "positive"),
    ],
)
def test_unusable_pixel_data_gives_a_clear_error(change, message: str) -> None:
    ds = make_image(ramp(), WindowCenter=2048, WindowWidth=4096)
    change(ds)
    with pytest.raises(PixelDataError, match=message) as error:
        display_image(ds)
    assert f"SOP instance {ds.SOPInstanceUID}" in str(error.value)
