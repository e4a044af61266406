"""Per-stage counters: processed packets and latency (mean, p95) over a bounded window."""

from __future__ import annotations

import threading

import numpy as np


class LatencyStats:
    """Latency samples in milliseconds, kept in a fixed-size ring buffer.

    The count and mean cover every sample; percentiles cover the newest
    ``window`` samples, so memory stays bounded over days of running.

    Thread-safety: ``record`` and the readers may be called from different threads.

    Args:
        window: Number of newest samples kept for percentiles, >= 1.
    """

    def __init__(self, window: int = 65_536) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self._ring = np.zeros(window, dtype=np.float32)
        self._next = 0
        self._count = 0
        self._sum_ms = 0.0
        self._lock = threading.Lock()

    def record(self, ms: float) -> None:
        """Add one sample, milliseconds."""
        with self._lock:
            self._ring[self._next] = ms
            self._next = (self._next + 1) % len(self._ring)
            self._count += 1
            self._sum_ms += ms

    @property
    def count(self) -> int:
        return self._count

    @property
    def mean_ms(self) -> float:
        """Mean over all samples (NaN when there are none)."""
        return self._sum_ms / self._count if self._count else float("nan")

    def percentile_ms(self, q: float) -> float:
        """The ``q``-th percentile (0-100) of the newest samples (NaN when empty)."""
        with self._lock:
            n = min(self._count, len(self._ring))
            if n == 0:
                return float("nan")
            return float(np.percentile(self._ring[:n], q))


class StageStats:
    """Counters of one stage: packets processed, batches run, latency per packet."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.packets = 0
        self.batches = 0
        self.latency = LatencyStats()

    def record_batch(self, n_packets: int, elapsed_ms: float) -> None:
        """Record one ``process`` call that handled ``n_packets`` in ``elapsed_ms``."""
        self.packets += n_packets
        self.batches += 1
        self.latency.record(elapsed_ms / max(n_packets, 1))
