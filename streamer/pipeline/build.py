"""Build a runnable :class:`~streamer.pipeline.runner.Pipeline` from a validated config.

Only this module and the CLI read config; components get plain arguments.
"""

from __future__ import annotations

import datetime as _dt
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from streamer.analytics.zones import AnalyticsSpec, LineSpec, ZoneSpec
from streamer.config.schema import (
    AnalyticsStageConfig,
    AnnotatedVideoSinkConfig,
    CameraSourceConfig,
    DetectStageConfig,
    GStreamerSourceConfig,
    JsonlSinkConfig,
    MotSinkConfig,
    MqttSinkConfig,
    PipelineConfig,
    PreviewSinkConfig,
    QueueConfig,
    ReplaySourceConfig,
    RtspSourceConfig,
    SourceConfig,
    TrackStageConfig,
    ZeroMqSinkConfig,
)
from streamer.detect.detector import YoloDetector
from streamer.detect.device_detector import DevicePreprocessDetector
from streamer.errors import ConfigError
from streamer.pipeline.runner import EdgeSpec, Pipeline
from streamer.pipeline.stage import Source, Stage
from streamer.pipeline.stages import (
    AnalyticsStage,
    DetectStage,
    PreprocessStage,
    SinkStage,
    TrackerFactory,
    TrackStage,
)
from streamer.sinks.base import Sink
from streamer.sinks.jsonl import JsonlTracksSink
from streamer.sinks.mot import MotTracksSink
from streamer.sinks.preview import PreviewHub, PreviewSink
from streamer.sinks.video import AnnotatedVideoSink
from streamer.slicing.adaptive import AdaptiveSlicedDetector
from streamer.slicing.sliced import SlicedDetector
from streamer.sources.rtsp import Backoff, RtspSource
from streamer.sources.video_file import VideoFileSource
from streamer.types import Frame, StreamGap, StreamInfo
from trackers.types import Tracker


@dataclass
class BuiltPipeline:
    """A pipeline ready to run, with what the CLI reports about it.

    ``preview`` holds the latest-frame slots the ``preview`` stages fill (None without
    one); the run's HTTP server reads them.
    """

    pipeline: Pipeline
    detector: YoloDetector | SlicedDetector | AdaptiveSlicedDetector | DevicePreprocessDetector
    run_dir: Path
    preview: PreviewHub | None = None


def default_run_dir(cfg: PipelineConfig, now: _dt.datetime | None = None) -> Path:
    """``output_dir`` with ``{name}`` and ``{timestamp}`` (``YYYYmmdd-HHMMSS``) filled in."""
    stamp = (now or _dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
    try:
        return Path(cfg.output_dir.format(name=cfg.name, timestamp=stamp))
    except (KeyError, IndexError, ValueError) as e:
        raise ConfigError(
            f"output_dir: unknown placeholder {e} in {cfg.output_dir!r} "
            "(known: {name}, {timestamp})"
        ) from None


def make_detector(cfg: DetectStageConfig, index: int = 0) -> YoloDetector:
    """Load the detector of a ``detect`` stage and resolve its class filter.

    Raises:
        BackendError: the model cannot be loaded or its output layout is unknown.
        ConfigError: a class in ``classes`` is not one of the model's classes.
    """
    from streamer.pipeline.engines import make_backend, yolo_detector

    detector = yolo_detector(cfg, make_backend(cfg))
    if cfg.classes is not None:
        names = detector.class_names
        ids: set[int] = set()
        for j, c in enumerate(cfg.classes):
            if isinstance(c, int):
                if not 0 <= c < len(names):
                    raise ConfigError(
                        f"stages[{index}].classes[{j}]: class id must be in [0, {len(names)}), "
                        f"got {c}"
                    )
                ids.add(c)
            elif c in names:
                ids.add(names.index(c))
            else:
                raise ConfigError(
                    f"stages[{index}].classes[{j}]: unknown class name {c!r} "
                    f"(the model has {len(names)} classes: {', '.join(names[:8])}, ...)"
                )
        detector.class_filter = ids
    return detector


def tracker_class(tracker_type: str) -> Callable[..., Tracker]:
    """The tracker class of a ``tracker.type`` name (``bytetrack``, ``sort``, ``ocsort``).

    Raises:
        ConfigError: an unknown name (the schema normally rules that out).
    """
    if tracker_type == "bytetrack":
        from trackers.bytetrack import ByteTrack

        return ByteTrack
    if tracker_type == "sort":
        from trackers.sort import Sort

        return Sort
    if tracker_type == "ocsort":
        from trackers.ocsort import OcSort

        return OcSort
    raise ConfigError(f"unknown tracker type {tracker_type!r} (known: bytetrack, sort, ocsort)")


def make_frame_detector(
    cfg: DetectStageConfig, index: int = 0
) -> YoloDetector | SlicedDetector | AdaptiveSlicedDetector | DevicePreprocessDetector:
    """The detector of a ``detect`` stage, wrapped for slicing when it has a
    ``slicing:`` block (and for adaptive slicing when that block has ``adaptive:``),
    or for device preprocessing with ``preprocess: gpu`` (torch on ``device``).

    Raises:
        BackendError: the model cannot be loaded or its output layout is unknown.
        ConfigError: a bad class filter or slicing parameter (named by YAML path).
    """
    base = make_detector(cfg, index)
    if cfg.preprocess == "gpu":  # the schema rules out slicing with it
        return DevicePreprocessDetector(base, device=cfg.device)
    if cfg.slicing is None:
        return base
    sl = cfg.slicing
    try:
        sliced = SlicedDetector(
            base,
            tile_wh=sl.tile_wh,
            overlap_ratio=sl.overlap_ratio,
            overlap_px=sl.overlap_px,
            full_frame=sl.full_frame,
            max_tiles=sl.max_tiles,
            merge=sl.merge,
            metric=sl.metric,
            merge_threshold=sl.merge_threshold,
            class_aware=sl.class_aware,
        )
        if sl.adaptive is not None:
            return AdaptiveSlicedDetector(sliced, **sl.adaptive.model_dump())
    except ValueError as e:
        raise ConfigError(f"stages[{index}].slicing: {e}") from None
    return sliced


def make_tracker_factory(cfg: TrackStageConfig) -> TrackerFactory:
    """A function that builds one tracker of ``cfg.tracker.type`` for a stream's fps."""
    make = tracker_class(cfg.tracker.type)
    params = cfg.tracker.model_dump(exclude={"type"})

    def factory(fps: float) -> Tracker:
        return make(frame_rate=fps, **params)

    return factory


def make_source(cfg: SourceConfig, run_dir: Path | None = None) -> Source:
    """Build one source from its config (nothing is opened yet).

    Args:
        cfg: The source's config.
        run_dir: Run directory; an RTSP ``record.path`` is relative to it (to the
            working directory when None).
    """
    if isinstance(cfg, ReplaySourceConfig):
        from streamer.sources.replay import ReplaySource

        return ReplaySource(
            cfg.path,
            source_id=cfg.id,
            clock=cfg.clock,
            speed=cfg.speed,
            virtual_cost_ms=cfg.virtual_cost_ms,
            buffer_capacity=cfg.buffer.capacity,
            buffer_policy=cfg.buffer.policy,
            # On the real-time clock the runner applies the budget instead.
            max_frame_age_ms=cfg.max_frame_age_ms if cfg.clock == "virtual" else None,
            max_frames=cfg.max_frames,
            decode_threads=cfg.decode_threads,
        )
    if isinstance(cfg, RtspSourceConfig):
        rc = cfg.reconnect
        backoff = (
            Backoff(
                initial_delay_s=rc.initial_delay_s,
                max_delay_s=rc.max_delay_s,
                factor=rc.factor,
                jitter=rc.jitter,
                max_attempts=rc.max_attempts,
            )
            if rc is not None and rc.enabled
            else None
        )
        return RtspSource(
            cfg.url,
            source_id=cfg.id,
            transport=cfg.transport,
            open_timeout_s=cfg.open_timeout_s,
            read_timeout_s=cfg.read_timeout_s,
            reconnect=backoff,
            decode_threads=cfg.decode_threads,
            max_frames=cfg.max_frames,
            record=(
                (run_dir or Path()) / cfg.record.path.format(source_id=cfg.id)
                if cfg.record is not None
                else None
            ),
        )
    if isinstance(cfg, CameraSourceConfig):
        from streamer.sources.camera import V4L2CameraSource

        return _limited(
            V4L2CameraSource(
                cfg.device,
                source_id=cfg.id,
                width_px=cfg.width_px,
                height_px=cfg.height_px,
                fps=cfg.fps,
                fourcc=cfg.fourcc,
                read_timeout_s=cfg.read_timeout_s,
                buffer_size=cfg.buffer_size,
            ),
            cfg.max_frames,
        )
    if isinstance(cfg, GStreamerSourceConfig):
        from streamer.sources.gstreamer import GStreamerSource

        return _limited(
            GStreamerSource(
                cfg.pipeline,
                preset=cfg.preset,
                preset_args=cfg.preset_args if cfg.preset is not None else None,
                source_id=cfg.id,
                read_timeout_s=cfg.read_timeout_s,
                live=cfg.live,
                fps=cfg.fps,
            ),
            cfg.max_frames,
        )
    return VideoFileSource(
        cfg.path, source_id=cfg.id, decode_threads=cfg.decode_threads, max_frames=cfg.max_frames
    )


class _FrameLimit:
    """Ends a source after ``max_frames`` frames (for sources without that option)."""

    def __init__(self, source: Source, max_frames: int) -> None:
        self.source = source
        self.source_id = source.source_id
        self.max_frames = max_frames
        self._frames = 0

    def open(self) -> StreamInfo:
        self._frames = 0
        return self.source.open()

    def read(self) -> Frame | StreamGap | None:
        if self._frames >= self.max_frames:
            return None
        item = self.source.read()
        if isinstance(item, Frame):
            self._frames += 1
        return item

    def close(self) -> None:
        self.source.close()

    @property
    def reconnects(self) -> int:
        return int(getattr(self.source, "reconnects", 0))

    def bind_stop(self, stop: threading.Event) -> None:
        bind = getattr(self.source, "bind_stop", None)
        if callable(bind):
            bind(stop)


def _limited(source: Source, max_frames: int | None) -> Source:
    return source if max_frames is None else _FrameLimit(source, max_frames)


def make_analytics_specs(cfg: PipelineConfig) -> dict[str, AnalyticsSpec] | None:
    """The line/zone geometry of the pipeline's ``analytics`` stage, by source id.

    Returns:
        ``{source_id: spec}`` for the sources the stage applies to, or None when the
        pipeline has no analytics stage.

    Raises:
        ConfigError: a line or zone is invalid (named by YAML path).
    """
    for index, st in enumerate(cfg.stages):
        if not isinstance(st, AnalyticsStageConfig):
            continue
        try:
            spec = AnalyticsSpec(
                lines=tuple(
                    LineSpec(
                        name=ln.name,
                        start_px=ln.start_px,
                        end_px=ln.end_px,
                        triggering_anchors=tuple(ln.triggering_anchors),  # type: ignore[arg-type]
                        minimum_crossing_threshold=ln.minimum_crossing_threshold,
                        classes=tuple(ln.classes) if ln.classes is not None else None,
                    )
                    for ln in st.lines
                ),
                zones=tuple(
                    ZoneSpec(
                        name=z.name,
                        polygon_px=tuple(z.polygon_px),
                        triggering_anchors=tuple(z.triggering_anchors),  # type: ignore[arg-type]
                        classes=tuple(z.classes) if z.classes is not None else None,
                        exit_grace_s=z.exit_grace_s,
                    )
                    for z in st.zones
                ),
            )
        except ValueError as e:
            raise ConfigError(f"stages[{index}]: {e}") from None
        ids = st.sources if st.sources is not None else [s.id for s in cfg.sources]
        return {sid: spec for sid in ids}
    return None


def make_sink(
    cfg: AnnotatedVideoSinkConfig
    | JsonlSinkConfig
    | MotSinkConfig
    | ZeroMqSinkConfig
    | MqttSinkConfig
    | PreviewSinkConfig,
    run_dir: Path,
    analytics: dict[str, AnalyticsSpec] | None = None,
    preview: PreviewHub | None = None,
) -> Sink:
    """Build one sink writing under ``run_dir`` (the video sinks draw ``analytics``;
    a ``preview`` sink publishes into ``preview``, a new hub when None).

    Raises:
        SinkError: the output cannot be created (a file, a socket address in use).
    """
    if isinstance(cfg, PreviewSinkConfig):
        return PreviewSink(
            preview if preview is not None else PreviewHub(),
            max_fps=cfg.max_fps,
            jpeg_quality=cfg.jpeg_quality,
            max_width_px=cfg.max_width_px,
            trace_length_s=cfg.trace_length_s,
            analytics=analytics,
        )
    if isinstance(cfg, ZeroMqSinkConfig):
        from streamer.sinks.zeromq import CurveKeys, ZmqSink

        curve = (
            CurveKeys(
                cfg.curve.secret_key_path,
                cfg.curve.authorized_keys_dir,
                cfg.curve.server_public_key_path,
            )
            if cfg.curve is not None
            else None
        )
        return ZmqSink(
            cfg.endpoint,
            mode=cfg.mode,
            bind=cfg.bind,
            topic_prefix=cfg.topic_prefix,
            fmt=cfg.format,
            send_hwm=cfg.send_hwm,
            send_timeout_ms=cfg.send_timeout_ms,
            linger_ms=cfg.linger_ms,
            curve=curve,
        )
    if isinstance(cfg, MqttSinkConfig):
        from streamer.sinks.mqtt import MqttSink

        return MqttSink(
            cfg.host,
            cfg.port,
            topic_prefix=cfg.topic_prefix,
            qos=cfg.qos,
            retain=cfg.retain,
            client_id=cfg.client_id,
            username=cfg.username,
            password=cfg.password.get_secret_value() if cfg.password is not None else None,
            keepalive_s=cfg.keepalive_s,
            max_queued=cfg.max_queued,
            reconnect_min_delay_s=cfg.reconnect_min_delay_s,
            reconnect_max_delay_s=cfg.reconnect_max_delay_s,
            connect_wait_s=cfg.connect_wait_s,
            flush_timeout_s=cfg.flush_timeout_s,
            fmt=cfg.format,
        )
    path = str(run_dir / cfg.path)
    if isinstance(cfg, AnnotatedVideoSinkConfig):
        return AnnotatedVideoSink(
            path,
            crf=cfg.crf,
            preset=cfg.preset,
            trace_length_s=cfg.trace_length_s,
            analytics=analytics,
        )
    if isinstance(cfg, JsonlSinkConfig):
        return JsonlTracksSink(path)
    return MotTracksSink(path)


def _edge(q: QueueConfig | None, default: QueueConfig, min_capacity: int = 1) -> EdgeSpec:
    chosen = q or default
    return EdgeSpec(capacity=max(chosen.capacity, min_capacity), policy=chosen.policy)


def _virtual_replay_lossless(
    cfg: PipelineConfig, buffers: dict[str, EdgeSpec], ages: dict[str, float]
) -> None:
    """Make the pipeline lossless and clock-free for virtual-clock replay sources.

    Their buffer and freshness budget are modelled inside the source (on the recorded
    timeline), so here their capture buffer becomes ``block`` and the runner's
    age-based drops do not apply to them. A ``drop_oldest`` stage queue would drop by
    thread timing, so it is refused.

    Raises:
        ConfigError: a stage queue is ``drop_oldest`` beside a virtual replay source.
    """
    virtual = [
        s.id for s in cfg.sources if isinstance(s, ReplaySourceConfig) and s.clock == "virtual"
    ]
    if not virtual:
        return
    for sid in virtual:
        buffers[sid] = EdgeSpec(capacity=cfg.queue.capacity, policy="block")
        ages.pop(sid, None)
    queues = [("queue", cfg.queue)] + [
        (f"stages[{i}].queue", st.queue)
        for i, st in enumerate(cfg.stages)
        if getattr(st, "queue", None) is not None
    ]
    for where, q in queues:
        if q is not None and q.policy == "drop_oldest":
            raise ConfigError(
                f"{where}.policy: drop_oldest drops by thread timing, which would make the "
                f"virtual-clock replay of {virtual} irreproducible; use block (the replay "
                "source models the capture buffer itself)"
            )


def build_pipeline(cfg: PipelineConfig, run_dir: Path) -> BuiltPipeline:
    """Instantiate sources, detector, tracker and sinks of ``cfg``.

    Args:
        cfg: A validated pipeline config (absolute paths).
        run_dir: Folder the sinks write into (created).

    Raises:
        BackendError: the model cannot be loaded.
        ConfigError: a value is valid alone but not for this model.
        SinkError: an output cannot be created.
    """
    detect_cfg = cfg.stages[0]
    assert isinstance(detect_cfg, DetectStageConfig)  # guaranteed by the schema
    detector = make_frame_detector(detect_cfg)
    sources = [make_source(s, run_dir) for s in cfg.sources]
    run_dir.mkdir(parents=True, exist_ok=True)
    stages: list[Stage] = [
        PreprocessStage(detector, name="preprocess"),
        DetectStage(
            detector,
            name=detect_cfg.name,
            max_batch=detect_cfg.max_batch,
            max_wait_ms=detect_cfg.max_wait_ms,
        ),
    ]
    edges = [
        _edge(detect_cfg.queue, cfg.queue),
        _edge(detect_cfg.queue, cfg.queue, min_capacity=detect_cfg.max_batch),
    ]
    analytics = make_analytics_specs(cfg)
    preview = PreviewHub() if any(isinstance(st, PreviewSinkConfig) for st in cfg.stages) else None
    for index, st in enumerate(cfg.stages[1:], start=1):
        if isinstance(st, TrackStageConfig):
            stages.append(TrackStage(make_tracker_factory(st), name=st.name))
        elif isinstance(st, AnalyticsStageConfig):
            try:
                stages.append(AnalyticsStage(analytics or {}, detector.class_names, name=st.name))
            except ValueError as e:
                raise ConfigError(f"stages[{index}]: {e}") from None
        elif isinstance(st, DetectStageConfig):  # pragma: no cover - schema forbids it
            raise ConfigError("only one detect stage is supported")
        else:
            sink = make_sink(st, run_dir, analytics, preview)
            stages.append(SinkStage(sink, detector.class_names, name=st.name))
        edges.append(_edge(st.queue, cfg.queue))
    buffers = {s.id: _edge(s.buffer, cfg.queue) for s in cfg.sources if s.buffer is not None}
    ages = {s.id: s.max_frame_age_ms for s in cfg.sources if s.max_frame_age_ms is not None}
    _virtual_replay_lossless(cfg, buffers, ages)
    pipeline = Pipeline(sources, stages, edges, source_buffers=buffers, max_frame_age_ms=ages)
    return BuiltPipeline(pipeline, detector, run_dir, preview)
