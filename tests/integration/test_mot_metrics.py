"""MOT file I/O, TrackEval plumbing, and ByteTrack metric floors on MOT15 TUD.

The metric floors are kept apart from the exact unit tests (tests/unit/test_bytetrack.py):
they pin the tracker's accuracy on real detections, not its exact outputs.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from streamer.data import data_path
from streamer.evaluation.mot import (
    combine_mot,
    evaluate_mot,
    evaluate_mot_sequences,
    read_mot,
    run_tracker_on_mot_detections,
    write_mot,
)
from trackers import ByteTrack, TrackerOutput

HAVE_TRACKEVAL = importlib.util.find_spec("trackeval") is not None
HAVE_MOT_DATA = data_path("mot/TUD-Campus/gt.txt").is_file()

needs_trackeval = pytest.mark.skipif(
    not HAVE_TRACKEVAL, reason="trackeval missing: pip install --no-deps trackeval==1.3.0"
)
needs_data = pytest.mark.skipif(
    not HAVE_MOT_DATA,
    reason=f"MOT data not found under {data_path('mot')} (set STREAMER_DATA)",
)

SEQUENCES = {"TUD-Campus": 71, "TUD-Stadtmitte": 179}
FRAME_RATE = 25.0  # MOT15 seqinfo frame rate of both TUD sequences

TUD_PRESET = Path(__file__).resolve().parents[2] / "configs/trackers/bytetrack_mot15_frcnn.yaml"
TUD_PARAMS: dict[str, Any] = {
    k: v for k, v in yaml.safe_load(TUD_PRESET.read_text())["tracker"].items() if k != "type"
}
"""One parameter set for both TUD sequences (the preset file says why)."""

# MOTA of the best public Python ByteTracks on these detections (the bar to clear),
# plus IDF1/HOTA floors about one point under what this implementation scores.
FLOORS = {
    "TUD-Campus": {"MOTA": 0.596, "IDF1": 0.70, "HOTA": 0.50},
    "TUD-Stadtmitte": {"MOTA": 0.714, "IDF1": 0.75, "HOTA": 0.52},
}


# ----------------------------------------------------------------------- file I/O


def test_read_mot_missing_file_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.txt"
    with pytest.raises(FileNotFoundError, match=r"nope\.txt"):
        read_mot(missing)


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("1,1,0,0,10,10,1\n1,2,0,0,abc,10,1\n", 2, "numbers"),
        ("1,1,0,0,10\n", 1, "at least 6 columns"),
        ("1,1,0,0,10,10,1\n\n2,1,0,0,10,10\n", 3, "7 columns"),
        ("0,1,0,0,10,10,1\n", 1, "frame must be an integer"),
        ("1.5,1,0,0,10,10,1\n", 1, "frame must be an integer"),
        ("1,1,nan,0,10,10,1\n", 1, "finite"),
    ],
)
def test_read_mot_malformed_names_file_and_line(
    tmp_path: Path, text: str, line: int, problem: str
) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=rf"bad\.txt:{line}: .*{problem}"):
        read_mot(path)


def test_read_write_round_trip(tmp_path: Path) -> None:
    rows = np.array(
        [
            [1, 3, 10.5, 20.25, 30.0, 60.0, 0.9, -1, -1, -1],
            [2, 3, 11.5, 20.25, 30.0, 60.0, 0.8, -1, -1, -1],
            [2, 4, 100.0, 50.0, 20.0, 40.0, 1.0, -1, -1, -1],
        ]
    )
    path = tmp_path / "sub" / "res.txt"
    write_mot(path, rows)
    np.testing.assert_allclose(read_mot(path), rows)
    write_mot(path, rows[:, :6])  # short rows are padded: conf 1, -1 for the rest
    back = read_mot(path)
    assert back.shape == (3, 10)
    np.testing.assert_allclose(back[:, 6], 1.0)
    np.testing.assert_allclose(back[:, 7:], -1.0)
    empty = tmp_path / "empty.txt"
    write_mot(empty, np.zeros((0, 10)))
    assert read_mot(empty).shape == (0, 10)


def test_read_mot_accepts_whitespace_and_six_columns(tmp_path: Path) -> None:
    path = tmp_path / "ws.txt"
    path.write_text("1 1 0 0 10 10\n2 1 1 0 10 10\n")
    rows = read_mot(path)
    assert rows.shape == (2, 7)
    np.testing.assert_allclose(rows[:, 6], 1.0)


class _RecordingTracker:
    """Tracker stand-in: one track per detection, id = 100 + row."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, float]] = []
        self.fps = 0.0
        self.resets = 0

    def reset(self) -> None:
        self.resets += 1

    def set_frame_rate(self, fps: float) -> None:
        self.fps = fps

    def update(
        self, xyxy: Any, confidence: Any, class_id: Any, frames_elapsed: int = 1
    ) -> TrackerOutput:
        xyxy = np.asarray(xyxy)
        self.calls.append((len(xyxy), float(np.sum(class_id))))
        n = len(xyxy)
        return TrackerOutput(
            xyxy + 1.0,
            np.asarray(confidence),
            np.zeros(n),
            100 + np.arange(n),
            np.arange(n),
        )


def test_run_tracker_feeds_every_frame_including_empty_ones() -> None:
    dets = np.array(
        [
            [2, -1, 10, 20, 30, 40, 0.9, -1, -1, -1],
            [2, -1, 50, 60, 10, 10, 0.8, -1, -1, -1],
            [4, -1, 0, 0, 5, 5, 0.7, -1, -1, -1],
        ]
    )
    tracker = _RecordingTracker()
    rows = run_tracker_on_mot_detections(tracker, dets, 25.0, num_frames=5)
    assert tracker.fps == 25.0 and tracker.resets == 1
    assert [n for n, _ in tracker.calls] == [0, 2, 0, 1, 0]
    assert all(c == 0.0 for _, c in tracker.calls)  # class 0
    np.testing.assert_allclose(rows[:, 0], [2, 2, 4])
    np.testing.assert_allclose(rows[:, 1], [100, 101, 100])
    np.testing.assert_allclose(rows[0, 2:7], [11, 21, 30, 40, 0.9], rtol=1e-6)  # track box
    rows = run_tracker_on_mot_detections(tracker, dets, 25.0, use_detection_box=True)
    np.testing.assert_allclose(rows[0, 2:6], [10, 20, 30, 40])
    with pytest.raises(ValueError, match="num_frames"):
        run_tracker_on_mot_detections(tracker, dets, 25.0, num_frames=3)
    bad = dets.copy()
    bad[0, 0] = 0
    with pytest.raises(ValueError, match="frames must be integers"):
        run_tracker_on_mot_detections(tracker, bad, 25.0)


# ------------------------------------------------------------ TrackEval plumbing


def test_missing_trackeval_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "trackeval", None)  # makes the import fail
    gt = np.array([[1, 1, 0, 0, 10, 10, 1]])
    with pytest.raises(ImportError, match=r"pip install --no-deps trackeval==1\.3\.0"):
        evaluate_mot(gt, gt)


@needs_trackeval
def test_perfect_and_empty_predictions() -> None:
    gt = np.array(
        [
            [f, i, 100.0 * i + f, 20.0, 30.0, 60.0, 1, -1, -1, -1]
            for f in range(1, 6)
            for i in (1, 2)
        ]
    )
    perfect = evaluate_mot(gt, gt, "toy")
    for key in ("MOTA", "IDF1", "HOTA", "MOTP"):
        assert perfect[key] == pytest.approx(1.0)
    assert (perfect["FP"], perfect["FN"], perfect["IDSW"]) == (0, 0, 0)
    relabelled = gt.copy()
    relabelled[:, 1] += 1000  # ids need not be contiguous
    assert evaluate_mot(gt, relabelled, "toy")["MOTA"] == pytest.approx(1.0)
    nothing = evaluate_mot(gt, np.zeros((0, 10)), "toy")
    assert nothing["FN"] == len(gt) and nothing["MOTA"] == 0.0
    swapped = gt.copy()
    swapped[(swapped[:, 0] >= 3), 1] = 3 - swapped[(swapped[:, 0] >= 3), 1]  # ids 1<->2
    res = evaluate_mot(gt, swapped, "toy")
    assert res["IDSW"] == 2 and res["FP"] == 0 and res["FN"] == 0
    with pytest.raises(ValueError, match="repeated id in frame 1"):
        evaluate_mot(gt, np.vstack([gt[:1], gt[:1]]), "toy")


@needs_trackeval
@needs_data
@pytest.mark.parametrize(
    ("seq", "mota", "counts"),
    [
        ("TUD-Campus", 0.5265, {"FP": 13, "FN": 150, "IDSW": 7}),
        ("TUD-Stadtmitte", 0.5640, {"FP": 45, "FN": 452, "IDSW": 7}),
    ],
)
def test_motmetrics_sample_hypotheses_reproduce_published_mota(
    seq: str, mota: float, counts: dict[str, int]
) -> None:
    gt = read_mot(data_path(f"mot/{seq}/gt.txt"))
    hyp = read_mot(data_path(f"mot/{seq}/test_hyp.txt"))
    res = evaluate_mot(gt, hyp, seq)
    assert res["MOTA"] == pytest.approx(mota, abs=5e-4)  # published by py-motmetrics
    assert {k: res[k] for k in counts} == counts


@needs_trackeval
@needs_data
def test_combined_row_sums_counts() -> None:
    seqs = {
        s: (read_mot(data_path(f"mot/{s}/gt.txt")), read_mot(data_path(f"mot/{s}/test_hyp.txt")))
        for s in SEQUENCES
    }
    res = evaluate_mot_sequences(seqs)
    comb = res["COMBINED"]
    for key in ("TP", "FP", "FN", "IDSW", "MT", "ML"):
        assert comb[key] == sum(res[s][key] for s in SEQUENCES)
    expected = (comb["TP"] - comb["FP"] - comb["IDSW"]) / (comb["TP"] + comb["FN"])
    assert comb["MOTA"] == pytest.approx(expected)
    # HOTA combines per alpha: DetA from summed counts, AssA weighted by HOTA_TP.
    raw = [res[s]["raw"]["HOTA"] for s in SEQUENCES]
    tp = sum(r["HOTA_TP"] for r in raw)
    fn_fp = sum(r["HOTA_FN"] + r["HOTA_FP"] for r in raw)
    det_a = tp / np.maximum(1, tp + fn_fp)
    ass_a = sum(r["AssA"] * r["HOTA_TP"] for r in raw) / np.maximum(1, tp)
    assert comb["HOTA"] == pytest.approx(float(np.mean(np.sqrt(det_a * ass_a))))
    with pytest.raises(ValueError, match="at least one"):
        combine_mot([])


# ------------------------------------------------------------ ByteTrack floors


def _run_bytetrack(seq: str, use_detection_box: bool) -> dict[str, Any]:
    gt = read_mot(data_path(f"mot/{seq}/gt.txt"))
    det = read_mot(data_path(f"mot/sort_frcnn_det/{seq}/det.txt"))
    tracker = ByteTrack(frame_rate=FRAME_RATE, **TUD_PARAMS)
    pred = run_tracker_on_mot_detections(
        tracker,
        det,
        FRAME_RATE,
        num_frames=SEQUENCES[seq],
        use_detection_box=use_detection_box,
    )
    assert pred[:, 0].max() <= SEQUENCES[seq]
    return evaluate_mot(gt, pred, seq, num_frames=SEQUENCES[seq])


@needs_trackeval
@needs_data
@pytest.mark.parametrize("use_detection_box", [False, True], ids=["track_box", "detection_box"])
@pytest.mark.parametrize("seq", list(SEQUENCES))
def test_bytetrack_meets_metric_floors_on_tud(seq: str, use_detection_box: bool) -> None:
    res = _run_bytetrack(seq, use_detection_box)
    summary = {k: round(100 * res[k], 1) for k in ("MOTA", "IDF1", "HOTA")}
    for metric, floor in FLOORS[seq].items():
        assert res[metric] >= floor, f"{seq} {metric} below floor {floor}: {summary}"
