"""Sliced (SAHI-style) inference: tile grid, detection merging, sliced detector.

Reference: Akyon, Altinuc, Temizel, "Slicing Aided Hyper Inference and Fine-tuning
for Small Object Detection", ICIP 2022.
"""

from __future__ import annotations

from streamer.slicing.adaptive import AdaptiveSlicedDetector, AdaptiveStats
from streamer.slicing.grid import auto_tile_wh, grid_shape, tile_grid
from streamer.slicing.merge import (
    box_ios,
    concat_detections,
    greedy_nmm,
    greedy_nms,
    merge_detections,
    offset_detections,
    offset_xyxy,
)
from streamer.slicing.sliced import SlicedDetector, SlicedStats

__all__ = [
    "AdaptiveSlicedDetector",
    "AdaptiveStats",
    "SlicedDetector",
    "SlicedStats",
    "auto_tile_wh",
    "box_ios",
    "concat_detections",
    "greedy_nmm",
    "greedy_nms",
    "grid_shape",
    "merge_detections",
    "offset_detections",
    "offset_xyxy",
    "tile_grid",
]
