"""Coordinate frames and fixation clustering, with hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from inference.training import CoordinateFrame
from inference.training.clustering import NOISE, dbscan


def test_frames_parse_and_serialise_as_gazex_json_declares_them() -> None:
    assert CoordinateFrame.parse("downscaled:4") == CoordinateFrame.downscaled(4)
    assert CoordinateFrame.parse("normalized:1000") == CoordinateFrame.normalized(1000)
    assert CoordinateFrame.downscaled(4).to_json() == {"kind": "downscaled", "factor": 4}
    assert CoordinateFrame.normalized(1000).to_json() == {"kind": "normalized", "scale": 1000}
    assert CoordinateFrame.from_json({"kind": "normalized", "scale": 1000}) == CoordinateFrame.normalized(1000)
    assert str(CoordinateFrame.downscaled(4)) == "downscaled:4"
    for bad in ("downscaled", "scaled:4", "normalized:x", "downscaled:0", "downscaled:-2"):
        with pytest.raises(ValueError):
            CoordinateFrame.parse(bad)
    with pytest.raises(ValueError, match="coordinates must be"):
        CoordinateFrame.from_json({"kind": "downscaled", "scale": 4})


def test_frames_map_points_both_ways() -> None:
    rows, columns = 3000, 2500
    down = CoordinateFrame.downscaled(4)
    assert down.to_model(1001.0, 2999.0, rows, columns) == (250, 750)
    assert down.to_source(250, 750, rows, columns) == (1000.0, 3000.0)
    norm = CoordinateFrame.normalized(1000)
    assert norm.to_model(1250.0, 750.0, rows, columns) == (500, 250)
    assert norm.to_source(500, 250, rows, columns) == (1250.0, 750.0)
    # clipped to the image
    assert down.to_model(-10.0, 4000.0, rows, columns) == (0, 750)
    assert norm.to_model(9999.0, -1.0, rows, columns) == (1000, 0)


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
