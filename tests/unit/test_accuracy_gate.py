"""Accuracy gate: recall of a candidate detector against a reference."""

from __future__ import annotations

import numpy as np
import pytest

from streamer.detect.accuracy_gate import evaluate_gate, match_count
from streamer.types import Detections


def dets(*rows: tuple[float, float, float, float, float, int]) -> Detections:
    if not rows:
        return Detections.empty()
    a = np.array(rows, dtype=np.float64)
    return Detections(
        a[:, :4].astype(np.float32), a[:, 4].astype(np.float32), a[:, 5].astype(np.int32)
    )


BOX = (10.0, 10.0, 50.0, 50.0)
SHIFTED = (15.0, 10.0, 55.0, 50.0)  # IoU 35*40 / (45*40) = 0.78
FAR = (200.0, 200.0, 240.0, 240.0)


@pytest.mark.parametrize(
    ("reference", "candidate", "iou", "expected"),
    [
        (dets(), dets(), 0.5, 0),
        (dets((*BOX, 0.9, 0)), dets(), 0.5, 0),
        (dets((*BOX, 0.9, 0)), dets((*BOX, 0.3, 0)), 0.5, 1),  # confidence does not matter
        (dets((*BOX, 0.9, 0)), dets((*SHIFTED, 0.9, 0)), 0.5, 1),
        (dets((*BOX, 0.9, 0)), dets((*SHIFTED, 0.9, 0)), 0.8, 0),  # below the IoU
        (dets((*BOX, 0.9, 0)), dets((*BOX, 0.9, 1)), 0.5, 0),  # other class
        (dets((*BOX, 0.9, 0), (*FAR, 0.8, 0)), dets((*FAR, 0.5, 0)), 0.5, 1),
        # one candidate cannot match two references
        (dets((*BOX, 0.9, 0), (*SHIFTED, 0.8, 0)), dets((*BOX, 0.9, 0)), 0.5, 1),
    ],
)
def test_match_count(reference, candidate, iou, expected):
    assert match_count(reference, candidate, iou) == expected


def test_gate_passes_and_fails_on_the_threshold():
    frames = [np.zeros((4, 4, 3), np.uint8)] * 4
    ref = lambda _f: dets((*BOX, 0.9, 0), (*FAR, 0.8, 0))  # noqa: E731
    half = lambda _f: dets((*BOX, 0.9, 0))  # noqa: E731
    res = evaluate_gate(ref, half, frames, min_recall=0.9)
    assert (res.recall, res.matched, res.reference_detections, res.frames) == (0.5, 4, 8, 4)
    assert not res.passed and "0.500 (4 of 8 detections, 4 frames) < 0.900" in res.describe()
    assert evaluate_gate(ref, ref, frames, min_recall=0.9).passed
    assert evaluate_gate(ref, half, frames, min_recall=0.5).passed


def test_gate_on_real_detectors(data):
    """The INT8-vs-FP16 situation with real models: a detector that keeps fewer boxes."""
    import av

    from streamer.detect.detector import YoloDetector

    model = data("models/yolox_nano.onnx")
    frames = []
    with av.open(str(data("videos/pets09_s2l1_480x360.mp4"))) as c:
        for i, vf in enumerate(c.decode(video=0)):
            if i % 50 == 0:
                frames.append(vf.to_ndarray(format="bgr24"))
            if len(frames) == 4:
                break
    reference = YoloDetector.from_onnx(model, intra_op_threads=2, conf_threshold=0.3)
    weaker = YoloDetector.from_onnx(model, intra_op_threads=2, conf_threshold=0.75)
    same = evaluate_gate(reference, reference, frames, min_recall=0.99)
    assert same.passed and same.recall == 1.0
    worse = evaluate_gate(reference, weaker, frames, min_recall=0.9)
    assert not worse.passed and worse.recall < 0.9


@pytest.mark.parametrize(
    ("frames", "min_recall", "match"),
    [([], 0.9, "no frames"), ([np.zeros((2, 2, 3), np.uint8)], 1.5, "min_recall")],
)
def test_gate_errors(frames, min_recall, match):
    with pytest.raises(ValueError, match=match):
        evaluate_gate(lambda f: dets((*BOX, 0.9, 0)), lambda f: dets(), frames, min_recall)


def test_gate_needs_reference_detections():
    with pytest.raises(ValueError, match="detected nothing"):
        evaluate_gate(lambda f: dets(), lambda f: dets(), [np.zeros((2, 2, 3), np.uint8)], 0.9)
