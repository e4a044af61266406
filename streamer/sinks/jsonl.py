"""JSON-lines sink: one JSON object per frame with its tracks (or detections).

Record layout (keys in this order, compact separators, UTF-8, one per line)::

    {"source_id": "cam1", "seq": 0, "pts_s": 0.0,
     "timestamp": "2024-05-01T12:00:00.123Z", "wall_time_s": 1714564800.123456,
     "tracks": [{"track_id": 3, "xyxy": [10.0, 20.5, 30.25, 40.0],
                 "confidence": 0.912, "class_id": 0, "class_name": "person"}]}

A packet without tracks (a detector-only pipeline) carries ``"detections"``
instead of ``"tracks"``, with the same fields minus ``track_id``; a packet with
neither carries ``"detections": []``. A frame with zero tracks still gets its
record (``"tracks": []``), so a reader sees every frame.

A packet that went through an analytics stage also carries ``"analytics"``, the
last key: line counts and zone occupancy/dwell of that frame, as made by
:class:`~streamer.analytics.zones.SceneAnalytics`, e.g.
``"analytics": {"lines": {"exit": {"in": 0, "out": 2, ...}}, "zones": {...}}``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from streamer.errors import SinkError
from streamer.sinks.base import LineFile, close_all, resolve_path
from streamer.types import Detections, Packet, StreamInfo, Tracks

_NAME = "jsonl sink"
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def format_timestamp(wall_ns: int) -> str | None:
    """Return ``wall_ns`` (``time.time_ns()``) as ISO-8601 UTC with milliseconds.

    Args:
        wall_ns: Nanoseconds since the Unix epoch; 0 means "not recorded".

    Returns:
        For example ``"2024-05-01T12:00:00.123Z"`` (truncated, not rounded, to the
        millisecond), or None when ``wall_ns`` is 0.
    """
    if wall_ns == 0:
        return None
    secs, ns = divmod(wall_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{ns // 1_000_000:03d}Z"


def _finite_or_none(values: np.ndarray, ndigits: int) -> list[Any]:
    """Round float64 ``values`` to ``ndigits``; non-finite entries become None (JSON null)."""
    rounded = np.round(values, ndigits)
    if np.isfinite(rounded).all():
        return rounded.tolist()
    obj = rounded.astype(object)
    obj[~np.isfinite(rounded)] = None
    return obj.tolist()


def rows_to_records(
    xyxy: np.ndarray,
    confidence: np.ndarray,
    class_id: np.ndarray,
    class_names: Sequence[str],
    track_id: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """Turn struct-of-arrays rows into JSON-ready dicts (vectorised rounding, one pass).

    Args:
        xyxy: ``(N, 4)`` boxes, pixels; rounded to 2 decimals.
        confidence: ``(N,)`` scores; rounded to 3 decimals.
        class_id: ``(N,)`` integer class ids.
        class_names: Names indexed by class id; unknown ids are named by their digits.
        track_id: ``(N,)`` integer track ids, or None for detections.

    Returns:
        One dict per row with keys ``track_id`` (when given), ``xyxy``,
        ``confidence``, ``class_id``, ``class_name``; non-finite floats become None.
    """
    boxes = _finite_or_none(np.asarray(xyxy, dtype=np.float64), 2)
    confs = _finite_or_none(np.asarray(confidence, dtype=np.float64), 3)
    classes: list[int] = np.asarray(class_id).tolist()
    n_names = len(class_names)
    names = [class_names[c] if 0 <= c < n_names else str(c) for c in classes]
    if track_id is None:
        return [
            {"xyxy": b, "confidence": s, "class_id": c, "class_name": n}
            for b, s, c, n in zip(boxes, confs, classes, names, strict=True)
        ]
    ids: list[int] = np.asarray(track_id).tolist()
    return [
        {"track_id": t, "xyxy": b, "confidence": s, "class_id": c, "class_name": n}
        for t, b, s, c, n in zip(ids, boxes, confs, classes, names, strict=True)
    ]


def packet_to_record(packet: Packet, class_names: Sequence[str]) -> dict[str, Any]:
    """Return the JSON-ready record of one packet (see the module docstring for the layout)."""
    frame = packet.frame
    record: dict[str, Any] = {
        "source_id": frame.source_id,
        "seq": frame.seq,
        "pts_s": round(frame.pts_ns / 1e9, 6),
        "timestamp": format_timestamp(frame.wall_ns),
        "wall_time_s": round(frame.wall_ns / 1e9, 6) if frame.wall_ns else None,
    }
    tracks: Tracks | None = packet.tracks
    if tracks is not None:
        record["tracks"] = rows_to_records(
            tracks.xyxy, tracks.confidence, tracks.class_id, class_names, tracks.track_id
        )
    else:
        dets: Detections = packet.detections if packet.detections is not None else _EMPTY
        record["detections"] = rows_to_records(
            dets.xyxy, dets.confidence, dets.class_id, class_names
        )
    if packet.analytics is not None:
        record["analytics"] = packet.analytics
    return record


_EMPTY = Detections.empty()


class JsonlTracksSink:
    """Write one JSON object per frame to a ``.jsonl`` file per source (or one shared file).

    Args:
        path_template: Output path; ``{source_id}`` is replaced by the source id.
            Without it, all sources share one file (every record names its source).
        flush_interval_s: Longest time, seconds of wall clock, a written record may
            wait in the process's buffer; a crash loses at most this much.

    Raises:
        ValueError: if ``flush_interval_s`` is not in [0, 60].

    Thread-safety: one writer thread calls ``open``/``write``; ``close`` may come
    from another thread after writes stopped.
    """

    def __init__(self, path_template: str | Path, flush_interval_s: float = 1.0) -> None:
        if not 0.0 <= flush_interval_s <= 60.0:
            raise ValueError(f"flush_interval_s: must be in [0, 60], got {flush_interval_s}")
        self.path_template = str(path_template)
        self.flush_interval_s = flush_interval_s
        self._files: dict[Path, LineFile] = {}
        self._source_file: dict[str, LineFile] = {}
        self._class_names: dict[str, tuple[str, ...]] = {}
        self._closed = False

    def paths(self) -> dict[str, Path]:
        """Return the output file of every opened source, by source id."""
        return {sid: f.path for sid, f in self._source_file.items()}

    def open(self, info: StreamInfo, class_names: Sequence[str]) -> None:
        """Open (or share) the output file of ``info.source_id``; a repeated open is a no-op.

        Raises:
            SinkError: if the sink is closed or the file cannot be created.
        """
        if self._closed:
            raise SinkError(f"{_NAME}: open('{info.source_id}') after close")
        self._class_names[info.source_id] = tuple(class_names)
        if info.source_id in self._source_file:
            return
        path = resolve_path(self.path_template, info.source_id)
        line_file = self._files.get(path)
        if line_file is None:
            line_file = LineFile(path, _NAME, self.flush_interval_s)
            self._files[path] = line_file
        self._source_file[info.source_id] = line_file

    def write(self, packet: Packet) -> None:
        """Append the record of ``packet``.

        Raises:
            SinkError: if the source was not opened, the sink is closed, or the write fails.
        """
        line_file = self._source_file.get(packet.source_id)
        if line_file is None or self._closed:
            state = "closed" if self._closed else "not opened"
            raise SinkError(
                f"{_NAME}: write for source '{packet.source_id}' (frame {packet.seq}): sink {state}"
            )
        record = packet_to_record(packet, self._class_names[packet.source_id])
        line_file.write(_ENCODE(record) + "\n")

    def close(self) -> None:
        """Flush and close every file; idempotent.

        Raises:
            SinkError: if a file could not be flushed (all files are still closed).
        """
        if self._closed:
            return
        self._closed = True
        files, self._files = self._files, {}
        close_all([(str(p), f) for p, f in files.items()], _NAME)


__all__ = ["JsonlTracksSink", "format_timestamp", "packet_to_record", "rows_to_records"]
