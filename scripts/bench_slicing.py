"""Benchmark sliced (SAHI-style) inference: ours against sahi and supervision.

Usage::

    python scripts/bench_slicing.py [--rounds N] [--spinning off|on|both]
                                    [--only KEY ...] [--venv-dir DIR] [--skip-peers]

Method: the same images, the same model and detector settings and the same tile
settings for every method, all in one run.

* Images: ``small_objects/visdrone/*.jpg`` (VisDrone-DET txt ground truth next to
  each image) and ``small_objects/sahi/terrain1.jpg``, ``terrain2.png`` (COCO json
  ground truth ``<stem>_coco.json``), under the shared data folder
  (``streamer.data.data_path``). Each process decodes them (OpenCV, BGR) before any
  clock starts.
* Detector: ``models/yolov8n_int8_dynamic.onnx`` (fixed batch 1) as
  ``streamer.detect.YoloDetector.from_onnx(path, intra_op_threads=T,
  parallel_runs=P, allow_spinning=S, conf_threshold=0.25)`` (its own per-tile NMS:
  IoU 0.45, class-aware). Every method calls this detector on every tile, so
  letterbox, decode and per-tile NMS are identical; only slicing, merging and how
  the model runs are scheduled differ. ``S`` is the same for every method (off
  unless ``--spinning on``; ``--spinning both`` adds a ``..., spin on`` row per
  method, to measure spinning against itself in the same run). Every method uses
  two CPU threads for inference in total, ``P x T``: ``1 x 2`` (one run at a time,
  each run's operators split over two threads) unless the row says ``2 x 1``.
* Tiles: 640x640, overlap 0.2 (128 px), full-frame pass on for every slicer; every
  slicer runs the same number of inferences per image (the table shows it).
* Methods (rows):

  - ``full frame``: the detector on the whole image (one inference), ``1 x 2``.
  - ``ours``: ``streamer.slicing.SlicedDetector`` (merge NMM on IoS 0.5,
    class-aware), ``1 x 2``: exactly the peers' configuration.
  - ``ours, 2 tiles at once``: the same, on a detector with ``parallel_runs=2,
    intra_op_threads=1`` (``2 x 1``): ours has all tiles of a frame at once, and on
    a fixed-batch model it runs two batch-1 tiles concurrently (letterbox, run,
    decode per tile; ``OnnxRuntimeBackend.map_runs``) instead of splitting one
    tile's operators over two threads. This is part of ours' design (a batch API);
    of the peers only supervision can do the same (``thread_workers``), and it gets
    the same configuration in the next-but-one row; sahi 0.12 runs one slice at a
    time.
  - ``supervision``: ``sv.InferenceSlicer`` with ``overlap_wh=(128, 128)``, NMS on
    IOS 0.5 (class-aware, ``with_nms``' default), ``thread_workers=1``, ``1 x 2``.
    It has no full-frame pass, so the slicer's grid is extended by one slice
    covering the whole image (a subclass overriding ``_generate_offset``), which
    the callback letterboxes like any other slice and which goes through the same
    merge.
  - ``supervision, 2 workers``: the same with ``thread_workers=2`` on a detector
    with ``intra_op_threads=1`` (``2 x 1``).
  - ``sahi``: ``sahi.predict.get_sliced_prediction`` with
    ``perform_standard_pred=True`` and its default postprocess (GREEDYNMM on IOS
    0.5, class-aware), through a ``sahi.models.base.DetectionModel`` subclass that
    calls our detector per tile (``scripts/peers/slicing_sahi.py``), ``1 x 2``.
    sahi pulls in the GUI ``opencv-python``, so it runs in its own venv under
    ``--venv-dir`` (default ``~/.cache/streamer-bench/venvs/sahi``; created with
    the pins of :data:`SAHI_PIP` on first use, reused afterwards). Skipped with
    ``--skip-peers``.
  - ``detector only``: the plain detector called on exactly the crops ours runs
    (every tile, then the full frame), one call per crop, ``1 x 2``, only the
    calls timed: the floor for that many inferences.

* Processes and order: every method runs in a **fresh process per round** (ours
  and supervision in this venv, sahi in its own), so no method inherits another's
  ONNX Runtime session, thread pool, allocator state or warm caches. At the start
  of a round all methods' processes load the model, decode the images and run one
  untimed warm-up call on the smallest image; then the parent sends the images one
  at a time, each image to every method before the next image, in two passes over
  the images (pass 1: each image size's first call in the process, which pays for
  touching new memory; pass 2: the same images again, the steady state of a
  stream). The method order rotates by one place per image, pass and round; only
  one process computes at a time (the others wait on a pipe, their ONNX Runtime
  threads asleep unless spinning is on). Over ``len(methods)`` rounds (the
  default, at least 5) every method runs in every position. The machine may be
  shared: interleaving per image spreads other load over all methods alike.
* Timing: ``perf_counter`` around the one call per image (detector-only: around
  each detector call, summed); the process's CPU time (all threads,
  ``process_time``) around the same call. ms/image of a pass = sum over images /
  images; the tables give, per pass, the median over rounds, the min-max spread,
  the median CPU ms/image and CPU/wall (about 1.6 for a 1x2 run on an idle 2-core
  machine; lower when other processes take the cores). Ratios (ours / sahi, ...)
  are computed per round and pass from the two methods' times, then the median
  and the min-max over rounds are printed, for wall time and for CPU time (CPU
  time measures the work a method does and moves little with other load; it
  cannot show the gain of running two tiles at once, which is in wall time only).
  Inferences/image counts model runs (ours: images sent through the
  fixed-batch-1 backend; sahi: ``perform_inference`` calls; supervision: callback
  calls).
* Overhead: ours (``1 x 2``) / detector-only on the same crops, pass 2 (target <=
  1.10), the median of the per-round ratios.
* Quality: round 1's detections, pooled over all images and per image set (the
  2 VisDrone images, the 2 SAHI terrain images), scored with
  ``streamer.evaluation.det.evaluate_detections`` (COCO AP at IoU 0.5,
  class-aware, ground truth mapped to COCO-80; "small" = area <= 32² px): AP50 all
  / small and pooled recall all / small. The script also checks whether every
  round gave the same detections per method. If the scoring module cannot be
  imported, only detection counts are printed (and the script says so).

Internal: ``bench_slicing.py --serve REQUEST.json`` is one method's process (see
:func:`worker_main`; ``scripts/peers/slicing_sahi.py`` speaks the same protocol).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import select
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
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
THREADS = 2  # CPU threads for inference per method: parallel_runs x intra_op_threads
CONF = 0.25
TILE_WH = (640, 640)
OVERLAP_RATIO = 0.2
OVERLAP_PX = (round(TILE_WH[0] * OVERLAP_RATIO), round(TILE_WH[1] * OVERLAP_RATIO))
MERGE_THRESHOLD = 0.5
TARGET_OVERHEAD = 1.10
PROCESS_TIMEOUT_S = 900.0
MIN_ROUNDS = 5
PASSES = 2  # timed passes over the images per process: first sight of each size, then again
MSG_PREFIX = "@@ "  # marks worker protocol lines on stdout

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
    wh: tuple[int, int]


@dataclass
class Method:
    """One row of the table: what runs, and what it measured per round."""

    key: str  # short id
    label: str
    worker: str  # "full", "ours", "supervision", "detonly" or "sahi" (peer venv)
    parallel_runs: int
    intra_op_threads: int
    merge: str
    thread_workers: int = 1  # supervision only
    allow_spinning: bool = False  # ONNX Runtime session.intra_op/inter_op.allow_spinning
    # [pass][round]: wall and process-CPU ms/image of that pass over the images
    ms: list[list[float]] = field(default_factory=lambda: [[] for _ in range(PASSES)])
    cpu_ms: list[list[float]] = field(default_factory=lambda: [[] for _ in range(PASSES)])
    inferences: dict[str, int] = field(default_factory=dict)  # round 1
    dets: dict[str, Detections] = field(default_factory=dict)  # round 1
    same_dets: bool = True  # every later round gave round 1's detections
    versions: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def threads(self) -> str:
        """``concurrent runs x intra-op threads per run``."""
        return f"{max(self.parallel_runs, self.thread_workers)}x{self.intra_op_threads}"

    def median_ms(self, p: int) -> float | None:
        return statistics.median(self.ms[p]) if self.ms[p] else None


# ----------------------------------------------------------------------------- data


def load_images() -> list[Image]:
    out = []
    for jpg in sorted(data_path("small_objects/visdrone").glob("*.jpg")):
        out.append(Image(jpg.stem, jpg, "visdrone", jpg.with_suffix(".txt"), _wh(jpg)))
    for name in ("terrain1.jpg", "terrain2.png"):
        p = data_path(f"small_objects/sahi/{name}")
        out.append(Image(p.stem, p, "coco", p.with_name(f"{p.stem}_coco.json"), _wh(p)))
    return out


def _imread(path: str | Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return img


def _wh(path: Path) -> tuple[int, int]:
    h, w = _imread(path).shape[:2]
    return w, h


def _rows(d: Detections) -> list[list[float]]:
    return [
        [*box, score, float(cid)]
        for box, score, cid in zip(
            d.xyxy.tolist(), d.confidence.tolist(), d.class_id.tolist(), strict=True
        )
    ]


def _rows_to_dets(rows: list[list[float]]) -> Detections:
    if not rows:
        return Detections.empty()
    a = np.asarray(rows, np.float64)  # float32 values written as JSON doubles: exact
    return Detections(
        a[:, :4].astype(np.float32), a[:, 4].astype(np.float32), a[:, 5].astype(np.int32)
    )


# ------------------------------------------------------------------ worker (one process)


def _make_sliced(detector: YoloDetector) -> SlicedDetector:
    return SlicedDetector(
        detector,
        tile_wh=TILE_WH,
        overlap_ratio=OVERLAP_RATIO,
        full_frame=True,
        merge="nmm",
        metric="ios",
        merge_threshold=MERGE_THRESHOLD,
        class_aware=True,
    )


Runner = Callable[[np.ndarray], tuple[float, int, Detections | None]]
"""One image in, ``(timed seconds, inferences, detections or None)`` out."""


def _timed(call: Callable[[np.ndarray], tuple[Detections, int]]) -> Runner:
    def run(img: np.ndarray) -> tuple[float, int, Detections | None]:
        start = time.perf_counter()
        dets, n = call(img)
        return time.perf_counter() - start, n, dets

    return run


def _ours_runner(detector: YoloDetector) -> Runner:
    sliced = _make_sliced(detector)

    def call(img: np.ndarray) -> tuple[Detections, int]:
        before = sliced.stats.images_inferred
        dets = sliced(img)
        return dets, sliced.stats.images_inferred - before

    return _timed(call)


def _detonly_runner(detector: YoloDetector) -> Runner:
    """The plain detector on the crops ours runs; only the detector calls are timed."""
    sliced = _make_sliced(detector)

    def run(img: np.ndarray) -> tuple[float, int, Detections | None]:
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
        return total, len(crops), None

    return run


def _supervision_runner(detector: YoloDetector, thread_workers: int) -> tuple[Runner, str]:
    import supervision as sv

    class FullFrameSlicer(sv.InferenceSlicer):
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
        calls[0] += 1  # += on a list item is atomic enough under the GIL for counting
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
        thread_workers=thread_workers,
    )

    def call(img: np.ndarray) -> tuple[Detections, int]:
        before = calls[0]
        out = slicer(img)
        n = calls[0] - before
        if len(out) == 0:
            return Detections.empty(), n
        return (
            Detections(
                np.asarray(out.xyxy, np.float32),
                np.asarray(out.confidence, np.float32),
                np.asarray(out.class_id, np.int32),
            ),
            n,
        )

    return _timed(call), sv.__version__


def _send(obj: dict[str, Any]) -> None:
    """One protocol message on stdout (other output of libraries is ignored)."""
    sys.stdout.write(MSG_PREFIX + json.dumps(obj) + "\n")
    sys.stdout.flush()


def worker_main(request_path: Path) -> int:
    """One method, one process: load, decode, warm up, then time images on request.

    Protocol (``scripts/peers/slicing_sahi.py`` speaks the same): after the warm-up
    the worker writes ``@@ {"ready": true, "versions": ..., "params": ...}``; then
    for each line ``i`` read on stdin it runs image ``i`` of the request and writes
    ``@@ {"seconds": s, "cpu_seconds": c, "inferences": n, "dets": rows or null}``;
    it exits at the end of stdin.
    """
    req = json.loads(request_path.read_text(encoding="utf-8"))
    import onnxruntime

    detector = YoloDetector.from_onnx(
        req["model"],
        intra_op_threads=int(req["intra_op_threads"]),
        parallel_runs=int(req["parallel_runs"]),
        allow_spinning=bool(req["allow_spinning"]),
        conf_threshold=float(req["conf"]),
    )
    kind = req["worker"]
    versions = {
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
        "opencv": cv2.__version__,
    }
    run: Runner
    if kind == "full":
        run = _timed(lambda img: (detector(img), 1))
    elif kind == "ours":
        run = _ours_runner(detector)
    elif kind == "detonly":
        run = _detonly_runner(detector)
    elif kind == "supervision":
        run, versions["supervision"] = _supervision_runner(detector, int(req["thread_workers"]))
    else:
        raise ValueError(f"unknown worker {kind!r}")
    images = [_imread(item["path"]) for item in req["images"]]  # before any clock
    run(_imread(req["warmup_image"]))
    _send({"ready": True, "versions": versions, "params": {}})
    for line in sys.stdin:
        cpu = time.process_time()
        seconds, n, dets = run(images[int(line)])
        cpu = time.process_time() - cpu
        _send(
            {
                "seconds": seconds,
                "cpu_seconds": cpu,
                "inferences": n,
                "dets": _rows(dets) if dets is not None else None,
            }
        )
    detector.backend.close()  # type: ignore[attr-defined]
    return 0


# --------------------------------------------------------------------- the parent


def _request(m: Method, images: list[Image]) -> dict[str, Any]:
    return {
        "worker": m.worker,
        "repo": str(REPO),
        "model": str(data_path(MODEL)),
        "intra_op_threads": m.intra_op_threads,
        "parallel_runs": m.parallel_runs,
        "allow_spinning": m.allow_spinning,
        "thread_workers": m.thread_workers,
        "conf": CONF,
        "tile_wh": list(TILE_WH),
        "overlap_ratio": OVERLAP_RATIO,
        "postprocess": SAHI_POSTPROCESS,
        "warmup_image": str(min(images, key=lambda i: i.wh[0] * i.wh[1]).path),
        "images": [{"name": im.name, "path": str(im.path)} for im in images],
    }


class WorkerProc:
    """A fresh process of one method (this venv, or sahi's), driven image by image."""

    def __init__(
        self,
        m: Method,
        images: list[Image],
        sahi_py: Path | None,
        workdir: Path,
    ) -> None:
        self.method = m
        req = workdir / f"{m.key}-request.json"
        req.write_text(json.dumps(_request(m, images)), encoding="utf-8")
        if m.worker == "sahi":
            assert sahi_py is not None
            cmd = [str(sahi_py), str(PEERS_DIR / "slicing_sahi.py"), str(req)]
            env = _clean_env()
        else:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--serve", str(req)]
            env = dict(os.environ)
        self._stderr = (workdir / f"{m.key}-stderr.txt").open("w+", encoding="utf-8")
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            bufsize=1,
            cwd=workdir,
            env=env,
        )

    def receive(self, timeout_s: float = PROCESS_TIMEOUT_S) -> dict[str, Any]:
        """The next protocol message; RuntimeError if the process dies or stalls."""
        out = self._proc.stdout
        assert out is not None
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([out], [], [], left)[0]:
                raise RuntimeError(f"{self.method.label}: no answer in {timeout_s:.0f} s")
            line = out.readline()
            if not line:  # end of output: the process ended
                self._proc.wait(timeout=10)
                self._stderr.seek(0)
                raise RuntimeError(
                    f"{self.method.label} exited with {self._proc.returncode}:\n"
                    f"{_tail(self._stderr.read())}"
                )
            if line.startswith(MSG_PREFIX):
                msg: dict[str, Any] = json.loads(line[len(MSG_PREFIX) :])
                return msg

    def run(self, index: int) -> dict[str, Any]:
        assert self._proc.stdin is not None
        self._proc.stdin.write(f"{index}\n")
        self._proc.stdin.flush()
        return self.receive()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self._proc.stdin is not None:
                self._proc.stdin.close()
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._stderr.close()


def record(
    m: Method, per_pass: list[dict[str, dict[str, Any]]], images: list[Image], first: bool
) -> None:
    """Add one round's per-image results of ``m`` (one dict per pass)."""
    for p, per in enumerate(per_pass):
        m.ms[p].append(sum(per[im.name]["seconds"] for im in images) * 1000.0 / len(images))
        m.cpu_ms[p].append(sum(per[im.name]["cpu_seconds"] for im in images) * 1000.0 / len(images))
        for im in images:
            rows = per[im.name]["dets"]
            if first and p == 0:
                m.inferences[im.name] = int(per[im.name]["inferences"])
                if rows is not None:
                    m.dets[im.name] = _rows_to_dets(rows)
            elif rows is not None and im.name in m.dets:
                d = _rows_to_dets(rows)
                ref = m.dets[im.name]
                if len(d) != len(ref) or not (
                    np.array_equal(d.xyxy, ref.xyxy)
                    and np.array_equal(d.confidence, ref.confidence)
                    and np.array_equal(d.class_id, ref.class_id)
                ):
                    m.same_dets = False


def run_round(
    r: int,
    methods: list[Method],
    images: list[Image],
    sahi_py: Path | None,
    workdir: Path,
    notes: list[str],
) -> list[str]:
    """One round: a fresh process per method, images interleaved across methods,
    :data:`PASSES` passes over the images.

    Returns the method order used for the round's first image.
    """
    live = [m for m in methods if m.error is None]
    procs: dict[str, WorkerProc] = {}
    try:
        for m in live:
            procs[m.key] = WorkerProc(m, images, sahi_py, workdir)
        for m in live:  # every process loaded and warmed up before any clock runs
            try:
                hello = procs[m.key].receive()
                m.versions, m.params = hello.get("versions", {}), hello.get("params", {})
            except RuntimeError as exc:
                m.error = f"round {r + 1} failed: {exc}"
                notes.append(f"{m.label}: {m.error}")
        live = [m for m in live if m.error is None]
        per: dict[str, list[dict[str, dict[str, Any]]]] = {
            m.key: [{} for _ in range(PASSES)] for m in live
        }
        first_order: list[str] = []
        for p in range(PASSES):
            for i, im in enumerate(images):
                k = (r + p * len(images) + i) % len(live)
                order = live[k:] + live[:k]  # rotated per image, pass and round
                if p == 0 and i == 0:
                    first_order = [m.key for m in order]
                for m in order:
                    if m.error is not None:
                        continue
                    try:
                        per[m.key][p][im.name] = procs[m.key].run(i)
                    except RuntimeError as exc:
                        m.error = f"round {r + 1} failed: {exc}"
                        notes.append(f"{m.label}: {m.error}")
        for m in live:
            if m.error is None:
                record(m, per[m.key], images, first=not m.ms[0])
        return first_order
    finally:
        for proc in procs.values():
            proc.close()


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
            out[m.key] = evaluate_detections(gt, m.dets)
            for kind in sorted({im.gt_kind for im in images}):  # per image set as well
                names = [im.name for im in images if im.gt_kind == kind]
                out[f"{m.key}@{kind}"] = evaluate_detections(
                    {n: gt[n] for n in names}, {n: m.dets[n] for n in names}
                )
    objects = sum(len(g) for g in gt.values())
    return out, f"scored with streamer.evaluation.det ({objects} gt boxes incl. ignore boxes)"


def _fmt(v: float | None, spec: str = "7.3f") -> str:
    if v is None or v < 0:
        return f"{'n/a':>{len(format(0.0, spec))}}"
    return format(v, spec)


def _ratio(
    a: Method | None, b: Method | None, p: int, cpu: bool = False
) -> tuple[float, float, float, int] | None:
    """Median, min and max over rounds of a's ms / b's ms (wall, or CPU) in pass ``p``
    of the same round."""
    if a is None or b is None:
        return None
    xs, ys = (a.cpu_ms[p], b.cpu_ms[p]) if cpu else (a.ms[p], b.ms[p])
    if not xs or len(xs) != len(ys):
        return None
    r = [x / y for x, y in zip(xs, ys, strict=True) if y > 0]
    return (statistics.median(r), min(r), max(r), len(r)) if r else None


def _ratio_cell(r: tuple[float, float, float, int] | None) -> str:
    return f"{r[0]:.3f} ({r[1]:.2f}-{r[2]:.2f})" if r is not None else "n/a"


def build_methods(skip_peers: bool, spinning: str, only: list[str] | None) -> list[Method]:
    """The rows: every method with spinning off, on, or both (``+spin`` rows)."""
    nms = f"NMS IOS {MERGE_THRESHOLD} class-aware (with_nms)"
    nmm = f"NMM IoS {MERGE_THRESHOLD} class-aware (SAHI default)"
    methods = [
        Method("full", "full frame", "full", 1, THREADS, "detector NMS only"),
        Method("ours", "ours (SlicedDetector)", "ours", 1, THREADS, nmm),
        Method("ours_par", "ours, 2 tiles at once", "ours", 2, THREADS // 2, nmm),
        Method("sv", "supervision InferenceSlicer", "supervision", 1, THREADS, nms),
        Method(
            "sv_par",
            "supervision, 2 workers",
            "supervision",
            1,
            THREADS // 2,
            nms,
            thread_workers=2,
        ),
    ]
    if not skip_peers:
        merge = "{type} {metric} {threshold} class-aware (sahi default)".format(**SAHI_POSTPROCESS)
        methods.append(Method("sahi", "sahi get_sliced_prediction", "sahi", 1, THREADS, merge))
    methods.append(Method("det", "detector only (ours' crops)", "detonly", 1, THREADS, "-"))
    if only:
        methods = [m for m in methods if m.key in only]
    if spinning == "off":
        return methods
    spun = [
        replace(
            m,
            key=f"{m.key}+spin",
            label=f"{m.label}, spin on",
            allow_spinning=True,
            # fresh result containers (replace() would share the lists and dicts)
            ms=[[] for _ in range(PASSES)],
            cpu_ms=[[] for _ in range(PASSES)],
            inferences={},
            dets={},
            versions={},
            params={},
        )
        for m in methods
    ]
    return spun if spinning == "on" else [*methods, *spun]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve"]:
        if len(argv) != 2:
            print("usage: bench_slicing.py --serve REQUEST.json", file=sys.stderr)
            return 2
        return worker_main(Path(argv[1]))
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument(
        "--rounds",
        "--repeats",
        type=int,
        default=None,
        help=f"timed rounds (default: one per method, at least {MIN_ROUNDS})",
    )
    ap.add_argument(
        "--spinning",
        choices=("off", "on", "both"),
        default="off",
        help="ONNX Runtime allow_spinning for every method: off (default), on, or both "
        "(every method twice, rows '..., spin on' with it on)",
    )
    ap.add_argument(
        "--only",
        nargs="+",
        metavar="KEY",
        choices=("full", "ours", "ours_par", "sv", "sv_par", "sahi", "det"),
        help="run only these methods (keys: full ours ours_par sv sv_par sahi det)",
    )
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
    notes: list[str] = []
    methods = build_methods(args.skip_peers, args.spinning, args.only)
    sahi_py: Path | None = None
    if args.skip_peers:
        notes.append("sahi: skipped (--skip-peers)")
    else:
        peer = Peer("sahi", SAHI_PIP, "slicing_sahi.py", ())
        sahi_py, note = ensure_venv(peer, args.venv_dir, log)
        notes.append(f"sahi venv: {note}")
        if sahi_py is None:
            methods = [m for m in methods if m.worker != "sahi"]
    rounds = args.rounds if args.rounds is not None else max(MIN_ROUNDS, len(methods))
    if rounds < 1:
        ap.error("--rounds must be >= 1")
    orders: list[list[str]] = []
    loads: list[float] = []

    with tempfile.TemporaryDirectory(prefix="bench-slicing-") as tmp:
        for r in range(rounds):
            loads.append(os.getloadavg()[0])
            log(f"round {r + 1}/{rounds} (load {loads[-1]:.2f})")
            orders.append(run_round(r, methods, images, sahi_py, Path(tmp), notes))
    methods = [m for m in methods if m.error is None]
    by_key = {m.key: m for m in methods}

    log("scoring")
    scores, score_note = score(images, methods)
    notes.append(score_note)
    report(args, images, methods, by_key, scores, orders, loads, notes)
    print(f"total run time {time.perf_counter() - t_start:.0f} s")
    return 0


def report(
    args: argparse.Namespace,
    images: list[Image],
    methods: list[Method],
    by_key: dict[str, Method],
    scores: dict[str, dict[str, Any]],
    orders: list[list[str]],
    loads: list[float],
    notes: list[str],
) -> None:
    import onnxruntime

    n_img = len(images)
    rounds = len(orders)
    probe = _make_sliced(
        YoloDetector.from_onnx(data_path(MODEL), intra_op_threads=1, conf_threshold=CONF)
    )
    backend = probe.detector.backend
    print("Sliced inference benchmark (scripts/bench_slicing.py)")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"python {platform.python_version()}, onnxruntime {onnxruntime.__version__}, "
        f"numpy {np.__version__}, opencv {cv2.__version__}"
    )
    print(
        f"model {MODEL} (fixed batch {backend.fixed_batch}), conf {CONF}, per-tile NMS IoU "
        f"{probe.detector.iou_threshold}; tiles {TILE_WH[0]}x{TILE_WH[1]}, overlap "
        f"{OVERLAP_RATIO} ({OVERLAP_PX[0]} px), full-frame pass on; ORT allow_spinning "
        f"{args.spinning} for every method; {THREADS} inference "
        f"threads per method (runs x intra-op)"
    )
    print(
        f"{rounds} rounds x {PASSES} passes, every method in a fresh process per round, "
        f"order rotated per image; 1-min load average at each round start: "
        f"{[round(x, 2) for x in loads]}"
    )
    print("images:")
    for im in images:
        print(
            f"  {im.path.name:<30} {im.wh[0]}x{im.wh[1]}  "
            f"tiles {len(probe.tiles_for(im.wh))} + full"
        )
    print()
    print("quality (round 1; the same detections in every round unless listed below)")
    head = (
        f"{'method':<38} {'thr':>4} {'inf/img':>7} {'det/img':>7} {'AP50':>6} {'AP50_s':>6} "
        f"{'R50':>6} {'R50_s':>6}  merge"
    )
    print(head)
    print("-" * (len(head) + 40))
    for m in methods:
        inf = sum(m.inferences.values()) / n_img if m.inferences else None
        ndet = sum(len(d) for d in m.dets.values()) / n_img if m.dets else None
        s = scores.get(m.key, {})
        print(
            f"{m.label:<38} {m.threads:>4} {_fmt(inf, '7.2f')} {_fmt(ndet, '7.1f')} "
            f"{_fmt(s.get('AP50'), '6.3f')} {_fmt(s.get('AP50_small'), '6.3f')} "
            f"{_fmt(s.get('recall50'), '6.3f')} {_fmt(s.get('recall50_small'), '6.3f')}  "
            f"{m.merge}"
        )
    print()
    sets = {"visdrone": "VisDrone val", "coco": "SAHI terrain"}
    kinds = [k for k in sets if any(im.gt_kind == k for im in images)]
    print("quality by image set (AP50 all / small, class-aware; round 1)")
    head = f"{'method':<38}" + "".join(
        f" | {sets[k] + f' ({sum(im.gt_kind == k for im in images)} img)':>22}" for k in kinds
    )
    print(head)
    print("-" * len(head))
    for m in methods:
        cells = []
        for k in kinds:
            s_k = scores.get(f"{m.key}@{k}", {})
            ap = f"{_fmt(s_k.get('AP50'), '6.3f')} / {_fmt(s_k.get('AP50_small'), '6.3f')}"
            cells.append(f" | {ap:>22}")
        if any(f"{m.key}@{k}" in scores for k in kinds):
            print(f"{m.label:<38}" + "".join(cells))
    print()
    print(
        "speed: ms/image, median over rounds (min-max); CPU = process CPU ms/image (all "
        "threads), median; pass 1 = each image's first call in the process, pass 2 = again"
    )
    cols = "".join(
        f" | {f'pass {p + 1} ms/img':>15} {'min-max':>10} {'CPU':>6} {'CPU/wall':>8}"
        for p in range(PASSES)
    )
    head = f"{'method':<38} {'thr':>4}{cols}"
    print(head)
    print("-" * len(head))
    for m in methods:
        cells = []
        for p in range(PASSES):
            ms = m.median_ms(p)
            spread = f"{min(m.ms[p]):.0f}-{max(m.ms[p]):.0f}" if m.ms[p] else "n/a"
            cpu = statistics.median(m.cpu_ms[p]) if m.cpu_ms[p] else None
            ratio = [c / w for c, w in zip(m.cpu_ms[p], m.ms[p], strict=True) if w > 0]
            cpu_wall = statistics.median(ratio) if ratio else None
            cells.append(
                f" | {_fmt(ms, '15.1f')} {spread:>10} {_fmt(cpu, '6.0f')} {_fmt(cpu_wall, '8.2f')}"
            )
        print(f"{m.label:<38} {m.threads:>4}" + "".join(cells))
    print()
    print(
        "ratios, per round from the two methods' times in that round: median (min-max) over rounds"
    )
    pairs = [
        ("ours", "sahi", "ours / sahi (same config 1x2)"),
        ("ours", "sv", "ours / supervision (same config 1x2)"),
        ("ours_par", "sahi", "ours 2x1 / sahi 1x2 (sahi: no concurrent mode)"),
        ("ours_par", "sv_par", "ours 2x1 / supervision 2 workers 2x1"),
        ("ours_par", "sv", "ours 2x1 / supervision 1x2"),
        ("ours_par", "ours", "ours 2x1 / ours 1x2"),
        ("sv_par", "sv", "supervision 2x1 / supervision 1x2"),
        ("ours", "det", "ours / detector-only, same crops (overhead)"),
        ("sahi", "det", "sahi / detector-only"),
        ("sv", "det", "supervision / detector-only"),
        ("ours+spin", "sahi+spin", "spinning: ours / sahi"),
        ("ours+spin", "sv+spin", "spinning: ours / supervision"),
        ("ours_par+spin", "sahi+spin", "spinning: ours 2x1 / sahi 1x2"),
        ("ours_par+spin", "sv_par+spin", "spinning: ours 2x1 / supervision 2x1"),
        ("ours+spin", "det+spin", "spinning: ours / detector-only"),
        ("ours+spin", "ours", "spinning on / off: ours"),
        ("ours_par+spin", "ours_par", "spinning on / off: ours 2x1"),
        ("sahi+spin", "sahi", "spinning on / off: sahi"),
        ("sv+spin", "sv", "spinning on / off: supervision"),
        ("det+spin", "det", "spinning on / off: detector-only"),
    ]
    cols = "".join(
        f" | {f'pass {p + 1} wall':>20} {f'pass {p + 1} CPU':>20}" for p in range(PASSES)
    )
    head = f"{'':<48}{cols}"
    print(head)
    print("-" * len(head))
    for a, b, label in pairs:
        if by_key.get(a) is None or by_key.get(b) is None:
            continue
        # Running two tiles at once trades CPU for wall time: no CPU ratio there.
        concurrent = "par" in a or "par" in b
        cells = [
            f" | {_ratio_cell(_ratio(by_key[a], by_key[b], p)):>20} "
            f"{'-' if concurrent else _ratio_cell(_ratio(by_key[a], by_key[b], p, cpu=True)):>20}"
            for p in range(PASSES)
        ]
        print(f"{label:<48}" + "".join(cells))
    overhead = _ratio(by_key.get("ours"), by_key.get("det"), PASSES - 1)
    if overhead is not None:
        verdict = "meets" if overhead[0] <= TARGET_OVERHEAD else "MISSES"
        print(
            f"ours overhead (pass {PASSES} wall, median) {overhead[0]:.3f}: target <= "
            f"{TARGET_OVERHEAD:.2f} {verdict}"
        )
    print()
    print("per image (round 1): inferences / detections")
    for im in images:
        cells = [
            f"{m.key} {m.inferences.get(im.name, '-')}/{len(m.dets[im.name])}"
            for m in methods
            if im.name in m.dets
        ]
        print(f"  {im.name:<26} " + ", ".join(cells))
    same = {m.key: m.same_dets for m in methods if m.dets}
    print(f"detections identical in every round: {same}")
    if scores:
        any_s = next(iter(scores.values()))
        print(
            f"ground truth: {any_s['gt']} objects ({any_s['gt_small']} small <= 32² px) "
            f"in {any_s['images']} images"
        )
    print()
    print(
        "ms/image per round, pass 1 / pass 2 (methods in the order they ran the round's "
        "first image; the order rotates by one per image):"
    )
    for rnd, order in enumerate(orders):
        cells = [
            f"{key} " + "/".join(f"{by_key[key].ms[p][rnd]:.0f}" for p in range(PASSES))
            for key in order
            if key in by_key and rnd < len(by_key[key].ms[0])
        ]
        print(f"  round {rnd + 1}: " + ", ".join(cells))
    sahi = by_key.get("sahi")
    if sahi is not None:
        print(f"sahi venv versions: {sahi.versions}")
        print(f"sahi params: {sahi.params}")
    print("notes:")
    for n in notes:
        print(f"  - {n}")


if __name__ == "__main__":
    sys.exit(main())
