"""Object detection: backends, YOLO output decoders, NMS and the detector facade.

Public names::

    YoloDetector, InferenceBackend, OnnxRuntimeBackend, COCO80_NAMES
    LayoutSpec, LAYOUTS, get_layout, detect_layout
    decode_ultralytics, decode_yolox, decode_end2end
    nms, box_iou
"""

from __future__ import annotations

from streamer.detect.decoders import (
    LAYOUTS,
    LayoutSpec,
    decode_end2end,
    decode_ultralytics,
    decode_yolox,
    detect_layout,
    get_layout,
)
from streamer.detect.detector import COCO80_NAMES, InferenceBackend, YoloDetector
from streamer.detect.nms import box_iou, nms
from streamer.detect.onnx_backend import OnnxRuntimeBackend

__all__ = [
    "COCO80_NAMES",
    "LAYOUTS",
    "InferenceBackend",
    "LayoutSpec",
    "OnnxRuntimeBackend",
    "YoloDetector",
    "box_iou",
    "decode_end2end",
    "decode_ultralytics",
    "decode_yolox",
    "detect_layout",
    "get_layout",
    "nms",
]
