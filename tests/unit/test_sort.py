"""Exact unit tests of trackers.sort.Sort and trackers.kalman_xysr (synthetic detections)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from tracker_helpers import _box, _check_output, _dets, _empty

from trackers.kalman_xysr import KalmanFilterXYSR, xysr_to_xyxy, xyxy_to_xysr
from trackers.matching import box_iou
from trackers.sort import Sort, _associate


def _reference_filter(
    z0: np.ndarray, steps: list[np.ndarray | None]
) -> tuple[np.ndarray, np.ndarray]:
    """SORT's 7-D filter written out with full matrices (filterpy's equations)."""
    f = np.eye(7)
    f[0, 4] = f[1, 5] = f[2, 6] = 1.0
    h = np.eye(4, 7)
    q = np.eye(7)
    q[-1, -1] *= 0.01
    q[4:, 4:] *= 0.01
    r = np.eye(4)
    r[2:, 2:] *= 10.0
    means, covs = [], []
    for z_init in z0:
        x = np.r_[z_init, 0.0, 0.0, 0.0]
        p = np.eye(7)
        p[4:, 4:] *= 1000.0
        p *= 10.0
        for z in steps:
            if x[6] + x[2] <= 0:
                x[6] = 0.0
            x = f @ x
            p = f @ p @ f.T + q
            if z is not None:
                zi = z[len(means)]
                s = h @ p @ h.T + r
                k = p @ h.T @ np.linalg.inv(s)
                x = x + k @ (zi - h @ x)
                ikh = np.eye(7) - k @ h
                p = ikh @ p @ ikh.T + k @ r @ k.T  # Joseph form, as filterpy
        means.append(x)
        covs.append(p)
    return np.array(means), np.array(covs)


def test_kalman_xysr_matches_the_full_matrix_filter() -> None:
    rng = np.random.default_rng(0)
    n = 6
    z0 = np.c_[rng.uniform(0, 600, (n, 2)), rng.uniform(800, 6000, n), rng.uniform(0.3, 0.7, n)]
    steps: list[np.ndarray | None] = []
    for t in range(25):
        if t % 5 == 4:
            steps.append(None)  # a missed frame: predict only
        else:
            drift = np.array([4.0, -2.0, -400.0, 0.0]) * (t + 1)  # area shrinks fast
            steps.append(z0 + drift + rng.normal(0, 1, (n, 4)) * [2, 2, 50, 0.01])
    kf = KalmanFilterXYSR()
    state = kf.initiate(z0.T)  # component-major: (4, N) in, (5, 4, N) state
    for z in steps:
        kf.predict(state)
        if z is not None:
            kf.update(state, z.T)
    mean, cov = _reference_filter(z0, steps)
    np.testing.assert_allclose(kf.mean(state), mean, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(kf.covariance(state), cov, rtol=1e-9, atol=1e-9)


def test_kalman_xysr_area_velocity_clamp() -> None:
    kf = KalmanFilterXYSR()
    state = kf.initiate(np.array([[100.0, 100.0, 50.0, 0.5], [10.0, 10.0, 50.0, 0.5]]).T)
    state[1, 2] = [-80.0, -20.0]  # area velocities: the first would make the area negative
    kf.predict(state)
    assert state[1, 2].tolist() == [0.0, -20.0] and state[0, 2].tolist() == [50.0, 30.0]
    kf.predict(state[:, :, :1])  # views work too
    assert state[0, 2].tolist() == [50.0, 30.0] and state[2, 2, 0] > state[2, 2, 1]


def test_box_conversions_round_trip() -> None:
    boxes = np.array([[10.0, 20.0, 50.0, 120.0], [0.0, 0.0, 1.0, 3.0]])
    z = xyxy_to_xysr(boxes)
    np.testing.assert_allclose(z[0], [30.0, 70.0, 4000.0, 0.4])
    np.testing.assert_allclose(xysr_to_xyxy(z), boxes, atol=1e-9)
    assert not np.isfinite(xysr_to_xyxy([[0.0, 0.0, -5.0, 0.5]])).all()


# ------------------------------------------------------------------ association


@pytest.mark.parametrize(
    ("iou", "expected"),
    [
        # One candidate per row and column: taken directly, even though the
        # maximum-sum assignment over all pairs would prefer (0,1)+(1,0).
        ([[0.35, 0.29], [0.29, 0.0]], [(0, 0)]),
        # Not one-to-one: the maximum summed IoU over all pairs wins (0.85 > 0.5).
        ([[0.5, 0.4], [0.45, 0.0]], [(0, 1), (1, 0)]),
        # The maximum-sum assignment may pair below the threshold: those are dropped.
        ([[0.6, 0.5, 0.0], [0.55, 0.0, 0.0]], [(0, 1), (1, 0)]),
        # ... so a row can end with its weaker candidate: 0.31 + 0.2 beats 0.35 + 0.
        ([[0.31, 0.35], [0.0, 0.2]], [(0, 0)]),
        ([[0.1, 0.2]], []),
        (np.zeros((0, 3)), []),
    ],
)
def test_associate_follows_the_reference(iou: Any, expected: list[tuple[int, int]]) -> None:
    rows, cols = _associate(np.asarray(iou, dtype=np.float64), 0.3)
    assert sorted(zip(rows.tolist(), cols.tolist(), strict=True)) == expected


# ---------------------------------------------------------------------- basics


def test_empty_frames() -> None:
    tracker = Sort()
    for _ in range(3):
        out = tracker.update(*_empty())
        _check_output(out)
        assert len(out) == 0
    assert len(tracker.update(np.zeros(0), [], [])) == 0
    assert tracker.frame_id == 4 and tracker.num_tracks == 0


def test_first_min_hits_frames_report_at_once_later_tracks_need_min_hits_matches() -> None:
    tracker = Sort(min_hits=3)
    a = [_box(100 + 2 * t, 100) for t in range(10)]
    assert tracker.update(*_dets([a[0]])).track_id.tolist() == [1]  # frame 1 <= min_hits
    assert tracker.update(*_dets([a[1]])).track_id.tolist() == [1]
    assert tracker.update(*_dets([a[2]])).track_id.tolist() == [1]
    # Frame 4: a newcomer needs three matches after its birth frame.
    for t, expected in [(3, [1]), (4, [1]), (5, [1]), (6, [1, 2])]:
        out = tracker.update(*_dets([a[t], _box(400, 300)]))
        assert out.track_id.tolist() == expected


def test_a_missed_frame_ends_the_hit_streak() -> None:
    tracker = Sort(min_hits=3, lost_track_buffer_s=1.0)  # max_age 30
    for _ in range(5):
        assert tracker.update(*_dets([_box(100, 100)])).track_id.tolist() == [1]
    assert len(tracker.update(*_empty())) == 0
    for _ in range(2):
        assert len(tracker.update(*_dets([_box(100, 100)]))) == 0  # streak 1, 2
    assert tracker.update(*_dets([_box(100, 100)])).track_id.tolist() == [1]  # same id


def test_min_hits_zero_reports_new_tracks_at_once() -> None:
    tracker = Sort(min_hits=0)
    for _ in range(5):
        tracker.update(*_dets([_box(100, 100)]))
    out = tracker.update(*_dets([_box(100, 100), _box(400, 300)]))
    assert out.track_id.tolist() == [1, 2]


def test_single_object_keeps_id_moving_linearly_and_across_a_gap() -> None:
    tracker = Sort(frame_rate=30.0, lost_track_buffer_s=0.1, min_hits=1)  # max_age 3
    ids: set[int] = set()
    cx = 50.0
    for _ in range(30):
        cx += 5.0
        out = tracker.update(*_dets([_box(cx, 200)]))
        ids.update(out.track_id.tolist())
    assert ids == {1}
    # Two frames missing: the next frame arrives with frames_elapsed=3.
    cx += 3 * 5.0
    out = tracker.update(*_dets([_box(cx, 200)]), frames_elapsed=3)
    assert out.track_id.tolist() == [1] and out.det_index.tolist() == [0]
    np.testing.assert_allclose(out.xyxy[0], _box(cx, 200), atol=1.0)
    assert tracker.frame_id == 33
    # The gap ended the hit streak (min_hits=1: reported again once re-matched).
    out = tracker.update(*_dets([_box(cx + 5.0, 200)]))
    assert out.track_id.tolist() == [1]


def test_reported_box_is_the_corrected_kalman_state() -> None:
    tracker = Sort(min_hits=0)
    tracker.update(*_dets([_box(100, 100)]))
    out = tracker.update(*_dets([_box(110, 100)]))
    # Kalman: the correction lands between prediction (100) and measurement (110).
    cx = (out.xyxy[0, 0] + out.xyxy[0, 2]) / 2
    assert 100.0 < cx < 110.0
    # Gain P/(P+R) with the predicted P = 10 + 1e4 (velocity variance) + 1, R = 1.
    assert cx == pytest.approx(100 + 10 * 10011 / 10012, abs=1e-4)


def test_two_crossing_objects_keep_their_ids() -> None:
    tracker = Sort(min_hits=1)
    first: dict[int, float] = {}
    last: dict[int, float] = {}
    for t in range(60):
        a = _box(50 + 8 * t, 200)
        b = _box(530 - 8 * t, 215)
        out = tracker.update(*_dets([a, b]))
        assert len(out) == 2
        centres = (out.xyxy[:, 0] + out.xyxy[:, 2]) / 2
        for tid, c in zip(out.track_id.tolist(), centres.tolist(), strict=True):
            first.setdefault(tid, c)
            last[tid] = c
    assert sorted(first) == [1, 2]
    for tid in first:
        assert (first[tid] < 290) == (last[tid] > 290)


def test_det_index_points_at_the_detection_used() -> None:
    rng = np.random.default_rng(3)
    tracker = Sort(min_hits=1)
    centres = np.array([[100.0, 100.0], [300.0, 120.0], [500.0, 300.0], [200.0, 400.0]])
    for t in range(20):
        boxes = np.array([_box(x + 2 * t, y) for x, y in centres], dtype=np.float32)
        order = rng.permutation(len(boxes))
        scores = rng.uniform(0.6, 1.0, len(boxes)).astype(np.float32)
        classes = np.arange(len(boxes), dtype=np.int32)
        xyxy, conf, cls = boxes[order], scores[order], classes[order]
        out = tracker.update(xyxy, conf, cls)
        _check_output(out)
        assert len(out) == 4 and (out.det_index >= 0).all()
        assert len(set(out.det_index.tolist())) == 4
        for row in range(len(out)):
            i = out.det_index[row]
            assert box_iou(out.xyxy[row : row + 1], xyxy[i : i + 1])[0, 0] > 0.9
            assert out.confidence[row] == conf[i]
            assert out.class_id[row] == cls[i]


def test_input_arrays_are_not_mutated() -> None:
    rng = np.random.default_rng(4)
    tracker = Sort(output_coasting=True, min_hits=0, lost_track_buffer_s=0.2)
    for t in range(15):
        xy = rng.uniform(0, 500, (6, 2)).astype(np.float32)
        xyxy = np.c_[xy, xy + 50].astype(np.float32)
        conf = rng.uniform(0.0, 1.0, 6).astype(np.float32)
        cls = rng.integers(0, 3, 6).astype(np.int32)
        copies = (xyxy.copy(), conf.copy(), cls.copy())
        for a in (xyxy, conf, cls):
            a.flags.writeable = t % 2 == 0  # read-only inputs must work too
        tracker.update(xyxy, conf, cls)
        for a, c in zip((xyxy, conf, cls), copies, strict=True):
            np.testing.assert_array_equal(a, c)


def test_det_threshold_ignores_low_detections() -> None:
    tracker = Sort(det_threshold=0.5, min_hits=0)
    out = tracker.update(*_dets([_box(100, 100), _box(300, 100)], [0.4, 0.6]))
    assert out.det_index.tolist() == [1]
    assert tracker.num_tracks == 1


def test_degenerate_and_non_finite_detections_are_ignored() -> None:
    tracker = Sort(min_hits=0)
    boxes = [[10, 10, 10, 50], [np.nan, 0, 5, 5], [0, 0, 50, 50], [5, 5, 40, 40], [0, 0, np.inf, 5]]
    out = tracker.update(*_dets(boxes, [0.9, 0.9, 0.9, float("nan"), 0.9]))
    assert out.det_index.tolist() == [2]


def test_class_aware_association() -> None:
    for class_aware, expect_same in ((False, True), (True, False)):
        tracker = Sort(class_aware=class_aware, min_hits=0)
        tracker.update(*_dets([_box(100, 100)], [0.9], [0]))
        out = tracker.update(*_dets([_box(101, 100)], [0.9], [1]))
        if expect_same:
            assert out.track_id.tolist() == [1] and out.class_id.tolist() == [1]
        else:
            assert out.track_id.tolist() == [2] and out.class_id.tolist() == [1]


def test_output_coasting_reports_unmatched_tracks_with_det_index_minus_one() -> None:
    for coasting in (False, True):
        tracker = Sort(output_coasting=coasting, lost_track_buffer_s=0.1)  # max_age 3
        for t in range(5):
            tracker.update(*_dets([_box(100 + 4 * t, 100), _box(400, 300)]))
        out = tracker.update(*_dets([_box(400, 300)]))  # object 1 missed
        _check_output(out)
        if coasting:
            assert out.track_id.tolist() == [1, 2]
            assert out.det_index.tolist() == [-1, 0]
            np.testing.assert_allclose(out.xyxy[0], _box(120, 100), atol=2.0)
        else:
            assert out.track_id.tolist() == [2] and out.det_index.tolist() == [0]


def test_reset_clears_tracks_but_ids_are_not_reused() -> None:
    tracker = Sort()
    tracker.update(*_dets([_box(100, 100), _box(300, 100)]))
    tracker.reset()
    assert tracker.num_tracks == 0 and tracker.frame_id == 0
    assert tracker.update(*_dets([_box(100, 100)])).track_id.tolist() == [3]


def test_ids_are_given_when_first_reported_and_instances_are_independent() -> None:
    a, b = Sort(), Sort()
    for _ in range(4):
        a.update(*_dets([_box(100, 100)]))
    # A one-frame false positive at frame 5 is never reported and takes no id.
    a.update(*_dets([_box(100, 100), _box(400, 400)]))
    for _ in range(4):
        out = a.update(*_dets([_box(100, 100), _box(250, 250)]))
    assert out.track_id.tolist() == [1, 2]
    assert b.update(*_dets([_box(100, 100)])).track_id.tolist() == [1]


# ------------------------------------------------------------------ max_age


def _reappear_id(tracker: Sort, missing: int, *, as_gap: bool) -> int:
    """Track a still object 5 frames, hide it ``missing`` frames, return its id after."""
    box = [_box(200, 200)]
    for _ in range(5):
        tracker.update(*_dets(box))
    if as_gap:
        tracker.update(*_dets(box), frames_elapsed=missing + 1)
    else:
        for _ in range(missing):
            tracker.update(*_empty())
        tracker.update(*_dets(box))
    for _ in range(3):  # regain the hit streak
        out = tracker.update(*_dets(box))
    assert len(out) == 1
    return int(out.track_id[0])


@pytest.mark.parametrize("as_gap", [False, True])
@pytest.mark.parametrize(
    ("fps", "buffer_s", "frames"),
    [(25.0, 0.04, 1), (30.0, 1.0 / 30.0, 1), (30.0, 0.0, 1), (10.0, 0.5, 5), (30.0, 1.0, 30)],
)
def test_max_age_in_seconds_follows_frame_rate(
    fps: float, buffer_s: float, frames: int, as_gap: bool
) -> None:
    assert Sort(frame_rate=fps, lost_track_buffer_s=buffer_s).max_age == frames
    kept = Sort(frame_rate=fps, lost_track_buffer_s=buffer_s)
    assert _reappear_id(kept, frames, as_gap=as_gap) == 1
    dropped = Sort(frame_rate=fps, lost_track_buffer_s=buffer_s)
    assert _reappear_id(dropped, frames + 1, as_gap=as_gap) == 2
    assert dropped.num_tracks == 1  # the dead track is gone at once


def test_set_frame_rate_changes_max_age() -> None:
    tracker = Sort(frame_rate=30.0, lost_track_buffer_s=0.5)
    assert tracker.max_age == 15
    tracker.set_frame_rate(10.0)
    assert tracker.frame_rate == 10.0 and tracker.max_age == 5
    assert tracker.params()["frame_rate"] == 10.0 and "Sort(" in repr(tracker)
    with pytest.raises(ValueError, match="frame_rate"):
        tracker.set_frame_rate(0.0)


def test_max_tracks_caps_the_table() -> None:
    tracker = Sort(max_tracks=5, lost_track_buffer_s=10.0, min_hits=0)
    boxes = [_box(60 + 70 * i, 100) for i in range(4)]
    for _ in range(3):
        tracker.update(*_dets(boxes))
    # Four matched tracks plus three newcomers: the lowest-scored newcomers go.
    more = [_box(60 + 70 * i, 400) for i in range(3)]
    out = tracker.update(*_dets(boxes + more, [0.9] * 4 + [0.5, 0.8, 0.7]))
    assert tracker.num_tracks == 5
    assert sorted(out.det_index.tolist()) == [0, 1, 2, 3, 5]
    # An empty frame, then new objects: the unmatched tracks make room.
    tracker.update(*_empty())
    tracker.update(*_dets([_box(60 + 70 * i, 250) for i in range(5)]))
    assert tracker.num_tracks == 5


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"iou_threshold": 0.0}, "iou_threshold"),
        ({"iou_threshold": 1.5}, "iou_threshold"),
        ({"iou_threshold": "0.3"}, "iou_threshold"),
        ({"iou_threshold": float("nan")}, "iou_threshold"),
        ({"lost_track_buffer_s": -0.1}, "lost_track_buffer_s"),
        ({"lost_track_buffer_s": float("inf")}, "lost_track_buffer_s"),
        ({"min_hits": -1}, "min_hits"),
        ({"min_hits": 2.5}, "min_hits"),
        ({"min_hits": True}, "min_hits"),
        ({"det_threshold": -0.1}, "det_threshold"),
        ({"det_threshold": 1.1}, "det_threshold"),
        ({"class_aware": "yes"}, "class_aware"),
        ({"output_coasting": None}, "output_coasting"),
        ({"max_tracks": 0}, "max_tracks"),
        ({"max_tracks": 10.0}, "max_tracks"),
        ({"frame_rate": 0.0}, "frame_rate"),
        ({"frame_rate": float("inf")}, "frame_rate"),
    ],
)
def test_invalid_parameters_raise_naming_the_parameter(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=rf"^{name}: must"):
        Sort(**kwargs)


def test_error_message_states_the_range() -> None:
    with pytest.raises(ValueError, match=r"iou_threshold: must be in \(0, 1\], got 1.5"):
        Sort(iou_threshold=1.5)
    with pytest.raises(ValueError, match=r"min_hits: must be an integer >= 0, got -1"):
        Sort(min_hits=-1)


@pytest.mark.parametrize(
    ("args", "kwargs", "name"),
    [
        ((np.zeros((2, 3)), np.zeros(2), np.zeros(2, int)), {}, "xyxy"),
        ((np.zeros((2, 4)), np.zeros(3), np.zeros(2, int)), {}, "confidence"),
        ((np.zeros((2, 4)), np.zeros(2), np.zeros(3, int)), {}, "class_id"),
        ((np.zeros((1, 4)), np.zeros(1), np.array([0.5])), {}, "class_id"),
        (_empty(), {"frames_elapsed": 0}, "frames_elapsed"),
        (_empty(), {"frames_elapsed": 1.0}, "frames_elapsed"),
    ],
)
def test_update_rejects_bad_input(args: tuple[Any, ...], kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        Sort().update(*args, **kwargs)
