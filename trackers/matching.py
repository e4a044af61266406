"""Association helpers: IoU cost matrices and linear assignment with ``lap``.

Follows the ByteTrack reference (``ifzhang/ByteTrack`` ``yolox/tracker/matching.py``:
``iou_distance``, ``fuse_score``, ``linear_assignment``) with two deliberate
differences: box areas are ``(x2 - x1) * (y2 - y1)`` (the reference's cython_bbox adds
1 pixel to each side), and a pair with zero overlap is never matched whatever the
cost limit.

All functions are pure and thread-safe.
"""

from __future__ import annotations

import lap
import numpy as np
import numpy.typing as npt

Float64Array = npt.NDArray[np.float64]
Int64Array = npt.NDArray[np.int64]

_TINY_AREA = 1e-12
NO_MATCH_COST = 2.0
"""Cost given to pairs that must never match (above every valid cost limit, <= 1)."""


def box_iou(boxes_a: npt.ArrayLike, boxes_b: npt.ArrayLike) -> Float64Array:
    """Pairwise intersection over union of two sets of corner boxes.

    Args:
        boxes_a: ``(N, 4)`` boxes ``(x1, y1, x2, y2)``, pixels.
        boxes_b: ``(M, 4)`` boxes in the same frame.

    Returns:
        ``(N, M) float64`` IoU in [0, 1]; 0 where a box has no positive area.
    """
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    if a.shape[0] == 0 or b.shape[0] == 0:
        return np.zeros((a.shape[0], b.shape[0]))
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.maximum(rb - lt, 0.0)
    inter = wh[..., 0] * wh[..., 1]
    size_a = np.maximum(a[:, 2:] - a[:, :2], 0.0)
    size_b = np.maximum(b[:, 2:] - b[:, :2], 0.0)
    union = (size_a[:, 0] * size_a[:, 1])[:, None] + (size_b[:, 0] * size_b[:, 1])[None, :] - inter
    # Where the union is empty the intersection is too, so the ratio is 0.
    return inter / np.maximum(union, _TINY_AREA)


def iou_cost(
    iou: Float64Array, det_scores: npt.ArrayLike | None = None, fuse_score: bool = False
) -> Float64Array:
    """Turn an IoU matrix into an assignment cost.

    ``cost = 1 - iou`` or, with ``fuse_score``, ``1 - iou * score`` (ByteTrack's
    ``fuse_score``: a confident detection is preferred among overlapping ones).
    Pairs with zero IoU get :data:`NO_MATCH_COST`.

    Args:
        iou: ``(T, D)`` IoU between tracks (rows) and detections (columns).
        det_scores: ``(D,)`` detection confidences in [0, 1]; needed with ``fuse_score``.
        fuse_score: Multiply the IoU by the detection score.

    Returns:
        ``(T, D) float64`` cost in [0, 1], or :data:`NO_MATCH_COST`.

    Raises:
        ValueError: if ``fuse_score`` is set without ``det_scores``.
    """
    sim = np.asarray(iou, dtype=np.float64)
    if fuse_score:
        if det_scores is None:
            raise ValueError("det_scores: required when fuse_score is True")
        sim = sim * np.asarray(det_scores, dtype=np.float64)[None, :]
    cost = 1.0 - sim
    cost[iou <= 0.0] = NO_MATCH_COST
    return cost


def linear_assignment(
    cost: npt.ArrayLike, cost_limit: float
) -> tuple[Int64Array, Int64Array, Int64Array]:
    """Minimum-cost one-to-one assignment, leaving pairs above ``cost_limit`` unmatched.

    Solved with ``lap.lapjv(cost, extend_cost=True, cost_limit=cost_limit)``
    (Jonker-Volgenant), as in the ByteTrack reference.

    Args:
        cost: ``(R, C)`` cost matrix (rows: tracks, columns: detections).
        cost_limit: Largest cost a matched pair may have (> 0).

    Returns:
        ``matches (K, 2) int64`` rows ``(row, column)``, ``unmatched_rows (R - K,)``
        and ``unmatched_cols (C - K,)``, all ascending by row / column.

    Raises:
        ValueError: if ``cost`` is not 2-D or ``cost_limit`` is not > 0.
    """
    c = np.asarray(cost, dtype=np.float64)
    if c.ndim != 2:
        raise ValueError(f"cost: expected a 2-D matrix, got shape {c.shape}")
    if not cost_limit > 0:
        raise ValueError(f"cost_limit: must be > 0, got {cost_limit!r}")
    n_rows, n_cols = c.shape
    if n_rows == 0 or n_cols == 0:
        return (
            np.zeros((0, 2), np.int64),
            np.arange(n_rows, dtype=np.int64),
            np.arange(n_cols, dtype=np.int64),
        )
    x, y = lap.lapjv(c, extend_cost=True, cost_limit=cost_limit, return_cost=False)
    rows = (x >= 0).nonzero()[0]
    cols = x[rows].astype(np.int64)
    keep = c[rows, cols] <= cost_limit
    matches = np.empty((len(rows), 2), np.int64)
    matches[:, 0] = rows
    matches[:, 1] = cols
    if keep.all():
        return matches, (x < 0).nonzero()[0], (y < 0).nonzero()[0]
    # lap leaves a pair exactly at the limit to chance; never report one above it.
    matches = matches[keep]
    matched_r = np.zeros(n_rows, bool)
    matched_c = np.zeros(n_cols, bool)
    matched_r[matches[:, 0]] = True
    matched_c[matches[:, 1]] = True
    return matches, (~matched_r).nonzero()[0], (~matched_c).nonzero()[0]
