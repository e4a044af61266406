"""Output decoders, layout auto-detection, and YoloDetector on a fake backend."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from streamer.detect import (
    COCO80_NAMES,
    LAYOUTS,
    YoloDetector,
    decode_end2end,
    decode_ultralytics,
    decode_yolox,
    detect_layout,
    get_layout,
)
from streamer.detect.decoders import anchor_count, layout_num_classes
from streamer.detect.detector import parse_class_names
from streamer.errors import BackendError
from streamer.preprocess.letterbox import compute_letterbox

S = 64  # synthetic model input size
N = 64 + 16 + 4  # anchor points for 64x64 over strides 8/16/32
IDENTITY = compute_letterbox((S, S), (S, S), center=True)  # scale 1, no pad
# 128x64 (WxH) image: scale 0.5, resized 64x32, 16 px padding above and below.
WIDE = compute_letterbox((128, 64), (S, S), center=True)
WIDE_TOPLEFT = compute_letterbox((128, 64), (S, S), center=False)


def ultra_output(columns: list[tuple[float, float, float, float, list[float]]], c: int = 3):
    """``[1, 4+c, N]`` with the given (cx, cy, w, h, class scores) in the first columns."""
    out = np.zeros((1, 4 + c, N), np.float32)
    for j, (cx, cy, w, h, scores) in enumerate(columns):
        out[0, :4, j] = (cx, cy, w, h)
        out[0, 4:, j] = scores
    return out


def run_ultra(out, lbs=(IDENTITY,), conf=0.25, iou=0.45, classes=None, max_det=300):
    return decode_ultralytics([out], list(lbs), conf, iou, classes, max_det)


# ----------------------------------------------------------------------------- ultralytics


def test_ultralytics_decodes_cxcywh_and_best_class():
    out = ultra_output([(32, 32, 20, 10, [0.1, 0.8, 0.3])])
    (det,) = run_ultra(out)
    np.testing.assert_allclose(det.xyxy, [[22, 27, 42, 37]])
    np.testing.assert_allclose(det.confidence, [0.8])
    assert det.class_id.tolist() == [1]
    assert det.xyxy.dtype == np.float32 and det.class_id.dtype == np.int32


def test_ultralytics_undoes_centred_letterbox():
    out = ultra_output([(32, 32, 20, 10, [0.9, 0, 0])])
    (det,) = run_ultra(out, lbs=(WIDE,))
    # input (22, 27, 42, 37) -> minus pad (0, 16) -> / 0.5
    np.testing.assert_allclose(det.xyxy, [[44, 22, 84, 42]])


def test_ultralytics_clips_to_image():
    out = ultra_output([(2, 20, 20, 10, [0.9, 0, 0])])  # x1 = -8 in input pixels
    (det,) = run_ultra(out, lbs=(WIDE,))
    assert det.xyxy[0, 0] == 0.0


@pytest.mark.parametrize(
    ("columns", "kwargs", "expected_scores", "expected_classes"),
    [
        # same class, IoU 0.905 > 0.45: the weaker one is suppressed
        (
            [(32, 32, 20, 20, [0.9, 0, 0]), (33, 32, 20, 20, [0.7, 0, 0])],
            {},
            [0.9],
            [0],
        ),
        # different classes never suppress each other
        (
            [(32, 32, 20, 20, [0.9, 0, 0]), (33, 32, 20, 20, [0, 0.7, 0])],
            {},
            [0.9, 0.7],
            [0, 1],
        ),
        # a threshold above their IoU (380/420 = 0.905) keeps both
        (
            [(32, 32, 20, 20, [0.9, 0, 0]), (33, 32, 20, 20, [0.7, 0, 0])],
            {"iou": 0.95},
            [0.9, 0.7],
            [0, 0],
        ),
        # the threshold is strict: a score equal to it is dropped
        ([(32, 32, 20, 20, [0.25, 0, 0]), (10, 10, 4, 4, [0.5, 0, 0])], {}, [0.5], [0]),
        # class filter applies after the argmax (Ultralytics semantics)
        (
            [(32, 32, 20, 20, [0.9, 0.6, 0]), (10, 10, 4, 4, [0, 0.5, 0])],
            {"classes": {1}},
            [0.5],
            [1],
        ),
        # max_detections keeps the best
        (
            [(10, 10, 4, 4, [0.5, 0, 0]), (30, 30, 4, 4, [0.6, 0, 0]), (50, 50, 4, 4, [0.7, 0, 0])],
            {"max_det": 2},
            [0.7, 0.6],
            [0, 0],
        ),
        # nothing above the threshold
        ([(32, 32, 20, 20, [0.1, 0.2, 0.0])], {}, [], []),
    ],
)
def test_ultralytics_table(columns, kwargs, expected_scores, expected_classes):
    (det,) = run_ultra(ultra_output(columns), **kwargs)
    np.testing.assert_allclose(det.confidence, expected_scores, rtol=1e-6)
    assert det.class_id.tolist() == expected_classes
    assert det.xyxy.shape == (len(expected_scores), 4)


def test_ultralytics_batch_uses_each_items_letterbox():
    out = np.concatenate(
        [
            ultra_output([(32, 32, 20, 10, [0.9, 0, 0])]),
            ultra_output([(32, 32, 20, 10, [0, 0, 0.8])]),
        ]
    )
    dets = run_ultra(out, lbs=(IDENTITY, WIDE))
    assert len(dets) == 2
    np.testing.assert_allclose(dets[0].xyxy, [[22, 27, 42, 37]])
    np.testing.assert_allclose(dets[1].xyxy, [[44, 22, 84, 42]])
    assert dets[1].class_id.tolist() == [2]


# ----------------------------------------------------------------------------- yolox


def yolox_output(rows: dict[int, list[float]], c: int = 3) -> np.ndarray:
    out = np.zeros((1, N, 5 + c), np.float32)
    for i, values in rows.items():
        out[0, i] = values
    return out


@pytest.mark.parametrize(
    ("row", "raw", "expected_xyxy"),
    [
        # stride 8 grid (8x8), gx=3, gy=1 -> row 1*8+3 = 11; tx=ty=0, tw=th=0
        # cx = 3*8 = 24, cy = 8, w = h = 8
        (11, [0, 0, 0, 0], [20, 4, 28, 12]),
        # stride 16 grid (4x4) starts at 64; gx=1, gy=2 -> 64+2*4+1 = 73
        # cx = (0.5+1)*16 = 24, cy = (0.5+2)*16 = 40, w = 2*16 = 32, h = 16
        (73, [0.5, 0.5, math.log(2), 0], [8, 32, 40, 48]),
        # stride 32 grid (2x2) starts at 80; gx=1, gy=1 -> 83; cx = cy = 32, w = h = 32
        (83, [0, 0, 0, 0], [16, 16, 48, 48]),
    ],
)
def test_yolox_grid_decode(row, raw, expected_xyxy):
    out = yolox_output({row: [*raw, 0.9, 0.1, 0.5, 0.2]})
    (det,) = decode_yolox([out], [IDENTITY], 0.3, 0.45, None, 300)
    np.testing.assert_allclose(det.xyxy, [expected_xyxy], atol=1e-4)
    np.testing.assert_allclose(det.confidence, [0.45], rtol=1e-6)  # obj * best class
    assert det.class_id.tolist() == [1]


def test_yolox_score_is_objectness_times_class_and_threshold_strict():
    out = yolox_output(
        {
            0: [0, 0, 0, 0, 0.5, 0.6, 0, 0],  # 0.30: not above 0.3
            10: [0, 0, 0, 0, 0.9, 0, 0, 0.5],  # 0.45
            30: [0, 0, 0, 0, 0.2, 1.0, 0, 0],  # 0.20
        }
    )
    (det,) = decode_yolox([out], [IDENTITY], 0.3, 0.45, None, 300)
    np.testing.assert_allclose(det.confidence, [0.45], rtol=1e-6)
    assert det.class_id.tolist() == [2]


def test_yolox_undoes_top_left_letterbox_and_nms_and_filter():
    out = yolox_output(
        {
            11: [0, 0, 0, 0, 0.9, 0.9, 0, 0],
            12: [-0.9, 0, 0, 0, 0.9, 0.8, 0, 0],  # IoU 0.82 with row 11, same class: suppressed
            40: [0, 0, 0, 0, 0.9, 0, 0.7, 0],  # class 1 elsewhere
        }
    )
    (det,) = decode_yolox([out], [WIDE_TOPLEFT], 0.3, 0.45, None, 300)
    assert det.class_id.tolist() == [0, 1]
    np.testing.assert_allclose(det.xyxy[0], np.array([20, 4, 28, 12]) / 0.5, atol=1e-4)
    (only1,) = decode_yolox([out], [WIDE_TOPLEFT], 0.3, 0.45, {1}, 300)
    assert only1.class_id.tolist() == [1]


def test_yolox_rejects_wrong_anchor_count():
    out = np.zeros((1, N + 1, 8), np.float32)
    with pytest.raises(BackendError, match=r"\[B, 84, 5\+C\].*\(1, 85, 8\)"):
        decode_yolox([out], [IDENTITY], 0.3, 0.45, None, 300)


# ----------------------------------------------------------------------------- end2end


def test_end2end_thresholds_without_nms_and_unletterboxes():
    out = np.zeros((1, 5, 6), np.float32)
    out[0, 0] = (22, 27, 42, 37, 0.9, 5)
    out[0, 1] = (22, 27, 42, 37, 0.8, 5)  # identical box: kept, there is no NMS
    out[0, 2] = (0, 16, 10, 20, 0.3, 0)
    out[0, 3] = (0, 0, 10, 10, 0.2, 0)  # below threshold
    (det,) = decode_end2end([out], [WIDE], 0.25, 0.45, None, 300)
    np.testing.assert_allclose(det.confidence, [0.9, 0.8, 0.3], rtol=1e-6)
    assert det.class_id.tolist() == [5, 5, 0]
    np.testing.assert_allclose(det.xyxy[0], [44, 22, 84, 42])
    np.testing.assert_allclose(det.xyxy[2], [0, 0, 20, 8])


def test_end2end_sorts_filters_and_caps():
    out = np.zeros((1, 4, 6), np.float32)
    out[0, 0] = (0, 0, 1, 1, 0.4, 1)
    out[0, 1] = (0, 0, 1, 1, 0.9, 2)
    out[0, 2] = (0, 0, 1, 1, 0.6, 1)
    out[0, 3] = (0, 0, 1, 1, 0.5, 1.0000001)
    (det,) = decode_end2end([out], [IDENTITY], 0.25, 0.45, {1}, 2)
    np.testing.assert_allclose(det.confidence, [0.6, 0.5], rtol=1e-6)
    assert det.class_id.tolist() == [1, 1]


def test_end2end_empty():
    (det,) = decode_end2end([np.zeros((1, 300, 6), np.float32)], [IDENTITY], 0.25, 0.45, None, 9)
    assert len(det) == 0 and det.xyxy.shape == (0, 4)


# ----------------------------------------------------------------------------- shape errors


@pytest.mark.parametrize(
    ("decoder", "outputs", "n_lb", "match"),
    [
        (decode_ultralytics, [np.zeros((84, 8400), np.float32)], 1, "3-D output"),
        (decode_ultralytics, [np.zeros((1, 4, 8400), np.float32)], 1, r"\[B, 4\+C, N\]"),
        (decode_ultralytics, [np.zeros((2, 84, N), np.float32)], 1, "batch 2"),
        (decode_ultralytics, [], 1, "no outputs"),
        (decode_end2end, [np.zeros((1, 300, 7), np.float32)], 1, r"\[B, K, 6\]"),
        (decode_yolox, [np.zeros((1, N, 5), np.float32)], 1, r"5\+C"),
    ],
)
def test_decoders_reject_wrong_shapes(decoder, outputs, n_lb, match):
    with pytest.raises(BackendError, match=match):
        decoder(outputs, [IDENTITY] * n_lb, 0.25, 0.45, None, 300)


# ----------------------------------------------------------------------------- layouts

ULTRA_META = {"author": "Ultralytics", "task": "detect", "end2end": "False", "names": "{0: 'a'}"}


@pytest.mark.parametrize(
    ("metadata", "shape", "input_hw", "expected"),
    [
        (ULTRA_META, (1, 84, 8400), (640, 640), "ultralytics"),
        ({}, (1, 84, 8400), (640, 640), "ultralytics"),
        (ULTRA_META, (1, 84, 2100), (320, 320), "ultralytics"),
        ({}, (None, 84, 8400), (640, 640), "ultralytics"),  # dynamic batch
        ({}, ("batch", 6, 8400), (640, 640), "ultralytics"),  # 2-class model
        ({}, (1, 84, 5040), (384, 640), "ultralytics"),  # non-square 640x384
        (ULTRA_META, (1, 84, None), (640, 640), "ultralytics"),  # dynamic anchors
        ({}, (1, 3549, 85), (416, 416), "yolox"),
        ({}, (1, 8400, 85), (640, 640), "yolox"),
        ({}, (1, 3549, 6), (416, 416), "yolox"),  # 1-class YOLOX
        ({**ULTRA_META, "end2end": "True"}, (1, 300, 6), (640, 640), "end2end"),
        ({"end2end": "True"}, (1, None, 6), (640, 640), "end2end"),
        ({}, (1, 300, 6), (640, 640), "end2end"),
        ({}, (1, 100, 6), (416, 416), "end2end"),
    ],
)
def test_detect_layout_table(metadata, shape, input_hw, expected):
    assert detect_layout(metadata, shape, input_hw) == expected


@pytest.mark.parametrize(
    ("metadata", "shape", "input_hw", "match"),
    [
        ({}, (1, 7, 7), (640, 640), r"\[1, 7, 7\]"),
        ({}, (1, 25200, 85), (640, 640), r"\[1, 25200, 85\]"),  # YOLOv5 anchors: unknown
        ({}, (1, 84, 8400, 1), (640, 640), "3-D"),
        ({}, (1, 84, 8400), (416, 416), "3549"),  # right layout, wrong input size
        ({**ULTRA_META, "task": "segment"}, (1, 116, 8400), (640, 640), "segment"),
        ({"end2end": "True"}, (1, 300, 57), (640, 640), "end2end=True"),
        ({}, (None, None, None), (640, 640), "no layout matches"),
    ],
)
def test_detect_layout_errors_name_the_shape_and_known_layouts(metadata, shape, input_hw, match):
    with pytest.raises(BackendError, match=match) as info:
        detect_layout(metadata, shape, input_hw)
    message = str(info.value)
    assert "\n" not in message
    for name in ("ultralytics", "yolox", "end2end"):
        assert name in message


def test_anchor_count():
    assert anchor_count((640, 640)) == {8400}
    assert anchor_count((416, 416)) == {3549}
    assert anchor_count((320, 320)) == {2100}
    assert anchor_count((100, 100)) == {144 + 36 + 9, 169 + 49 + 16}


@pytest.mark.parametrize(
    ("name", "center", "swap_rb", "scale", "nms"),
    [
        ("ultralytics", True, True, 1 / 255, True),
        ("yolox", False, False, 1.0, True),
        ("end2end", True, True, 1 / 255, False),
    ],
)
def test_layout_specs_preprocessing_conventions(name, center, swap_rb, scale, nms):
    spec = get_layout(name)
    assert (spec.name, spec.center, spec.swap_rb, spec.nms) == (name, center, swap_rb, nms)
    assert spec.input_scale == pytest.approx(scale)
    assert spec.pad_value == 114
    assert set(LAYOUTS) == {"ultralytics", "yolox", "end2end"}


def test_get_layout_unknown_lists_known():
    with pytest.raises(ValueError, match="end2end, ultralytics, yolox"):
        get_layout("yolov5")


def test_layout_num_classes():
    assert layout_num_classes("ultralytics", (1, 84, 8400)) == 80
    assert layout_num_classes("yolox", (1, 3549, 85)) == 80
    assert layout_num_classes("end2end", (1, 300, 6)) is None
    assert layout_num_classes("ultralytics", (1, None, 8400)) is None


# ----------------------------------------------------------------------------- detector


class FakeBackend:
    """A backend that returns fixed outputs and records what it was given."""

    def __init__(self, output, input_hw=(S, S), metadata=None, fixed_batch=1):
        self.input_hw = input_hw
        self.fixed_batch = fixed_batch
        self.metadata = dict(metadata or {})
        self._output = np.asarray(output, np.float32)
        self.output_shapes = [tuple(self._output.shape)]
        self.batches: list[np.ndarray] = []

    def run(self, batch):
        self.batches.append(batch.copy())
        return [np.repeat(self._output[:1], batch.shape[0], axis=0)]


def test_detector_end_to_end_on_fake_ultralytics_backend():
    backend = FakeBackend(ultra_output([(32, 32, 20, 10, [0.9, 0, 0])]))
    det = YoloDetector(backend)
    assert det.layout == "ultralytics" and det.input_wh == (S, S)
    image = np.zeros((64, 128, 3), np.uint8)  # the WIDE letterbox
    result = det(image)
    np.testing.assert_allclose(result.xyxy, [[44, 22, 84, 42]])
    assert backend.batches[0].shape == (1, 3, S, S)


def test_detector_preprocess_follows_the_layout_convention():
    image = np.zeros((32, 64, 3), np.uint8)
    image[:] = (10, 20, 30)  # BGR
    ultra = YoloDetector(FakeBackend(ultra_output([])))
    tensor, lb = ultra.preprocess(image)
    assert (lb.pad_x_px, lb.pad_y_px) == (0, 16)
    np.testing.assert_allclose(tensor[:, 32, 32], np.array([30, 20, 10]) / 255, rtol=1e-6)
    np.testing.assert_allclose(tensor[:, 0, 0], [114 / 255] * 3, rtol=1e-6)

    yolox = YoloDetector(FakeBackend(np.zeros((1, N, 85))))
    assert yolox.layout == "yolox"
    tensor, lb = yolox.preprocess(image)
    assert (lb.pad_x_px, lb.pad_y_px) == (0, 0)
    np.testing.assert_array_equal(tensor[:, 0, 0], [10, 20, 30])
    np.testing.assert_array_equal(tensor[:, 63, 63], [114, 114, 114])


def test_detector_batch_with_different_sizes():
    backend = FakeBackend(ultra_output([(32, 32, 20, 10, [0.9, 0, 0])]), fixed_batch=None)
    det = YoloDetector(backend)
    results = det.detect_batch([np.zeros((64, 64, 3), np.uint8), np.zeros((64, 128, 3), np.uint8)])
    assert backend.batches[0].shape == (2, 3, S, S)
    np.testing.assert_allclose(results[0].xyxy, [[22, 27, 42, 37]])
    np.testing.assert_allclose(results[1].xyxy, [[44, 22, 84, 42]])
    assert det.detect_batch([]) == []


def test_detector_preprocess_is_safe_to_call_from_several_threads():
    det = YoloDetector(FakeBackend(ultra_output([])))
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (40 + i, 90 - i, 3), dtype=np.uint8) for i in range(24)]
    expected = [det.preprocess(img)[0] for img in images]
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(lambda img: det.preprocess(img)[0], images))
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_array_equal(e, g)


@pytest.mark.parametrize(
    ("metadata", "output", "class_names", "expected"),
    [
        (
            {"names": "{0: 'cat', 1: 'dog', 2: 'cow'}"},
            ultra_output([]),
            None,
            ("cat", "dog", "cow"),
        ),
        ({"names": "{0: 'cat', 2: 'cow'}"}, ultra_output([]), None, ("cat", "class_1", "cow")),
        ({"names": "{0: 'cat'}"}, ultra_output([]), ["x", "y", "z"], ("x", "y", "z")),
        ({}, ultra_output([]), None, ("class_0", "class_1", "class_2")),
        ({}, np.zeros((1, 84, N)), None, COCO80_NAMES),
        ({}, np.zeros((1, 300, 6)), None, COCO80_NAMES),
    ],
)
def test_detector_class_names(metadata, output, class_names, expected):
    det = YoloDetector(FakeBackend(output, metadata=metadata), class_names=class_names)
    assert det.class_names == expected


def test_coco_names():
    assert len(COCO80_NAMES) == 80
    assert (COCO80_NAMES[0], COCO80_NAMES[5], COCO80_NAMES[79]) == ("person", "bus", "toothbrush")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"conf_threshold": 1.5}, ValueError, "conf_threshold"),
        ({"iou_threshold": -0.1}, ValueError, "iou_threshold"),
        ({"max_detections": 0}, ValueError, "max_detections"),
        ({"class_filter": [-1]}, ValueError, "class_filter"),
        ({"layout": "yolov5"}, ValueError, "known"),
        ({"class_names": ["a"]}, ValueError, "3 classes"),
    ],
)
def test_detector_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        YoloDetector(FakeBackend(ultra_output([])), **kwargs)


def test_detector_unknown_output_raises_backend_error():
    with pytest.raises(BackendError, match=r"\[1, 7, 7\]"):
        YoloDetector(FakeBackend(np.zeros((1, 7, 7))))


def test_detector_bad_names_metadata():
    with pytest.raises(BackendError, match="names"):
        YoloDetector(FakeBackend(ultra_output([]), metadata={"names": "not a literal ("}))
    assert parse_class_names("['a', 'b']") == ("a", "b")


def test_detector_class_filter_and_explicit_layout():
    out = ultra_output([(32, 32, 20, 10, [0.9, 0, 0]), (10, 10, 4, 4, [0, 0.8, 0])])
    det = YoloDetector(FakeBackend(out), layout="ultralytics", class_filter=[1])
    assert det.class_filter == frozenset({1})
    assert det(np.zeros((64, 64, 3), np.uint8)).class_id.tolist() == [1]


def test_detector_class_filter_can_be_replaced():
    out = ultra_output([(32, 32, 20, 10, [0.9, 0, 0]), (10, 10, 4, 4, [0, 0.8, 0])])
    det = YoloDetector(FakeBackend(out))
    image = np.zeros((64, 64, 3), np.uint8)
    assert det(image).class_id.tolist() == [0, 1]
    det.class_filter = {0}
    assert det.class_filter == frozenset({0})
    assert det(image).class_id.tolist() == [0]
    det.class_filter = None
    assert len(det(image)) == 2
    with pytest.raises(ValueError, match="class_filter"):
        det.class_filter = [-3]
