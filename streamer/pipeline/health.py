"""Health of a running pipeline: is every source delivering frames, has anything failed?

:func:`check_health` reads the runner's own counters (``SourceStats.last_frame_ns``,
``ended``, ``end_error``, the pipeline's errors); it starts nothing and changes
nothing, so it may be called from any thread (the HTTP server's ``/healthz``).

A pipeline is unhealthy when

* a stage has failed (the pipeline is stopping or has stopped), or
* a source ended with an error (reconnect off or given up, a broken file), or
* a source that has not ended has delivered no frame for longer than
  ``source_down_s`` (counted from its last frame, or from the start of the run
  when it has delivered none yet).

A source that ended normally (end of file, ``max_frames``, a stop request) is
reported as ``ended``, which is healthy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

from streamer.pipeline.runner import Pipeline

SourceState = Literal["starting", "up", "down", "ended", "failed"]


@dataclass(frozen=True)
class SourceHealth:
    """One source's state.

    Attributes:
        source_id: The source.
        state: ``starting`` (no frame yet, within the threshold), ``up``, ``down``
            (silent past the threshold), ``ended`` (normally) or ``failed``.
        frames: Frames read so far.
        last_frame_age_s: Seconds since its last frame, or None before the first.
        reconnects: Reconnects so far (live sources).
    """

    source_id: str
    state: SourceState
    frames: int
    last_frame_age_s: float | None
    reconnects: int


@dataclass(frozen=True)
class HealthReport:
    """The result of :func:`check_health`.

    Attributes:
        healthy: No reason to be unhealthy.
        reasons: One line per problem, e.g.
            ``"source 'cam' down for 12.3 s (> 10 s)"``; empty when healthy.
        sources: Per-source state, by source id.
        uptime_s: Seconds since the run started (0 before it starts).
        source_down_s: The threshold used, seconds.
    """

    healthy: bool
    reasons: list[str] = field(default_factory=list)
    sources: dict[str, SourceHealth] = field(default_factory=dict)
    uptime_s: float = 0.0
    source_down_s: float = 10.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready body of ``/healthz``: ``{"status": "ok" | "unhealthy", ...}``."""
        body: dict[str, Any] = {"status": "ok" if self.healthy else "unhealthy"}
        if not self.healthy:
            body["reasons"] = list(self.reasons)
        body["uptime_s"] = round(self.uptime_s, 3)
        body["source_down_s"] = self.source_down_s
        body["sources"] = {
            sid: {
                "state": s.state,
                "frames": s.frames,
                "last_frame_age_s": (
                    round(s.last_frame_age_s, 3) if s.last_frame_age_s is not None else None
                ),
                "reconnects": s.reconnects,
            }
            for sid, s in self.sources.items()
        }
        return body


def check_health(
    pipeline: Pipeline, source_down_s: float = 10.0, now_ns: int | None = None
) -> HealthReport:
    """Judge the pipeline's health now.

    Args:
        pipeline: The pipeline (running, not yet started, or finished).
        source_down_s: A source without a frame for longer than this is down, seconds, > 0.
        now_ns: ``time.monotonic_ns()`` to judge at (for tests); default now.

    Returns:
        The :class:`HealthReport`.

    Raises:
        ValueError: if ``source_down_s`` is not > 0.
    """
    if not source_down_s > 0:
        raise ValueError(f"source_down_s: must be > 0, got {source_down_s}")
    now_ns = time.monotonic_ns() if now_ns is None else now_ns
    started_ns = pipeline.started_ns
    reasons: list[str] = []
    if pipeline.failed:
        errors = pipeline.errors
        reasons.append(f"pipeline failed: {errors[0]}" if errors else "pipeline failed")
    sources: dict[str, SourceHealth] = {}
    for sid, st in pipeline.source_stats.items():
        last = st.last_frame_ns
        age_s = (now_ns - last) / 1e9 if last is not None else None
        state: SourceState
        if st.ended:
            state = "failed" if st.end_error is not None else "ended"
            if st.end_error is not None:
                reasons.append(f"source '{sid}' failed: {st.end_error}")
        else:
            since = last if last is not None else started_ns
            silent_s = (now_ns - since) / 1e9 if since is not None else 0.0
            if silent_s > source_down_s:
                state = "down"
                reasons.append(f"source '{sid}' down for {silent_s:.1f} s (> {source_down_s:g} s)")
            else:
                state = "up" if last is not None else "starting"
        sources[sid] = SourceHealth(sid, state, st.frames, age_s, st.reconnects)
    uptime_s = (now_ns - started_ns) / 1e9 if started_ns is not None else 0.0
    return HealthReport(not reasons, reasons, sources, uptime_s, source_down_s)


__all__ = ["HealthReport", "SourceHealth", "SourceState", "check_health"]
