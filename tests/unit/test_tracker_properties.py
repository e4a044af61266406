"""Hypothesis properties every tracker of ``trackers`` must have (the Tracker contract).

Parametrised over ByteTrack, SORT and OC-SORT, each with reference-like settings and
with coasting output on (so that ``det_index = -1`` rows occur); the SORT-family
variants also report tracks at birth (``min_hits=0``) and run into their track cap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trackers.bytetrack import ByteTrack
from trackers.ocsort import OcSort
from trackers.sort import Sort
from trackers.types import Tracker, TrackerOutput

FPS = 10.0
TRACKERS: dict[str, Callable[[], Any]] = {
    "bytetrack": lambda: ByteTrack(frame_rate=FPS, lost_track_buffer_s=0.3),
    "bytetrack-coasting": lambda: ByteTrack(
        frame_rate=FPS, lost_track_buffer_s=0.3, output_coasting=True, class_aware=True
    ),
    "sort": lambda: Sort(frame_rate=FPS, lost_track_buffer_s=0.1),
    "sort-coasting": lambda: Sort(
        frame_rate=FPS, lost_track_buffer_s=0.3, min_hits=0, output_coasting=True, max_tracks=6
    ),
    "ocsort": lambda: OcSort(frame_rate=FPS, lost_track_buffer_s=0.3, det_threshold=0.3),
    "ocsort-byte-coasting": lambda: OcSort(
        frame_rate=FPS,
        lost_track_buffer_s=0.5,
        min_hits=0,
        use_byte=True,
        det_threshold=0.5,
        output_coasting=True,
        class_aware=True,
        max_tracks=6,
    ),
}
tracker_factories = pytest.mark.parametrize("make", list(TRACKERS.values()), ids=list(TRACKERS))

# One frame: up to 8 objects in 12 slots 30 px apart (40 px wide boxes overlap their
# neighbours, so assignments are not trivial), each with a score, a class and a jitter.
_object = st.tuples(
    st.integers(0, 11),
    st.floats(0.0, 1.0),
    st.integers(0, 1),
    st.floats(-6.0, 6.0),
)
_frame = st.tuples(
    st.lists(_object, max_size=8),
    st.integers(1, 3),  # frames_elapsed
    st.integers(0, 9).map(lambda k: k == 0),  # reset() before this frame (1 in 10)
)
_sequence = st.lists(_frame, min_size=1, max_size=30)

Frame = tuple[list[tuple[int, float, int, float]], int, bool]


def _inputs(objects: list[tuple[int, float, int, float]], t: int) -> tuple[np.ndarray, ...]:
    n = len(objects)
    xyxy = np.zeros((n, 4), np.float32)
    for i, (slot, _, _, jitter) in enumerate(objects):
        cx = 40.0 + 30.0 * slot + 12.0 * (t % 4) + jitter  # moves, then jumps back
        cy = 100.0 + 3.0 * jitter
        xyxy[i] = (cx - 20.0, cy - 50.0, cx + 20.0, cy + 50.0)
    conf = np.array([s for _, s, _, _ in objects], np.float32)
    cls = np.array([c for _, _, c, _ in objects], np.int32)
    return xyxy, conf, cls


def _buffer_frames(tracker: Any) -> int:
    return int(getattr(tracker, "max_frames_lost", None) or tracker.max_age)


def _run(tracker: Tracker, frames: list[Frame]) -> list[TrackerOutput]:
    outs = []
    for t, (objects, elapsed, reset) in enumerate(frames):
        if reset:
            tracker.reset()
        outs.append(tracker.update(*_inputs(objects, t), frames_elapsed=elapsed))
    return outs


@tracker_factories
@settings(max_examples=60, deadline=None)
@given(frames=_sequence)
def test_ids_unique_and_never_reused_and_det_index_valid(
    make: Callable[[], Any], frames: list[Frame]
) -> None:
    tracker = make()
    buffer = _buffer_frames(tracker)
    # With min_hits > 0 a track rebuilding its hit streak is matched but unreported,
    # so only trackers that report every matched track bound the gap between reports.
    gap_bounded = getattr(tracker, "min_hits", 0) == 0
    last_seen: dict[int, int] = {}
    highest = 0  # every id handed out so far is <= highest
    before_reset: set[int] = set()
    frame = 0
    for t, (objects, elapsed, reset) in enumerate(frames):
        if reset:
            tracker.reset()
            before_reset |= set(last_seen)
            last_seen.clear()
            frame = 0
        frame += elapsed
        xyxy, conf, cls = _inputs(objects, t)
        out = tracker.update(xyxy, conf, cls, frames_elapsed=elapsed)
        ids = out.track_id.tolist()
        assert len(set(ids)) == len(ids), "ids repeat within a frame"
        assert all(i >= 1 for i in ids)
        assert not set(ids) & before_reset, "an id from before reset() came back"
        for tid in ids:
            if tid in last_seen:
                # A track may come back only within its lost buffer (else it was
                # deleted and the id must not be handed out again).
                assert not gap_bounded or frame - last_seen[tid] <= buffer + 1
            else:
                assert tid > highest, "a new track took an old id"
                highest = tid
            last_seen[tid] = frame
        det = out.det_index
        assert ((det >= -1) & (det < len(xyxy))).all()
        used = det[det >= 0].tolist()
        assert len(set(used)) == len(used), "an input row was used twice"
        assert out.xyxy.shape == (len(ids), 4) and np.isfinite(out.xyxy).all()


@tracker_factories
@settings(max_examples=25, deadline=None)
@given(gaps=st.lists(st.integers(1, 50), min_size=1, max_size=20))
def test_fresh_tracker_reports_nothing_for_empty_frames(
    make: Callable[[], Any], gaps: list[int]
) -> None:
    tracker = make()
    empty = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32))
    for elapsed in gaps:
        assert len(tracker.update(*empty, frames_elapsed=elapsed)) == 0


@tracker_factories
@settings(max_examples=30, deadline=None)
@given(frames=_sequence)
def test_same_input_gives_the_same_output(make: Callable[[], Any], frames: list[Frame]) -> None:
    first = _run(make(), frames)
    second = _run(make(), frames)
    for a, b in zip(first, second, strict=True):
        for field in ("xyxy", "confidence", "class_id", "track_id", "det_index"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
