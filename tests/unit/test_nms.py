"""Pairwise IoU and class-aware NMS, against a brute-force reference."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.detect.nms import box_iou, nms

# ----------------------------------------------------------------------------- box_iou


@pytest.mark.parametrize(
    ("a", "b", "iou"),
    [
        ([0, 0, 10, 10], [0, 0, 10, 10], 1.0),
        ([0, 0, 10, 10], [10, 0, 20, 10], 0.0),  # touching edges
        ([0, 0, 10, 10], [20, 20, 30, 30], 0.0),
        ([0, 0, 10, 10], [5, 0, 15, 10], 50 / 150),
        ([0, 0, 10, 10], [2, 2, 8, 8], 36 / 100),  # contained
        ([0, 0, 0, 0], [0, 0, 0, 0], 0.0),  # degenerate: empty union
        ([5, 5, 5, 5], [0, 0, 10, 10], 0.0),  # point inside a box
    ],
)
def test_box_iou_table(a, b, iou):
    got = box_iou(np.array([a], np.float32), np.array([b], np.float32))
    assert got.shape == (1, 1)
    assert got[0, 0] == pytest.approx(iou)
    assert box_iou([b], [a])[0, 0] == pytest.approx(iou)


def test_box_iou_pairwise_shape_and_empty():
    a = np.array([[0, 0, 1, 1], [0, 0, 2, 2], [5, 5, 6, 6]], np.float32)
    b = np.array([[0, 0, 1, 1], [0, 0, 2, 2]], np.float32)
    got = box_iou(a, b)
    assert got.shape == (3, 2) and got.dtype == np.float64
    np.testing.assert_allclose(got, [[1, 0.25], [0.25, 1], [0, 0]])
    assert box_iou(np.zeros((0, 4)), b).shape == (0, 2)
    with pytest.raises(ValueError, match=r"expected shape \(N, 4\)"):
        box_iou(np.zeros((3, 5)), b)


# ----------------------------------------------------------------------------- reference


def reference_nms(xyxy, confidence, class_id, iou_threshold, max_detections=None):
    """Brute force: visit in (-score, index) order, keep unless a kept box of the same
    class overlaps by IoU > threshold."""
    order = sorted(range(len(confidence)), key=lambda i: (-float(confidence[i]), i))
    kept: list[int] = []
    for i in order:
        if max_detections is not None and len(kept) >= max_detections:
            break
        ok = True
        for k in kept:
            if class_id[k] != class_id[i]:
                continue
            if box_iou(xyxy[[i]], xyxy[[k]])[0, 0] > iou_threshold:
                ok = False
                break
        if ok:
            kept.append(i)
    return kept


@st.composite
def candidates(draw, max_n=40):
    n = draw(st.integers(0, max_n))
    coords = st.integers(0, 60)  # small integer grid: many overlaps and exact ties
    boxes = []
    for _ in range(n):
        x1, y1 = draw(coords), draw(coords)
        w, h = draw(st.integers(0, 30)), draw(st.integers(0, 30))
        boxes.append([x1, y1, x1 + w, y1 + h])
    xyxy = np.array(boxes, np.float32).reshape(n, 4)
    conf = np.array(
        draw(st.lists(st.sampled_from([0.1, 0.3, 0.5, 0.7, 0.9]), min_size=n, max_size=n)),
        np.float32,
    )
    cls = np.array(draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)), np.int32)
    return xyxy, conf, cls


thresholds = st.sampled_from([0.0, 0.3, 0.45, 0.5, 0.7, 1.0])


@settings(max_examples=200, deadline=None)
@given(data=candidates(), thr=thresholds, max_det=st.one_of(st.none(), st.integers(0, 10)))
def test_nms_matches_brute_force_reference(data, thr, max_det):
    xyxy, conf, cls = data
    got = nms(xyxy, conf, cls, thr, max_det)
    assert got.dtype == np.int64
    assert got.tolist() == reference_nms(xyxy, conf, cls, thr, max_det)


@settings(max_examples=200, deadline=None)
@given(data=candidates(), thr=thresholds)
def test_nms_invariants(data, thr):
    xyxy, conf, cls = data
    keep = nms(xyxy, conf, cls, thr)
    # Subset, unique.
    assert len(set(keep.tolist())) == len(keep)
    assert all(0 <= i < len(conf) for i in keep)
    # Sorted by descending confidence, ties by ascending index.
    pairs = [(-float(conf[i]), int(i)) for i in keep]
    assert pairs == sorted(pairs)
    # No two kept boxes of the same class overlap by more than the threshold.
    iou = box_iou(xyxy[keep], xyxy[keep])
    same = cls[keep][:, None] == cls[keep][None, :]
    off_diag = ~np.eye(len(keep), dtype=bool)
    assert not (same & off_diag & (iou > thr)).any()
    # Idempotent: NMS of the kept set keeps all of it, in the same order.
    again = nms(xyxy[keep], conf[keep], cls[keep], thr)
    assert again.tolist() == list(range(len(keep)))
    # Every dropped box is explained by a kept box of its class.
    dropped = np.setdiff1d(np.arange(len(conf)), keep)
    for d in dropped:
        k_same = keep[cls[keep] == cls[d]]
        assert (box_iou(xyxy[[d]], xyxy[k_same])[0] > thr).any()


@settings(max_examples=100, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 120),
    n_cls=st.integers(1, 4),
    thr=st.floats(0.0, 1.0),
)
def test_nms_matches_reference_on_float_boxes(seed, n, n_cls, thr):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(-50, 600, (n, 2))
    wh = rng.uniform(0, 150, (n, 2))
    xyxy = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
    conf = rng.uniform(0, 1, n).astype(np.float32)
    cls = rng.integers(0, n_cls, n).astype(np.int32)
    assert nms(xyxy, conf, cls, thr).tolist() == reference_nms(xyxy, conf, cls, thr)


# ----------------------------------------------------------------------------- table


def test_nms_suppresses_same_class_keeps_other_class():
    xyxy = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 10], [50, 50, 60, 60]], np.float32)
    conf = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    cls = np.array([0, 0, 1, 0], np.int32)
    assert nms(xyxy, conf, cls, 0.5).tolist() == [0, 2, 3]
    # With a threshold above their IoU (9/11) both class-0 boxes stay.
    assert nms(xyxy, conf, cls, 0.9).tolist() == [0, 1, 2, 3]


def test_nms_ties_are_broken_by_index():
    xyxy = np.array([[0, 0, 10, 10]] * 3, np.float32)
    conf = np.array([0.5, 0.5, 0.5], np.float32)
    cls = np.zeros(3, np.int32)
    assert nms(xyxy, conf, cls, 0.5).tolist() == [0]
    assert nms(xyxy[::-1].copy(), conf, cls, 0.5).tolist() == [0]


def test_nms_iou_equal_to_threshold_is_kept():
    xyxy = np.array([[0, 0, 10, 10], [5, 0, 15, 10]], np.float32)  # IoU = 1/3
    conf = np.array([0.9, 0.8], np.float32)
    cls = np.zeros(2, np.int32)
    assert nms(xyxy, conf, cls, 1 / 3 + 1e-9).tolist() == [0, 1]
    assert nms(xyxy, conf, cls, 1 / 3 - 1e-9).tolist() == [0]


def test_nms_max_detections_and_empty():
    xyxy = np.array([[i * 20, 0, i * 20 + 10, 10] for i in range(5)], np.float32)
    conf = np.linspace(0.1, 0.9, 5).astype(np.float32)
    cls = np.zeros(5, np.int32)
    assert nms(xyxy, conf, cls, 0.5, max_detections=2).tolist() == [4, 3]
    assert nms(xyxy, conf, cls, 0.5, max_detections=0).tolist() == []
    empty = nms(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int32), 0.5)
    assert empty.shape == (0,) and empty.dtype == np.int64


def test_nms_drops_nan_scores():
    xyxy = np.array([[0, 0, 10, 10], [20, 0, 30, 10]], np.float32)
    conf = np.array([np.nan, 0.5], np.float32)
    assert nms(xyxy, conf, np.zeros(2, np.int32), 0.5).tolist() == [1]


@pytest.mark.parametrize(
    ("xyxy", "conf", "cls", "thr", "max_det", "match"),
    [
        (np.zeros((2, 4)), np.zeros(3), np.zeros(2), 0.5, None, "lengths differ"),
        (np.zeros((2, 4)), np.zeros(2), np.zeros(1), 0.5, None, "lengths differ"),
        (np.zeros((2, 3)), np.zeros(2), np.zeros(2), 0.5, None, r"\(N, 4\)"),
        (np.zeros((2, 4)), np.zeros(2), np.zeros(2), 1.5, None, "iou_threshold"),
        (np.zeros((2, 4)), np.zeros(2), np.zeros(2), -0.1, None, "iou_threshold"),
        (np.zeros((2, 4)), np.zeros(2), np.zeros(2), 0.5, -1, "max_detections"),
    ],
)
def test_nms_rejects_bad_arguments(xyxy, conf, cls, thr, max_det, match):
    with pytest.raises(ValueError, match=match):
        nms(xyxy, conf, cls, thr, max_det)


def test_nms_is_fast_on_realistic_candidate_counts():
    """300 candidates in 80 classes (a busy frame after the score threshold)."""
    rng = np.random.default_rng(0)
    n = 300
    xy = rng.uniform(0, 600, (n, 2))
    wh = rng.uniform(10, 200, (n, 2))
    xyxy = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
    conf = rng.uniform(0.25, 1.0, n).astype(np.float32)
    cls = rng.integers(0, 80, n).astype(np.int32)
    nms(xyxy, conf, cls, 0.45)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        nms(xyxy, conf, cls, 0.45, 300)
        times.append(time.perf_counter() - t0)
    # Typically ~1-2 ms here; a generous bound so a loaded shared machine does not flake.
    assert min(times) < 0.05
