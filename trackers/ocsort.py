"""OC-SORT: Observation-Centric SORT.

Cao, Pang, Weng, Khirodkar, Kitani, "Observation-Centric SORT: Rethinking SORT for
Robust Multi-Object Tracking", CVPR 2023. Reference implementation:
``noahcao/OC_SORT`` ``trackers/ocsort_tracker/ocsort.py`` (with ``association.py``
and ``kalmanfilter.py``). This is an independent, vectorised implementation of the
same algorithm on SORT's Kalman filter (:class:`trackers.kalman_xysr.KalmanFilterXYSR`).
On top of SORT it adds:

* **ORU**, observation-centric re-update: when a track that missed frames is
  matched again, its filter is rewound to the state frozen at its first missed
  frame and re-run (update, predict, update, ...) over a virtual trajectory that
  moves centre, width and height linearly from the last observation to the new
  one, so the error accumulated while coasting is undone. As in the reference, the
  new observation is then applied once more by the ordinary update.
* **OCM**, observation-centric momentum: a track's direction of motion is taken
  from two of its *observations* about ``delta_t`` frames apart (the oldest
  observation in the last ``delta_t`` frames, else its latest), and the first
  association adds ``inertia * score * (pi/2 - angle) / pi`` to the IoU, where
  ``angle`` is between that direction and the direction from the same old
  observation to the candidate detection.
* **OCR**, observation-centric recovery: tracks and high-score detections left
  unmatched are associated once more, on the IoU of the detection with the track's
  *last observation* instead of its prediction.
* optionally (``use_byte``) a BYTE-style second association of unmatched tracks
  with low-score detections (ByteTrack, Zhang et al., ECCV 2022), before OCR.

Behaviour kept from the reference where it affects the output: association as in
:mod:`trackers.sort` (a one-to-one candidate set is taken directly, otherwise the
maximum-weight assignment over all pairs is solved and pairs with IoU below the
threshold dropped); the detection that starts a track is not an observation for
OCM/OCR/ORU (the reference keeps it only in the filter), so momentum needs two
further matches; ``max_age``/``min_hits`` and the frame count exactly as SORT's;
reported boxes are the track's last observation, i.e. the box of the detection it
was matched with this frame (``det_index``).

Differences (deliberate): struct-of-arrays state with batched predict/update and
no per-track Python objects; observations kept only for the last ``delta_t``
frames (a ring buffer) instead of a dictionary of every observation; per-instance
identities handed out when a track is first reported; times in seconds converted
with the frame rate; detections are used from ``det_threshold`` *inclusive* (the
reference: strictly above) and low ones from ``low_threshold`` inclusive; whether a
track has an observation is a flag (the reference tests the sign of the sum of the
last box's coordinates, which misreads boxes reaching far into negative
coordinates); stream
gaps (``frames_elapsed > 1``) are predicted over and count as missed frames;
``det_index``, ``class_aware``, ``output_coasting`` and the ``max_tracks`` cap as
in :class:`trackers.sort.Sort`.
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
    _max_weight_assignment,
    _validate_detections,
)
from trackers.kalman_xysr import KalmanFilterXYSR, xysr_to_xyxy_cm, xyxy_to_xysr_cm
from trackers.matching import box_iou_rows
from trackers.types import TrackerOutput

_DIRECTION_EPS = 1e-6  # added to the norm of a displacement, as in the reference
_NO_FRAME = -(2**62)  # frame of an empty observation slot (matches no real frame)


def _centres(xyxy: Float64Array) -> Float64Array:
    """``(2, N)`` centres of component-major ``(4, N)`` boxes."""
    return 0.5 * (xyxy[0:2] + xyxy[2:4])


class OcSort:
    """OC-SORT multi-object tracker for one video stream.

    Defaults are the reference's (``det_thresh=0.6``, ``max_age=30`` frames and
    ``delta_t=3`` frames at 30 fps, ``min_hits=3``, IoU 0.3, ``inertia=0.2``, no
    BYTE). For a detector whose scores sit high (e.g. the Faster R-CNN detections
    of the SORT paper, scores 0.5-1.0), ``det_threshold`` must lie in that range:
    ``configs/trackers/ocsort_mot15_frcnn.yaml`` is the preset for MOT15.

    Args:
        det_threshold: Detections with ``confidence >= det_threshold`` take part in
            association and may start tracks; lower ones are ignored (or, with
            ``use_byte``, used only to continue tracks). In [0, 1]. Default 0.6.
        lost_track_buffer_s: The reference's ``max_age``: how long a track may go
            without a match and still be continued or recovered, seconds, >= 0 and
            finite. Converted to ``max_age = max(1, floor(lost_track_buffer_s *
            frame_rate + 0.5))`` frames. Default 1.0 (30 frames at 30 fps).
        min_hits: Consecutive matched frames a track needs before it is reported
            (during the first ``min_hits`` frames of the stream every matched track
            is reported, as in the reference). Integer >= 0. Default 3.
        iou_threshold: Smallest IoU of a match in every association stage. In
            (0, 1]. Default 0.3.
        momentum_window_s: The reference's ``delta_t``: time between the two
            observations whose displacement gives a track's direction (OCM),
            seconds, >= 0 and finite. Converted like the lost buffer, at least 1
            frame. Default 0.1 (3 frames at 30 fps).
        inertia: Weight of the direction-consistency term added to the IoU in the
            first association (OCM's ``lambda``; the term is at most ``inertia *
            score / 2`` in magnitude). In [0, 1]; 0 disables OCM. Default 0.2.
        use_byte: Associate tracks still unmatched after the first stage with
            detections of ``low_threshold <= confidence < det_threshold`` (on
            predicted boxes, IoU ``>= iou_threshold``). Default False.
        low_threshold: Lowest confidence used by ``use_byte``. In [0,
            det_threshold]. Default 0.1.
        class_aware: Only associate tracks with detections of the same class.
            Default False (a track takes the class of its latest detection).
        output_coasting: Also report tracks that were reported before and are not
            matched this frame (their predicted box, ``det_index`` -1) while they are
            within ``max_age``. Default False (as the reference).
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
        >>> tracker = OcSort(det_threshold=0.6, frame_rate=25.0)
        >>> out = tracker.update(xyxy, confidence, class_id)  # doctest: +SKIP
        >>> out.track_id, out.det_index  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        det_threshold: float = 0.6,
        lost_track_buffer_s: float = 1.0,
        min_hits: int = 3,
        iou_threshold: float = 0.3,
        momentum_window_s: float = 0.1,
        inertia: float = 0.2,
        use_byte: bool = False,
        low_threshold: float = 0.1,
        class_aware: bool = False,
        output_coasting: bool = False,
        max_tracks: int = 10_000,
        frame_rate: float = 30.0,
    ) -> None:
        self.det_threshold: float = _check_range("det_threshold", det_threshold, 0.0, 1.0)
        self.lost_track_buffer_s: float = _check_range(
            "lost_track_buffer_s", lost_track_buffer_s, 0.0, math.inf, high_open=True
        )
        self.min_hits: int = _check_int("min_hits", min_hits, 0)
        self.iou_threshold: float = _check_range(
            "iou_threshold", iou_threshold, 0.0, 1.0, low_open=True
        )
        self.momentum_window_s: float = _check_range(
            "momentum_window_s", momentum_window_s, 0.0, math.inf, high_open=True
        )
        self.inertia: float = _check_range("inertia", inertia, 0.0, 1.0)
        self.use_byte: bool = _check_bool("use_byte", use_byte)
        self.low_threshold: float = _check_range(
            "low_threshold", low_threshold, 0.0, self.det_threshold
        )
        self.class_aware: bool = _check_bool("class_aware", class_aware)
        self.output_coasting: bool = _check_bool("output_coasting", output_coasting)
        self.max_tracks: int = _check_int("max_tracks", max_tracks, 1)
        self._kf = KalmanFilterXYSR()
        self._frame_rate: float = 30.0
        self._max_age: int = 1
        self._delta_t: int = 1
        self._next_id: int = 1
        self._clear()
        self.set_frame_rate(frame_rate)

    # ------------------------------------------------------------------ state

    def _clear(self) -> None:
        d = self._delta_t
        self._frame_id = 0
        # Per-track arrays; the track is the last axis of every one of them.
        self._state: Float64Array = np.zeros((5, 4, 0))  # KalmanFilterXYSR states
        self._frozen: Float64Array = np.zeros((5, 4, 0))  # state at the first missed frame
        self._ids = np.zeros(0, np.int64)  # 0 until first reported
        self._tsu = np.zeros(0, np.int64)  # frames since the last match
        self._streak = np.zeros(0, np.int64)  # consecutive matched frames
        self._score = np.zeros(0, np.float32)
        self._cls = np.zeros(0, np.int32)
        self._det_idx = np.zeros(0, np.int32)  # input row this frame, -1 if none
        self._has_obs = np.zeros(0, bool)  # matched at least once after birth
        self._last_obs: Float64Array = np.zeros((4, 0))  # x1, y1, x2, y2 of the last observation
        self._vel: Float64Array = np.zeros((2, 0))  # unit direction (x, y) from OCM
        # Observations of the last delta_t frames: slot f % delta_t holds frame f's.
        self._ring: Float64Array = np.zeros((d, 4, 0))
        self._ring_frame = np.zeros((d, 0), np.int64)  # frame of each slot, or _NO_FRAME

    _FIELDS = (
        "_state",
        "_frozen",
        "_ids",
        "_tsu",
        "_streak",
        "_score",
        "_cls",
        "_det_idx",
        "_has_obs",
        "_last_obs",
        "_vel",
        "_ring",
        "_ring_frame",
    )

    def _keep(self, mask: BoolArray) -> None:
        for name in self._FIELDS:
            setattr(self, name, getattr(self, name)[..., mask])

    def reset(self) -> None:
        """Forget every track (e.g. after a source reset); keep the parameters.

        Identities continue from where they were: they are never reused within an
        instance.
        """
        self._clear()

    def set_frame_rate(self, fps: float) -> None:
        """Set the stream's frame rate, which converts the times in seconds to frames.

        Stored observations are kept (re-slotted if ``delta_t`` changes).

        Args:
            fps: Frames per second, > 0.

        Raises:
            ValueError: if ``fps`` is not a finite number > 0.
        """
        self._frame_rate = _check_range(
            "frame_rate", fps, 0.0, math.inf, low_open=True, high_open=True
        )
        self._max_age = _frames(self.lost_track_buffer_s, self._frame_rate)
        delta_t = _frames(self.momentum_window_s, self._frame_rate)
        if delta_t != self._ring.shape[0]:
            n = len(self._ids)
            ring = np.zeros((delta_t, 4, n))
            ring_frame = np.full((delta_t, n), _NO_FRAME, np.int64)
            for j in range(self._ring.shape[0]):
                f = self._ring_frame[j]
                cols = (f > self._frame_id - delta_t).nonzero()[0]
                ring[f[cols] % delta_t, :, cols] = self._ring[j, :, cols]
                ring_frame[f[cols] % delta_t, cols] = f[cols]
            self._ring, self._ring_frame = ring, ring_frame
        self._delta_t = delta_t

    def params(self) -> dict[str, float | int | bool]:
        """The constructor arguments this instance runs with (frame rate as now set)."""
        return {
            "det_threshold": self.det_threshold,
            "lost_track_buffer_s": self.lost_track_buffer_s,
            "min_hits": self.min_hits,
            "iou_threshold": self.iou_threshold,
            "momentum_window_s": self.momentum_window_s,
            "inertia": self.inertia,
            "use_byte": self.use_byte,
            "low_threshold": self.low_threshold,
            "class_aware": self.class_aware,
            "output_coasting": self.output_coasting,
            "max_tracks": self.max_tracks,
            "frame_rate": self._frame_rate,
        }

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"OcSort({args})"

    @property
    def frame_rate(self) -> float:
        """Frame rate of the stream, frames per second."""
        return self._frame_rate

    @property
    def max_age(self) -> int:
        """Consecutive frames a track may miss and still be continued (the reference's)."""
        return self._max_age

    @property
    def delta_t(self) -> int:
        """Frames between the observations that give a track's direction (OCM)."""
        return self._delta_t

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
            confidence: ``(N,)`` float scores in [0, 1] (see ``det_threshold``,
                ``use_byte``, ``low_threshold``).
            class_id: ``(N,)`` integer classes.
            frames_elapsed: Frames since the previous call, >= 1: 1 for consecutive
                frames; ``k > 1`` when ``k - 1`` frames are missing (a stream gap).
                Tracks are predicted ``k`` steps and the missing frames count as
                missed frames (toward ``max_age``; ORU spans them).

        Returns:
            The reported tracks of this frame (see ``min_hits`` and
            ``output_coasting``), sorted by ``track_id``: the box of the detection a
            track was matched with (its last observation, as the reference), or the
            Kalman prediction for a coasting row. The input arrays are never
            modified.

        Raises:
            ValueError: if the shapes disagree, ``class_id`` is not integral, or
                ``frames_elapsed`` is not an integer >= 1.
        """
        boxes, det_cm, scores, classes, usable = _validate_detections(xyxy, confidence, class_id)
        steps = _check_frames_elapsed(frames_elapsed)
        self._frame_id += steps

        track_boxes = self._predict(steps)  # (4, T)
        n_tracks = track_boxes.shape[1]
        high_mask = usable & (scores >= self.det_threshold)
        high = high_mask.nonzero()[0]
        low = _EMPTY_INTP
        if self.use_byte:
            low = (usable & ~high_mask & (scores >= self.low_threshold)).nonzero()[0]
        self._det_idx = np.full(n_tracks, -1, np.int32)

        rows_parts: list[IntpArray] = []
        dets_parts: list[IntpArray] = []
        det_free = np.ones(len(high), bool)
        prev_obs = np.zeros((4, 0))
        if n_tracks and (len(high) or len(low)):
            prev_obs = self._previous_observations()
            track_free = np.ones(n_tracks, bool)

            # 1. Predicted boxes x high detections: IoU + OCM direction consistency.
            if len(high):
                high_cm = det_cm[:, high]
                iou = self._iou(track_boxes, None, high_cm, classes[high])
                r, c = _associate(
                    iou,
                    self.iou_threshold,
                    lambda: iou + self._momentum_cost(prev_obs, high_cm, scores[high]),
                )
                rows_parts.append(r)
                dets_parts.append(high[c])
                track_free[r] = False
                det_free[c] = False

            # 2. BYTE: still unmatched tracks (predicted boxes) x low detections.
            if len(low) and track_free.any():
                free = track_free.nonzero()[0]
                iou = self._iou(track_boxes[:, free], free, det_cm[:, low], classes[low])
                r, c = self._recover(iou)
                rows_parts.append(free[r])
                dets_parts.append(low[c])
                track_free[free[r]] = False

            # 3. OCR: unmatched tracks' last observations x unmatched high detections.
            if det_free.any() and track_free.any():
                free = (track_free & self._has_obs).nonzero()[0]
                left = high[det_free]
                iou = self._iou(self._last_obs[:, free], free, det_cm[:, left], classes[left])
                r, c = self._recover(iou)
                rows_parts.append(free[r])
                dets_parts.append(left[c])
                det_free[det_free.nonzero()[0][c]] = False

        if rows_parts:
            rows = np.concatenate(rows_parts)
            if len(rows):
                dets = np.concatenate(dets_parts)
                self._correct(rows, dets, det_cm, scores, classes, prev_obs)
        if det_free.any():
            self._add_tracks(det_cm, scores, classes, high[det_free])

        if len(self._tsu) and self._tsu.max() > self._max_age:
            self._keep(self._tsu <= self._max_age)
        if len(self._ids) > self.max_tracks:
            drop = _cap_victims(
                self._tsu, self._streak, self._score, len(self._ids) - self.max_tracks
            )
            keep = np.ones(len(self._ids), bool)
            keep[drop] = False
            self._keep(keep)
        return self._output(boxes)

    # ------------------------------------------------------------ the stages

    def _predict(self, steps: int) -> Float64Array:
        """Predict all tracks ``steps`` frames; return their ``(4, T)`` predicted boxes.

        Tracks matched last frame have their state after the first step frozen for
        ORU (the reference freezes it when the track misses that frame; it is used
        only if the track does).
        """
        if len(self._ids) == 0:
            return np.zeros((4, 0))
        if steps > 1:
            alive = self._tsu + steps <= self._max_age + 1
            if not alive.all():
                self._keep(alive)
                if len(self._ids) == 0:
                    return np.zeros((4, 0))
            self._streak[:] = 0
        else:
            self._streak[self._tsu > 0] = 0
        fresh = self._tsu == 0
        self._kf.predict(self._state)
        np.copyto(self._frozen, self._state, where=fresh)
        for _ in range(steps - 1):
            self._kf.predict(self._state)
        self._tsu += steps
        track_boxes = xysr_to_xyxy_cm(self._state[0])
        finite = np.isfinite(track_boxes.sum(axis=0))  # NaN and inf propagate
        if not finite.all():  # the reference deletes tracks whose prediction is NaN
            self._keep(finite)
            track_boxes = track_boxes[:, finite]
        return track_boxes

    def _iou(
        self,
        track_boxes: Float64Array,
        rows: IntpArray | None,
        det_boxes: Float64Array,
        det_classes: npt.NDArray[np.int32],
    ) -> Float64Array:
        """``(T, D)`` IoU of ``(4, T)`` track boxes (table ``rows``, None = all) and dets."""
        iou = box_iou_rows(track_boxes, det_boxes)
        if self.class_aware:
            cls = self._cls if rows is None else self._cls[rows]
            iou[cls[:, None] != det_classes[None, :]] = 0.0
        return iou

    def _recover(self, iou: Float64Array) -> tuple[IntpArray, IntpArray]:
        """Second-stage matching (BYTE, OCR): maximum-IoU assignment, IoU >= threshold."""
        if iou.size == 0 or iou.max() < self.iou_threshold:
            return _EMPTY_INTP, _EMPTY_INTP
        r, c = _max_weight_assignment(iou)
        ok = iou[r, c] >= self.iou_threshold
        return r[ok], c[ok]

    def _previous_observations(self) -> Float64Array:
        """``(4, T)`` per track: the oldest observation of the last ``delta_t`` frames.

        As the reference's ``k_previous_obs``: the observation ``delta_t`` frames
        ago, else ``delta_t - 1`` frames ago, ..., else the latest observation
        (whatever its age). Columns of tracks without observations are meaningless
        (their direction is zero).
        """
        d = self._delta_t
        need = self._frame_id - np.arange(d, 0, -1)
        slots = need % d
        present = self._ring_frame[slots] == need[:, None]  # (d, T), oldest first
        prev = self._last_obs.copy()
        found = present.any(axis=0)
        if found.any():
            cols = found.nonzero()[0]
            prev[:, cols] = self._ring[slots[present[:, cols].argmax(axis=0)], :, cols].T
        return prev

    def _momentum_cost(
        self, prev_obs: Float64Array, det_boxes: Float64Array, det_scores: FloatArray
    ) -> Float64Array:
        """``(T, D)`` OCM term: ``inertia * score * (pi/2 - angle) / pi``."""
        cost = np.zeros((prev_obs.shape[1], det_boxes.shape[1]))
        moving = ((self._vel[0] != 0.0) | (self._vel[1] != 0.0)).nonzero()[0]
        if self.inertia == 0.0 or len(moving) == 0:
            return cost
        prev = _centres(prev_obs[:, moving])
        det = _centres(det_boxes)
        dx = det[0][None, :] - prev[0][:, None]
        dy = det[1][None, :] - prev[1][:, None]
        cos = self._vel[0, moving][:, None] * dx
        cos += self._vel[1, moving][:, None] * dy
        cos /= np.sqrt(dx * dx + dy * dy) + _DIRECTION_EPS
        np.clip(cos, -1.0, 1.0, out=cos)
        # (pi/2 - arccos(cos)) / pi == arcsin(cos) / pi
        cost[moving] = np.arcsin(cos) * ((self.inertia / np.pi) * det_scores[None, :])
        return cost

    def _correct(
        self,
        rows: IntpArray,
        dets: IntpArray,
        det_cm: Float64Array,
        scores: FloatArray,
        classes: npt.NDArray[np.int32],
        prev_obs: Float64Array,
    ) -> None:
        """Update matched tracks ``rows`` with detections ``dets`` (ORU, KF, OCM, history)."""
        z_boxes = det_cm[:, dets]  # (4, M)
        has_obs = self._has_obs[rows]
        oru = has_obs & (self._tsu[rows] >= 2)
        if oru.any():
            self._re_update(rows[oru], z_boxes[:, oru])
        sub = self._state[:, :, rows]
        self._kf.update(sub, xyxy_to_xysr_cm(z_boxes))
        self._state[:, :, rows] = sub

        # OCM direction from the previous observation to this one.
        if has_obs.any():
            r = rows[has_obs]
            delta = _centres(z_boxes[:, has_obs]) - _centres(prev_obs[:, r])
            delta /= np.hypot(delta[0], delta[1]) + _DIRECTION_EPS
            self._vel[:, r] = delta

        slot = self._frame_id % self._delta_t
        self._ring[slot][:, rows] = z_boxes
        self._ring_frame[slot, rows] = self._frame_id
        self._last_obs[:, rows] = z_boxes
        self._has_obs[rows] = True
        self._tsu[rows] = 0
        self._streak[rows] += 1
        self._score[rows] = scores[dets]
        self._cls[rows] = classes[dets]
        self._det_idx[rows] = dets

    def _re_update(self, rows: IntpArray, z_boxes: Float64Array) -> None:
        """ORU: re-run the filter of ``rows`` from their frozen state along a virtual path.

        The path moves centre, width and height linearly from the last observation
        (``gap = tsu`` frames ago) to ``z_boxes`` (this frame); the filter is updated
        with its box at each of the ``gap`` frames, predicting in between. Tracks are
        sorted by decreasing gap so that the ones still running at step ``i`` are a
        prefix: every step is two batched calls on a view.
        """
        order = np.argsort(-self._tsu[rows], kind="stable")
        rows, z_boxes = rows[order], z_boxes[:, order]
        gap = self._tsu[rows]
        start = self._last_obs[:, rows]
        p0 = np.concatenate([_centres(start), start[2:4] - start[0:2]])  # cx, cy, w, h
        p1 = np.concatenate([_centres(z_boxes), z_boxes[2:4] - z_boxes[0:2]])
        n_steps = int(gap[0])
        # Virtual (cx, cy, w, h) of every track at 1 .. n_steps frames after its last
        # observation (steps past a track's gap are unused), then as (cx, cy, s, r).
        frac = np.arange(1, n_steps + 1, dtype=np.float64)[:, None] / gap[None, :]
        path = p0 + frac[:, None, :] * (p1 - p0)  # (n_steps, 4, n)
        z = np.empty_like(path)
        z[:, 0:2] = path[:, 0:2]
        np.multiply(path[:, 2], path[:, 3], out=z[:, 2])
        np.divide(path[:, 2], path[:, 3], out=z[:, 3])
        running = np.searchsorted(-gap, -np.arange(n_steps), side="left")  # gap > i
        state = self._frozen[:, :, rows]
        for i in range(n_steps):
            k = int(running[i])
            if i:
                self._kf.predict(state[:, :, :k])
            self._kf.update(state[:, :, :k], z[i, :, :k])
        self._state[:, :, rows] = state

    def _add_tracks(
        self,
        det_cm: Float64Array,
        scores: FloatArray,
        classes: npt.NDArray[np.int32],
        dets: IntpArray,
    ) -> None:
        n = len(dets)
        d = self._delta_t
        state = self._kf.initiate(xyxy_to_xysr_cm(det_cm[:, dets]))
        self._state = np.concatenate([self._state, state], axis=2)
        self._frozen = np.concatenate([self._frozen, state], axis=2)
        self._ids = np.concatenate([self._ids, np.zeros(n, np.int64)])
        self._tsu = np.concatenate([self._tsu, np.zeros(n, np.int64)])
        self._streak = np.concatenate([self._streak, np.zeros(n, np.int64)])
        self._score = np.concatenate([self._score, scores[dets].astype(np.float32)])
        self._cls = np.concatenate([self._cls, classes[dets]])
        self._det_idx = np.concatenate([self._det_idx, dets.astype(np.int32)])
        self._has_obs = np.concatenate([self._has_obs, np.zeros(n, bool)])
        self._last_obs = np.concatenate([self._last_obs, det_cm[:, dets]], axis=1)
        self._vel = np.concatenate([self._vel, np.zeros((2, n))], axis=1)
        self._ring = np.concatenate([self._ring, np.zeros((d, 4, n))], axis=2)
        self._ring_frame = np.concatenate(
            [self._ring_frame, np.full((d, n), _NO_FRAME, np.int64)], axis=1
        )

    def _output(self, boxes: FloatArray) -> TrackerOutput:
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
        det_index = self._det_idx[rows]
        if (det_index >= 0).all():
            out_boxes = boxes[det_index]  # the observations, as the input gave them
        else:
            out_boxes = np.empty((len(rows), 4), np.float32)
            has = det_index >= 0
            out_boxes[has] = boxes[det_index[has]]
            out_boxes[~has] = xysr_to_xyxy_cm(self._state[0][:, rows[~has]]).T
        return TrackerOutput(
            xyxy=out_boxes,
            confidence=self._score[rows],
            class_id=self._cls[rows],
            track_id=self._ids[rows],
            det_index=det_index,
        )
