"""GPU preprocessing (torch, run here on CPU torch) on real PETS09 frames.

Measured tolerance against the CPU path (OpenCV ``INTER_LINEAR`` on uint8): at most one
grey level per pixel (1/255 = 0.0039 after Ultralytics normalisation, 1.0 for YOLOX's
raw 0–255 input), on at most ~10 % of the pixels; the geometry and the padding are
identical. The detections of the same model on both inputs are compared too, and a
whole pipeline runs with ``preprocess: gpu``.
"""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import yaml
from conftest import require_data

from streamer.cli import main
from streamer.detect.detector import YoloDetector
from streamer.detect.nms import box_iou

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

from streamer.detect.device_detector import DevicePreprocessDetector  # noqa: E402


def _frames(every: int = 20, limit: int = 40) -> list[np.ndarray]:
    path = require_data("videos/pets09_s2l1_480x360.mp4")
    out: list[np.ndarray] = []
    with av.open(str(path)) as c:
        for i, vf in enumerate(c.decode(video=0)):
            if i % every == 0:
                out.append(vf.to_ndarray(format="bgr24"))
            if len(out) >= limit:
                break
    return out


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return _frames()


@pytest.mark.parametrize("model", ["models/yolox_nano.onnx", "models/yolov8n_int8_dynamic.onnx"])
def test_tensors_within_one_grey_level_and_same_detections(frames, model):
    det = YoloDetector.from_onnx(require_data(model), intra_op_threads=2)
    gpu = DevicePreprocessDetector(det, device="cpu")
    spec = det.layout_spec
    worst = 0.0
    differing = total = 0
    matched = ref_count = got_count = 0
    for f in frames[:10]:
        ref, lb = det.preprocess(f)
        got, lb2 = gpu.preprocess(f)
        assert lb2 == lb
        diff = np.abs(got.numpy() - ref) / spec.input_scale
        worst = max(worst, float(diff.max()))
        differing += int((diff > 1e-3).sum())
        total += diff.size
        a = det.postprocess(det.infer(ref[None]), [lb])[0]
        b = gpu.postprocess(gpu.infer(got[None]), [lb2])[0]
        ref_count += len(a)
        got_count += len(b)
        if len(a) and len(b):
            iou = box_iou(a.xyxy, b.xyxy)
            same = (iou >= 0.95) & (a.class_id[:, None] == b.class_id[None, :])
            matched += int(same.any(axis=1).sum())
    assert worst <= 1.0 + 1e-3  # one grey level
    assert differing / total < 0.15
    assert ref_count > 0
    assert abs(got_count - ref_count) <= max(1, ref_count // 20)
    assert matched >= 0.95 * ref_count


def test_detect_batch_on_device_path_matches_cpu_detector(frames):
    det = YoloDetector.from_onnx(require_data("models/yolox_nano.onnx"), intra_op_threads=2)
    gpu = DevicePreprocessDetector(det, device="cpu")
    ref = det.detect_batch(frames[:3])
    got = gpu.detect_batch(frames[:3])
    for a, b in zip(ref, got, strict=True):
        assert len(a) == len(b)
        if len(a):
            assert np.diag(box_iou(a.xyxy, b.xyxy)).min() > 0.97


def test_pipeline_runs_with_gpu_preprocessing_on_cpu_torch(tmp_path: Path):
    video = require_data("videos/pets09_s2l1_480x360.mp4")
    model = require_data("models/yolox_nano.onnx")
    cfg = {
        "name": "gpu_pre",
        "sources": [{"type": "video_file", "id": "pets", "path": str(video), "max_frames": 8}],
        "stages": [
            {
                "type": "detect",
                "model": str(model),
                "backend": "torch",
                "device": "cpu",
                "preprocess": "gpu",
                "max_batch": 2,
                "max_wait_ms": 50,
                "classes": ["person"],
            },
            {"type": "track", "preset": "bytetrack"},
            {"type": "jsonl"},
        ],
    }
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    assert main(["run", str(path), "-o", str(out), "--no-progress"]) == 0
    records = [json.loads(line) for line in (out / "tracks.jsonl").read_text().splitlines()]
    assert len(records) == 8
    assert sum(len(r["tracks"]) for r in records) > 0
