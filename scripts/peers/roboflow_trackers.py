"""Adapter for Roboflow's ``trackers`` package (PyPI ``trackers`` 2.x, import name ``trackers``).

Runs inside its own virtual environment (the package's import name collides with
this project's ``trackers``); see ``_common.py`` for the request/result files.

Trackers: ``bytetrack`` (``ByteTrackTracker``), ``sort`` (``SORTTracker``) and
``ocsort`` (``OCSORTTracker``), each with its constructor defaults except
``frame_rate``, which is the sequence's (it scales ``lost_track_buffer``, given in
30 fps frames). Input per frame: ``sv.Detections(xyxy, confidence, class_id=0)``
(``sv.Detections.empty()`` for a frame without detections, as the package's own
``trackers track --detections`` CLI does), built before timing; ``update`` is
called without ``frame`` or ``timestamp`` (fixed-rate mode).

Output rows: the package returns the input detections with a ``tracker_id``; rows
with ``tracker_id == -1`` (unmatched or not yet confirmed) are dropped, as the
package's own evaluation drops them. Boxes are therefore detection boxes, not
Kalman estimates.
"""

from __future__ import annotations

import inspect
import os
import sys
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common
import supervision as sv

import trackers
from trackers import ByteTrackTracker, OCSORTTracker, SORTTracker

# This project's own top-level ``trackers`` must not shadow the peer package.
if "site-packages" not in (trackers.__file__ or ""):
    raise ImportError(f"imported the wrong 'trackers' package: {trackers.__file__}")


def _defaults(cls: type) -> dict[str, Any]:
    """Constructor defaults that are plain values (for the report)."""
    out: dict[str, Any] = {}
    for name, p in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or p.default is inspect.Parameter.empty:
            continue
        value = p.default
        if isinstance(value, (int, float, str, bool)) or value is None:
            out[name] = value
        else:
            out[name] = getattr(value, "__name__", repr(value))
    out.pop("frame_rate", None)
    return out


def _convert(frames: list[_common.Frame]) -> list[sv.Detections]:
    out = []
    for xyxy, conf in frames:
        if len(xyxy) == 0:
            out.append(sv.Detections.empty())
        else:
            out.append(
                sv.Detections(
                    xyxy=xyxy.copy(),
                    confidence=conf.copy(),
                    class_id=np.zeros(len(xyxy), dtype=int),
                )
            )
    return out


def _update(tracker: Any, detections: sv.Detections) -> sv.Detections:
    return tracker.update(detections)


def _to_rows(result: sv.Detections, frame: int) -> list[_common.Row]:
    if len(result) == 0 or result.tracker_id is None:
        return []
    ids = np.asarray(result.tracker_id, dtype=np.int64)
    xyxy = np.asarray(result.xyxy, dtype=np.float64)
    conf = (
        np.ones(len(ids))
        if result.confidence is None
        else np.asarray(result.confidence, dtype=np.float64)
    )
    rows = []
    for i in np.flatnonzero(ids >= 0):
        x1, y1, x2, y2 = xyxy[i]
        rows.append([frame, int(ids[i]), x1, y1, x2 - x1, y2 - y1, float(conf[i])])
    return rows


def _spec(label: str, cls: type) -> _common.PeerTracker:
    return _common.PeerTracker(
        label=label,
        params=_defaults(cls),
        make=lambda fps: cls(frame_rate=fps),
        convert=_convert,
        update=_update,
        to_rows=_to_rows,
    )


REGISTRY = {
    "bytetrack": _spec("Roboflow ByteTrack", ByteTrackTracker),
    "sort": _spec("Roboflow SORT", SORTTracker),
    "ocsort": _spec("Roboflow OC-SORT", OCSORTTracker),
}

if __name__ == "__main__":
    sys.exit(
        _common.main("roboflow-trackers", ["trackers", "supervision", "numpy", "scipy"], REGISTRY)
    )
