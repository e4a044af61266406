"""Sliced (SAHI-style) vs full-frame YOLOv8n on the two VisDrone frames, scored with pycocotools.

``shared/data/SOURCES.md`` §4; reference (measured elsewhere): class-aware AP50 about
0.024 full frame vs 0.136 sliced. The int8 kernels differ a little between CPUs, so
the test asks for clear gains rather than exact values.
"""

from __future__ import annotations

import cv2
import pytest
from conftest import require_data

from streamer.detect import YoloDetector
from streamer.evaluation.det import evaluate_detections, format_table, read_visdrone
from streamer.slicing import SlicedDetector

IMAGES = ("0000001_02999_d_0000005", "0000001_07999_d_0000012")


def test_sliced_beats_full_frame_on_visdrone() -> None:
    det = YoloDetector.from_onnx(
        require_data("models/yolov8n_int8_dynamic.onnx"), conf_threshold=0.25
    )
    sliced = SlicedDetector(det, tile_wh=(640, 640), overlap_ratio=0.2)
    gt, full, tiled = {}, {}, {}
    for name in IMAGES:
        gt[name] = read_visdrone(require_data(f"small_objects/visdrone/{name}.txt"))
        img = cv2.imread(str(require_data(f"small_objects/visdrone/{name}.jpg")))
        assert img is not None
        full[name], tiled[name] = det(img), sliced(img)
    r_full = evaluate_detections(gt, full, det.class_names)
    r_tiled = evaluate_detections(gt, tiled, det.class_names)
    print(format_table(r_full, "full frame"), format_table(r_tiled, "sliced"), sep="\n")
    assert r_full["gt"] == r_tiled["gt"] > 200
    assert 0.0 <= r_full["AP50"] < 0.08
    assert r_tiled["AP50"] > r_full["AP50"] + 0.05
    assert r_tiled["recall50_small"] > r_full["recall50_small"]
    assert r_tiled["recall50"] > r_full["recall50"]
    assert r_tiled["AP50"] == pytest.approx(0.136, abs=0.08)
