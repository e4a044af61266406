"""Replay a recorded clip (or any video file), deterministically or in real time.

Two clocks:

* ``virtual`` (default): as fast as possible, and reproducible run to run. No thread
  of the pipeline decides anything by wall-clock time: the replay source itself
  simulates the live capture path on the *recorded* arrival times (see
  :func:`simulate_capture`) and emits exactly the frames such a live pipeline would
  have taken, with the ``seq`` holes its drops leave (the tracker coasts over them),
  a :class:`~streamer.types.StreamGap` where the recording had a gap, ``pts_ns`` and
  ``wall_ns`` from the recording. The pipeline then runs lossless: the builder gives
  the source a ``block`` buffer and does not apply the runner's age-based drops to
  it. ``capture_ns`` is the real read time (it only feeds latency statistics).
* ``realtime``: frames are released at their recorded arrival times divided by
  ``speed``; the source then behaves like a live camera (its capture buffer may be
  ``drop_oldest``, the runner's freshness budget applies), and is not reproducible.
  ``capture_ns`` is the scheduled release time. Waits honour the runner's stop event.

A plain video file (no ``frames.jsonl``) is replayed as if a camera had delivered its
frames at the nominal frame rate: frame ``i`` arrives at ``i / fps``.

Thread-safety: ``open``/``read``/``close`` from one thread (the runner's source
thread); the stop event given to ``bind_stop`` may be set from any thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import av.error
import numpy as np

from streamer.errors import SourceError
from streamer.sources.clip import Clip, FrameRow, GapRow, Row, is_clip, load_clip
from streamer.types import Frame, StreamGap, StreamInfo

log = logging.getLogger("streamer.sources.replay")

Clock = Literal["virtual", "realtime"]
BufferPolicy = Literal["block", "drop_oldest"]
Decision = Literal["emit", "buffer_drop", "stale_drop"]


def simulate_capture(
    arrivals_ns: Sequence[int],
    cost_ns: int,
    capacity: int = 2,
    policy: BufferPolicy = "drop_oldest",
    max_age_ns: int | None = None,
) -> list[Decision]:
    """Which frames a live pipeline would have processed, given their arrival times.

    The model (an event simulation on the recorded timeline, no wall clock):

    * The pipeline is one server that takes the oldest buffered frame whenever it is
      free and spends ``cost_ns`` on it (the per-frame time of the pipeline's slowest
      stage; stages overlap, so the slowest one sets the pace). Its inner queues are
      not modelled.
    * Frames arrive at ``arrivals_ns`` into the capture buffer (the channel out of
      the source) of ``capacity`` frames. ``drop_oldest``: an arrival into a full
      buffer drops its oldest frame (``buffer_drop``). ``block``: nothing is dropped
      here (a live source backs up into the socket; the frame keeps its arrival time,
      so its age grows).
    * Freshness: a frame older than ``max_age_ns`` (start of processing minus arrival)
      when the server takes it is dropped without cost (``stale_drop``), as the
      runner's ``max_frame_age_ms`` does.
    * Ties: a server that becomes free exactly when a frame arrives takes the buffered
      frame first, then the arrival enters the buffer.

    With ``cost_ns = 0`` every frame is processed at its arrival: lossless.

    Args:
        arrivals_ns: Arrival time of each frame, ns, in order (made non-decreasing).
        cost_ns: Modelled processing time per frame, ns (>= 0).
        capacity: Capture buffer capacity, frames (>= 1).
        policy: ``drop_oldest`` or ``block``.
        max_age_ns: Freshness budget, ns; None: none.

    Returns:
        One decision per frame: ``emit``, ``buffer_drop`` or ``stale_drop``.

    Raises:
        ValueError: a negative cost, a capacity < 1, an unknown policy.
    """
    if cost_ns < 0:
        raise ValueError(f"cost_ns must be >= 0, got {cost_ns}")
    if capacity < 1:
        raise ValueError(f"capacity must be >= 1, got {capacity}")
    if policy not in ("block", "drop_oldest"):
        raise ValueError(f"policy must be 'block' or 'drop_oldest', got {policy!r}")
    decisions: list[Decision | None] = [None] * len(arrivals_ns)
    arrival: list[int] = []
    buffered: deque[int] = deque()
    free_at: int | None = None

    def serve(until: int | None) -> None:
        nonlocal free_at
        while buffered and (until is None or free_at is None or free_at <= until):
            j = buffered.popleft()
            start = arrival[j] if free_at is None else max(free_at, arrival[j])
            if max_age_ns is not None and start - arrival[j] > max_age_ns:
                decisions[j] = "stale_drop"
                free_at = start
                continue
            decisions[j] = "emit"
            free_at = start + cost_ns

    latest = None
    for i, a in enumerate(arrivals_ns):
        a = int(a) if latest is None else max(int(a), latest)
        latest = a
        arrival.append(a)
        serve(a)
        if policy == "drop_oldest" and len(buffered) >= capacity:
            decisions[buffered.popleft()] = "buffer_drop"
        buffered.append(i)
    serve(None)
    assert all(d is not None for d in decisions)
    return [d for d in decisions if d is not None]


@dataclass(frozen=True)
class ReplayStats:
    """What a replay emits, decided at ``open`` on the virtual clock.

    Attributes:
        recorded_frames: Frames of the clip considered (after ``max_frames``).
        emitted: Frames the source emits.
        buffer_drops: Frames dropped by the modelled capture buffer (virtual clock).
        stale_drops: Frames dropped by the modelled freshness budget (virtual clock).
        gaps: Recorded gaps (stream lost), each emitted as a StreamGap.
        missing_frames: Frames missing in those gaps.
    """

    recorded_frames: int
    emitted: int
    buffer_drops: int = 0
    stale_drops: int = 0
    gaps: int = 0
    missing_frames: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "recorded_frames": self.recorded_frames,
            "emitted": self.emitted,
            "buffer_drops": self.buffer_drops,
            "stale_drops": self.stale_drops,
            "gaps": self.gaps,
            "missing_frames": self.missing_frames,
        }


class ReplaySource:
    """Frames of a recorded clip (or a video file) on a virtual or a real-time clock.

    Args:
        path: A clip folder (``streamer record``) or a video file.
        source_id: Name carried by every frame.
        clock: ``virtual`` (deterministic, as fast as possible) or ``realtime``.
        speed: Real-time speed factor (2.0: twice as fast); ``realtime`` only.
        virtual_cost_ms: Modelled per-frame processing time, ms (0: lossless);
            ``virtual`` only.
        buffer_capacity: Capture buffer capacity modelled on the virtual clock, frames.
        buffer_policy: Capture buffer policy modelled on the virtual clock.
        max_frame_age_ms: Freshness budget modelled on the virtual clock, ms (None:
            none). On the real-time clock pass it to the runner instead.
        max_frames: Replay only the first N recorded frames (None: all).
        decode_threads: FFmpeg decoder threads (0: FFmpeg's choice).

    Raises:
        ValueError: a bad argument (names it).
        SourceError: (from ``open``/``read``) a missing or unreadable clip or video,
            a decode error, or a segment that ends before its rows.
    """

    def __init__(
        self,
        path: str | Path,
        source_id: str = "replay",
        *,
        clock: Clock = "virtual",
        speed: float = 1.0,
        virtual_cost_ms: float = 0.0,
        buffer_capacity: int = 2,
        buffer_policy: BufferPolicy = "drop_oldest",
        max_frame_age_ms: float | None = None,
        max_frames: int | None = None,
        decode_threads: int = 0,
    ) -> None:
        if clock not in ("virtual", "realtime"):
            raise ValueError(f"clock must be 'virtual' or 'realtime', got {clock!r}")
        if not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        if virtual_cost_ms < 0:
            raise ValueError(f"virtual_cost_ms must be >= 0, got {virtual_cost_ms}")
        if buffer_capacity < 1:
            raise ValueError(f"buffer_capacity must be >= 1, got {buffer_capacity}")
        if max_frames is not None and max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {max_frames}")
        self.path = Path(path)
        self.source_id = source_id
        self.clock: Clock = clock
        self.speed = speed
        self.virtual_cost_ms = virtual_cost_ms
        self.buffer_capacity = buffer_capacity
        self.buffer_policy: BufferPolicy = buffer_policy
        self.max_frame_age_ms = max_frame_age_ms
        self.max_frames = max_frames
        self.decode_threads = decode_threads
        self.replay_stats = ReplayStats(0, 0)
        self._stop = threading.Event()
        self._rows: list[Row] = []
        self._emit: list[bool] = []  # per row: emit this frame row (gap rows: True)
        self._segments: list[Path] = []
        self._next = 0
        self._first_arrival_ns = 0
        self._t0_ns: int | None = None
        self._segment = -1
        self._container: av.container.InputContainer | None = None
        self._frames: Iterator[av.VideoFrame] | None = None
        self._complete = True

    def __repr__(self) -> str:
        return (
            f"ReplaySource({str(self.path)!r}, source_id={self.source_id!r}, clock={self.clock!r})"
        )

    def _where(self) -> str:
        return f"source '{self.source_id}' ({self.path})"

    def bind_stop(self, stop: threading.Event) -> None:
        """Use ``stop`` to interrupt real-time waits (the runner's stop signal)."""
        self._stop = stop

    # -- open ----------------------------------------------------------------------
    def open(self) -> StreamInfo:
        """Read the clip's rows (or probe the video), decide what to emit, and return
        the stream information (``frame_count``: the frames this source will emit).

        Raises:
            SourceError: a missing or unreadable clip or video.
        """
        self.close()
        if not self.path.exists():
            raise SourceError(f"{self._where()}: not found")
        if is_clip(self.path):
            clip = load_clip(self.path)
            rows, segments = self._clip_rows(clip)
            fps = clip.fps
            width, height = clip.manifest.get("width_px"), clip.manifest.get("height_px")
        elif self.path.is_file():
            rows, fps, width, height = self._video_rows()
            segments = [self.path]
        else:
            raise SourceError(f"{self._where()}: neither a clip folder nor a video file")
        if self.max_frames is not None:
            rows = _first_frames(rows, self.max_frames)
        frames = [r for r in rows if isinstance(r, FrameRow)]
        if not frames:
            raise SourceError(f"{self._where()}: holds no frames")
        gaps = [r for r in rows if isinstance(r, GapRow)]
        self._rows, self._segments = rows, segments
        self._first_arrival_ns = frames[0].arrival_ns
        decisions: list[Decision] = ["emit"] * len(frames)
        if self.clock == "virtual":
            decisions = simulate_capture(
                [r.arrival_ns for r in frames],
                round(self.virtual_cost_ms * 1e6),
                self.buffer_capacity,
                self.buffer_policy,
                round(self.max_frame_age_ms * 1e6) if self.max_frame_age_ms else None,
            )
        it = iter(decisions)
        self._emit = [True if isinstance(r, GapRow) else next(it) == "emit" for r in rows]
        self.replay_stats = ReplayStats(
            recorded_frames=len(frames),
            emitted=decisions.count("emit"),
            buffer_drops=decisions.count("buffer_drop"),
            stale_drops=decisions.count("stale_drop"),
            gaps=len(gaps),
            missing_frames=sum(g.missing_frames for g in gaps),
        )
        self._next = 0
        self._t0_ns = None
        if not fps or fps <= 0:
            raise SourceError(f"{self._where()}: the recording states no frame rate")
        if not width or not height:
            raise SourceError(f"{self._where()}: the recording states no frame size")
        return StreamInfo(
            source_id=self.source_id,
            fps=float(fps),
            width_px=int(width),
            height_px=int(height),
            frame_count=self.replay_stats.emitted,
            uri=str(self.path),
        )

    def _clip_rows(self, clip: Clip) -> tuple[list[Row], list[Path]]:
        """The clip's rows; for a killed recording, without rows past the last packet."""
        rows = list(clip.rows)
        self._complete = bool(clip.manifest.get("complete"))
        if not self._complete and clip.frame_rows:
            last = clip.frame_rows[-1].segment
            packets = _count_packets(clip.segments[last])
            kept, seen = [], 0
            for r in rows:
                if isinstance(r, FrameRow) and r.segment == last:
                    seen += 1
                    if seen > packets:
                        continue
                kept.append(r)
            if seen > packets:
                log.warning(
                    "%s: the recording was not closed; %d rows past its last packet ignored",
                    self._where(),
                    seen - packets,
                )
            rows = kept
        return rows, list(clip.segments)

    def _video_rows(self) -> tuple[list[Row], float, int, int]:
        """Rows of a plain video: frame ``i`` arrives at ``i / fps`` (nominal rate)."""
        try:
            with av.open(str(self.path)) as container:
                if not container.streams.video:
                    raise SourceError(f"{self._where()}: the file holds no video stream")
                stream = container.streams.video[0]
                rate = stream.average_rate or stream.guessed_rate or stream.base_rate
                fps = float(rate) if rate else 0.0
                tb = stream.time_base or Fraction(1, 1)
                ctx = stream.codec_context
                width, height = int(ctx.width), int(ctx.height)
                pts = [p.pts for p in container.demux(stream) if p.size]
        except av.error.FFmpegError as e:
            raise SourceError(f"{self._where()}: not a readable video file ({e})") from None
        if fps <= 0:
            raise SourceError(f"{self._where()}: the stream states no frame rate")
        known = sorted(p for p in pts if p is not None)
        rows: list[Row] = []
        for i in range(len(pts)):
            if len(known) == len(pts):
                pts_ns = int((known[i] - known[0]) * tb * 1_000_000_000)
            else:
                pts_ns = round(i * 1e9 / fps)
            rows.append(FrameRow(i, 0, pts_ns, round(i * 1e9 / fps), 0))
        return rows, fps, width, height

    # -- read ----------------------------------------------------------------------
    def read(self) -> Frame | StreamGap | None:
        """The next emitted frame or gap event; None at the end (or when stopping).

        Raises:
            SourceError: a decode error, or a segment that ends before its rows.
        """
        while self._next < len(self._rows):
            i = self._next
            row = self._rows[i]
            self._next += 1
            if isinstance(row, GapRow):
                return StreamGap(self.source_id, row.missing_frames)
            vf = self._decode(row)
            if vf is None:
                return None
            if not self._emit[i]:
                continue
            capture_ns = time.monotonic_ns()
            if self.clock == "realtime":
                scheduled = self._release_at(row)
                if scheduled is None:
                    return None
                capture_ns = scheduled
            image: np.ndarray = vf.to_ndarray(format="bgr24")
            return Frame(
                source_id=self.source_id,
                seq=row.seq,
                pts_ns=row.pts_ns,
                capture_ns=capture_ns,
                image=image,
                wall_ns=row.wall_ns,
            )
        return None

    def _release_at(self, row: FrameRow) -> int | None:
        """Wait until ``row``'s scaled arrival time; its monotonic time, or None on stop."""
        now = time.monotonic_ns()
        if self._t0_ns is None:
            self._t0_ns = now
        due = self._t0_ns + round((row.arrival_ns - self._first_arrival_ns) / self.speed)
        if due > now and self._stop.wait((due - now) / 1e9):
            return None
        return due

    def _decode(self, row: FrameRow) -> av.VideoFrame | None:
        """Decode the frame paired with ``row`` (the next one of its segment)."""
        if row.segment != self._segment:
            self._open_segment(row.segment)
        assert self._frames is not None
        try:
            return next(self._frames)
        except StopIteration:
            msg = (
                f"{self._where()}: segment {row.segment} ended before frame {row.seq} "
                "(recording truncated or corrupt); frames before it were processed"
            )
            if self._complete:
                raise SourceError(msg) from None
            log.warning("%s", msg)
            self._next = len(self._rows)
            return None
        except av.error.FFmpegError as e:
            raise SourceError(f"{self._where()}: decode error at frame {row.seq}: {e}") from None

    def _open_segment(self, index: int) -> None:
        self._close_container()
        path = self._segments[index]
        try:
            container = av.open(str(path))
        except (av.error.FFmpegError, OSError) as e:
            raise SourceError(f"{self._where()}: cannot open {path.name}: {e}") from None
        if not container.streams.video:
            container.close()
            raise SourceError(f"{self._where()}: {path.name} holds no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if self.decode_threads:
            stream.thread_count = self.decode_threads
        self._container = container
        self._frames = container.decode(stream)
        self._segment = index

    def _close_container(self) -> None:
        container, self._container, self._frames = self._container, None, None
        self._segment = -1
        if container is not None:
            container.close()

    def close(self) -> None:
        """Close the open segment; idempotent."""
        self._close_container()


def _first_frames(rows: list[Row], n: int) -> list[Row]:
    """Rows up to and including the ``n``-th frame row."""
    out: list[Row] = []
    frames = 0
    for r in rows:
        if frames >= n:
            break
        out.append(r)
        if isinstance(r, FrameRow):
            frames += 1
    return out


def _count_packets(path: Path) -> int:
    """Video packets in a (possibly truncated) segment file, without decoding."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return 0
            n = 0
            try:
                for p in container.demux(container.streams.video[0]):
                    n += 1 if p.size else 0
            except av.error.FFmpegError:
                pass  # a cut-off cluster at the end of a killed recording
            return n
    except (av.error.FFmpegError, OSError):
        return 0


__all__ = ["ReplaySource", "ReplayStats", "simulate_capture"]
