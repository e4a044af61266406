"""SORT: Simple Online and Realtime Tracking.

Bewley, Ge, Ott, Ramos, Upcroft, "Simple Online and Realtime Tracking", ICIP 2016.
Reference implementation: ``abewley/sort`` ``sort.py``. This is an independent,
vectorised implementation that reproduces the reference's behaviour where it
affects the output:

* the 7-D constant-velocity Kalman filter on ``(cx, cy, s = area, r = aspect)``
  with the reference's noise settings and its area-velocity clamp
  (:class:`trackers.kalman_xysr.KalmanFilterXYSR`);
* association on IoU exactly as the reference's
  ``associate_detections_to_trackers``: if every track and every detection has at
  most one partner with ``IoU >= iou_threshold`` those pairs are matched directly,
  otherwise the assignment maximising the summed IoU over *all* pairs is solved
  (Jonker-Volgenant, ``lap.lapjv``) and pairs below ``iou_threshold`` are dropped;
* ``max_age`` / ``min_hits``: a track is reported in a frame only if it was matched
  in it (or born in it) and has been matched in at least ``min_hits`` consecutive
  frames since it last missed one, or the stream is still in its first ``min_hits``
  frames; it is deleted after more than ``max_age`` consecutive frames without a
  match. The reported box is the Kalman state after this frame's correction.

Differences (deliberate):

* Tracks live in one struct-of-arrays table; all tracks are predicted and
  corrected with a few batched numpy operations, with no per-track Python objects.
* Identities are per instance, start at 1 and are handed out when a track is first
  reported (the reference numbers every track at birth from a class-level counter,
  so its ids have gaps and are shared between instances).
* ``max_age`` is given in seconds (``lost_track_buffer_s``) and converted with the
  stream's frame rate; gaps in the stream (``frames_elapsed > 1``) are predicted
  over and count as missed frames.
* Detections below ``det_threshold`` and degenerate boxes (non-finite, no positive
  width or height) are ignored; optional class-aware association; an explicit
  ``det_index`` links every output row to the input row it was updated with; the
  number of stored tracks is capped (``max_tracks``).

Algorithm per frame (``update``), as in the reference:

1. Predict every track ``frames_elapsed`` frames; a track that has missed a frame
   loses its hit streak. Tracks whose prediction is not finite are deleted.
2. Associate tracks and detections on IoU (above; areas ``w * h`` as the
   reference's ``iou_batch``).
3. Correct matched tracks with their detection; start a track from every
   unmatched detection.
4. Delete tracks unmatched for more than ``max_age`` frames, enforce the cap, and
   report.

This module also holds the parameter and input validation shared with
:mod:`trackers.ocsort`.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from trackers._common import (
    _EMPTY_INTP,
    BoolArray,
    Float64Array,
    FloatArray,
    IntpArray,
    _assign_ids,
    _associate,
    _cap_victims,
    _check_bool,
    _check_frames_elapsed,
    _check_int,
    _check_range,
    _frames,
    _validate_detections,
)
from trackers.kalman_xysr import KalmanFilterXYSR, xysr_to_xyxy_cm, xyxy_to_xysr_cm
from trackers.matching import box_iou_rows
from trackers.types import TrackerOutput


class Sort:
    """SORT multi-object tracker for one video stream.

    Defaults are the reference's (``max_age=1`` frame at 30 fps, ``min_hits=3``,
    IoU 0.3). SORT has no memory beyond ``max_age``: with the default one missed
    frame ends a track. :class:`trackers.ocsort.OcSort` keeps SORT's filter and
    adds recovery after occlusion.

    Args:
        iou_threshold: A track and a detection are matched only if their IoU is
            ``>= iou_threshold`` (the track's predicted box against the detection).
            In (0, 1]. Default 0.3.
        lost_track_buffer_s: The reference's ``max_age``: how long a track may go
            without a match and still be continued, seconds, >= 0 and finite.
            Converted to ``max_age = max(1, floor(lost_track_buffer_s * frame_rate +
            0.5))`` frames (a track may miss up to ``max_age`` consecutive frames;
            it is deleted at the next miss). The reference's ``max_age=1`` at 25 fps
            is ``0.04``, at 30 fps ``1/30``. Default ``1/30``.
        min_hits: Consecutive matched frames a track needs before it is reported
            (during the first ``min_hits`` frames of the stream every matched track
            is reported, as in the reference). Integer >= 0. Default 3.
        det_threshold: Detections with ``confidence < det_threshold`` are ignored.
            In [0, 1]. Default 0.0 (use every detection, as the reference).
        class_aware: Only associate tracks with detections of the same class.
            Default False (a track takes the class of its latest detection).
        output_coasting: Also report tracks that were reported before and are not
            matched this frame (their predicted box, ``det_index`` -1) while they are
            within ``max_age``. Default False (the reference reports matched tracks
            only).
        max_tracks: Most tracks stored, integer >= 1. When more would be kept, the
            tracks unmatched longest go first, then the newest tracks started this
            frame (lowest confidence first). Default 10000.
        frame_rate: Frame rate of the stream, frames per second, > 0. Default 30.

    Raises:
        ValueError: if a parameter is out of its range; the message names the
            parameter and the valid range.

    Thread-safety: an instance is not thread-safe and holds the state of one
    stream; use one instance per source and call it from one thread at a time.

    Example:
        >>> tracker = Sort(lost_track_buffer_s=0.04, frame_rate=25.0)
        >>> out = tracker.update(xyxy, confidence, class_id)  # doctest: +SKIP
        >>> out.track_id, out.det_index  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        iou_threshold: float = 0.3,
        lost_track_buffer_s: float = 1.0 / 30.0,
        min_hits: int = 3,
        det_threshold: float = 0.0,
        class_aware: bool = False,
        output_coasting: bool = False,
        max_tracks: int = 10_000,
        frame_rate: float = 30.0,
    ) -> None:
        self.iou_threshold: float = _check_range(
            "iou_threshold", iou_threshold, 0.0, 1.0, low_open=True
        )
        self.lost_track_buffer_s: float = _check_range(
            "lost_track_buffer_s", lost_track_buffer_s, 0.0, math.inf, high_open=True
        )
        self.min_hits: int = _check_int("min_hits", min_hits, 0)
        self.det_threshold: float = _check_range("det_threshold", det_threshold, 0.0, 1.0)
        self.class_aware: bool = _check_bool("class_aware", class_aware)
        self.output_coasting: bool = _check_bool("output_coasting", output_coasting)
        self.max_tracks: int = _check_int("max_tracks", max_tracks, 1)
        self._kf = KalmanFilterXYSR()
        self._frame_rate: float = 30.0
        self._max_age: int = 1
        self.set_frame_rate(frame_rate)
        self._next_id: int = 1
        self._clear()

    # ------------------------------------------------------------------ state

    def _clear(self) -> None:
        self._frame_id = 0
        self._state: Float64Array = np.zeros((5, 4, 0))  # KalmanFilterXYSR states
        self._ids = np.zeros(0, np.int64)  # 0 until first reported
        self._tsu = np.zeros(0, np.int64)  # frames since the last match ("time since update")
        self._streak = np.zeros(0, np.int64)  # consecutive matched frames ("hit streak")
        self._score = np.zeros(0, np.float32)
        self._cls = np.zeros(0, np.int32)
        self._det_idx = np.zeros(0, np.int32)  # input row this frame, -1 if none

    def _keep(self, mask: BoolArray) -> None:
        self._state = self._state[:, :, mask]
        self._ids = self._ids[mask]
        self._tsu = self._tsu[mask]
        self._streak = self._streak[mask]
        self._score = self._score[mask]
        self._cls = self._cls[mask]
        self._det_idx = self._det_idx[mask]

    def reset(self) -> None:
        """Forget every track (e.g. after a source reset); keep the parameters.

        Identities continue from where they were: they are never reused within an
        instance.
        """
        self._clear()

    def set_frame_rate(self, fps: float) -> None:
        """Set the stream's frame rate, which converts ``lost_track_buffer_s`` to frames.

        Args:
            fps: Frames per second, > 0.

        Raises:
            ValueError: if ``fps`` is not a finite number > 0.
        """
        self._frame_rate = _check_range(
            "frame_rate", fps, 0.0, math.inf, low_open=True, high_open=True
        )
        self._max_age = _frames(self.lost_track_buffer_s, self._frame_rate)

    def params(self) -> dict[str, float | int | bool]:
        """The constructor arguments this instance runs with (frame rate as now set)."""
        return {
            "iou_threshold": self.iou_threshold,
            "lost_track_buffer_s": self.lost_track_buffer_s,
            "min_hits": self.min_hits,
            "det_threshold": self.det_threshold,
            "class_aware": self.class_aware,
            "output_coasting": self.output_coasting,
            "max_tracks": self.max_tracks,
            "frame_rate": self._frame_rate,
        }

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"Sort({args})"

    @property
    def frame_rate(self) -> float:
        """Frame rate of the stream, frames per second."""
        return self._frame_rate

    @property
    def max_age(self) -> int:
        """Consecutive frames a track may miss and still be continued (the reference's)."""
        return self._max_age

    @property
    def frame_id(self) -> int:
        """Frames seen since construction or :meth:`reset`, gaps included."""
        return self._frame_id

    @property
    def num_tracks(self) -> int:
        """Number of stored tracks (reported or not), never above ``max_tracks``."""
        return len(self._ids)

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
            confidence: ``(N,)`` float scores in [0, 1]; rows below
                ``det_threshold`` are ignored.
            class_id: ``(N,)`` integer classes.
            frames_elapsed: Frames since the previous call, >= 1: 1 for consecutive
                frames; ``k > 1`` when ``k - 1`` frames are missing (a stream gap).
                Tracks are predicted ``k`` steps and the missing frames count as
                missed frames (toward ``max_age``, and they end hit streaks).

        Returns:
            The reported tracks of this frame (see ``min_hits`` and
            ``output_coasting``), sorted by ``track_id``; boxes are the Kalman state.
            The input arrays are never modified.

        Raises:
            ValueError: if the shapes disagree, ``class_id`` is not integral, or
                ``frames_elapsed`` is not an integer >= 1.
        """
        _, det_cm, scores, classes, usable = _validate_detections(xyxy, confidence, class_id)
        steps = _check_frames_elapsed(frames_elapsed)
        self._frame_id += steps

        # 1. Predict (dropping tracks that a gap carried past max_age).
        track_boxes = self._predict(steps)

        # 2. Associate.
        if self.det_threshold > 0.0:
            usable &= scores >= self.det_threshold
        dets = usable.nonzero()[0]
        rows, cols = _EMPTY_INTP, _EMPTY_INTP
        if track_boxes.shape[1] and len(dets):
            iou = box_iou_rows(track_boxes, det_cm[:, dets])
            if self.class_aware:
                iou[self._cls[:, None] != classes[dets][None, :]] = 0.0
            rows, cols = _associate(iou, self.iou_threshold)

        # 3. Correct matched tracks, start new ones.
        self._det_idx = np.full(len(self._ids), -1, np.int32)
        if len(rows):
            matched = dets[cols]
            sub = self._state[:, :, rows]
            self._kf.update(sub, xyxy_to_xysr_cm(det_cm[:, matched]))
            self._state[:, :, rows] = sub
            self._tsu[rows] = 0
            self._streak[rows] += 1
            self._score[rows] = scores[matched]
            self._cls[rows] = classes[matched]
            self._det_idx[rows] = matched
        if len(cols) < len(dets):
            unmatched = np.ones(len(dets), bool)
            unmatched[cols] = False
            self._add_tracks(det_cm, scores, classes, dets[unmatched])

        # 4. Delete tracks past max_age, bound the table, report.
        if len(self._tsu) and self._tsu.max() > self._max_age:
            self._keep(self._tsu <= self._max_age)
        if len(self._ids) > self.max_tracks:
            self._enforce_cap()
        return self._output()

    def _predict(self, steps: int) -> Float64Array:
        """Predict all tracks ``steps`` frames; return their ``(4, T)`` predicted boxes."""
        if len(self._ids) == 0:
            return np.zeros((4, 0))
        if steps > 1:
            # A track that would have been deleted in a missing frame is gone.
            alive = self._tsu + steps <= self._max_age + 1
            if not alive.all():
                self._keep(alive)
                if len(self._ids) == 0:
                    return np.zeros((4, 0))
            self._streak[:] = 0
        else:
            self._streak[self._tsu > 0] = 0
        for _ in range(steps):
            self._kf.predict(self._state)
        self._tsu += steps
        track_boxes = xysr_to_xyxy_cm(self._state[0])
        finite = np.isfinite(track_boxes.sum(axis=0))  # NaN and inf propagate
        if not finite.all():  # the reference deletes tracks whose prediction is NaN
            self._keep(finite)
            track_boxes = track_boxes[:, finite]
        return track_boxes

    def _add_tracks(
        self,
        det_cm: Float64Array,
        scores: FloatArray,
        classes: npt.NDArray[np.int32],
        dets: IntpArray,
    ) -> None:
        n = len(dets)
        state = self._kf.initiate(xyxy_to_xysr_cm(det_cm[:, dets]))
        self._state = np.concatenate([self._state, state], axis=2)
        self._ids = np.concatenate([self._ids, np.zeros(n, np.int64)])
        self._tsu = np.concatenate([self._tsu, np.zeros(n, np.int64)])
        self._streak = np.concatenate([self._streak, np.zeros(n, np.int64)])
        self._score = np.concatenate([self._score, scores[dets].astype(np.float32)])
        self._cls = np.concatenate([self._cls, classes[dets]])
        self._det_idx = np.concatenate([self._det_idx, dets.astype(np.int32)])

    def _enforce_cap(self) -> None:
        drop = _cap_victims(self._tsu, self._streak, self._score, len(self._ids) - self.max_tracks)
        keep = np.ones(len(self._ids), bool)
        keep[drop] = False
        self._keep(keep)

    def _output(self) -> TrackerOutput:
        sel = self._tsu == 0
        if self._frame_id > self.min_hits:
            sel &= self._streak >= self.min_hits
        new = sel & (self._ids == 0)
        if new.any():
            self._next_id = _assign_ids(self._ids, new.nonzero()[0], self._next_id)
        if self.output_coasting:
            sel |= (self._ids > 0) & (self._tsu > 0)
        rows = sel.nonzero()[0]
        rows = rows[np.argsort(self._ids[rows], kind="stable")]
        return TrackerOutput(
            xyxy=xysr_to_xyxy_cm(self._state[0][:, rows]).T.astype(np.float32),
            confidence=self._score[rows],
            class_id=self._cls[rows],
            track_id=self._ids[rows],
            det_index=self._det_idx[rows],
        )
