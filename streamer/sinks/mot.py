"""MOTChallenge text sink: ``frame,id,x,y,w,h,conf,-1,-1,-1`` per track, one file per source.

The format is the one TrackEval and py-motmetrics read for tracker results
(MOTChallenge, Milan et al., "MOT16: A Benchmark for Multi-Object Tracking", 2016):

- ``frame`` is 1-based: ``seq + 1``.
- ``id`` is the track id.
- ``x, y`` is the top-left corner and ``w, h`` the size of the box, pixels, 2 decimals.
- ``conf`` is the track's confidence, 3 decimals.
- the last three fields (world coordinates) are ``-1``.

A frame with zero tracks writes no row. A packet without tracks (a detector-only
pipeline) writes its detections with ``id = -1``, as in MOTChallenge ``det.txt`` files.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from streamer.errors import SinkError
from streamer.sinks.base import LineFile, close_all, resolve_path
from streamer.types import Packet, StreamInfo

_NAME = "mot sink"


def mot_rows(
    frame_index: int, xyxy: np.ndarray, confidence: np.ndarray, ids: np.ndarray | None
) -> str:
    """Format the MOT rows of one frame.

    Args:
        frame_index: 1-based MOT frame number.
        xyxy: ``(N, 4)`` boxes, pixels (any float dtype; computed in float64).
        confidence: ``(N,)`` scores.
        ids: ``(N,)`` integer track ids, or None to write ``-1`` (detections).

    Returns:
        ``N`` newline-terminated rows, or ``""`` when ``N == 0``.
    """
    n = len(xyxy)
    if n == 0:
        return ""
    boxes = np.asarray(xyxy, dtype=np.float64)
    x = boxes[:, 0].tolist()
    y = boxes[:, 1].tolist()
    w = (boxes[:, 2] - boxes[:, 0]).tolist()
    h = (boxes[:, 3] - boxes[:, 1]).tolist()
    conf = np.asarray(confidence, dtype=np.float64).tolist()
    id_list: list[int] = [-1] * n if ids is None else np.asarray(ids).tolist()
    return "".join(
        f"{frame_index},{i},{x_:.2f},{y_:.2f},{w_:.2f},{h_:.2f},{c:.3f},-1,-1,-1\n"
        for i, x_, y_, w_, h_, c in zip(id_list, x, y, w, h, conf, strict=True)
    )


class MotTracksSink:
    """Write tracks as MOTChallenge rows, one text file per source.

    Args:
        path_template: Output path; must contain ``{source_id}`` when more than one
            source is opened (frame numbers of two sources cannot share a file).
        flush_interval_s: Longest time, seconds of wall clock, written rows may wait
            in the process's buffer.

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
        self._files: dict[str, LineFile] = {}
        self._closed = False

    def paths(self) -> dict[str, Path]:
        """Return the output file of every opened source, by source id."""
        return {sid: f.path for sid, f in self._files.items()}

    def open(self, info: StreamInfo, class_names: Sequence[str]) -> None:
        """Create the file of ``info.source_id``; a repeated open of a source is a no-op.

        Raises:
            SinkError: if the sink is closed, the path is already used by another
                source (``{source_id}`` missing from the template), or the file
                cannot be created.
        """
        if self._closed:
            raise SinkError(f"{_NAME}: open('{info.source_id}') after close")
        if info.source_id in self._files:
            return
        path = resolve_path(self.path_template, info.source_id)
        for other, f in self._files.items():
            if f.path == path:
                raise SinkError(
                    f"{_NAME}: sources '{other}' and '{info.source_id}' would share '{path}'; "
                    "put {source_id} in path_template"
                )
        self._files[info.source_id] = LineFile(path, _NAME, self.flush_interval_s)

    def write(self, packet: Packet) -> None:
        """Append the rows of ``packet``'s tracks (or detections, with id -1).

        Raises:
            SinkError: if the source was not opened, the sink is closed, or the write fails.
        """
        line_file = self._files.get(packet.source_id)
        if line_file is None or self._closed:
            state = "closed" if self._closed else "not opened"
            raise SinkError(
                f"{_NAME}: write for source '{packet.source_id}' (frame {packet.seq}): sink {state}"
            )
        frame_index = packet.seq + 1
        if packet.tracks is not None:
            t = packet.tracks
            text = mot_rows(frame_index, t.xyxy, t.confidence, t.track_id)
        elif packet.detections is not None:
            d = packet.detections
            text = mot_rows(frame_index, d.xyxy, d.confidence, None)
        else:
            text = ""
        line_file.write(text)  # also on empty frames: the flush clock keeps running

    def close(self) -> None:
        """Flush and close every file; idempotent.

        Raises:
            SinkError: if a file could not be flushed (all files are still closed).
        """
        if self._closed:
            return
        self._closed = True
        close_all(list(self._files.items()), _NAME)


__all__ = ["MotTracksSink", "mot_rows"]
