"""Exact unit tests of trackers.kalman and trackers.matching."""

from __future__ import annotations

import itertools

import lap
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from trackers.kalman import (
    KalmanFilterXYAH,
    pack_state,
    unpack_state,
    xyah_to_xyxy,
    xyah_to_xyxy_rows,
    xyxy_to_xyah,
    xyxy_to_xyah_rows,
)
from trackers.matching import (
    NO_MATCH_COST,
    _lap_assignment,
    _small_assignment,
    box_iou,
    box_iou_rows,
    iou_cost,
    lapjv_limit,
    lapjv_square,
    linear_assignment,
    match_candidates,
)

# --------------------------------------------------------------------------- Kalman

WP, WV = 1.0 / 20, 1.0 / 160
F = np.eye(8)
F[:4, 4:] = np.eye(4)
H = np.eye(4, 8)


def _ref_initiate(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One-track initiate written out as in the DeepSORT/ByteTrack reference."""
    h = z[3]
    std = [2 * WP * h, 2 * WP * h, 1e-2, 2 * WP * h, 10 * WV * h, 10 * WV * h, 1e-5, 10 * WV * h]
    return np.r_[z, np.zeros(4)], np.diag(np.square(std))


def _ref_predict(m: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h = m[3]
    std = [WP * h, WP * h, 1e-2, WP * h, WV * h, WV * h, 1e-5, WV * h]
    return F @ m, F @ p @ F.T + np.diag(np.square(std))


def _ref_update(m: np.ndarray, p: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h = m[3]
    r = np.diag(np.square([WP * h, WP * h, 1e-1, WP * h]))
    s = H @ p @ H.T + r
    k = p @ H.T @ np.linalg.inv(s)
    return m + k @ (z - H @ m), p - k @ s @ k.T


def test_box_conversions_round_trip() -> None:
    xyxy = np.array([[10.0, 20.0, 50.0, 120.0], [0.0, 0.0, 1.0, 2.0]])
    xyah = xyxy_to_xyah(xyxy)
    np.testing.assert_allclose(xyah, [[30.0, 70.0, 0.4, 100.0], [0.5, 1.0, 0.5, 2.0]])
    np.testing.assert_allclose(xyah_to_xyxy(xyah), xyxy)
    # A Kalman mean (N, 8) converts directly.
    np.testing.assert_allclose(xyah_to_xyxy(np.c_[xyah, np.ones((2, 4))]), xyxy)
    assert xyah_to_xyxy(np.zeros((0, 8))).shape == (0, 4)


def test_batched_filter_equals_per_track_reference() -> None:
    rng = np.random.default_rng(0)
    kf = KalmanFilterXYAH()
    z = rng.uniform([100, 100, 0.3, 50], [500, 400, 0.6, 200], (6, 4))
    mean, cov = kf.initiate(z)
    ref = [_ref_initiate(zi) for zi in z]
    for _ in range(15):
        mean, cov = kf.predict(mean, cov)
        ref = [_ref_predict(*r) for r in ref]
        z = z + rng.normal(0.0, 2.0, z.shape)
        mean, cov = kf.update(mean, cov, z)
        ref = [_ref_update(*r, zi) for r, zi in zip(ref, z, strict=True)]
    for i, (m, p) in enumerate(ref):
        np.testing.assert_allclose(mean[i], m, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(cov[i], p, rtol=1e-9, atol=1e-9)


def test_filter_does_not_modify_inputs_and_handles_empty() -> None:
    kf = KalmanFilterXYAH()
    mean, cov = kf.initiate(np.array([[10.0, 10.0, 0.5, 20.0]]))
    m0, c0 = mean.copy(), cov.copy()
    kf.predict(mean, cov)
    kf.update(mean, cov, np.array([[11.0, 10.0, 0.5, 20.0]]))
    np.testing.assert_array_equal(mean, m0)
    np.testing.assert_array_equal(cov, c0)
    em, ec = kf.initiate(np.zeros((0, 4)))
    assert em.shape == (0, 8) and ec.shape == (0, 8, 8)
    pm, pc = kf.predict(em, ec)
    assert pm.shape == (0, 8) and pc.shape == (0, 8, 8)
    um, uc = kf.update(em, ec, np.zeros((0, 4)))
    assert um.shape == (0, 8) and uc.shape == (0, 8, 8)


def test_constant_velocity_is_learned() -> None:
    kf = KalmanFilterXYAH()
    box = np.array([[100.0, 100.0, 0.5, 100.0]])
    mean, cov = kf.initiate(box)
    for t in range(1, 40):
        mean, cov = kf.predict(mean, cov)
        mean, cov = kf.update(mean, cov, box + np.array([[3.0 * t, 0.0, 0.0, 0.0]]))
    pred, _ = kf.predict(mean, cov)
    assert pred[0, 4] == pytest.approx(3.0, abs=0.05)
    assert pred[0, 0] == pytest.approx(100.0 + 3.0 * 40, abs=0.5)


def test_predict_is_the_matrix_product_to_the_last_bit() -> None:
    # The block formula of predict() adds the same two terms as F P F^T, for any P.
    rng = np.random.default_rng(5)
    kf = KalmanFilterXYAH()
    mean = rng.uniform(1.0, 300.0, (7, 8))
    a = rng.normal(size=(7, 8, 8))
    cov = a @ np.transpose(a, (0, 2, 1))
    new_mean, new_cov = kf.predict(mean, cov)
    std = mean[:, 3:4] * np.array([WP, WP, 0, WP, WV, WV, 0, WV]) + np.array(
        [0, 0, 1e-2, 0, 0, 0, 1e-5, 0]
    )
    expected = F @ cov @ F.T
    expected[:, range(8), range(8)] += std * std
    np.testing.assert_array_equal(new_mean, mean @ F.T)
    np.testing.assert_array_equal(new_cov, expected)


def _general_and_packed_run(
    n: int, steps: int, seed: int
) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
    """Run the general and the packed filter side by side over the same measurements."""
    rng = np.random.default_rng(seed)
    kf = KalmanFilterXYAH()
    z = rng.uniform([100, 100, 0.3, 50], [500, 400, 0.6, 200], (n, 4))
    mean, cov = kf.initiate(z)
    packed = kf.initiate_packed(z.T.copy())
    np.testing.assert_array_equal(pack_state(mean, cov), packed)
    for _ in range(steps):
        mean, cov = kf.predict(mean, cov)
        kf.predict_packed(packed)
        z = z + rng.normal(0.0, 3.0, z.shape)
        rows = (rng.random(n) < 0.7).nonzero()[0]
        mean[rows], cov[rows] = kf.update(mean[rows], cov[rows], z[rows])
        sub = packed.take(rows, axis=1)  # a C-contiguous copy
        kf.update_packed(sub, xyxy_to_xyah_rows(xyah_to_xyxy_rows(z[rows].T.copy())))
        packed[:, rows] = sub
    return (mean, cov), packed


@pytest.mark.parametrize("n", [1, 4, 40])
def test_packed_filter_equals_the_general_one(n: int) -> None:
    (mean, cov), packed = _general_and_packed_run(n, steps=50, seed=n)
    p_mean, p_cov = unpack_state(packed)
    # The same arithmetic (with LAPACK's solve of a diagonal system as b * (1 / d),
    # which OpenBLAS does), so to the last bit here; the box round trip of the
    # measurements above is not exact, hence the tolerance on the means.
    np.testing.assert_allclose(p_mean, mean, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(p_cov, cov, rtol=1e-9, atol=1e-12)
    # Off the four 2x2 blocks the general covariance stays exactly 0.
    off = np.ones((8, 8), bool)
    for k in range(4):
        off[np.ix_([k, k + 4], [k, k + 4])] = False
    assert not cov[:, off].any()


def _solve_uses_reciprocal() -> bool:
    d = np.array([3.0, 7.0, 11.0, 13.0])
    b = np.arange(1.0, 33.0).reshape(1, 4, 8)
    return bool(np.array_equal(np.linalg.solve(np.diag(d)[None], b), b * (1.0 / d)[:, None]))


@pytest.mark.skipif(
    not _solve_uses_reciprocal(), reason="this LAPACK divides where OpenBLAS multiplies"
)
def test_packed_filter_bit_identical_with_exact_measurements() -> None:
    rng = np.random.default_rng(11)
    kf = KalmanFilterXYAH()
    z = rng.uniform([100, 100, 0.3, 50], [500, 400, 0.6, 200], (6, 4))
    mean, cov = kf.initiate(z)
    packed = kf.initiate_packed(z.T.copy())
    for _ in range(30):
        mean, cov = kf.predict(mean, cov)
        kf.predict_packed(packed)
        z = z + rng.normal(0.0, 3.0, z.shape)
        mean, cov = kf.update(mean, cov, z)
        kf.update_packed(packed, z.T.copy())
    np.testing.assert_array_equal(unpack_state(packed)[0], mean)
    np.testing.assert_array_equal(unpack_state(packed)[1], cov)


def test_packed_methods_need_contiguous_states() -> None:
    kf = KalmanFilterXYAH()
    packed = kf.initiate_packed(np.array([[10.0, 20.0], [10.0, 20.0], [0.5, 0.5], [40.0, 50.0]]))
    with pytest.raises(ValueError, match="C-contiguous"):
        kf.predict_packed(packed[:, ::2])
    with pytest.raises(ValueError, match="C-contiguous"):
        kf.update_packed(packed[:, ::2], np.zeros((4, 1)))
    kf.predict_packed(packed[:, :0])  # empty is fine
    m, c = unpack_state(packed)
    np.testing.assert_array_equal(pack_state(m, c), packed)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"std_weight_position": 0.0}, "std_weight_position"),
        ({"std_weight_velocity": -1.0}, "std_weight_velocity"),
        ({"std_weight_position": float("nan")}, "std_weight_position"),
    ],
)
def test_filter_rejects_bad_weights(kwargs: dict[str, float], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        KalmanFilterXYAH(**kwargs)


# ------------------------------------------------------------------------- matching


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([0, 0, 10, 10], [0, 0, 10, 10], 1.0),
        ([0, 0, 10, 10], [10, 0, 20, 10], 0.0),  # touching edges
        ([0, 0, 10, 10], [5, 0, 15, 10], 50.0 / 150.0),
        ([0, 0, 10, 10], [2, 2, 4, 4], 4.0 / 100.0),  # contained
        ([0, 0, 10, 10], [5, 5, 5, 5], 0.0),  # zero area
        ([0, 0, 0, 0], [0, 0, 0, 0], 0.0),  # both zero area
        ([0, 0, 10, 10], [12, 12, 8, 8], 0.0),  # inverted box
    ],
)
def test_box_iou_table(a: list[float], b: list[float], expected: float) -> None:
    assert box_iou([a], [b])[0, 0] == pytest.approx(expected)
    assert box_iou([b], [a])[0, 0] == pytest.approx(expected)


def test_box_iou_shapes() -> None:
    assert box_iou(np.zeros((0, 4)), np.zeros((3, 4))).shape == (0, 3)
    assert box_iou(np.zeros((2, 4)), np.zeros((0, 4))).shape == (2, 0)
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 100, (5, 2))
    boxes = np.c_[xy, xy + rng.uniform(1, 50, (5, 2))]
    iou = box_iou(boxes, boxes)
    np.testing.assert_allclose(np.diag(iou), 1.0)
    np.testing.assert_allclose(iou, iou.T)
    assert ((iou >= 0) & (iou <= 1)).all()


def test_iou_cost_and_fuse_score() -> None:
    iou = np.array([[0.5, 0.0], [1.0, 0.25]])
    np.testing.assert_allclose(iou_cost(iou), [[0.5, NO_MATCH_COST], [0.0, 0.75]])
    fused = iou_cost(iou, np.array([0.5, 1.0]), fuse_score=True)
    np.testing.assert_allclose(fused, [[0.75, NO_MATCH_COST], [0.5, 0.75]])
    with pytest.raises(ValueError, match="det_scores"):
        iou_cost(iou, None, fuse_score=True)


@pytest.mark.parametrize(
    ("cost", "limit", "matches", "u_rows", "u_cols"),
    [
        ([[0.1, 0.9], [0.9, 0.2]], 0.5, [[0, 0], [1, 1]], [], []),
        ([[0.1, 0.9], [0.9, 0.6]], 0.5, [[0, 0]], [1], [1]),
        ([[0.9, 0.1, 0.5]], 0.8, [[0, 1]], [], [0, 2]),
        ([[0.3], [0.2], [0.9]], 0.8, [[1, 0]], [0, 2], []),
        (np.zeros((0, 3)), 0.8, np.zeros((0, 2)), [], [0, 1, 2]),
        (np.zeros((2, 0)), 0.8, np.zeros((0, 2)), [0, 1], []),
        ([[NO_MATCH_COST]], 1.0, np.zeros((0, 2)), [0], [0]),
    ],
)
def test_linear_assignment_table(
    cost: list[list[float]],
    limit: float,
    matches: list[list[int]],
    u_rows: list[int],
    u_cols: list[int],
) -> None:
    m, ur, uc = linear_assignment(np.asarray(cost, dtype=float), limit)
    np.testing.assert_array_equal(m.reshape(-1, 2), np.asarray(matches).reshape(-1, 2))
    np.testing.assert_array_equal(ur, u_rows)
    np.testing.assert_array_equal(uc, u_cols)


@pytest.mark.parametrize(
    ("cost", "limit", "message"),
    [(np.zeros(3), 0.5, "cost"), (np.zeros((2, 2)), 0.0, "cost_limit")],
)
def test_linear_assignment_rejects_bad_input(cost: np.ndarray, limit: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        linear_assignment(cost, limit)


def _best_saving(cost: np.ndarray, limit: float) -> float:
    """Brute force: the largest sum of (limit - cost) over matchings of pairs <= limit."""
    n, m = cost.shape
    best = 0.0
    for k in range(1, min(n, m) + 1):
        for rows in itertools.combinations(range(n), k):
            for cols in itertools.permutations(range(m), k):
                c = cost[list(rows), list(cols)]
                if (c <= limit).all():
                    best = max(best, float((limit - c).sum()))
    return best


@settings(max_examples=60, deadline=None)
@given(
    cost=arrays(
        np.float64,
        st.tuples(st.integers(1, 4), st.integers(1, 4)),
        elements=st.floats(0.0, 1.0, allow_nan=False),
    ),
    limit=st.floats(0.05, 1.0),
)
def test_linear_assignment_is_optimal_and_one_to_one(cost: np.ndarray, limit: float) -> None:
    matches, u_rows, u_cols = linear_assignment(cost, limit)
    rows, cols = matches[:, 0], matches[:, 1]
    assert len(set(rows)) == len(rows) and len(set(cols)) == len(cols)
    assert sorted([*rows, *u_rows]) == list(range(cost.shape[0]))
    assert sorted([*cols, *u_cols]) == list(range(cost.shape[1]))
    assert (cost[rows, cols] <= limit).all()
    saving = float((limit - cost[rows, cols]).sum())
    assert saving == pytest.approx(_best_saving(cost, limit), abs=1e-9)


def test_box_iou_rows_equals_box_iou() -> None:
    rng = np.random.default_rng(2)
    xy = rng.uniform(0, 100, (9, 2))
    a = np.c_[xy, xy + rng.uniform(-5, 50, (9, 2))]  # some inverted boxes too
    b = a[::-1] + rng.normal(0, 3, a.shape)
    np.testing.assert_array_equal(box_iou_rows(a.T.copy(), b.T.copy()), box_iou(a, b))


def _candidates(cost: np.ndarray, limit: float) -> tuple[list[int], list[int], list[float]]:
    r, c = (cost <= limit).nonzero()
    return r.tolist(), c.tolist(), cost[r, c].tolist()


@settings(max_examples=80, deadline=None)
@given(
    cost=arrays(
        np.float64,
        st.tuples(st.integers(1, 5), st.integers(1, 5)),
        elements=st.sampled_from([0.0, 0.1, 0.25, 0.3, 0.5, 0.7, 0.9, 1.0]),  # many ties
    ),
    limit=st.sampled_from([0.3, 0.5, 0.8, 1.0]),
)
def test_match_candidates_is_optimal_with_ties(cost: np.ndarray, limit: float) -> None:
    pairs = match_candidates(*_candidates(cost, limit), limit)
    assert pairs == sorted(pairs)
    rows, cols = [r for r, _ in pairs], [c for _, c in pairs]
    assert len(set(rows)) == len(rows) and len(set(cols)) == len(cols)
    assert all(cost[r, c] <= limit for r, c in pairs)
    saving = sum(limit - cost[r, c] for r, c in pairs)
    assert saving == pytest.approx(_best_saving(cost, limit), abs=1e-9)


@settings(max_examples=80, deadline=None)
@given(
    cost=arrays(
        np.float64,
        st.tuples(st.integers(1, 4), st.integers(1, 4)),
        elements=st.floats(0.0, 1.0, allow_nan=False),
    ),
)
def test_small_assignment_agrees_with_lap(cost: np.ndarray) -> None:
    limit = 0.8
    r, c, v = _candidates(cost, limit)
    cands = list(zip(r, c, v, strict=True))
    small = _small_assignment(cands, limit)
    if small is not None:  # None: too many matchings or no clear best, left to lap
        assert sorted(small) == sorted(_lap_assignment(cands, limit))


def test_match_candidates_fast_paths() -> None:
    assert match_candidates([], [], [], 0.5) == []
    # Apart: no solver; a pair exactly at the limit goes to the solver.
    assert match_candidates([0, 1], [1, 0], [0.2, 0.4], 0.5) == [(0, 1), (1, 0)]
    assert match_candidates([0], [0], [0.5], 0.5) in ([], [(0, 0)])
    # Two rows want one column: the cheaper wins, the other row's own column stays.
    assert match_candidates([0, 1, 1], [0, 0, 1], [0.1, 0.2, 0.3], 0.8) == [(0, 0), (1, 1)]
    # Competing candidates beyond the Python search go to lap.
    n = 8
    full = np.full((n, n), 0.5) - 0.3 * np.eye(n)
    assert match_candidates(*_candidates(full, 0.8), 0.8) == [(i, i) for i in range(n)]


# ------------------------------------------------------------- compiled lapjv


@settings(max_examples=300, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 7), st.integers(1, 7)),
    data=st.data(),
    cost_limit=st.sampled_from([0.3, 0.5, 0.7, 0.8, 1.0, 1.5]),
    quantize=st.booleans(),
)
def test_lapjv_limit_equals_lap(
    shape: tuple[int, int], data: st.DataObject, cost_limit: float, quantize: bool
) -> None:
    """The compiled solver returns exactly what lap.lapjv(extend_cost=True,
    cost_limit=...) returns, ties included (quantized costs make many)."""
    cost = data.draw(arrays(np.float64, shape, elements=st.floats(0.0, 1.0)))
    if quantize:
        cost = np.round(cost * 4.0) / 4.0
    x, y = lapjv_limit(cost, cost_limit)
    _, x_ref, y_ref = lap.lapjv(cost, extend_cost=True, cost_limit=cost_limit)
    np.testing.assert_array_equal(x, x_ref)
    np.testing.assert_array_equal(y, y_ref)


@settings(max_examples=100, deadline=None)
@given(n=st.integers(1, 9), data=st.data())
def test_lapjv_square_equals_lap(n: int, data: st.DataObject) -> None:
    cost = data.draw(arrays(np.float64, (n, n), elements=st.floats(0.0, 3.0)))
    x, y = lapjv_square(cost)
    _, x_ref, y_ref = lap.lapjv(cost, extend_cost=False)
    np.testing.assert_array_equal(x, x_ref)
    np.testing.assert_array_equal(y, y_ref)
