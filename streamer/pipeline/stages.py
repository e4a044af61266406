"""Pipeline stages: thin adapters around components that also work on their own.

* :class:`PreprocessStage` letterboxes each frame into the model input tensor.
* :class:`DetectStage` runs inference on a batch of tensors and decodes the outputs.
* :class:`TrackStage` keeps one tracker per source (created on the source's
  :class:`~streamer.types.StreamStart` with its fps) and coasts over stream gaps and
  over frames dropped for freshness (holes in ``seq``).
* :class:`AnalyticsStage` keeps one line/zone analytics state per source (created on
  its :class:`~streamer.types.StreamStart`, dropped on its
  :class:`~streamer.types.StreamEnd`) and fills ``packet.analytics``.
* :class:`SinkStage` hands packets to one sink and forwards them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from streamer.analytics.zones import AnalyticsSpec, AnalyticsSpecs, SceneAnalytics, spec_for
from streamer.pipeline.stage import BaseStage
from streamer.sinks.base import Sink
from streamer.types import Detections, Event, Packet, StreamEnd, StreamGap, StreamStart, Tracks
from trackers.types import Tracker


class PhasedDetector(Protocol):
    """A detector in three phases (``YoloDetector``, ``SlicedDetector``).

    ``preprocess`` makes a ``(3, H, W)`` tensor for one image (or an ``(n, 3, H, W)``
    batch of its tiles) and a mapping-back object; ``infer`` runs a batch;
    ``postprocess`` returns one :class:`~streamer.types.Detections` per image. A
    detector may also have ``recycle(tensor)``, which :class:`DetectStage` calls
    with each packet's tensor once inference has run, so its buffer is reused.
    """

    @property
    def class_names(self) -> tuple[str, ...]: ...

    def preprocess(self, image_bgr: np.ndarray) -> tuple[np.ndarray, Any]: ...

    def infer(self, batch: np.ndarray) -> list[np.ndarray]: ...

    def postprocess(self, outputs: list[np.ndarray], metas: Any) -> list[Detections]: ...


TrackerFactory = Callable[[float], Tracker]
"""Builds a tracker for a stream of the given frame rate (frames per second)."""


class PreprocessStage(BaseStage):
    """Letterbox + normalise each frame into ``packet.input_tensor`` (``(3, H, W) float32``)."""

    def __init__(self, detector: PhasedDetector, name: str = "preprocess") -> None:
        self.detector = detector
        self.name = name

    def process(self, packets: list[Packet]) -> list[Packet]:
        for p in packets:
            p.input_tensor, p.letterbox = self.detector.preprocess(p.frame.image)
        return packets


class DetectStage(BaseStage):
    """Batched inference and output decoding; fills ``packet.detections``.

    Args:
        detector: The detector (its backend runs here).
        name: Stage name.
        max_batch: Most frames per inference call.
        max_wait_ms: Longest wait for a batch to fill, ms.
    """

    def __init__(
        self,
        detector: PhasedDetector,
        name: str = "detect",
        max_batch: int = 1,
        max_wait_ms: float = 0.0,
    ) -> None:
        self.detector = detector
        self.name = name
        self.max_batch = max_batch
        self.max_wait_ms = max_wait_ms

    def process(self, packets: list[Packet]) -> list[Packet]:
        tensors: list[np.ndarray] = []
        for p in packets:
            if p.input_tensor is None:
                raise RuntimeError("packet reached detection without an input tensor")
            tensors.append(p.input_tensor)
        if not isinstance(tensors[0], np.ndarray):  # torch tensors (preprocess: gpu)
            batch = _stack_device(tensors)
        elif tensors[0].ndim == 4:  # sliced: each packet brings a batch of tiles
            batch = np.concatenate(tensors) if len(tensors) > 1 else tensors[0]
        else:
            batch = np.stack(tensors) if len(tensors) > 1 else tensors[0][None]
        outputs = self.detector.infer(batch)
        recycle = getattr(self.detector, "recycle", None)
        if recycle is not None:
            for t in tensors:
                recycle(t)
        results = self.detector.postprocess(outputs, [p.letterbox for p in packets])
        for p, dets in zip(packets, results, strict=True):
            p.detections = dets
            p.input_tensor = None  # release the tensor as soon as it is used
        return packets

    def close(self) -> None:
        """Stop the backend's worker threads, if it has any (``parallel_runs``)."""
        inner: Any = self.detector
        while not hasattr(inner, "backend") and hasattr(inner, "detector"):
            inner = inner.detector  # sliced / adaptive wrappers
        close = getattr(getattr(inner, "backend", None), "close", None)
        if close is not None:
            close()


def _stack_device(tensors: list[Any]) -> Any:
    """Batch ``(3, H, W)`` torch tensors on their device (no copy back to the host)."""
    import torch

    return torch.stack(tensors) if len(tensors) > 1 else tensors[0][None]


class TrackStage(BaseStage):
    """One tracker per source; fills ``packet.tracks``.

    Args:
        make_tracker: Builds a tracker for a stream's frame rate (fps).
        name: Stage name.
    """

    def __init__(self, make_tracker: TrackerFactory, name: str = "track") -> None:
        self.make_tracker = make_tracker
        self.name = name
        self._trackers: dict[str, Tracker] = {}
        self._pending_gap: dict[str, int] = {}
        self._last_seq: dict[str, int] = {}

    def on_event(self, event: Event) -> None:
        if isinstance(event, StreamStart):
            self._trackers[event.source_id] = self.make_tracker(event.info.fps)
            self._pending_gap[event.source_id] = 0
        elif isinstance(event, StreamGap):
            self._pending_gap[event.source_id] = (
                self._pending_gap.get(event.source_id, 0) + event.missing_frames
            )
        elif isinstance(event, StreamEnd):
            self._trackers.pop(event.source_id, None)
            self._pending_gap.pop(event.source_id, None)
            self._last_seq.pop(event.source_id, None)

    def process(self, packets: list[Packet]) -> list[Packet]:
        for p in packets:
            tracker = self._trackers.get(p.source_id)
            if tracker is None:
                raise RuntimeError(f"no tracker for source '{p.source_id}' (missing StreamStart)")
            dets = p.detections
            if dets is None:
                raise RuntimeError("packet reached tracking without detections")
            # Frames dropped upstream (freshness) leave holes in ``seq``; gap events
            # announce frames the source never delivered (and it skips their seq).
            last = self._last_seq.get(p.source_id)
            by_seq = p.seq - last if last is not None else 1
            elapsed = max(1, by_seq, 1 + self._pending_gap.get(p.source_id, 0))
            self._pending_gap[p.source_id] = 0
            self._last_seq[p.source_id] = p.seq
            out = tracker.update(dets.xyxy, dets.confidence, dets.class_id, frames_elapsed=elapsed)
            p.tracks = Tracks(out.xyxy, out.confidence, out.class_id, out.track_id, out.det_index)
        return packets


class AnalyticsStage(BaseStage):
    """Line-crossing counts and zone occupancy/dwell per source; fills ``packet.analytics``.

    A thin adapter around :class:`~streamer.analytics.zones.SceneAnalytics`: one per
    source, created on the source's :class:`~streamer.types.StreamStart` (so a
    restarted source starts from zero counts) and dropped on its
    :class:`~streamer.types.StreamEnd`. Gaps need no handling: dwell times come from
    ``pts_ns``, and line state survives missing frames.

    Args:
        specs: Lines and zones in frame pixels: one
            :class:`~streamer.analytics.zones.AnalyticsSpec` for every source, or a
            mapping ``source_id -> spec``; packets of sources without a spec pass
            through unchanged (``analytics`` stays None).
        class_names: Class names of the detector (per-class counts, class filters).
        name: Stage name.

    Raises:
        ValueError: a line or zone names a class the detector does not have (checked
            here, at build time, not at the first frame).
        RuntimeError: (from ``process``) a packet without tracks, or of a source that
            has a spec but sent no StreamStart.
    """

    def __init__(
        self, specs: AnalyticsSpecs, class_names: Sequence[str], name: str = "analytics"
    ) -> None:
        self.specs = specs
        self.class_names = tuple(class_names)
        self.name = name
        self._states: dict[str, SceneAnalytics] = {}
        all_specs = [specs] if isinstance(specs, AnalyticsSpec) else list(specs.values())
        for spec in all_specs:
            SceneAnalytics(spec, self.class_names)  # fail now on an unknown class

    def on_event(self, event: Event) -> None:
        if isinstance(event, StreamStart):
            spec = spec_for(self.specs, event.source_id)
            if spec is not None:
                self._states[event.source_id] = SceneAnalytics(spec, self.class_names)
        elif isinstance(event, StreamEnd):
            self._states.pop(event.source_id, None)

    def process(self, packets: list[Packet]) -> list[Packet]:
        for p in packets:
            state = self._states.get(p.source_id)
            if state is None:
                if spec_for(self.specs, p.source_id) is None:
                    continue
                raise RuntimeError(
                    f"no analytics state for source '{p.source_id}' (missing StreamStart)"
                )
            if p.tracks is None:
                raise RuntimeError("packet reached analytics without tracks (add a track stage)")
            p.analytics = state.update(p.tracks, p.frame.pts_ns)
        return packets


class SinkStage(BaseStage):
    """Writes each packet to one sink and passes it on; closes the sink on exit.

    Args:
        sink: The sink.
        class_names: Class names of the detector (for labels and records).
        name: Stage name.
    """

    def __init__(self, sink: Sink, class_names: Sequence[str], name: str) -> None:
        self.sink = sink
        self.class_names = tuple(class_names)
        self.name = name

    def on_event(self, event: Event) -> None:
        if isinstance(event, StreamStart):
            self.sink.open(event.info, self.class_names)
        # Message sinks (ZeroMQ, MQTT) also publish stream start, gap and end.
        write_event = getattr(self.sink, "write_event", None)
        if callable(write_event):
            write_event(event)

    def process(self, packets: list[Packet]) -> list[Packet]:
        for p in packets:
            self.sink.write(p)
        return packets

    def stats(self) -> dict[str, Any] | None:
        """The sink's own counters (sent, dropped, ...) when it keeps any, else None."""
        stats = getattr(self.sink, "stats", None)
        return dict(stats()) if callable(stats) else None

    def close(self) -> None:
        self.sink.close()
