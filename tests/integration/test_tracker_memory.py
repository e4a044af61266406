"""Long-run bounds of every tracker: 100,000 frames of synthetic detections.

For ByteTrack, SORT and OC-SORT the same seeded stream is replayed: ~19 detections a
frame (10-30 most of the time) from objects that appear, walk with constant velocity
and disappear (mean life 100 frames), miss 10 % of their detections, plus clutter.
Each tracker must show that

* the number of stored tracks stays bounded (no growth from the first 20,000 frames
  to the last 20,000),
* time per frame does not grow: the fastest 1,000-frame chunk of the last 10,000
  frames is at most 1.5x the fastest of the first 10,000 after a 1,000-frame warm-up
  (the minimum is robust to other load on the machine),
* memory does not grow, measured with ``tracemalloc`` in two 1,000-frame windows
  ending after frame 20,000 and after frame 100,000 (tracing the whole run would
  make it 4-7x slower): the memory allocated in a window and still held at its end,
  and the size of a deep copy of the tracker (its whole retained state), must each
  agree between the two windows within 64 KiB, and what a window keeps must be no
  more than the tracker's state plus 64 KiB (nothing accumulates elsewhere).
"""

from __future__ import annotations

import copy
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from trackers.bytetrack import ByteTrack
from trackers.ocsort import OcSort
from trackers.sort import Sort

N_FRAMES = 100_000
CHUNK = 1_000  # frames per timing chunk
WARMUP = 1_000
WINDOW = 10_000  # frames compared for time per frame
TRACE_END = (20_000, 100_000)  # tracemalloc windows: the CHUNK frames ending here
MARGIN_BYTES = 64 * 1024

TRACKERS: dict[str, Callable[[], Any]] = {
    "bytetrack": lambda: ByteTrack(),
    "sort": lambda: Sort(lost_track_buffer_s=1.0),  # a 30-frame buffer, to have tracks to keep
    "ocsort": lambda: OcSort(),
}


def _stored_tracks(tracker: Any) -> int:
    if isinstance(tracker, ByteTrack):
        return tracker.num_tracked + tracker.num_lost
    return int(tracker.num_tracks)


def synthetic_stream(
    n_frames: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Detections of walking objects and clutter, all frames at once (vectorised).

    Returns:
        ``xyxy (R, 4) float32``, ``confidence (R,) float32``, ``class_id (R,) int32``
        sorted by frame, and ``bounds (n_frames + 1,)``: frame ``f`` is rows
        ``bounds[f]:bounds[f + 1]``.
    """
    rng = np.random.default_rng(seed)
    birth = np.repeat(np.arange(n_frames), rng.poisson(0.2, n_frames))
    n_obj = len(birth)
    length = np.minimum(birth + rng.geometric(0.01, n_obj), n_frames) - birth
    obj = np.repeat(np.arange(n_obj), length)
    age = np.arange(len(obj)) - np.repeat(np.cumsum(length) - length, length)
    start = rng.uniform((0.0, 0.0), (1920.0, 1080.0), (n_obj, 2))
    velocity = rng.normal(0.0, 3.0, (n_obj, 2))
    width = rng.uniform(20.0, 60.0, n_obj)
    centre = start[obj] + velocity[obj] * age[:, None] + rng.normal(0.0, 1.0, (len(obj), 2))
    half = 0.5 * np.c_[width, 2.5 * width][obj]
    seen = rng.random(len(obj)) < 0.9
    n_clutter = rng.poisson(1.0, n_frames)
    clutter_frame = np.repeat(np.arange(n_frames), n_clutter)
    clutter_centre = rng.uniform((0.0, 0.0), (1920.0, 1080.0), (len(clutter_frame), 2))
    clutter_half = 0.5 * rng.uniform(20.0, 60.0, len(clutter_frame))[:, None] * [1.0, 2.5]
    frame = np.r_[(birth[obj] + age)[seen], clutter_frame]
    xyxy = np.r_[
        np.c_[centre - half, centre + half][seen],
        np.c_[clutter_centre - clutter_half, clutter_centre + clutter_half],
    ]
    conf = np.r_[rng.uniform(0.5, 1.0, len(obj))[seen], rng.uniform(0.1, 0.7, len(clutter_frame))]
    cls = np.r_[(obj % 3)[seen], rng.integers(0, 3, len(clutter_frame))]
    order = np.argsort(frame, kind="stable")
    bounds = np.searchsorted(frame[order], np.arange(n_frames + 1))
    return (
        xyxy[order].astype(np.float32),
        conf[order].astype(np.float32),
        cls[order].astype(np.int32),
        bounds,
    )


@pytest.fixture(scope="module")
def stream() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return synthetic_stream(N_FRAMES)


def test_synthetic_stream_has_the_intended_load(
    stream: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> None:
    per_frame = np.diff(stream[3])
    assert 15 <= per_frame.mean() <= 25
    assert np.mean((per_frame >= 10) & (per_frame <= 30)) > 0.9


def _deep_size(tracker: Any) -> int:
    """Bytes allocated by a deep copy of ``tracker`` (its retained state), via tracemalloc."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        clone = copy.deepcopy(tracker)
        size = tracemalloc.get_traced_memory()[0] - before
        del clone
    finally:
        tracemalloc.stop()
    return size


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TRACKERS))
def test_tracks_time_and_memory_stay_bounded_over_100k_frames(
    name: str, stream: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
) -> None:
    xyxy, conf, cls, bounds = stream
    tracker = TRACKERS[name]()
    stored = np.zeros(N_FRAMES, np.int64)
    chunk_s = np.zeros(N_FRAMES // CHUNK)
    held: dict[int, int] = {}  # window end -> bytes allocated in the window and still held
    state: dict[int, int] = {}  # window end -> deep-copy size of the tracker
    traced_chunks = {end // CHUNK - 1 for end in TRACE_END}
    tick = time.perf_counter()
    for f in range(N_FRAMES):
        if (f + CHUNK) in TRACE_END:
            tracemalloc.start()
        lo, hi = bounds[f], bounds[f + 1]
        tracker.update(xyxy[lo:hi], conf[lo:hi], cls[lo:hi])
        stored[f] = _stored_tracks(tracker)
        if (f + 1) in TRACE_END:
            held[f + 1] = tracemalloc.get_traced_memory()[0]
            tracemalloc.stop()
            state[f + 1] = _deep_size(tracker)
        if (f + 1) % CHUNK == 0:
            now = time.perf_counter()
            chunk_s[f // CHUNK] = now - tick
            tick = now

    first, last = TRACE_END
    report = (
        f"{name}: stored tracks max first/last 20k {stored[:20_000].max()}/"
        f"{stored[-20_000:].max()}; held {held}; state {state}"
    )
    # Stored tracks: bounded and not growing.
    assert stored.max() <= 300, report
    assert stored[-20_000:].max() <= 1.25 * stored[:20_000].max() + 10, report
    # Time per frame (fastest chunk of each window, traced chunks left out).
    first_chunks = [
        chunk_s[i]
        for i in range(WARMUP // CHUNK, (WARMUP + WINDOW) // CHUNK)
        if i not in traced_chunks
    ]
    last_chunks = [
        chunk_s[i]
        for i in range((N_FRAMES - WINDOW) // CHUNK, N_FRAMES // CHUNK)
        if i not in traced_chunks
    ]
    ms_first = 1000 * min(first_chunks) / CHUNK
    ms_last = 1000 * min(last_chunks) / CHUNK
    assert ms_last <= 1.5 * ms_first, f"{report}; ms/frame {ms_first:.3f} -> {ms_last:.3f}"
    # Memory.
    assert abs(state[last] - state[first]) <= MARGIN_BYTES, report
    assert abs(held[last] - held[first]) <= MARGIN_BYTES, report
    for end in TRACE_END:
        assert held[end] <= state[end] + MARGIN_BYTES, report
