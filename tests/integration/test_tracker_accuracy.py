"""Metric floors of ByteTrack, SORT and OC-SORT on MOT15 TUD-Campus and TUD-Stadtmitte.

Each tracker runs with its ``configs/trackers/<name>_mot15_frcnn.yaml`` preset on the
Faster R-CNN detections of the SORT paper (``mot/sort_frcnn_det/<seq>/det.txt``) at
the MOT15 frame rate (25 fps) and is scored with TrackEval through
:func:`streamer.evaluation.mot.evaluate_mot` against ``mot/<seq>/gt.txt`` (IoU 0.5),
writing the tracker's own boxes (``run_tracker_on_mot_detections`` defaults).

Floors are in percent with one decimal, as published numbers are, and compared with
the score rounded to one decimal. SORT with the original settings must reproduce
the MOTA published in the SORT repository (62.7 / 71.7) within 0.5. The OC-SORT floors
are the best public Python OC-SORTs on these files (Roboflow, boxmot); the presets
were chosen on these two sequences, so the scores are optimistic for other data.

These tests pin accuracy on real detections; exact behaviour is tested in
tests/unit/test_{bytetrack,sort,ocsort}.py.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import yaml

from streamer.data import data_path
from streamer.evaluation.mot import evaluate_mot, read_mot, run_tracker_on_mot_detections
from trackers.bytetrack import ByteTrack
from trackers.ocsort import OcSort
from trackers.sort import Sort

SEQUENCES = {"TUD-Campus": 71, "TUD-Stadtmitte": 179}
"""Sequence name -> number of frames (MOT15 seqinfo)."""

FRAME_RATE = 25.0  # MOT15 seqinfo frame rate of both TUD sequences
PRESETS = Path(__file__).resolve().parents[2] / "configs" / "trackers"
CLASSES: dict[str, Any] = {"bytetrack": ByteTrack, "sort": Sort, "ocsort": OcSort}

FLOORS: dict[str, dict[str, dict[str, float]]] = {
    "bytetrack": {
        "TUD-Campus": {"HOTA": 48.2, "MOTA": 58.6, "IDF1": 66.2},
        "TUD-Stadtmitte": {"HOTA": 52.8, "MOTA": 70.4, "IDF1": 75.0},
    },
    "sort": {
        "TUD-Campus": {"HOTA": 45.3, "IDF1": 59.6},
        "TUD-Stadtmitte": {"HOTA": 53.0, "IDF1": 72.5},
    },
    "ocsort": {
        "TUD-Campus": {"HOTA": 48.8, "MOTA": 57.5, "IDF1": 67.0},
        "TUD-Stadtmitte": {"HOTA": 51.6, "MOTA": 68.5, "IDF1": 72.9},
    },
}
SORT_PUBLISHED_MOTA = {"TUD-Campus": 62.7, "TUD-Stadtmitte": 71.7}
"""abewley/sort README (max_age 1, min_hits 3, IoU 0.3), scored with py-motmetrics."""


def load_preset(name: str) -> dict[str, Any]:
    """Constructor parameters of ``configs/trackers/<name>_mot15_frcnn.yaml``.

    The format is ``tracker: {type: NAME, <params>}``; the older ``tracker: NAME``
    with a ``params:`` mapping is read too.
    """
    doc = yaml.safe_load((PRESETS / f"{name}_mot15_frcnn.yaml").read_text())
    spec = doc["tracker"]
    if isinstance(spec, str):
        kind, params = spec, dict(doc.get("params") or {})
    else:
        params = dict(spec)
        kind = params.pop("type")
    assert kind == name, f"{name}_mot15_frcnn.yaml describes a {kind!r} tracker"
    return params


@pytest.fixture(scope="module")
def tud() -> dict[str, tuple[Any, Any]]:
    """``{sequence: (gt_rows, det_rows)}``, or skip when TrackEval or the data are missing."""
    if importlib.util.find_spec("trackeval") is None:
        pytest.skip("trackeval missing: pip install --no-deps trackeval==1.3.0")
    out = {}
    for seq in SEQUENCES:
        gt_path = data_path(f"mot/{seq}/gt.txt")
        det_path = data_path(f"mot/sort_frcnn_det/{seq}/det.txt")
        for path in (gt_path, det_path):
            if not path.is_file():
                pytest.skip(f"MOT data not found: {path} (set STREAMER_DATA)")
        out[seq] = (read_mot(gt_path), read_mot(det_path))
    return out


def _score(name: str, seq: str, tud: dict[str, tuple[Any, Any]]) -> dict[str, Any]:
    gt, det = tud[seq]
    tracker = CLASSES[name](frame_rate=FRAME_RATE, **load_preset(name))
    pred = run_tracker_on_mot_detections(tracker, det, FRAME_RATE, num_frames=SEQUENCES[seq])
    return evaluate_mot(gt, pred, seq, num_frames=SEQUENCES[seq])


@pytest.mark.parametrize("seq", list(SEQUENCES))
@pytest.mark.parametrize("name", list(CLASSES))
def test_tracker_meets_metric_floors_on_tud(
    name: str, seq: str, tud: dict[str, tuple[Any, Any]]
) -> None:
    res = _score(name, seq, tud)
    score = {k: round(100 * res[k], 1) for k in ("MOTA", "IDF1", "HOTA")}
    summary = f"{name} on {seq}: {score}, IDSW {res['IDSW']}, FP {res['FP']}, FN {res['FN']}"
    for metric, floor in FLOORS[name][seq].items():
        assert score[metric] >= floor, f"{metric} below {floor}: {summary}"
    if name == "sort":
        assert abs(score["MOTA"] - SORT_PUBLISHED_MOTA[seq]) <= 0.5, summary


def test_sort_reproduces_the_published_counts(tud: dict[str, tuple[Any, Any]]) -> None:
    """FP / FN / ID switches of the SORT README (MOTChallenge devkit) on TUD-Campus."""
    res = _score("sort", "TUD-Campus", tud)
    assert (res["FP"], res["FN"], res["IDSW"]) == (15, 113, 6)
