"""The result contract: validation and geometric helpers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from inference.results import (
    FINDING_LABELS,
    Box,
    Finding,
    ImageAnalysis,
    Point,
    Region,
)

coords = st.floats(min_value=-5000, max_value=5000, allow_nan=False)


def test_box_rejects_inverted_corners() -> None:
    with pytest.raises(ValueError, match="x0 <= x1"):
        Box(10, 0, 5, 5)


def test_box_rejects_non_finite() -> None:
    with pytest.raises(ValueError, match="finite"):
        Box(0, 0, float("nan"), 5)
    with pytest.raises(ValueError, match="finite"):
        Point(float("inf"), 0)


def test_closed_polyline_has_five_points_and_closes() -> None:
    points = Box(1, 2, 11, 22).closed_polyline()
    assert len(points) == 5
    assert points[0] == points[-1] == Point(1, 2)
    assert Point(11, 22) in points


def test_iou_of_known_boxes() -> None:
    a = Box(0, 0, 10, 10)
    assert a.iou(a) == 1.0
    assert a.iou(Box(5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert a.iou(Box(20, 20, 30, 30)) == 0.0
    assert Box(0, 0, 0, 0).iou(Box(0, 0, 0, 0)) == 0.0


@given(coords, coords, coords, coords, st.integers(1, 4000), st.integers(1, 4000))
def test_clipped_box_lies_inside_the_image(a: float, b: float, c: float, d: float, rows: int, cols: int) -> None:
    box = Box(min(a, c), min(b, d), max(a, c), max(b, d)).clipped(rows, cols)
    assert 0 <= box.x0 <= box.x1 <= cols
    assert 0 <= box.y0 <= box.y1 <= rows


def test_finding_label_must_be_in_vocabulary() -> None:
    with pytest.raises(ValueError, match='Argument "label"'):
        Finding(text="x", label="unicorn", present=True, observation=None)
    assert "pleural_effusion" in FINDING_LABELS and "other" in FINDING_LABELS


def test_image_analysis_checks_attention_shape() -> None:
    region = Region(Box(0, 0, 1, 1), Point(0.5, 0.5))
    finding = Finding("No pneumothorax.", "pneumothorax", False, region)
    ok = ImageAnalysis("1.2.3", 4, 5, "r", (finding,), (), np.zeros((4, 5), np.float32))
    assert ok.attention is not None
    with pytest.raises(ValueError, match="attention must have shape"):
        ImageAnalysis("1.2.3", 4, 5, "r", (finding,), (), np.zeros((5, 4), np.float32))
    with pytest.raises(ValueError, match="positive size"):
        ImageAnalysis("1.2.3", 0, 5, "r", (), ())
