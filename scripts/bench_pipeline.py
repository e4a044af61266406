#!/usr/bin/env python3
"""End-to-end pipeline fps against detector-only fps, measured in one run.

Detector-only: the same frames (decoded into memory first), the same model and
thread settings, one loop of preprocess -> inference -> postprocess over batches of
the stage's ``max_batch`` frames. Pipeline: the
whole pipeline YAML (decode, preprocess, detection, ByteTrack, annotated MP4, JSONL,
MOT) on the same frames of the same file. The two are interleaved ``--repeats``
times and the medians are compared, because this machine's speed drifts (see
FIELD-NOTES: compare only ratios measured in one run).

Usage::

    python scripts/bench_pipeline.py pipelines/pets09_people.yaml --frames 300
    python scripts/bench_pipeline.py pipelines/pets09_yolox.yaml --target 0.8
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from streamer.cli import run_pipeline
from streamer.config.loader import load_pipeline
from streamer.config.schema import DetectStageConfig
from streamer.pipeline.build import make_detector


def decode_frames(path: Path, limit: int) -> list[np.ndarray]:
    frames: list[np.ndarray] = []
    with av.open(str(path)) as container:
        for vf in container.decode(video=0):
            frames.append(vf.to_ndarray(format="bgr24"))
            if len(frames) >= limit:
                break
    return frames


def detector_only_fps(detector, frames: list[np.ndarray], batch: int) -> float:  # type: ignore[no-untyped-def]
    """Frames/s of the bare detector, ``batch`` frames per call (the stage's
    ``max_batch``: a fixed-batch model with ``parallel_runs`` runs them at once)."""
    detector.detect_batch(frames[:batch])  # warm-up
    t0 = time.perf_counter()
    for start in range(0, len(frames), batch):
        detector.detect_batch(frames[start : start + batch])
    return len(frames) / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("pipeline", type=Path)
    ap.add_argument("--frames", type=int, default=200, help="frames per pass (default 200)")
    ap.add_argument("--repeats", type=int, default=2, help="interleaved passes (default 2)")
    ap.add_argument("--target", type=float, default=0.9, help="target ratio (default 0.9)")
    args = ap.parse_args()

    cfg = load_pipeline(args.pipeline)
    det_cfg = cfg.stages[0]
    assert isinstance(det_cfg, DetectStageConfig)
    src = cfg.sources[0]
    src.max_frames = args.frames
    frames = decode_frames(src.path, args.frames)
    detector = make_detector(det_cfg)
    print(
        f"model {det_cfg.model.name}, layout {detector.layout}, input {detector.input_wh}, "
        f"intra_op_threads {det_cfg.intra_op_threads}, parallel_runs {det_cfg.parallel_runs}, "
        f"max_batch {det_cfg.max_batch}, {len(frames)} frames of {src.path.name}"
    )
    det_fps: list[float] = []
    pipe_fps: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            det_fps.append(detector_only_fps(detector, frames, det_cfg.max_batch))
            result = run_pipeline(cfg, Path(tmp) / f"run{r}", show_progress=False)
            if result.errors:
                print("pipeline failed:", result.errors, file=sys.stderr)
                return 1
            pipe_fps.append(result.fps)
            stages = ", ".join(f"{s.name} {s.latency.mean_ms:.1f}" for s in result.stage_stats)
            print(
                f"pass {r + 1}: detector-only {det_fps[-1]:.2f} fps, pipeline "
                f"{pipe_fps[-1]:.2f} fps (stage mean ms: {stages})"
            )
    d, p = statistics.median(det_fps), statistics.median(pipe_fps)
    ratio = p / d
    verdict = "meets" if ratio >= args.target else "MISSES"
    print(
        f"\nmedian detector-only {d:.2f} fps ({1000 / d:.1f} ms/frame), pipeline {p:.2f} fps "
        f"({1000 / p:.1f} ms/frame): ratio {ratio:.3f} ({verdict} target {args.target})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
