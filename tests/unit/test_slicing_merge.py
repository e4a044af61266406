"""Merging tile detections: offsets, greedy NMS / NMM with IoU and IoS (SAHI)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.detect.nms import nms
from streamer.slicing import (
    box_ios,
    concat_detections,
    greedy_nmm,
    merge_detections,
    offset_detections,
    offset_xyxy,
)
from streamer.types import Detections


def dets(rows: list[tuple[float, float, float, float, float, int]]) -> Detections:
    a = np.array(rows, dtype=np.float64).reshape(-1, 6)
    return Detections(a[:, :4], a[:, 4], a[:, 5].astype(np.int32))


@st.composite
def detections(draw: st.DrawFn, max_n: int = 25) -> Detections:
    n = draw(st.integers(0, max_n))
    coord = st.integers(0, 60)
    rows = []
    for _ in range(n):
        x, y = draw(coord), draw(coord)
        w, h = draw(st.integers(1, 30)), draw(st.integers(1, 30))
        conf = draw(st.sampled_from([0.3, 0.5, 0.7, 0.9]) | st.floats(0.0, 1.0, width=32))
        rows.append((x, y, x + w, y + h, conf, draw(st.integers(0, 2))))
    return dets(rows)


def _key(d: Detections) -> list:
    return [
        (*map(float, b), float(c), int(k))
        for b, c, k in zip(d.xyxy, d.confidence, d.class_id, strict=True)
    ]


# -------------------------------------------------------------- tables


def test_offset_xyxy_exact() -> None:
    out = offset_xyxy([[1.5, 2.25, 10.0, 20.0]], (512, 440))
    assert out.dtype == np.float32
    assert out.tolist() == [[513.5, 442.25, 522.0, 460.0]]
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        offset_xyxy([1, 2, 3], (0, 0))


def test_box_ios_table() -> None:
    a = [[0, 0, 10, 10]]
    b = [[5, 0, 10, 10], [20, 20, 30, 30], [0, 0, 20, 20], [3, 3, 3, 8]]
    np.testing.assert_allclose(box_ios(a, b), [[1.0, 0.0, 1.0, 0.0]])


def test_nms_vs_nmm_on_cut_object() -> None:
    # One car cut by a tile border: left piece, right piece, and the full-frame box.
    d = dets(
        [
            (100, 50, 130, 70, 0.6, 2),  # left piece (tile 1)
            (125, 50, 160, 70, 0.7, 2),  # right piece (tile 2)
            (100, 50, 160, 70, 0.8, 2),  # whole car (full-frame pass)
            (125, 50, 160, 70, 0.9, 0),  # another class at the same place
        ]
    )
    # IoS: each piece lies inside the whole box (IoS 1), so both pieces go.
    assert _key(merge_detections(d, "nms", "ios", 0.5)) == _key(d.select(np.array([3, 2])))
    nmm = merge_detections(d, "nmm", "ios", 0.5)
    assert nmm.xyxy.tolist() == [[125, 50, 160, 70], [100, 50, 160, 70]]
    np.testing.assert_allclose(nmm.confidence, [0.9, 0.8], rtol=1e-6)
    # IoU: whole vs right is 700/1200 > 0.5, whole vs left exactly 0.5 (not > 0.5).
    assert _key(merge_detections(d, "nms", "iou", 0.5)) == _key(d.select(np.array([3, 2, 0])))
    # Class-agnostic: the 0.9 box absorbs the right piece and the whole box (IoS 1)
    # but not the left piece (IoS 5/30), measured against its own, unmerged box.
    agnostic = merge_detections(d, "nmm", "ios", 0.5, class_aware=False)
    assert agnostic.xyxy.tolist() == [[100, 50, 160, 70], [100, 50, 130, 70]]
    assert agnostic.class_id.tolist() == [0, 2]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "soft"}, "method"),
        ({"metric": "giou"}, "metric"),
        ({"threshold": 1.5}, "threshold"),
    ],
)
def test_merge_rejects_bad_args(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        merge_detections(Detections.empty(), **kwargs)


def test_empty_and_none() -> None:
    assert len(merge_detections(Detections.empty(), "nmm")) == 0
    d = dets([(0, 0, 1, 1, 0.5, 0), (0, 0, 1, 1, 0.5, 0)])
    assert merge_detections(d, "none") is d
    assert len(concat_detections([])) == 0


def test_ties_broken_by_input_order() -> None:
    d = dets([(0, 0, 10, 10, 0.5, 0), (1, 0, 11, 10, 0.5, 0)])
    assert merge_detections(d, "nms", "iou", 0.5).xyxy.tolist() == [[0, 0, 10, 10]]
    swapped = d.select(np.array([1, 0]))
    assert merge_detections(swapped, "nms", "iou", 0.5).xyxy.tolist() == [[1, 0, 11, 10]]


# -------------------------------------------------------------- properties

thresholds = st.sampled_from([0.0, 0.3, 0.5, 0.7, 1.0])
metrics = st.sampled_from(["iou", "ios"])


@settings(max_examples=150, deadline=None)
@given(d=detections(), metric=metrics, thr=thresholds, aware=st.booleans())
def test_nms_subset_and_idempotent(d: Detections, metric: str, thr: float, aware: bool) -> None:
    out = merge_detections(d, "nms", metric, thr, aware)
    rows = set(_key(d))
    assert set(_key(out)) <= rows
    assert len(out) <= len(d)
    assert np.all(np.diff(out.confidence) <= 0)
    again = merge_detections(out, "nms", metric, thr, aware)
    assert _key(again) == _key(out)


@settings(max_examples=150, deadline=None)
@given(d=detections(), thr=thresholds)
def test_nms_iou_class_aware_equals_detect_nms(d: Detections, thr: float) -> None:
    ours = merge_detections(d, "nms", "iou", thr, True)
    ref = d.select(nms(d.xyxy, d.confidence, d.class_id, thr))
    assert _key(ours) == _key(ref)


@settings(max_examples=150, deadline=None)
@given(d=detections(), metric=metrics, thr=thresholds, aware=st.booleans())
def test_nmm_merges_enclose_members(d: Detections, metric: str, thr: float, aware: bool) -> None:
    keep, members = greedy_nmm(d.xyxy, d.confidence, d.class_id, metric, thr, aware)
    out = merge_detections(d, "nmm", metric, thr, aware)
    assert len(out) == len(keep) <= len(d)
    # Every input row belongs to exactly one group, led by its kept row.
    flat = np.concatenate(members) if members else np.zeros(0, np.int64)
    assert sorted(flat.tolist()) == list(range(len(d)))
    for j, (k, mem) in enumerate(zip(keep, members, strict=True)):
        assert mem[0] == k
        b = d.xyxy[mem]
        assert (out.xyxy[j, :2] <= b[:, :2]).all() and (out.xyxy[j, 2:] >= b[:, 2:]).all()
        assert out.confidence[j] == d.confidence[mem].max() == d.confidence[k]
        assert out.class_id[j] == d.class_id[k]
        if aware:
            assert (d.class_id[mem] == d.class_id[k]).all()
    # NMM keeps exactly the boxes NMS keeps (same greedy groups), only enlarged.
    nms_out = merge_detections(d, "nms", metric, thr, aware)
    assert len(nms_out) == len(out)
    np.testing.assert_array_equal(nms_out.confidence, out.confidence)


@settings(max_examples=100, deadline=None)
@given(d=detections(), dx=st.integers(0, 4000), dy=st.integers(0, 4000))
def test_offset_maps_back_exactly(d: Detections, dx: int, dy: int) -> None:
    moved = offset_detections(d, (dx, dy))
    back = offset_xyxy(moved.xyxy, (-dx, -dy))
    np.testing.assert_array_equal(back, d.xyxy)  # integer boxes: exact both ways
    np.testing.assert_array_equal(moved.confidence, d.confidence)
    np.testing.assert_array_equal(moved.class_id, d.class_id)


@settings(max_examples=100, deadline=None)
@given(parts=st.lists(detections(max_n=6), max_size=4))
def test_concat_keeps_order(parts: list[Detections]) -> None:
    out = concat_detections(parts)
    assert _key(out) == [row for p in parts for row in _key(p)]


@settings(max_examples=150, deadline=None)
@given(d=detections(), metric=metrics, thr=thresholds, aware=st.booleans())
def test_nmm_union_equals_per_group_loop(
    d: Detections, metric: str, thr: float, aware: bool
) -> None:
    """The vectorised union step gives exactly what a loop over the groups gives."""
    keep, members = greedy_nmm(d.xyxy, d.confidence, d.class_id, metric, thr, aware)
    out = merge_detections(d, "nmm", metric, thr, aware)
    want_xyxy = np.empty((len(keep), 4), np.float32)
    want_conf = np.empty((len(keep),), np.float32)
    for j, mem in enumerate(members):
        want_xyxy[j, :2] = d.xyxy[mem, :2].min(axis=0)
        want_xyxy[j, 2:] = d.xyxy[mem, 2:].max(axis=0)
        want_conf[j] = d.confidence[mem].max()
    assert out.xyxy.dtype == np.float32 and out.confidence.dtype == np.float32
    np.testing.assert_array_equal(out.xyxy, want_xyxy)
    np.testing.assert_array_equal(out.confidence, want_conf)
    np.testing.assert_array_equal(out.class_id, d.class_id[keep])
