"""The pipeline runner: owns every thread, wires stages with bounded channels.

Topology: ``sources -> ch0 -> stage0 -> ch1 -> stage1 -> ... -> stageN``. Each source
and each stage runs in its own thread. Shutdown is by close/break propagation, not
sentinels:

* A source that ends (or fails with a :class:`~streamer.errors.SourceError`) emits
  :class:`~streamer.types.StreamEnd`; when every source is done the runner closes
  ``ch0`` and each stage, having drained its input, closes its output in turn. So
  everything read is processed and written before the sinks close.
* A stage that raises records a :class:`~streamer.errors.StageError` (naming the
  stage, source and frame), *breaks* its input so upstream producers fail at once,
  and closes its output so downstream stages drain what they already have.
* Ctrl-C asks the sources to stop (a graceful drain); a second Ctrl-C, or a drain
  that outlasts its deadline, sets the hard stop that every blocking call checks
  within ``poll_s``. Each stage closes (flushes) its component in ``finally``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from streamer.errors import ChannelBroken, ChannelClosed, SourceError, StageError, StreamerError
from streamer.pipeline.channel import Channel, ChannelStats, OverflowPolicy
from streamer.pipeline.metrics import LatencyStats, SourceStats, StageStats
from streamer.pipeline.stage import Source, Stage
from streamer.types import Event, Packet, StreamEnd, StreamGap, StreamStart


@dataclass(frozen=True)
class EdgeSpec:
    """Capacity and overflow policy of the channel *into* a stage (or from the sources)."""

    capacity: int = 8
    policy: OverflowPolicy = "block"


@dataclass
class RunResult:
    """What a finished run reports.

    Attributes:
        wall_s: Wall time from start to the last thread's exit, seconds.
        frames: Frames read per source.
        packets_out: Packets that left the last stage.
        stage_stats: Per-stage counters, in pipeline order.
        channel_stats: Per-channel counters, in pipeline order.
        latency_ms: End-to-end latency (capture to the end of the last stage), ms.
        errors: One-line errors (stage failures first, then source errors).
        interrupted: True when the run was stopped by Ctrl-C.
        notes: Extra one-line figures for the summary (e.g. tiles per frame).
        sources: Per-source counters (gaps, reconnects, latency), by source id.
    """

    wall_s: float
    frames: dict[str, int]
    packets_out: int
    stage_stats: list[StageStats]
    channel_stats: list[ChannelStats]
    latency_ms: LatencyStats
    errors: list[str] = field(default_factory=list)
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)
    sources: dict[str, SourceStats] = field(default_factory=dict)

    @property
    def stale_drops(self) -> dict[str, int]:
        """Packets dropped for age, summed over stages, by source id."""
        total: dict[str, int] = {}
        for st in self.stage_stats:
            for sid, n in st.stale_drops.items():
                total[sid] = total.get(sid, 0) + n
        return total

    @property
    def ok(self) -> bool:
        return not self.errors and not self.interrupted

    @property
    def fps(self) -> float:
        return self.packets_out / self.wall_s if self.wall_s > 0 else 0.0


class Pipeline:
    """A linear pipeline of stages fed by one or more sources.

    Args:
        sources: The sources; each runs in its own thread.
        stages: The stages in order; each runs in its own thread.
        edges: One :class:`EdgeSpec` per stage, for the channel into it.
        source_buffers: Per-source capacity/policy of the first channel (the capture
            buffer), by source id; sources not listed share ``edges[0]``.
        max_frame_age_ms: Per-source freshness budget, by source id: every stage
            drops (and counts) packets older than this before processing them.
        poll_s: Longest time any blocking call waits before re-checking stop flags.
        error_stop_s: After a stage error, how long the rest may take to drain before
            the hard stop is set, seconds.
        hard_stop_grace_s: After the hard stop, how long threads get to leave before
            ``run`` returns and reports them as stuck, seconds.

    Thread-safety: build and ``run`` from one thread; ``request_stop`` from any.
    """

    def __init__(
        self,
        sources: Sequence[Source],
        stages: Sequence[Stage],
        edges: Sequence[EdgeSpec] | None = None,
        *,
        source_buffers: Mapping[str, EdgeSpec] | None = None,
        max_frame_age_ms: Mapping[str, float] | None = None,
        poll_s: float = 0.1,
        error_stop_s: float = 1.5,
        hard_stop_grace_s: float = 3.0,
    ) -> None:
        if not sources:
            raise ValueError("a pipeline needs at least one source")
        if not stages:
            raise ValueError("a pipeline needs at least one stage")
        ids = [s.source_id for s in sources]
        if len(set(ids)) != len(ids):
            raise ValueError(f"source ids must be unique, got {ids}")
        names = [s.name for s in stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be unique, got {names}")
        edges = list(edges) if edges is not None else [EdgeSpec() for _ in stages]
        if len(edges) != len(stages):
            raise ValueError(f"need one edge spec per stage: {len(edges)} for {len(stages)}")
        self.sources = list(sources)
        self.stages = list(stages)
        upstream = ["sources", *names]
        buffers = dict(source_buffers or {})
        unknown = sorted(set(buffers) - set(ids))
        if unknown:
            raise ValueError(f"source_buffers name unknown sources {unknown}")
        lanes = None
        if buffers:
            lanes = {
                sid: (
                    (buffers[sid].capacity, buffers[sid].policy)
                    if sid in buffers
                    else (edges[0].capacity, edges[0].policy)
                )
                for sid in ids
            }
        self.channels = [
            Channel(f"{upstream[i]} -> {names[i]}", e.capacity, e.policy, lanes if i == 0 else None)
            for i, e in enumerate(edges)
        ]
        self.stage_stats = [StageStats(n) for n in names]
        self.source_stats = {sid: SourceStats(sid) for sid in ids}
        self.max_frame_age_ns = {
            sid: int(ms * 1e6) for sid, ms in (max_frame_age_ms or {}).items() if ms > 0
        }
        self.latency_ms = LatencyStats()
        self.poll_s = poll_s
        self.error_stop_s = error_stop_s
        self.hard_stop_grace_s = hard_stop_grace_s
        self._stop_sources = threading.Event()
        self._hard_stop = threading.Event()
        self._errors: list[StreamerError] = []
        self._source_errors: list[SourceError] = []
        self._errors_lock = threading.Lock()
        self._sources_left = len(self.sources)
        self._frames: dict[str, int] = {s.source_id: 0 for s in self.sources}
        self._expected_frames: dict[str, int | None] = {}
        self._packets_out = 0
        self._threads: list[threading.Thread] = []
        self._error_at: float | None = None
        self.started_ns: int | None = None  # time.monotonic_ns() when run() began
        self.finished = False  # run() has returned

    # -- public --------------------------------------------------------------------
    def request_stop(self, hard: bool = False) -> None:
        """Stop reading sources (graceful drain), or stop everything now (``hard``)."""
        self._stop_sources.set()
        if hard:
            self._hard_stop.set()

    @property
    def packets_out(self) -> int:
        """Packets that have left the last stage so far."""
        return self._packets_out

    @property
    def errors(self) -> list[str]:
        """One-line errors so far: stage failures first, then source errors."""
        with self._errors_lock:
            return [str(e) for e in self._errors] + [str(e) for e in self._source_errors]

    @property
    def failed(self) -> bool:
        """A stage has failed (the pipeline is stopping or has stopped)."""
        with self._errors_lock:
            return bool(self._errors)

    @property
    def expected_frames(self) -> int | None:
        """Frames the sources announce in total, or None when any is unknown/live."""
        if len(self._expected_frames) < len(self.sources):
            return None
        total = 0
        for n in self._expected_frames.values():
            if n is None:
                return None
            total += n
        return total

    def run(
        self,
        on_tick: Callable[[Pipeline], None] | None = None,
        tick_s: float = 0.2,
        drain_timeout_s: float = 10.0,
    ) -> RunResult:
        """Run until every source ends, a stage fails, or Ctrl-C; then join all threads.

        Args:
            on_tick: Called from the calling thread every ``tick_s`` (progress display).
            tick_s: Interval of ``on_tick`` calls, seconds.
            drain_timeout_s: After Ctrl-C, how long the drain may take before the hard stop.

        Returns:
            The :class:`RunResult`. Errors are reported in it, not raised.
        """
        start = time.monotonic()
        self.started_ns = time.monotonic_ns()
        interrupted = False
        stop_asked_at: float | None = None
        for src in self.sources:
            self._spawn(f"source:{src.source_id}", self._source_loop, src)
        for i, stage in enumerate(self.stages):
            out = self.channels[i + 1] if i + 1 < len(self.channels) else None
            self._spawn(f"stage:{stage.name}", self._stage_loop, stage, self.channels[i], out, i)
        hard_at: float | None = None
        while True:
            try:
                alive = [t for t in self._threads if t.is_alive()]
                if not alive:
                    break
                alive[0].join(tick_s)
                if on_tick is not None:
                    on_tick(self)
                now = time.monotonic()
                if self._error_at is not None and now - self._error_at > self.error_stop_s:
                    self._hard_stop.set()
                if stop_asked_at is not None and now - stop_asked_at > drain_timeout_s:
                    self._hard_stop.set()
                if self._hard_stop.is_set():
                    hard_at = hard_at if hard_at is not None else now
                    if now - hard_at > self.hard_stop_grace_s:
                        break  # threads stuck in foreign code are reported below
            except KeyboardInterrupt:
                interrupted = True
                if stop_asked_at is None:
                    stop_asked_at = time.monotonic()
                    self.request_stop()
                else:
                    self.request_stop(hard=True)
        if on_tick is not None:
            on_tick(self)
        wall_s = time.monotonic() - start
        self.finished = True
        errors = self.errors
        stuck = [t.name for t in self._threads if t.is_alive()]
        if stuck:
            errors.append(f"threads did not stop in time: {', '.join(stuck)}")
        return RunResult(
            wall_s=wall_s,
            frames=dict(self._frames),
            packets_out=self._packets_out,
            stage_stats=self.stage_stats,
            channel_stats=[c.stats() for c in self.channels],
            latency_ms=self.latency_ms,
            errors=errors,
            interrupted=interrupted,
            sources=self.source_stats,
        )

    # -- threads -------------------------------------------------------------------
    def _spawn(self, name: str, target: Callable[..., None], *args: object) -> None:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads.append(t)
        t.start()

    def _fail(self, error: StreamerError) -> None:
        with self._errors_lock:
            self._errors.append(error)
            if self._error_at is None:
                self._error_at = time.monotonic()
        self._stop_sources.set()

    def _source_loop(self, src: Source) -> None:
        out = self.channels[0]
        sid = src.source_id
        stats = self.source_stats[sid]
        end_error: str | None = None
        bind_stop = getattr(src, "bind_stop", None)
        if callable(bind_stop):
            bind_stop(self._stop_sources)
        try:
            info = src.open()
            self._expected_frames[sid] = info.frame_count
            out.put(StreamStart(info), self._hard_stop)
            while not self._stop_sources.is_set():
                item = src.read()
                stats.reconnects = int(getattr(src, "reconnects", 0))  # live, for metrics
                if item is None:
                    break
                if isinstance(item, StreamGap):
                    stats.gaps += 1
                    stats.missing_frames += item.missing_frames
                    out.put(item, self._hard_stop)
                    continue
                self._frames[sid] += 1
                stats.frames += 1
                stats.last_frame_ns = time.monotonic_ns()
                if not out.put(Packet(frame=item), self._hard_stop):
                    break
        except SourceError as e:
            with self._errors_lock:
                self._source_errors.append(e)
            end_error = str(e)
        except ChannelBroken:
            return
        except Exception as e:  # a bug in a source: stop the pipeline
            self._fail(
                StageError(
                    f"{type(e).__name__}: {e}",
                    stage=f"source:{sid}",
                    source_id=sid,
                    seq=self._frames[sid],
                )
            )
            end_error = str(e)
        finally:
            stats.reconnects = int(getattr(src, "reconnects", 0))
            stats.end_error = end_error
            stats.ended = True
            self._expected_frames.setdefault(sid, None)
            try:
                src.close()
            except Exception as e:
                self._fail(StageError(f"close failed: {e}", stage=f"source:{sid}"))
            with contextlib.suppress(ChannelBroken, RuntimeError):
                out.put(StreamEnd(sid, self._frames[sid], end_error), self._hard_stop)
            with self._errors_lock:
                self._sources_left -= 1
                last = self._sources_left == 0
            if last:
                out.close()

    def _stage_loop(self, stage: Stage, inp: Channel, out: Channel | None, index: int) -> None:
        stats = self.stage_stats[index]
        is_last = out is None
        current: Packet | None = None
        current_event: Event | None = None
        try:
            while not self._hard_stop.is_set():
                try:
                    items = inp.get_batch(stage.max_batch, stage.max_wait_ms / 1000, self.poll_s)
                except ChannelClosed:
                    break
                if not items:
                    continue
                first = items[0]
                if not isinstance(first, Packet):
                    current_event = first
                    stage.on_event(first)
                    current_event = None
                    if out is not None:
                        out.put(first, self._hard_stop)
                    continue
                packets = [p for p in items if isinstance(p, Packet)]
                if self.max_frame_age_ns:
                    packets = self._drop_stale(packets, stats)
                    if not packets:
                        continue
                current = packets[0]
                t0 = time.perf_counter()
                results = stage.process(packets)
                elapsed_ms = (time.perf_counter() - t0) * 1000.0
                stats.record_batch(len(packets), elapsed_ms)
                by_source = stats.packets_by_source
                for p in packets:
                    by_source[p.source_id] = by_source.get(p.source_id, 0) + 1
                if len(packets) > 1 and any(p.source_id != current.source_id for p in packets):
                    stats.cross_source_batches += 1
                per_packet_ms = elapsed_ms / len(packets)
                for p in results:
                    p.stage_ms[stage.name] = per_packet_ms
                    if out is not None and not out.put(p, self._hard_stop):
                        break
                if is_last:
                    now_ns = time.monotonic_ns()
                    for p in results:
                        ms = (now_ns - p.frame.capture_ns) / 1e6
                        self.latency_ms.record(ms)
                        src_stats = self.source_stats.get(p.source_id)
                        if src_stats is not None:
                            src_stats.latency.record(ms)
                    self._packets_out += len(results)
                current = None
        except ChannelBroken:
            inp.break_()
        except StreamerError as e:
            self._fail(self._stage_error(e, stage.name, current, current_event))
            inp.break_()
        except Exception as e:
            self._fail(self._stage_error(e, stage.name, current, current_event, with_type=True))
            inp.break_()
        finally:
            try:
                stage.close()
            except Exception as e:
                self._fail(StageError(f"close failed: {type(e).__name__}: {e}", stage=stage.name))
            if out is not None:
                out.close()
            if self._hard_stop.is_set():
                inp.break_()

    def _drop_stale(self, packets: list[Packet], stats: StageStats) -> list[Packet]:
        """Drop packets older than their source's budget; count them per source."""
        now_ns = time.monotonic_ns()
        fresh: list[Packet] = []
        for p in packets:
            budget = self.max_frame_age_ns.get(p.source_id)
            if budget is not None and now_ns - p.frame.capture_ns > budget:
                stats.stale_drops[p.source_id] = stats.stale_drops.get(p.source_id, 0) + 1
            else:
                fresh.append(p)
        return fresh

    @staticmethod
    def _stage_error(
        e: BaseException,
        stage: str,
        packet: Packet | None,
        event: Event | None,
        with_type: bool = False,
    ) -> StageError:
        if isinstance(e, StageError):
            return e
        msg = f"{type(e).__name__}: {e}" if with_type else str(e)
        if packet is not None:
            return StageError(msg, stage=stage, source_id=packet.source_id, seq=packet.seq)
        if event is not None:
            msg = f"on {type(event).__name__}: {msg}"
            return StageError(msg, stage=stage, source_id=event.source_id)
        return StageError(msg, stage=stage)
