"""Live preview: annotated JPEG frames handed to an HTTP server through latest-frame slots.

:class:`PreviewSink` draws each frame like the annotated video sink (the same
:class:`~streamer.sinks.annotate.FrameAnnotator`), at most ``max_fps`` frames per
second per source, encodes it as JPEG (``cv2.imencode``) and puts it in a
:class:`PreviewHub`: one slot per source that holds only the newest JPEG. Publishing
replaces the slot and never waits for a reader, so HTTP clients cannot slow the
pipeline; a slow client simply gets the newest frame each time it is ready for one
(frames in between are never queued for it). While nobody watches a source, its
frames are not drawn or encoded at all.

The hub starts no threads: the sink (pipeline thread) writes, the HTTP server's
request threads read (see :mod:`streamer.pipeline.server`).
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from streamer.errors import SinkError
from streamer.sinks.annotate import DrawState, FrameAnnotator
from streamer.types import Packet, StreamInfo

if TYPE_CHECKING:
    from streamer.analytics.zones import AnalyticsSpecs

_NAME = "preview sink"


@dataclass(frozen=True)
class PreviewFrame:
    """One published JPEG.

    Attributes:
        version: Per-source publication number, from 1, strictly increasing.
        seq: ``seq`` of the frame it shows.
        jpeg: The JPEG file bytes.
    """

    version: int
    seq: int
    jpeg: bytes


class PreviewHub:
    """Latest-frame slots, one per source, between one writer and many readers.

    Thread-safety: every method may be called from any thread. ``publish`` holds the
    lock only to swap a reference and wake waiting readers; it never blocks on them.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._slots: dict[str, PreviewFrame | None] = {}
        self._viewers: dict[str, int] = {}
        self._closed = False

    def add_source(self, source_id: str) -> None:
        """Announce a source (its slot stays empty until the first ``publish``)."""
        with self._cond:
            self._slots.setdefault(source_id, None)

    def sources(self) -> list[str]:
        """The announced sources, in the order they were added."""
        with self._cond:
            return list(self._slots)

    def publish(self, source_id: str, seq: int, jpeg: bytes) -> None:
        """Replace the source's slot with a new JPEG and wake its readers."""
        with self._cond:
            old = self._slots.get(source_id)
            version = old.version + 1 if old is not None else 1
            self._slots[source_id] = PreviewFrame(version, seq, jpeg)
            self._cond.notify_all()

    def latest(self, source_id: str) -> PreviewFrame | None:
        """The newest JPEG of a source, or None before the first."""
        with self._cond:
            return self._slots.get(source_id)

    def wait_newer(
        self, source_id: str, after_version: int, timeout_s: float
    ) -> PreviewFrame | None:
        """Wait for a JPEG newer than ``after_version``.

        Args:
            source_id: The source.
            after_version: The version the reader already has (0 for none).
            timeout_s: Longest wait, seconds.

        Returns:
            The newest frame (frames published while the reader was busy are skipped),
            or None on timeout or once the hub is closed.
        """
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not self._closed:
                frame = self._slots.get(source_id)
                if frame is not None and frame.version > after_version:
                    return frame
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
            return None

    @contextlib.contextmanager
    def viewer(self, source_id: str) -> Iterator[None]:
        """Count a reader of ``source_id`` for as long as the ``with`` block lasts."""
        with self._cond:
            self._viewers[source_id] = self._viewers.get(source_id, 0) + 1
        try:
            yield
        finally:
            with self._cond:
                self._viewers[source_id] -= 1

    def watched(self, source_id: str) -> bool:
        """Whether anyone reads ``source_id`` now (a lock-free read; may lag one call)."""
        return self._viewers.get(source_id, 0) > 0

    def close(self) -> None:
        """Wake every waiting reader; later waits return None at once."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed


@dataclass
class _PreviewSource:
    draw: DrawState
    last_at: float = -math.inf  # time.monotonic() of the last published frame
    published: int = 0


class PreviewSink:
    """Draw tracks (or detections) and publish JPEGs to a :class:`PreviewHub`.

    Args:
        hub: Where the JPEGs go.
        max_fps: Most frames published per second and source, (0, 120]; frames in
            between are skipped (not drawn, not encoded).
        jpeg_quality: JPEG quality, 1-100.
        max_width_px: Frames wider than this are scaled down (after drawing) to this
            width, keeping the aspect ratio; None keeps the size.
        only_when_watched: Draw and encode only while an HTTP client watches the
            source (the preview then costs nothing when nobody looks).
        trace_length_s: Motion-trail length, seconds; 0 disables trails.
        draw_confidence: Whether labels show the confidence.
        draw_labels: Whether to draw labels at all.
        text_scale: Label font scale.
        box_thickness: Box line thickness, pixels.
        analytics: Line/zone geometry to draw (as for the annotated video sink).

    Raises:
        ValueError: if a parameter is out of its valid range.

    Thread-safety: one writer thread calls ``open``/``write``; ``stats`` and ``close``
    may come from other threads.
    """

    def __init__(
        self,
        hub: PreviewHub,
        max_fps: float = 10.0,
        jpeg_quality: int = 80,
        max_width_px: int | None = None,
        *,
        only_when_watched: bool = True,
        trace_length_s: float = 2.0,
        draw_confidence: bool = True,
        draw_labels: bool = True,
        text_scale: float = 0.5,
        box_thickness: int = 2,
        analytics: AnalyticsSpecs | None = None,
    ) -> None:
        if not (math.isfinite(max_fps) and 0.0 < max_fps <= 120.0):
            raise ValueError(f"max_fps: must be in (0, 120], got {max_fps}")
        if not 1 <= jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality: must be in [1, 100], got {jpeg_quality}")
        if max_width_px is not None and max_width_px < 16:
            raise ValueError(f"max_width_px: must be >= 16, got {max_width_px}")
        self.hub = hub
        self.max_fps = float(max_fps)
        self.jpeg_quality = int(jpeg_quality)
        self.max_width_px = max_width_px
        self.only_when_watched = only_when_watched
        self._period_s = 1.0 / self.max_fps
        self._annotator = FrameAnnotator(
            trace_length_s,
            draw_confidence,
            draw_labels=draw_labels,
            text_scale=text_scale,
            box_thickness=box_thickness,
            analytics=analytics,
        )
        self._params = [int(cv2.IMWRITE_JPEG_QUALITY), self.jpeg_quality]
        self._sources: dict[str, _PreviewSource] = {}
        self._encode_s = 0.0
        self._closed = False

    def open(self, info: StreamInfo, class_names: Sequence[str]) -> None:
        """Start drawing ``info.source_id`` (a repeated open of a source is a no-op).

        Raises:
            SinkError: if the sink is closed.
        """
        if self._closed:
            raise SinkError(f"{_NAME}: open('{info.source_id}') after close")
        if info.source_id in self._sources:
            return
        fps = info.fps if math.isfinite(info.fps) and info.fps > 0 else 25.0
        draw = self._annotator.new_state(info.source_id, class_names, fps)
        self._sources[info.source_id] = _PreviewSource(draw)
        self.hub.add_source(info.source_id)

    def write(self, packet: Packet) -> None:
        """Publish the packet's annotated frame, unless it is too soon or nobody watches.

        Raises:
            SinkError: if the source was not opened, the sink is closed, or the image
                is not ``(H, W, 3) uint8`` or cannot be encoded.
        """
        src = self._sources.get(packet.source_id)
        if src is None or self._closed:
            state = "closed" if self._closed else "not opened"
            raise SinkError(
                f"{_NAME}: write for source '{packet.source_id}' (frame {packet.seq}): sink {state}"
            )
        if self.only_when_watched and not self.hub.watched(packet.source_id):
            return
        now = time.monotonic()
        if now - src.last_at < self._period_s:
            return
        t0 = time.perf_counter()
        image = packet.frame.image
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise SinkError(
                f"{_NAME}: frame {packet.seq} of source '{packet.source_id}': expected "
                f"(H, W, 3) uint8 BGR, got {image.shape} {image.dtype}"
            )
        canvas = np.array(image, dtype=np.uint8, order="C", copy=True)
        self._annotator.annotate(src.draw, canvas, packet)
        out: np.ndarray = canvas
        h, w = canvas.shape[:2]
        if self.max_width_px is not None and w > self.max_width_px:
            size = (self.max_width_px, max(1, round(h * self.max_width_px / w)))
            out = cv2.resize(canvas, size, interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", out, self._params)
        if not ok:
            raise SinkError(f"{_NAME}: cannot encode frame {packet.seq} of '{packet.source_id}'")
        self.hub.publish(packet.source_id, packet.seq, buf.tobytes())
        src.last_at = now
        src.published += 1
        self._encode_s += time.perf_counter() - t0

    def stats(self) -> dict[str, float | int]:
        """Frames published (all sources) and the mean draw + encode time, ms."""
        published = sum(s.published for s in self._sources.values())
        mean_ms = 1000.0 * self._encode_s / published if published else 0.0
        return {"published": published, "draw_encode_ms": round(mean_ms, 2)}

    def close(self) -> None:
        """Stop publishing; idempotent. The hub stays open (the server owns it)."""
        self._closed = True


__all__ = ["PreviewFrame", "PreviewHub", "PreviewSink"]
