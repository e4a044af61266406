"""Time :meth:`trackers.ByteTrack.update` on the 11 MOT15 Faster R-CNN detection files.

Usage::

    python scripts/profile_bytetrack.py [--repeats 3] [--params preset|default]
                                        [--sequences SEQ ...] [--synthetic-frames 300]
                                        [--profile cprofile] [--compare-to FILE]

Reads every ``mot/sort_frcnn_det/<seq>/det.txt`` through :func:`streamer.data.data_path`
(``$STREAMER_DATA`` or ``../shared/data``) with :func:`streamer.evaluation.mot.read_mot`,
splits it into per-frame inputs beforehand (``float32`` ``xyxy``, ``float32``
confidence, class 0; frames ``1 .. last frame with a detection``, empty frames
included) and times only the ``update`` calls: a fresh tracker per run, best of
``--repeats`` runs per sequence. Prints per sequence the frames/s, mean µs per
``update`` and detections per frame, then the overall frames/s (total frames / total
best time over all sequences), the mean µs per update averaged over the sequences, and
a synthetic case with 100 detections per frame (objects moving linearly, noisy boxes).

``--params preset`` (default) uses ``configs/trackers/bytetrack_mot15_frcnn.yaml`` (the
parameters of ``scripts/eval_bytetrack_mot.py``), ``--params default`` the constructor
defaults; the frame rate is each sequence's MOT15 frame rate.

``--profile cprofile`` runs cProfile over one pass of all sequences and prints the top
functions by internal time.

``--compare-to FILE`` loads another ``bytetrack.py`` (e.g. a saved copy of an older
version, importing ``trackers.kalman``/``trackers.matching`` of this checkout unless
files of those names lie next to it) and checks that both produce identical outputs on
every sequence and the synthetic case, then times that version as well.
``--compare-rev REV`` does the same with the ``trackers/`` files of a git revision
(e.g. ``cd24f38``, the first ByteTrack).

Example (before/after, same run)::

    python scripts/profile_bytetrack.py --compare-rev cd24f38 --repeats 5
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from streamer.data import data_path
from streamer.evaluation.mot import read_mot
from trackers import ByteTrack

SEQUENCES = {
    "ADL-Rundle-6": 30.0,
    "ADL-Rundle-8": 30.0,
    "ETH-Bahnhof": 14.0,
    "ETH-Pedcross2": 14.0,
    "ETH-Sunnyday": 14.0,
    "KITTI-13": 10.0,
    "KITTI-17": 10.0,
    "PETS09-S2L1": 7.0,
    "TUD-Campus": 25.0,
    "TUD-Stadtmitte": 25.0,
    "Venice-2": 30.0,
}
"""MOT15 training sequences with SORT Faster R-CNN detections -> frame rate (seqinfo)."""

PRESET = Path(__file__).resolve().parents[1] / "configs/trackers/bytetrack_mot15_frcnn.yaml"

Frame = tuple[np.ndarray, np.ndarray, np.ndarray]


def load_preset() -> dict[str, Any]:
    """Constructor arguments of the preset (``tracker: {type: ..., <params>}`` layout,
    or the older ``params: {...}`` one)."""
    doc = yaml.safe_load(PRESET.read_text())
    if isinstance(doc.get("params"), dict):
        return dict(doc["params"])
    return {k: v for k, v in doc["tracker"].items() if k != "type"}


def load_sequence(name: str) -> list[Frame]:
    """Per-frame ``(xyxy float32 (N, 4), confidence float32 (N,), class int32 (N,))``."""
    det = read_mot(data_path(f"mot/sort_frcnn_det/{name}/det.txt"))
    frames = det[:, 0].astype(np.int64)
    order = np.argsort(frames, kind="stable")
    det, frames = det[order], frames[order]
    n_frames = int(frames.max()) if len(frames) else 0
    bounds = np.searchsorted(frames, np.arange(1, n_frames + 2))
    out: list[Frame] = []
    for f in range(n_frames):
        d = det[bounds[f] : bounds[f + 1]]
        xyxy = np.concatenate([d[:, 2:4], d[:, 2:4] + d[:, 4:6]], axis=1).astype(np.float32)
        out.append((xyxy, d[:, 6].astype(np.float32), np.zeros(len(d), np.int32)))
    return out


def synthetic_sequence(
    n_objects: int = 100, n_frames: int = 300, seed: int = 0, noise: float = 2.0
) -> list[Frame]:
    """``n_objects`` boxes moving linearly in a 1920x1080 image, every one detected.

    Boxes get Gaussian noise (``noise`` pixels on each corner) and scores in
    [0.3, 1.0), so both the high and the low association have work to do.
    """
    rng = np.random.default_rng(seed)
    size = rng.uniform([20, 40], [80, 200], (n_objects, 2))
    start = rng.uniform([0, 0], [1920, 1080], (n_objects, 2))
    vel = rng.uniform(-4, 4, (n_objects, 2))
    out: list[Frame] = []
    for f in range(n_frames):
        c = start + f * vel
        c = np.mod(c, [1920, 1080])  # wrap around: objects leave and re-enter
        xyxy = np.concatenate([c - size / 2, c + size / 2], axis=1)
        xyxy += rng.normal(0, noise, xyxy.shape)
        conf = rng.uniform(0.3, 1.0, n_objects)
        out.append(
            (xyxy.astype(np.float32), conf.astype(np.float32), np.zeros(n_objects, np.int32))
        )
    return out


def time_sequence(
    cls: Any, params: dict[str, Any], fps: float, frames: list[Frame], repeats: int
) -> float:
    """Best total wall time (s) of running a fresh tracker over ``frames``."""
    best = float("inf")
    for _ in range(repeats):
        tracker = cls(frame_rate=fps, **params)
        update = tracker.update
        start = time.perf_counter()
        for xyxy, conf, cls_id in frames:
            update(xyxy, conf, cls_id)
        best = min(best, time.perf_counter() - start)
    return best


def run_outputs(cls: Any, params: dict[str, Any], fps: float, frames: list[Frame]) -> list[Any]:
    tracker = cls(frame_rate=fps, **params)
    return [tracker.update(*f) for f in frames]


def same_outputs(a: list[Any], b: list[Any]) -> tuple[bool, str]:
    """Bit-identical comparison of two lists of :class:`TrackerOutput`."""
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        for field in ("xyxy", "confidence", "class_id", "track_id", "det_index"):
            u, v = getattr(x, field), getattr(y, field)
            if u.shape != v.shape or u.dtype != v.dtype or u.tobytes() != v.tobytes():
                diff = ""
                if u.shape == v.shape:
                    diff = f", max abs diff {np.max(np.abs(u.astype(float) - v)):.3g}"
                return False, f"frame {i + 1}: {field} differs{diff}"
    return True, "identical"


def load_other(path: Path) -> Any:
    """Import another version of ``bytetrack.py`` (with sibling kalman/matching if any)."""
    pkg_name = "_other_trackers"
    pkg = types.ModuleType(pkg_name)
    pkg.__path__ = [str(path.parent)]
    sys.modules[pkg_name] = pkg
    mods: dict[str, types.ModuleType] = {}
    for name in ("types", "kalman", "matching"):
        sib = path.parent / f"{name}.py"
        if sib.is_file():
            spec = importlib.util.spec_from_file_location(f"{pkg_name}.{name}", sib)
            assert spec is not None and spec.loader is not None
            mod = importlib.util.module_from_spec(spec)
            sys.modules[f"{pkg_name}.{name}"] = mod
            spec.loader.exec_module(mod)
            mods[name] = mod
    source = path.read_text()
    for name in mods:
        source = source.replace(f"from trackers.{name} import", f"from {pkg_name}.{name} import")
    module = types.ModuleType(f"{pkg_name}.bytetrack")
    module.__file__ = str(path)
    sys.modules[module.__name__] = module
    exec(compile(source, str(path), "exec"), module.__dict__)
    return module.ByteTrack


def extract_revision(rev: str) -> Path:
    """Write ``trackers/{bytetrack,kalman,matching,types}.py`` of git ``rev`` to a
    temporary folder and return the path of its ``bytetrack.py``."""
    root = Path(__file__).resolve().parents[1]
    folder = Path(tempfile.mkdtemp(prefix=f"bytetrack-{rev}-"))
    for name in ("bytetrack", "kalman", "matching", "types"):
        text = subprocess.run(
            ["git", "show", f"{rev}:trackers/{name}.py"],
            cwd=root,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        (folder / f"{name}.py").write_text(text)
    return folder / "bytetrack.py"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--params", choices=["preset", "default"], default="preset")
    parser.add_argument("--sequences", nargs="*", default=list(SEQUENCES))
    parser.add_argument("--synthetic-frames", type=int, default=300)
    parser.add_argument("--synthetic-objects", type=int, default=100)
    parser.add_argument("--profile", choices=["cprofile"], default=None)
    parser.add_argument("--compare-to", type=Path, default=None)
    parser.add_argument("--compare-rev", default=None)
    args = parser.parse_args(argv)
    if args.compare_rev is not None:
        args.compare_to = extract_revision(args.compare_rev)

    params = load_preset() if args.params == "preset" else {}
    seqs = {name: load_sequence(name) for name in args.sequences}
    synth = synthetic_sequence(args.synthetic_objects, args.synthetic_frames)
    fps_synth = 30.0

    if args.profile == "cprofile":
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.enable()
        for name, frames in seqs.items():
            run_outputs(ByteTrack, params, SEQUENCES[name], frames)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(30)
        return 0

    versions: dict[str, Any] = {"this": ByteTrack}
    if args.compare_to is not None:
        other = load_other(args.compare_to)
        versions["other"] = other
        all_same = True
        for name, frames in [*seqs.items(), ("synthetic", synth)]:
            fps = SEQUENCES.get(name, fps_synth)
            ok, msg = same_outputs(
                run_outputs(ByteTrack, params, fps, frames), run_outputs(other, params, fps, frames)
            )
            all_same &= ok
            print(f"compare {name:<16} {msg}")
        print(f"outputs {'IDENTICAL' if all_same else 'DIFFER'} to {args.compare_to}\n")

    print(f"params ({args.params}): {params or 'constructor defaults'}; best of {args.repeats}")
    for label, cls in versions.items():
        print(f"\n[{label}] {sys.modules[cls.__module__].__file__}")
        print(f"{'sequence':<16}{'frames':>7}{'dets/fr':>9}{'frames/s':>11}{'µs/update':>11}")
        total_frames, total_time, per_seq_us = 0, 0.0, []
        for name, frames in seqs.items():
            t = time_sequence(cls, params, SEQUENCES[name], frames, args.repeats)
            n = len(frames)
            dets = sum(len(f[0]) for f in frames) / max(n, 1)
            total_frames += n
            total_time += t
            per_seq_us.append(1e6 * t / n)
            print(f"{name:<16}{n:>7d}{dets:>9.1f}{n / t:>11.0f}{1e6 * t / n:>11.1f}")
        print(
            f"{'overall':<16}{total_frames:>7d}{'':>9}{total_frames / total_time:>11.0f}"
            f"{1e6 * total_time / total_frames:>11.1f}"
        )
        print(f"mean over sequences of µs/update: {np.mean(per_seq_us):.1f}")
        t = time_sequence(cls, params, fps_synth, synth, args.repeats)
        n = len(synth)
        print(
            f"synthetic {args.synthetic_objects} dets/frame, {n} frames: "
            f"{1e6 * t / n:.1f} µs/update ({n / t:.0f} frames/s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
