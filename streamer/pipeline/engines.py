"""Inference backends from a ``detect`` stage config, and TensorRT engines with a cache.

* :func:`make_backend` builds the backend a ``detect`` stage asks for: ONNX Runtime
  (with its execution providers and their options), torch, or TensorRT.
* :func:`ensure_engine` returns the TensorRT engine of a stage from the engine cache,
  building it (once, under a lock) when absent: FP16/FP32, or INT8 calibrated on
  frames of a clip and, with ``accuracy_gate``, compared with the FP16 engine on a
  validation clip; an INT8 engine that fails the gate is refused (kept on disk with the
  result, so it is neither used nor rebuilt until the gate's settings change).

Only this package and the CLI read config; the components get plain arguments.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streamer.config.schema import GPU_PROVIDERS, DetectStageConfig
from streamer.detect.accuracy_gate import GateResult, evaluate_gate
from streamer.detect.detector import InferenceBackend, YoloDetector
from streamer.detect.engine_cache import (
    CachedEngine,
    EngineCache,
    EngineSpec,
    MachineFacts,
    default_cache_dir,
    detect_machine_facts,
    file_sha256,
)
from streamer.detect.onnx_backend import OnnxRuntimeBackend, ProviderSpec
from streamer.errors import BackendError, SourceError
from streamer.sources.video_file import VideoFileSource

__all__ = [
    "EngineResult",
    "engine_spec",
    "ensure_engine",
    "make_backend",
    "onnx_providers",
    "sample_frames",
]


log = logging.getLogger("streamer.pipeline.engines")


def _device_index(device: str) -> int:
    return int(device.split(":", 1)[1]) if ":" in device else 0


def onnx_providers(cfg: DetectStageConfig) -> list[ProviderSpec]:
    """The stage's providers with their ``provider_options``; ``device: cuda:N`` sets
    ``device_id`` of the GPU providers unless their options already do."""
    out: list[ProviderSpec] = []
    for name in cfg.providers:
        options: dict[str, Any] = dict(cfg.provider_options.get(name, {}))
        if name in GPU_PROVIDERS and cfg.device.startswith("cuda") and "device_id" not in options:
            options["device_id"] = _device_index(cfg.device)
        out.append((name, {k: str(v) for k, v in options.items()}) if options else name)
    return out


def _probe(cfg: DetectStageConfig) -> OnnxRuntimeBackend:
    """A CPU ONNX Runtime session of the model: its input, outputs and metadata."""
    return OnnxRuntimeBackend(cfg.model, providers=("CPUExecutionProvider",), intra_op_threads=1)


def yolo_detector(cfg: DetectStageConfig, backend: InferenceBackend) -> YoloDetector:
    """The stage's :class:`YoloDetector` (layout, thresholds, names) around ``backend``."""
    return YoloDetector(
        backend,
        layout=cfg.layout,
        conf_threshold=cfg.conf_threshold,
        iou_threshold=cfg.iou_threshold,
        class_names=cfg.class_names,
        max_detections=cfg.max_detections,
    )


def sample_frames(video: Path, frames: int) -> list[np.ndarray]:
    """``frames`` frames spread evenly over a clip (all of them if it is shorter).

    Args:
        video: A video file.
        frames: How many, >= 1.

    Returns:
        ``(H, W, 3) uint8`` BGR frames, in clip order.

    Raises:
        SourceError: the clip cannot be read, or holds no frame.
    """
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    src = VideoFileSource(video, source_id="calibration")
    info = src.open()
    try:
        total = info.frame_count
        wanted: set[int] | None = None
        if total is not None and total > frames:
            wanted = {int(i) for i in np.linspace(0, total - 1, frames).round()}
        out: list[np.ndarray] = []
        seq = 0
        while len(out) < frames:
            frame = src.read()
            if frame is None:
                break
            if wanted is None or seq in wanted:
                out.append(np.array(frame.image, copy=True))
            seq += 1
    finally:
        src.close()
    if not out:
        raise SourceError(f"{video}: no frames to sample")
    return out


def engine_spec(
    cfg: DetectStageConfig,
    probe: OnnxRuntimeBackend,
    precision: str | None = None,
    calibration_sha256: str | None = None,
) -> EngineSpec:
    """The :class:`EngineSpec` of a stage: shapes from the model and ``max_batch``.

    A model with a fixed batch ``k`` gets min = opt = max = ``(k, 3, H, W)``; a
    dynamic-batch model gets ``1 .. max_batch`` with ``max_batch`` as the tuning shape.
    """
    h, w = probe.input_hw
    if probe.fixed_batch is not None:
        lo = hi = opt = probe.fixed_batch
    else:
        lo, opt, hi = 1, cfg.max_batch, cfg.max_batch
    prec = precision or cfg.precision
    return EngineSpec(
        model_sha256=file_sha256(cfg.model),
        model_name=cfg.model.name,
        precision=prec,
        input_name=probe.input_name,
        min_shape=(lo, 3, h, w),
        opt_shape=(opt, 3, h, w),
        max_shape=(hi, 3, h, w),
        workspace_mib=cfg.workspace_mib,
        calibration_sha256=calibration_sha256 if prec == "int8" else None,
    )


@dataclass
class EngineResult:
    """What :func:`ensure_engine` found or made.

    Attributes:
        entry: The cache entry of the engine the stage runs.
        built: True when this call built it.
        gate: The INT8 accuracy-gate result when this call evaluated it.
        metadata: The ONNX model's metadata (the plan does not keep it).
    """

    entry: CachedEngine
    built: bool
    gate: GateResult | None
    metadata: dict[str, str]


def _calibration_key(cfg: DetectStageConfig, probe: OnnxRuntimeBackend, layout: str) -> str:
    """SHA-256 naming the calibration data: clip bytes, frame count, preprocessing."""
    import hashlib

    assert cfg.calibration is not None
    parts = [
        file_sha256(cfg.calibration.video),
        str(cfg.calibration.frames),
        layout,
        f"{probe.input_hw[0]}x{probe.input_hw[1]}",
    ]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def ensure_engine(
    cfg: DetectStageConfig,
    *,
    facts: MachineFacts | None = None,
    cache: EngineCache | None = None,
    builder: Callable[..., bytes] | None = None,
    progress: Any = None,
    on_wait: Callable[[], None] | None = None,
    on_build: Callable[[str], None] | None = None,
) -> EngineResult:
    """The TensorRT engine of a ``backend: tensorrt`` stage, from the cache or built now.

    Args:
        cfg: The stage config.
        facts: This machine's facts (default: :func:`detect_machine_facts`).
        cache: The cache (default: ``cfg.engine_cache_dir`` or :func:`default_cache_dir`).
        builder: Builds a plan (default:
            :func:`streamer.detect.tensorrt_backend.build_engine`).
        progress: A :class:`~streamer.detect.tensorrt_backend.BuildProgress`.
        on_wait: Called when another process is building the same engine.
        on_build: Called with a line before each build starts.

    Raises:
        BackendError: tensorrt/torch/CUDA missing, a failed build, an engine for
            another machine, or an INT8 engine refused by the accuracy gate.
    """
    if builder is None:
        from streamer.detect.tensorrt_backend import build_engine

        builder = build_engine
    facts = facts or detect_machine_facts(_device_index(cfg.device))
    cache = cache or EngineCache(cfg.engine_cache_dir or default_cache_dir())
    probe = _probe(cfg)
    layout = yolo_detector(cfg, probe).layout
    calib_key = _calibration_key(cfg, probe, layout) if cfg.precision == "int8" else None
    spec = engine_spec(cfg, probe, calibration_sha256=calib_key)

    def build() -> bytes:
        calibration = None
        if spec.precision == "int8":
            assert cfg.calibration is not None
            frames = sample_frames(cfg.calibration.video, cfg.calibration.frames)
            det = yolo_detector(cfg, probe)
            calibration = np.stack([det.preprocess(f)[0] for f in frames])
        if on_build is not None:
            on_build(
                f"building TensorRT engine {spec.model_name} ({spec.precision}, input "
                f"{spec.max_shape}) for {facts.describe()}; this takes minutes"
            )
        return builder(
            cfg.model,
            precision=spec.precision,
            input_name=spec.input_name,
            min_shape=spec.min_shape,
            opt_shape=spec.opt_shape,
            max_shape=spec.max_shape,
            workspace_mib=spec.workspace_mib,
            calibration=calibration,
            device=cfg.device,
            progress=progress,
        )

    entry, built = cache.get_or_build(spec, facts, build, on_wait=on_wait)
    gate_result = None
    if spec.precision == "int8" and cfg.accuracy_gate is not None:
        entry, gate_result = _apply_gate(
            cfg, entry, cache, facts, spec, probe, builder, progress, on_wait, on_build
        )
    return EngineResult(entry, built, gate_result, dict(probe.metadata))


def _gate_params(cfg: DetectStageConfig) -> dict[str, Any]:
    gate = cfg.accuracy_gate
    assert gate is not None and cfg.calibration is not None
    video = gate.video or cfg.calibration.video
    return {
        "video_sha256": file_sha256(video),
        "frames": gate.frames,
        "min_recall_vs_fp16": gate.min_recall_vs_fp16,
        "iou_threshold": gate.iou_threshold,
        "conf_threshold": cfg.conf_threshold,
        "iou_nms": cfg.iou_threshold,
    }


def _apply_gate(
    cfg: DetectStageConfig,
    entry: CachedEngine,
    cache: EngineCache,
    facts: MachineFacts,
    spec: EngineSpec,
    probe: OnnxRuntimeBackend,
    builder: Callable[..., bytes],
    progress: Any,
    on_wait: Callable[[], None] | None,
    on_build: Callable[[str], None] | None,
) -> tuple[CachedEngine, GateResult | None]:
    """Compare the INT8 engine with FP16 (once per gate setting) and refuse a failure."""
    from streamer.detect.tensorrt_backend import TensorRTBackend

    assert cfg.accuracy_gate is not None and cfg.calibration is not None
    params = _gate_params(cfg)
    recorded = entry.gate
    result: GateResult | None = None
    if recorded is None or recorded.get("params") != params:
        fp16_cfg = cfg.model_copy(
            update={"precision": "fp16", "calibration": None, "accuracy_gate": None}
        )
        fp16 = ensure_engine(
            fp16_cfg,
            facts=facts,
            cache=cache,
            builder=builder,
            progress=progress,
            on_wait=on_wait,
            on_build=on_build,
        )
        meta = dict(probe.metadata)
        ref = yolo_detector(
            cfg,
            TensorRTBackend(
                fp16.entry.read_plan(), device=cfg.device, name=spec.model_name, metadata=meta
            ),
        )
        cand = yolo_detector(
            cfg,
            TensorRTBackend(
                entry.read_plan(), device=cfg.device, name=spec.model_name, metadata=meta
            ),
        )
        video = cfg.accuracy_gate.video or cfg.calibration.video
        frames = sample_frames(video, cfg.accuracy_gate.frames)
        result = evaluate_gate(
            ref,
            cand,
            frames,
            cfg.accuracy_gate.min_recall_vs_fp16,
            cfg.accuracy_gate.iou_threshold,
        )
        recorded = {"params": params, "video": str(video), "result": result.as_dict()}
        entry = cache.update_gate(entry, recorded)
    outcome = recorded.get("result") or {}
    if not outcome.get("passed", False):
        shown = GateResult(**outcome).describe() if outcome else "no result"
        raise BackendError(
            f"INT8 engine of {spec.model_name} refused by the accuracy gate: {shown} "
            f"(validation clip {recorded.get('video')}); use precision: fp16, more or more "
            "representative calibration frames, or a lower "
            f"accuracy_gate.min_recall_vs_fp16 (the engine and result are in {entry.dir})"
        )
    return entry, result


def make_backend(
    cfg: DetectStageConfig,
    *,
    progress: Any = None,
    on_wait: Callable[[], None] | None = None,
    on_build: Callable[[str], None] | None = None,
) -> InferenceBackend:
    """The inference backend a ``detect`` stage asks for.

    Raises:
        BackendError: the model cannot be loaded, a provider or package is missing
            (one line saying what to install), or a TensorRT engine cannot be had.
    """
    if cfg.backend == "onnxruntime":
        return OnnxRuntimeBackend(
            cfg.model,
            providers=onnx_providers(cfg),
            intra_op_threads=cfg.intra_op_threads,
            parallel_runs=cfg.parallel_runs,
        )
    if cfg.backend == "torch":
        from streamer.detect.torch_backend import TorchBackend

        return TorchBackend(cfg.model, device=cfg.device, precision=cfg.precision)
    from streamer.detect.tensorrt_backend import TensorRTBackend, import_tensorrt

    import_tensorrt()  # fail first, with the install hint, before any work
    result = ensure_engine(
        cfg,
        progress=progress,
        on_wait=on_wait or (lambda: log.warning("waiting for another process building the engine")),
        on_build=on_build or log.warning,  # a build takes minutes: say so (stderr by default)
    )
    return TensorRTBackend(
        result.entry.read_plan(),
        device=cfg.device,
        name=cfg.model.name,
        metadata=result.metadata,
    )
