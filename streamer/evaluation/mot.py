"""MOTChallenge file I/O, running a tracker over MOT detections, and CLEAR/ID/HOTA scoring.

File format (MOTChallenge 2D MOT 2015): one box per line,
``frame, id, x, y, w, h, conf, x3d, y3d, z3d`` with 1-based integer frames, top-left
``x, y`` and size ``w, h`` in pixels; detection files have ``id = -1``. Ground truth of
MOT16/17/20 adds ``class, visibility`` in columns 8-9.

Scoring uses TrackEval (Luiten et al., "HOTA: A Higher Order Metric for Evaluating
Multi-Object Tracking", IJCV 2021; ``JonathonLuiten/TrackEval`` 1.3.0): the metric
classes :class:`trackeval.metrics.HOTA`, :class:`~trackeval.metrics.CLEAR` (MOTA, MOTP,
IDSW, MT/ML; Bernardin & Stiefelhagen 2008) and :class:`~trackeval.metrics.Identity`
(IDF1; Ristani et al. 2016) are fed the per-frame data dict that TrackEval's dataset
classes would build, without its folder layout. As for MOT15 in TrackEval, no
preprocessing is done: every gt row counts (MOT15 2D has no distractor classes). For
MOT16/17/20 ground truth, drop zero-marked and non-pedestrian rows before calling.

TrackEval is imported lazily; install it with ``pip install --no-deps trackeval==1.3.0``
(its declared ``opencv-python`` dependency would replace ``opencv-python-headless``).
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from trackers.types import Tracker

__all__ = [
    "combine_mot",
    "evaluate_mot",
    "evaluate_mot_sequences",
    "read_mot",
    "run_tracker_on_mot_detections",
    "write_mot",
]

Float64Array = npt.NDArray[np.float64]

_INSTALL_HINT = "pip install --no-deps trackeval==1.3.0"


# ----------------------------------------------------------------------------- I/O


def read_mot(path: str | os.PathLike[str]) -> Float64Array:
    """Read a MOTChallenge text file.

    Values are separated by commas (or, for files without commas, whitespace);
    blank lines are skipped. Every line must have the same number of columns, at
    least 6; a file with only 6 columns gets ``conf = 1`` appended.

    Args:
        path: The ``gt.txt`` / ``det.txt`` / result file.

    Returns:
        ``(R, C) float64`` rows ``(frame, id, x, y, w, h, conf, ...)``, ``C >= 7``,
        in file order; ``(0, 10)`` for an empty file.

    Raises:
        FileNotFoundError: if ``path`` does not exist (the message names it).
        ValueError: for a malformed line: the message names the file, the
            1-based line number and the problem (non-numeric value, too few or
            inconsistent columns, frame not an integer >= 1).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: MOT file not found")
    rows: list[list[float]] = []
    n_cols: int | None = None
    with p.open("r", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            text = line.strip()
            if not text:
                continue
            parts = [s.strip() for s in text.split(",")] if "," in text else text.split()
            try:
                values = [float(s) for s in parts]
            except ValueError:
                raise ValueError(
                    f"{p}:{lineno}: expected comma-separated numbers, got {text[:80]!r}"
                ) from None
            if len(values) < 6:
                raise ValueError(
                    f"{p}:{lineno}: expected at least 6 columns "
                    f"(frame, id, x, y, w, h, ...), got {len(values)}"
                )
            if n_cols is None:
                n_cols = len(values)
            elif len(values) != n_cols:
                raise ValueError(
                    f"{p}:{lineno}: expected {n_cols} columns like the first line, "
                    f"got {len(values)}"
                )
            if not np.all(np.isfinite(values[:6])):
                raise ValueError(f"{p}:{lineno}: frame, id and box must be finite numbers")
            frame = values[0]
            if frame < 1 or frame != int(frame):
                raise ValueError(f"{p}:{lineno}: frame must be an integer >= 1, got {frame:g}")
            rows.append(values)
    if not rows:
        return np.zeros((0, 10))
    arr = np.asarray(rows, dtype=np.float64)
    if arr.shape[1] == 6:
        arr = np.concatenate([arr, np.ones((len(arr), 1))], axis=1)
    return arr


def write_mot(path: str | os.PathLike[str], rows: npt.ArrayLike) -> None:
    """Write rows in the 10-column MOTChallenge layout.

    Args:
        path: Output file (parent folders are created).
        rows: ``(R, >=6)`` rows ``(frame, id, x, y, w, h[, conf, ...])``; missing
            columns are written as ``conf = 1`` and ``-1`` for the 3-D ones. Frame and
            id are written as integers, boxes with 3 decimals.

    Raises:
        ValueError: if ``rows`` is not ``(R, >=6)``.
    """
    arr = np.asarray(rows, dtype=np.float64)
    if arr.size == 0:
        arr = arr.reshape(0, 10)
    if arr.ndim != 2 or arr.shape[1] < 6:
        raise ValueError(f"rows: expected shape (R, >=6), got {np.shape(rows)}")
    full = np.full((arr.shape[0], 10), -1.0)
    full[:, 6] = 1.0
    k = min(arr.shape[1], 10)
    full[:, :k] = arr[:, :k]
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as fh:
        for r in full:
            fh.write(
                f"{int(r[0])},{int(r[1])},{r[2]:.3f},{r[3]:.3f},{r[4]:.3f},{r[5]:.3f},"
                f"{r[6]:.6g},{r[7]:.6g},{r[8]:.6g},{r[9]:.6g}\n"
            )


# ---------------------------------------------------------------- running trackers


def run_tracker_on_mot_detections(
    tracker: Tracker,
    det_rows: npt.ArrayLike,
    frame_rate: float,
    *,
    num_frames: int | None = None,
    use_detection_box: bool = False,
) -> Float64Array:
    """Run a tracker over MOT detections, one ``update`` per frame.

    The tracker is reset and given ``frame_rate``; frames ``1 .. num_frames`` are fed
    in order, frames without detections as ``N = 0``, every detection as class 0.

    Args:
        tracker: A fresh or reusable tracker (it is reset first).
        det_rows: ``(R, >=7)`` rows ``(frame, -1, x, y, w, h, score, ...)`` as from
            :func:`read_mot`.
        frame_rate: Frames per second of the sequence (e.g. 25 for TUD in MOT15).
        num_frames: Number of frames of the sequence; default the last frame that
            has a detection.
        use_detection_box: Write the box of the detection each track was updated
            with instead of the tracker's (Kalman) box; coasting tracks keep theirs.

    Returns:
        ``(M, 10) float64`` result rows ``(frame, track_id, x, y, w, h, conf, -1, -1,
        -1)`` ordered by frame, ready for :func:`write_mot` or :func:`evaluate_mot`.

    Raises:
        ValueError: if ``det_rows`` is not ``(R, >=7)``, a frame is not an integer
            >= 1, or a detection lies beyond ``num_frames``.
    """
    dets = np.asarray(det_rows, dtype=np.float64)
    if dets.size == 0:
        dets = dets.reshape(0, 10)
    if dets.ndim != 2 or dets.shape[1] < 7:
        raise ValueError(f"det_rows: expected shape (R, >=7), got {np.shape(det_rows)}")
    if np.any(dets[:, 0] < 1) or np.any(dets[:, 0] != np.round(dets[:, 0])):
        raise ValueError("det_rows: frames must be integers >= 1")
    frames = dets[:, 0].astype(np.int64)
    last = int(frames.max()) if len(frames) else 0
    n_frames = last if num_frames is None else int(num_frames)
    if last > n_frames:
        raise ValueError(f"det_rows: detection at frame {last} beyond num_frames={n_frames}")
    tracker.reset()
    tracker.set_frame_rate(frame_rate)
    order = np.argsort(frames, kind="stable")
    dets, frames = dets[order], frames[order]
    bounds = np.searchsorted(frames, np.arange(1, n_frames + 2))
    out: list[Float64Array] = []
    for f in range(1, n_frames + 1):
        d = dets[bounds[f - 1] : bounds[f]]
        xyxy = np.concatenate([d[:, 2:4], d[:, 2:4] + d[:, 4:6]], axis=1).astype(np.float32)
        conf = d[:, 6].astype(np.float32)
        res = tracker.update(xyxy, conf, np.zeros(len(d), np.int32))
        boxes = np.asarray(res.xyxy, dtype=np.float64).copy()
        det_index = np.asarray(res.det_index)
        if use_detection_box and len(boxes):
            has = det_index >= 0
            boxes[has] = xyxy[det_index[has]]
        m = len(boxes)
        rows = np.full((m, 10), -1.0)
        rows[:, 0] = f
        rows[:, 1] = np.asarray(res.track_id)
        rows[:, 2:4] = boxes[:, :2]
        rows[:, 4:6] = boxes[:, 2:4] - boxes[:, :2]
        rows[:, 6] = np.asarray(res.confidence)
        out.append(rows)
    return np.concatenate(out) if out else np.zeros((0, 10))


# ------------------------------------------------------------------------- scoring


def _import_trackeval() -> Any:
    try:
        # trackeval.datasets prints a warning on stdout when pycocotools is absent.
        with contextlib.redirect_stdout(io.StringIO()):
            import trackeval
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"evaluate_mot needs TrackEval: {_INSTALL_HINT} (import failed: {exc})"
        ) from exc
    return trackeval


def _iou_xywh(a: Float64Array, b: Float64Array) -> Float64Array:
    """IoU of ``(N, 4)`` and ``(M, 4)`` top-left/size boxes, as TrackEval computes it."""
    a1 = np.concatenate([a[:, :2], a[:, :2] + a[:, 2:4]], axis=1)
    b1 = np.concatenate([b[:, :2], b[:, :2] + b[:, 2:4]], axis=1)
    lo = np.maximum(a1[:, None, :2], b1[None, :, :2])
    hi = np.minimum(a1[:, None, 2:], b1[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0.0, None), axis=2)
    area_a = (a1[:, 2] - a1[:, 0]) * (a1[:, 3] - a1[:, 1])
    area_b = (b1[:, 2] - b1[:, 0]) * (b1[:, 3] - b1[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    eps = np.finfo(float).eps
    inter[area_a <= eps, :] = 0
    inter[:, area_b <= eps] = 0
    inter[union <= eps] = 0
    union[union <= eps] = 1
    return inter / union


def _as_rows(name: str, rows: npt.ArrayLike) -> Float64Array:
    arr = np.asarray(rows, dtype=np.float64)
    if arr.size == 0:
        return arr.reshape(0, 6)
    if arr.ndim != 2 or arr.shape[1] < 6:
        raise ValueError(f"{name}: expected shape (R, >=6), got {np.shape(rows)}")
    frames = arr[:, 0]
    if np.any(frames < 1) or np.any(frames != np.round(frames)):
        raise ValueError(f"{name}: frames must be integers >= 1")
    return arr


def _build_sequence_data(
    gt: Float64Array, pred: Float64Array, num_frames: int, name: str
) -> dict[str, Any]:
    """The per-sequence dict TrackEval's dataset classes hand to the metrics."""
    gt_f = gt[:, 0].astype(np.int64)
    pr_f = pred[:, 0].astype(np.int64)
    gt_uid, gt_lab = np.unique(gt[:, 1].astype(np.int64), return_inverse=True)
    pr_uid, pr_lab = np.unique(pred[:, 1].astype(np.int64), return_inverse=True)
    gt_ids: list[np.ndarray] = []
    tr_ids: list[np.ndarray] = []
    sims: list[np.ndarray] = []
    for t in range(1, num_frames + 1):
        gm = gt_f == t
        pm = pr_f == t
        g_ids = gt_lab[gm].astype(int)
        p_ids = pr_lab[pm].astype(int)
        for label, ids in (("gt", g_ids), ("prediction", p_ids)):
            if len(np.unique(ids)) != len(ids):
                raise ValueError(f"{name}: {label} has a repeated id in frame {t}")
        gt_ids.append(g_ids)
        tr_ids.append(p_ids)
        sims.append(_iou_xywh(gt[gm, 2:6], pred[pm, 2:6]))
    return {
        "seq": name,
        "num_timesteps": num_frames,
        "num_gt_ids": len(gt_uid),
        "num_tracker_ids": len(pr_uid),
        "num_gt_dets": len(gt),
        "num_tracker_dets": len(pred),
        "gt_ids": gt_ids,
        "tracker_ids": tr_ids,
        "similarity_scores": sims,
    }


def _summary(name: str, raw: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    hota, clear, ident = raw["HOTA"], raw["CLEAR"], raw["Identity"]
    return {
        "name": name,
        "HOTA": float(np.mean(hota["HOTA"])),
        "DetA": float(np.mean(hota["DetA"])),
        "AssA": float(np.mean(hota["AssA"])),
        "LocA": float(np.mean(hota["LocA"])),
        "MOTA": float(clear["MOTA"]),
        "MOTP": float(clear["MOTP"]),
        "IDF1": float(ident["IDF1"]),
        "IDP": float(ident["IDP"]),
        "IDR": float(ident["IDR"]),
        "Recall": float(clear["CLR_Re"]),
        "Precision": float(clear["CLR_Pr"]),
        "TP": int(clear["CLR_TP"]),
        "FP": int(clear["CLR_FP"]),
        "FN": int(clear["CLR_FN"]),
        "IDSW": int(clear["IDSW"]),
        "MT": int(clear["MT"]),
        "PT": int(clear["PT"]),
        "ML": int(clear["ML"]),
        "Frag": int(clear["Frag"]),
        "raw": {k: dict(v) for k, v in raw.items()},
    }


def _metrics(iou_threshold: float) -> dict[str, Any]:
    te = _import_trackeval()
    cfg = {"THRESHOLD": iou_threshold, "PRINT_CONFIG": False}
    return {
        "HOTA": te.metrics.HOTA(),
        "CLEAR": te.metrics.CLEAR(cfg),
        "Identity": te.metrics.Identity(cfg),
    }


def evaluate_mot(
    gt_rows: npt.ArrayLike,
    pred_rows: npt.ArrayLike,
    name: str = "sequence",
    *,
    num_frames: int | None = None,
    iou_threshold: float = 0.5,
) -> dict[str, Any]:
    """Score one sequence with TrackEval's HOTA, CLEAR and Identity metrics.

    Ids are relabelled to contiguous ``0 .. K-1`` and the similarity of each frame
    is the gt x prediction IoU matrix, as TrackEval's MOTChallenge loader does. All
    gt rows are used (MOT15 semantics).

    Args:
        gt_rows: ``(G, >=6)`` ground truth rows ``(frame, id, x, y, w, h, ...)``.
        pred_rows: ``(P, >=6)`` tracker rows in the same layout.
        name: Sequence name, kept in the result.
        num_frames: Length of the sequence; default the last frame of either input.
        iou_threshold: IoU a match needs for CLEAR and Identity, in (0, 1]. HOTA
            integrates over its own thresholds 0.05 .. 0.95.

    Returns:
        A dict with ``name``; fractions in [0, 1] (MOTA may be negative):
        ``HOTA, DetA, AssA, LocA`` (means over HOTA's alphas), ``MOTA, MOTP, IDF1,
        IDP, IDR, Recall, Precision``; counts ``TP, FP, FN, IDSW, MT, PT, ML, Frag``;
        and ``raw``, TrackEval's per-metric result dicts (used by :func:`combine_mot`).

    Raises:
        ValueError: for malformed rows, a repeated id within a frame, rows beyond
            ``num_frames`` or a bad ``iou_threshold``.
        ImportError: if TrackEval is not installed (the message says how).
    """
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold: must be in (0, 1], got {iou_threshold!r}")
    gt = _as_rows("gt_rows", gt_rows)
    pred = _as_rows("pred_rows", pred_rows)
    last = int(max(gt[:, 0].max(initial=0), pred[:, 0].max(initial=0)))
    n = last if num_frames is None else int(num_frames)
    if last > n:
        raise ValueError(f"{name}: rows reach frame {last}, beyond num_frames={n}")
    metrics = _metrics(iou_threshold)
    data = _build_sequence_data(gt, pred, n, name)
    raw = {key: m.eval_sequence(data) for key, m in metrics.items()}
    return _summary(name, raw)


def combine_mot(
    results: Sequence[Mapping[str, Any]], name: str = "COMBINED", *, iou_threshold: float = 0.5
) -> dict[str, Any]:
    """Combine per-sequence results with each metric's ``combine_sequences``.

    Counts are summed and the ratios recomputed (HOTA's association scores are
    weighted by true positives), as TrackEval's ``COMBINED_SEQ`` row.

    Args:
        results: Dicts returned by :func:`evaluate_mot` (their ``raw`` entries).
        name: Name of the combined row.
        iou_threshold: Must match the one used per sequence (only configures the
            metric objects).

    Returns:
        A dict with the same keys as :func:`evaluate_mot`'s.

    Raises:
        ValueError: if ``results`` is empty or sequence names repeat.
    """
    if not results:
        raise ValueError("results: need at least one sequence")
    names = [str(r["name"]) for r in results]
    if len(set(names)) != len(names):
        raise ValueError(f"results: sequence names repeat: {names}")
    metrics = _metrics(iou_threshold)
    raw = {
        key: m.combine_sequences({r["name"]: r["raw"][key] for r in results})
        for key, m in metrics.items()
    }
    return _summary(name, raw)


def evaluate_mot_sequences(
    sequences: Mapping[str, tuple[npt.ArrayLike, npt.ArrayLike]],
    *,
    iou_threshold: float = 0.5,
) -> dict[str, dict[str, Any]]:
    """Score several sequences and their combination.

    Args:
        sequences: ``{name: (gt_rows, pred_rows)}``.
        iou_threshold: As in :func:`evaluate_mot`.

    Returns:
        ``{name: result}`` for every sequence plus ``"COMBINED"``.

    Raises:
        ValueError: as :func:`evaluate_mot`, or if ``sequences`` is empty.
    """
    out = {
        name: evaluate_mot(gt, pred, name, iou_threshold=iou_threshold)
        for name, (gt, pred) in sequences.items()
    }
    out["COMBINED"] = combine_mot(list(out.values()), iou_threshold=iou_threshold)
    return out
