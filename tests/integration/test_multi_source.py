"""Two sources in one pipeline: each has its own tracker and ids, and one source
ending early does not disturb the other (its tracks equal those of a run alone)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import av
import pytest
from conftest import require_data

from streamer.cli import run_pipeline
from streamer.config.schema import PipelineConfig

LONG, SHORT = 120, 30


def config(sources: list[tuple[str, int]]) -> PipelineConfig:
    video = str(require_data("videos/pets09_s2l1_480x360.mp4"))
    model = str(require_data("models/yolox_nano.onnx"))
    return PipelineConfig.model_validate(
        {
            "name": "multi",
            "sources": [
                {"type": "video_file", "id": sid, "path": video, "max_frames": n}
                for sid, n in sources
            ],
            "stages": [
                {"type": "detect", "model": model, "conf_threshold": 0.3, "classes": [0]},
                {"type": "track", "tracker": {"type": "bytetrack", "lost_track_buffer_s": 2.0}},
                {"type": "annotated_video", "path": "{source_id}.mp4"},
                {"type": "jsonl", "path": "tracks.jsonl"},
                {"type": "mot", "path": "{source_id}_mot.txt"},
            ],
        }
    )


def records_by_source(run_dir: Path) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in (run_dir / "tracks.jsonl").read_text().splitlines():
        rec = json.loads(line)
        out[rec["source_id"]].append({"seq": rec["seq"], "tracks": rec["tracks"]})
    return out


Records = dict[str, list[dict[str, Any]]]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("multi")


@pytest.fixture(scope="module")
def runs(base: Path) -> dict[str, Records]:
    results = {}
    for name, sources in {
        "both": [("long", LONG), ("short", SHORT)],
        "long_alone": [("long", LONG)],
        "short_alone": [("short", SHORT)],
    }.items():
        result = run_pipeline(config(sources), base / name, show_progress=False)
        assert result.ok, result.errors
        results[name] = records_by_source(base / name)
    return results


def test_each_source_has_all_its_frames_and_outputs(runs: dict, base: Path) -> None:
    both = runs["both"]
    assert [r["seq"] for r in both["long"]] == list(range(LONG))
    assert [r["seq"] for r in both["short"]] == list(range(SHORT))
    run_dir = base / "both"
    for sid, n in (("long", LONG), ("short", SHORT)):
        with av.open(str(run_dir / f"{sid}.mp4")) as c:
            assert sum(1 for _ in c.decode(video=0)) == n
        frames = {int(line.split(",")[0]) for line in (run_dir / f"{sid}_mot.txt").open()}
        assert max(frames) <= n


def test_ids_are_per_source(runs: dict) -> None:
    for sid in ("long", "short"):
        ids = {t["track_id"] for r in runs["both"][sid] for t in r["tracks"]}
        assert min(ids) == 1  # each source counts its own ids from 1


def test_a_source_ending_does_not_disturb_the_other(runs: dict) -> None:
    # Same tracks, frame by frame, as when each source runs alone.
    assert runs["both"]["long"] == runs["long_alone"]["long"]
    assert runs["both"]["short"] == runs["short_alone"]["short"]
