"""Per-stage counters: processed packets and latency (mean, p95) over a bounded window."""

from __future__ import annotations

import bisect
import itertools
import threading
from collections.abc import Sequence

import numpy as np

LATENCY_BUCKETS_MS: tuple[float, ...] = (
    0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
)  # fmt: skip
"""Default histogram bucket upper bounds, milliseconds (Prometheus ``le``; +Inf is implied)."""


class LatencyStats:
    """Latency samples in milliseconds, kept in a fixed-size ring buffer.

    The count and mean cover every sample; percentiles cover the newest
    ``window`` samples, so memory stays bounded over days of running. Every sample
    is also counted in fixed histogram buckets (for Prometheus, read with
    :meth:`histogram`), which cost one bisection per sample.

    Thread-safety: ``record`` and the readers may be called from different threads.

    Args:
        window: Number of newest samples kept for percentiles, >= 1.
        buckets_ms: Histogram bucket upper bounds, milliseconds, strictly increasing.
    """

    def __init__(
        self, window: int = 65_536, buckets_ms: Sequence[float] = LATENCY_BUCKETS_MS
    ) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        bounds = tuple(float(b) for b in buckets_ms)
        if not bounds or any(b >= c for b, c in itertools.pairwise(bounds)):
            raise ValueError(f"buckets_ms must be non-empty and increasing, got {bounds}")
        self._bounds = bounds
        self._bucket_counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self._ring = np.zeros(window, dtype=np.float32)
        self._next = 0
        self._count = 0
        self._sum_ms = 0.0
        self._max_ms = float("-inf")
        self._lock = threading.Lock()

    def record(self, ms: float) -> None:
        """Add one sample, milliseconds."""
        with self._lock:
            self._ring[self._next] = ms
            self._next = (self._next + 1) % len(self._ring)
            self._count += 1
            self._sum_ms += ms
            self._max_ms = max(self._max_ms, ms)
            self._bucket_counts[bisect.bisect_left(self._bounds, ms)] += 1

    @property
    def count(self) -> int:
        return self._count

    @property
    def mean_ms(self) -> float:
        """Mean over all samples (NaN when there are none)."""
        return self._sum_ms / self._count if self._count else float("nan")

    @property
    def max_ms(self) -> float:
        """Largest sample ever recorded (NaN when there are none)."""
        return self._max_ms if self._count else float("nan")

    def histogram(self) -> tuple[tuple[float, ...], list[int], float, int]:
        """A consistent snapshot of the histogram of every sample.

        Returns:
            ``(bounds_ms, cumulative_counts, sum_ms, count)``: bucket upper bounds in
            ms; ``len(bounds_ms) + 1`` cumulative counts of samples ``<=`` each bound,
            the last being every sample (+Inf); the sum of all samples in ms; their count.
        """
        with self._lock:
            counts = list(self._bucket_counts)
            total, count = self._sum_ms, self._count
        cumulative, running = [], 0
        for c in counts:
            running += c
            cumulative.append(running)
        return self._bounds, cumulative, total, count

    def summary(self) -> dict[str, float | int]:
        """``{"count", "p50", "p95", "max", "mean"}`` in milliseconds, rounded to 0.01."""

        def r(x: float) -> float:
            return round(x, 2) if x == x else float("nan")

        return {
            "count": self.count,
            "p50": r(self.percentile_ms(50)),
            "p95": r(self.percentile_ms(95)),
            "max": r(self.max_ms),
            "mean": r(self.mean_ms),
        }

    def recent_ms(self) -> np.ndarray:
        """The newest samples (up to ``window``) in the order they were recorded, ms.

        Returns:
            ``(n,) float32`` copy.
        """
        with self._lock:
            n = min(self._count, len(self._ring))
            if self._count <= len(self._ring):
                return self._ring[:n].copy()
            return np.concatenate([self._ring[self._next :], self._ring[: self._next]])

    def percentile_ms(self, q: float) -> float:
        """The ``q``-th percentile (0-100) of the newest samples (NaN when empty)."""
        with self._lock:
            n = min(self._count, len(self._ring))
            if n == 0:
                return float("nan")
            return float(np.percentile(self._ring[:n], q))


class StageStats:
    """Counters of one stage: packets processed (in all and per source id,
    ``packets_by_source``), batches run, latency per packet, and
    packets dropped before processing because they were older than their source's
    ``max_frame_age_ms`` (``stale_drops``, per source id), and batches that mixed
    frames of several sources (``cross_source_batches``).

    Thread-safety: written by the stage's thread only; other threads may read the
    counters (plain ints and dicts: a read sees a value at most one batch old)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.packets = 0
        self.packets_by_source: dict[str, int] = {}
        self.batches = 0
        self.latency = LatencyStats()
        self.stale_drops: dict[str, int] = {}
        self.cross_source_batches = 0

    def record_batch(self, n_packets: int, elapsed_ms: float) -> None:
        """Record one ``process`` call that handled ``n_packets`` in ``elapsed_ms``."""
        self.packets += n_packets
        self.batches += 1
        self.latency.record(elapsed_ms / max(n_packets, 1))


class SourceStats:
    """Counters of one source over a run.

    Attributes:
        source_id: The source.
        frames: Frames read.
        gaps: Stream gaps (reconnects after lost frames).
        missing_frames: Frames missing in those gaps.
        reconnects: Successful reconnects (live sources).
        latency: End-to-end latency of its frames, capture to the end of the last
            stage, milliseconds.
        last_frame_ns: ``time.monotonic_ns()`` when the runner last received a frame
            of this source, or None before the first.
        ended: The source has ended (end of stream, ``max_frames``, stop or error).
        end_error: Why it ended, when it ended with an error, else None.

    Thread-safety: written by the source's thread (``latency`` by the last stage's);
    other threads may read (health checks, metrics scrapes).
    """

    def __init__(self, source_id: str) -> None:
        self.source_id = source_id
        self.frames = 0
        self.gaps = 0
        self.missing_frames = 0
        self.reconnects = 0
        self.latency = LatencyStats()
        self.last_frame_ns: int | None = None
        self.ended = False
        self.end_error: str | None = None
