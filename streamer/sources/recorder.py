"""``streamer record``: capture an RTSP stream, a capture device or a file to a clip.

The encoded stream is remuxed packet by packet into Matroska segments (no
re-encoding; format and reasons in :mod:`streamer.sources.clip`). Packets are also
decoded, only to row each frame exactly as a replay will decode it (frame threading
off; a 1080p H.264 stream costs a few ms of one core per frame).

Live sources (RTSP, devices) get arrival times from the monotonic clock; a lost RTSP
stream is reconnected with backoff (:class:`~streamer.sources.rtsp.Backoff`), the
next connection starts a new segment and the outage is rowed as a gap of
``round(outage * fps) - 1`` frames, as :class:`~streamer.sources.rtsp.RtspSource`
counts it. A file is read as fast as possible and its frames "arrive" at their
presentation times (``arrival_clock: "pts"``).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import av.error

from streamer.errors import SourceError
from streamer.sources.clip import ClipWriter
from streamer.sources.rtsp import Backoff, redact_url, scrub

log = logging.getLogger("streamer.sources.recorder")

SourceKind = Literal["rtsp", "device", "file"]


def source_kind(source: str, input_format: str | None = None) -> SourceKind:
    """``rtsp`` for ``rtsp(s)://`` URLs, ``device`` for ``/dev/video*`` or an explicit
    FFmpeg input format, else ``file``."""
    if source.lower().startswith(("rtsp://", "rtsps://")):
        return "rtsp"
    if input_format or source.startswith("/dev/video"):
        return "device"
    return "file"


@dataclass
class RecordResult:
    """What a recording wrote.

    Attributes:
        folder: The clip folder.
        frames: Frames recorded.
        gaps: Outages (reconnects after a lost stream).
        missing_frames: Frames missing in those outages.
        reconnects: Successful reconnects.
        duration_s: Arrival time of the last frame (files: its presentation time), s.
        ended: Why it stopped: ``duration``, ``frames``, ``end`` (the source ended),
            ``lost`` (lost and not reconnected) or ``stopped``.
    """

    folder: Path
    frames: int = 0
    gaps: int = 0
    missing_frames: int = 0
    reconnects: int = 0
    duration_s: float = 0.0
    ended: str = "end"


class _Connection:
    def __init__(self, container: av.container.InputContainer, fps: float) -> None:
        self.container = container
        self.stream = container.streams.video[0]
        self.fps = fps


def record(
    source: str,
    folder: str | Path,
    *,
    duration_s: float | None = None,
    max_frames: int | None = None,
    transport: Literal["tcp", "udp"] = "tcp",
    open_timeout_s: float = 5.0,
    read_timeout_s: float = 3.0,
    reconnect: Backoff | None = None,
    input_format: str | None = None,
    input_options: dict[str, str] | None = None,
    stop: threading.Event | None = None,
    on_frame: Callable[[int, float], None] | None = None,
) -> RecordResult:
    """Record ``source`` into the clip folder ``folder``.

    Args:
        source: ``rtsp://...`` URL, capture device (``/dev/video0``, or any FFmpeg
            input with ``input_format``) or video file.
        folder: Clip folder to create (must not hold a clip yet).
        duration_s: Stop after this long (live: wall time; file: media time), s.
        max_frames: Stop after this many frames.
        transport: RTSP transport.
        open_timeout_s: Longest wait to connect, s.
        read_timeout_s: A live stream silent this long counts as lost, s.
        reconnect: Backoff between RTSP reconnects (None: a lost stream ends the
            recording).
        input_format: FFmpeg input format of a device (``v4l2``; default for
            ``/dev/video*``).
        input_options: FFmpeg options of the input (``video_size``, ``framerate``,
            ``input_format``...).
        stop: Set from another thread to end the recording (the clip is closed).
        on_frame: Called after each frame with (frames so far, duration so far in s).

    Returns:
        The :class:`RecordResult`; the clip is complete even when stopped by Ctrl-C
        (``KeyboardInterrupt`` propagates after the clip is closed).

    Raises:
        SourceError: the source cannot be opened (and reconnect is off or gave up),
            the clip cannot be written, or the folder already holds a clip.
    """
    kind = source_kind(source, input_format)
    uri = redact_url(source) if kind == "rtsp" else source
    where = f"record {uri}"
    stop = stop or threading.Event()
    if kind == "file" and not Path(source).is_file():
        raise SourceError(f"{where}: no such file")
    fmt = input_format or ("v4l2" if kind == "device" else None)
    if fmt is not None and fmt not in av.formats_available:
        raise SourceError(
            f"{where}: this PyAV build has no {fmt!r} input (the pip wheels of av ship no "
            "capture devices; install av built against the system FFmpeg)"
        )

    def connect() -> _Connection:
        options = dict(input_options or {})
        timeout: tuple[float, float] | None = None
        if kind == "rtsp":
            options.setdefault("rtsp_transport", transport)
            timeout = (open_timeout_s, max(0.5, read_timeout_s / 2))
        try:
            container = av.open(source, mode="r", format=fmt, options=options, timeout=timeout)
        except (av.error.FFmpegError, OSError) as e:
            raise SourceError(f"{where}: cannot open: {scrub(str(e), source)}") from None
        if not container.streams.video:
            container.close()
            raise SourceError(f"{where}: no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "SLICE"
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        return _Connection(container, float(rate) if rate and float(rate) > 0 else 25.0)

    started_ns = time.monotonic_ns()

    def over_time() -> bool:
        return (
            kind != "file"
            and duration_s is not None
            and time.monotonic_ns() - started_ns >= duration_s * 1e9
        )

    def connect_with_backoff(reason: str) -> _Connection | None:
        attempt = 0
        rng = random.Random()
        while not stop.is_set() and not over_time():
            try:
                return connect()
            except SourceError as e:
                reason = str(e)
            assert reconnect is not None
            if reconnect.max_attempts is not None and attempt + 1 >= reconnect.max_attempts:
                raise SourceError(f"{where}: gave up after {attempt + 1} attempts ({reason})")
            stop.wait(reconnect.delay_s(attempt, rng))
            attempt += 1
        return None

    result = RecordResult(Path(folder))
    writer = ClipWriter(
        folder,
        source_uri=uri,
        source_kind=kind,
        arrival_clock="pts" if kind == "file" else "monotonic",
    )
    conn: _Connection | None = None
    try:
        conn = connect() if kind != "rtsp" or reconnect is None else connect_with_backoff("")
        if conn is None:
            result.ended = "stopped"
            return result
        state = _FrameClock(kind, conn, time.time_ns())
        writer.start_segment(conn.stream, conn.fps)
        seq = 0
        lost: tuple[int, str] | None = None  # (arrival of the last frame, reason)
        while True:
            ended: str | None = None
            try:
                for vf, arrival_ns in _demux_decode(conn, writer):
                    pts_ns, arrival_ns, wall_ns = state.times(vf, arrival_ns)
                    if duration_s is not None and arrival_ns - state.first_arrival >= (
                        duration_s * 1e9
                    ):
                        ended = "duration"
                        break
                    if lost is not None:
                        missing = max(0, round((arrival_ns - lost[0]) / 1e9 * conn.fps) - 1)
                        if missing:
                            writer.add_gap(seq, missing, lost[1])
                            seq += missing
                            result.gaps += 1
                            result.missing_frames += missing
                        lost = None
                    writer.add_frame(seq, pts_ns, arrival_ns, wall_ns)
                    seq += 1
                    result.frames += 1
                    result.duration_s = (arrival_ns - state.first_arrival) / 1e9
                    if on_frame is not None:
                        on_frame(result.frames, result.duration_s)
                    if max_frames is not None and result.frames >= max_frames:
                        ended = "frames"
                        break
                    if stop.is_set():
                        ended = "stopped"
                        break
                reason = "the stream ended"
            except (av.error.FFmpegError, OSError) as e:
                reason = scrub(f"{type(e).__name__}: {e}", source)
            if ended is None and (stop.is_set() or over_time()):
                ended = "stopped" if stop.is_set() else "duration"
            if ended is not None:
                result.ended = ended
                break
            if kind != "rtsp" or reconnect is None:
                result.ended = "end" if kind == "file" else "lost"
                if kind != "file":
                    log.warning("%s: stream lost (%s); recording ends", where, reason)
                break
            log.warning("%s: stream lost at frame %d (%s); reconnecting", where, seq, reason)
            lost = (state.last_arrival, reason)
            writer.end_segment()
            conn.container.close()
            conn = connect_with_backoff(reason)
            if conn is None:
                result.ended = "stopped" if stop.is_set() else "duration"
                break
            result.reconnects += 1
            state.new_segment(conn)
            writer.start_segment(conn.stream, conn.fps)
    finally:
        writer.close()
        if conn is not None:
            conn.container.close()
    return result


def _demux_decode(conn: _Connection, writer: ClipWriter) -> Iterator[tuple[av.VideoFrame, int]]:
    """Demux, mux a copy, decode: each frame with the arrival time of its packet."""
    for packet in conn.container.demux(conn.stream):
        arrival_ns = time.monotonic_ns()
        if packet.size == 0:
            if not writer.recording:
                continue  # the final flush packet of a stream that never started
        elif not writer.accept(packet):
            continue
        for vf in packet.decode():
            yield vf, arrival_ns


class _FrameClock:
    """The times of each recorded frame: pts on one timeline across segments, arrival."""

    def __init__(self, kind: SourceKind, conn: _Connection, wall0_ns: int) -> None:
        self.kind = kind
        self.wall0_ns = wall0_ns
        self.first_arrival: int = 0
        self.last_arrival: int = 0
        self._started = False
        self._seg_base_ns = 0
        self._seg_first_pts: int | None = None
        self._last_pts_ns = -1
        self._fps = conn.fps
        self._tb: Fraction = conn.stream.time_base or Fraction(1, 90000)
        self._new_segment = True

    def new_segment(self, conn: _Connection) -> None:
        self._fps = conn.fps
        self._tb = conn.stream.time_base or Fraction(1, 90000)
        self._new_segment = True

    def times(self, vf: av.VideoFrame, arrival_ns: int) -> tuple[int, int, int]:
        """(pts_ns, arrival_ns, wall_ns) of a frame: pts from the first frame; arrival
        absolute monotonic (files: the pts); wall from ``time.time_ns``."""
        step = round(1e9 / self._fps)
        if self._new_segment:
            self._new_segment = False
            self._seg_first_pts = vf.pts
            if self.kind == "file" or not self._started:
                base = 0 if not self._started else self._last_pts_ns + step
            else:
                base = max(arrival_ns - self.first_arrival, self._last_pts_ns + step)
            self._seg_base_ns = base
            pts_ns = base
        elif vf.pts is None or self._seg_first_pts is None:
            pts_ns = self._last_pts_ns + step
        else:
            pts_ns = self._seg_base_ns + int((vf.pts - self._seg_first_pts) * self._tb * 10**9)
        self._last_pts_ns = pts_ns
        if self.kind == "file":
            wall_ns = self.wall0_ns + pts_ns
            arrival_ns = pts_ns
        else:
            wall_ns = time.time_ns() - (time.monotonic_ns() - arrival_ns)
        if not self._started:
            self._started = True
            self.first_arrival = arrival_ns
        self.last_arrival = arrival_ns
        return pts_ns, arrival_ns, wall_ns


__all__ = ["RecordResult", "record", "source_kind"]
