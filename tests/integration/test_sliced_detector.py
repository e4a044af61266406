"""Sliced (SAHI-style) inference with real models on a real VisDrone frame.

``shared/data/SOURCES.md`` §4 reports, for YOLOv8n-int8 at conf 0.25 with 640 px
tiles and 20 % overlap and no merge, cars 8 -> 15 and persons 0 -> 5 on
``0000001_02999_d_0000005.jpg``. The int8 kernels differ a little between CPUs and
batch sizes, so the test asks for clear gains rather than exact counts.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import require_data

from streamer.detect import YoloDetector
from streamer.slicing import SlicedDetector

PERSON, CAR = 0, 2
IMAGE = "small_objects/visdrone/0000001_02999_d_0000005.jpg"


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    img = cv2.imread(str(require_data(IMAGE)))
    assert img is not None and img.shape == (1080, 1920, 3)
    return img


def _count(d, cls: int) -> int:
    return int((d.class_id == cls).sum())


def _assert_in_frame(d, image: np.ndarray) -> None:
    h, w = image.shape[:2]
    assert d.xyxy.dtype == np.float32
    assert (d.xyxy[:, :2] >= 0).all() and (d.xyxy[:, 2] <= w).all() and (d.xyxy[:, 3] <= h).all()
    assert (d.xyxy[:, 2:] >= d.xyxy[:, :2]).all()


def test_yolov8n_tiles_find_more_small_objects(image: np.ndarray) -> None:
    det = YoloDetector.from_onnx(
        require_data("models/yolov8n_int8_dynamic.onnx"), conf_threshold=0.25
    )
    full = det(image)
    sliced = SlicedDetector(
        det, tile_wh=(640, 640), overlap_ratio=0.2, full_frame=False, merge="none"
    )
    tiles = sliced(image)
    assert sliced.stats.tiles_last_frame == 8  # 4 x 2 grid on 1920x1080
    assert sliced.stats.inference_calls == 1 and sliced.stats.images_inferred == 8
    assert _count(tiles, CAR) >= _count(full, CAR) + 4, (_count(full, CAR), _count(tiles, CAR))
    assert _count(tiles, PERSON) >= _count(full, PERSON) + 3
    _assert_in_frame(tiles, image)
    # Boxes are in frame pixels: some lie beyond the first tile.
    assert (tiles.xyxy[:, 0] >= 640).any() and (tiles.xyxy[:, 1] >= 440).any()


def test_merged_sliced_output_deterministic_and_in_frame(image: np.ndarray) -> None:
    det = YoloDetector.from_onnx(require_data("models/yolox_nano.onnx"), conf_threshold=0.3)
    sliced = SlicedDetector(det, overlap_ratio=0.2, merge="nmm", metric="ios")
    first = sliced(image)
    second = sliced(image)
    assert sliced.stats.tiles_last_frame == 18  # 416 px auto tiles: 6 x 3
    assert sliced.stats.batch_last_frame == 19  # + the full-frame pass
    assert sliced.stats.inference_calls == 2
    assert len(first) > 0
    assert sliced.stats.detections_before_merge >= len(first)
    np.testing.assert_array_equal(first.xyxy, second.xyxy)
    np.testing.assert_array_equal(first.confidence, second.confidence)
    np.testing.assert_array_equal(first.class_id, second.class_id)
    _assert_in_frame(first, image)
    assert np.all(np.diff(first.confidence) <= 0)


def test_small_frame_is_one_tile_without_duplicate_pass(image: np.ndarray) -> None:
    det = YoloDetector.from_onnx(require_data("models/yolox_nano.onnx"))
    sliced = SlicedDetector(det)
    small = np.ascontiguousarray(image[:300, :400])
    out = sliced(small)
    assert sliced.stats.tiles_last_frame == 1 and sliced.stats.batch_last_frame == 1
    _assert_in_frame(out, small)
    with pytest.raises(ValueError, match="overlap_ratio"):
        SlicedDetector(det, overlap_ratio=1.0)
    with pytest.raises(ValueError, match="method"):
        SlicedDetector(det, merge="soft")  # type: ignore[arg-type]
