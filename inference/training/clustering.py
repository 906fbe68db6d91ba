"""Density-based clustering (DBSCAN) of a few dozen fixations, in numpy.

GazeX clusters each sentence's gaze with scikit-learn's DBSCAN; a sentence has at most a
few dozen fixations, so an O(n^2) distance matrix is all it takes and scikit-learn is not
needed.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

NOISE = -1


def dbscan(points: npt.NDArray[np.float64], eps: float, min_samples: int) -> npt.NDArray[np.int64]:
    """Cluster labels 0, 1, ... (in order of each cluster's first point) or -1 for noise.

    A point is a core point when at least ``min_samples`` points (itself included) lie within
    ``eps`` of it; clusters are the core points connected through such neighbourhoods, plus
    the border points within ``eps`` of one of their core points.
    """
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points must have shape (n, 2), got {points.shape}")
    if eps <= 0 or min_samples < 1:
        raise ValueError(f"eps must be positive and min_samples at least 1, got {eps}, {min_samples}")
    count = len(points)
    labels = np.full(count, NOISE, dtype=np.int64)
    if count == 0:
        return labels
    distances = np.hypot(points[:, None, 0] - points[None, :, 0], points[:, None, 1] - points[None, :, 1])
    neighbours = distances <= eps
    core = neighbours.sum(axis=1) >= min_samples
    cluster = 0
    for seed in range(count):
        if labels[seed] != NOISE or not core[seed]:
            continue
        labels[seed] = cluster
        frontier = [seed]
        while frontier:
            point = frontier.pop()
            for other in np.flatnonzero(neighbours[point]):
                if labels[other] == NOISE:
                    labels[other] = cluster
                    if core[other]:
                        frontier.append(int(other))
        cluster += 1
    return labels
