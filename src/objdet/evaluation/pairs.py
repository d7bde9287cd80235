"""Cross products of detections with the ground truth of the same (image, category), as flat index arrays."""

from __future__ import annotations

import numpy as np


def group_cross(start: np.ndarray, count: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row i, pair it with `start[i] .. start[i] + count[i] - 1`: returns (row [S], other [S])."""
    row = np.repeat(np.arange(len(count)), count)
    first = np.repeat(start - (np.cumsum(count) - count), count)
    return row, first + np.arange(len(row))


def key_ranges(sorted_keys: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(start, count) of each of `keys` within `sorted_keys`."""
    start = np.searchsorted(sorted_keys, keys, side="left")
    return start, np.searchsorted(sorted_keys, keys, side="right") - start
