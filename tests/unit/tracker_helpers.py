"""Helpers shared by the tracker unit tests: detection arrays and output checks."""

from __future__ import annotations

import numpy as np

from trackers import TrackerOutput


def _dets(
    boxes: list[list[float]] | np.ndarray,
    scores: list[float] | None = None,
    classes: list[int] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xyxy = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    n = len(xyxy)
    conf = np.asarray(scores if scores is not None else [0.9] * n, dtype=np.float32)
    cls = np.asarray(classes if classes is not None else [0] * n, dtype=np.int32)
    return xyxy, conf, cls


def _box(cx: float, cy: float, w: float = 40.0, h: float = 100.0) -> list[float]:
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def _empty() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32)


def _check_output(out: TrackerOutput) -> None:
    m = len(out)
    assert out.xyxy.shape == (m, 4) and out.xyxy.dtype == np.float32
    assert out.confidence.shape == (m,) and out.confidence.dtype == np.float32
    assert out.class_id.shape == (m,) and out.class_id.dtype == np.int32
    assert out.track_id.shape == (m,) and out.track_id.dtype == np.int64
    assert out.det_index.shape == (m,) and out.det_index.dtype == np.int32
    assert not out.xyxy.flags.writeable
    assert len(np.unique(out.track_id)) == m
    assert (out.track_id >= 1).all()


# ---------------------------------------------------------------------- basics
