"""Mapping tile detections back to the frame, and merging duplicates across tiles.

Objects near a tile border are seen by several overlapping tiles (and by the
full-frame pass), often cut in pieces. SAHI (Akyon, Altinuc, Temizel, ICIP 2022;
reference implementation ``sahi/postprocess/combine.py``) removes the duplicates
with greedy NMS or merges them with greedy non-maximum merging (NMM), measuring
overlap with IoU or with intersection over the smaller box (IoS), which also
matches a small cut piece against the whole object.

Coordinates: boxes are ``xyxy`` float32 in frame pixels (tile boxes in tile
pixels before :func:`offset_xyxy`); areas are continuous, ``(x2 - x1) * (y2 - y1)``.

Determinism: boxes are visited in descending confidence, equal confidences in
ascending input index (stable sort); for sliced inference the input order is tile
order, then the full-frame pass. The result depends only on the input values.

Cost: the pairwise metric matrix is built once in numpy, ``O(N^2)`` time and
float64 memory (1,000 boxes: 8 MB), then one vector step per kept box. Within a
class-aware merge the matrix is built per class.

All functions are pure and thread-safe.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt

from streamer.detect.nms import as_boxes, box_area, box_iou
from streamer.types import Detections

__all__ = [
    "box_ios",
    "concat_detections",
    "greedy_nmm",
    "greedy_nms",
    "merge_detections",
    "offset_detections",
    "offset_xyxy",
]

MergeMethod = Literal["nms", "nmm", "none"]
MatchMetric = Literal["iou", "ios"]


def offset_xyxy(xyxy: npt.ArrayLike, offset_xy: tuple[float, float]) -> npt.NDArray[np.float32]:
    """Translate boxes from tile pixels to frame pixels.

    Args:
        xyxy: ``(N, 4)`` boxes ``x1, y1, x2, y2`` in tile pixels.
        offset_xy: ``(x1, y1)`` of the tile in frame pixels.

    Returns:
        New ``(N, 4) float32`` boxes in frame pixels: the sum is computed in float64
        and rounded once to float32 (exact for integer offsets and boxes in
        float32's integer range).

    Raises:
        ValueError: if ``xyxy`` is not ``(N, 4)``.
    """
    boxes = np.asarray(xyxy, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"xyxy: expected shape (N, 4), got {tuple(boxes.shape)}")
    dx, dy = float(offset_xy[0]), float(offset_xy[1])
    return (boxes + np.array([dx, dy, dx, dy])).astype(np.float32)


def offset_detections(dets: Detections, offset_xy: tuple[float, float]) -> Detections:
    """Return ``dets`` with boxes translated by ``offset_xy`` (tile → frame pixels)."""
    return Detections(offset_xyxy(dets.xyxy, offset_xy), dets.confidence, dets.class_id)


def concat_detections(parts: Sequence[Detections]) -> Detections:
    """Concatenate detections, keeping the given order (tile order for sliced inference)."""
    if len(parts) == 0:
        return Detections.empty()
    return Detections(
        np.concatenate([p.xyxy for p in parts]).reshape(-1, 4),
        np.concatenate([p.confidence for p in parts]),
        np.concatenate([p.class_id for p in parts]),
    )


def box_ios(a: npt.ArrayLike, b: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Pairwise intersection over the smaller box's area (IoS, SAHI's ``IOS``).

    Args:
        a: ``(N, 4)`` boxes ``x1, y1, x2, y2``, any pixel frame.
        b: ``(M, 4)`` boxes in the same frame.

    Returns:
        ``(N, M) float64`` in [0, 1]; 0 where the smaller box has no area.

    Raises:
        ValueError: if an input is not ``(K, 4)``.
    """
    a64, b64 = as_boxes("a", a), as_boxes("b", b)
    iw = np.minimum.outer(a64[:, 2], b64[:, 2]) - np.maximum.outer(a64[:, 0], b64[:, 0])
    ih = np.minimum.outer(a64[:, 3], b64[:, 3]) - np.maximum.outer(a64[:, 1], b64[:, 1])
    inter = np.maximum(iw, 0.0) * np.maximum(ih, 0.0)
    smaller = np.minimum.outer(box_area(a64), box_area(b64))
    out = np.zeros_like(inter)
    np.divide(inter, smaller, out=out, where=smaller > 0.0)
    return out


def _metric_matrix(boxes: npt.NDArray[np.float64], metric: str) -> npt.NDArray[np.float64]:
    return box_iou(boxes, boxes) if metric == "iou" else box_ios(boxes, boxes)


def _check(metric: str, threshold: float) -> None:
    if metric not in ("iou", "ios"):
        raise ValueError(f"metric must be 'iou' or 'ios', got {metric!r}")
    if not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")


def _groups(class_id: np.ndarray, class_aware: bool) -> list[npt.NDArray[np.intp]]:
    """Row indices per class (ascending), or all rows in one group."""
    n = class_id.shape[0]
    if not class_aware:
        return [np.arange(n)]
    return [np.flatnonzero(class_id == c) for c in np.unique(class_id)]


def _greedy(
    xyxy: npt.NDArray[np.float64], confidence: np.ndarray, metric: str, threshold: float
) -> tuple[list[int], list[npt.NDArray[np.intp]]]:
    """Greedy pass over one group: kept rows and, for each, the rows it absorbs.

    A row is absorbed by the first (highest-confidence) kept row whose metric with it
    is strictly greater than ``threshold``; the metric is measured against the kept
    row's own box. Indices are into the group's arrays.
    """
    order = np.argsort(-confidence, kind="stable")
    m = _metric_matrix(xyxy[order], metric)
    n = order.shape[0]
    taken = np.zeros(n, dtype=bool)
    keep: list[int] = []
    members: list[npt.NDArray[np.intp]] = []
    for i in range(n):
        if taken[i]:
            continue
        match = ~taken & (m[i] > threshold)
        match[i] = True
        taken |= match
        keep.append(int(order[i]))
        members.append(order[np.flatnonzero(match)])
    return keep, members


def greedy_nms(
    xyxy: npt.ArrayLike,
    confidence: npt.ArrayLike,
    class_id: npt.ArrayLike,
    metric: MatchMetric = "iou",
    threshold: float = 0.5,
    class_aware: bool = True,
) -> npt.NDArray[np.int64]:
    """Greedy NMS with IoU or IoS; returns the indices of the kept boxes.

    With ``metric="iou"`` and ``class_aware=True`` this equals
    :func:`streamer.detect.nms.nms`.

    Args:
        xyxy: ``(N, 4)`` boxes in one pixel frame.
        confidence: ``(N,)`` scores (NaN not allowed).
        class_id: ``(N,)`` integer classes.
        metric: ``"iou"`` or ``"ios"`` (intersection over the smaller box).
        threshold: A box is suppressed when its metric with a kept box (of the same
            class when ``class_aware``) is strictly greater than this, in [0, 1].
        class_aware: Only boxes of the same class suppress each other.

    Returns:
        ``(K,) int64`` kept indices, by descending confidence, ties by ascending index.

    Raises:
        ValueError: on inconsistent shapes or out-of-range arguments.
    """
    keep, _ = _run(xyxy, confidence, class_id, metric, threshold, class_aware)
    return keep


def greedy_nmm(
    xyxy: npt.ArrayLike,
    confidence: npt.ArrayLike,
    class_id: npt.ArrayLike,
    metric: MatchMetric = "ios",
    threshold: float = 0.5,
    class_aware: bool = True,
) -> tuple[npt.NDArray[np.int64], list[npt.NDArray[np.int64]]]:
    """Greedy non-maximum merging (SAHI ``greedy_nmm``): which boxes merge into which.

    In descending confidence, each box not yet absorbed is kept and absorbs every
    not-yet-absorbed box whose metric with it is strictly greater than
    ``threshold``. Unlike SAHI's post-processor, matches are measured against the
    kept box as predicted, not against the growing merged box, so a group is
    decided in one vector step.

    Args:
        xyxy, confidence, class_id, metric, threshold, class_aware: As for
            :func:`greedy_nms` (``metric`` defaults to ``"ios"``, as in SAHI).

    Returns:
        ``(keep, members)``: ``(K,) int64`` indices of the kept boxes (by descending
        confidence, ties by index), and for each a ``int64`` array of the indices it
        merges, itself first, then by descending confidence.

    Raises:
        ValueError: on inconsistent shapes or out-of-range arguments.
    """
    return _run(xyxy, confidence, class_id, metric, threshold, class_aware)


def _run(
    xyxy: npt.ArrayLike,
    confidence: npt.ArrayLike,
    class_id: npt.ArrayLike,
    metric: str,
    threshold: float,
    class_aware: bool,
) -> tuple[npt.NDArray[np.int64], list[npt.NDArray[np.int64]]]:
    _check(metric, threshold)
    boxes = as_boxes("xyxy", xyxy)
    scores = np.asarray(confidence, dtype=np.float64).reshape(-1)
    classes = np.asarray(class_id).reshape(-1)
    n = boxes.shape[0]
    if scores.shape[0] != n or classes.shape[0] != n:
        raise ValueError(
            f"lengths differ (xyxy {n}, confidence {scores.shape[0]}, class_id {classes.shape[0]})"
        )
    keep: list[int] = []
    members: list[npt.NDArray[np.int64]] = []
    for rows in _groups(classes, class_aware):
        k, mem = _greedy(boxes[rows], scores[rows], metric, float(threshold))
        keep.extend(int(rows[i]) for i in k)
        members.extend(rows[m].astype(np.int64) for m in mem)
    if not keep:
        return np.zeros((0,), np.int64), []
    keep_arr = np.asarray(keep, dtype=np.int64)
    # Global order: descending confidence, ties by ascending index.
    final = np.lexsort((keep_arr, -scores[keep_arr]))
    return keep_arr[final], [members[i] for i in final]


def merge_detections(
    dets: Detections,
    method: MergeMethod = "nms",
    metric: MatchMetric = "iou",
    threshold: float = 0.5,
    class_aware: bool = True,
) -> Detections:
    """Remove or merge duplicate detections (e.g. from overlapping tiles).

    Args:
        dets: Detections in one pixel frame (frame pixels for sliced inference),
            ordered as produced (tile order); the order breaks confidence ties.
        method: ``"nms"`` keeps the best box of each group; ``"nmm"`` replaces it by
            the union (enclosing) box of the group with the group's maximum
            confidence (SAHI greedy NMM); ``"none"`` returns ``dets`` unchanged.
        metric: ``"iou"`` or ``"ios"`` (intersection over the smaller box).
        threshold: Boxes match when their metric is strictly greater than this, in
            [0, 1].
        class_aware: Only boxes of the same class match; the kept box's class is kept.

    Returns:
        New :class:`Detections` sorted by descending confidence (ties by input order).

    Raises:
        ValueError: on an unknown method or metric, or a threshold outside [0, 1].
    """
    if method not in ("nms", "nmm", "none"):
        raise ValueError(f"method must be 'nms', 'nmm' or 'none', got {method!r}")
    _check(metric, threshold)
    if method == "none" or len(dets) == 0:
        return dets
    keep, members = _run(dets.xyxy, dets.confidence, dets.class_id, metric, threshold, class_aware)
    if method == "nms":
        return dets.select(keep)
    # Union box and maximum confidence of each group, in one vector step: the groups
    # (never empty: a kept box is its own first member) laid end to end, reduced
    # per group with ``reduceat``.
    sizes = np.fromiter((len(m) for m in members), np.int64, len(members))
    starts = np.zeros(len(members), np.int64)
    np.cumsum(sizes[:-1], out=starts[1:])
    rows = np.concatenate(members)
    boxes = dets.xyxy[rows]
    xyxy = np.empty((len(keep), 4), np.float32)
    xyxy[:, :2] = np.minimum.reduceat(boxes[:, :2], starts, axis=0)
    xyxy[:, 2:] = np.maximum.reduceat(boxes[:, 2:], starts, axis=0)
    conf = np.maximum.reduceat(dets.confidence[rows], starts).astype(np.float32)
    return Detections(xyxy, conf, dets.class_id[keep])
