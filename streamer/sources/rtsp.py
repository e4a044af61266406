"""RTSP source: PyAV (FFmpeg) with open/read timeouts, reconnect with backoff, gap events.

Why PyAV rather than OpenCV's FFmpeg backend (measured against Debian's GStreamer
RTSP server on loopback, see ``../shared/FIELD-NOTES.md``):

* Frozen server (SIGSTOP): OpenCV blocks 30 s by default and then hands out *stale
  frames as if they were new* for several seconds even with its timeouts set; PyAV
  with ``timeout=(open_s, read_s)`` raises. A stale frame is worse than no frame.
* Errors: PyAV raises typed exceptions; OpenCV's ``read()`` only returns False.
* Latency of one frame: PyAV ≈ 47 ms, OpenCV ≈ 87 ms (≈ 47 ms only with one thread).
* The transport is explicit (``rtsp_transport``) instead of depending on an
  environment variable that silently switches OpenCV to UDP.

Behaviour of :class:`RtspSource`:

* ``open`` connects (retrying with backoff while the camera is unreachable, unless
  ``reconnect`` is off) and returns the stream's size and rate.
* ``read`` returns decoded frames. When the stream is lost (server killed: the
  demuxer just ends; frozen: the read timeout fires; a network error), it logs the
  loss **once**, reconnects with exponential backoff and jitter, and then returns a
  :class:`~streamer.types.StreamGap` with the number of frames that should have
  arrived meanwhile (elapsed time × fps), before the next frame. ``seq`` advances
  over the gap, so trackers coast and nothing is invented.
* Credentials in the URL (``rtsp://user:pass@host/...``; use ``${env:...}`` in the
  YAML) never appear in logs, errors or :class:`~streamer.types.StreamInfo`:
  :func:`redact_url` replaces them with ``***``.
* With ``record`` set, the source records what it reads into a clip folder (format in
  :mod:`streamer.sources.clip`) while the pipeline runs: each packet is demuxed, a
  copy muxed into the clip (no re-encoding), then decoded. Each connection is a new
  segment file starting at its first keyframe (earlier packets are neither kept nor
  decoded, so the clip replays exactly the frames the pipeline saw); each emitted
  frame is rowed with its ``seq``, ``pts_ns``, arrival and wall time, and a
  reconnect's :class:`~streamer.types.StreamGap` is rowed as a gap. Replaying the
  clip losslessly (:class:`~streamer.sources.replay.ReplaySource`) gives the frames,
  ``seq``, times and gaps of the live run.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import av
import av.error
import numpy as np

from streamer.errors import SourceError
from streamer.redact import redact_url
from streamer.sources.clip import ClipWriter
from streamer.types import Frame, StreamGap, StreamInfo

__all__ = ["Backoff", "RtspSource", "redact_url", "scrub"]

log = logging.getLogger("streamer.sources.rtsp")

Transport = Literal["tcp", "udp"]


def scrub(text: str, url: str) -> str:
    """Remove ``url``'s credentials from ``text`` (an error message that may quote the URL)."""
    parts = urlsplit(url)
    text = text.replace(url, redact_url(url))
    for secret in (parts.password, parts.username):
        if secret:
            text = text.replace(secret, "***")
    return text


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter between reconnect attempts.

    Delay of attempt ``k`` (0-based): ``min(max_delay_s, initial_delay_s * factor**k)``,
    multiplied by a uniform random factor in ``[1 - jitter, 1 + jitter]`` so that many
    cameras dropped by one network fault do not reconnect in lockstep.

    Attributes:
        initial_delay_s: First delay, seconds (> 0).
        max_delay_s: Largest delay, seconds (>= initial_delay_s).
        factor: Growth per attempt (>= 1).
        jitter: Relative jitter, [0, 1).
        max_attempts: Give up after this many failed attempts in a row (None: never).
    """

    initial_delay_s: float = 0.5
    max_delay_s: float = 10.0
    factor: float = 2.0
    jitter: float = 0.2
    max_attempts: int | None = None

    def __post_init__(self) -> None:
        if self.initial_delay_s <= 0:
            raise ValueError(f"initial_delay_s must be > 0, got {self.initial_delay_s}")
        if self.max_delay_s < self.initial_delay_s:
            raise ValueError(
                f"max_delay_s ({self.max_delay_s}) must be >= initial_delay_s "
                f"({self.initial_delay_s})"
            )
        if self.factor < 1:
            raise ValueError(f"factor must be >= 1, got {self.factor}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter}")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")

    def delay_s(self, attempt: int, rng: random.Random) -> float:
        """Delay before retry number ``attempt`` (0-based), seconds."""
        base = min(self.max_delay_s, self.initial_delay_s * self.factor**attempt)
        return base * (1.0 + self.jitter * (2.0 * rng.random() - 1.0))


class RtspSource:
    """Frames of an RTSP stream that never hangs and survives server restarts.

    ``capture_ns`` is the frame's capture time estimated on our monotonic clock from
    the stream's timestamps (see :meth:`_capture_time_ns`), so end-to-end latency
    includes time spent queued in the socket; ``pts_ns`` is that time since ``open``
    (it keeps increasing across reconnects); ``seq`` counts the frames that *should*
    have arrived (gaps included). ``StreamInfo.frame_count`` is None (live).

    Thread-safety: ``open``/``read``/``close`` from one thread (the runner's source
    thread); ``bind_stop``'s event may be set from any thread and interrupts backoff.

    Args:
        url: ``rtsp://[user:pass@]host[:port]/path``.
        source_id: Name carried by every frame.
        transport: ``tcp`` (default; no packet loss, works through NAT) or ``udp``.
        open_timeout_s: Longest wait to connect and read the stream header, seconds.
        read_timeout_s: A stream that delivers nothing for this long counts as lost,
            seconds.
        reconnect: Backoff between reconnects; None: a lost stream ends the source
            with a :class:`~streamer.errors.SourceError`.
        decode_threads: FFmpeg decoder threads (1 keeps latency lowest).
        fps: Frame rate to assume when the stream states none.
        max_frames: End the stream after this many frames (None: never).
        seed: Seed of the backoff jitter (None: random).
        record: Clip folder to record the stream into while it is read (None: no
            recording); created by ``open``, closed (complete) by ``close``.

    Raises:
        ValueError: a bad argument (names it).
        SourceError: (from ``open``/``read``) the stream cannot be opened and
            reconnect is off or gave up; the message never contains credentials.
    """

    def __init__(
        self,
        url: str,
        source_id: str = "rtsp",
        transport: Transport = "tcp",
        open_timeout_s: float = 5.0,
        read_timeout_s: float = 3.0,
        reconnect: Backoff | None = None,
        decode_threads: int = 1,
        fps: float = 25.0,
        max_frames: int | None = None,
        seed: int | None = None,
        record: str | Path | None = None,
    ) -> None:
        scheme = urlsplit(url).scheme.lower()
        if scheme not in ("rtsp", "rtsps"):
            raise ValueError(f"url must start with rtsp:// or rtsps://, got {redact_url(url)!r}")
        if transport not in ("tcp", "udp"):
            raise ValueError(f"transport must be 'tcp' or 'udp', got {transport!r}")
        if open_timeout_s <= 0 or read_timeout_s <= 0:
            raise ValueError(
                f"timeouts must be > 0, got open {open_timeout_s} s, read {read_timeout_s} s"
            )
        self.url = url
        self.source_id = source_id
        self.transport: Transport = transport
        self.open_timeout_s = open_timeout_s
        self.read_timeout_s = read_timeout_s
        self.reconnect = reconnect
        self.decode_threads = decode_threads
        self.default_fps = fps
        self.max_frames = max_frames
        self._emitted = 0
        self.reconnects = 0
        self.gaps = 0
        self.missing_frames = 0
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._container: av.container.InputContainer | None = None
        self._frames: Iterator[av.VideoFrame] | None = None
        self._fps = fps
        self._open_ns = 0
        self._seq = 0
        self._last_frame_ns: int | None = None
        self._pending: Frame | None = None
        self._opened = False
        self._anchor_ns: int | None = None
        self._anchor_at_ns = 0
        self._last_rel_ns: int | None = None
        self.record = Path(record) if record is not None else None
        self._recorder: ClipWriter | None = None
        self._loss_reason = ""

    def __repr__(self) -> str:
        return f"RtspSource({redact_url(self.url)!r}, source_id={self.source_id!r})"

    @property
    def uri(self) -> str:
        """The URL without credentials."""
        return redact_url(self.url)

    def _where(self) -> str:
        return f"source '{self.source_id}' ({self.uri})"

    def bind_stop(self, stop: threading.Event) -> None:
        """Use ``stop`` to interrupt reconnect waits (the runner's stop signal)."""
        self._stop = stop

    # -- connection ----------------------------------------------------------------
    def _connect(self) -> StreamInfo:
        """One connection attempt. Raises SourceError (credentials scrubbed)."""
        options = {"rtsp_transport": self.transport, "rtsp_flags": "prefer_tcp"}
        if self.transport == "udp":
            options = {"rtsp_transport": "udp"}
        # FFmpeg's read timeout fires after one to two times the value given (measured:
        # 1 s -> 2.0 s, 2 s -> 2.0 s against a frozen server), so half the budget is
        # passed to keep a frozen stream within ``read_timeout_s``.
        read_s = max(0.5, self.read_timeout_s / 2)
        try:
            container = av.open(
                self.url, mode="r", options=options, timeout=(self.open_timeout_s, read_s)
            )
        except (av.error.FFmpegError, OSError) as e:
            raise SourceError(f"{self._where()}: cannot open: {scrub(str(e), self.url)}") from None
        if not container.streams.video:
            container.close()
            raise SourceError(f"{self._where()}: the stream holds no video track")
        stream = container.streams.video[0]
        stream.thread_type = "SLICE" if self.decode_threads <= 1 else "AUTO"
        stream.thread_count = max(1, self.decode_threads)
        rate = stream.average_rate or stream.guessed_rate
        self._fps = float(rate) if rate and float(rate) > 0 else self.default_fps
        self._container = container
        self._frames = self._demux_decode(container, stream, self._recorder)
        if self._recorder is not None:
            self._recorder.start_segment(stream, self._fps)
        ctx = stream.codec_context
        return StreamInfo(
            source_id=self.source_id,
            fps=self._fps,
            width_px=int(ctx.width),
            height_px=int(ctx.height),
            frame_count=None,
            uri=self.uri,
        )

    @staticmethod
    def _demux_decode(
        container: av.container.InputContainer,
        stream: av.video.stream.VideoStream,
        recorder: ClipWriter | None,
    ) -> Iterator[av.VideoFrame]:
        """Demux -> (mux a copy into the recording) -> decode.

        Without a recorder this is ``container.decode(stream)``. With one, packets
        before the segment's first keyframe are skipped (not kept, not decoded).
        """
        for packet in container.demux(stream):
            if recorder is not None:
                if packet.size == 0:
                    if not recorder.recording:
                        continue
                elif not recorder.accept(packet):
                    continue
            yield from packet.decode()

    def _disconnect(self) -> None:
        if self._recorder is not None:
            self._recorder.end_segment()
        self._anchor_ns = None  # a new connection restarts the stream's timestamps
        container, self._container, self._frames = self._container, None, None
        if container is not None:
            with contextlib.suppress(av.error.FFmpegError, OSError):  # a dead connection
                container.close()

    def _connect_with_backoff(self, first_reason: str | None) -> StreamInfo:
        """Connect, retrying with backoff; raise SourceError if it gives up or stops."""
        attempt = 0
        reason = first_reason
        while True:
            if self._stop.is_set():
                raise SourceError(f"{self._where()}: stopped while reconnecting")
            try:
                return self._connect()
            except SourceError as e:
                if self.reconnect is None:
                    raise
                reason = str(e)
            backoff = self.reconnect
            if backoff.max_attempts is not None and attempt + 1 >= backoff.max_attempts:
                raise SourceError(
                    f"{self._where()}: gave up after {attempt + 1} connection attempts "
                    f"(last error: {reason})"
                )
            delay = backoff.delay_s(attempt, self._rng)
            log.debug("%s: attempt %d failed; retry in %.2f s", self._where(), attempt + 1, delay)
            attempt += 1
            if self._stop.wait(delay):
                raise SourceError(f"{self._where()}: stopped while reconnecting")

    # -- Source protocol -----------------------------------------------------------
    def open(self) -> StreamInfo:
        """Connect (retrying with backoff when ``reconnect`` is set).

        Raises:
            SourceError: the stream cannot be opened and reconnect is off, gave up,
                or the pipeline is stopping.
        """
        self._seq = 0
        self._emitted = 0
        self._last_frame_ns = None
        self._pending = None
        self._open_ns = time.monotonic_ns()
        if self.record is not None and self._recorder is None:
            self._recorder = ClipWriter(self.record, source_uri=self.uri, source_kind="rtsp")
        info = self._connect_with_backoff(None)
        self._opened = True
        return info

    def read(self) -> Frame | StreamGap | None:
        """Return the next frame, or a gap event after a reconnect.

        Returns None only when the pipeline is stopping.

        Raises:
            SourceError: the stream was lost and reconnect is off or gave up, or the
                recording cannot be written.
        """
        item = self._read()
        rec = self._recorder
        if rec is not None and item is not None:
            if isinstance(item, StreamGap):
                assert self._pending is not None  # the frame after the gap
                first_missing = self._pending.seq - item.missing_frames
                rec.add_gap(first_missing, item.missing_frames, self._loss_reason)
            else:
                # Nothing is decoded between a frame and its emission, so the last
                # decode time is this frame's arrival.
                arrival_ns = self._last_frame_ns or item.capture_ns
                rec.add_frame(item.seq, item.pts_ns, arrival_ns, item.wall_ns)
        return item

    def _read(self) -> Frame | StreamGap | None:
        if self.max_frames is not None and self._emitted >= self.max_frames:
            return None
        if self._pending is not None:
            frame, self._pending = self._pending, None
            self._emitted += 1
            return frame
        if not self._opened:
            raise SourceError(f"{self._where()}: read before open")
        while True:
            reason = self._next_frame_or_reason()
            if isinstance(reason, Frame):
                self._emitted += 1
                return reason
            lost_at_ns = self._last_frame_ns or time.monotonic_ns()
            self._disconnect()
            if self._stop.is_set():
                return None
            if self.reconnect is None:
                raise SourceError(f"{self._where()}: stream lost at frame {self._seq}: {reason}")
            log.warning(
                "%s: stream lost at frame %d (%s); reconnecting with backoff",
                self._where(),
                self._seq,
                reason,
            )
            self._loss_reason = reason
            try:
                self._connect_with_backoff(reason)
            except SourceError:
                if self._stop.is_set():
                    return None
                raise
            self.reconnects += 1
            first = self._next_frame_or_reason()
            if not isinstance(first, Frame):
                continue  # lost again at once: back to backoff (logged again)
            missing = max(0, round((first.capture_ns - lost_at_ns) / 1e9 * self._fps) - 1)
            log.warning(
                "%s: reconnected after %.1f s; %d frames missing",
                self._where(),
                (first.capture_ns - lost_at_ns) / 1e9,
                missing,
            )
            if missing == 0:
                self._emitted += 1
                return first
            # The frame was numbered before the gap was known: renumber it after the gap.
            first.seq += missing
            self._seq += missing
            self.gaps += 1
            self.missing_frames += missing
            self._pending = first
            return StreamGap(self.source_id, missing)

    def _next_frame_or_reason(self) -> Frame | str:
        """Decode one frame, or return why the stream is lost (credentials scrubbed)."""
        if self._frames is None:
            return "not connected"
        try:
            vf = next(self._frames)
        except StopIteration:
            return "the server ended the stream"
        except (av.error.FFmpegError, OSError) as e:
            return scrub(f"{type(e).__name__}: {e}", self.url)
        image: np.ndarray = vf.to_ndarray(format="bgr24")
        now_ns = time.monotonic_ns()
        capture_ns = self._capture_time_ns(vf, now_ns)
        frame = Frame(
            source_id=self.source_id,
            seq=self._seq,
            pts_ns=capture_ns - self._open_ns,
            capture_ns=capture_ns,
            image=image,
            wall_ns=time.time_ns() - (now_ns - capture_ns),
        )
        self._seq += 1
        self._last_frame_ns = now_ns
        return frame

    def _capture_time_ns(self, vf: av.VideoFrame, arrival_ns: int) -> int:
        """When the frame was (at the latest) captured, on our monotonic clock.

        The stream's timestamps say how far apart frames were captured; the earliest
        arrival seen anchors them to our clock (``anchor = min(arrival - pts)``). So a
        frame read late, because the pipeline let frames queue up in the socket
        (``policy: block``), shows its true age instead of its decode time. The anchor
        may creep later by 1 ms per second so that a camera clock running fast cannot
        make frames look ever older; a timestamp that goes backwards restarts it.
        """
        if vf.pts is None or vf.time_base is None:
            return arrival_ns
        rel_ns = int(vf.pts * vf.time_base * 1_000_000_000)
        candidate = arrival_ns - rel_ns
        if self._anchor_ns is None or self._last_rel_ns is None or rel_ns < self._last_rel_ns:
            self._anchor_ns = candidate
        else:
            crept = self._anchor_ns + (arrival_ns - self._anchor_at_ns) // 1000
            self._anchor_ns = min(crept, candidate)
        self._anchor_at_ns = arrival_ns
        self._last_rel_ns = rel_ns
        return self._anchor_ns + rel_ns

    def close(self) -> None:
        """Close the connection and the recording; idempotent."""
        self._opened = False
        self._disconnect()
        recorder, self._recorder = self._recorder, None
        if recorder is not None:
            recorder.close()
