"""ByteTrack: multi-object tracking by associating every detection box.

Zhang et al., "ByteTrack: Multi-Object Tracking by Associating Every Detection Box",
ECCV 2022. Reference implementation: ``ifzhang/ByteTrack``
``yolox/tracker/byte_tracker.py``. This is an independent implementation of the same
algorithm with these differences (each deliberate):

* Tracks live in one struct-of-arrays table, so prediction and correction of all
  tracks are a few batched numpy operations (:class:`trackers.kalman.KalmanFilterXYAH`).
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
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np
import numpy.typing as npt

from trackers.kalman import KalmanFilterXYAH, xyah_to_xyxy, xyxy_to_xyah
from trackers.matching import NO_MATCH_COST, box_iou, iou_cost, linear_assignment
from trackers.types import TrackerOutput

_TRACKED = np.int8(0)
_LOST = np.int8(1)

Float64Array = npt.NDArray[np.float64]
IntpArray = npt.NDArray[np.intp]


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
        self._mean: Float64Array = np.zeros((0, 8))
        self._cov: Float64Array = np.zeros((0, 8, 8))
        self._ids = np.zeros(0, np.int64)  # 0 until confirmed
        self._state = np.zeros(0, np.int8)
        self._confirmed = np.zeros(0, bool)
        self._score = np.zeros(0, np.float32)
        self._cls = np.zeros(0, np.int32)
        self._last = np.zeros(0, np.int64)  # frame of the last update
        self._start = np.zeros(0, np.int64)  # frame the track was born
        self._det_idx = np.zeros(0, np.int32)  # input row this frame, -1 if none

    def _keep(self, mask: npt.NDArray[np.bool_]) -> None:
        if mask.all():
            return
        self._mean = self._mean[mask]
        self._cov = self._cov[mask]
        self._ids = self._ids[mask]
        self._state = self._state[mask]
        self._confirmed = self._confirmed[mask]
        self._score = self._score[mask]
        self._cls = self._cls[mask]
        self._last = self._last[mask]
        self._start = self._start[mask]
        self._det_idx = self._det_idx[mask]

    def _assign_ids(self, rows: IntpArray) -> None:
        n = len(rows)
        self._ids[rows] = np.arange(self._next_id, self._next_id + n, dtype=np.int64)
        self._next_id += n
        self._confirmed[rows] = True

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
        return int(np.count_nonzero(self._state == _TRACKED))

    @property
    def num_unconfirmed(self) -> int:
        """Number of stored unconfirmed (tentative, one-frame) tracks."""
        return int(np.count_nonzero(~self._confirmed))

    @property
    def num_lost(self) -> int:
        """Number of stored lost tracks (never above ``max_lost_tracks``)."""
        return int(np.count_nonzero(self._state == _LOST))

    # ----------------------------------------------------------------- update

    def _cost(
        self,
        track_boxes: Float64Array,
        rows: IntpArray,
        det_boxes: Float64Array,
        det_scores: Float64Array,
        det_classes: npt.NDArray[np.int32],
        dets: IntpArray,
        fuse: bool,
    ) -> Float64Array:
        if len(rows) == 0 or len(dets) == 0:
            return np.zeros((len(rows), len(dets)))
        iou = box_iou(track_boxes[rows], det_boxes[dets])
        cost = iou_cost(iou, det_scores[dets], fuse_score=fuse)
        if self.class_aware and cost.size:
            cost[self._cls[rows][:, None] != det_classes[dets][None, :]] = NO_MATCH_COST
        return cost

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
        if (
            isinstance(frames_elapsed, bool)
            or not isinstance(frames_elapsed, Integral)
            or frames_elapsed < 1
        ):
            raise ValueError(f"frames_elapsed: must be an integer >= 1, got {frames_elapsed!r}")
        steps = int(frames_elapsed)
        first_frame = self._frame_id == 0
        self._frame_id += steps
        frame = self._frame_id

        # 1. Drop tracks that a gap has carried past the lost buffer, predict the rest.
        if len(self._ids):
            self._keep(frame - self._last - 1 <= self._max_frames_lost)
        self._det_idx = np.full(len(self._ids), -1, np.int32)
        if len(self._ids):
            lost = self._state == _LOST
            for _ in range(steps):
                self._mean[lost, 7] = 0.0
                self._mean, self._cov = self._kf.predict(self._mean, self._cov)
        track_boxes = xyah_to_xyxy(self._mean)

        # 2. Split detections by score.
        w = boxes[:, 2] - boxes[:, 0]
        h = boxes[:, 3] - boxes[:, 1]
        valid = np.isfinite(boxes).all(axis=1) & np.isfinite(scores) & (w > 0) & (h > 0)
        high = (valid & (scores >= self.high_threshold)).nonzero()[0]
        low = (valid & (scores >= self.low_threshold) & (scores < self.high_threshold)).nonzero()[0]

        confirmed = (self._confirmed).nonzero()[0]
        unconfirmed = (~self._confirmed).nonzero()[0]

        # 3. First association: confirmed (tracked + lost) tracks x high detections.
        cost = self._cost(track_boxes, confirmed, boxes, scores, classes, high, self.fuse_score)
        m1, u_tracks, u_high = linear_assignment(cost, self.match_threshold)
        rows = [confirmed[m1[:, 0]]]
        dets = [high[m1[:, 1]]]

        # 4. Second association: remaining tracked tracks x low detections.
        remaining = confirmed[u_tracks]
        remaining = remaining[self._state[remaining] == _TRACKED]
        cost = self._cost(track_boxes, remaining, boxes, scores, classes, low, False)
        m2, u_remaining, _ = linear_assignment(cost, self.low_match_threshold)
        rows.append(remaining[m2[:, 0]])
        dets.append(low[m2[:, 1]])
        newly_lost = remaining[u_remaining]

        # 5. Unconfirmed tracks x high detections left over.
        high_left = high[u_high]
        cost = self._cost(
            track_boxes, unconfirmed, boxes, scores, classes, high_left, self.fuse_score
        )
        m3, u_unconfirmed, u_high_left = linear_assignment(cost, self.unconfirmed_match_threshold)
        rows.append(unconfirmed[m3[:, 0]])
        dets.append(high_left[m3[:, 1]])
        new_dets = high_left[u_high_left]
        new_dets = new_dets[scores[new_dets] >= self.new_track_threshold]

        # Correct every matched track in one batched Kalman update.
        upd_rows = np.concatenate(rows)
        upd_dets = np.concatenate(dets)
        if len(upd_rows):
            mean, cov = self._kf.update(
                self._mean[upd_rows], self._cov[upd_rows], xyxy_to_xyah(boxes[upd_dets])
            )
            self._mean[upd_rows] = mean
            self._cov[upd_rows] = cov
            self._state[upd_rows] = _TRACKED
            self._last[upd_rows] = frame
            self._score[upd_rows] = scores[upd_dets]
            self._cls[upd_rows] = classes[upd_dets]
            self._det_idx[upd_rows] = upd_dets
            newly_confirmed = upd_rows[~self._confirmed[upd_rows]]
            self._assign_ids(np.sort(newly_confirmed))
        self._state[newly_lost] = _LOST

        # Remove failed tentative tracks and lost tracks past the buffer.
        keep = np.ones(len(self._ids), bool)
        keep[unconfirmed[u_unconfirmed]] = False
        keep &= ~((self._state == _LOST) & (frame - self._last > self._max_frames_lost))
        self._keep(keep)

        # 6. New tracks from the high detections nobody claimed.
        if len(new_dets):
            self._add_tracks(boxes, scores, classes, new_dets, frame, confirm=first_frame)

        # 7. Bound the lost list; remove tracked/lost duplicates.
        self._cap_lost()
        self._remove_duplicates()
        return self._output()

    def _add_tracks(
        self,
        boxes: Float64Array,
        scores: Float64Array,
        classes: npt.NDArray[np.int32],
        dets: IntpArray,
        frame: int,
        *,
        confirm: bool,
    ) -> None:
        n = len(dets)
        mean, cov = self._kf.initiate(xyxy_to_xyah(boxes[dets]))
        start = len(self._ids)
        self._mean = np.concatenate([self._mean, mean])
        self._cov = np.concatenate([self._cov, cov])
        self._ids = np.concatenate([self._ids, np.zeros(n, np.int64)])
        self._state = np.concatenate([self._state, np.full(n, _TRACKED, np.int8)])
        self._confirmed = np.concatenate([self._confirmed, np.zeros(n, bool)])
        self._score = np.concatenate([self._score, scores[dets].astype(np.float32)])
        self._cls = np.concatenate([self._cls, classes[dets]])
        self._last = np.concatenate([self._last, np.full(n, frame, np.int64)])
        self._start = np.concatenate([self._start, np.full(n, frame, np.int64)])
        self._det_idx = np.concatenate([self._det_idx, dets.astype(np.int32)])
        if confirm:
            self._assign_ids(np.arange(start, start + n))

    def _cap_lost(self) -> None:
        lost = (self._state == _LOST).nonzero()[0]
        excess = len(lost) - self.max_lost_tracks
        if excess > 0:
            oldest = lost[np.argsort(self._last[lost], kind="stable")[:excess]]
            keep = np.ones(len(self._ids), bool)
            keep[oldest] = False
            self._keep(keep)

    def _remove_duplicates(self) -> None:
        tracked = (self._state == _TRACKED).nonzero()[0]
        lost = (self._state == _LOST).nonzero()[0]
        if len(tracked) == 0 or len(lost) == 0:
            return
        boxes = xyah_to_xyxy(self._mean)
        dup = box_iou(boxes[tracked], boxes[lost]) > self.duplicate_iou
        if self.class_aware:
            dup &= self._cls[tracked][:, None] == self._cls[lost][None, :]
        p, q = dup.nonzero()
        if len(p) == 0:
            return
        tp, tq = tracked[p], lost[q]
        age_p = self._last[tp] - self._start[tp]
        age_q = self._last[tq] - self._start[tq]
        keep = np.ones(len(self._ids), bool)
        keep[np.where(age_p > age_q, tq, tp)] = False
        self._keep(keep)

    def _output(self) -> TrackerOutput:
        sel = self._confirmed.copy()
        if not self.output_coasting:
            sel &= self._det_idx >= 0
        rows = (sel).nonzero()[0]
        rows = rows[np.argsort(self._ids[rows], kind="stable")]
        return TrackerOutput(
            xyxy=xyah_to_xyxy(self._mean[rows]).astype(np.float32),
            confidence=self._score[rows],
            class_id=self._cls[rows],
            track_id=self._ids[rows],
            det_index=self._det_idx[rows],
        )


def _validate_detections(
    xyxy: npt.ArrayLike, confidence: npt.ArrayLike, class_id: npt.ArrayLike
) -> tuple[Float64Array, Float64Array, npt.NDArray[np.int32]]:
    """Return float64 boxes, float64 scores and int32 classes (new arrays)."""
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
