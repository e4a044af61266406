"""Adapter for ``norfair`` (Tryolabs) tracking boxes with its IoU distance.

Runs inside its own virtual environment (norfair pins ``numpy < 2``); see
``_common.py`` for the request/result files.

Tracker: ``norfair.Tracker(distance_function="iou", distance_threshold=0.7)``, all
other arguments at their defaults (``hit_counter_max=15``, ``initialization_delay =
hit_counter_max // 2 = 7``, ``detection_threshold=0``, the optimised Kalman
filter). ``distance_threshold`` has no default; 0.7 (match when ``1 - IoU <= 0.7``,
i.e. IoU >= 0.3, SORT's threshold) is the value of norfair's own YOLO box-tracking
demos. norfair counts frames, not seconds: it has no frame-rate parameter.

Input per frame: one ``norfair.Detection(points=[[x1, y1], [x2, y2]],
scores=[s, s])`` per box (the layout norfair's box demos use), built before timing
(fresh objects for every pass: the tracker writes into them). Output rows: the
objects ``Tracker.update`` returns (initialised and alive), with ``obj.id`` and the
Kalman estimate ``obj.estimate`` as the box, as norfair's own MOTChallenge writer
(``norfair.metrics.PredictionsTextFile``) does.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common
from norfair import Detection, Tracker

DISTANCE_THRESHOLD = 0.7


def _make(frame_rate: float) -> Tracker:
    del frame_rate  # norfair has no notion of frame rate
    return Tracker(distance_function="iou", distance_threshold=DISTANCE_THRESHOLD)


def _params() -> dict[str, Any]:
    t = _make(30.0)
    return {
        "distance_function": "iou",
        "distance_threshold": DISTANCE_THRESHOLD,
        "hit_counter_max": t.hit_counter_max,
        "initialization_delay": t.initialization_delay,
        "pointwise_hit_counter_max": t.pointwise_hit_counter_max,
        "detection_threshold": t.detection_threshold,
        "past_detections_length": t.past_detections_length,
        "filter_factory": type(t.filter_factory).__name__,
    }


def _convert(frames: list[_common.Frame]) -> list[list[Detection]]:
    out = []
    for xyxy, conf in frames:
        out.append(
            [
                Detection(points=box.reshape(2, 2).copy(), scores=np.array([s, s]))
                for box, s in zip(xyxy, conf, strict=True)
            ]
        )
    return out


def _update(tracker: Tracker, detections: list[Detection]) -> list[Any]:
    return tracker.update(detections=detections)


def _to_rows(objects: list[Any], frame: int) -> list[_common.Row]:
    rows = []
    for obj in objects:
        (x1, y1), (x2, y2) = np.asarray(obj.estimate, dtype=np.float64)
        rows.append([frame, int(obj.id), x1, y1, x2 - x1, y2 - y1, 1.0])
    return rows


REGISTRY = {
    "iou": _common.PeerTracker(
        label="norfair (IoU)",
        params=_params(),
        make=_make,
        convert=_convert,
        update=_update,
        to_rows=_to_rows,
    )
}

if __name__ == "__main__":
    sys.exit(_common.main("norfair", ["norfair", "numpy", "scipy", "filterpy"], REGISTRY))
