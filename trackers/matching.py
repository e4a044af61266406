"""Association helpers: IoU cost matrices and linear assignment with ``lap``.

Follows the ByteTrack reference (``ifzhang/ByteTrack`` ``yolox/tracker/matching.py``:
``iou_distance``, ``fuse_score``, ``linear_assignment``) with two deliberate
differences: box areas are ``(x2 - x1) * (y2 - y1)`` (the reference's cython_bbox adds
1 pixel to each side), and a pair with zero overlap is never matched whatever the
cost limit.

:func:`match_candidates` solves an assignment from its candidate pairs (those under
the cost limit) and calls ``lap`` only for candidates that compete for a row or a
column; :func:`linear_assignment` uses it.

All functions are pure and thread-safe.
"""

from __future__ import annotations

from collections.abc import Sequence

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
    return box_iou_rows(a.T, b.T)


def box_iou_rows(boxes_a: Float64Array, boxes_b: Float64Array) -> Float64Array:
    """:func:`box_iou` of component-major boxes (the arithmetic is the same).

    Args:
        boxes_a: ``(4, N) float64`` rows ``x1, y1, x2, y2``, ``N >= 1``.
        boxes_b: ``(4, M) float64`` rows ``x1, y1, x2, y2``, ``M >= 1``.

    Returns:
        ``(N, M) float64`` IoU.
    """
    lt = np.maximum(boxes_a[0:2, :, None], boxes_b[0:2, None, :])
    wh = np.minimum(boxes_a[2:4, :, None], boxes_b[2:4, None, :])
    wh -= lt
    np.maximum(wh, 0.0, out=wh)
    inter = wh[0] * wh[1]
    union = np.add.outer(_area(boxes_a), _area(boxes_b))
    union -= inter
    # Where the union is empty the intersection is too, so the ratio is 0.
    np.maximum(union, _TINY_AREA, out=union)
    return np.divide(inter, union, out=inter)


def _area(boxes: Float64Array) -> Float64Array:
    size = boxes[2:4] - boxes[0:2]
    np.maximum(size, 0.0, out=size)
    return size[0] * size[1]


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
    (Jonker-Volgenant), as in the ByteTrack reference, but only where needed (see
    :func:`match_candidates`).

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
    rows, cols = (c <= cost_limit).nonzero()
    pairs = match_candidates(rows.tolist(), cols.tolist(), c[rows, cols].tolist(), cost_limit)
    matches = np.array(pairs, dtype=np.int64).reshape(-1, 2)
    matched_r = np.zeros(n_rows, bool)
    matched_c = np.zeros(n_cols, bool)
    matched_r[matches[:, 0]] = True
    matched_c[matches[:, 1]] = True
    return matches, (~matched_r).nonzero()[0], (~matched_c).nonzero()[0]


def match_candidates(
    rows: Sequence[int], cols: Sequence[int], costs: Sequence[float], cost_limit: float
) -> list[tuple[int, int]]:
    """Optimal assignment given the candidate pairs of a cost matrix.

    Equivalent to :func:`linear_assignment` on a cost matrix, given every pair with
    ``cost <= cost_limit`` (the only ones that can be matched). Solving with
    ``cost_limit`` maximises the sum of ``cost_limit - cost`` over the matched pairs,
    so a candidate that shares its row and column with no other and costs less than
    the limit is matched in the optimum, and the others (the ones that compete) are
    solved apart:

    * no competing candidates: no solver at all (the usual case when objects are
      apart);
    * a few competing candidates (up to 64 ways to match them): every matching of
      them is tried in Python; the best is taken if it beats every other by more
      than 1e-9;
    * otherwise (or when the best is not clear) ``lap.lapjv`` solves them, on the
      rows and columns they use, in their original order, with their costs (any
      other pair costs more than the limit and is never matched, whatever its cost),
      extended as ``extend_cost=True`` extends it.

    Args:
        rows, cols, costs: The candidate pairs ``(row, column)`` and their costs,
            ordered by row (as ``nonzero`` lists them); it is enough to pass the
            candidates of a sub-matrix, whose other rows and columns then stay
            unmatched.
        cost_limit: Largest cost a matched pair may have.

    Returns:
        Matched ``(row, column)`` pairs ordered by row.
    """
    k = len(rows)
    if k == 0:
        return []
    if len(set(rows)) == k and len(set(cols)) == k and max(costs) < cost_limit:
        return list(zip(rows, cols, strict=True))
    row_n: dict[int, int] = {}
    col_n: dict[int, int] = {}
    for r in rows:
        row_n[r] = row_n.get(r, 0) + 1
    for c in cols:
        col_n[c] = col_n.get(c, 0) + 1
    alone: list[tuple[int, int]] = []
    compete: list[tuple[int, int, float]] = []
    for r, c, v in zip(rows, cols, costs, strict=True):
        if row_n[r] == 1 and col_n[c] == 1 and v < cost_limit:
            alone.append((r, c))
        else:
            compete.append((r, c, v))
    pairs = _small_assignment(compete, cost_limit)
    if pairs is None:
        pairs = _lap_assignment(compete, cost_limit)
    return sorted(alone + pairs)


_MAX_MATCHINGS = 64
"""Competing candidates with up to this many matchings are solved in Python."""


def _small_assignment(
    cands: list[tuple[int, int, float]], cost_limit: float
) -> list[tuple[int, int]] | None:
    """The best matching of a few candidates ``(row, column, cost)`` ordered by row,
    by trying every one; None if there are too many or no clear best."""
    options: list[tuple[int, list[tuple[int, float]]]] = []
    count = 1
    for r, c, v in cands:
        if options and options[-1][0] == r:
            options[-1][1].append((c, cost_limit - v))
        else:
            options.append((r, [(c, cost_limit - v)]))
    for _, opts in options:
        count *= 1 + len(opts)
    if count > _MAX_MATCHINGS:
        return None
    best_gain, second_gain = -1.0, -1.0
    best: list[tuple[int, int]] = []
    chosen: list[tuple[int, int]] = []
    used: set[int] = set()

    def visit(i: int, gain: float) -> None:
        nonlocal best_gain, second_gain, best
        if i == len(options):
            if gain > best_gain:
                best_gain, second_gain, best = gain, best_gain, chosen.copy()
            elif gain > second_gain:
                second_gain = gain
            return
        visit(i + 1, gain)  # row i unmatched
        r, opts = options[i]
        for c, g in opts:
            if c not in used:
                used.add(c)
                chosen.append((r, c))
                visit(i + 1, gain + g)
                chosen.pop()
                used.discard(c)

    visit(0, 0.0)
    if best_gain - second_gain <= 1e-9:
        return None  # a tie (or as good as one): lap decides, as it would have
    return best


def _lap_assignment(
    cands: list[tuple[int, int, float]], cost_limit: float
) -> list[tuple[int, int]]:
    """``lap.lapjv`` on candidates ``(row, column, cost)``."""
    if not cands:
        return []  # never call lap.lapjv on a 0x0 matrix: lap 0.5 corrupts the heap
    sub_rows = sorted({r for r, _, _ in cands})
    sub_cols = sorted({c for _, c, _ in cands})
    n_rows, n_cols = len(sub_rows), len(sub_cols)
    row_at = {r: i for i, r in enumerate(sub_rows)}
    col_at = {c: j for j, c in enumerate(sub_cols)}
    # The square matrix lap.lapjv(extend_cost=True, cost_limit=...) builds (a row or
    # column left unmatched costs cost_limit / 2), built here: lap's own extension
    # costs several times the solve on these small matrices.
    n = n_rows + n_cols
    ext = np.empty((n, n))
    ext[:n_rows, :n_cols] = 2.0 * cost_limit + 1.0  # not a candidate: above the limit
    ext[:n_rows, n_cols:] = 0.5 * cost_limit
    ext[n_rows:, :n_cols] = 0.5 * cost_limit
    ext[n_rows:, n_cols:] = 0.0
    for r, c, v in cands:
        ext[row_at[r], col_at[c]] = v
    x, _ = lap.lapjv(ext, extend_cost=False, return_cost=False)
    # lap leaves a pair exactly at the limit to chance; never report one above it.
    return [
        (sub_rows[i], sub_cols[j])
        for i, j in enumerate(x[:n_rows].tolist())
        if j < n_cols and ext[i, j] <= cost_limit
    ]
