"""A pipeline with a ``slicing:`` block runs on video with tracking and reports tiles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import require_data

from streamer.cli import run_pipeline
from streamer.config.loader import load_pipeline

REPO = Path(__file__).resolve().parents[2]
FRAMES = 105  # cars pass from frame ~65 on; full-frame YOLOX sees them only at ~100


def run(
    tmp_path: Path, name: str, sliced: bool, pipeline: str = "car_detection_sliced"
) -> tuple[dict, list[dict]]:
    require_data("videos/car-detection.mp4")
    require_data("models/yolox_nano.onnx")
    cfg = load_pipeline(REPO / f"pipelines/{pipeline}.yaml")
    cfg.sources[0].max_frames = FRAMES
    if not sliced:
        cfg.stages[0].slicing = None  # type: ignore[union-attr]
    out = tmp_path / name
    result = run_pipeline(cfg, out, show_progress=False)
    assert result.ok, result.errors
    summary = json.loads((out / "summary.json").read_text())
    records = [json.loads(x) for x in (out / "tracks.jsonl").read_text().splitlines()]
    return summary, records


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[dict, list[dict]]]:
    base = tmp_path_factory.mktemp("sliced")
    return {
        "sliced": run(base, "sliced", True),
        "full": run(base, "full", False),
        "adaptive": run(base, "adaptive", True, "car_detection_adaptive"),
    }


def test_summary_reports_tiles_and_stage_times(runs: dict) -> None:
    summary, records = runs["sliced"]
    assert summary["packets_out"] == FRAMES and len(records) == FRAMES
    # 768x432 with 416 px tiles and 20 % overlap: a 3 x 2 grid, plus the full frame.
    assert summary["slicing"]["tiles_per_frame"] == 6
    assert summary["slicing"]["images_inferred"] == FRAMES * 7
    assert {s["name"] for s in summary["stages"]} >= {"preprocess", "detect", "track"}
    assert all(s["mean_ms"] > 0 for s in summary["stages"])
    assert "slicing" not in runs["full"][0]


def test_slicing_finds_more_cars_and_tracks_them(runs: dict) -> None:
    sliced = sum(len(r["tracks"]) for r in runs["sliced"][1])
    full = sum(len(r["tracks"]) for r in runs["full"][1])
    assert sliced > full
    ids = {t["track_id"] for r in runs["sliced"][1] for t in r["tracks"]}
    assert ids  # tracked, with ids
    for r in runs["sliced"][1]:
        for t in r["tracks"]:
            # Track boxes are Kalman estimates: they may poke a pixel out of the frame.
            x1, y1, x2, y2 = t["xyxy"]
            assert -2 <= x1 < x2 <= 770 and -2 <= y1 < y2 <= 434


def test_adaptive_slicing_runs_fewer_tiles_and_keeps_the_tracks(runs: dict) -> None:
    summary, records = runs["adaptive"]
    assert summary["slicing"]["adaptive"] is True
    assert summary["slicing"]["tiles_per_frame"] < 0.6 * 6
    sliced = sum(len(r["tracks"]) for r in runs["sliced"][1])
    adaptive = sum(len(r["tracks"]) for r in records)
    assert adaptive >= 0.9 * sliced


def test_detect_stage_runs_tiles_in_parallel_and_recycles_batches() -> None:
    """``parallel_runs: 2`` from the YAML reaches the backend and gives the same
    detections as one run at a time; the detect stage hands each tile batch back,
    so the next frame's preprocessing reuses it; closing the stage stops the
    backend's worker threads."""
    import threading

    import cv2
    import numpy as np

    from streamer.config.schema import DetectStageConfig
    from streamer.pipeline.build import make_frame_detector
    from streamer.pipeline.stages import DetectStage, PreprocessStage
    from streamer.types import Frame, Packet

    cfg = load_pipeline(REPO / "pipelines/car_detection_sliced.yaml")
    stage_cfg = cfg.stages[0]
    assert isinstance(stage_cfg, DetectStageConfig)
    cap = cv2.VideoCapture(str(require_data("videos/car-detection.mp4")))
    decoded = [cap.read()[1] for _ in range(101)]
    cap.release()
    images = decoded[80::10]  # cars are in view from frame ~65 on

    def detect(parallel_runs: int) -> tuple[list, list[bool]]:
        c = stage_cfg.model_copy(update={"parallel_runs": parallel_runs, "intra_op_threads": 1})
        detector = make_frame_detector(c)
        pre, det = PreprocessStage(detector), DetectStage(detector)
        out, reused, previous = [], [], None
        for i, image in enumerate(images):
            frame = Frame(source_id="a", seq=i, pts_ns=i * 80_000_000, capture_ns=0, image=image)
            (p,) = pre.process([Packet(frame)])
            tensor = p.input_tensor
            reused.append(previous is not None and np.shares_memory(tensor, previous))
            (p,) = det.process([p])
            out.append(p.detections)
            previous = tensor
        assert detector.detector.backend.parallel_runs == parallel_runs  # type: ignore[union-attr]
        det.close()
        return out, reused

    seq, reused = detect(1)
    assert reused == [False, True, True]
    par, _ = detect(2)
    assert not [t for t in threading.enumerate() if t.name.startswith("ort-chunk")]
    for a, b in zip(seq, par, strict=True):
        np.testing.assert_array_equal(a.xyxy, b.xyxy)
        np.testing.assert_array_equal(a.class_id, b.class_id)
    assert sum(len(d) for d in seq) > 0
