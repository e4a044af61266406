"""``streamer detect`` (optionally sliced) into a COCO json, then ``streamer eval det``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import require_data

REPO = Path(__file__).resolve().parents[2]


def streamer(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamer", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )


def test_sliced_detection_scores_higher_than_full_frame(tmp_path: Path) -> None:
    image = require_data("small_objects/visdrone/0000001_02999_d_0000005.jpg")
    gt = require_data("small_objects/visdrone/0000001_02999_d_0000005.txt")
    require_data("models/yolov8n_int8_dynamic.onnx")
    recall = {}
    sliced = ["--tile", "640", "--overlap", "0.2", "--parallel-runs", "2", "--threads", "1"]
    for mode, extra in (("full", []), ("sliced", sliced)):
        pred = tmp_path / f"{mode}.json"
        proc = streamer("detect", str(image), "--out", str(pred), *extra)
        assert proc.returncode == 0, proc.stderr
        rows = json.loads(pred.read_text())
        assert all(set(r) >= {"file_name", "bbox", "score", "category_name"} for r in rows)
        proc = streamer("eval", "det", "--gt", str(gt), "--pred", str(pred))
        assert proc.returncode == 0, proc.stderr
        (all_row,) = [line for line in proc.stdout.splitlines() if line.startswith("all ")]
        recall[mode] = float(all_row.split()[-2])  # R50 column
    assert recall["sliced"] > recall["full"] + 0.05


def test_eval_det_errors_are_one_line(tmp_path: Path) -> None:
    proc = streamer("eval", "det", "--gt", str(tmp_path / "none.txt"), "--pred", "p.json")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "none.txt" in proc.stderr
