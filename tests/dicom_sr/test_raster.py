"""The burned-in overlay's drawing primitives."""

from __future__ import annotations

import numpy as np

from dicom_sr import raster


def test_text_mask_size_and_unknown_characters() -> None:
    mask = raster.text_mask("AB", 2)
    assert mask.shape == (14, 22)  # 7 rows x (5 + 1 + 5) columns, scaled by 2
    assert np.array_equal(raster.text_mask("é", 1), raster.text_mask("?", 1))
    assert np.array_equal(raster.text_mask("abc", 1), raster.text_mask("ABC", 1))


def test_drawing_is_clipped_to_the_image() -> None:
    image = np.zeros((20, 30, 3), dtype=np.uint8)
    raster.draw_text(image, "HELLO WORLD", 25, 15, 2, (255, 0, 0), background=(0, 0, 255))
    raster.draw_line(image, -10, -10, 50, 50, 3, (0, 255, 0))
    raster.draw_box(image, 2, 2, 12, 12, 1, (255, 255, 0))
    raster.draw_ring(image, 5, 5, 20, 1, (0, 255, 255))
    assert image.shape == (20, 30, 3)
    assert (image[2, 2:12] == (255, 255, 0)).all()
    assert (image[..., 1] > 0).any()
