#!/usr/bin/env python3
"""A pipeline with one model run at a time against two runs at once, in one run.

For models with a fixed batch of 1 (``yolov8n_int8_dynamic.onnx``,
``yolox_nano.onnx``) on the ONNX Runtime CPU backend.

Method: the pipeline YAML (default ``pipelines/car_detection_sliced.yaml``: decode,
sliced YOLOX-nano with 6 tiles + the full frame, ByteTrack, annotated MP4, JSONL,
MOT) runs on its first ``--frames`` frames in two configurations of its detect stage:

* ``1x2``: ``parallel_runs: 1, intra_op_threads: 2, max_batch: 1``: one image at a
  time, its operators split over two threads (ONNX Runtime's usual way);
* ``2x1``: ``parallel_runs: 2, intra_op_threads: 1``: two batch-1 runs at once, one
  thread each: two tiles of a frame with ``slicing:`` (``max_batch: 1``), else two
  frames (``max_batch: 2``; the stage takes what is queued, it never waits for a
  second frame: ``max_wait_ms`` stays 0).

Each round runs both, in an order that alternates per round, each run building its
own ONNX Runtime session. Printed: frames/s per run, the median of the per-round
ratios ``2x1 fps / 1x2 fps`` with its min-max, and whether both configurations wrote
the same tracks (``tracks.jsonl`` without its wall-clock fields).

Usage::

    python scripts/bench_parallel_runs.py [PIPELINE.yaml] [--frames 150] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from streamer.cli import run_pipeline
from streamer.config.loader import load_pipeline
from streamer.config.schema import DetectStageConfig

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {"1x2": (1, 2), "2x1": (2, 1)}  # name -> (parallel_runs, intra_op_threads)
MAX_WAIT_MS = 0.0  # the detect stage never waits for a batch to fill
WALL_FIELDS = ("timestamp", "wall_time_s")


def run_once(pipeline: Path, frames: int, parallel_runs: int, threads: int, out: Path) -> float:
    """Run the pipeline with the given detect-stage threading; returns frames/s."""
    cfg = load_pipeline(pipeline)
    det = cfg.stages[0]
    if not isinstance(det, DetectStageConfig) or det.backend != "onnxruntime":
        raise SystemExit(f"{pipeline}: stages[0] must be a detect stage on onnxruntime")
    det.parallel_runs, det.intra_op_threads = parallel_runs, threads
    det.max_batch = parallel_runs if det.slicing is None else 1
    det.max_wait_ms = MAX_WAIT_MS
    for src in cfg.sources:
        src.max_frames = frames  # type: ignore[union-attr]
    t0 = time.perf_counter()
    result = run_pipeline(cfg, out, show_progress=False)
    elapsed_s = time.perf_counter() - t0
    if not result.ok:
        raise SystemExit(f"pipeline failed: {result.errors}")
    return result.packets_out / elapsed_s


def tracks_without_wall_clock(out: Path) -> list[dict]:
    rows = [json.loads(line) for line in (out / "tracks.jsonl").read_text().splitlines()]
    for r in rows:
        for f in WALL_FIELDS:
            r.pop(f, None)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument(
        "pipeline", nargs="?", type=Path, default=REPO / "pipelines/car_detection_sliced.yaml"
    )
    ap.add_argument("--frames", type=int, default=150, help="frames per run (default 150)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of both runs (default 3)")
    args = ap.parse_args()

    print(
        f"{args.pipeline.name}: {args.frames} frames per run, {args.rounds} rounds, "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}"
    )
    fps: dict[str, list[float]] = {k: [] for k in CONFIGS}
    tracks: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = list(CONFIGS) if r % 2 == 0 else list(reversed(CONFIGS))
            for name in order:
                runs, threads = CONFIGS[name]
                out = Path(tmp) / f"{name}_{r}"
                fps[name].append(run_once(args.pipeline, args.frames, runs, threads, out))
                tracks.setdefault(name, tracks_without_wall_clock(out))
                print(f"  round {r + 1} {name}: {fps[name][-1]:6.2f} frames/s", flush=True)
    ratios = [b / a for a, b in zip(fps["1x2"], fps["2x1"], strict=True)]
    for name, values in fps.items():
        print(
            f"{name} (parallel_runs x intra_op_threads): median "
            f"{statistics.median(values):.2f} frames/s"
        )
    print(
        f"2x1 / 1x2 frames/s: median {statistics.median(ratios):.2f} "
        f"(min {min(ratios):.2f}, max {max(ratios):.2f})"
    )
    same = tracks["1x2"] == tracks["2x1"]
    print(f"same tracks in both configurations: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
