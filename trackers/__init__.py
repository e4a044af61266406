"""Multi-object trackers on plain numpy arrays (numpy, lap, numba; never imports ``streamer``).

Public API:
    :class:`ByteTrack`: ByteTrack (Zhang et al., ECCV 2022), one instance per stream.
    :class:`Sort`: SORT (Bewley et al., ICIP 2016).
    :class:`OcSort`: OC-SORT (Cao et al., CVPR 2023).
    :class:`TrackerOutput`: struct-of-arrays result of one ``update``.
    :class:`KalmanFilterXYAH`: batched constant-velocity Kalman filter.
"""

from __future__ import annotations

from trackers.bytetrack import ByteTrack
from trackers.kalman import KalmanFilterXYAH, xyah_to_xyxy, xyxy_to_xyah
from trackers.kalman_xysr import KalmanFilterXYSR
from trackers.matching import box_iou, iou_cost, linear_assignment
from trackers.ocsort import OcSort
from trackers.sort import Sort
from trackers.types import Tracker, TrackerOutput

__all__ = [
    "ByteTrack",
    "KalmanFilterXYAH",
    "KalmanFilterXYSR",
    "OcSort",
    "Sort",
    "Tracker",
    "TrackerOutput",
    "box_iou",
    "iou_cost",
    "linear_assignment",
    "xyah_to_xyxy",
    "xyxy_to_xyah",
]
