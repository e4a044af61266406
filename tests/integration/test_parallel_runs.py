"""Two batch-1 model runs at once give the same pipeline output as one at a time.

``pipelines/pets09_people.yaml`` ships with ``max_batch: 2, parallel_runs: 2,
intra_op_threads: 1`` (two frames per detect call, each its own batch-1 run on one
thread). Its tracks must equal those of the same pipeline run one frame at a time on
two threads, frame for frame and value for value.
"""

from __future__ import annotations

import json
from pathlib import Path

from conftest import require_data

from streamer.cli import run_pipeline
from streamer.config.loader import load_pipeline
from streamer.config.schema import DetectStageConfig

REPO = Path(__file__).resolve().parents[2]
FRAMES = 40


def _tracks(tmp_path: Path, name: str, **detect: object) -> tuple[list[dict], int]:
    """The run's tracks (wall-clock fields dropped) and its detect-stage batches."""
    cfg = load_pipeline(REPO / "pipelines/pets09_people.yaml")
    det = cfg.stages[0]
    assert isinstance(det, DetectStageConfig)
    for key, value in detect.items():
        setattr(det, key, value)
    cfg.sources[0].max_frames = FRAMES
    result = run_pipeline(cfg, tmp_path / name, show_progress=False)
    assert result.ok, result.errors
    rows = [json.loads(x) for x in (tmp_path / name / "tracks.jsonl").read_text().splitlines()]
    for r in rows:
        del r["timestamp"], r["wall_time_s"]  # wall clock
    summary = json.loads((tmp_path / name / "summary.json").read_text())
    (batches,) = [s["batches"] for s in summary["stages"] if s["name"] == "detect"]
    return rows, batches


def test_two_frames_at_once_track_like_one_at_a_time(tmp_path: Path) -> None:
    require_data("videos/pets09_s2l1_480x360.mp4")
    require_data("models/yolov8n_int8_dynamic.onnx")
    shipped = load_pipeline(REPO / "pipelines/pets09_people.yaml").stages[0]
    assert isinstance(shipped, DetectStageConfig)
    assert (shipped.max_batch, shipped.parallel_runs, shipped.intra_op_threads) == (2, 2, 1)
    parallel, parallel_batches = _tracks(tmp_path, "parallel")
    serial, serial_batches = _tracks(
        tmp_path, "serial", max_batch=1, parallel_runs=1, intra_op_threads=2
    )
    # Detection is the slow stage, so frames queue up and most calls take two.
    assert serial_batches == FRAMES and parallel_batches <= 0.75 * FRAMES, parallel_batches
    assert len(parallel) == FRAMES and sum(len(r["tracks"]) for r in parallel) > 2 * FRAMES
    assert parallel == serial
