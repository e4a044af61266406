"""Exact unit tests of trackers.kalman and trackers.matching."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from trackers.kalman import KalmanFilterXYAH, xyah_to_xyxy, xyxy_to_xyah
from trackers.matching import NO_MATCH_COST, box_iou, iou_cost, linear_assignment

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
