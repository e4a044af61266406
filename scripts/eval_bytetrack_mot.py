"""Run ByteTrack on the SORT paper's Faster R-CNN detections of MOT15 TUD and score it.

Usage::

    python scripts/eval_bytetrack_mot.py [--box track|detection|both] [--write DIR]

Reads ``mot/sort_frcnn_det/{TUD-Campus,TUD-Stadtmitte}/det.txt`` and the gt
``mot/{seq}/gt.txt`` through :func:`streamer.data.data_path` (``$STREAMER_DATA`` or
``../shared/data``), runs :class:`trackers.ByteTrack` with :data:`TUD_PARAMS` at the
MOT15 frame rate of 25 fps, and prints MOTA, IDF1, HOTA, IDSW, FP, FN per sequence and
combined (TrackEval metrics, IoU 0.5), plus the mean time per ``update``.

``--box track`` scores the tracker's own (Kalman) boxes, as the ByteTrack reference
writes them; ``--box detection`` scores, for every track updated this frame, the box
of the detection it was updated with (``det_index``), as trackers that return the
input detections do.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from streamer.data import data_path
from streamer.evaluation.mot import (
    combine_mot,
    evaluate_mot,
    read_mot,
    run_tracker_on_mot_detections,
    write_mot,
)
from trackers import ByteTrack

SEQUENCES = {"TUD-Campus": 71, "TUD-Stadtmitte": 179}
"""Sequence name -> number of frames (MOT15 seqinfo)."""

FRAME_RATE = 25.0
"""MOT15 frame rate of both TUD sequences, frames per second."""

TUD_PRESET = Path(__file__).resolve().parents[1] / "configs/trackers/bytetrack_mot15_frcnn.yaml"
TUD_PARAMS: dict[str, Any] = {
    k: v for k, v in yaml.safe_load(TUD_PRESET.read_text())["tracker"].items() if k != "type"
}
"""One parameter set for both TUD sequences (the preset file says why)."""


def _time_updates(det_rows: np.ndarray, num_frames: int, repeats: int = 5) -> float:
    """Mean wall time of one ``update`` over the sequence, milliseconds (best of repeats)."""
    frames = det_rows[:, 0].astype(int)
    inputs = []
    for f in range(1, num_frames + 1):
        d = det_rows[frames == f]
        xyxy = np.concatenate([d[:, 2:4], d[:, 2:4] + d[:, 4:6]], axis=1).astype(np.float32)
        inputs.append((xyxy, d[:, 6].astype(np.float32), np.zeros(len(d), np.int32)))
    best = float("inf")
    for _ in range(repeats):
        tracker = ByteTrack(frame_rate=FRAME_RATE, **TUD_PARAMS)
        start = time.perf_counter()
        for xyxy, conf, cls in inputs:
            tracker.update(xyxy, conf, cls)
        best = min(best, (time.perf_counter() - start) / num_frames)
    return 1000.0 * best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--box", choices=["track", "detection", "both"], default="both")
    parser.add_argument("--write", type=Path, default=None, help="write <seq>.txt results here")
    args = parser.parse_args(argv)

    print(f"ByteTrack parameters (frame_rate={FRAME_RATE:g}): {TUD_PARAMS}")
    modes = ["track", "detection"] if args.box == "both" else [args.box]
    for mode in modes:
        results = []
        for seq, n_frames in SEQUENCES.items():
            gt = read_mot(data_path(f"mot/{seq}/gt.txt"))
            det = read_mot(data_path(f"mot/sort_frcnn_det/{seq}/det.txt"))
            tracker = ByteTrack(frame_rate=FRAME_RATE, **TUD_PARAMS)
            pred = run_tracker_on_mot_detections(
                tracker,
                det,
                FRAME_RATE,
                num_frames=n_frames,
                use_detection_box=mode == "detection",
            )
            if args.write is not None:
                write_mot(args.write / mode / f"{seq}.txt", pred)
            results.append(evaluate_mot(gt, pred, seq, num_frames=n_frames))
        results.append(combine_mot(results))
        print(f"\nboxes: {mode}")
        print(f"{'sequence':<16}{'MOTA':>7}{'IDF1':>7}{'HOTA':>7}{'IDSW':>6}{'FP':>6}{'FN':>6}")
        for r in results:
            print(
                f"{r['name']:<16}{100 * r['MOTA']:>7.1f}{100 * r['IDF1']:>7.1f}"
                f"{100 * r['HOTA']:>7.1f}{r['IDSW']:>6d}{r['FP']:>6d}{r['FN']:>6d}"
            )
    det = read_mot(data_path("mot/sort_frcnn_det/TUD-Stadtmitte/det.txt"))
    ms = _time_updates(det, SEQUENCES["TUD-Stadtmitte"])
    print(f"\nmean time per update on TUD-Stadtmitte det.txt: {ms:.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
