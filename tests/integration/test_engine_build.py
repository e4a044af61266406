"""Engine builds from pipeline configs, without TensorRT: what can be checked on a CPU.

``ensure_engine`` is run with the machine facts given explicitly and a stand-in for
TensorRT's builder that records its arguments and returns a small fake plan: this
checks our part (shapes from the model, INT8 calibration frames from a real clip,
cache keys, reuse) — TensorRT's own build is not exercised here (see the gpu tests).
The ``streamer engine`` commands are run for real; without TensorRT ``build`` fails
with one line and exit status 1.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from conftest import require_data

from streamer.config.schema import DetectStageConfig
from streamer.detect.engine_cache import EngineCache, MachineFacts
from streamer.pipeline.engines import engine_spec, ensure_engine, sample_frames

REPO = Path(__file__).resolve().parents[2]
ORIN = MachineFacts("10.3.0", "Orin", "8.7", "R36.4.0")


class FakeBuilder:
    """Records each build's arguments; returns a plan naming them."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, onnx_path: Path, **kwargs: Any) -> bytes:
        self.calls.append({"onnx": Path(onnx_path), **kwargs})
        return f"plan {kwargs['precision']} {kwargs['max_shape']}".encode()


def _cfg(**kw: Any) -> DetectStageConfig:
    base = {
        "type": "detect",
        "model": require_data("models/yolox_nano.onnx"),
        "backend": "tensorrt",
        "device": "cuda",
        "precision": "fp16",
    }
    return DetectStageConfig.model_validate({**base, **kw})


def test_fp16_engine_built_once_with_the_models_shapes(tmp_path):
    builder = FakeBuilder()
    cache = EngineCache(tmp_path)
    cfg = _cfg()
    r1 = ensure_engine(cfg, facts=ORIN, cache=cache, builder=builder)
    r2 = ensure_engine(cfg, facts=ORIN, cache=cache, builder=builder)
    assert r1.built and not r2.built and len(builder.calls) == 1
    call = builder.calls[0]
    # yolox_nano.onnx has a fixed batch of 1 at 416x416: min = opt = max
    assert call["min_shape"] == call["opt_shape"] == call["max_shape"] == (1, 3, 416, 416)
    assert call["precision"] == "fp16" and call["calibration"] is None
    assert r2.entry.read_plan() == b"plan fp16 (1, 3, 416, 416)"
    assert r2.entry.meta["model_name"] == "yolox_nano.onnx"
    # another GPU, or another precision, is another engine
    ensure_engine(
        cfg,
        facts=MachineFacts("10.3.0", "Orin Nano", "8.7", "R36.4.0"),
        cache=cache,
        builder=builder,
    )
    ensure_engine(_cfg(precision="fp32"), facts=ORIN, cache=cache, builder=builder)
    assert len(builder.calls) == 3 and len(cache.entries()) == 3


def test_dynamic_batch_models_get_a_1_to_max_batch_profile(tmp_path):
    cfg = _cfg(model=require_data("models/yolov8n_int8_dynamic.onnx"), max_batch=4)

    class Probe:  # the shape facts engine_spec reads from an ONNX Runtime session
        input_hw = (640, 640)
        fixed_batch = None
        input_name = "images"

    spec = engine_spec(cfg, Probe())  # type: ignore[arg-type]
    assert (spec.min_shape, spec.opt_shape, spec.max_shape) == (
        (1, 3, 640, 640),
        (4, 3, 640, 640),
        (4, 3, 640, 640),
    )


def test_int8_calibrates_on_frames_of_the_clip_and_keys_by_them(tmp_path):
    video = require_data("videos/pets09_s2l1_480x360.mp4")
    builder = FakeBuilder()
    cache = EngineCache(tmp_path)
    cfg = _cfg(precision="int8", calibration={"video": video, "frames": 12})
    ensure_engine(cfg, facts=ORIN, cache=cache, builder=builder)
    calib = builder.calls[0]["calibration"]
    assert isinstance(calib, np.ndarray) and calib.shape == (12, 3, 416, 416)
    assert calib.dtype == np.float32
    assert calib.min() >= 0.0 and calib.max() <= 255.0  # YOLOX: raw 0-255 BGR
    assert len({float(c.mean()) for c in calib}) > 1  # different frames, spread over the clip
    ensure_engine(cfg, facts=ORIN, cache=cache, builder=builder)
    assert len(builder.calls) == 1  # reused
    more = _cfg(precision="int8", calibration={"video": video, "frames": 16})
    ensure_engine(more, facts=ORIN, cache=cache, builder=builder)
    assert len(builder.calls) == 2  # other calibration data: another engine


def test_sample_frames_spreads_over_the_clip():
    video = require_data("videos/pets09_s2l1_480x360.mp4")
    frames = sample_frames(video, 5)
    assert len(frames) == 5 and frames[0].shape == (360, 480, 3)
    assert not np.array_equal(frames[0], frames[-1])


def _streamer(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "250"}  # rich tables: no wrapping
    return subprocess.run(
        [sys.executable, "-m", "streamer", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env=env,
    )


def _has_tensorrt() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(_has_tensorrt(), reason="tensorrt is installed here")
def test_engine_build_without_tensorrt_fails_with_one_line(tmp_path):
    model = require_data("models/yolox_nano.onnx")
    r = _streamer("engine", "build", str(model), "--precision", "fp16", "--cache", str(tmp_path))
    assert r.returncode == 1
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: backend 'tensorrt' needs the tensorrt package")
    assert "Traceback" not in r.stderr


def test_engine_build_of_a_non_tensorrt_pipeline(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "p",
                "sources": [{"type": "video_file", "path": "x.mp4"}],
                "stages": [{"type": "detect", "model": "m.onnx"}],
            }
        )
    )
    r = _streamer("engine", "build", str(path))
    assert r.returncode == 2 and "stages[0].backend is onnxruntime" in r.stderr
    r = _streamer("engine", "build", "--only-tensorrt", str(path))
    assert r.returncode == 0 and "no engine to build" in r.stderr


def test_engine_build_rejects_bad_overrides(tmp_path):
    model = require_data("models/yolox_nano.onnx")
    r = _streamer("engine", "build", str(model), "--precision", "int8")
    assert r.returncode == 2 and "calibration" in r.stderr
    r = _streamer("engine", "build", str(tmp_path / "notes.txt"))
    assert r.returncode == 2 and "pipeline .yaml or a model .onnx" in r.stderr


def test_engine_list_shows_cached_engines(tmp_path):
    builder = FakeBuilder()
    ensure_engine(_cfg(), facts=ORIN, cache=EngineCache(tmp_path), builder=builder)
    r = _streamer("engine", "list", "--cache", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "yolox_nano" in r.stdout and "fp16" in r.stdout and "sm 8.7" in r.stdout


def test_build_progress_display_follows_tensorrt_phases():
    """The rich display fed with the IProgressMonitor call sequence TensorRT makes."""
    import io

    from rich.console import Console

    from streamer.cli_engine import RichBuildProgress

    console = Console(file=io.StringIO(), force_terminal=False, width=100)
    with RichBuildProgress(console) as display:
        display.phase_start("Building engine", None, 3)
        for step in range(3):
            display.phase_start("Tactic timing", "Building engine", 2)
            assert display.step_complete("Tactic timing", 0)
            assert display.step_complete("Tactic timing", 1)
            display.phase_finish("Tactic timing")
            display.step_complete("Building engine", step)
        display.phase_finish("Building engine")
        display.phase_finish("never started")  # tolerated
    tasks = display.progress.tasks
    assert [t.description for t in tasks] == ["Building engine"]  # sub-phases removed
    assert tasks[0].completed == tasks[0].total == 3
