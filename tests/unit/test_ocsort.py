"""Exact unit tests of trackers.ocsort.OcSort (synthetic detections; no data files)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from tracker_helpers import _box, _check_output, _dets, _empty

from trackers.kalman_xysr import KalmanFilterXYSR, xysr_to_xyxy, xyxy_to_xysr
from trackers.matching import box_iou
from trackers.ocsort import OcSort
from trackers.sort import Sort


def test_empty_frames() -> None:
    tracker = OcSort()
    for _ in range(3):
        out = tracker.update(*_empty())
        _check_output(out)
        assert len(out) == 0
    assert len(tracker.update(np.zeros(0), [], [])) == 0
    assert tracker.frame_id == 4 and tracker.num_tracks == 0


def test_defaults_are_the_reference_settings() -> None:
    tracker = OcSort()
    assert (tracker.max_age, tracker.delta_t, tracker.min_hits) == (30, 3, 3)
    assert (tracker.det_threshold, tracker.iou_threshold, tracker.inertia) == (0.6, 0.3, 0.2)
    tracker.set_frame_rate(25.0)
    assert (tracker.max_age, tracker.delta_t) == (25, 3)  # 0.1 s * 25 = 2.5 -> 3 (half up)
    assert tracker.params()["frame_rate"] == 25.0 and "OcSort(" in repr(tracker)


def test_min_hits_and_first_frames() -> None:
    tracker = OcSort(min_hits=3)
    a = [_box(100 + 2 * t, 100) for t in range(10)]
    for t in range(3):  # frames 1..3 <= min_hits: reported at once
        assert tracker.update(*_dets([a[t]])).track_id.tolist() == [1]
    for t, expected in [(3, [1]), (4, [1]), (5, [1]), (6, [1, 2])]:
        out = tracker.update(*_dets([a[t], _box(400, 300)]))
        assert out.track_id.tolist() == expected


def test_single_object_keeps_id_moving_linearly_and_across_a_gap() -> None:
    tracker = OcSort(frame_rate=30.0, min_hits=1)
    ids: set[int] = set()
    cx = 50.0
    for _ in range(30):
        cx += 5.0
        out = tracker.update(*_dets([_box(cx, 200)]))
        ids.update(out.track_id.tolist())
    assert ids == {1}
    cx += 3 * 5.0
    out = tracker.update(*_dets([_box(cx, 200)]), frames_elapsed=3)
    assert out.track_id.tolist() == [1] and out.det_index.tolist() == [0]
    np.testing.assert_array_equal(out.xyxy[0], np.float32(_box(cx, 200)))  # the observation
    assert tracker.frame_id == 33


@pytest.mark.parametrize("as_gap", [False, True])
def test_occluded_object_reappearing_on_its_linear_path_keeps_its_id(as_gap: bool) -> None:
    """Hidden for 10 frames (another object walks elsewhere, or a stream gap)."""
    tracker = OcSort(frame_rate=30.0, min_hits=1, output_coasting=True)
    for t in range(15):
        out = tracker.update(*_dets([_box(100 + 6 * t, 200)]))
    assert out.track_id.tolist() == [1]
    if as_gap:
        t += 11
        out = tracker.update(*_dets([_box(100 + 6 * t, 200)]), frames_elapsed=11)
    else:
        for _ in range(10):
            t += 1
            tracker.update(*_dets([_box(600 - 6 * t, 350)]))  # someone else, far away
        t += 1
        out = tracker.update(*_dets([_box(100 + 6 * t, 200), _box(600 - 6 * t, 350)]))
    assert out.det_index[out.track_id == 1].tolist() == [0]
    # After the re-update (ORU) the filter follows the path.
    for _ in range(3):
        t += 1
        pred = tracker.update(*_empty())
        assert box_iou(pred.xyxy[pred.track_id == 1], [_box(100 + 6 * t, 200)])[0, 0] > 0.9


def test_oru_helps_after_a_change_of_speed_while_hidden() -> None:
    """4 px/frame before, 7 px/frame while hidden and after: ORU adapts the velocity."""

    def prediction_errors(tracker: OcSort) -> list[float]:
        box = lambda x: _box(x, 200, 60, 120)  # noqa: E731
        x = 100.0
        for _ in range(10):
            x += 4.0
            tracker.update(*_dets([box(x)]))
        for _ in range(6):
            x += 7.0
            tracker.update(*_empty())
        x += 7.0
        assert tracker.update(*_dets([box(x)])).track_id.tolist() == [1]
        errors = []
        for _ in range(3):
            x += 7.0
            out = tracker.update(*_empty())
            errors.append(abs(float(out.xyxy[0, 0] + out.xyxy[0, 2]) / 2 - x))
        return errors

    with_oru = prediction_errors(OcSort(min_hits=1, output_coasting=True, inertia=0.0))
    without = OcSort(min_hits=1, output_coasting=True, inertia=0.0)
    without._re_update = lambda rows, z_boxes: None  # type: ignore[method-assign]
    without_oru = prediction_errors(without)
    assert all(a < b for a, b in zip(with_oru, without_oru, strict=True))


def test_ocr_recovers_an_object_that_stopped_while_hidden() -> None:
    """The prediction runs on; the last observation still overlaps the reappearance."""

    def run(tracker: Sort | OcSort) -> list[int]:
        for t in range(20):
            tracker.update(*_dets([_box(100 + 10 * t, 200)]))
        for _ in range(6):
            tracker.update(*_empty())  # hidden; the Kalman prediction moves 60 px on
        ids = []
        for _ in range(2):
            ids += tracker.update(*_dets([_box(100 + 10 * 19, 200)])).track_id.tolist()
            if isinstance(tracker, OcSort):
                assert tracker.num_tracks == 1  # the recovered detection starts no track
        return ids

    assert run(OcSort(min_hits=1, lost_track_buffer_s=1.0)) == [1, 1]
    assert run(Sort(min_hits=1, lost_track_buffer_s=1.0)) == [2]  # SORT starts anew


def test_oru_reruns_the_filter_along_the_virtual_trajectory() -> None:
    """White-box check against the Kalman filter driven by hand, as the reference does."""
    boxes = [_box(100 + 4 * t, 200, 40 + t, 100 + 2 * t) for t in range(5)]
    reappear = _box(100 + 4 * 8 + 12, 200, 52, 118)  # frame 9: after 3 missed frames
    tracker = OcSort(min_hits=0, inertia=0.0, output_coasting=True)
    for b in boxes:
        tracker.update(*_dets([b]))
    for _ in range(3):
        tracker.update(*_empty())
    assert tracker.update(*_dets([reappear])).det_index.tolist() == [0]
    predicted = tracker.update(*_empty()).xyxy[0]

    kf = KalmanFilterXYSR()
    state = kf.initiate(xyxy_to_xysr([boxes[0]]).T)  # component-major
    for b in boxes[1:]:
        kf.predict(state)
        kf.update(state, xyxy_to_xysr([b]).T)
    kf.predict(state)  # frame 6: the first missed frame, frozen here
    start, end = np.array(boxes[-1]), np.array(reappear)
    c0, c1 = (start[:2] + start[2:]) / 2, (end[:2] + end[2:]) / 2
    s0, s1 = start[2:] - start[:2], end[2:] - end[:2]
    for i in range(1, 5):  # frames 6..9, linear in centre, width and height
        c, s = c0 + (c1 - c0) * i / 4, s0 + (s1 - s0) * i / 4
        kf.update(state, np.array([[c[0]], [c[1]], [s[0] * s[1]], [s[0] / s[1]]]))
        if i < 4:
            kf.predict(state)
    kf.update(state, xyxy_to_xysr([reappear]).T)  # the reference updates once more
    kf.predict(state)
    np.testing.assert_allclose(predicted, xysr_to_xyxy(state[0].T)[0], atol=1e-3)


def test_momentum_prefers_the_detection_in_the_direction_of_motion() -> None:
    """Two candidates; the IoU slightly favours the one off the track's heading."""

    def matched(inertia: float) -> int:
        tracker = OcSort(inertia=inertia, min_hits=0)
        for f in range(8):
            tracker.update(*_dets([_box(100 + 10 * f, 200, 60, 60)]))
        off_heading = _box(180, 205, 60, 60)
        on_heading = _box(186, 200, 60, 60)
        out = tracker.update(*_dets([off_heading, on_heading]))
        return int(out.det_index[out.track_id == 1][0])

    assert matched(0.0) == 0
    assert matched(1.0) == 1


def test_use_byte_continues_a_track_with_a_low_score_detection() -> None:
    for use_byte in (False, True):
        tracker = OcSort(use_byte=use_byte, det_threshold=0.6, low_threshold=0.2, min_hits=0)
        for t in range(4):
            tracker.update(*_dets([_box(100 + 3 * t, 100)], [0.9]))
        out = tracker.update(*_dets([_box(112, 100), _box(400, 400)], [0.4, 0.4]))
        if use_byte:
            assert out.track_id.tolist() == [1] and out.det_index.tolist() == [0]
        else:
            assert len(out) == 0
        assert tracker.num_tracks == 1  # low detections never start tracks


def test_det_threshold_and_degenerate_detections() -> None:
    tracker = OcSort(det_threshold=0.5, min_hits=0)
    boxes = [_box(100, 100), _box(300, 100), [10, 10, 10, 50], [np.nan, 0, 5, 5]]
    out = tracker.update(*_dets(boxes, [0.4, 0.5, 0.9, 0.9]))
    assert out.det_index.tolist() == [1]  # 0.5 >= det_threshold is used


def test_det_index_points_at_the_detection_used() -> None:
    rng = np.random.default_rng(3)
    tracker = OcSort(min_hits=1)
    centres = np.array([[100.0, 100.0], [300.0, 120.0], [500.0, 300.0], [200.0, 400.0]])
    for t in range(20):
        boxes = np.array([_box(x + 2 * t, y) for x, y in centres], dtype=np.float32)
        order = rng.permutation(len(boxes))
        scores = rng.uniform(0.6, 1.0, len(boxes)).astype(np.float32)
        classes = np.arange(len(boxes), dtype=np.int32)
        xyxy, conf, cls = boxes[order], scores[order], classes[order]
        out = tracker.update(xyxy, conf, cls)
        _check_output(out)
        assert len(out) == 4 and len(set(out.det_index.tolist())) == 4
        for row in range(len(out)):
            i = out.det_index[row]
            np.testing.assert_array_equal(out.xyxy[row], xyxy[i])
            assert out.confidence[row] == conf[i] and out.class_id[row] == cls[i]


def test_input_arrays_are_not_mutated() -> None:
    rng = np.random.default_rng(4)
    tracker = OcSort(output_coasting=True, min_hits=0, use_byte=True)
    for t in range(25):
        xy = rng.uniform(0, 500, (6, 2)).astype(np.float32)
        xyxy = np.c_[xy, xy + 50].astype(np.float32)
        conf = rng.uniform(0.0, 1.0, 6).astype(np.float32)
        cls = rng.integers(0, 3, 6).astype(np.int32)
        copies = (xyxy.copy(), conf.copy(), cls.copy())
        for a in (xyxy, conf, cls):
            a.flags.writeable = t % 2 == 0
        tracker.update(xyxy, conf, cls)
        for a, c in zip((xyxy, conf, cls), copies, strict=True):
            np.testing.assert_array_equal(a, c)


def test_class_aware_association() -> None:
    for class_aware, expect_same in ((False, True), (True, False)):
        tracker = OcSort(class_aware=class_aware, min_hits=0)
        tracker.update(*_dets([_box(100, 100)], [0.9], [0]))
        out = tracker.update(*_dets([_box(101, 100)], [0.9], [1]))
        if expect_same:
            assert out.track_id.tolist() == [1] and out.class_id.tolist() == [1]
        else:
            assert out.track_id.tolist() == [2] and out.class_id.tolist() == [1]


def test_output_coasting_reports_unmatched_tracks_with_det_index_minus_one() -> None:
    for coasting in (False, True):
        tracker = OcSort(output_coasting=coasting)
        for t in range(5):
            tracker.update(*_dets([_box(100 + 4 * t, 100), _box(400, 300)]))
        out = tracker.update(*_dets([_box(400, 300)]))
        _check_output(out)
        if coasting:
            assert out.track_id.tolist() == [1, 2] and out.det_index.tolist() == [-1, 0]
            np.testing.assert_allclose(out.xyxy[0], _box(120, 100), atol=2.0)
        else:
            assert out.track_id.tolist() == [2] and out.det_index.tolist() == [0]


def test_reset_clears_tracks_but_ids_are_not_reused() -> None:
    tracker = OcSort()
    tracker.update(*_dets([_box(100, 100), _box(300, 100)]))
    tracker.reset()
    assert tracker.num_tracks == 0 and tracker.frame_id == 0
    assert tracker.update(*_dets([_box(100, 100)])).track_id.tolist() == [3]
    assert OcSort().update(*_dets([_box(100, 100)])).track_id.tolist() == [1]


@pytest.mark.parametrize(("fps", "frames"), [(10.0, 10), (30.0, 30)])
def test_lost_buffer_in_seconds_follows_frame_rate(fps: float, frames: int) -> None:
    def reappear(missing: int) -> int:
        tracker = OcSort(frame_rate=fps, lost_track_buffer_s=1.0, min_hits=1)
        for _ in range(5):
            tracker.update(*_dets([_box(200, 200)]))
        tracker.update(*_dets([_box(200, 200)]), frames_elapsed=missing + 1)
        out = tracker.update(*_dets([_box(200, 200)]))
        return int(out.track_id[0])

    assert OcSort(frame_rate=fps, lost_track_buffer_s=1.0).max_age == frames
    assert reappear(frames) == 1
    assert reappear(frames + 1) == 2


def test_set_frame_rate_mid_stream_keeps_tracking() -> None:
    tracker = OcSort(min_hits=1, momentum_window_s=0.1)
    for t in range(10):
        tracker.update(*_dets([_box(100 + 5 * t, 100)]))
    tracker.set_frame_rate(60.0)
    assert (tracker.delta_t, tracker.max_age) == (6, 60)
    for t in range(10, 20):
        assert tracker.update(*_dets([_box(100 + 5 * t, 100)])).track_id.tolist() == [1]
    with pytest.raises(ValueError, match="frame_rate"):
        tracker.set_frame_rate(-1.0)


def test_max_tracks_caps_the_table() -> None:
    tracker = OcSort(max_tracks=5, min_hits=0)
    boxes = [_box(60 + 70 * i, 100) for i in range(4)]
    for _ in range(3):
        tracker.update(*_dets(boxes))
    more = [_box(60 + 70 * i, 400) for i in range(3)]
    out = tracker.update(*_dets(boxes + more, [0.9] * 4 + [0.65, 0.8, 0.7]))
    assert tracker.num_tracks == 5
    assert sorted(out.det_index.tolist()) == [0, 1, 2, 3, 5]


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"det_threshold": -0.1}, "det_threshold"),
        ({"det_threshold": 1.5}, "det_threshold"),
        ({"lost_track_buffer_s": -1.0}, "lost_track_buffer_s"),
        ({"lost_track_buffer_s": float("inf")}, "lost_track_buffer_s"),
        ({"min_hits": -1}, "min_hits"),
        ({"min_hits": 1.5}, "min_hits"),
        ({"iou_threshold": 0.0}, "iou_threshold"),
        ({"iou_threshold": None}, "iou_threshold"),
        ({"momentum_window_s": -0.1}, "momentum_window_s"),
        ({"momentum_window_s": float("nan")}, "momentum_window_s"),
        ({"inertia": -0.2}, "inertia"),
        ({"inertia": 1.5}, "inertia"),
        ({"use_byte": 1}, "use_byte"),
        ({"low_threshold": -0.1}, "low_threshold"),
        ({"det_threshold": 0.5, "low_threshold": 0.6}, "low_threshold"),
        ({"class_aware": "no"}, "class_aware"),
        ({"output_coasting": 0}, "output_coasting"),
        ({"max_tracks": 0}, "max_tracks"),
        ({"frame_rate": 0.0}, "frame_rate"),
    ],
)
def test_invalid_parameters_raise_naming_the_parameter(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=rf"^{name}: must"):
        OcSort(**kwargs)


def test_error_message_states_the_range() -> None:
    with pytest.raises(ValueError, match=r"low_threshold: must be in \[0, 0.5\], got 0.6"):
        OcSort(det_threshold=0.5, low_threshold=0.6)


@pytest.mark.parametrize(
    ("args", "kwargs", "name"),
    [
        ((np.zeros((2, 3)), np.zeros(2), np.zeros(2, int)), {}, "xyxy"),
        ((np.zeros((2, 4)), np.zeros(3), np.zeros(2, int)), {}, "confidence"),
        ((np.zeros((2, 4)), np.zeros(2), np.zeros(3, int)), {}, "class_id"),
        ((np.zeros((1, 4)), np.zeros(1), np.array([0.5])), {}, "class_id"),
        (_empty(), {"frames_elapsed": 0}, "frames_elapsed"),
        (_empty(), {"frames_elapsed": True}, "frames_elapsed"),
    ],
)
def test_update_rejects_bad_input(args: tuple[Any, ...], kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        OcSort().update(*args, **kwargs)
