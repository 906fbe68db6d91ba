"""Model coordinates <-> source pixels: exact round trips, clipping, and nothing outside the image."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inference.geometry import DownscaledFrame, ImageGeometry, ModelRegion, NormalizedFrame

sizes = st.integers(min_value=1, max_value=5000)
frames = st.one_of(
    st.builds(DownscaledFrame, st.sampled_from([1.0, 2.0, 4.0, 8.0, 3.0, 2.5])),
    st.builds(NormalizedFrame, st.sampled_from([1.0, 100.0, 1000.0, 224.0])),
)
finite = st.floats(min_value=-1e7, max_value=1e7, allow_nan=False)
anything = st.floats(allow_nan=True, allow_infinity=True)


def geometry(rows: int = 1955, columns: int = 1841, frame: DownscaledFrame | NormalizedFrame | None = None):
    return ImageGeometry(rows, columns, frame or DownscaledFrame(4.0), input_rows=112, input_columns=84)


def test_gazex_frame_is_source_pixels_divided_by_four() -> None:
    g = geometry()
    assert g.model_to_source(100, 250) == (400.0, 1000.0)
    assert g.source_to_model(400, 1000) == (100.0, 250.0)
    assert g.model_extent == (1841 / 4, 1955 / 4)


def test_normalized_frame_spans_the_image() -> None:
    g = geometry(frame=NormalizedFrame(1000.0))
    assert g.model_to_source(0, 0) == (0.0, 0.0)
    assert g.model_to_source(1000, 1000) == (1841.0, 1955.0)
    assert g.model_to_source(500, 500) == pytest.approx((920.5, 977.5))


def test_input_pixels_map_to_the_whole_source() -> None:
    g = geometry()
    assert g.input_to_source(84, 112) == (1841.0, 1955.0)
    assert g.input_to_source(0, 0) == (0.0, 0.0)


@given(sizes, sizes, frames, finite, finite)
def test_model_coordinates_round_trip(rows: int, columns: int, frame, x: float, y: float) -> None:
    g = ImageGeometry(rows, columns, frame, input_rows=28, input_columns=28)
    back = g.source_to_model(*g.model_to_source(x, y))
    assert back == pytest.approx((x, y), rel=1e-12, abs=1e-9)
    again = g.model_to_source(*g.source_to_model(x, y))
    assert again == pytest.approx((x, y), rel=1e-12, abs=1e-9)


@given(sizes, sizes, sizes, sizes, finite, finite)
def test_input_pixels_round_trip(rows: int, columns: int, in_rows: int, in_columns: int, x: float, y: float) -> None:
    g = ImageGeometry(rows, columns, DownscaledFrame(4.0), input_rows=in_rows, input_columns=in_columns)
    assert g.source_to_input(*g.input_to_source(x, y)) == pytest.approx((x, y), rel=1e-12, abs=1e-9)


def test_power_of_two_factor_round_trips_exactly() -> None:
    g = geometry()
    for x in (0.0, 0.5, 1.25, 123.75, 460.25):
        assert g.source_to_model(*g.model_to_source(x, x)) == (x, x)


def test_region_maps_and_keeps_its_centroid() -> None:
    region = geometry().region_to_source(ModelRegion(10, 20, 110, 220, 60, 120))
    assert region is not None
    assert (region.box.x0, region.box.y0, region.box.x1, region.box.y1) == (40, 80, 440, 880)
    assert (region.centroid.x, region.centroid.y) == (240, 480)


def test_region_is_clipped_and_centroid_clamped() -> None:
    region = geometry().region_to_source(ModelRegion(-50, 400, 600, 700, 900, -3))
    assert region is not None
    assert (region.box.x0, region.box.y0, region.box.x1, region.box.y1) == (0, 1600, 1841, 1955)
    assert (region.centroid.x, region.centroid.y) == (1841, 1600)


@pytest.mark.parametrize(
    "region",
    [
        ModelRegion(600, 600, 700, 700, 650, 650),  # entirely outside
        ModelRegion(10, 10, 10, 50, 10, 30),  # no width
        ModelRegion(50, 10, 10, 50, 30, 30),  # inverted corners
        ModelRegion(10, 10, math.inf, 50, 30, 30),
        ModelRegion(10, 10, 50, 50, math.nan, 30),
    ],
)
def test_unusable_regions_give_none(region: ModelRegion) -> None:
    assert geometry().region_to_source(region) is None


@given(sizes, sizes, frames, anything, anything, anything, anything, anything, anything)
def test_a_mapped_region_is_always_inside_the_image(rows, columns, frame, x0, y0, x1, y1, cx, cy) -> None:
    g = ImageGeometry(rows, columns, frame, input_rows=28, input_columns=28)
    region = g.region_to_source(ModelRegion(x0, y0, x1, y1, cx, cy))
    if region is None:
        return
    box = region.box
    assert 0 <= box.x0 < box.x1 <= columns
    assert 0 <= box.y0 < box.y1 <= rows
    assert box.x0 <= region.centroid.x <= box.x1
    assert box.y0 <= region.centroid.y <= box.y1


def test_frames_validate() -> None:
    with pytest.raises(ValueError, match="factor"):
        DownscaledFrame(0)
    with pytest.raises(ValueError, match="scale"):
        NormalizedFrame(-1)
    with pytest.raises(ValueError, match="rows"):
        ImageGeometry(0, 10, DownscaledFrame(4), 28, 28)
