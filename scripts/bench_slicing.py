"""Benchmark sliced (SAHI-style) inference: ours against sahi and supervision.

Usage::

    python scripts/bench_slicing.py [--repeats 3] [--venv-dir DIR] [--skip-peers]

Method: the same images, the same model and detector settings and the same tile
settings for every method, all in one run.

* Images: ``small_objects/visdrone/*.jpg`` (VisDrone-DET txt ground truth next to
  each image) and ``small_objects/sahi/terrain1.jpg``, ``terrain2.png`` (COCO json
  ground truth ``<stem>_coco.json``), under the shared data folder
  (``streamer.data.data_path``). Images are decoded (OpenCV, BGR) before any clock
  starts.
* Detector: ``models/yolov8n_int8_dynamic.onnx`` (fixed batch 1) as
  ``streamer.detect.YoloDetector.from_onnx(path, intra_op_threads=2,
  conf_threshold=0.25)`` (its own per-tile NMS: IoU 0.45, class-aware). Every method
  calls this detector on every tile, so letterbox, decode and per-tile NMS are
  identical; only slicing and merging differ.
* Tiles: 640x640, overlap 0.2 (128 px), full-frame pass on for every slicer.
* Methods:

  - ``full frame``: the detector on the whole image (one inference).
  - ``ours``: ``streamer.slicing.SlicedDetector`` (merge NMS on IoS 0.5,
    class-aware).
  - ``sahi``: ``sahi.predict.get_sliced_prediction`` with
    ``perform_standard_pred=True`` and its default postprocess (GREEDYNMM on IOS
    0.5, class-aware), through a ``sahi.models.base.DetectionModel`` subclass that
    calls our detector per tile (``scripts/peers/slicing_sahi.py``). sahi pulls in
    the GUI ``opencv-python``, so it runs in its own venv under ``--venv-dir``
    (default ``~/.cache/streamer-bench/venvs/sahi``; created with the pins of
    :data:`SAHI_PIP` on first use, reused afterwards) and in a fresh process per
    repeat (one untimed warm-up image first). Skipped with ``--skip-peers``.
  - ``supervision``: ``sv.InferenceSlicer`` (in this process; supervision is a
    dependency of ours) with ``overlap_wh=(128, 128)``, NMS on IOS 0.5 (class-aware,
    ``with_nms``' default), one thread. It has no full-frame pass, so the slicer's
    grid is extended by one slice covering the whole image (a subclass overriding
    ``_generate_offset``), which the callback letterboxes like any other slice and
    which goes through the same merge.
  - ``detector only``: the plain detector called on exactly the crops ours runs
    (every tile, then the full frame), one call per crop, timed per call; its sum
    per image is the "detector-only time for the same number of inferences".

* Timing: ``perf_counter`` around the one call per image. After one untimed
  warm-up image per method, ``--repeats`` rounds run; a round runs every method once
  over all images, interleaved per image (image 1 through every in-process method,
  then image 2, ...) so that load from other processes hits all alike; sahi then
  runs its pass over all images in its own process.
  ms/image = median over rounds of (round time / images). Inferences/image counts
  model runs (ours: images sent through the fixed-batch-1 backend; sahi:
  ``perform_inference`` calls; supervision: callback calls).
* Overhead: ours / detector-only on the same crops (target <= 1.10) — i.e. ours /
  (inferences x detector-only ms per inference); the median of the per-round ratios
  is the verdict (robust to load that changes between rounds), the ratio of the
  medians is printed next to it.
* Quality: the first round's detections, scored with
  ``streamer.evaluation.det.evaluate_detections`` (COCO AP at IoU 0.5,
  class-aware, ground truth mapped to COCO-80; "small" = area <= 32² px): AP50 all
  / small and pooled recall all / small. If that module cannot be imported, only
  detection counts are printed (and the script says so).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from streamer.data import data_path
from streamer.detect import YoloDetector
from streamer.slicing import SlicedDetector
from streamer.types import Detections

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_trackers import Peer, _clean_env, _tail, ensure_venv

REPO = Path(__file__).resolve().parents[1]
PEERS_DIR = Path(__file__).resolve().parent / "peers"

MODEL = "models/yolov8n_int8_dynamic.onnx"
INTRA_OP_THREADS = 2
CONF = 0.25
TILE_WH = (640, 640)
OVERLAP_RATIO = 0.2
OVERLAP_PX = (round(TILE_WH[0] * OVERLAP_RATIO), round(TILE_WH[1] * OVERLAP_RATIO))
MERGE_THRESHOLD = 0.5
TARGET_OVERHEAD = 1.10
PEER_TIMEOUT_S = 900.0

SAHI_PIP = ("sahi==0.12.8", "onnxruntime==1.31.1")
"""The sahi venv: sahi (pulls in opencv-python, shapely, ...) and ONNX Runtime."""

SAHI_POSTPROCESS = {"type": "GREEDYNMM", "metric": "IOS", "threshold": 0.5, "class_agnostic": False}
"""sahi's defaults of ``get_sliced_prediction`` (written out so the report shows them)."""


@dataclass
class Image:
    """One benchmark image and where its ground truth is."""

    name: str  # file stem
    path: Path
    gt_kind: str  # "visdrone" or "coco"
    gt_path: Path
    bgr: np.ndarray


@dataclass
class Method:
    """One row of the table."""

    label: str
    merge: str
    run: Callable[[np.ndarray], tuple[Detections, int]] | None  # None: peer process
    round_s: list[float] = field(default_factory=list)  # total seconds per round
    inferences: dict[str, int] = field(default_factory=dict)
    dets: dict[str, Detections] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def ms_per_image(self, n_images: int) -> float | None:
        if not self.round_s:
            return None
        return statistics.median(self.round_s) * 1000.0 / n_images


# ----------------------------------------------------------------------------- data


def load_images() -> list[Image]:
    out = []
    for jpg in sorted(data_path("small_objects/visdrone").glob("*.jpg")):
        out.append(Image(jpg.stem, jpg, "visdrone", jpg.with_suffix(".txt"), _imread(jpg)))
    for name in ("terrain1.jpg", "terrain2.png"):
        p = data_path(f"small_objects/sahi/{name}")
        gt = p.with_name(f"{p.stem}_coco.json")
        out.append(Image(p.stem, p, "coco", gt, _imread(p)))
    return out


def _imread(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return img


# -------------------------------------------------------------------------- methods


def make_detector() -> YoloDetector:
    return YoloDetector.from_onnx(
        data_path(MODEL), intra_op_threads=INTRA_OP_THREADS, conf_threshold=CONF
    )


def full_frame_method(detector: YoloDetector) -> Method:
    return Method("full frame", "detector NMS only", lambda img: (detector(img), 1))


def ours_method(detector: YoloDetector) -> tuple[Method, SlicedDetector]:
    sliced = SlicedDetector(
        detector,
        tile_wh=TILE_WH,
        overlap_ratio=OVERLAP_RATIO,
        full_frame=True,
        merge="nmm",
        metric="ios",
        merge_threshold=MERGE_THRESHOLD,
        class_aware=True,
    )

    def run(img: np.ndarray) -> tuple[Detections, int]:
        before = sliced.stats.images_inferred
        dets = sliced(img)
        return dets, sliced.stats.images_inferred - before

    label = "ours (SlicedDetector)"
    return Method(label, f"NMM IoS {MERGE_THRESHOLD} class-aware (SAHI default)", run), sliced


def detector_only_method(detector: YoloDetector, sliced: SlicedDetector) -> Method:
    """The plain detector on the crops ours runs; only the detector calls are timed."""
    method = Method("detector only (ours' crops)", "-", None)

    def run(img: np.ndarray) -> tuple[float, int]:
        h, w = img.shape[:2]
        tiles = sliced.tiles_for((w, h))
        crops = [img[y1:y2, x1:x2] for x1, y1, x2, y2 in tiles.tolist()]
        if not (len(tiles) == 1 and tuple(tiles[0]) == (0, 0, w, h)):
            crops.append(img)
        clock = time.perf_counter
        total = 0.0
        for crop in crops:
            start = clock()
            detector(crop)
            total += clock() - start
        return total, len(crops)

    method.timed = run  # type: ignore[attr-defined]
    return method


def supervision_method(detector: YoloDetector) -> tuple[Method | None, str]:
    try:
        import supervision as sv
    except Exception as exc:  # pragma: no cover - supervision is a dependency
        return None, f"supervision: skipped, cannot import ({exc})"

    class FullFrameSlicer(sv.InferenceSlicer):  # type: ignore[misc]
        """InferenceSlicer whose grid also holds the whole image (a full-frame pass)."""

        @staticmethod
        def _generate_offset(
            resolution_wh: tuple[int, int],
            slice_wh: tuple[int, int],
            overlap_wh: tuple[int, int],
        ) -> np.ndarray:
            offsets = sv.InferenceSlicer._generate_offset(
                resolution_wh=resolution_wh, slice_wh=slice_wh, overlap_wh=overlap_wh
            )
            w, h = resolution_wh
            if len(offsets) > 1:
                offsets = np.concatenate([offsets, np.array([[0, 0, w, h]], offsets.dtype)])
            return offsets

    calls = [0]

    def callback(tile: np.ndarray) -> Any:
        calls[0] += 1
        d = detector(tile)
        return sv.Detections(
            xyxy=d.xyxy.astype(np.float32),
            confidence=d.confidence.astype(np.float32),
            class_id=d.class_id.astype(int),
        )

    slicer = FullFrameSlicer(
        callback,
        slice_wh=TILE_WH,
        overlap_wh=OVERLAP_PX,
        overlap_filter=sv.OverlapFilter.NON_MAX_SUPPRESSION,
        iou_threshold=MERGE_THRESHOLD,
        overlap_metric=sv.OverlapMetric.IOS,
        thread_workers=1,
    )

    def run(img: np.ndarray) -> tuple[Detections, int]:
        before = calls[0]
        out = slicer(img)
        n = calls[0] - before
        if len(out) == 0:
            return Detections.empty(), n
        return Detections(out.xyxy, out.confidence, out.class_id), n

    label = f"supervision {sv.__version__} InferenceSlicer"
    merge = f"NMS IOS {MERGE_THRESHOLD} class-aware (with_nms)"
    return Method(label, merge, run), f"supervision {sv.__version__} (in this venv)"


# --------------------------------------------------------------------------- sahi


def run_sahi_round(py: Path, images: list[Image], workdir: Path) -> dict[str, Any]:
    request = {
        "repo": str(REPO),
        "model": str(data_path(MODEL)),
        "intra_op_threads": INTRA_OP_THREADS,
        "conf": CONF,
        "tile_wh": list(TILE_WH),
        "overlap_ratio": OVERLAP_RATIO,
        "postprocess": SAHI_POSTPROCESS,
        "warmup_image": str(min(images, key=lambda i: i.bgr.size).path),
        "images": [{"name": im.name, "path": str(im.path)} for im in images],
    }
    req, res = workdir / "sahi-request.json", workdir / "sahi-result.json"
    req.write_text(json.dumps(request), encoding="utf-8")
    res.unlink(missing_ok=True)
    proc = subprocess.run(
        [str(py), str(PEERS_DIR / "slicing_sahi.py"), str(req), str(res)],
        capture_output=True,
        text=True,
        check=False,
        timeout=PEER_TIMEOUT_S,
        cwd=workdir,
        env=_clean_env(),
    )
    if proc.returncode != 0 or not res.is_file():
        raise RuntimeError(
            f"slicing_sahi.py exited with {proc.returncode}:\n{_tail(proc.stderr + proc.stdout)}"
        )
    result: dict[str, Any] = json.loads(res.read_text(encoding="utf-8"))
    return result


def _rows_to_dets(rows: list[list[float]]) -> Detections:
    if not rows:
        return Detections.empty()
    a = np.asarray(rows, np.float64)
    return Detections(a[:, :4], a[:, 4], a[:, 5].astype(np.int32))


# ------------------------------------------------------------------------- scoring


def score(images: list[Image], methods: list[Method]) -> tuple[dict[str, dict[str, Any]], str]:
    try:
        from streamer.evaluation.det import (
            evaluate_detections,
            read_coco_json,
            read_visdrone,
        )
    except Exception as exc:
        return {}, f"streamer.evaluation.det not available ({exc}): detections only, no AP"
    gt = {}
    for im in images:
        if im.gt_kind == "visdrone":
            gt[im.name] = read_visdrone(im.gt_path)
        else:
            gt[im.name] = read_coco_json(im.gt_path, im.path.name)
    out = {}
    for m in methods:
        if len(m.dets) == len(images):
            out[m.label] = evaluate_detections(gt, m.dets)
    objects = sum(len(g) for g in gt.values())
    return out, f"scored with streamer.evaluation.det ({objects} gt boxes incl. ignore boxes)"


# ---------------------------------------------------------------------------- main


def _fmt(v: float | None, spec: str = "7.3f") -> str:
    if v is None or v < 0:
        return f"{'n/a':>{len(format(0.0, spec))}}"
    return format(v, spec)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds (default 3)")
    ap.add_argument(
        "--venv-dir",
        type=Path,
        default=Path.home() / ".cache" / "streamer-bench" / "venvs",
        help="where peer venvs live (default ~/.cache/streamer-bench/venvs)",
    )
    ap.add_argument("--skip-peers", action="store_true", help="skip sahi (its own venv)")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:6.1f} s] {msg}", file=sys.stderr, flush=True)

    images = load_images()
    n_img = len(images)
    detector = make_detector()
    full = full_frame_method(detector)
    ours, sliced = ours_method(detector)
    det_only = detector_only_method(detector, sliced)
    methods: list[Method] = [full, ours]
    notes: list[str] = []
    sv_method, sv_note = supervision_method(detector)
    notes.append(sv_note)
    if sv_method is not None:
        methods.append(sv_method)

    sahi: Method | None = None
    sahi_py: Path | None = None
    sahi_versions: dict[str, str] = {}
    sahi_params: dict[str, Any] = {}
    if args.skip_peers:
        notes.append("sahi: skipped (--skip-peers)")
    else:
        peer = Peer("sahi", SAHI_PIP, "slicing_sahi.py", ())
        sahi_py, note = ensure_venv(peer, args.venv_dir, log)
        notes.append(f"sahi venv: {note}")
        if sahi_py is not None:
            merge = "{type} {metric} {threshold} class-aware (sahi default)".format(
                **SAHI_POSTPROCESS
            )
            sahi = Method("sahi get_sliced_prediction", merge, None)
            methods.append(sahi)

    # Warm-up: one untimed call per in-process method on the smallest image.
    warm = min(images, key=lambda i: i.bgr.size)
    for m in methods:
        if m.run is not None:
            m.run(warm.bgr)
    det_only.timed(warm.bgr)  # type: ignore[attr-defined]
    det_only_inf: dict[str, int] = {}

    with tempfile.TemporaryDirectory(prefix="bench-slicing-") as tmp:
        for r in range(args.repeats):
            log(f"round {r + 1}/{args.repeats}")
            # Interleaved per image: every in-process method (and the detector-only
            # calls) runs on an image before the next image, so that load from other
            # processes hits all of them alike.
            totals = dict.fromkeys([m.label for m in methods if m.run is not None], 0.0)
            det_total = 0.0
            for im in images:
                for m in methods:
                    if m.run is None:
                        continue
                    start = time.perf_counter()
                    dets, n = m.run(im.bgr)
                    totals[m.label] += time.perf_counter() - start
                    if r == 0:
                        m.dets[im.name], m.inferences[im.name] = dets, n
                seconds, n = det_only.timed(im.bgr)  # type: ignore[attr-defined]
                det_total += seconds
                det_only_inf[im.name] = n
            for m in methods:
                if m.run is not None:
                    m.round_s.append(totals[m.label])
            det_only.round_s.append(det_total)
            if sahi is not None and sahi_py is not None:
                try:
                    res = run_sahi_round(sahi_py, images, Path(tmp))
                except Exception as exc:
                    notes.append(f"sahi: round {r + 1} failed: {exc}")
                    methods.remove(sahi)
                    sahi = None
                    continue
                sahi.round_s.append(sum(v["seconds"] for v in res["images"].values()))
                sahi_versions, sahi_params = res["versions"], res["params"]
                if r == 0:
                    for name, v in res["images"].items():
                        sahi.dets[name] = _rows_to_dets(v["dets"])
                        sahi.inferences[name] = int(v["inferences"])
    det_only.inferences = det_only_inf

    log("scoring")
    scores, score_note = score(images, methods)
    notes.append(score_note)

    # ------------------------------------------------------------------ report
    import onnxruntime
    import supervision

    print("Sliced inference benchmark (scripts/bench_slicing.py)")
    print(
        f"machine: {platform.processor() or platform.machine()}, {platform.python_version()}, "
        f"onnxruntime {onnxruntime.__version__}, supervision {supervision.__version__}, "
        f"numpy {np.__version__}, opencv {cv2.__version__}"
    )
    print(
        f"model {MODEL} (fixed batch {sliced.detector.backend.fixed_batch}), "  # type: ignore[attr-defined]
        f"intra_op_threads {INTRA_OP_THREADS}, conf {CONF}, per-tile NMS IoU "
        f"{detector.iou_threshold}; tiles {TILE_WH[0]}x{TILE_WH[1]}, overlap {OVERLAP_RATIO} "
        f"({OVERLAP_PX[0]} px), full-frame pass on; repeats {args.repeats}"
    )
    print("images:")
    for im in images:
        h, w = im.bgr.shape[:2]
        print(f"  {im.path.name:<30} {w}x{h}  tiles {len(sliced.tiles_for((w, h)))} + full")
    print()
    head = (
        f"{'method':<38} {'ms/img':>8} {'inf/img':>7} {'det/img':>7} "
        f"{'AP50':>7} {'AP50_s':>7} {'R50':>7} {'R50_s':>7}  merge"
    )
    print(head)
    print("-" * (len(head) + 30))
    for m in [*methods, det_only]:
        ms = m.ms_per_image(n_img)
        inf = sum(m.inferences.values()) / n_img if m.inferences else None
        ndet = sum(len(d) for d in m.dets.values()) / n_img if m.dets else None
        s = scores.get(m.label, {})
        print(
            f"{m.label:<38} {_fmt(ms, '8.1f')} {_fmt(inf, '7.2f')} {_fmt(ndet, '7.1f')} "
            f"{_fmt(s.get('AP50'))} {_fmt(s.get('AP50_small'))} "
            f"{_fmt(s.get('recall50'))} {_fmt(s.get('recall50_small'))}  {m.merge}"
        )
    print()
    print("per image (first round): inferences / detections")
    for im in images:
        cells = [
            f"{m.label.split()[0]} {m.inferences.get(im.name, '-')}/{len(m.dets[im.name])}"
            for m in methods
            if im.name in m.dets
        ]
        print(f"  {im.name:<26} " + ", ".join(cells))
    if scores:
        any_s = next(iter(scores.values()))
        print(
            f"ground truth: {any_s['gt']} objects ({any_s['gt_small']} small <= 32² px) "
            f"in {any_s['images']} images"
        )
    print()
    ours_ms, det_ms = ours.ms_per_image(n_img), det_only.ms_per_image(n_img)
    total_inf = sum(det_only_inf.values())
    if ours_ms and det_ms:
        per_inf = det_ms * n_img / total_inf
        ratios = [o / d for o, d in zip(ours.round_s, det_only.round_s, strict=True) if d > 0]
        ratio = statistics.median(ratios)
        verdict = "meets" if ratio <= TARGET_OVERHEAD else "MISSES"
        print(
            f"detector only: {per_inf:.1f} ms per inference x {total_inf / n_img:.2f} "
            f"inferences/image = {det_ms:.1f} ms/image (same run, same crops)"
        )
        print(
            f"ours overhead ratio = ours / (inferences x detector-only ms), median of the "
            f"per-round ratios {[round(x, 3) for x in ratios]} = {ratio:.3f} "
            f"(target <= {TARGET_OVERHEAD:.2f}: {verdict}; ratio of the medians "
            f"{ours_ms:.1f} / {det_ms:.1f} = {ours_ms / det_ms:.3f})"
        )
        for m in methods:
            mm = m.ms_per_image(n_img)
            if m is not ours and mm and m.label != "full frame":
                print(f"  {m.label}: {mm / det_ms:.3f} x detector-only, {mm / ours_ms:.2f} x ours")
    rounds = {m.label: [round(s * 1000 / n_img, 1) for s in m.round_s] for m in methods}
    rounds[det_only.label] = [round(s * 1000 / n_img, 1) for s in det_only.round_s]
    print(f"ms/image per round: {rounds}")
    if sahi_versions:
        print(f"sahi venv versions: {sahi_versions}")
        print(f"sahi params: {sahi_params}")
    print("notes:")
    for n in notes:
        print(f"  - {n}")
    print(f"total run time {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
