"""The GPU path on a real NVIDIA GPU (``gpu`` marker: skipped without CUDA torch).

What CI cannot run: torch preprocessing on CUDA (pinned upload, streams), the torch
backend in FP16 on CUDA, TensorRT engine builds (FP16, INT8 with calibration) and their
detections, the engine cache with real machine facts. Each compares with the CPU
reference path (ONNX Runtime on the CPU, OpenCV letterbox) on real PETS09 frames.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from conftest import require_data

from streamer.detect.detector import YoloDetector
from streamer.detect.nms import box_iou

pytestmark = pytest.mark.gpu


def _frames(n: int = 6) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    with av.open(str(require_data("videos/pets09_s2l1_480x360.mp4"))) as c:
        for i, vf in enumerate(c.decode(video=0)):
            if i % 30 == 0:
                out.append(vf.to_ndarray(format="bgr24"))
            if len(out) == n:
                break
    return out


def _match(ref: list, got: list, iou: float = 0.8) -> tuple[int, int]:
    matched = total = 0
    for a, b in zip(ref, got, strict=True):
        total += len(a)
        if len(a) and len(b):
            m = box_iou(a.xyxy, b.xyxy) >= iou
            m &= a.class_id[:, None] == b.class_id[None, :]
            matched += int(m.any(axis=1).sum())
    return matched, total


def test_cuda_preprocessing_matches_cpu_reference():
    import torch

    from streamer.detect.device_detector import DevicePreprocessDetector

    det = YoloDetector.from_onnx(require_data("models/yolox_nano.onnx"))
    gpu = DevicePreprocessDetector(det, device="cuda")
    frames = _frames()
    batch, lbs = gpu.preprocessor.batch(frames)
    assert batch.device.type == "cuda"
    for i, f in enumerate(frames):
        ref, lb = det.preprocess(f)
        assert lbs[i] == lb
        diff = np.abs(batch[i].cpu().numpy() - ref)
        assert diff.max() <= 1.0 + 1e-3  # YOLOX raw scale: one grey level
    torch.cuda.synchronize()


def test_torch_backend_fp16_on_cuda_matches_onnxruntime():
    from streamer.detect.torch_backend import TorchBackend

    model = require_data("models/yolox_nano.onnx")
    ref = YoloDetector.from_onnx(model)
    fp16 = YoloDetector(TorchBackend(model, device="cuda", precision="fp16"))
    frames = _frames()
    matched, total = _match([ref(f) for f in frames], [fp16(f) for f in frames])
    assert total > 0 and matched >= 0.9 * total


def _tensorrt():
    return pytest.importorskip("tensorrt")


def test_tensorrt_fp16_engine_build_cache_and_detections(tmp_path: Path):
    _tensorrt()
    from streamer.config.schema import DetectStageConfig
    from streamer.detect.device_detector import DevicePreprocessDetector
    from streamer.detect.engine_cache import EngineCache, detect_machine_facts
    from streamer.pipeline.engines import ensure_engine, make_backend

    model = require_data("models/yolox_nano.onnx")
    cfg = DetectStageConfig.model_validate(
        {
            "type": "detect",
            "model": model,
            "backend": "tensorrt",
            "device": "cuda",
            "precision": "fp16",
            "engine_cache_dir": tmp_path,
        }
    )
    facts = detect_machine_facts()
    first = ensure_engine(cfg, facts=facts, cache=EngineCache(tmp_path))
    again = ensure_engine(cfg, facts=facts, cache=EngineCache(tmp_path))
    assert first.built and not again.built
    trt_det = YoloDetector(make_backend(cfg))
    ref = YoloDetector.from_onnx(model)
    frames = _frames()
    matched, total = _match([ref(f) for f in frames], [trt_det(f) for f in frames])
    assert total > 0 and matched >= 0.9 * total
    # GPU preprocessing straight into the engine
    dev = DevicePreprocessDetector(trt_det, device="cuda")
    matched, total = _match([ref(f) for f in frames], dev.detect_batch(frames))
    assert matched >= 0.9 * total


def test_tensorrt_int8_engine_with_calibration_and_gate(tmp_path: Path):
    _tensorrt()
    from streamer.config.schema import DetectStageConfig
    from streamer.pipeline.engines import ensure_engine

    cfg = DetectStageConfig.model_validate(
        {
            "type": "detect",
            "model": require_data("models/yolox_nano.onnx"),
            "backend": "tensorrt",
            "device": "cuda",
            "precision": "int8",
            "engine_cache_dir": tmp_path,
            "calibration": {"video": require_data("videos/pets09_s2l1_480x360.mp4"), "frames": 64},
            "accuracy_gate": {"frames": 30, "min_recall_vs_fp16": 0.5},
        }
    )
    result = ensure_engine(cfg)
    assert result.gate is not None and result.gate.frames == 30
    assert result.entry.gate is not None and result.entry.gate["result"]["passed"]
