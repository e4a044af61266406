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


def _same(a, b) -> None:
    np.testing.assert_array_equal(a.xyxy, b.xyxy)
    np.testing.assert_array_equal(a.confidence, b.confidence)
    np.testing.assert_array_equal(a.class_id, b.class_id)


def test_call_equals_phases_across_frame_sizes_and_keeps_its_buffer(image: np.ndarray) -> None:
    """``__call__`` (kept batch buffer) gives what the three public phases give, for
    frames of several sizes in a row, and a repeated frame size allocates no new batch."""
    import tracemalloc

    det = YoloDetector.from_onnx(require_data("models/yolov8n_int8_dynamic.onnx"))
    sliced = SlicedDetector(det, tile_wh=(640, 640), overlap_ratio=0.2)
    small = np.ascontiguousarray(image[:682, :1024])  # 4 tiles + full: reuses the 9-row buffer
    for frame in (image, small, image):
        batch, plan = sliced.preprocess(frame)
        _same(sliced(frame), sliced.postprocess(sliced.infer(batch), [plan])[0])
    batch_bytes = 9 * 3 * 640 * 640 * 4
    tracemalloc.start()
    try:
        sliced.preprocess(image)  # allocates a fresh 9-row batch
        _, fresh_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        sliced(image)
        _, call_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert fresh_peak >= batch_bytes
    assert call_peak - before < batch_bytes, (call_peak - before, batch_bytes)


def test_parallel_runs_give_identical_detections(image: np.ndarray) -> None:
    model = require_data("models/yolov8n_int8_dynamic.onnx")
    seq = YoloDetector.from_onnx(model, intra_op_threads=2)
    par = YoloDetector.from_onnx(model, intra_op_threads=1, parallel_runs=2)
    assert par.backend.parallel_runs == 2 and seq.backend.parallel_runs == 1  # type: ignore[attr-defined]
    kw = {"tile_wh": (640, 640), "overlap_ratio": 0.2}
    want = SlicedDetector(seq, **kw)(image)
    sliced = SlicedDetector(par, **kw)
    _same(sliced(image), want)
    assert sliced.stats.images_inferred == 9 and sliced.stats.inference_calls == 1
    par.backend.close()  # type: ignore[attr-defined]
    par.backend.close()  # type: ignore[attr-defined]  # idempotent
    _same(sliced(image), want)  # the workers start again
    par.backend.close()  # type: ignore[attr-defined]
    for bad in (0, 1.5):
        with pytest.raises(ValueError, match="parallel_runs"):
            YoloDetector.from_onnx(model, parallel_runs=bad)  # type: ignore[arg-type]


class _Rebatched:
    """The real batch-1 backend presented as fixed batch ``k`` (or dynamic: None);
    records the batch sizes it is asked to run."""

    def __init__(self, inner, k: int | None) -> None:
        self.inner, self.fixed_batch = inner, k
        self.input_hw, self.metadata = inner.input_hw, inner.metadata
        self.output_shapes = inner.output_shapes
        self.sizes: list[int] = []

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        self.sizes.append(batch.shape[0])
        return self.inner.run(batch)


@pytest.mark.parametrize("k", [None, 1, 3])
def test_call_runs_fixed_batches_chunk_by_chunk_with_identical_results(
    image: np.ndarray, k: int | None
) -> None:
    """Dynamic batch: one run per frame; fixed batch k: k-row runs, the last one
    zero-padded; the detections are the same either way."""
    model = require_data("models/yolov8n_int8_dynamic.onnx")
    ref_det = YoloDetector.from_onnx(model, conf_threshold=0.25)
    backend = _Rebatched(ref_det.backend, k)
    det = YoloDetector(backend, conf_threshold=0.25)
    kw = {"tile_wh": (640, 640), "overlap_ratio": 0.2}
    small = np.ascontiguousarray(image[:682, :1024])  # 4 tiles + full = 5 rows
    for frame, rows in ((image, 9), (small, 5)):
        want_batch, want_plan = SlicedDetector(ref_det, **kw).preprocess(frame)
        want = SlicedDetector(ref_det, **kw).postprocess(ref_det.infer(want_batch), [want_plan])
        backend.sizes.clear()
        sliced = SlicedDetector(det, **kw)
        _same(sliced(frame), want[0])
        if k is None:
            assert backend.sizes == [rows]
        else:
            assert backend.sizes == [k] * -(-rows // k)
        assert sliced.stats.inference_calls == 1 and sliced.stats.images_inferred == rows


def test_phases_reuse_a_recycled_batch(image: np.ndarray) -> None:
    """A batch handed back with ``recycle`` after ``infer`` is the next frame's batch
    (no new allocation), and the detections do not change; a batch handed back twice
    is kept once, and arrays that are not its batches are ignored."""
    det = YoloDetector.from_onnx(require_data("models/yolov8n_int8_dynamic.onnx"))
    sliced = SlicedDetector(det, tile_wh=(640, 640), overlap_ratio=0.2)
    batch, plan = sliced.preprocess(image)
    first = sliced.postprocess(sliced.infer(batch), [plan])[0]
    sliced.recycle(batch)
    sliced.recycle(batch)  # twice: still one kept buffer
    sliced.recycle(np.zeros((9, 3, 320, 320), np.float32))  # not its input size
    sliced.recycle(np.zeros((9, 3, 640, 640), np.float32)[:, :, ::2])  # a strided view
    again, plan = sliced.preprocess(image)
    assert np.shares_memory(again, batch)
    _same(sliced.postprocess(sliced.infer(again), [plan])[0], first)
    other, _ = sliced.preprocess(image)  # the kept buffer is in use: a new one
    assert not np.shares_memory(other, again)
    # A smaller frame takes the first rows of a kept 9-row buffer.
    sliced.recycle(again)
    small = np.ascontiguousarray(image[:682, :1024])  # 4 tiles + full
    part, plan = sliced.preprocess(small)
    assert part.shape[0] == 5 and np.shares_memory(part, again)
    _same(sliced.postprocess(sliced.infer(part), [plan])[0], sliced(small))
