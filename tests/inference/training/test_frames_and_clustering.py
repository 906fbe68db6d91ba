"""Coordinate frames and fixation clustering, with hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from inference.geometry import DownscaledFrame, ImageGeometry, NormalizedFrame, frame_from_json, parse_frame
from inference.training.clustering import NOISE, dbscan
from inference.training.records import model_point


def test_frames_parse_and_serialise_as_gazex_json_declares_them() -> None:
    assert parse_frame("downscaled:4") == DownscaledFrame(4)
    assert parse_frame("normalized:1000") == NormalizedFrame(1000)
    assert DownscaledFrame(4).to_json() == {"kind": "downscaled", "factor": 4}
    assert NormalizedFrame(1000).to_json() == {"kind": "normalized", "scale": 1000}
    assert NormalizedFrame(2.5).to_json() == {"kind": "normalized", "scale": 2.5}
    assert frame_from_json({"kind": "normalized", "scale": 1000}) == NormalizedFrame(1000)
    assert str(DownscaledFrame(4)) == "downscaled:4"
    assert str(NormalizedFrame(100.0)) == "normalized:100"
    for bad in ("downscaled", "scaled:4", "normalized:x", "downscaled:0", "downscaled:-2"):
        with pytest.raises(ValueError):
            parse_frame(bad)
    for document in ({"kind": "downscaled", "scale": 4}, {"kind": "normalized", "scale": True}, {"kind": "x"}):
        with pytest.raises(ValueError, match="coordinates must be"):
            frame_from_json(document)


def test_frames_map_points_both_ways() -> None:
    rows, columns = 3000, 2500
    down = DownscaledFrame(4)
    assert model_point(down, 1001.0, 2999.0, rows, columns) == (250, 750)
    assert ImageGeometry(rows, columns, down, 28, 28).model_to_source(250, 750) == (1000.0, 3000.0)
    norm = NormalizedFrame(1000)
    assert model_point(norm, 1250.0, 750.0, rows, columns) == (500, 250)
    assert ImageGeometry(rows, columns, norm, 28, 28).model_to_source(500, 250) == (1250.0, 750.0)
    # clipped to the image, rounded half up
    assert model_point(down, -10.0, 4000.0, rows, columns) == (0, 750)
    assert model_point(norm, 9999.0, -1.0, rows, columns) == (1000, 0)
    assert model_point(down, 10.0, 14.0, rows, columns) == (3, 4)


def test_dbscan_finds_dense_groups_and_leaves_strays() -> None:
    points = np.array(
        [
            [0.0, 0.0],
            [1.0, 0.0],
            [0.0, 1.0],  # cluster 0
            [10.0, 10.0],
            [10.5, 10.0],  # cluster 1 (two points suffice with min_samples=2)
            [50.0, 50.0],  # stray
            [2.0, 1.0],  # border of cluster 0 via (1, 0)... at distance sqrt(2)
        ]
    )
    labels = dbscan(points, eps=1.5, min_samples=2)
    assert labels.tolist() == [0, 0, 0, 1, 1, NOISE, 0]
    assert dbscan(points, eps=1.5, min_samples=3).tolist() == [0, 0, 0, NOISE, NOISE, NOISE, 0]
    assert dbscan(np.zeros((0, 2)), 1.0, 2).tolist() == []
    with pytest.raises(ValueError):
        dbscan(points, eps=0.0, min_samples=2)
