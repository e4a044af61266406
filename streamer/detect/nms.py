"""Class-aware greedy non-maximum suppression (NMS) on numpy arrays.

The algorithm is the classic greedy NMS of Fast R-CNN's ``py_cpu_nms`` with the
semantics of ``torchvision.ops.batched_nms``: candidates are visited in descending
confidence; a candidate is kept unless a previously kept box *of the same class* overlaps
it with IoU strictly greater than the threshold. IoU uses continuous areas
(``(x2 - x1) * (y2 - y1)``, no ``+1``), like torchvision and Ultralytics.

Determinism: equal confidences are visited in ascending input index (stable sort), so
the result depends only on the input values, never on sort implementation details.

Cost: one vector step per *kept* box over the candidates still alive, memory O(N).
Real detector outputs are highly redundant (tens of candidates per object), so this
beats building the pairwise IoU matrix: on bus.jpg with YOLOv8n, 44 candidates at
conf 0.25 take ~0.06 ms and 686 candidates at conf 0.001 ~1.8 ms. The worst case is
many non-overlapping candidates, all kept: ~3-8 ms for 300 (``max_detections`` bounds
the iterations).

All functions are pure and thread-safe.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["box_iou", "nms"]


def box_iou(a: npt.ArrayLike, b: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Pairwise intersection over union of two sets of boxes.

    Args:
        a: ``(N, 4)`` boxes ``x1, y1, x2, y2`` (any real dtype), any pixel frame.
        b: ``(M, 4)`` boxes in the same frame.

    Returns:
        ``(N, M) float64`` IoU in [0, 1]. A pair whose union is empty (two degenerate
        boxes) has IoU 0.

    Raises:
        ValueError: if an input is not ``(K, 4)``.
    """
    a64 = as_boxes("a", a)
    b64 = as_boxes("b", b)
    ax1, ay1, ax2, ay2 = (np.ascontiguousarray(a64[:, k]) for k in range(4))
    bx1, by1, bx2, by2 = (np.ascontiguousarray(b64[:, k]) for k in range(4))
    inter = np.minimum.outer(ax2, bx2)
    inter -= np.maximum.outer(ax1, bx1)
    np.maximum(inter, 0.0, out=inter)
    ih = np.minimum.outer(ay2, by2)
    ih -= np.maximum.outer(ay1, by1)
    np.maximum(ih, 0.0, out=ih)
    inter *= ih
    union = np.add.outer(box_area(a64), box_area(b64))
    union -= inter
    iou = np.zeros_like(inter)
    np.divide(inter, union, out=iou, where=union > 0.0)
    return iou


def as_boxes(name: str, boxes: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """``boxes`` as an ``(N, 4) float64`` array; ValueError naming ``name`` otherwise."""
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{name}: expected shape (N, 4), got {tuple(arr.shape)}")
    return arr


def box_area(boxes: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """``(N,)`` areas of ``(N, 4)`` xyxy boxes, negative sizes counted as 0, pixels²."""
    w = np.maximum(boxes[:, 2] - boxes[:, 0], 0.0)
    h = np.maximum(boxes[:, 3] - boxes[:, 1], 0.0)
    return w * h


def nms(
    xyxy: npt.ArrayLike,
    confidence: npt.ArrayLike,
    class_id: npt.ArrayLike,
    iou_threshold: float,
    max_detections: int | None = None,
) -> npt.NDArray[np.int64]:
    """Class-aware greedy NMS.

    Args:
        xyxy: ``(N, 4)`` boxes ``x1, y1, x2, y2`` in any pixel frame (IoU is invariant
            to translation and uniform scaling, so input or image pixels give the same
            result up to clipping).
        confidence: ``(N,)`` scores; higher is better. Rows with a NaN score are dropped.
        class_id: ``(N,)`` integer classes; boxes of different classes never suppress
            each other.
        iou_threshold: A box is suppressed when its IoU with a kept box of the same class
            is strictly greater than this, in [0, 1].
        max_detections: Keep at most this many boxes (the highest-scoring ones); None
            for no limit.

    Returns:
        ``(K,) int64`` indices into the inputs of the kept boxes, sorted by descending
        confidence, ties by ascending index.

    Raises:
        ValueError: on inconsistent shapes, an ``iou_threshold`` outside [0, 1] or a
            negative ``max_detections``.
    """
    boxes = as_boxes("xyxy", xyxy)
    scores = np.asarray(confidence, dtype=np.float64).reshape(-1)
    classes = np.asarray(class_id).reshape(-1)
    n = boxes.shape[0]
    if scores.shape[0] != n or classes.shape[0] != n:
        raise ValueError(
            f"nms: lengths differ (xyxy {n}, confidence {scores.shape[0]}, "
            f"class_id {classes.shape[0]})"
        )
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
    limit = n if max_detections is None else int(max_detections)
    if limit < 0:
        raise ValueError(f"max_detections must be >= 0, got {max_detections}")
    if n == 0 or limit == 0:
        return np.zeros((0,), np.int64)

    order = np.argsort(-scores, kind="stable")
    order = order[~np.isnan(scores[order])]
    sorted_boxes = boxes[order]
    cls = classes[order]
    x1, y1, x2, y2 = (np.ascontiguousarray(sorted_boxes[:, k]) for k in range(4))
    area = box_area(sorted_boxes)
    keep: list[int] = []
    remaining = np.arange(order.shape[0])
    while remaining.size and len(keep) < limit:
        i = int(remaining[0])
        keep.append(i)
        rest = remaining[1:]
        # Same arithmetic as box_iou, so results agree with it bit for bit.
        inter = np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest])
        np.maximum(inter, 0.0, out=inter)
        ih = np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest])
        np.maximum(ih, 0.0, out=ih)
        inter *= ih
        union = area[i] + area[rest]
        union -= inter
        iou = np.zeros_like(inter)
        np.divide(inter, union, out=iou, where=union > 0.0)
        remaining = rest[(iou <= iou_threshold) | (cls[rest] != cls[i])]
    return order[np.asarray(keep, dtype=np.intp)].astype(np.int64, copy=False)
