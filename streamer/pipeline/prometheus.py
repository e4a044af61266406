"""Prometheus metrics of a pipeline, read from the runner's own counters at scrape time.

:class:`PipelineCollector` is a custom ``prometheus_client`` collector: nothing is
instrumented twice. Every scrape reads ``Pipeline.stage_stats``,
``Pipeline.source_stats``, ``Channel.stats()`` and the :class:`LatencyStats`
histograms (whose buckets the runner fills as it records latency, one bisection per
sample) and turns them into metric families. Each pipeline gets its own
``CollectorRegistry`` (:func:`make_registry`), never the global one, so several
pipelines can run in one process (tests do).

Metric names (all prefixed ``streamer_``; ``stage`` is a stage name, ``source`` a
source id; a queue is named by the stage it feeds):

====================================================  =======  ==============================
name                                                  type     labels
====================================================  =======  ==============================
``streamer_pipeline_info``                            info     ``pipeline``
``streamer_pipeline_frames_out_total``                counter
``streamer_pipeline_healthy``                         gauge
``streamer_stage_frames_total``                       counter  ``stage``, ``source``
``streamer_stage_batches_total``                      counter  ``stage``
``streamer_stage_latency_seconds``                    hist.    ``stage``
``streamer_stage_stale_drops_total``                  counter  ``stage``, ``source``
``streamer_queue_depth``                              gauge    ``stage``
``streamer_queue_peak_depth``                         gauge    ``stage``
``streamer_queue_capacity``                           gauge    ``stage``, ``policy``
``streamer_queue_drops_total``                        counter  ``stage``, ``source``
``streamer_source_buffer_capacity``                   gauge    ``source``, ``policy``
``streamer_source_frames_total``                      counter  ``source``
``streamer_source_frames_out_total``                  counter  ``source``
``streamer_source_dropped_frames_total``              counter  ``source``, ``reason``
``streamer_source_gaps_total``                        counter  ``source``
``streamer_source_missing_frames_total``              counter  ``source``
``streamer_source_reconnects_total``                  counter  ``source``
``streamer_source_last_frame_age_seconds``            gauge    ``source``
``streamer_source_up``                                gauge    ``source``
``streamer_end_to_end_latency_seconds``               hist.    ``source``
====================================================  =======  ==============================

plus the standard ``process_*`` metrics (CPU, memory, open files) of the process.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

from streamer.pipeline.health import check_health
from streamer.pipeline.metrics import LatencyStats
from streamer.pipeline.runner import Pipeline

PREFIX = "streamer"


def _histogram(
    name: str, doc: str, label: str, series: list[tuple[str, LatencyStats]]
) -> HistogramMetricFamily:
    """A histogram family in seconds from :class:`LatencyStats` kept in milliseconds."""
    fam = HistogramMetricFamily(name, doc, labels=[label])
    for value, stats in series:
        bounds_ms, cumulative, sum_ms, _count = stats.histogram()
        buckets = [
            (floatToGoString(b / 1000.0), float(c))
            for b, c in zip(bounds_ms, cumulative, strict=False)
        ]
        buckets.append(("+Inf", float(cumulative[-1])))
        fam.add_metric([value], buckets, sum_ms / 1000.0)
    return fam


class PipelineCollector(Collector):
    """Exposes one pipeline's counters as Prometheus metrics (read at scrape time).

    Args:
        pipeline: The pipeline (before, during or after its run).
        name: Pipeline name (``streamer_pipeline_info{pipeline=...}``).
        source_down_s: Health threshold for ``streamer_source_up`` and
            ``streamer_pipeline_healthy``, seconds.

    Thread-safety: ``collect`` may run in any thread while the pipeline runs; it only
    reads counters (a scrape may see one stage a batch ahead of another).
    """

    def __init__(self, pipeline: Pipeline, name: str = "", source_down_s: float = 10.0) -> None:
        self.pipeline = pipeline
        self.name = name
        self.source_down_s = source_down_s

    def collect(self) -> Iterator[Metric]:
        pipe = self.pipeline
        now_ns = time.monotonic_ns()
        stages = [s.name for s in pipe.stages]
        stage_stats = list(pipe.stage_stats)
        channels = [c.stats() for c in pipe.channels]
        sources = dict(pipe.source_stats)
        health = check_health(pipe, self.source_down_s, now_ns)

        info = InfoMetricFamily(f"{PREFIX}_pipeline", "The pipeline this process runs.")
        info.add_metric([], {"pipeline": self.name})
        yield info
        yield CounterMetricFamily(
            f"{PREFIX}_pipeline_frames_out",
            "Frames that left the last stage.",
            value=pipe.packets_out,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_pipeline_healthy",
            "1 when /healthz reports ok, else 0.",
            value=1.0 if health.healthy else 0.0,
        )

        # -- stages ------------------------------------------------------------------
        frames = CounterMetricFamily(
            f"{PREFIX}_stage_frames",
            "Frames processed by a stage, per source (rate() gives frames/s).",
            labels=["stage", "source"],
        )
        batches = CounterMetricFamily(
            f"{PREFIX}_stage_batches", "process() calls of a stage.", labels=["stage"]
        )
        stale = CounterMetricFamily(
            f"{PREFIX}_stage_stale_drops",
            "Frames a stage dropped unprocessed for being older than max_frame_age_ms.",
            labels=["stage", "source"],
        )
        for st in stage_stats:
            for sid, n in dict(st.packets_by_source).items():
                frames.add_metric([st.name, sid], n)
            batches.add_metric([st.name], st.batches)
            for sid, n in dict(st.stale_drops).items():
                stale.add_metric([st.name, sid], n)
        yield frames
        yield batches
        yield stale
        yield _histogram(
            f"{PREFIX}_stage_latency_seconds",
            "Time a stage spends per frame (one observation per process() call: "
            "its time divided by the frames in the batch).",
            "stage",
            [(st.name, st.latency) for st in stage_stats],
        )

        # -- queues (named by the stage they feed) -------------------------------------
        depth = GaugeMetricFamily(
            f"{PREFIX}_queue_depth", "Items queued now in the queue into a stage.", labels=["stage"]
        )
        peak = GaugeMetricFamily(
            f"{PREFIX}_queue_peak_depth", "Highest depth seen in a queue.", labels=["stage"]
        )
        capacity = GaugeMetricFamily(
            f"{PREFIX}_queue_capacity",
            "Capacity of the queue into a stage, and its overflow policy (per_source: "
            "the capture queue with a buffer per source, see streamer_source_buffer_capacity).",
            labels=["stage", "policy"],
        )
        lanes = GaugeMetricFamily(
            f"{PREFIX}_source_buffer_capacity",
            "Capacity of a source's own capture buffer, and its overflow policy.",
            labels=["source", "policy"],
        )
        qdrops = CounterMetricFamily(
            f"{PREFIX}_queue_drops",
            "Frames a drop_oldest queue dropped, per source.",
            labels=["stage", "source"],
        )
        buffer_drops: dict[str, int] = {}
        for stage, channel, ch in zip(stages, pipe.channels, channels, strict=True):
            depth.add_metric([stage], ch.depth)
            peak.add_metric([stage], ch.peak_depth)
            by_source = channel.lanes
            capacity.add_metric([stage, "per_source" if by_source else ch.policy], ch.capacity)
            for sid, (cap, policy) in by_source.items():
                lanes.add_metric([sid, policy], cap)
            for sid, n in ch.drops.items():
                qdrops.add_metric([stage, sid], n)
                buffer_drops[sid] = buffer_drops.get(sid, 0) + n
        yield depth
        yield peak
        yield capacity
        yield lanes
        yield qdrops

        # -- sources -------------------------------------------------------------------
        read = CounterMetricFamily(
            f"{PREFIX}_source_frames", "Frames read from a source.", labels=["source"]
        )
        out = CounterMetricFamily(
            f"{PREFIX}_source_frames_out",
            "Frames of a source that left the last stage (rate() gives output frames/s).",
            labels=["source"],
        )
        dropped = CounterMetricFamily(
            f"{PREFIX}_source_dropped_frames",
            "Frames of a source dropped: reason=queue (drop_oldest queues) or "
            "reason=stale (older than max_frame_age_ms).",
            labels=["source", "reason"],
        )
        gaps = CounterMetricFamily(
            f"{PREFIX}_source_gaps", "Stream gaps (frames lost on reconnect).", labels=["source"]
        )
        missing = CounterMetricFamily(
            f"{PREFIX}_source_missing_frames",
            "Frames a source never delivered (inside gaps).",
            labels=["source"],
        )
        reconnects = CounterMetricFamily(
            f"{PREFIX}_source_reconnects", "Successful reconnects of a source.", labels=["source"]
        )
        age = GaugeMetricFamily(
            f"{PREFIX}_source_last_frame_age_seconds",
            "Seconds since a source's last frame (absent before its first).",
            labels=["source"],
        )
        up = GaugeMetricFamily(
            f"{PREFIX}_source_up",
            "1 while a source delivers frames (or ended normally), 0 when down or failed.",
            labels=["source"],
        )
        stale_by_source: dict[str, int] = {}
        for st in stage_stats:
            for sid, n in dict(st.stale_drops).items():
                stale_by_source[sid] = stale_by_source.get(sid, 0) + n
        for sid, ss in sources.items():
            read.add_metric([sid], ss.frames)
            out.add_metric([sid], ss.latency.count)
            dropped.add_metric([sid, "queue"], buffer_drops.get(sid, 0))
            dropped.add_metric([sid, "stale"], stale_by_source.get(sid, 0))
            gaps.add_metric([sid], ss.gaps)
            missing.add_metric([sid], ss.missing_frames)
            reconnects.add_metric([sid], ss.reconnects)
            last = ss.last_frame_ns
            if last is not None:
                age.add_metric([sid], (now_ns - last) / 1e9)
            state = health.sources[sid].state if sid in health.sources else "starting"
            up.add_metric([sid], 0.0 if state in ("down", "failed") else 1.0)
        yield read
        yield out
        yield dropped
        yield gaps
        yield missing
        yield reconnects
        yield age
        yield up
        yield _histogram(
            f"{PREFIX}_end_to_end_latency_seconds",
            "Frame age when it leaves the last stage: capture to the end of the pipeline.",
            "source",
            [(sid, ss.latency) for sid, ss in sources.items()],
        )


def make_registry(
    pipeline: Pipeline, name: str = "", source_down_s: float = 10.0, process: bool = True
) -> CollectorRegistry:
    """A registry of its own for ``pipeline`` (plus ``process_*`` metrics when ``process``)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PipelineCollector(pipeline, name, source_down_s))
    if process:
        ProcessCollector(registry=registry)
    return registry


__all__ = ["PipelineCollector", "make_registry"]
