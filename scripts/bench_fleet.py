#!/usr/bin/env python3
"""Fleet benchmark: the same file cameras run directly and as Ray actors.

Measured in one run (this machine's speed drifts; compare ratios, see FIELD-NOTES):

1. **Per-stream overhead**: each camera alone, directly (``streamer run`` of its
   resolved pipeline, in a fresh process) and as the only camera of a fleet on a
   one-node Ray cluster (an actor: a Ray worker process), interleaved
   ``--repeats`` times; the pipeline's own frames/s (frames / ``Pipeline.run`` wall
   time, from ``summary.json``) are compared, medians per camera. The one-off cost of
   an actor (process start, imports, model load) is reported apart.
2. **Throughput**: all cameras at once on a Ray cluster with one worker node
   (``--cpus`` CPUs) and with two worker nodes (half the CPUs each), total frames
   divided by the fleet's wall time (actor start included), and the sum of the
   cameras' pipeline frames/s. Directly, one camera after another, for reference.

Worker nodes are ``ray start`` processes on 127.0.0.1 (:class:`LocalRayCluster`):
on one machine two nodes share the same cores, so they cannot beat one.

Usage::

    python scripts/bench_fleet.py                       # 4 cameras x 150 frames
    python scripts/bench_fleet.py --cameras 8 --frames 100 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from streamer.cli import run_pipeline
from streamer.config.loader import dump_resolved
from streamer.config.schema import PipelineConfig
from streamer.data import data_path
from streamer.fleet.loader import load_fleet
from streamer.fleet.local_cluster import LocalRayCluster
from streamer.fleet.schema import RestartConfig
from streamer.fleet.supervisor import FleetSupervisor, RayEngine

REPO = Path(__file__).resolve().parents[1]
CLIPS = ["videos/pets09_s2l1_480x360.mp4", "videos/one-by-one-person-detection.mp4"]


def write_fleet(
    folder: Path, pipeline: Path, cams: list[tuple[str, str]], frames: int, cpus: float
) -> Path:
    doc = {
        "name": "bench",
        "pipeline": str(pipeline),
        "placement": {"num_cpus": cpus},
        "restart": {"max_restarts": 0},
        "poll_s": 0.25,
        "cameras": [
            {"id": cid, "source": {"path": str(data_path(clip)), "max_frames": frames}}
            for cid, clip in cams
        ],
    }
    path = folder / f"fleet-{'-'.join(c for c, _ in cams)}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def run_direct(cfg: PipelineConfig, run_dir: Path) -> None:
    """``streamer run`` of a camera's resolved pipeline, in a fresh process (as an actor
    is), so that this process's Ray driver threads do not share its cores' time."""
    run_dir.mkdir(parents=True)
    path = run_dir.parent / f"{run_dir.name}.yaml"
    path.write_text(dump_resolved(cfg))
    cmd = [sys.executable, "-m", "streamer.cli", "run", str(path), "-o", str(run_dir)]
    proc = subprocess.run([*cmd, "--no-progress"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")


def summary_fps(run_dir: Path) -> tuple[int, float]:
    s = json.loads((run_dir / "summary.json").read_text())
    return int(s["packets_out"]), float(s["wall_s"])


def run_fleet(fleet_path: Path, run_dir: Path) -> tuple[float, list[dict[str, Any]]]:
    fleet = load_fleet(fleet_path)
    sup = FleetSupervisor(
        "bench",
        RayEngine(),
        run_dir,
        RestartConfig.model_validate({"max_restarts": 0}),
        poll_s=0.25,
        on_event=lambda line: None,
    )
    t0 = time.perf_counter()
    rows = sup.run(fleet.cameras)
    wall = time.perf_counter() - t0
    bad = [r for r in rows if r["state"] != "finished"]
    if bad:
        raise SystemExit(f"cameras did not finish: {bad}")
    return wall, rows


def connect(cluster: LocalRayCluster) -> None:
    import ray

    os.environ.update(cluster.env)
    ray.init(address=cluster.address, namespace="bench", log_to_driver=False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cameras", type=int, default=4, help="file cameras (default 4)")
    ap.add_argument("--frames", type=int, default=150, help="frames per camera (default 150)")
    ap.add_argument("--repeats", type=int, default=3, help="per-stream passes (default 3)")
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 2, help="Ray CPUs in all")
    ap.add_argument(
        "--pipeline",
        type=Path,
        default=REPO / "fleets" / "pipelines" / "people_files.yaml",
        help="camera pipeline (default fleets/pipelines/people_files.yaml)",
    )
    ap.add_argument("--overhead-target", type=float, default=0.05, help="default 0.05 (5 %%)")
    args = ap.parse_args()
    import ray

    cams = [(f"cam{i + 1}", CLIPS[i % len(CLIPS)]) for i in range(args.cameras)]
    ids = [c for c, _ in cams]
    work = Path(tempfile.mkdtemp(prefix="bench_fleet_"))
    cpus_per_camera = args.cpus / args.cameras
    print(
        f"bench_fleet: {args.cameras} cameras x {args.frames} frames, {args.pipeline.name}, "
        f"{os.cpu_count()} cores, Ray {ray.__version__}; {cpus_per_camera:g} Ray CPUs per camera"
    )

    # -- 1. per-stream: direct vs alone under Ray (one worker node with every CPU) ------
    fleet_all = load_fleet(write_fleet(work, args.pipeline, cams, args.frames, cpus_per_camera))
    direct: dict[str, list[float]] = {c: [] for c in ids}
    under_ray: dict[str, list[float]] = {c: [] for c in ids}
    start_cost: list[float] = []
    one_after_another: list[float] = []
    with LocalRayCluster() as cluster:
        cluster.add_worker("w1", num_cpus=args.cpus)
        connect(cluster)
        try:
            warm = fleet_all.cameras[0].config.model_copy(deep=True)
            warm.sources[0].max_frames = 20
            run_pipeline(warm, work / "warm-up", show_progress=False)  # caches, first loads
            for r in range(args.repeats):
                total_frames, total_wall = 0, 0.0
                for spec in fleet_all.cameras:
                    alone = [c for c in cams if c[0] == spec.id]
                    one = write_fleet(work, args.pipeline, alone, args.frames, 1.0)
                    d = work / f"direct-{r}-{spec.id}"
                    for mode in ("direct", "ray") if r % 2 == 0 else ("ray", "direct"):
                        if mode == "direct":
                            run_direct(spec.config, d)
                            frames, wall = summary_fps(d)
                            direct[spec.id].append(frames / wall)
                            total_frames += frames
                            total_wall += wall
                        else:
                            _, rows = run_fleet(one, work / f"ray-{r}-{spec.id}")
                            frames, wall = summary_fps(work / f"ray-{r}-{spec.id}" / spec.id)
                            under_ray[spec.id].append(frames / wall)
                            start_cost.append(rows[0]["history"][-1]["ran_s"] - wall)
                one_after_another.append(total_frames / total_wall)
            # -- 2a. throughput, one worker node --------------------------------------
            wall1, _ = run_fleet(
                write_fleet(work, args.pipeline, cams, args.frames, cpus_per_camera),
                work / "ray-1node",
            )
        finally:
            ray.shutdown()
    sums1 = [summary_fps(work / "ray-1node" / c) for c in ids]
    # -- 2b. throughput, two worker nodes --------------------------------------------
    with LocalRayCluster() as cluster:
        half = args.cpus / 2
        cluster.add_worker("w1", num_cpus=half)
        cluster.add_worker("w2", num_cpus=half)
        connect(cluster)
        try:
            wall2, rows2 = run_fleet(
                write_fleet(work, args.pipeline, cams, args.frames, cpus_per_camera),
                work / "ray-2nodes",
            )
        finally:
            ray.shutdown()
    sums2 = [summary_fps(work / "ray-2nodes" / c) for c in ids]
    nodes2 = {r["history"][-1]["node_id"] for r in rows2}

    print(f"\nper-stream, each camera alone (median of {args.repeats} interleaved passes):")
    ratios = []
    for c in ids:
        d, u = statistics.median(direct[c]), statistics.median(under_ray[c])
        ratios.append(u / d)
        spread = [f"{x / y:.2f}" for x, y in zip(under_ray[c], direct[c], strict=True)]
        print(
            f"  {c}: direct {d:6.1f} fps   under Ray {u:6.1f} fps   ratio {u / d:.3f} "
            f"(passes: {', '.join(spread)})"
        )
    overhead = 1.0 - statistics.median(ratios)
    print(
        f"  per-stream overhead of Ray: {overhead * 100:+.1f} % (median; target < "
        f"{args.overhead_target * 100:.0f} %); actor start + model load "
        f"{statistics.median(start_cost):.2f} s per camera start (median, not in fps)"
    )
    total = args.cameras * args.frames
    print(f"\nthroughput, {args.cameras} cameras x {args.frames} frames = {total} frames:")
    sequential = statistics.median(one_after_another)
    print(f"  direct, one camera after another          {sequential:6.1f} fps")
    print(
        f"  Ray, 1 worker node ({args.cpus:g} CPUs)            {total / wall1:6.1f} fps "
        f"(fleet wall {wall1:.1f} s incl. actor start; sum of camera fps "
        f"{sum(f / w for f, w in sums1):.1f})"
    )
    print(
        f"  Ray, 2 worker nodes ({args.cpus / 2:g} CPUs each)     {total / wall2:6.1f} fps "
        f"(fleet wall {wall2:.1f} s incl. actor start; sum of camera fps "
        f"{sum(f / w for f, w in sums2):.1f}; cameras on {len(nodes2)} nodes)"
    )
    print(f"  2 nodes / 1 node: {wall1 / wall2:.2f}x (same {os.cpu_count()} cores underneath)")
    print(f"\noutputs in {work}")
    return 0 if overhead < args.overhead_target else 1


if __name__ == "__main__":
    sys.exit(main())
