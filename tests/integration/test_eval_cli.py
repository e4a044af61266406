"""``streamer track`` and ``streamer eval mot`` on the real MOT15 files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require_data

REPO = Path(__file__).resolve().parents[2]
pytest.importorskip("trackeval", reason="pip install --no-deps trackeval==1.3.0")


def streamer(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamer", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )


def test_eval_reproduces_motmetrics_published_mota() -> None:
    gt = require_data("mot/TUD-Campus/gt.txt")
    hyp = require_data("mot/TUD-Campus/test_hyp.txt")
    proc = streamer("eval", "mot", "--gt", str(gt), "--pred", str(hyp), "--json")
    assert proc.returncode == 0, proc.stderr
    (result,) = json.loads(proc.stdout)
    assert result["name"] == "TUD-Campus"
    assert result["MOTA"] == pytest.approx(0.5265, abs=5e-4)
    assert (result["FP"], result["FN"], result["IDSW"]) == (13, 150, 7)


@pytest.mark.parametrize("tracker", ["bytetrack", "sort", "ocsort"])
def test_track_then_eval_each_tracker(tmp_path: Path, tracker: str) -> None:
    det = require_data("mot/sort_frcnn_det/TUD-Campus/det.txt")
    gt = require_data("mot/TUD-Campus/gt.txt")
    pred = tmp_path / "TUD-Campus.txt"
    proc = streamer(
        "track",
        "--det",
        str(det),
        "--out",
        str(pred),
        "--preset",
        f"{tracker}_mot15_frcnn",
        "--fps",
        "25",
    )
    assert proc.returncode == 0, proc.stderr
    assert f"tracker {tracker}" in proc.stderr
    rows = [line.split(",") for line in pred.read_text().splitlines()]
    assert rows and all(len(r) == 10 for r in rows)
    assert {int(r[0]) for r in rows} <= set(range(1, 72))
    proc = streamer("eval", "mot", "--gt", str(gt), "--pred", str(pred))
    assert proc.returncode == 0, proc.stderr
    header, line = proc.stdout.splitlines()
    assert header.split() == ["sequence", "HOTA", "MOTA", "IDF1", "IDSW", "FP", "FN", "MT", "ML"]
    assert line.split()[0] == "TUD-Campus"
    assert float(line.split()[2]) > 55.0  # MOTA, percent


def test_folder_form_scores_each_sequence_and_the_combination(tmp_path: Path) -> None:
    det_root = require_data("mot/sort_frcnn_det")
    gt_root = require_data("mot")
    dets = tmp_path / "det"
    dets.mkdir()
    for seq in ("TUD-Campus", "TUD-Stadtmitte"):  # a folder of links, no copies
        (dets / seq).symlink_to(det_root / seq, target_is_directory=True)
    preds = tmp_path / "pred"
    proc = streamer(
        "track",
        "--det-dir",
        str(dets),
        "--out",
        str(preds),
        "--preset",
        "bytetrack_mot15_frcnn",
        "--fps",
        "25",
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in preds.iterdir()) == ["TUD-Campus.txt", "TUD-Stadtmitte.txt"]
    proc = streamer("eval", "mot", "--gt-dir", str(gt_root), "--pred-dir", str(preds), "--json")
    assert proc.returncode == 0, proc.stderr
    results = {r["name"]: r for r in json.loads(proc.stdout)}
    assert set(results) == {"TUD-Campus", "TUD-Stadtmitte", "COMBINED"}
    assert results["TUD-Campus"]["MOTA"] >= 0.596
    assert results["TUD-Stadtmitte"]["MOTA"] >= 0.714
    c, s = results["TUD-Campus"], results["TUD-Stadtmitte"]
    assert results["COMBINED"]["FP"] == c["FP"] + s["FP"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["eval", "mot", "--gt", "nope/gt.txt", "--pred", "x.txt"], "nope/gt.txt"),
        (["track", "--det", "nope.txt", "--out", "o.txt"], "nope.txt"),
        (["track", "--det", "d.txt", "--out", "o.txt", "--set", "bogus=1"], "tracker.bogus"),
        (
            [
                "track",
                "--det",
                "d.txt",
                "--out",
                "o.txt",
                "--tracker",
                "sort",
                "--set",
                "min_hits=0",
            ],
            "tracker.min_hits",
        ),
        (["track", "--det", "d.txt", "--out", "o.txt", "--preset", "nosuch"], "nosuch"),
    ],
)
def test_errors_are_one_line(tmp_path: Path, args: list[str], needle: str) -> None:
    proc = streamer(*args)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], proc.stderr


def test_malformed_detection_file_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "det.txt"
    bad.write_text("1,-1,10,10,5,5,0.9,-1,-1,-1\n2,-1,oops,10,5,5,0.9,-1,-1,-1\n")
    proc = streamer("track", "--det", str(bad), "--out", str(tmp_path / "o.txt"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "det.txt:2: expected comma-separated numbers" in proc.stderr
