"""Association helpers: IoU cost matrices and linear assignment with ``lap``.

Follows the ByteTrack reference (``ifzhang/ByteTrack`` ``yolox/tracker/matching.py``:
``iou_distance``, ``fuse_score``, ``linear_assignment``) with two deliberate
differences: box areas are ``(x2 - x1) * (y2 - y1)`` (the reference's cython_bbox adds
1 pixel to each side), and a pair with zero overlap is never matched whatever the
cost limit.

:func:`match_candidates` solves an assignment from its candidate pairs (those under
the cost limit) and calls ``lap`` only for candidates that compete for a row or a
column; :func:`linear_assignment` uses it. :func:`lapjv_square` and :func:`lapjv_limit` are a
compiled (numba) port of ``lap.lapjv`` with the same results, used by ByteTrack's
compiled update.

All functions are pure and thread-safe.
"""

from __future__ import annotations

from collections.abc import Sequence

import lap
import numpy as np
import numpy.typing as npt
from numba import njit

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


# ------------------------------------------------------------- compiled lapjv

_LARGE = 1000000.0
"""lap's ``LARGE``: the initial column minimum (every cost here is far below it)."""


@njit(cache=True)
def lapjv_square(cost: Float64Array) -> tuple[Int64Array, Int64Array]:
    """Jonker-Volgenant on a square dense cost matrix, compiled.

    A step-for-step port of ``lapjv_internal`` of ``lap`` 0.5 (``gatagat/lap``,
    ``_lapjv_src/lapjv.cpp``: column reduction and reduction transfer, two rounds of
    augmenting row reduction, then shortest augmenting paths), with the same
    arithmetic and the same tie-breaking, so it returns what
    ``lap.lapjv(cost, extend_cost=False, return_cost=False)`` returns.

    Args:
        cost: ``(n, n) float64`` finite costs, ``n >= 1``, well below ``1e6``.

    Returns:
        ``x`` (row -> column) and ``y`` (column -> row), ``(n,) int64``.
    """
    n = cost.shape[0]
    x = np.empty(n, np.int64)
    y = np.empty(n, np.int64)
    v = np.empty(n)
    free_rows = np.empty(n, np.int64)
    # Column reduction and reduction transfer (_ccrrt_dense).
    for i in range(n):
        x[i] = -1
        v[i] = _LARGE
        y[i] = 0
    for i in range(n):
        for j in range(n):
            c = cost[i, j]
            if c < v[j]:
                v[j] = c
                y[j] = i
    unique = np.ones(n, np.bool_)
    j = n
    while True:
        j -= 1
        i = y[j]
        if x[i] < 0:
            x[i] = j
        else:
            unique[i] = False
            y[j] = -1
        if j <= 0:
            break
    n_free = 0
    for i in range(n):
        if x[i] < 0:
            free_rows[n_free] = i
            n_free += 1
        elif unique[i]:
            j = x[i]
            low = _LARGE
            for j2 in range(n):
                if j2 == j:
                    continue
                c = cost[i, j2] - v[j2]
                if c < low:
                    low = c
            v[j] -= low
    rounds = 0
    while n_free > 0 and rounds < 2:
        n_free = _carr(n, cost, n_free, free_rows, x, y, v)
        rounds += 1
    if n_free > 0:
        pred = np.empty(n, np.int64)
        cols = np.empty(n, np.int64)
        d = np.empty(n)
        for f in range(n_free):
            free_i = free_rows[f]
            j = _find_path(n, cost, free_i, y, v, pred, cols, d)
            i = -1
            while i != free_i:
                i = pred[j]
                y[j] = i
                j, x[i] = x[i], j
    return x, y


@njit(cache=True)
def _carr(
    n: int,
    cost: Float64Array,
    n_free: int,
    free_rows: Int64Array,
    x: Int64Array,
    y: Int64Array,
    v: Float64Array,
) -> int:
    """Augmenting row reduction (lap's ``_carr_dense``)."""
    current = 0
    new_free = 0
    rr_cnt = 0
    while current < n_free:
        rr_cnt += 1
        free_i = free_rows[current]
        current += 1
        j1 = 0
        v1 = cost[free_i, 0] - v[0]
        j2 = -1
        v2 = _LARGE
        for j in range(1, n):
            c = cost[free_i, j] - v[j]
            if c < v2:
                if c >= v1:
                    v2 = c
                    j2 = j
                else:
                    v2 = v1
                    v1 = c
                    j2 = j1
                    j1 = j
        i0 = y[j1]
        v1_new = v[j1] - (v2 - v1)
        v1_lowers = v1_new < v[j1]
        if rr_cnt < current * n:
            if v1_lowers:
                v[j1] = v1_new
            elif i0 >= 0 and j2 >= 0:
                j1 = j2
                i0 = y[j2]
            if i0 >= 0:
                if v1_lowers:
                    current -= 1
                    free_rows[current] = i0
                else:
                    free_rows[new_free] = i0
                    new_free += 1
        elif i0 >= 0:
            free_rows[new_free] = i0
            new_free += 1
        x[free_i] = j1
        y[j1] = free_i
    return new_free


@njit(cache=True)
def _find_path(
    n: int,
    cost: Float64Array,
    start_i: int,
    y: Int64Array,
    v: Float64Array,
    pred: Int64Array,
    cols: Int64Array,
    d: Float64Array,
) -> int:
    """One shortest augmenting path from row ``start_i`` (lap's ``find_path_dense``
    with ``_find_dense`` and ``_scan_dense`` inlined); the free column it reaches."""
    lo = 0
    hi = 0
    final_j = -1
    n_ready = 0
    for i in range(n):
        cols[i] = i
        pred[i] = start_i
        d[i] = cost[start_i, i] - v[i]
    while final_j == -1:
        if lo == hi:  # no columns left on the SCAN list: find the closest ones
            n_ready = lo
            hi = lo + 1
            mind = d[cols[lo]]
            for k in range(lo + 1, n):
                j = cols[k]
                if d[j] <= mind:
                    if d[j] < mind:
                        hi = lo
                        mind = d[j]
                    cols[k] = cols[hi]
                    cols[hi] = j
                    hi += 1
            for k in range(lo, hi):
                j = cols[k]
                if y[j] < 0:
                    final_j = j
        if final_j == -1:  # scan (lo and hi stay as they were if a path ends)
            s_lo = lo
            s_hi = hi
            while s_lo != s_hi and final_j == -1:
                j = cols[s_lo]
                s_lo += 1
                i = y[j]
                mind = d[j]
                h = cost[i, j] - v[j] - mind
                for k in range(s_hi, n):
                    j = cols[k]
                    cred = cost[i, j] - v[j] - h
                    if cred < d[j]:
                        d[j] = cred
                        pred[j] = i
                        if cred == mind:
                            if y[j] < 0:
                                final_j = j
                                break
                            cols[k] = cols[s_hi]
                            cols[s_hi] = j
                            s_hi += 1
            if final_j == -1:
                lo = s_lo
                hi = s_hi
    mind = d[cols[lo]]
    for k in range(n_ready):
        j = cols[k]
        v[j] += d[j] - mind
    return final_j


@njit(cache=True)
def lapjv_limit(cost: Float64Array, cost_limit: float) -> tuple[Int64Array, Int64Array]:
    """Compiled ``lap.lapjv(cost, extend_cost=True, cost_limit=cost_limit)``.

    The ``(R, C)`` matrix is extended as lap extends it (an ``(R + C)`` square whose
    dummy entries cost ``cost_limit / 2``, 0 between dummies) and solved with
    :func:`lapjv_square`.

    Args:
        cost: ``(R, C) float64`` finite costs, ``R + C >= 1``.
        cost_limit: Finite, > 0.

    Returns:
        ``x (R,) int64`` (column of each row, -1 if unmatched) and ``y (C,) int64``
        (row of each column, -1 if unmatched).
    """
    n_rows, n_cols = cost.shape
    n = n_rows + n_cols
    ext = np.empty((n, n))
    half = cost_limit / 2.0
    for i in range(n):
        for j in range(n):
            if i < n_rows:
                ext[i, j] = cost[i, j] if j < n_cols else half
            else:
                ext[i, j] = half if j < n_cols else 0.0
    x, y = lapjv_square(ext)
    xr = x[:n_rows].copy()
    yc = y[:n_cols].copy()
    for i in range(n_rows):
        if xr[i] >= n_cols:
            xr[i] = -1
    for j in range(n_cols):
        if yc[j] >= n_rows:
            yc[j] = -1
    return xr, yc
