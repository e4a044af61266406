"""Config of the GPU path: backend/device/precision combinations and provider errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from streamer.config.loader import load_pipeline
from streamer.config.schema import DetectStageConfig
from streamer.detect.onnx_backend import OnnxRuntimeBackend
from streamer.errors import BackendError, ConfigError
from streamer.pipeline.engines import onnx_providers


def _stage(**kw: object) -> DetectStageConfig:
    return DetectStageConfig.model_validate({"type": "detect", "model": "m.onnx", **kw})


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"backend": "tensorrt"}, "backend tensorrt needs device cuda"),
        ({"backend": "tensorrt", "device": "cuda", "precision": "int8"}, "calibration"),
        ({"backend": "tensorrt", "device": "cuda", "accuracy_gate": {}}, "int8 only"),
        ({"backend": "torch", "precision": "fp16"}, "fp16 on backend torch needs device cuda"),
        ({"backend": "torch", "device": "cuda", "precision": "int8"}, "int8 needs backend"),
        ({"precision": "fp16"}, "needs backend tensorrt or torch"),
        ({"backend": "torch", "engine_cache_dir": "/x"}, "tensorrt only"),
        ({"backend": "torch", "providers": ["CUDAExecutionProvider"]}, "onnxruntime only"),
        ({"backend": "torch", "parallel_runs": 2}, "parallel_runs: applies to backend onnx"),
        ({"parallel_runs": 0}, "greater than or equal to 1"),
        ({"device": "cuda"}, "needs a GPU execution provider"),
        ({"device": "gpu0"}, "String should match pattern"),
        ({"providers": ["CudaExecutionProvider"]}, "unknown ONNX Runtime execution provider"),
        ({"provider_options": {"CUDAExecutionProvider": {"device_id": 0}}}, "not in providers"),
        ({"preprocess": "gpu", "slicing": {}}, "not supported with slicing"),
    ],
)
def test_invalid_combinations(fields, match):
    with pytest.raises(ValidationError, match=match):
        _stage(**fields)


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"backend": "torch", "device": "cpu", "preprocess": "gpu"},
        {"backend": "torch", "device": "cuda:1", "precision": "fp16"},
        {
            "backend": "tensorrt",
            "device": "cuda",
            "precision": "fp16",
            "preprocess": "gpu",
            "engine_cache_dir": "/var/cache/e",
            "max_batch": 4,
            "workspace_mib": 2048,
        },
        {
            "backend": "tensorrt",
            "device": "cuda",
            "precision": "int8",
            "calibration": {"video": "c.mp4", "frames": 100},
            "accuracy_gate": {"frames": 50, "min_recall_vs_fp16": 0.9},
        },
        {
            "device": "cuda:1",
            "providers": ["TensorrtExecutionProvider", "CUDAExecutionProvider"],
            "provider_options": {"TensorrtExecutionProvider": {"trt_fp16_enable": True}},
        },
    ],
)
def test_valid_combinations(fields):
    _stage(**fields)


def test_provider_options_and_device_id():
    cfg = _stage(
        device="cuda:1",
        providers=["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
        provider_options={
            "TensorrtExecutionProvider": {"trt_fp16_enable": True, "trt_engine_cache_enable": True}
        },
    )
    assert onnx_providers(cfg) == [
        (
            "TensorrtExecutionProvider",
            {"trt_fp16_enable": "True", "trt_engine_cache_enable": "True", "device_id": "1"},
        ),
        ("CUDAExecutionProvider", {"device_id": "1"}),
        "CPUExecutionProvider",
    ]


def test_unavailable_gpu_provider_names_the_available_ones_and_the_package(data):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    model = data("models/yolox_nano.onnx")
    with pytest.raises(BackendError) as exc:
        OnnxRuntimeBackend(model, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    msg = str(exc.value)
    assert "'CUDAExecutionProvider' is not available" in msg
    assert "available: " in msg and "CPUExecutionProvider" in msg
    assert "pip install onnxruntime-gpu" in msg and "\n" not in msg


def test_yaml_paths_of_the_gpu_fields_resolve_relative_to_the_yaml(tmp_path: Path):
    (tmp_path / "p.yaml").write_text(
        "name: p\n"
        "sources: [{type: video_file, path: v.mp4}]\n"
        "stages:\n"
        "  - {type: detect, model: m.onnx, backend: tensorrt, device: cuda, precision: int8,\n"
        "     engine_cache_dir: engines, calibration: {video: calib.mp4, frames: 10},\n"
        "     accuracy_gate: {video: val.mp4}}\n"
    )
    det = load_pipeline(tmp_path / "p.yaml").stages[0]
    assert isinstance(det, DetectStageConfig)
    assert det.engine_cache_dir == tmp_path / "engines"
    assert det.calibration is not None and det.calibration.video == tmp_path / "calib.mp4"
    assert det.accuracy_gate is not None and det.accuracy_gate.video == tmp_path / "val.mp4"


def test_config_error_names_the_stage(tmp_path: Path):
    (tmp_path / "p.yaml").write_text(
        "name: p\nsources: [{type: video_file, path: v.mp4}]\n"
        "stages: [{type: detect, model: m.onnx, backend: tensorrt}]\n"
    )
    with pytest.raises(ConfigError, match=r"stages\[0\].*backend tensorrt needs device cuda"):
        load_pipeline(tmp_path / "p.yaml")
