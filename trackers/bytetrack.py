"""ByteTrack: multi-object tracking by associating every detection box.

Zhang et al., "ByteTrack: Multi-Object Tracking by Associating Every Detection Box",
ECCV 2022. Reference implementation: ``ifzhang/ByteTrack``
``yolox/tracker/byte_tracker.py``. This is an independent implementation of the same
algorithm with these differences (each deliberate):

* The Kalman states of all tracks live in one array, so prediction and correction
  of all tracks are a few batched numpy operations on the packed (per-coordinate
  2x2 block) covariance of :class:`trackers.kalman.KalmanFilterXYAH`; the
  bookkeeping of a frame's few tracks is plain Python.
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

Implementation notes (speed): a frame has a few tracks and detections, so the cost is
the number of numpy calls, not their size. Hence the packed Kalman state (a dozen
elementwise operations for all tracks, no 8x8 products or solves); one IoU matrix per
frame for the three associations, of which only the pairs that can be matched leave
numpy; ``lap`` only where candidates compete
(:func:`trackers.matching.match_candidates`); the per-track bookkeeping in Python
lists; the output fields as read-only views of three fresh buffers. The results are
those of the straightforward first implementation (git ``cd24f38``) to the last bit
on the MOT15 files (``scripts/profile_bytetrack.py --compare-rev cd24f38``); only
exactly tied assignments could be resolved differently.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from numbers import Integral, Real
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from trackers.kalman import PACKED_ROWS, KalmanFilterXYAH
from trackers.matching import _TINY_AREA, match_candidates
from trackers.types import TrackerOutput

# Track states.
_TRACKED = 0  # confirmed, matched in the last frame
_LOST = 1  # confirmed, unmatched for up to max_frames_lost frames
_TENTATIVE = 2  # born last frame, not yet confirmed (no id)

# Rows of the per-track float array: the packed Kalman state (trackers.kalman), then
# the score of the detection the track was last updated with.
_SCORE = PACKED_ROWS
_X_ROWS = PACKED_ROWS + 1

# Rows of a detection table (ByteTrack._detections) and of a box table (_box_table).
_D_XYXY = slice(0, 4)  # x1, y1, x2, y2
_D_XYAH = slice(4, 8)  # cx, cy, a, h (detections only)
_D_AREA = 8
_D_SCORE = 9  # (detections only)
_D_ROWS = 10

Float64Array = npt.NDArray[np.float64]
IntpArray = npt.NDArray[np.intp]
_T = TypeVar("_T")


def _check_range(
    name: str,
    value: object,
    low: float,
    high: float,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``value`` as float if it lies in the interval, else raise ValueError."""
    lo_br, hi_br = ("(" if low_open else "["), (")" if high_open else "]")
    interval = f"{lo_br}{low:g}, {high:g}{hi_br}"
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"{name}: must be a number in {interval}, got {value!r}")
    v = float(value)
    ok = math.isfinite(v) or (v == math.inf and high == math.inf and not high_open)
    ok = ok and (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
    if not ok:
        raise ValueError(f"{name}: must be in {interval}, got {value!r}")
    return v


def _check_bool(name: str, value: object) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name}: must be a bool, got {value!r}")
    return bool(value)


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
        self._kf: KalmanFilterXYAH = KalmanFilterXYAH()
        self._frame_rate: float = 30.0
        self._max_frames_lost: int = 0
        self.set_frame_rate(frame_rate)
        self._next_id: int = 1
        self._clear()

    # ------------------------------------------------------------------ state

    def _clear(self) -> None:
        self._frame_id = 0
        # One column per track: the packed Kalman state and the score, component-major
        # so that every quantity is a contiguous row (numpy works on whole rows).
        self._x: Float64Array = np.zeros((_X_ROWS, 0))
        # The bookkeeping of the same tracks, in the same order (a frame has a few
        # tracks: Python lists are cheaper than numpy calls on them).
        self._ids: list[int] = []  # 0 while tentative
        self._state: list[int] = []  # _TRACKED, _LOST or _TENTATIVE
        self._last: list[int] = []  # frame of the last update
        self._start: list[int] = []  # frame of birth
        self._cls: list[int] = []  # class of the last detection
        self._det: list[int] = []  # input row this frame, -1 if none
        self._hits: list[int] = []  # matched frames in a row (kept once >= min_hits)
        # max_frames_lost at the end of the last update: every stored track was then
        # within it, so only a gap or a shorter buffer can have expired one since.
        self._checked_max_lost = 0

    def _keep(self, rows: list[int]) -> None:
        """Keep only the tracks in ``rows`` (ascending), in their order."""
        self._x = self._x.take(rows, axis=1)
        ids, state, last, start, cls, det = (
            self._ids,
            self._state,
            self._last,
            self._start,
            self._cls,
            self._det,
        )
        self._ids = [ids[i] for i in rows]
        self._state = [state[i] for i in rows]
        self._last = [last[i] for i in rows]
        self._start = [start[i] for i in rows]
        self._cls = [cls[i] for i in rows]
        self._det = [det[i] for i in rows]
        hits = self._hits
        self._hits = [hits[i] for i in rows]

    def _remove(self, rows: list[int]) -> None:
        gone = set(rows)
        self._keep([i for i in range(len(self._ids)) if i not in gone])

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
        return self._frame_id

    @property
    def num_tracked(self) -> int:
        """Number of stored tracked tracks (confirmed or not) after the last update."""
        return sum(s != _LOST for s in self._state)

    @property
    def num_unconfirmed(self) -> int:
        """Number of stored unconfirmed (tentative, one-frame) tracks."""
        return self._state.count(_TENTATIVE)

    @property
    def num_lost(self) -> int:
        """Number of stored lost tracks (never above ``max_lost_tracks``)."""
        return self._state.count(_LOST)

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
        steps = int(frames_elapsed)
        first_frame = self._frame_id == 0
        self._frame_id += steps
        frame = self._frame_id
        max_lost = self._max_frames_lost

        # 1. Drop tracks that a gap (or a shorter buffer) has carried past the lost
        #    buffer, predict the rest (lost tracks have zero height velocity: it is
        #    zeroed when they become lost).
        if self._last and (steps > 1 or max_lost < self._checked_max_lost):
            oldest = frame - 1 - max_lost
            if min(self._last) < oldest:
                self._keep([i for i, t in enumerate(self._last) if t >= oldest])
        x = self._x
        kinds = self._state
        n = len(kinds)
        for _ in range(steps if n else 0):
            self._kf.predict_packed(x[:PACKED_ROWS])

        # 2. The detections that take part (valid, confidence >= low_threshold):
        #    their input rows ``cols`` and their table ``dets``.
        cols, dets, det_scores = self._detections(boxes, scores)
        high_thr = self.high_threshold
        highs = [score >= high_thr for score in det_scores]
        classes_l: list[int] = classes.tolist()

        # 3.-5. The three associations: matched (track, column) pairs.
        if n and highs:
            pairs, n_confirmed = self._associate(x, kinds, dets, det_scores, highs, classes_l, cols)
        else:
            pairs, n_confirmed = [], 0

        # Correct every matched track in one batched Kalman update.
        self._det = det = [-1] * n
        if pairs:
            rows = [i for i, _ in pairs]
            used = [j for _, j in pairs]
            d = dets.take(used, axis=1)
            at = np.array(rows, dtype=np.intp)
            xm = x.take(at, axis=1)
            self._kf.update_packed(xm[:PACKED_ROWS], d[_D_XYAH])
            xm[_SCORE] = d[_D_SCORE]
            x[:, at] = xm
            last, cls = self._last, self._cls
            for i, j in pairs:
                r = cols[j]
                kinds[i] = _TRACKED
                last[i] = frame
                cls[i] = classes_l[r]
                det[i] = r
            # Tentative tracks matched again are confirmed, ids in row order (they
            # are the last pairs, ordered by row).
            for i in rows[len(rows) - n_confirmed :]:
                self._ids[i] = self._next_id
                self._next_id += 1
        else:
            used = []

        # Unmatched tracks: tracked ones become lost, tentative ones and lost ones
        # past the buffer are removed.
        if len(pairs) < n:
            newly_lost: list[int] = []
            remove: list[int] = []
            oldest = frame - max_lost
            last = self._last
            for i, kind in enumerate(kinds):
                if det[i] >= 0:  # matched
                    continue
                if kind == _TRACKED:
                    newly_lost.append(i)
                    kinds[i] = _LOST
                    if last[i] < oldest:
                        remove.append(i)
                elif kind == _TENTATIVE or last[i] < oldest:
                    remove.append(i)
            if newly_lost:
                x[7, newly_lost] = 0.0  # a lost track keeps its height
            if remove:
                self._remove(remove)

        # 6. New tracks from the high detections nobody claimed.
        new_thr = self.new_track_threshold
        taken = set(used)
        new_cols = [
            j
            for j, score in enumerate(det_scores)
            if highs[j] and score >= new_thr and j not in taken
        ]
        if new_cols:
            self._add_tracks(
                dets.take(new_cols, axis=1),
                [cols[j] for j in new_cols],
                classes_l,
                frame,
                confirm=first_frame,
            )

        # 7. Bound the lost list; remove tracked/lost duplicates.
        self._checked_max_lost = max_lost
        return self._finish()

    def _detections(
        self, boxes: npt.NDArray[np.floating], scores: npt.NDArray[np.floating]
    ) -> tuple[Sequence[int], Float64Array, list[float]]:
        """The detections that take part (valid, ``confidence >= low_threshold``):
        their input rows (ascending), their table and their confidences.

        The table is ``(_D_ROWS, M) float64``: rows ``x1, y1, x2, y2`` (_D_XYXY),
        ``cx, cy, a, h`` (_D_XYAH, as :func:`trackers.kalman.xyxy_to_xyah`), area
        (_D_AREA) and confidence (_D_SCORE).
        """
        m = boxes.shape[0]
        d = np.empty((_D_ROWS, m))
        d[_D_XYXY] = boxes.T
        d[_D_SCORE] = scores
        wh = d[2:4] - d[0:2]
        scores_l: list[float] = d[_D_SCORE].tolist()
        # Valid: every value finite, width and height > 0. A NaN or infinite
        # coordinate makes the width or height NaN or infinite, so a few sums and
        # minima of lists settle the usual case, all valid.
        low = self.low_threshold
        w_l, h_l = wh.tolist()
        if m == 0 or (
            min(w_l) > 0.0
            and min(h_l) > 0.0
            and min(scores_l) >= low
            and math.isfinite(sum(w_l) + sum(h_l) + sum(scores_l))
        ):
            cols: Sequence[int] = range(m)
        else:
            ok = np.isfinite(d[_D_XYXY]).all(axis=0)
            ok &= np.isfinite(d[_D_SCORE])
            ok &= (wh > 0.0).all(axis=0)
            ok &= d[_D_SCORE] >= low
            valid = ok.nonzero()[0]
            cols = valid.tolist()
            d, wh = d.take(valid, axis=1), wh.take(valid, axis=1)
            scores_l = [scores_l[i] for i in cols]
        np.multiply(wh, 0.5, d[4:6])
        d[4:6] += d[0:2]  # cx = x1 + 0.5 * w
        np.divide(wh[0], wh[1], d[6])
        d[7] = wh[1]
        np.multiply(wh[0], wh[1], d[_D_AREA])
        return cols, d, scores_l

    def _associate(
        self,
        x: Float64Array,
        kinds: list[int],
        dets: Float64Array,
        det_scores: list[float],
        highs: list[bool],
        classes: list[int],
        cols: Sequence[int],
    ) -> tuple[list[tuple[int, int]], int]:
        """Steps 3-5: the matched ``(track, column)`` pairs of the three associations
        (in this order, each by track) and the number of pairs of the last one.

        The cost of a pair is ``1 - IoU`` (times the score for high detections with
        ``fuse_score``); pairs without overlap (or of different classes with
        ``class_aware``) never match. One IoU matrix covers every track and usable
        detection; only the pairs whose IoU can give a cost under the largest limit
        leave numpy, and their costs are computed in Python (the arithmetic of
        :func:`trackers.matching.iou_cost`). They are split by association and
        matched by :func:`trackers.matching.match_candidates` (``lap`` only where
        candidates compete): the matches ``linear_assignment`` gives on each
        association's full cost matrix.
        """
        iou = _iou(_box_table(x), dets)
        fuse = self.fuse_score
        lim1 = self.match_threshold
        lim2 = self.low_match_threshold
        lim3 = self.unconfirmed_match_threshold
        # cost <= limit needs iou * weight >= 1 - limit (up to rounding), weight the
        # score (fused) or 1: a slightly lower IoU floor keeps every candidate.
        weight = max(1.0, max(det_scores)) if fuse else 1.0
        floor = max(0.0, (1.0 - max(lim1, lim2, lim3) - 1e-9) / weight)
        r, c = (iou > floor).nonzero()
        ious: list[float] = iou[r, c].tolist()
        # Candidates (rows, columns, costs) of each association.
        r1: list[int] = []
        c1: list[int] = []
        v1: list[float] = []
        r2: list[int] = []
        c2: list[int] = []
        v2: list[float] = []
        r3: list[int] = []
        c3: list[int] = []
        v3: list[float] = []
        class_aware = self.class_aware
        track_cls = self._cls
        for i, j, v in zip(r.tolist(), c.tolist(), ious, strict=True):
            if class_aware and track_cls[i] != classes[cols[j]]:
                continue
            if highs[j]:
                v = 1.0 - v * det_scores[j] if fuse else 1.0 - v
                if kinds[i] == _TENTATIVE:
                    if v <= lim3:
                        r3.append(i)
                        c3.append(j)
                        v3.append(v)
                elif v <= lim1:
                    r1.append(i)
                    c1.append(j)
                    v1.append(v)
            elif kinds[i] == _TRACKED:
                v = 1.0 - v
                if v <= lim2:
                    r2.append(i)
                    c2.append(j)
                    v2.append(v)
        # 3. Confirmed (tracked + lost) tracks x high detections.
        pairs = match_candidates(r1, c1, v1, lim1) if r1 else []
        # 4. Tracked tracks unmatched so far x low detections.
        if r2:
            if pairs:
                taken = {i for i, _ in pairs}
                keep = [i not in taken for i in r2]
                r2, c2, v2 = _select(r2, keep), _select(c2, keep), _select(v2, keep)
            pairs += match_candidates(r2, c2, v2, lim2)
        # 5. Tentative tracks x high detections unmatched so far.
        if not r3:
            return pairs, 0
        if pairs:
            taken = {j for _, j in pairs}
            keep = [j not in taken for j in c3]
            r3, c3, v3 = _select(r3, keep), _select(c3, keep), _select(v3, keep)
        m3 = match_candidates(r3, c3, v3, lim3)
        return pairs + m3, len(m3)

    def _add_tracks(
        self, dets: Float64Array, rows: list[int], classes: list[int], frame: int, *, confirm: bool
    ) -> None:
        """Append tracks started from the detections ``dets`` (a table; input ``rows``):
        tentative, or confirmed at once with ``confirm``."""
        k = len(rows)
        xn = np.empty((_X_ROWS, k))
        xn[:PACKED_ROWS] = self._kf.initiate_packed(dets[_D_XYAH])
        xn[_SCORE] = dets[_D_SCORE]
        self._x = np.concatenate((self._x, xn), axis=1)
        if confirm:
            self._ids += range(self._next_id, self._next_id + k)
            self._next_id += k
        else:
            self._ids += [0] * k
        self._state += [_TRACKED if confirm else _TENTATIVE] * k
        self._last += [frame] * k
        self._start += [frame] * k
        self._cls += [classes[r] for r in rows]
        self._det += rows
        self._hits += [0] * k

    def _finish(self) -> TrackerOutput:
        """Step 7 (cap the lost tracks, remove duplicates) and the frame's output."""
        lost = [i for i, s in enumerate(self._state) if s == _LOST]
        excess = len(lost) - self.max_lost_tracks
        if excess > 0:
            lost.sort(key=self._last.__getitem__)  # stable: older rows first
            self._remove(lost[:excess])
            lost = [i for i, s in enumerate(self._state) if s == _LOST]
        boxes = None
        if lost and len(lost) < len(self._state):
            boxes = _box_table(self._x, area=False)
            if self._remove_duplicates(boxes, lost):
                boxes = None
        # Confirmed tracks are stored in ascending id order (ids are handed out in
        # row order, and new tracks are appended), so ``rows`` is sorted by id.
        state, det, mature = self._state, self._det, self.min_hits
        self._hits = hits = [
            h + 1 if d >= 0 else (h if h >= mature else 0)
            for h, d in zip(self._hits, det, strict=True)
        ]
        if self.output_coasting:
            rows = [i for i, s in enumerate(state) if s != _TENTATIVE and hits[i] >= mature]
        else:
            rows = [
                i
                for i, s in enumerate(state)
                if s != _TENTATIVE and det[i] >= 0 and hits[i] >= mature
            ]
        at = np.array(rows, dtype=np.intp)
        if boxes is None:
            x = self._x.take(at, axis=1)
            boxes = _box_table(x, area=False)
            score = x[_SCORE]
        else:
            boxes = boxes.take(at, axis=1)
            score = self._x[_SCORE].take(at)
        ids, cls = self._ids, self._cls
        k = len(rows)
        floats = np.empty(5 * k, np.float32)  # xyxy, then confidence
        floats[: 4 * k].reshape(k, 4)[...] = boxes[_D_XYXY].T
        floats[4 * k :] = score
        return _make_output(
            floats,
            np.array([cls[i] for i in rows] + [det[i] for i in rows], np.int32),
            np.array([ids[i] for i in rows], dtype=np.int64),
        )

    def _remove_duplicates(self, boxes: Float64Array, lost: list[int]) -> bool:
        """Remove the younger of every tracked/lost pair with IoU > ``duplicate_iou``.

        ``boxes`` is the box table of all tracks, without areas. With few pairs (the
        usual case) the IoU is computed in Python, pair by pair, skipping pairs that
        do not overlap; the arithmetic is that of :func:`_box_table` and :func:`_iou`,
        so the outcome is the same.
        """
        state = self._state
        tracked = [i for i, s in enumerate(state) if s != _LOST]
        thr = self.duplicate_iou
        pairs: list[tuple[int, int]] = []
        if len(tracked) * len(lost) <= _PYTHON_PAIRS:
            corners = list(zip(*boxes[_D_XYXY].tolist(), strict=True))
            tracked_corners = [(t, *corners[t]) for t in tracked]
            for o in lost:
                ox1, oy1, ox2, oy2 = corners[o]
                for t, x1, y1, x2, y2 in tracked_corners:
                    w = (x2 if x2 < ox2 else ox2) - (x1 if x1 > ox1 else ox1)
                    if w > 0.0:
                        h = (y2 if y2 < oy2 else oy2) - (y1 if y1 > oy1 else oy1)
                        if h > 0.0:  # so both boxes have positive sides
                            inter = w * h
                            union = (x2 - x1) * (y2 - y1) + (ox2 - ox1) * (oy2 - oy1) - inter
                            if inter / (union if union > _TINY_AREA else _TINY_AREA) > thr:
                                pairs.append((t, o))
        else:
            size = boxes[2:4] - boxes[0:2]
            np.multiply(size[0], size[1], boxes[_D_AREA])
            iou = _iou(boxes.take(tracked, axis=1), boxes.take(lost, axis=1))
            p, q = (iou > thr).nonzero()
            pairs = [(tracked[a], lost[b]) for a, b in zip(p.tolist(), q.tolist(), strict=True)]
        if not pairs:
            return False
        last, start, cls = self._last, self._start, self._cls
        remove = [
            o if last[t] - start[t] > last[o] - start[o] else t
            for t, o in pairs
            if not self.class_aware or cls[t] == cls[o]
        ]
        if not remove:
            return False
        self._remove(remove)
        return True


_PYTHON_PAIRS = 64
"""Up to this many tracked x lost pairs the duplicate test runs in Python."""


def _box_table(x: Float64Array, *, area: bool = True) -> Float64Array:
    """``(_D_AREA + 1, N)`` rows ``x1, y1, x2, y2`` (_D_XYXY) and, with ``area``, the
    area (_D_AREA) of the tracks of packed states ``x``, as
    :func:`trackers.kalman.xyah_to_xyxy` and :func:`trackers.matching.box_iou`
    compute them (rows _D_XYAH are scratch)."""
    out = np.empty((_D_AREA + 1, x.shape[1]))
    half = out[4:6]  # half width, half height
    np.multiply(x[3], 0.5, half[1])
    np.multiply(x[2], half[1], half[0])  # a * (h / 2)
    np.subtract(x[0:2], half, out[0:2])
    np.add(x[0:2], half, out[2:4])
    if area:
        # Left unclamped: a box with a negative side overlaps nothing, so its IoU is 0
        # whatever its area, as with the clamped area of box_iou.
        size = np.subtract(out[2:4], out[0:2], half)
        np.multiply(size[0], size[1], out[_D_AREA])
    return out


def _iou(a: Float64Array, b: Float64Array) -> Float64Array:
    """IoU matrix of two box tables (rows _D_XYXY and _D_AREA), with the arithmetic of
    :func:`trackers.matching.box_iou`."""
    wh = np.minimum(a[2:4, :, None], b[2:4, None, :])
    wh -= np.maximum(a[0:2, :, None], b[0:2, None, :])
    np.maximum(wh, 0.0, out=wh)
    inter = wh[0] * wh[1]
    union = a[_D_AREA][:, None] + b[_D_AREA]
    union -= inter
    # Where the union is empty the intersection is too, so the ratio is 0.
    np.maximum(union, _TINY_AREA, out=union)
    return np.divide(inter, union, inter)


def _select(values: list[_T], keep: list[bool]) -> list[_T]:
    return [v for v, k in zip(values, keep, strict=True) if k]


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
