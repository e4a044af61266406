"""Decoders of raw YOLO-family output tensors into :class:`~streamer.types.Detections`.

Three output layouts are known. Each comes with the preprocessing convention its
models were trained with, kept beside the decoder in one :class:`LayoutSpec` so that
preprocessing and decoding can never disagree.

=============  ===============================  ===============  =========  ===========
layout         output                           letterbox        channels   values
=============  ===============================  ===============  =========  ===========
ultralytics    ``[B, 4+C, N]`` cx,cy,w,h +      centred, 114     RGB        /255
               sigmoid class scores, no obj
yolox          ``[B, N, 5+C]`` raw tx,ty,tw,th  top-left, 114    BGR        raw 0–255
               + sigmoid obj + sigmoid classes
end2end        ``[B, K, 6]`` x1,y1,x2,y2,       centred, 114     RGB        /255
               score, class_id (NMS in graph)
=============  ===============================  ===============  =========  ===========

``N`` is the number of anchor points of a stride-8/16/32 feature pyramid,
``(H/8)(W/8) + (H/16)(W/16) + (H/32)(W/32)`` (8400 at 640x640, 3549 at 416x416,
2100 at 320x320). References: Ultralytics ``ops.non_max_suppression`` /
``LetterBox`` (v8.x), Megvii YOLOX ``yolox/utils/boxes.py::postprocess`` and
``demo_postprocess``, Ultralytics ``end2end`` export (YOLOv10/YOLO26).

Every decoder has the signature of :data:`DecodeFn` and returns one
:class:`Detections` per batch item with boxes in *original-image* pixels (the
letterbox undone and clipped). The score threshold is strict (``score > conf``), as in
Ultralytics. All functions are pure and thread-safe (the YOLOX grid cache holds
read-only arrays).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from streamer.detect.nms import nms
from streamer.errors import BackendError
from streamer.preprocess.letterbox import Letterbox, unletterbox_xyxy
from streamer.types import Detections

__all__ = [
    "LAYOUTS",
    "DecodeFn",
    "LayoutSpec",
    "anchor_count",
    "decode_end2end",
    "decode_ultralytics",
    "decode_yolox",
    "detect_layout",
    "get_layout",
    "layout_num_classes",
]

STRIDES: tuple[int, ...] = (8, 16, 32)

DecodeFn = Callable[
    [Sequence[np.ndarray], Sequence[Letterbox], float, float, set[int] | None, int],
    list[Detections],
]
"""``decode(outputs, letterboxes, conf_threshold, iou_threshold, class_filter,
max_detections) -> list[Detections]``."""


# --------------------------------------------------------------------------- helpers


def _first_output(outputs: Sequence[np.ndarray], letterboxes: Sequence[Letterbox]) -> np.ndarray:
    if len(outputs) == 0:
        raise BackendError("decoder: the model returned no outputs")
    out = np.asarray(outputs[0])
    if out.ndim != 3:
        raise BackendError(f"decoder: expected a 3-D output, got shape {tuple(out.shape)}")
    if out.shape[0] != len(letterboxes):
        raise BackendError(
            f"decoder: output batch {out.shape[0]} does not match {len(letterboxes)} letterboxes"
        )
    return out


def _class_mask(class_id: np.ndarray, class_filter: set[int] | None) -> np.ndarray | None:
    if class_filter is None:
        return None
    allowed = np.fromiter(class_filter, dtype=np.int64, count=len(class_filter))
    return np.isin(class_id, allowed)


def _finish(
    xyxy_input: np.ndarray,
    score: np.ndarray,
    class_id: np.ndarray,
    lb: Letterbox,
    iou_threshold: float | None,
    max_detections: int,
) -> Detections:
    """NMS (when ``iou_threshold`` is not None) in input pixels, cap, unletterbox."""
    if iou_threshold is None:
        keep = np.argsort(-score.astype(np.float64), kind="stable")[:max_detections]
    else:
        keep = nms(xyxy_input, score, class_id, iou_threshold, max_detections)
    if keep.size == 0:
        return Detections.empty()
    return Detections(
        unletterbox_xyxy(xyxy_input[keep], lb, clip=True),
        score[keep].astype(np.float32),
        class_id[keep].astype(np.int32),
    )


def _cxcywh_to_xyxy(cx: np.ndarray, cy: np.ndarray, w: np.ndarray, h: np.ndarray) -> np.ndarray:
    hw, hh = w * 0.5, h * 0.5
    return np.stack([cx - hw, cy - hh, cx + hw, cy + hh], axis=1).astype(np.float32, copy=False)


# --------------------------------------------------------------------------- decoders


def decode_ultralytics(
    outputs: Sequence[np.ndarray],
    letterboxes: Sequence[Letterbox],
    conf_threshold: float,
    iou_threshold: float,
    class_filter: set[int] | None,
    max_detections: int,
) -> list[Detections]:
    """Decode Ultralytics YOLOv8/YOLO11 detect output ``[B, 4+C, N]``.

    Rows 0–3 are ``cx, cy, w, h`` in letterboxed input pixels, rows ``4..4+C`` the
    per-class scores, already sigmoid-ed (no objectness). Score = max over classes,
    class = argmax (one label per box, as Ultralytics ``multi_label=False``); the
    class filter is applied after the argmax. Then class-aware NMS.

    Args:
        outputs: Model outputs; ``outputs[0]`` is ``(B, 4+C, N) float32``.
        letterboxes: One :class:`Letterbox` per batch item.
        conf_threshold: Keep boxes with score strictly greater than this.
        iou_threshold: NMS IoU threshold in [0, 1].
        class_filter: Class ids to keep, or None for all.
        max_detections: At most this many boxes per image.

    Returns:
        One :class:`Detections` per batch item, boxes ``xyxy`` float32 in
        original-image pixels, sorted by descending confidence.

    Raises:
        BackendError: if the output is not ``[B, 4+C, N]`` with ``C >= 1`` or its
            batch size differs from ``len(letterboxes)``.
    """
    out = _first_output(outputs, letterboxes)
    if out.shape[1] < 5:
        raise BackendError(
            f"ultralytics decoder: expected output [B, 4+C, N], got {tuple(out.shape)}"
        )
    results: list[Detections] = []
    for b, lb in enumerate(letterboxes):
        pred = out[b]
        scores = pred[4:]
        best = scores.max(axis=0)
        idx = np.flatnonzero(best > conf_threshold)
        if idx.size == 0:
            results.append(Detections.empty())
            continue
        cls = scores[:, idx].argmax(axis=0)
        score = best[idx]
        mask = _class_mask(cls, class_filter)
        if mask is not None:
            idx, cls, score = idx[mask], cls[mask], score[mask]
        box = pred[:4, idx]
        xyxy = _cxcywh_to_xyxy(box[0], box[1], box[2], box[3])
        results.append(_finish(xyxy, score, cls, lb, iou_threshold, max_detections))
    return results


@lru_cache(maxsize=16)
def _yolox_grid(input_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Anchor-point grid of YOLOX: ``(gx, gy, stride)`` each ``(N,) float32``, read-only."""
    gx_parts, gy_parts, s_parts = [], [], []
    h, w = input_hw
    for s in STRIDES:
        hs, ws = h // s, w // s
        gx_parts.append(np.tile(np.arange(ws, dtype=np.float32), hs))
        gy_parts.append(np.repeat(np.arange(hs, dtype=np.float32), ws))
        s_parts.append(np.full(hs * ws, s, dtype=np.float32))
    arrays = (np.concatenate(gx_parts), np.concatenate(gy_parts), np.concatenate(s_parts))
    for a in arrays:
        a.flags.writeable = False
    return arrays


def decode_yolox(
    outputs: Sequence[np.ndarray],
    letterboxes: Sequence[Letterbox],
    conf_threshold: float,
    iou_threshold: float,
    class_filter: set[int] | None,
    max_detections: int,
) -> list[Detections]:
    """Decode Megvii YOLOX output ``[B, N, 5+C]`` (exported without ``decode_in_inference``).

    Columns are ``tx, ty, tw, th, obj, cls_0..cls_{C-1}``; obj and class scores are
    already sigmoid-ed. The anchor points run over strides 8, 16, 32, each grid
    row-major with x fastest, and ``cx = (tx + gx) * s``, ``cy = (ty + gy) * s``,
    ``w = exp(tw) * s``, ``h = exp(th) * s`` in input pixels. Score = ``obj * max(cls)``
    (= max over ``obj * cls`` since ``obj >= 0``), class = argmax; then class-aware NMS.
    Since class scores are at most 1, only anchor points with ``obj > conf_threshold``
    are examined, and only candidates above the threshold are grid-decoded.

    Args:
        outputs: Model outputs; ``outputs[0]`` is ``(B, N, 5+C) float32``.
        letterboxes: One :class:`Letterbox` per batch item (all with the same
            ``input_wh``, the model input).
        conf_threshold: Keep boxes with score strictly greater than this.
        iou_threshold: NMS IoU threshold in [0, 1].
        class_filter: Class ids to keep, or None for all.
        max_detections: At most this many boxes per image.

    Returns:
        One :class:`Detections` per batch item, boxes in original-image pixels,
        sorted by descending confidence.

    Raises:
        BackendError: if the output is not ``[B, N, 5+C]`` with ``N`` the anchor count
            of the letterbox input size.
    """
    out = _first_output(outputs, letterboxes)
    results: list[Detections] = []
    for b, lb in enumerate(letterboxes):
        input_hw = (lb.input_wh[1], lb.input_wh[0])
        gx, gy, stride = _yolox_grid(input_hw)
        if out.shape[1] != gx.shape[0] or out.shape[2] < 6:
            raise BackendError(
                f"yolox decoder: expected output [B, {gx.shape[0]}, 5+C] for input "
                f"{input_hw[0]}x{input_hw[1]} (HxW), got {tuple(out.shape)}"
            )
        pred = out[b]
        # Class scores are sigmoid outputs (<= 1), so obj * cls > conf needs obj > conf:
        # prefiltering on obj skips the class max over almost all anchor points.
        idx = np.flatnonzero(pred[:, 4] > conf_threshold)
        cls_scores = pred[idx, 5:]
        score = pred[idx, 4] * cls_scores.max(axis=1, initial=0.0)
        above = score > conf_threshold
        idx, score, cls_scores = idx[above], score[above], cls_scores[above]
        if idx.size == 0:
            results.append(Detections.empty())
            continue
        cls = cls_scores.argmax(axis=1)
        mask = _class_mask(cls, class_filter)
        if mask is not None:
            idx, cls, score = idx[mask], cls[mask], score[mask]
        raw = pred[idx, :4]
        s = stride[idx]
        cx = (raw[:, 0] + gx[idx]) * s
        cy = (raw[:, 1] + gy[idx]) * s
        with np.errstate(over="ignore"):
            w = np.exp(raw[:, 2]) * s
            h = np.exp(raw[:, 3]) * s
        xyxy = _cxcywh_to_xyxy(cx, cy, w, h)
        results.append(_finish(xyxy, score, cls, lb, iou_threshold, max_detections))
    return results


def decode_end2end(
    outputs: Sequence[np.ndarray],
    letterboxes: Sequence[Letterbox],
    conf_threshold: float,
    iou_threshold: float,
    class_filter: set[int] | None,
    max_detections: int,
) -> list[Detections]:
    """Decode NMS-free end-to-end output ``[B, K, 6]`` (Ultralytics ``end2end=True``).

    Rows are ``x1, y1, x2, y2, score, class_id`` in letterboxed input pixels. Only the
    score threshold and class filter are applied; **no NMS** (``iou_threshold`` is
    ignored). Rows are re-sorted by descending score (stable) and capped.

    Args:
        outputs: Model outputs; ``outputs[0]`` is ``(B, K, 6) float32``.
        letterboxes: One :class:`Letterbox` per batch item.
        conf_threshold: Keep rows with score strictly greater than this.
        iou_threshold: Ignored (accepted for a uniform signature).
        class_filter: Class ids to keep, or None for all.
        max_detections: At most this many boxes per image.

    Returns:
        One :class:`Detections` per batch item, boxes in original-image pixels.

    Raises:
        BackendError: if the output is not ``[B, K, 6]``.
    """
    del iou_threshold
    out = _first_output(outputs, letterboxes)
    if out.shape[2] != 6:
        raise BackendError(f"end2end decoder: expected output [B, K, 6], got {tuple(out.shape)}")
    results: list[Detections] = []
    for b, lb in enumerate(letterboxes):
        pred = out[b]
        rows = pred[pred[:, 4] > conf_threshold]
        cls = np.rint(rows[:, 5]).astype(np.int64)
        mask = _class_mask(cls, class_filter)
        if mask is not None:
            rows, cls = rows[mask], cls[mask]
        xyxy = np.ascontiguousarray(rows[:, :4], dtype=np.float32)
        score = rows[:, 4]
        results.append(_finish(xyxy, score, cls, lb, None, max_detections))
    return results


# --------------------------------------------------------------------------- layouts


@dataclass(frozen=True)
class LayoutSpec:
    """One output layout and the preprocessing convention its models expect.

    Attributes:
        name: Layout name (``"ultralytics"``, ``"yolox"``, ``"end2end"``).
        center: Letterbox placement: True centred, False top-left.
        swap_rb: True to feed RGB (swap the BGR frame's channels), False to feed BGR.
        input_scale: Factor applied to 0–255 pixel values (``1/255`` or ``1.0``).
        pad_value: Grey level of the letterbox padding (0–255, before scaling).
        nms: Whether the decoder runs NMS (False for end-to-end models).
        decode: The decoder function (signature :data:`DecodeFn`).
        output_pattern: Human-readable output shape, for error messages.
    """

    name: str
    center: bool
    swap_rb: bool
    input_scale: float
    pad_value: int
    nms: bool
    decode: DecodeFn
    output_pattern: str


LAYOUTS: Mapping[str, LayoutSpec] = {
    "ultralytics": LayoutSpec(
        "ultralytics", True, True, 1.0 / 255.0, 114, True, decode_ultralytics, "[B, 4+C, N]"
    ),
    "yolox": LayoutSpec("yolox", False, False, 1.0, 114, True, decode_yolox, "[B, N, 5+C]"),
    "end2end": LayoutSpec(
        "end2end", True, True, 1.0 / 255.0, 114, False, decode_end2end, "[B, K, 6]"
    ),
}
"""Known layouts by name."""


def get_layout(name: str) -> LayoutSpec:
    """Return the :class:`LayoutSpec` called ``name``.

    Raises:
        ValueError: if the name is unknown (the message lists the known names).
    """
    try:
        return LAYOUTS[name]
    except KeyError:
        raise ValueError(
            f"unknown detector layout {name!r}; known: {', '.join(sorted(LAYOUTS))}"
        ) from None


def anchor_count(input_hw: tuple[int, int], strides: Sequence[int] = STRIDES) -> set[int]:
    """Anchor-point count(s) ``N`` of a stride pyramid for an input of ``(H, W)`` pixels.

    Returns a set because exporters disagree on odd sizes: YOLOX floors ``H / s``,
    strided convolutions give ``ceil``; for multiples of 32 both agree.
    """
    h, w = input_hw
    floor_n = sum((h // s) * (w // s) for s in strides)
    ceil_n = sum(math.ceil(h / s) * math.ceil(w / s) for s in strides)
    return {floor_n, ceil_n}


def _dim(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def detect_layout(
    metadata: Mapping[str, str],
    output_shape: Sequence[int | str | None],
    input_hw: tuple[int, int],
) -> str:
    """Pick the output layout of a detector from its metadata and first output's shape.

    Rules, in order:

    1. Ultralytics metadata ``task`` other than ``detect`` → error (not a detector).
    2. Metadata ``end2end=True`` and last dim 6 (or unknown) → ``"end2end"``.
    3. Shape ``[B, 4+C, N]`` with ``N`` the stride-8/16/32 anchor count → ``"ultralytics"``.
    4. Shape ``[B, N, 5+C]`` with ``N`` the anchor count → ``"yolox"``.
    5. Shape ``[B, K, 6]`` (any other ``K``) → ``"end2end"``.
    6. Ultralytics metadata (``end2end=False``) and symbolic dims → ``"ultralytics"``.

    Args:
        metadata: ONNX ``custom_metadata_map`` (empty for models without one).
        output_shape: Shape of the first output; dynamic dims may be str or None.
        input_hw: ``(H, W)`` of the model input, pixels.

    Returns:
        A key of :data:`LAYOUTS`.

    Raises:
        BackendError: if nothing matches; the message names the output shape, the
            input size and the known layouts.
    """
    shape = tuple(output_shape)
    dims = [_dim(d) for d in shape]
    n_set = anchor_count(input_hw)
    task = metadata.get("task")
    ultra = metadata.get("author", "").lower() == "ultralytics" or "names" in metadata
    end2end_meta = metadata.get("end2end", "").strip().lower() == "true"

    def fail(reason: str) -> BackendError:
        known = "; ".join(f"{s.name} {s.output_pattern}" for s in LAYOUTS.values())
        return BackendError(
            f"cannot decode detector output shape {list(shape)} for input "
            f"{input_hw[0]}x{input_hw[1]} (HxW): {reason}; known layouts: {known} "
            f"with N = {' or '.join(str(n) for n in sorted(n_set))} anchor points"
        )

    if task is not None and task != "detect":
        raise fail(f"model task is {task!r}, only 'detect' is supported")
    if len(shape) != 3:
        raise fail(f"expected a 3-D output, got {len(shape)}-D")
    _, d1, d2 = dims
    if end2end_meta:
        if d2 in (6, None):
            return "end2end"
        raise fail("metadata says end2end=True but the last dim is not 6")
    if d2 in n_set and d1 is not None and d1 >= 5:
        return "ultralytics"
    if d1 in n_set and d2 is not None and d2 >= 6:
        return "yolox"
    if d2 == 6:
        return "end2end"
    if ultra and (d1 is None or d2 is None):
        return "ultralytics"
    raise fail("no layout matches")


def layout_num_classes(layout: str, output_shape: Sequence[int | str | None]) -> int | None:
    """Number of classes implied by an output shape, or None when it cannot be told.

    ``ultralytics``: ``shape[1] - 4``; ``yolox``: ``shape[2] - 5``; ``end2end``: None.
    """
    shape = tuple(output_shape)
    if len(shape) != 3:
        return None
    if layout == "ultralytics":
        d = _dim(shape[1])
        return d - 4 if d is not None else None
    if layout == "yolox":
        d = _dim(shape[2])
        return d - 5 if d is not None else None
    return None
