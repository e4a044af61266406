"""ByteTrack: multi-object tracking by associating every detection box.

Zhang et al., "ByteTrack: Multi-Object Tracking by Associating Every Detection Box",
ECCV 2022. Reference implementation: ``ifzhang/ByteTrack``
``yolox/tracker/byte_tracker.py``. This is an independent implementation of the same
algorithm with these differences (each deliberate):

* The states of all tracks live in preallocated arrays and a frame is one compiled
  (numba) function over them, with the packed (per-coordinate 2x2 block) covariance
  of :class:`trackers.kalman.KalmanFilterXYAH`.
* Identities are per instance, start at 1 and are handed out when a track is
  *confirmed* (the reference numbers every tentative track, so its ids have gaps).
* Removed tracks are dropped at once (the reference keeps every removed track in
  an ever-growing list), and the number of lost tracks is capped.
* The lost-track buffer is given in seconds and converted with the stream's frame
  rate; gaps in the stream (``frames_elapsed > 1``) are predicted over and count
  toward it.
* Unconfirmed (one-frame) tracks are predicted like the others (the reference skips
  them; their velocity is zero, so only their covariance differs).
* Optional class-aware association; an explicit ``det_index`` links every output
  row to the input detection it was updated with.

Algorithm per frame (``update``):

1. Predict every track forward ``frames_elapsed`` frames (lost tracks with zero
   height velocity, as in the reference).
2. Split detections into *high* (``confidence >= high_threshold``) and *low*
   (``low_threshold <= confidence < high_threshold``).
3. Match confirmed tracks (tracked and lost) to high detections on
   ``1 - IoU`` (times the detection score with ``fuse_score``), cost limit
   ``match_threshold``.
4. Match the still unmatched *tracked* tracks to low detections on ``1 - IoU``,
   cost limit ``low_match_threshold``; tracked tracks left over become lost.
5. Match unconfirmed tracks (born last frame) to the remaining high detections,
   cost limit ``unconfirmed_match_threshold``; unmatched unconfirmed tracks are
   removed.
6. Start an unconfirmed track from every remaining high detection with
   ``confidence >= new_track_threshold`` (tracks born in the very first frame are
   confirmed at once, as in the reference).
7. Remove lost tracks not updated for more than the lost buffer, cap their number,
   and remove tracked/lost duplicates (IoU > ``duplicate_iou``; the younger goes).

Implementation notes (speed): the whole of ``update`` after the input checks is one
function compiled with numba (``@njit(cache=True)``, so only the first process on a
machine pays the compilation, a few seconds; later ones load it from numba's cache).
The tracks live in two preallocated arrays (float: packed Kalman state and score;
int: id, state, frames, class, input row, hits), rows ``0 .. n - 1`` in order of
birth, grown only when a frame could need more rows; removal compacts them in place.
The Kalman steps are the per-coordinate 2x2 arithmetic of the ``*_packed`` methods of
:class:`trackers.kalman.KalmanFilterXYAH`, operation for operation; the associations
are those of :func:`trackers.matching.match_candidates`, with competing candidates
solved by :func:`trackers.matching.lapjv_square`, a compiled port of ``lap``'s
Jonker-Volgenant solver that returns what ``lap.lapjv`` returns. The results are those
of the numpy implementation (git ``0f49348``) and of the first one (``cd24f38``) to the
last bit on the MOT15 files (``scripts/profile_bytetrack.py --compare-rev 0f49348``).
"""

from __future__ import annotations

import dataclasses
import math
from numbers import Integral
from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit

from trackers._common import _check_bool, _check_range
from trackers.kalman import PACKED_ROWS, KalmanFilterXYAH
from trackers.matching import _TINY_AREA, lapjv_square
from trackers.types import TrackerOutput

# Track states.
_TRACKED = 0  # confirmed, matched in the last frame
_LOST = 1  # confirmed, unmatched for up to max_frames_lost frames
_TENTATIVE = 2  # born last frame, not yet confirmed (no id)

# Columns of the per-track float array (one row per track): the packed Kalman state
# (trackers.kalman: mean 0-7, then pp, pv, vp, vv of the four coordinates), then the
# score of the detection the track was last updated with.
_SCORE = PACKED_ROWS
_X_COLS = PACKED_ROWS + 1

# Columns of the per-track int array.
_ID = 0  # 0 while tentative
_STATE = 1  # _TRACKED, _LOST or _TENTATIVE
_LAST = 2  # frame of the last update
_START = 3  # frame of birth
_CLS = 4  # class of the last detection
_DET = 5  # input row this frame, -1 if none
_HITS = 6  # matched frames in a row (kept once >= min_hits)
_I_COLS = 7

# Entries of the int64 counter array.
_M_N = 0  # stored tracks
_M_NEXT_ID = 1
_M_FRAME = 2
_M_CHECKED = 3  # max_frames_lost at the end of the last update

_MIN_CAPACITY = 32

Float64Array = npt.NDArray[np.float64]
Int64Array = npt.NDArray[np.int64]


class ByteTrack:
    """ByteTrack multi-object tracker for one video stream.

    Default thresholds are the reference's (tuned there for YOLOX on MOT17, scores
    spread over [0, 1]); they suit YOLO-family detectors run at a low confidence
    threshold (0.1 or below), which ByteTrack needs to see low-score boxes at all.
    For a detector whose scores sit high (e.g. the Faster R-CNN detections of the
    SORT paper, scores 0.5-1.0), raise ``high_threshold`` and
    ``new_track_threshold`` into that range: ``scripts/eval_bytetrack_mot.py`` uses
    0.85 / 0.95 with ``lost_track_buffer_s=2.0`` on MOT15 TUD.

    Args:
        high_threshold: Detections with ``confidence >= high_threshold`` take part
            in the first association and may start tracks. In (0, 1]. Default 0.5.
        low_threshold: Detections with ``low_threshold <= confidence <
            high_threshold`` are used only to continue tracked tracks (second
            association); lower ones are ignored. In [0, high_threshold]. Default 0.1.
        new_track_threshold: Unmatched high detections start a track only if
            ``confidence >= new_track_threshold``. In [0, 1]; values below
            ``high_threshold`` act as ``high_threshold``. Default 0.6 (the
            reference's ``track_thresh + 0.1``).
        match_threshold: Cost limit of the first association: a pair is matched
            only if ``1 - IoU`` (``1 - IoU * score`` with ``fuse_score``) is
            ``<= match_threshold``. In (0, 1]. Default 0.8.
        low_match_threshold: Cost limit (``1 - IoU``) of the second association with
            low detections. In (0, 1]. Default 0.5.
        unconfirmed_match_threshold: Cost limit of matching unconfirmed tracks (same
            cost as the first association). In (0, 1]. Default 0.7.
        fuse_score: Multiply IoU by the detection score in the first and the
            unconfirmed associations (the reference does, except for MOT20).
            Default True.
        lost_track_buffer_s: How long a lost track may go unmatched and still be
            recovered, seconds, >= 0 and finite. Converted to ``round(lost_track_buffer_s *
            frame_rate)`` frames: a track may miss that many consecutive frames.
            Default 1.0 (the reference's 30 frames at 30 fps).
        frame_rate: Frame rate of the stream, frames per second, > 0. Default 30.
        max_lost_tracks: Most lost tracks kept, >= 0; beyond it the ones unmatched
            longest are dropped. Default 1000.
        duplicate_iou: A tracked and a lost track overlapping with IoU above this
            are duplicates; the one tracked for fewer frames is removed. In (0, 1].
            Default 0.85 (the reference's IoU distance 0.15).
        class_aware: Only associate tracks with detections of the same class (and
            only treat tracks of the same class as duplicates). Default False (a
            track takes the class of its latest detection).
        min_hits: Matched frames in a row a confirmed track needs before it is first
            reported, >= 1. Once reported, a track stays reportable. Default 1 (as
            the reference: every confirmed track is reported).
        output_coasting: Also report confirmed tracks not matched this frame (their
            predicted box, ``det_index`` -1) while they are within the lost buffer.
            Default False: only tracks updated this frame are reported, as in the
            reference.

    Raises:
        ValueError: if a parameter is out of its range; the message names the
            parameter and the valid range.

    Thread-safety: an instance is not thread-safe and holds the state of one
    stream; use one instance per source and call it from one thread at a time.

    Example:
        >>> tracker = ByteTrack(frame_rate=25.0)
        >>> out = tracker.update(xyxy, confidence, class_id)  # doctest: +SKIP
        >>> out.track_id, out.det_index  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        high_threshold: float = 0.5,
        low_threshold: float = 0.1,
        new_track_threshold: float = 0.6,
        match_threshold: float = 0.8,
        low_match_threshold: float = 0.5,
        unconfirmed_match_threshold: float = 0.7,
        fuse_score: bool = True,
        lost_track_buffer_s: float = 1.0,
        frame_rate: float = 30.0,
        max_lost_tracks: int = 1000,
        duplicate_iou: float = 0.85,
        class_aware: bool = False,
        output_coasting: bool = False,
        min_hits: int = 1,
    ) -> None:
        unit = (0.0, 1.0)
        self.high_threshold: float = _check_range(
            "high_threshold", high_threshold, *unit, low_open=True
        )
        self.low_threshold: float = _check_range(
            "low_threshold", low_threshold, 0.0, self.high_threshold
        )
        self.new_track_threshold: float = _check_range(
            "new_track_threshold", new_track_threshold, *unit
        )
        self.match_threshold: float = _check_range(
            "match_threshold", match_threshold, *unit, low_open=True
        )
        self.low_match_threshold: float = _check_range(
            "low_match_threshold", low_match_threshold, *unit, low_open=True
        )
        self.unconfirmed_match_threshold: float = _check_range(
            "unconfirmed_match_threshold", unconfirmed_match_threshold, *unit, low_open=True
        )
        self.fuse_score: bool = _check_bool("fuse_score", fuse_score)
        self.lost_track_buffer_s: float = _check_range(
            "lost_track_buffer_s", lost_track_buffer_s, 0.0, math.inf, high_open=True
        )
        if (
            isinstance(max_lost_tracks, bool)
            or not isinstance(max_lost_tracks, Integral)
            or max_lost_tracks < 0
        ):
            raise ValueError(f"max_lost_tracks: must be an integer >= 0, got {max_lost_tracks!r}")
        self.max_lost_tracks: int = int(max_lost_tracks)
        if isinstance(min_hits, bool) or not isinstance(min_hits, Integral) or min_hits < 1:
            raise ValueError(f"min_hits: must be an integer >= 1, got {min_hits!r}")
        self.min_hits: int = int(min_hits)
        self.duplicate_iou: float = _check_range(
            "duplicate_iou", duplicate_iou, *unit, low_open=True
        )
        self.class_aware: bool = _check_bool("class_aware", class_aware)
        self.output_coasting: bool = _check_bool("output_coasting", output_coasting)
        self._frame_rate: float = 30.0
        self._max_frames_lost: int = 0
        self.set_frame_rate(frame_rate)
        # Counters (stored tracks, next id, frame, max_frames_lost last checked).
        self._meta: Int64Array = np.zeros(4, np.int64)
        self._meta[_M_NEXT_ID] = 1
        self._clear()

    # ------------------------------------------------------------------ state

    def _clear(self) -> None:
        self._alloc(_MIN_CAPACITY)
        meta = self._meta
        meta[_M_N] = meta[_M_FRAME] = meta[_M_CHECKED] = 0

    def _alloc(self, capacity: int) -> None:
        # The tracks are rows 0 .. n - 1 of two preallocated arrays (in order of
        # birth); the compiled update writes them in place and never grows them.
        self._x: Float64Array = np.zeros((capacity, _X_COLS))
        self._ti: Int64Array = np.zeros((capacity, _I_COLS), np.int64)

    def _reserve(self, capacity: int) -> None:
        """Make room for ``capacity`` tracks (at least doubling), keeping the stored ones."""
        n = int(self._meta[_M_N])
        x, ti = self._x, self._ti
        self._alloc(max(capacity, 2 * x.shape[0]))
        self._x[:n] = x[:n]
        self._ti[:n] = ti[:n]

    def reset(self) -> None:
        """Forget every track (e.g. after a source reset); keep the parameters.

        Identities continue from where they were: they are never reused within an
        instance.
        """
        self._clear()

    def set_frame_rate(self, fps: float) -> None:
        """Set the stream's frame rate, which converts the lost buffer to frames.

        Args:
            fps: Frames per second, > 0.

        Raises:
            ValueError: if ``fps`` is not a finite number > 0.
        """
        self._frame_rate = _check_range(
            "frame_rate", fps, 0.0, math.inf, low_open=True, high_open=True
        )
        self._max_frames_lost = math.floor(self.lost_track_buffer_s * self._frame_rate + 0.5)

    def params(self) -> dict[str, float | int | bool]:
        """The constructor arguments this instance runs with (frame rate as now set)."""
        return {
            "high_threshold": self.high_threshold,
            "low_threshold": self.low_threshold,
            "new_track_threshold": self.new_track_threshold,
            "match_threshold": self.match_threshold,
            "low_match_threshold": self.low_match_threshold,
            "unconfirmed_match_threshold": self.unconfirmed_match_threshold,
            "fuse_score": self.fuse_score,
            "lost_track_buffer_s": self.lost_track_buffer_s,
            "frame_rate": self._frame_rate,
            "max_lost_tracks": self.max_lost_tracks,
            "duplicate_iou": self.duplicate_iou,
            "class_aware": self.class_aware,
            "output_coasting": self.output_coasting,
            "min_hits": self.min_hits,
        }

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"ByteTrack({args})"

    @property
    def frame_rate(self) -> float:
        """Frame rate of the stream, frames per second."""
        return self._frame_rate

    @property
    def max_frames_lost(self) -> int:
        """Consecutive frames a track may miss and still be recovered."""
        return self._max_frames_lost

    @property
    def frame_id(self) -> int:
        """Frames seen since construction or :meth:`reset`, gaps included."""
        return int(self._meta[_M_FRAME])

    def _states(self) -> Int64Array:
        return self._ti[: self._meta[_M_N], _STATE]

    @property
    def num_tracked(self) -> int:
        """Number of stored tracked tracks (confirmed or not) after the last update."""
        return int(np.count_nonzero(self._states() != _LOST))

    @property
    def num_unconfirmed(self) -> int:
        """Number of stored unconfirmed (tentative, one-frame) tracks."""
        return int(np.count_nonzero(self._states() == _TENTATIVE))

    @property
    def num_lost(self) -> int:
        """Number of stored lost tracks (never above ``max_lost_tracks``)."""
        return int(np.count_nonzero(self._states() == _LOST))

    # ----------------------------------------------------------------- update

    def update(
        self,
        xyxy: npt.ArrayLike,
        confidence: npt.ArrayLike,
        class_id: npt.ArrayLike,
        frames_elapsed: int = 1,
    ) -> TrackerOutput:
        """Advance the tracker by one frame of detections.

        Args:
            xyxy: ``(N, 4)`` float detection boxes ``(x1, y1, x2, y2)``, pixels.
                Rows with a non-finite value or no positive width and height are
                ignored (never matched, never start a track). N may be 0.
            confidence: ``(N,)`` float scores in [0, 1].
            class_id: ``(N,)`` integer classes.
            frames_elapsed: Frames since the previous call, >= 1: 1 for consecutive
                frames; ``k > 1`` when ``k - 1`` frames are missing (a stream gap).
                Tracks are predicted ``k`` steps and the missing frames count toward
                the lost buffer.

        Returns:
            The reported tracks of this frame (see ``output_coasting``), sorted by
            ``track_id``. The input arrays are never modified.

        Raises:
            ValueError: if the shapes disagree, ``class_id`` is not integral, or
                ``frames_elapsed`` is not an integer >= 1.
        """
        boxes, scores, classes = _validate_detections(xyxy, confidence, class_id)
        if type(frames_elapsed) is not int and (
            isinstance(frames_elapsed, bool) or not isinstance(frames_elapsed, Integral)
        ):
            raise ValueError(f"frames_elapsed: must be an integer >= 1, got {frames_elapsed!r}")
        if frames_elapsed < 1:
            raise ValueError(f"frames_elapsed: must be an integer >= 1, got {frames_elapsed!r}")
        # float64 in (one compiled specialization; with float32 arrays LLVM may
        # round differently from numpy's float64 arithmetic).
        boxes = np.ascontiguousarray(boxes, np.float64)
        scores = np.ascontiguousarray(scores, np.float64)
        if not classes.flags.c_contiguous:
            classes = np.ascontiguousarray(classes)
        meta = self._meta
        # At most one new track per detection.
        if meta[_M_N] + boxes.shape[0] > self._x.shape[0]:
            self._reserve(int(meta[_M_N]) + boxes.shape[0])
        floats, ints, ids = _update(
            boxes,
            scores,
            classes,
            int(frames_elapsed),
            self._x,
            self._ti,
            meta,
            self.high_threshold,
            self.low_threshold,
            self.new_track_threshold,
            self.match_threshold,
            self.low_match_threshold,
            self.unconfirmed_match_threshold,
            self.fuse_score,
            self.duplicate_iou,
            self.class_aware,
            self.output_coasting,
            self.min_hits,
            self.max_lost_tracks,
            self._max_frames_lost,
        )
        return _make_output(floats, ints, ids)


# ------------------------------------------------------------- compiled update
#
# The arithmetic below is, operation for operation, that of the numpy version of the
# tracker (git 0f49348) and of the packed methods of trackers.kalman, so the results
# are the same to the last bit (checked by scripts/profile_bytetrack.py --compare-rev).

_KF = KalmanFilterXYAH()
_Q_SCALE = tuple(float(v) for v in _KF._process_scale)  # process std / h
_Q_VAR_A = float(_KF._process_var_aspect[0, 0])  # aspect position variance
_Q_VAR_VA = float(_KF._process_var_aspect[1, 0])  # aspect velocity variance
_R_SCALE = tuple(float(v) for v in _KF._measure_scale)  # measurement std / h
_R_VAR_A = float(_KF._measure_var_a)
_I_SCALE = tuple(float(v) for v in _KF._init_scale)  # initial std = h * scale + offset
_I_OFFSET = tuple(float(v) for v in _KF._init_offset)
del _KF


@njit(cache=True)
def _predict(x: Float64Array, i: int) -> None:
    """:meth:`KalmanFilterXYAH.predict_packed` of track ``i``."""
    h = x[i, 3]
    for k in range(4):
        if k == 2:
            qp = _Q_VAR_A
            qv = _Q_VAR_VA
        else:
            qp = _Q_SCALE[k] * h
            qp *= qp
            qv = _Q_SCALE[k + 4] * h
            qv *= qv
        x[i, k] += x[i, 4 + k]
        pp = x[i, 8 + k]
        pv = x[i, 12 + k]
        vp = x[i, 16 + k]
        vv = x[i, 20 + k]
        pp_vp = pp + vp
        pv = pv + vv
        x[i, 12 + k] = pv
        x[i, 16 + k] = vp + vv
        pp = pp_vp + pv
        x[i, 8 + k] = pp + qp
        x[i, 20 + k] = vv + qv


@njit(cache=True)
def _correct(x: Float64Array, i: int, d: Float64Array, j: int) -> None:
    """:meth:`KalmanFilterXYAH.update_packed` of track ``i`` with detection ``j`` of
    the table ``d`` (columns ``cx, cy, a, h`` at 4-7)."""
    h = x[i, 3]
    s0 = _R_SCALE[0] * h
    s1 = _R_SCALE[1] * h
    s3 = _R_SCALE[3] * h
    for k in range(4):
        if k == 0:
            s = s0 * s0
        elif k == 1:
            s = s1 * s1
        elif k == 2:
            s = _R_VAR_A
        else:
            s = s3 * s3
        pp = x[i, 8 + k]
        pv = x[i, 12 + k]
        s = s + pp
        inv = 1.0 / s
        kp = pp * inv
        kv = pv * inv
        l0 = x[i, k] - d[j, 4 + k]
        l1 = kp * s
        l2 = kv * s
        x[i, k] -= l0 * kp
        x[i, 4 + k] -= l0 * kv
        x[i, 8 + k] = pp - l1 * kp
        x[i, 12 + k] = pv - l1 * kv
        x[i, 16 + k] -= l2 * kp
        x[i, 20 + k] -= l2 * kv


@njit(cache=True)
def _track_box(x: Float64Array, i: int) -> tuple[float, float, float, float]:
    """Corners of track ``i`` (the arithmetic of trackers.kalman.xyah_to_xyxy)."""
    hh = x[i, 3] * 0.5
    hw = x[i, 2] * hh
    return x[i, 0] - hw, x[i, 1] - hh, x[i, 0] + hw, x[i, 1] + hh


@njit(cache=True)
def _np_min(a: float, b: float) -> float:
    """``np.minimum`` (NaN propagates)."""
    if a != a:
        return a
    return b if b < a or b != b else a


@njit(cache=True)
def _np_max(a: float, b: float) -> float:
    """``np.maximum`` (NaN propagates)."""
    if a != a:
        return a
    return b if b > a or b != b else a


@njit(cache=True)
def _compact(x: Float64Array, ti: Int64Array, n: int, keep: npt.NDArray[np.bool_]) -> int:
    """Keep the tracks ``i < n`` with ``keep[i]``, in their order; the new count."""
    w = 0
    for i in range(n):
        if keep[i]:
            if w != i:
                x[w] = x[i]
                ti[w] = ti[i]
            w += 1
    return w


@njit(cache=True)
def _match(
    rows: Int64Array,
    cols: Int64Array,
    costs: Float64Array,
    k: int,
    limit: float,
    row_ok: npt.NDArray[np.bool_],
    col_ok: npt.NDArray[np.bool_],
    n_rows: int,
    n_cols: int,
    out_r: Int64Array,
    out_c: Int64Array,
    n_out: int,
) -> int:
    """:func:`trackers.matching.match_candidates` of the first ``k`` candidates whose
    row and column are still free (``row_ok``, ``col_ok``); appends the matched pairs,
    ordered by row, to ``out_r``/``out_c`` from ``n_out`` and returns the new count.

    A candidate alone in its row and column below the limit is matched; the others
    (competing) are solved together by :func:`trackers.matching.lapjv_square` on the
    square matrix ``lap.lapjv(extend_cost=True, cost_limit=limit)`` builds from their
    rows and columns, as :func:`trackers.matching._lap_assignment` does. Where the
    Python version tries every matching (a few competing candidates with a clear
    best), that best is the optimum lap finds too.
    """
    row_n = np.zeros(n_rows, np.int64)
    col_n = np.zeros(n_cols, np.int64)
    use = np.zeros(k, np.bool_)
    for t in range(k):
        if row_ok[rows[t]] and col_ok[cols[t]]:
            use[t] = True
            row_n[rows[t]] += 1
            col_n[cols[t]] += 1
    match_of = np.full(n_rows, -1, np.int64)
    sub_r = np.full(n_rows, -1, np.int64)  # row -> index in the competing sub-matrix
    sub_c = np.full(n_cols, -1, np.int64)
    compete = 0
    for t in range(k):
        if not use[t]:
            continue
        r, c = rows[t], cols[t]
        if row_n[r] == 1 and col_n[c] == 1 and costs[t] < limit:
            match_of[r] = c
        else:
            compete += 1
            sub_r[r] = 0
            sub_c[c] = 0
    if compete:
        nr = 0
        for r in range(n_rows):
            if sub_r[r] == 0:
                sub_r[r] = nr
                nr += 1
        nc = 0
        for c in range(n_cols):
            if sub_c[c] == 0:
                sub_c[c] = nc
                nc += 1
        r_of = np.empty(nr, np.int64)
        c_of = np.empty(nc, np.int64)
        for r in range(n_rows):
            if sub_r[r] >= 0:
                r_of[sub_r[r]] = r
        for c in range(n_cols):
            if sub_c[c] >= 0:
                c_of[sub_c[c]] = c
        m = nr + nc
        ext = np.empty((m, m))
        ext[:nr, :nc] = 2.0 * limit + 1.0  # not a candidate: above the limit
        ext[:nr, nc:] = 0.5 * limit
        ext[nr:, :nc] = 0.5 * limit
        ext[nr:, nc:] = 0.0
        for t in range(k):
            if use[t]:
                r, c = rows[t], cols[t]
                if not (row_n[r] == 1 and col_n[c] == 1 and costs[t] < limit):
                    ext[sub_r[r], sub_c[c]] = costs[t]
        xs, _ = lapjv_square(ext)
        for a in range(nr):
            b = xs[a]
            # lap leaves a pair exactly at the limit to chance; never take one above.
            if b < nc and ext[a, b] <= limit:
                match_of[r_of[a]] = c_of[b]
    for r in range(n_rows):
        if match_of[r] >= 0:
            out_r[n_out] = r
            out_c[n_out] = match_of[r]
            n_out += 1
    return n_out


@njit(cache=True)
def _update(
    boxes: npt.NDArray[np.floating],
    scores: npt.NDArray[np.floating],
    classes: npt.NDArray[np.int32],
    steps: int,
    x: Float64Array,
    ti: Int64Array,
    meta: Int64Array,
    high_thr: float,
    low_thr: float,
    new_thr: float,
    lim1: float,
    lim2: float,
    lim3: float,
    fuse: bool,
    dup_iou: float,
    class_aware: bool,
    coasting: bool,
    min_hits: int,
    max_lost_tracks: int,
    max_lost: int,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int32], Int64Array]:
    """One :meth:`ByteTrack.update` on the state ``x``, ``ti``, ``meta`` (in place;
    room for one new track per detection); the output buffers of :func:`_make_output`."""
    n = meta[_M_N]
    first_frame = meta[_M_FRAME] == 0
    frame = meta[_M_FRAME] + steps
    meta[_M_FRAME] = frame

    # 1. Drop tracks a gap (or a shorter buffer) carried past the lost buffer; predict.
    if n > 0 and (steps > 1 or max_lost < meta[_M_CHECKED]):
        oldest = frame - 1 - max_lost
        keep = np.empty(n, np.bool_)
        for i in range(n):
            keep[i] = ti[i, _LAST] >= oldest
        n = _compact(x, ti, n, keep)
    for i in range(n):
        for _ in range(steps):
            _predict(x, i)

    # 2. Detections that take part: input rows ``cols``, table ``d`` (x1, y1, x2, y2,
    #    cx, cy, a, h, area, score).
    m_in = boxes.shape[0]
    cols = np.empty(m_in, np.int64)
    d = np.empty((m_in, 10))
    m = 0
    for r in range(m_in):
        x1 = float(boxes[r, 0])
        y1 = float(boxes[r, 1])
        x2 = float(boxes[r, 2])
        y2 = float(boxes[r, 3])
        sc = float(scores[r])
        w = x2 - x1
        h = y2 - y1
        if not (
            np.isfinite(x1)
            and np.isfinite(y1)
            and np.isfinite(x2)
            and np.isfinite(y2)
            and np.isfinite(sc)
            and w > 0.0
            and h > 0.0
            and sc >= low_thr
        ):
            continue
        cols[m] = r
        d[m, 0] = x1
        d[m, 1] = y1
        d[m, 2] = x2
        d[m, 3] = y2
        d[m, 4] = w * 0.5 + x1
        d[m, 5] = h * 0.5 + y1
        d[m, 6] = w / h
        d[m, 7] = h
        d[m, 8] = w * h
        d[m, 9] = sc
        m += 1

    # 3.-5. The three associations.
    det_of = np.full(n, -1, np.int64)  # matched detection (table column) per track
    det_taken = np.zeros(m, np.bool_)
    pr = np.empty(min(n, m), np.int64)
    pc = np.empty(min(n, m), np.int64)
    n_pairs = 0
    n_confirm_from = 0
    if n > 0 and m > 0:
        weight = 1.0
        if fuse:
            for j in range(m):
                weight = max(weight, d[j, 9])
        floor = max(0.0, (1.0 - max(lim1, lim2, lim3) - 1e-9) / weight)
        cap = n * m
        r1 = np.empty(cap, np.int64)
        c1 = np.empty(cap, np.int64)
        v1 = np.empty(cap)
        r2 = np.empty(cap, np.int64)
        c2 = np.empty(cap, np.int64)
        v2 = np.empty(cap)
        r3 = np.empty(cap, np.int64)
        c3 = np.empty(cap, np.int64)
        v3 = np.empty(cap)
        k1 = k2 = k3 = 0
        for i in range(n):
            tx1, ty1, tx2, ty2 = _track_box(x, i)
            t_area = (tx2 - tx1) * (ty2 - ty1)
            kind = ti[i, _STATE]
            for j in range(m):
                iw = _np_min(tx2, d[j, 2]) - _np_max(tx1, d[j, 0])
                ih = _np_min(ty2, d[j, 3]) - _np_max(ty1, d[j, 1])
                iw = _np_max(iw, 0.0)
                ih = _np_max(ih, 0.0)
                inter = iw * ih
                union = (t_area + d[j, 8]) - inter
                union = _np_max(union, _TINY_AREA)
                iou = inter / union
                if not iou > floor:
                    continue
                if class_aware and ti[i, _CLS] != classes[cols[j]]:
                    continue
                if d[j, 9] >= high_thr:
                    v = 1.0 - iou * d[j, 9] if fuse else 1.0 - iou
                    if kind == _TENTATIVE:
                        if v <= lim3:
                            r3[k3] = i
                            c3[k3] = j
                            v3[k3] = v
                            k3 += 1
                    elif v <= lim1:
                        r1[k1] = i
                        c1[k1] = j
                        v1[k1] = v
                        k1 += 1
                elif kind == _TRACKED:
                    v = 1.0 - iou
                    if v <= lim2:
                        r2[k2] = i
                        c2[k2] = j
                        v2[k2] = v
                        k2 += 1
        track_free = np.ones(n, np.bool_)
        det_free = np.ones(m, np.bool_)
        # 3. Confirmed (tracked + lost) tracks x high detections.
        n_pairs = _match(r1, c1, v1, k1, lim1, track_free, det_free, n, m, pr, pc, 0)
        for p in range(n_pairs):
            track_free[pr[p]] = False
        # 4. Tracked tracks unmatched so far x low detections (never taken above).
        n_pairs = _match(r2, c2, v2, k2, lim2, track_free, det_free, n, m, pr, pc, n_pairs)
        for p in range(n_pairs):
            det_free[pc[p]] = False
        # 5. Tentative tracks x high detections unmatched so far.
        n_confirm_from = n_pairs
        n_pairs = _match(r3, c3, v3, k3, lim3, track_free, det_free, n, m, pr, pc, n_pairs)

    # Correct the matched tracks.
    next_id = meta[_M_NEXT_ID]
    for p in range(n_pairs):
        i, j = pr[p], pc[p]
        _correct(x, i, d, j)
        x[i, _SCORE] = d[j, 9]
        ti[i, _STATE] = _TRACKED
        ti[i, _LAST] = frame
        ti[i, _CLS] = classes[cols[j]]
        det_of[i] = j
        det_taken[j] = True
        if p >= n_confirm_from:  # tentative tracks matched again: ids in row order
            ti[i, _ID] = next_id
            next_id += 1
    for i in range(n):
        ti[i, _DET] = cols[det_of[i]] if det_of[i] >= 0 else -1

    # Unmatched tracks: tracked ones become lost, tentative ones and lost ones past
    # the buffer are removed.
    if n_pairs < n:
        keep = np.ones(n, np.bool_)
        removed = False
        oldest = frame - max_lost
        for i in range(n):
            if det_of[i] >= 0:
                continue
            kind = ti[i, _STATE]
            if kind == _TRACKED:
                ti[i, _STATE] = _LOST
                x[i, 7] = 0.0  # a lost track keeps its height
                if ti[i, _LAST] < oldest:
                    keep[i] = False
                    removed = True
            elif kind == _TENTATIVE or ti[i, _LAST] < oldest:
                keep[i] = False
                removed = True
        if removed:
            n = _compact(x, ti, n, keep)

    # 6. New tracks from the high detections nobody claimed.
    for j in range(m):
        sc = d[j, 9]
        if sc >= high_thr and sc >= new_thr and not det_taken[j]:
            h = d[j, 7]
            for k in range(4):
                x[n, k] = d[j, 4 + k]
                x[n, 4 + k] = 0.0
                std = _I_SCALE[k] * h + _I_OFFSET[k]
                x[n, 8 + k] = std * std
                x[n, 12 + k] = 0.0
                x[n, 16 + k] = 0.0
                std = _I_SCALE[k + 4] * h + _I_OFFSET[k + 4]
                x[n, 20 + k] = std * std
            x[n, _SCORE] = sc
            if first_frame:
                ti[n, _ID] = next_id
                next_id += 1
                ti[n, _STATE] = _TRACKED
            else:
                ti[n, _ID] = 0
                ti[n, _STATE] = _TENTATIVE
            ti[n, _LAST] = frame
            ti[n, _START] = frame
            ti[n, _CLS] = classes[cols[j]]
            ti[n, _DET] = cols[j]
            ti[n, _HITS] = 0
            n += 1
    meta[_M_NEXT_ID] = next_id

    # 7. Bound the lost list (the ones unmatched longest go, older rows first).
    n_lost = 0
    for i in range(n):
        if ti[i, _STATE] == _LOST:
            n_lost += 1
    excess = n_lost - max_lost_tracks
    if excess > 0:
        lost = np.empty(n_lost, np.int64)
        lost_last = np.empty(n_lost, np.int64)
        q = 0
        for i in range(n):
            if ti[i, _STATE] == _LOST:
                lost[q] = i
                lost_last[q] = ti[i, _LAST]
                q += 1
        order = np.argsort(lost_last, kind="mergesort")  # stable
        keep = np.ones(n, np.bool_)
        for q in range(excess):
            keep[lost[order[q]]] = False
        n = _compact(x, ti, n, keep)
        n_lost -= excess
    # Remove the younger of every tracked/lost pair with IoU > dup_iou.
    if n_lost > 0 and n_lost < n:
        keep = np.ones(n, np.bool_)
        removed = False
        for o in range(n):
            if ti[o, _STATE] != _LOST:
                continue
            ox1, oy1, ox2, oy2 = _track_box(x, o)
            for t in range(n):
                if ti[t, _STATE] == _LOST:
                    continue
                x1, y1, x2, y2 = _track_box(x, t)
                w = (x2 if x2 < ox2 else ox2) - (x1 if x1 > ox1 else ox1)
                if not w > 0.0:
                    continue
                h = (y2 if y2 < oy2 else oy2) - (y1 if y1 > oy1 else oy1)
                if not h > 0.0:
                    continue
                inter = w * h
                union = (x2 - x1) * (y2 - y1) + (ox2 - ox1) * (oy2 - oy1) - inter
                if not inter / (union if union > _TINY_AREA else _TINY_AREA) > dup_iou:
                    continue
                if class_aware and ti[t, _CLS] != ti[o, _CLS]:
                    continue
                if ti[t, _LAST] - ti[t, _START] > ti[o, _LAST] - ti[o, _START]:
                    keep[o] = False
                else:
                    keep[t] = False
                removed = True
        if removed:
            n = _compact(x, ti, n, keep)
    meta[_M_N] = n
    meta[_M_CHECKED] = max_lost

    # Output: confirmed tracks with enough hits (stored in ascending id order).
    k = 0
    for i in range(n):
        hits = ti[i, _HITS]
        if ti[i, _DET] >= 0:
            hits += 1
        elif hits < min_hits:
            hits = 0
        ti[i, _HITS] = hits
        if ti[i, _STATE] != _TENTATIVE and (coasting or ti[i, _DET] >= 0) and hits >= min_hits:
            k += 1
    floats = np.empty(5 * k, np.float32)
    ints = np.empty(2 * k, np.int32)
    ids = np.empty(k, np.int64)
    q = 0
    for i in range(n):
        if (
            ti[i, _STATE] != _TENTATIVE
            and (coasting or ti[i, _DET] >= 0)
            and ti[i, _HITS] >= min_hits
        ):
            x1, y1, x2, y2 = _track_box(x, i)
            floats[4 * q] = x1
            floats[4 * q + 1] = y1
            floats[4 * q + 2] = x2
            floats[4 * q + 3] = y2
            floats[4 * k + q] = x[i, _SCORE]
            ints[q] = ti[i, _CLS]
            ints[k + q] = ti[i, _DET]
            ids[q] = ti[i, _ID]
            q += 1
    return floats, ints, ids


_OUTPUT_FIELDS = ("xyxy", "confidence", "class_id", "track_id", "det_index")
_FAST_OUTPUT = tuple(f.name for f in dataclasses.fields(TrackerOutput)) == _OUTPUT_FIELDS


def _make_output(
    floats: npt.NDArray[np.float32], ints: npt.NDArray[np.int32], track_id: npt.NDArray[np.int64]
) -> TrackerOutput:
    """A :class:`TrackerOutput` of ``M`` tracks from three fresh buffers: ``floats``
    (``4 M`` box coordinates, then ``M`` confidences), ``ints`` (``M`` classes, then
    ``M`` detection rows) and ``track_id``.

    The fields are views of the buffers, made read-only first, so nothing is copied
    and no view can be written; the constructor's checks and copies (several
    microseconds a frame) are skipped.
    """
    k = len(track_id)
    floats.flags.writeable = False
    ints.flags.writeable = False
    track_id.flags.writeable = False
    fields: dict[str, Any] = {
        "xyxy": floats[: 4 * k].reshape(k, 4),
        "confidence": floats[4 * k :],
        "class_id": ints[:k],
        "track_id": track_id,
        "det_index": ints[k:],
    }
    if not _FAST_OUTPUT:  # TrackerOutput changed shape: take the checked path
        return TrackerOutput(**fields)
    out = object.__new__(TrackerOutput)
    out.__dict__.update(fields)
    return out


def _validate_detections(
    xyxy: npt.ArrayLike, confidence: npt.ArrayLike, class_id: npt.ArrayLike
) -> tuple[npt.NDArray[np.floating], npt.NDArray[np.floating], npt.NDArray[np.int32]]:
    """``(N, 4)`` float boxes, ``(N,)`` float scores and ``(N,)`` int32 classes.

    The results may be the input arrays themselves (they are never written to).
    """
    if (
        type(xyxy) is np.ndarray
        and type(confidence) is np.ndarray
        and type(class_id) is np.ndarray
        and xyxy.ndim == 2
        and xyxy.shape[1] == 4
        and confidence.shape == class_id.shape == (xyxy.shape[0],)
        and xyxy.dtype.kind == "f"
        and confidence.dtype.kind == "f"
        and class_id.dtype.kind in "iub"
    ):  # the usual case, checked cheaply
        return xyxy, confidence, class_id.astype(np.int32, copy=False)
    boxes = np.array(xyxy, dtype=np.float64, copy=True)
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"xyxy: expected shape (N, 4), got {np.shape(xyxy)}")
    n = boxes.shape[0]
    scores = np.array(confidence, dtype=np.float64, copy=True).reshape(-1)
    if np.ndim(confidence) > 1 or scores.shape[0] != n:
        raise ValueError(f"confidence: expected shape ({n},), got {np.shape(confidence)}")
    raw_cls = np.asarray(class_id)
    if raw_cls.ndim > 1 or raw_cls.size != n:
        raise ValueError(f"class_id: expected shape ({n},), got {raw_cls.shape}")
    raw_cls = raw_cls.reshape(-1)
    if raw_cls.dtype.kind not in "iub" and (
        raw_cls.dtype.kind != "f" or not np.all(np.mod(raw_cls, 1) == 0)
    ):
        raise ValueError(f"class_id: expected integers, got dtype {raw_cls.dtype}")
    return boxes, scores, raw_cls.astype(np.int32)
