#!/usr/bin/env python
"""Freshness under overload: a live RTSP camera faster than the pipeline.

Starts the real RTSP test server (``scripts/rtsp_server.py``: a 640×480 test pattern
at ``--fps``) and runs YOLOv8n-int8 (640 px, ~8-10 frames/s on 2 CPU cores) +
ByteTrack on it, twice in one run:

* ``drop_oldest`` (streamer's live default) for ``--seconds``: the capture buffer
  keeps the newest frames; latency must stay bounded and flat.
* ``block`` for ``--block-seconds`` (the baseline: what a reader that never drops
  does): lossless, so latency grows with the backlog.

Prints end-to-end latency (capture to the end of the last stage) per window, the
drop counts, and the ratio of the last window's p95 to the first's for both.

    python scripts/bench_freshness.py --seconds 120
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from rtsp_server import RtspServer, rtsp_server_problem  # noqa: E402

from streamer.config.schema import PipelineConfig  # noqa: E402
from streamer.data import data_path  # noqa: E402
from streamer.pipeline.build import build_pipeline  # noqa: E402
from streamer.pipeline.runner import RunResult  # noqa: E402


def config(url: str, policy: str, out: Path) -> PipelineConfig:
    return PipelineConfig.model_validate(
        {
            "name": "freshness",
            "sources": [
                {
                    "type": "rtsp",
                    "id": "cam",
                    "url": url,
                    "buffer": {"capacity": 2, "policy": policy},
                }
            ],
            "stages": [
                {
                    "type": "detect",
                    "model": str(data_path("models/yolov8n_int8_dynamic.onnx")),
                    "classes": ["person"],
                    "intra_op_threads": 2,
                },
                {"type": "track", "tracker": {"type": "bytetrack"}},
                {"type": "jsonl"},
            ],
            "queue": {"capacity": 1, "policy": "block"},
            "output_dir": str(out),
        }
    )


def run_for(url: str, policy: str, seconds: float, out: Path) -> RunResult:
    built = build_pipeline(config(url, policy, out), out)
    pipe = built.pipeline
    threading.Timer(seconds, pipe.request_stop).start()
    return pipe.run(drain_timeout_s=60.0)


def report(name: str, result: RunResult, windows: int) -> dict[str, Any]:
    st = result.sources["cam"]
    lat = st.latency.recent_ms()
    drops = result.channel_stats[0].drops.get("cam", 0)
    print(
        f"\n== {name}: {st.frames} frames read, {drops} dropped in the capture buffer, "
        f"{result.packets_out} processed ({result.fps:.1f} frames/s) in {result.wall_s:.0f} s"
    )
    print(
        f"   latency ms: p50 {np.percentile(lat, 50):.0f}, p95 {np.percentile(lat, 95):.0f}, "
        f"max {lat.max():.0f}"
    )
    chunks = np.array_split(lat, windows)
    p95s = [float(np.percentile(c, 95)) for c in chunks if len(c)]
    print("   p95 per window: " + ", ".join(f"{p:.0f}" for p in p95s))
    growth = p95s[-1] / p95s[0] if p95s and p95s[0] > 0 else float("nan")
    print(f"   last/first window p95: {growth:.2f}x")
    return {"p95": float(np.percentile(lat, 95)), "growth": growth, "drops": drops}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=120.0, help="drop_oldest run length")
    p.add_argument("--block-seconds", type=float, default=30.0, help="block run length")
    p.add_argument("--fps", type=int, default=25, help="camera frame rate")
    p.add_argument("--windows", type=int, default=6)
    args = p.parse_args()
    problem = rtsp_server_problem()
    if problem:
        print(f"cannot run: {problem}", file=sys.stderr)
        return 2
    with (
        TemporaryDirectory() as tmp,
        RtspServer("--fps", str(args.fps), "--width", "640", "--height", "480") as server,
    ):
        fresh = report(
            "drop_oldest",
            run_for(server.url, "drop_oldest", args.seconds, Path(tmp) / "drop"),
            args.windows,
        )
        t0 = time.monotonic()
        lossless = report(
            "block (baseline)",
            run_for(server.url, "block", args.block_seconds, Path(tmp) / "block"),
            args.windows,
        )
        del t0
    print(
        f"\np95 latency drop_oldest {fresh['p95']:.0f} ms vs block {lossless['p95']:.0f} ms "
        f"({lossless['p95'] / fresh['p95']:.1f}x); growth over the run "
        f"{fresh['growth']:.2f}x vs {lossless['growth']:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
