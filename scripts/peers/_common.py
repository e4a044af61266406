"""Shared plumbing of the peer adapters (numpy and the standard library only).

The adapters in this folder run inside a peer's own virtual environment (never
the project's), started by ``scripts/bench_trackers.py``::

    <peer-venv>/bin/python scripts/peers/<adapter>.py REQUEST.json RESULT.json

``REQUEST.json``::

    {"trackers": ["bytetrack", ...],          # names the adapter knows
     "repeats": 1,                            # timed passes over all sequences
     "warmup_frames": 100,                    # untimed frames run first per tracker
     "sequences": [{"name": "TUD-Campus", "det": "/path/det.txt",
                    "num_frames": 71, "frame_rate": 25.0, "rows": true}, ...]}

``RESULT.json``::

    {"peer": ..., "versions": {package: version},
     "trackers": {name: {"label": ..., "params": {...},
                         "sequences": {seq: {"update_s": [seconds per repeat],
                                             "rows": [[frame, id, x, y, w, h, conf], ...]
                                                     or null}}}}}

Only the tracker's per-frame ``update`` calls are timed (one ``perf_counter`` pair
around each call, summed); detections are parsed and converted to the peer's
native input type before the clock starts, and results are converted to rows
after it stops. ``rows`` are written for sequences with ``"rows": true`` only,
from the first repeat, with 1-based frames and top-left/size boxes.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import Any

import numpy as np

Frame = tuple[np.ndarray, np.ndarray]
"""One frame's detections: ``xyxy (N, 4) float64`` and ``confidence (N,) float64``."""

Row = list[float]


def load_frames(det_path: str, num_frames: int) -> list[Frame]:
    """Parse a MOTChallenge ``det.txt`` into one ``(xyxy, confidence)`` per frame 1..n."""
    data = np.loadtxt(det_path, delimiter=",", ndmin=2, dtype=np.float64)
    frames = data[:, 0].astype(np.int64)
    if len(frames) and (frames.min() < 1 or frames.max() > num_frames):
        raise ValueError(f"{det_path}: frames outside 1..{num_frames}")
    order = np.argsort(frames, kind="stable")
    data, frames = data[order], frames[order]
    bounds = np.searchsorted(frames, np.arange(1, num_frames + 2))
    out: list[Frame] = []
    for f in range(num_frames):
        d = data[bounds[f] : bounds[f + 1]]
        xyxy = np.concatenate([d[:, 2:4], d[:, 2:4] + d[:, 4:6]], axis=1)
        out.append((np.ascontiguousarray(xyxy), np.ascontiguousarray(d[:, 6])))
    return out


def versions(packages: Sequence[str]) -> dict[str, str]:
    """Installed versions of ``packages`` (``"missing"`` for one not installed)."""
    found: dict[str, str] = {"python": sys.version.split()[0]}
    for name in packages:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "missing"
    return found


class PeerTracker:
    """What an adapter supplies for one tracker of a peer.

    Attributes:
        label: Display name, e.g. ``"Roboflow ByteTrack"``.
        params: The constructor arguments used (for the report).
        make: ``make(frame_rate) -> tracker``, a fresh instance.
        convert: ``convert(frames) -> inputs``: native per-frame inputs, built
            before timing (called again for every pass, since some peers mutate
            their inputs).
        update: ``update(tracker, native_input) -> output``: the call that is timed.
        to_rows: ``to_rows(output, frame) -> rows``: after timing.
    """

    def __init__(
        self,
        label: str,
        params: dict[str, Any],
        make: Callable[[float], Any],
        convert: Callable[[list[Frame]], list[Any]],
        update: Callable[[Any, Any], Any],
        to_rows: Callable[[Any, int], list[Row]],
    ) -> None:
        self.label = label
        self.params = params
        self.make = make
        self.convert = convert
        self.update = update
        self.to_rows = to_rows


def _run_sequence(
    spec: PeerTracker, frames: list[Frame], frame_rate: float, want_rows: bool
) -> tuple[float, list[Row] | None]:
    inputs = spec.convert(frames)
    tracker = spec.make(frame_rate)
    update = spec.update
    clock = time.perf_counter
    total = 0.0
    rows: list[Row] | None = [] if want_rows else None
    for index, native in enumerate(inputs):
        start = clock()
        output = update(tracker, native)
        total += clock() - start
        if rows is not None:
            rows.extend(spec.to_rows(output, index + 1))
    return total, rows


def main(peer: str, packages: Sequence[str], registry: dict[str, PeerTracker]) -> int:
    """Run the request in ``sys.argv[1]`` and write the result to ``sys.argv[2]``."""
    if len(sys.argv) != 3:
        print(f"usage: {sys.argv[0]} REQUEST.json RESULT.json", file=sys.stderr)
        return 2
    with open(sys.argv[1], encoding="utf-8") as fh:
        request = json.load(fh)
    names = list(request["trackers"])
    unknown = [n for n in names if n not in registry]
    if unknown:
        print(f"{peer}: unknown trackers {unknown}; known {sorted(registry)}", file=sys.stderr)
        return 2
    sequences = request["sequences"]
    repeats = int(request.get("repeats", 1))
    warmup = int(request.get("warmup_frames", 0))
    loaded = {s["name"]: load_frames(s["det"], int(s["num_frames"])) for s in sequences}
    result: dict[str, Any] = {"peer": peer, "versions": versions(packages), "trackers": {}}
    for name in names:
        spec = registry[name]
        if warmup > 0 and sequences:
            first = sequences[0]
            _run_sequence(spec, loaded[first["name"]][:warmup], float(first["frame_rate"]), False)
        per_seq: dict[str, Any] = {s["name"]: {"update_s": [], "rows": None} for s in sequences}
        for repeat in range(repeats):
            for s in sequences:
                want = bool(s.get("rows")) and repeat == 0
                seconds, rows = _run_sequence(spec, loaded[s["name"]], float(s["frame_rate"]), want)
                per_seq[s["name"]]["update_s"].append(seconds)
                if rows is not None:
                    per_seq[s["name"]]["rows"] = rows
        result["trackers"][name] = {
            "label": spec.label,
            "params": spec.params,
            "sequences": per_seq,
        }
    with open(sys.argv[2], "w", encoding="utf-8") as fh:
        json.dump(result, fh)
    return 0
