"""Drawing of tracks, detections, lines and zones on a frame, shared by the video sinks.

:class:`FrameAnnotator` holds the stateless supervision annotators (boxes, labels)
and the drawing options; :class:`DrawState` holds what is per source (class names,
the stateful motion-trail annotator, the line/zone geometry, the last frame drawn).
The annotated MP4 sink (:mod:`streamer.sinks.video`) and the live preview sink
(:mod:`streamer.sinks.preview`) draw through the same code, so a preview frame
looks like the same frame of ``annotated.mp4``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import supervision as sv

from streamer.sinks.supervision_adapter import (
    CLASS_NAME_KEY,
    detections_to_supervision,
    tracks_to_supervision,
)
from streamer.types import ImageBGR, Packet

if TYPE_CHECKING:  # a runtime import would be circular (analytics uses our adapter)
    from streamer.analytics.zones import AnalyticsSpec, AnalyticsSpecs

_EMPTY_SV = sv.Detections.empty()
_LINE_COLOR = sv.Color.YELLOW
_ZONE_COLOR = sv.Color.from_hex("#00d5ff")  # cyan-blue, apart from the track palette


def spec_of(specs: AnalyticsSpecs | None, source_id: str) -> AnalyticsSpec | None:
    """The analytics geometry of ``source_id`` (see :func:`streamer.analytics.spec_for`)."""
    if specs is None or not isinstance(specs, Mapping):
        return specs
    return specs.get(source_id)


@dataclass
class DrawState:
    """What drawing keeps per source.

    Attributes:
        class_names: Detector class names, indexed by ``class_id``.
        trace: The motion-trail annotator (stateful), or None without trails.
        trace_length: Trail length, frames.
        analytics: Line/zone geometry of this source, or None.
        last_seq: ``seq`` of the last frame drawn, or None before the first.
    """

    class_names: tuple[str, ...]
    trace: sv.TraceAnnotator | None
    trace_length: int
    analytics: AnalyticsSpec | None = None
    last_seq: int | None = None


class FrameAnnotator:
    """Draws a packet's analytics, tracks (or detections) on a frame, in place.

    Tracks get a box, a label ``"class_name confidence #track_id"`` and a motion trail
    of the last ``trace_length_s`` seconds, coloured by track id; a packet without
    tracks has its detections drawn (box and ``"class_name confidence"``, coloured by
    class); lines are drawn with ``"name in N out M"`` and zones with
    ``"name: count"`` when the packet carries ``analytics``.

    Args:
        trace_length_s: Length of the motion trails, seconds (converted to frames with
            the stream's fps); 0 disables trails.
        draw_confidence: Whether labels show the confidence.
        draw_labels: Whether to draw labels at all.
        text_scale: Label font scale (supervision's ``text_scale``).
        box_thickness: Box line thickness, pixels, >= 1.
        analytics: Line/zone geometry: one ``AnalyticsSpec`` for every source or a
            mapping ``source_id -> spec``; None draws no analytics.

    Raises:
        ValueError: if a parameter is out of its valid range.

    Thread-safety: the box and label annotators are stateless and may be shared;
    a :class:`DrawState` belongs to one source and one writer thread.
    """

    def __init__(
        self,
        trace_length_s: float = 2.0,
        draw_confidence: bool = True,
        *,
        draw_labels: bool = True,
        text_scale: float = 0.5,
        box_thickness: int = 2,
        analytics: AnalyticsSpecs | None = None,
    ) -> None:
        if not (math.isfinite(trace_length_s) and 0.0 <= trace_length_s <= 600.0):
            raise ValueError(f"trace_length_s: must be in [0, 600], got {trace_length_s}")
        if not text_scale > 0.0:
            raise ValueError(f"text_scale: must be > 0, got {text_scale}")
        if box_thickness < 1:
            raise ValueError(f"box_thickness: must be >= 1, got {box_thickness}")
        self.trace_length_s = float(trace_length_s)
        self.draw_confidence = draw_confidence
        self.draw_labels = draw_labels
        self.text_scale = float(text_scale)
        self.box_thickness = int(box_thickness)
        self.analytics = analytics
        track_lookup = sv.ColorLookup.TRACK
        class_lookup = sv.ColorLookup.CLASS
        self._track_box = sv.BoxAnnotator(thickness=box_thickness, color_lookup=track_lookup)
        self._track_label = sv.LabelAnnotator(color_lookup=track_lookup, text_scale=text_scale)
        self._det_box = sv.BoxAnnotator(thickness=box_thickness, color_lookup=class_lookup)
        self._det_label = sv.LabelAnnotator(color_lookup=class_lookup, text_scale=text_scale)

    def new_state(self, source_id: str, class_names: Sequence[str], fps: float) -> DrawState:
        """The drawing state of a source whose stream runs at ``fps`` frames per second."""
        trace_length = round(self.trace_length_s * float(fps))
        trace = (
            sv.TraceAnnotator(
                trace_length=trace_length,
                thickness=self.box_thickness,
                color_lookup=sv.ColorLookup.TRACK,
            )
            if trace_length >= 2
            else None
        )
        return DrawState(
            class_names=tuple(class_names),
            trace=trace,
            trace_length=trace_length,
            analytics=spec_of(self.analytics, source_id),
        )

    def annotate(self, state: DrawState, canvas: ImageBGR, packet: Packet) -> None:
        """Draw the packet's analytics, then its tracks (or detections), on ``canvas``.

        Args:
            state: The packet's source's state (``last_seq`` is updated).
            canvas: ``(H, W, 3) uint8`` BGR, writable, drawn on in place.
            packet: The packet; frames skipped since ``state.last_seq`` still age the
                trails (no points are invented).
        """
        if state.analytics is not None and packet.analytics is not None:
            self._draw_analytics(canvas, state.analytics, packet.analytics)
        if state.trace is not None and state.last_seq is not None:
            for _ in range(min(packet.seq - state.last_seq - 1, state.trace_length)):
                state.trace.annotate(canvas, _EMPTY_SV)
        state.last_seq = packet.seq
        if packet.tracks is not None:
            det = tracks_to_supervision(packet.tracks, state.class_names)
            if state.trace is not None:
                state.trace.annotate(canvas, det)
            self._track_box.annotate(canvas, det)
            if self.draw_labels and len(det):
                self._track_label.annotate(canvas, det, labels=self._labels(det))
            return
        if state.trace is not None:
            state.trace.annotate(canvas, _EMPTY_SV)  # keep the trail clock running
        if packet.detections is not None and len(packet.detections):
            det = detections_to_supervision(packet.detections, state.class_names)
            self._det_box.annotate(canvas, det)
            if self.draw_labels:
                self._det_label.annotate(canvas, det, labels=self._labels(det))

    def _draw_analytics(
        self, canvas: ImageBGR, spec: AnalyticsSpec, analytics: Mapping[str, Any]
    ) -> None:
        """Draw lines with ``"name in N out M"`` and zones with ``"name: count"`` in place.

        Only lines and zones present in ``analytics`` are drawn (with supervision's
        ``draw_line`` / ``draw_polygon`` / ``draw_text``).
        """
        lines: Mapping[str, Any] = analytics.get("lines") or {}
        for line in spec.lines:
            state = lines.get(line.name)
            if state is None:
                continue
            start, end = sv.Point(*line.start_px), sv.Point(*line.end_px)
            sv.draw_line(canvas, start, end, color=_LINE_COLOR, thickness=self.box_thickness)
            sv.draw_text(
                canvas,
                f"{line.name} in {state['in']} out {state['out']}",
                text_anchor=sv.Point((start.x + end.x) / 2, (start.y + end.y) / 2),
                text_color=sv.Color.BLACK,
                text_scale=self.text_scale,
                background_color=_LINE_COLOR,
            )
        zones: Mapping[str, Any] = analytics.get("zones") or {}
        for zone in spec.zones:
            state = zones.get(zone.name)
            if state is None:
                continue
            polygon = np.rint(np.array(zone.polygon_px, dtype=np.float64)).astype(np.int_)
            sv.draw_polygon(canvas, polygon, color=_ZONE_COLOR, thickness=self.box_thickness)
            sv.draw_text(
                canvas,
                f"{zone.name}: {state['count']}",
                text_anchor=sv.get_polygon_center(polygon),
                text_color=sv.Color.BLACK,
                text_scale=self.text_scale,
                background_color=_ZONE_COLOR,
            )

    def _labels(self, det: sv.Detections) -> list[str]:
        """Return ``"class_name confidence #track_id"`` labels (parts as configured)."""
        names: list[str] = np.asarray(det.data[CLASS_NAME_KEY]).tolist()
        parts: list[list[str]] = [[n] for n in names]
        if self.draw_confidence and det.confidence is not None:
            for p, c in zip(parts, det.confidence.tolist(), strict=True):
                p.append(f"{c:.2f}")
        if det.tracker_id is not None:
            for p, t in zip(parts, det.tracker_id.tolist(), strict=True):
                p.append(f"#{t}")
        return [" ".join(p) for p in parts]


__all__ = ["DrawState", "FrameAnnotator", "spec_of"]
