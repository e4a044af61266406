"""Multi-object trackers on plain numpy arrays (numpy + lap; never imports ``streamer``).

Public API:
    :class:`ByteTrack`: ByteTrack (Zhang et al., ECCV 2022), one instance per stream.
    :class:`TrackerOutput`: struct-of-arrays result of one ``update``.
    :class:`KalmanFilterXYAH`: batched constant-velocity Kalman filter.
"""

from __future__ import annotations

from trackers.bytetrack import ByteTrack
from trackers.kalman import KalmanFilterXYAH, xyah_to_xyxy, xyxy_to_xyah
from trackers.matching import box_iou, iou_cost, linear_assignment
from trackers.types import Tracker, TrackerOutput

__all__ = [
    "ByteTrack",
    "KalmanFilterXYAH",
    "Tracker",
    "TrackerOutput",
    "box_iou",
    "iou_cost",
    "linear_assignment",
    "xyah_to_xyxy",
    "xyxy_to_xyah",
]
