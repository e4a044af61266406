"""Benchmark our trackers against Python peers: speed on MOT15, accuracy on TUD.

Usage::

    python scripts/bench_trackers.py [--repeats 3] [--venv-dir DIR] [--skip-peers]
                                     [--sequences SEQ ...] [--box track|detection]
                                     [--verbose]

What runs:
    * Ours (imported in this environment): ``trackers.bytetrack.ByteTrack``,
      ``trackers.sort.Sort``, ``trackers.ocsort.OcSort`` (a class that cannot be
      imported yet is skipped with a note), each twice: with the constructor
      defaults (the reference implementation's) and with the tuned preset
      ``configs/trackers/<name>_mot15_frcnn.yaml`` (``tracker: {type: NAME, ...}``,
      or the older ``tracker: NAME`` + ``params: {...}``). The presets were tuned on
      TUD-Campus/TUD-Stadtmitte themselves, so their scores there are optimistic.
    * Peers, each in its own virtual environment under ``--venv-dir`` (default
      ``~/.cache/streamer-bench/venvs/<peer>``; created with ``python -m venv`` and
      ``pip install`` of the pinned version on first use, reused afterwards), run
      through a small adapter in ``scripts/peers/`` with the venv's python:
      Roboflow ``trackers`` (ByteTrack, SORT, OC-SORT; its import name is also
      ``trackers``, so it cannot share our environment) and ``norfair`` (IoU
      distance; it pins ``numpy < 2``). Peers run with their defaults except what
      must be set: the sequence frame rate (Roboflow) and norfair's required
      ``distance_threshold`` (0.7, the value of its own box demos). The adapters'
      docstrings say exactly what is fed and which boxes are written. A peer whose
      venv cannot be created is reported and skipped.

Input: the Faster R-CNN detections of the SORT paper for the 11 MOT15 training
sequences, ``mot/sort_frcnn_det/<seq>/det.txt`` under the shared data folder
(``streamer.data.data_path``: ``$STREAMER_DATA`` or ``../shared/data``); scores lie
in [0.5, 1.0]. Every tracker gets the same boxes, every frame ``1 .. seqLength``
(frames without detections as empty input), and the sequence's MOT15 seqinfo frame
rate (:data:`SEQUENCES`).

Speed (frames/s): tracker time only. Detections are parsed into per-frame numpy
arrays — and, for peers, into the peer's native input objects — before the clock
starts; each ``update`` call is timed (``perf_counter`` around the call) and summed;
converting results to rows happens after. frames/s = total frames of all selected
sequences / total update time of one pass over them; the best (fastest) of
``--repeats`` passes is reported. Passes are interleaved (round r runs every
tracker once) so that load from other processes on the machine hits all trackers
alike, and every tracker first runs 100 untimed frames (each peer pass is a fresh
process). All numbers come from this one run; compare ratios, not absolute fps,
across runs.

Accuracy: on TUD-Campus and TUD-Stadtmitte (the sequences with ground truth in
the data folder, ``mot/<seq>/gt.txt``) every tracker's output rows are scored by
the same scorer, ours — ``streamer.evaluation.mot.evaluate_mot`` (TrackEval HOTA,
CLEAR, Identity; IoU 0.5 for MOTA/IDF1). Our trackers' rows come from
``run_tracker_on_mot_detections`` (their own, Kalman, boxes; ``--box detection``
writes the matched detection's box instead), peer rows from the first timed pass.

Output: a table ``tracker | frames/s | ms/frame | TUD-Campus MOTA IDF1 HOTA IDSW |
TUD-Stadtmitte MOTA IDF1 HOTA IDSW``, the parameters of every row, the peers'
scores next to their published figures on these files, and the ratio of our
ByteTrack's frames/s to Roboflow's ByteTrack (target >= 5x). ``--verbose`` adds
per-sequence detections/frame and frames/s, and every pass's frames/s.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from streamer.data import data_path
from streamer.evaluation.mot import evaluate_mot, read_mot, run_tracker_on_mot_detections

REPO = Path(__file__).resolve().parents[1]
PEERS_DIR = Path(__file__).resolve().parent / "peers"
PRESETS_DIR = REPO / "configs" / "trackers"

SEQUENCES: dict[str, tuple[int, float]] = {
    "ADL-Rundle-6": (525, 30.0),
    "ADL-Rundle-8": (654, 30.0),
    "ETH-Bahnhof": (1000, 14.0),
    "ETH-Pedcross2": (837, 14.0),
    "ETH-Sunnyday": (354, 14.0),
    "KITTI-13": (340, 10.0),
    "KITTI-17": (145, 10.0),
    "PETS09-S2L1": (795, 7.0),
    "TUD-Campus": (71, 25.0),
    "TUD-Stadtmitte": (179, 25.0),
    "Venice-2": (600, 30.0),
}
"""MOT15 training sequence -> (seqLength, frameRate) from its ``seqinfo.ini`` (5500 frames)."""

GT_SEQUENCES = ("TUD-Campus", "TUD-Stadtmitte")
"""Sequences whose ground truth is in the data folder (``mot/<seq>/gt.txt``)."""

WARMUP_FRAMES = 100
PEER_TIMEOUT_S = 1800.0
PIP_TIMEOUT_S = 1200.0
TARGET_RATIO = 5.0

PUBLISHED: dict[str, dict[str, tuple[float, float, float]]] = {
    "Roboflow ByteTrack": {"TUD-Campus": (57.9, 60.3, 46.8), "TUD-Stadtmitte": (70.6, 76.0, 52.8)},
    "Roboflow SORT": {"TUD-Campus": (56.3, 55.3, 44.1), "TUD-Stadtmitte": (70.5, 75.8, 52.0)},
    "Roboflow OC-SORT": {"TUD-Campus": (57.1, 68.0, 48.8), "TUD-Stadtmitte": (68.6, 73.7, 51.1)},
}
"""Published MOTA / IDF1 / HOTA (%) of the peers with their defaults on these det files."""


@dataclass(frozen=True)
class Peer:
    """A peer package, its pinned install and its adapter."""

    name: str
    pip: tuple[str, ...]
    adapter: str
    trackers: tuple[str, ...]


PEERS = (
    Peer(
        "roboflow-trackers",
        ("trackers==2.6.1",),
        "roboflow_trackers.py",
        ("bytetrack", "sort", "ocsort"),
    ),
    Peer("norfair", ("norfair==2.3.0",), "norfair_iou.py", ("iou",)),
)

OURS = (
    # (display name, module, class, preset file stem)
    ("ByteTrack", "trackers.bytetrack", "ByteTrack", "bytetrack"),
    ("SORT", "trackers.sort", "Sort", "sort"),
    ("OC-SORT", "trackers.ocsort", "OcSort", "ocsort"),
)

FrameInput = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass
class SeqData:
    """One sequence: MOT rows and per-frame inputs for our trackers."""

    name: str
    num_frames: int
    frame_rate: float
    det_path: Path
    det_rows: np.ndarray
    frames: list[FrameInput]

    @property
    def num_dets(self) -> int:
        return len(self.det_rows)


@dataclass
class Row:
    """One line of the result table."""

    label: str
    kind: str  # "ours" or the peer name
    params: dict[str, Any]
    source: str
    seq_times: dict[str, list[float]] = field(default_factory=dict)
    rows: dict[str, np.ndarray] = field(default_factory=dict)
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    make: Callable[[float], Any] | None = None  # ours only

    def round_totals(self, seqs: Sequence[str]) -> list[float]:
        """Total update time of each complete pass over ``seqs``."""
        counts = {len(self.seq_times.get(s, [])) for s in seqs}
        n = min(counts) if counts else 0
        return [sum(self.seq_times[s][r] for s in seqs) for r in range(n)]

    def fps(self, seqs: Sequence[str], total_frames: int) -> float | None:
        totals = self.round_totals(seqs)
        return total_frames / min(totals) if totals and min(totals) > 0 else None

    def seq_fps(self, seq: SeqData) -> float | None:
        times = self.seq_times.get(seq.name)
        return seq.num_frames / min(times) if times and min(times) > 0 else None


# ----------------------------------------------------------------------------- data


def load_sequences(names: Sequence[str]) -> list[SeqData]:
    """Read the det files and pre-build our trackers' per-frame inputs."""
    out = []
    for name in names:
        n, fps = SEQUENCES[name]
        path = data_path(f"mot/sort_frcnn_det/{name}/det.txt")
        rows = read_mot(path)
        frames_col = rows[:, 0].astype(np.int64)
        if len(frames_col) and frames_col.max() > n:
            raise ValueError(f"{path}: detection at frame {frames_col.max()} > seqLength {n}")
        order = np.argsort(frames_col, kind="stable")
        sorted_rows, frames_col = rows[order], frames_col[order]
        bounds = np.searchsorted(frames_col, np.arange(1, n + 2))
        frames: list[FrameInput] = []
        for f in range(n):
            d = sorted_rows[bounds[f] : bounds[f + 1]]
            xyxy = np.concatenate([d[:, 2:4], d[:, 2:4] + d[:, 4:6]], axis=1).astype(np.float32)
            frames.append((xyxy, d[:, 6].astype(np.float32), np.zeros(len(d), np.int32)))
        out.append(SeqData(name, n, fps, path, rows, frames))
    return out


def load_preset(stem: str) -> tuple[dict[str, Any] | None, str]:
    """Parameters of ``configs/trackers/<stem>_mot15_frcnn.yaml`` (None + why if unusable)."""
    path = PRESETS_DIR / f"{stem}_mot15_frcnn.yaml"
    if not path.is_file():
        return None, f"no preset {path.relative_to(REPO)}"
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    tracker = doc.get("tracker")
    if isinstance(tracker, dict):
        params = {k: v for k, v in tracker.items() if k != "type"}
    elif isinstance(tracker, str) and isinstance(doc.get("params"), dict):
        params = dict(doc["params"])
    else:
        return None, f"{path.relative_to(REPO)}: expected 'tracker: {{type: ..., <params>}}'"
    params.pop("frame_rate", None)  # the sequence's frame rate is always used
    return params, str(path.relative_to(REPO))


def _ctor_defaults(cls: type) -> dict[str, Any]:
    """Keyword defaults of ``cls``'s constructor, without ``frame_rate`` (for the report)."""
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):
        return {}
    return {
        name: p.default
        for name, p in sig.parameters.items()
        if p.default is not inspect.Parameter.empty and name != "frame_rate"
    }


def our_rows() -> tuple[list[Row], list[str]]:
    """Our tracker configurations that can be built, and notes on those that cannot."""
    rows: list[Row] = []
    notes: list[str] = []
    for display, module, cls_name, stem in OURS:
        try:
            cls = getattr(importlib.import_module(module), cls_name)
        except Exception as exc:  # a tracker being written may fail in any way
            notes.append(f"ours {display}: skipped, cannot import {module}.{cls_name} ({exc})")
            continue
        preset, where = load_preset(stem)
        configs: list[tuple[str, dict[str, Any], str]] = [("defaults", {}, "constructor defaults")]
        defaults = _ctor_defaults(cls)
        if preset is None:
            notes.append(f"ours {display} (tuned): skipped, {where}")
        else:
            configs.append(("tuned", preset, where))
        for tag, params, source in configs:
            try:
                cls(frame_rate=30.0, **params)
            except Exception as exc:
                notes.append(f"ours {display} ({tag}): skipped, constructor failed: {exc}")
                continue
            rows.append(
                Row(
                    label=f"{display} (ours, {tag})",
                    kind="ours",
                    params=params or defaults,
                    source=source,
                    make=lambda fps, c=cls, p=params: c(frame_rate=fps, **p),
                )
            )
    return rows, notes


# -------------------------------------------------------------------------- timing


def time_ours(row: Row, seqs: Sequence[SeqData], frames_limit: int | None = None) -> None:
    """One timed pass of one of our configurations over ``seqs`` (or a warm-up)."""
    assert row.make is not None
    clock = time.perf_counter
    for seq in seqs:
        frames = seq.frames if frames_limit is None else seq.frames[:frames_limit]
        tracker = row.make(seq.frame_rate)
        update = tracker.update
        total = 0.0
        for xyxy, conf, cls in frames:
            start = clock()
            update(xyxy, conf, cls)
            total += clock() - start
        if frames_limit is None:
            row.seq_times.setdefault(seq.name, []).append(total)


# --------------------------------------------------------------------------- peers


def _tail(text: str, n: int = 12) -> str:
    lines = [ln for ln in text.splitlines() if "is ignored: it is neither" not in ln]
    return "\n".join("      " + ln for ln in lines[-n:])


def ensure_venv(peer: Peer, root: Path, log: Callable[[str], None]) -> tuple[Path | None, str]:
    """Create (or reuse) ``root/<peer>`` with the pinned packages; return its python."""
    venv = root / peer.name
    py = venv / "bin" / "python"
    marker = venv / ".streamer-bench.json"
    want = {"pip": list(peer.pip)}
    if py.is_file() and marker.is_file():
        with contextlib.suppress(ValueError, OSError):
            if json.loads(marker.read_text(encoding="utf-8")) == want:
                return py, f"reused {venv}"
    start = time.perf_counter()
    if not py.is_file():
        log(f"creating venv {venv}")
        venv.parent.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            [sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            return None, f"python -m venv {venv} failed:\n{_tail(proc.stderr + proc.stdout)}"
    log(f"pip install {' '.join(peer.pip)} into {venv}")
    try:
        proc = subprocess.run(
            [str(py), "-m", "pip", "install", "--disable-pip-version-check", *peer.pip],
            capture_output=True,
            text=True,
            check=False,
            timeout=PIP_TIMEOUT_S,
            env=_clean_env(),
        )
    except subprocess.TimeoutExpired:
        return None, f"pip install {' '.join(peer.pip)} timed out after {PIP_TIMEOUT_S:.0f} s"
    if proc.returncode != 0:
        return None, f"pip install {' '.join(peer.pip)} failed:\n{_tail(proc.stderr + proc.stdout)}"
    check = subprocess.run(
        [str(py), "-m", "pip", "check"], capture_output=True, text=True, check=False
    )
    marker.write_text(json.dumps(want), encoding="utf-8")
    note = f"created {venv} in {time.perf_counter() - start:.0f} s"
    if check.returncode != 0:
        note += f"; pip check:\n{_tail(check.stdout)}"
    return py, note


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.pop("VIRTUAL_ENV", None)
    return env


def run_peer(
    peer: Peer, py: Path, seqs: Sequence[SeqData], want_rows: bool, workdir: Path
) -> dict[str, Any]:
    """One pass of every tracker of ``peer`` over ``seqs`` in a fresh process."""
    request = {
        "trackers": list(peer.trackers),
        "repeats": 1,
        "warmup_frames": WARMUP_FRAMES,
        "sequences": [
            {
                "name": s.name,
                "det": str(s.det_path),
                "num_frames": s.num_frames,
                "frame_rate": s.frame_rate,
                "rows": want_rows and s.name in GT_SEQUENCES,
            }
            for s in seqs
        ],
    }
    req = workdir / f"{peer.name}-request.json"
    res = workdir / f"{peer.name}-result.json"
    req.write_text(json.dumps(request), encoding="utf-8")
    res.unlink(missing_ok=True)
    proc = subprocess.run(
        [str(py), str(PEERS_DIR / peer.adapter), str(req), str(res)],
        capture_output=True,
        text=True,
        check=False,
        timeout=PEER_TIMEOUT_S,
        cwd=workdir,
        env=_clean_env(),
    )
    if proc.returncode != 0 or not res.is_file():
        raise RuntimeError(
            f"adapter {peer.adapter} exited with {proc.returncode}:\n"
            f"{_tail(proc.stderr + proc.stdout)}"
        )
    result: dict[str, Any] = json.loads(res.read_text(encoding="utf-8"))
    return result


# ------------------------------------------------------------------------- scoring


def score_rows(rows: dict[str, np.ndarray], seqs: Sequence[SeqData]) -> dict[str, dict[str, Any]]:
    """Score result rows on the sequences that have ground truth."""
    out = {}
    for seq in seqs:
        if seq.name not in GT_SEQUENCES or seq.name not in rows:
            continue
        gt = read_mot(data_path(f"mot/{seq.name}/gt.txt"))
        out[seq.name] = evaluate_mot(gt, rows[seq.name], seq.name, num_frames=seq.num_frames)
    return out


def ours_result_rows(row: Row, seqs: Sequence[SeqData], box: str) -> dict[str, np.ndarray]:
    assert row.make is not None
    out = {}
    for seq in seqs:
        if seq.name in GT_SEQUENCES:
            out[seq.name] = run_tracker_on_mot_detections(
                row.make(seq.frame_rate),
                seq.det_rows,
                seq.frame_rate,
                num_frames=seq.num_frames,
                use_detection_box=box == "detection",
            )
    return out


# -------------------------------------------------------------------------- output


def _fmt_fps(v: float | None) -> str:
    return "—" if v is None else f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def print_table(rows: Sequence[Row], seqs: Sequence[SeqData]) -> None:
    names = [s.name for s in seqs]
    total_frames = sum(s.num_frames for s in seqs)
    gts = [s for s in seqs if s.name in GT_SEQUENCES]
    width = max(len(r.label) for r in rows) + 2
    head1 = " " * (width + 20)
    head2 = f"{'tracker':<{width}}{'frames/s':>10}{'ms/frame':>10}"
    for s in gts:
        head1 += f" | {f'{s.name} ({s.num_frames} frames)':<24}"
        head2 += f" | {'MOTA':>5}{'IDF1':>6}{'HOTA':>6}{'IDSW':>6} "
    print(head1.rstrip())
    print(head2)
    print("-" * len(head2))
    for r in rows:
        fps = r.fps(names, total_frames)
        ms = "—" if fps is None else f"{1000.0 / fps:.3f}"
        line = f"{r.label:<{width}}{_fmt_fps(fps):>10}{ms:>10}"
        for s in gts:
            sc = r.scores.get(s.name)
            if sc is None:
                line += f" | {'—':>5}{'—':>6}{'—':>6}{'—':>6} "
            else:
                line += (
                    f" | {100 * sc['MOTA']:>5.1f}{100 * sc['IDF1']:>6.1f}"
                    f"{100 * sc['HOTA']:>6.1f}{sc['IDSW']:>6d} "
                )
        print(line.rstrip())


def _fmt_value(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def print_params(rows: Sequence[Row]) -> None:
    print("\nParameters (frame_rate is always the sequence's):")
    for r in rows:
        shown = ", ".join(f"{k}={_fmt_value(v)}" for k, v in r.params.items()) or "—"
        print(f"  {r.label}: [{r.source}] {shown}")


def print_published(rows: Sequence[Row], seqs: Sequence[SeqData]) -> None:
    lines = []
    for r in rows:
        ref = PUBLISHED.get(r.label)
        if ref is None:
            continue
        for s in seqs:
            sc = r.scores.get(s.name)
            if sc is None or s.name not in ref:
                continue
            got = (100 * sc["MOTA"], 100 * sc["IDF1"], 100 * sc["HOTA"])
            diff = max(abs(a - b) for a, b in zip(got, ref[s.name], strict=True))
            measured = "/".join(f"{v:.1f}" for v in got)
            published = "/".join(f"{v:.1f}" for v in ref[s.name])
            lines.append(f"  {r.label:<20}{s.name:<16}{measured:>16}{published:>18}{diff:>10.1f}")
    if lines:
        print("\nPeers vs their published figures on these det files (MOTA/IDF1/HOTA, %):")
        print(f"  {'tracker':<20}{'sequence':<16}{'measured':>16}{'published':>18}{'max |Δ|':>10}")
        print("\n".join(lines))


def print_ratio(rows: Sequence[Row], seqs: Sequence[SeqData]) -> None:
    names = [s.name for s in seqs]
    total = sum(s.num_frames for s in seqs)
    ref = next((r for r in rows if r.label == "Roboflow ByteTrack"), None)
    ours = [r for r in rows if r.kind == "ours" and r.label.startswith("ByteTrack")]
    ref_fps = ref.fps(names, total) if ref is not None else None
    print()
    if not ours or ref_fps is None:
        print("ByteTrack speed ratio: not available (needs our ByteTrack and Roboflow's)")
        return
    for r in ours:
        fps = r.fps(names, total)
        if fps is None:
            continue
        ratio = fps / ref_fps
        verdict = "meets" if ratio >= TARGET_RATIO else "BELOW"
        print(
            f"{r.label} / Roboflow ByteTrack frames/s: {fps:,.0f} / {ref_fps:,.0f} = "
            f"{ratio:.1f}x  ({verdict} the >= {TARGET_RATIO:g}x target; same run, "
            f"{len(seqs)} sequences, {total} frames)"
        )


def print_verbose(rows: Sequence[Row], seqs: Sequence[SeqData]) -> None:
    names = [s.name for s in seqs]
    picked = [r for r in rows if r.label.startswith("ByteTrack (ours")]
    ref = next((r for r in rows if r.label == "Roboflow ByteTrack"), None)
    cols = [*picked, *([ref] if ref is not None else [])]
    print("\nPer sequence (frames/s = best pass of that sequence):")
    head = f"  {'sequence':<16}{'frames':>7}{'fps':>5}{'dets':>7}{'det/fr':>8}{'max':>5}"
    short = {r.label: r.label.replace(" (ours, ", " ").replace(")", "") for r in cols}
    for r in cols:
        head += f"{short[r.label]:>20}"
    if picked and ref is not None:
        head += f"{'ratio':>8}"
    print(head)
    for s in seqs:
        per = [len(f[0]) for f in s.frames]
        line = (
            f"  {s.name:<16}{s.num_frames:>7}{s.frame_rate:>5.0f}{s.num_dets:>7}"
            f"{s.num_dets / s.num_frames:>8.2f}{max(per, default=0):>5}"
        )
        for r in cols:
            line += f"{_fmt_fps(r.seq_fps(s)):>20}"
        if picked and ref is not None:
            a, b = picked[0].seq_fps(s), ref.seq_fps(s)
            line += f"{a / b:>7.1f}x" if a and b else f"{'—':>8}"
        print(line)
    total = sum(s.num_frames for s in seqs)
    dets = sum(s.num_dets for s in seqs)
    print(f"  {'all':<16}{total:>7}{'':>5}{dets:>7}{dets / total:>8.2f}")
    print("\nframes/s of every pass (all sequences):")
    for r in rows:
        passes = ", ".join(_fmt_fps(total / t) for t in r.round_totals(names) if t > 0)
        print(f"  {r.label:<28}{passes}")


# ---------------------------------------------------------------------------- main


def _git_rev() -> str:
    try:
        rev = subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev


def default_venv_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "streamer-bench" / "venvs"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Benchmark our trackers against Python peers on MOT15 detections.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed passes; best is reported")
    parser.add_argument(
        "--venv-dir", type=Path, default=default_venv_dir(), help="folder of the peer venvs"
    )
    parser.add_argument("--skip-peers", action="store_true", help="run only our trackers")
    parser.add_argument(
        "--sequences",
        nargs="+",
        choices=list(SEQUENCES),
        default=list(SEQUENCES),
        metavar="SEQ",
        help=f"MOT15 sequences to run (default all 11: {', '.join(SEQUENCES)})",
    )
    parser.add_argument(
        "--box",
        choices=["track", "detection"],
        default="track",
        help="boxes our trackers' scored rows carry: their own (Kalman) or the matched detection",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="per-sequence details")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")

    started = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {msg}", file=sys.stderr, flush=True)

    seq_names = [s for s in SEQUENCES if s in set(args.sequences)]
    try:
        seqs = load_sequences(seq_names)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    rows, notes = our_rows()

    peers: list[tuple[Peer, Path]] = []
    if args.skip_peers:
        notes.append("peers: skipped (--skip-peers)")
    else:
        for peer in PEERS:
            try:
                py, why = ensure_venv(peer, args.venv_dir.expanduser().resolve(), log)
            except (OSError, subprocess.SubprocessError) as exc:
                py, why = None, f"{type(exc).__name__}: {exc}"
            if py is None:
                notes.append(f"peer {peer.name}: skipped, {why}")
            else:
                peers.append((peer, py))
                notes.append(f"peer {peer.name}: {why}")

    peer_rows: dict[tuple[str, str], Row] = {}
    peer_versions: dict[str, dict[str, str]] = {}
    failed_peers: set[str] = set()
    for row in rows:  # warm-up (untimed)
        time_ours(row, seqs[:1], frames_limit=WARMUP_FRAMES)
    with tempfile.TemporaryDirectory(prefix="bench-trackers-") as tmp:
        for rnd in range(args.repeats):
            log(f"pass {rnd + 1}/{args.repeats}")
            for row in rows:
                time_ours(row, seqs)
            for peer, py in peers:
                if peer.name in failed_peers:
                    continue
                try:
                    result = run_peer(peer, py, seqs, rnd == 0, Path(tmp))
                except (RuntimeError, OSError, ValueError, subprocess.SubprocessError) as exc:
                    failed_peers.add(peer.name)
                    notes.append(f"peer {peer.name}: failed in pass {rnd + 1}: {exc}")
                    continue
                peer_versions[peer.name] = result["versions"]
                for name, tr in result["trackers"].items():
                    key = (peer.name, name)
                    if key not in peer_rows:
                        peer_rows[key] = Row(
                            label=tr["label"],
                            kind=peer.name,
                            params=tr["params"],
                            source=f"{peer.name}: "
                            + ", ".join(f"{k} {v}" for k, v in result["versions"].items()),
                        )
                    prow = peer_rows[key]
                    for seq_name, d in tr["sequences"].items():
                        prow.seq_times.setdefault(seq_name, []).extend(d["update_s"])
                        if d["rows"] is not None:
                            prow.rows[seq_name] = np.asarray(d["rows"], dtype=np.float64).reshape(
                                -1, 7
                            )

    log("scoring")
    for row in rows:
        try:
            row.scores = score_rows(ours_result_rows(row, seqs, args.box), seqs)
        except Exception as exc:
            notes.append(f"{row.label}: scoring failed: {exc}")
    all_rows = [*rows, *(r for k, r in peer_rows.items() if k[0] not in failed_peers)]
    for r in all_rows:
        if r.kind != "ours":
            r.scores = score_rows(r.rows, seqs)

    total_frames = sum(s.num_frames for s in seqs)
    total_dets = sum(s.num_dets for s in seqs)
    print(
        f"Tracker benchmark — streamer {_git_rev()}, Python {platform.python_version()}, "
        f"numpy {np.__version__}, {os.cpu_count()} CPUs, {platform.machine()}"
    )
    print(
        f"{len(seqs)} MOT15 sequences, {total_frames} frames, {total_dets} detections "
        f"({total_dets / total_frames:.2f}/frame); best of {args.repeats} interleaved passes; "
        f"our rows scored with {args.box} boxes"
    )
    print()
    if all_rows:
        print_table(all_rows, seqs)
        print_params(all_rows)
        print_published(all_rows, seqs)
        print_ratio(all_rows, seqs)
        if args.verbose:
            print_verbose(all_rows, seqs)
    else:
        print("no tracker could be run")
    if peer_versions:
        print("\nPeer environments:")
        for name, v in peer_versions.items():
            print(f"  {name}: " + ", ".join(f"{k} {ver}" for k, ver in v.items()))
    if notes:
        print("\nNotes:")
        for n in notes:
            print(f"  - {n}")
    print(f"\nTotal run time {time.perf_counter() - started:.0f} s")
    return 0 if all_rows else 1


if __name__ == "__main__":
    sys.exit(main())
