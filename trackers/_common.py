"""Helpers shared by the SORT-family trackers: argument validation, detection
checks, SORT's association and bookkeeping. Private to ``trackers``.

SORT's association (Bewley et al., ICIP 2016; abewley/sort
``associate_detections_to_trackers``), which OC-SORT reuses for its own stages, is
:func:`_associate`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from numbers import Integral, Real

import lap
import numpy as np
import numpy.typing as npt

Float64Array = npt.NDArray[np.float64]
FloatArray = npt.NDArray[np.floating]  # float32 or float64 detections
IntpArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]

_EMPTY_INTP = np.zeros(0, np.intp)


# --------------------------------------------------------------------- validation


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


def _check_int(name: str, value: object, low: int) -> int:
    """Return ``value`` as int if it is an integer >= ``low``, else raise ValueError."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < low:
        raise ValueError(f"{name}: must be an integer >= {low}, got {value!r}")
    return int(value)


def _check_bool(name: str, value: object) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name}: must be a bool, got {value!r}")
    return bool(value)


def _frames(seconds: float, fps: float) -> int:
    """``seconds`` at ``fps`` as a whole number of frames (half up), at least 1."""
    return max(1, math.floor(seconds * fps + 0.5))


def _check_frames_elapsed(frames_elapsed: object) -> int:
    if (
        isinstance(frames_elapsed, bool)
        or not isinstance(frames_elapsed, Integral)
        or frames_elapsed < 1
    ):
        raise ValueError(f"frames_elapsed: must be an integer >= 1, got {frames_elapsed!r}")
    return int(frames_elapsed)


def _validate_detections(
    xyxy: npt.ArrayLike, confidence: npt.ArrayLike, class_id: npt.ArrayLike
) -> tuple[FloatArray, Float64Array, FloatArray, npt.NDArray[np.int32], BoolArray]:
    """Check one frame's detections and prepare them for the trackers.

    Returns:
        ``boxes (N, 4)`` float (the input itself when it is a float ndarray: it is
        never written to), the same boxes component-major ``(4, N) float64``
        (rows ``x1, y1, x2, y2``), ``scores (N,)`` float, ``classes (N,) int32`` and
        ``usable (N,) bool``: finite box and score, positive width and height.

    Raises:
        ValueError: if the shapes disagree or ``class_id`` is not integral.
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
        and class_id.dtype.kind in "iu"
    ):  # the usual case, checked cheaply
        boxes: FloatArray = xyxy
        scores: FloatArray = confidence
        classes = class_id.astype(np.int32, copy=False)
    else:
        boxes = np.array(xyxy, dtype=np.float64)  # a copy: inputs are never touched
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"xyxy: expected shape (N, 4), got {np.shape(xyxy)}")
        n = boxes.shape[0]
        scores = np.array(confidence, dtype=np.float64).reshape(-1)
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
        classes = raw_cls.astype(np.int32)
    cm = np.ascontiguousarray(boxes.T, dtype=np.float64)
    wh = cm[2:4] - cm[0:2]
    # A NaN fails a comparison; an infinite coordinate or score makes the product
    # infinite or NaN.
    with np.errstate(invalid="ignore", over="ignore"):
        usable = (wh[0] > 0) & (wh[1] > 0) & np.isfinite(wh[0] * wh[1] * scores)
    return boxes, cm, scores, classes, usable


# -------------------------------------------------------------------- association


def _max_weight_assignment(weight: Float64Array) -> tuple[IntpArray, IntpArray]:
    """Assignment of ``min(R, C)`` pairs maximising the summed ``weight`` (no limit).

    As the references' ``linear_assignment(-weight)`` (``lap.lapjv`` with
    ``extend_cost``). Returns ``(rows, cols)`` ascending by row.
    """
    x = lap.lapjv(np.ascontiguousarray(-weight), extend_cost=True, return_cost=False)[0]
    rows = (x >= 0).nonzero()[0]
    return rows, x[rows].astype(np.intp)


def _associate(
    iou: Float64Array,
    threshold: float,
    weight: Callable[[], Float64Array] | None = None,
) -> tuple[IntpArray, IntpArray]:
    """SORT's association of ``(T, D)`` tracks x detections; returns matched ``(rows, cols)``.

    Pairs need ``iou >= threshold``. If that candidate set is already one-to-one it
    is the answer; otherwise the assignment maximising the summed weight over all
    pairs (``weight()``, computed only then; default the IoU) is solved and its
    pairs below ``threshold`` are dropped (the reference's
    ``associate_detections_to_trackers`` and OC-SORT's ``associate``).
    """
    if iou.size == 0:
        return _EMPTY_INTP, _EMPTY_INTP
    cand = iou >= threshold
    n_cand = np.count_nonzero(cand)
    if n_cand == 0:
        return _EMPTY_INTP, _EMPTY_INTP
    if n_cand == 1 or (cand.sum(axis=0).max() == 1 and cand.sum(axis=1).max() == 1):
        rows, cols = cand.nonzero()  # one-to-one already
        return rows, cols
    rows, cols = _max_weight_assignment(iou if weight is None else weight())
    ok = cand[rows, cols]
    return rows[ok], cols[ok]


def _cap_victims(
    tsu: npt.NDArray[np.int64],
    streak: npt.NDArray[np.int64],
    score: npt.NDArray[np.float32],
    excess: int,
) -> IntpArray:
    """Rows to drop when ``excess`` tracks too many are stored.

    Order: tracks unmatched longest first, then tracks born this frame (lowest score
    first); tracks matched this frame last (never reached: there are at most
    ``max_tracks`` of them).
    """
    born = (streak == 0) & (tsu == 0)
    primary = np.where(tsu > 0, -tsu, np.where(born, 0, 1))
    secondary = np.where(born, score, 0.0)
    return np.lexsort((secondary, primary))[:excess]


def _assign_ids(ids: npt.NDArray[np.int64], rows: IntpArray, next_id: int) -> int:
    """Give ``rows`` the ids ``next_id, next_id + 1, ...`` in place; return the next free id."""
    ids[rows] = np.arange(next_id, next_id + len(rows))
    return next_id + len(rows)


# ------------------------------------------------------------------------ tracker
