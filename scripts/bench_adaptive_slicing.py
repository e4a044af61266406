"""Compare full sliced inference with adaptive sliced inference on a video.

Usage::

    python scripts/bench_adaptive_slicing.py [--frames N] [--video videos/car-detection.mp4]
        [--full-sweep-every 25] [--small-area-px 9216] [--margin-px 16]

Method:

* Video: ``videos/car-detection.mp4`` (shared data folder, 768x432, 12.5 fps, 377
  frames), decoded with OpenCV (BGR), first ``--frames`` frames (default all).
* Detector: ``models/yolox_nano.onnx`` as ``YoloDetector.from_onnx(path,
  intra_op_threads=2, conf_threshold=0.25)`` with ``class_filter = {2, 5, 7}`` (car,
  bus, truck); ``SlicedDetector(tile_wh=(416, 416), overlap_ratio=0.2)`` → 6 tiles
  plus the full-frame pass.
* Full: the ``SlicedDetector`` on every frame. Adaptive: an
  ``AdaptiveSlicedDetector`` around the same ``SlicedDetector`` (its own state), on
  the same frames, called frame by frame (``__call__``: no queue lag).
* Tiles per frame: mean tiles run per frame, the full-frame pass excluded.
* Detection recall: a full-slicing detection counts as found if an adaptive
  detection of the same class has IoU >= 0.5 with it in the same frame; recall =
  found / all full-slicing detections.
* Track recall: ``trackers.ByteTrack(frame_rate=12.5)`` (defaults otherwise) runs on
  each detection stream. For a full-slicing track, its frames are the frames where
  the tracker reports it *updated by a detection* (``det_index >= 0``; coasting
  predictions are not counted). The track is **kept** if in >= 80 % of its frames
  some adaptive track (any id, same class, reported that frame, coasting or not)
  has IoU >= 0.5 with its box. Track recall = kept / full-slicing tracks; tracks
  with fewer than ``--min-track-frames`` (default 3) frames are left out, as ones
  the tracker confirmed only briefly.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamer.data import data_path
from streamer.detect import YoloDetector, box_iou
from streamer.slicing import SlicedDetector
from streamer.slicing.adaptive import AdaptiveSlicedDetector
from streamer.types import Detections


def read_frames(path: Path, limit: int | None) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise SystemExit(f"cannot open {path}")
    frames = []
    while limit is None or len(frames) < limit:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def detection_recall(full: list[Detections], adaptive: list[Detections]) -> tuple[int, int]:
    """(found, total) full-slicing detections matched by same-class IoU >= 0.5."""
    found = total = 0
    for f, a in zip(full, adaptive, strict=True):
        total += len(f)
        if len(f) == 0 or len(a) == 0:
            continue
        iou = np.asarray(box_iou(f.xyxy, a.xyxy))
        same = f.class_id[:, None] == a.class_id[None, :]
        found += int(((iou >= 0.5) & same).any(axis=1).sum())
    return found, total


def run_tracker(stream: list[Detections], fps: float) -> list[tuple[np.ndarray, ...]]:
    from trackers import ByteTrack

    tracker = ByteTrack(frame_rate=fps)
    out = []
    for d in stream:
        t = tracker.update(d.xyxy, d.confidence, d.class_id)
        out.append((t.xyxy, t.class_id, t.track_id, t.det_index))
    return out


def track_recall(
    full: list[tuple[np.ndarray, ...]],
    adaptive: list[tuple[np.ndarray, ...]],
    keep_ratio: float = 0.8,
    min_frames: int = 3,
) -> tuple[int, int, list[tuple[int, int, int]]]:
    """(kept, total, [(track id, frames, matched frames)]) of the full-slicing tracks."""
    frames: dict[int, int] = {}
    matched: dict[int, int] = {}
    for (fx, fc, fid, fdi), (ax, ac, _aid, _adi) in zip(full, adaptive, strict=True):
        upd = fdi >= 0
        if not upd.any():
            continue
        fx, fc, fid = fx[upd], fc[upd], fid[upd]
        hit = np.zeros(len(fx), bool)
        if len(ax):
            iou = np.asarray(box_iou(fx, ax))
            hit = ((iou >= 0.5) & (fc[:, None] == ac[None, :])).any(axis=1)
        for tid, h in zip(fid.tolist(), hit.tolist(), strict=True):
            frames[tid] = frames.get(tid, 0) + 1
            matched[tid] = matched.get(tid, 0) + int(h)
    rows = [(t, n, matched[t]) for t, n in sorted(frames.items()) if n >= min_frames]
    kept = sum(1 for _, n, m in rows if m >= keep_ratio * n)
    return kept, len(rows), rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--video", default="videos/car-detection.mp4")
    ap.add_argument("--model", default="models/yolox_nano.onnx")
    ap.add_argument("--frames", type=int, default=None)
    ap.add_argument("--fps", type=float, default=12.5)
    ap.add_argument("--full-sweep-every", type=int, default=25)
    ap.add_argument("--small-area-px", type=float, default=96.0 * 96.0)
    ap.add_argument("--margin-px", type=float, default=16.0)
    ap.add_argument("--motion-threshold", type=float, default=25.0)
    ap.add_argument("--min-track-frames", type=int, default=3)
    ap.add_argument("--verbose", action="store_true", help="print per-track rows")
    args = ap.parse_args(argv)

    frames = read_frames(data_path(args.video), args.frames)
    det = YoloDetector.from_onnx(data_path(args.model), intra_op_threads=2, conf_threshold=0.25)
    det.class_filter = {2, 5, 7}
    sliced = SlicedDetector(det, tile_wh=(416, 416), overlap_ratio=0.2)
    adaptive = AdaptiveSlicedDetector(
        sliced,
        full_sweep_every=args.full_sweep_every,
        small_area_px=args.small_area_px,
        margin_px=args.margin_px,
        motion_threshold=args.motion_threshold,
    )
    h, w = frames[0].shape[:2]
    print(
        f"video {args.video}: {len(frames)} frames {w}x{h}; "
        f"grid {len(sliced.tiles_for((w, h)))} tiles + full frame"
    )

    t0 = time.perf_counter()
    full = [sliced(f) for f in frames]
    t_full = time.perf_counter() - t0
    full_tpf = sliced.stats.tiles_per_frame
    t0 = time.perf_counter()
    adapt = [adaptive(f) for f in frames]
    t_adapt = time.perf_counter() - t0
    st = adaptive.stats

    found, total = detection_recall(full, adapt)
    kept, n_tracks, rows = track_recall(
        run_tracker(full, args.fps), run_tracker(adapt, args.fps), min_frames=args.min_track_frames
    )
    print(
        f"tiles/frame   full {full_tpf:.2f}   adaptive {st.tiles_per_frame:.2f}  "
        f"({st.tile_fraction:.1%} of full; sweeps {st.full_sweeps}, motion-tile picks "
        f"{st.motion_tiles_total}, detection-tile picks {st.detection_tiles_total})"
    )
    print(
        f"time          full {t_full / len(frames) * 1e3:.1f} ms/frame   adaptive "
        f"{t_adapt / len(frames) * 1e3:.1f} ms/frame"
    )
    print(f"detections    full {total}   adaptive {sum(len(a) for a in adapt)}")
    print(f"det recall    {found}/{total} = {found / max(total, 1):.3f}")
    print(
        f"track recall  {kept}/{n_tracks} = {kept / max(n_tracks, 1):.3f} "
        f"(tracks with >= {args.min_track_frames} updated frames; kept = >= 80 % matched)"
    )
    if args.verbose:
        for tid, n, m in rows:
            print(f"  track {tid}: {m}/{n} frames matched")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
