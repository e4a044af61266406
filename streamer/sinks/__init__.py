"""Output sinks: annotated H.264 video, JSON lines and MOTChallenge text.

Every sink follows the :class:`~streamer.sinks.base.Sink` protocol
(``open(info, class_names)`` per source, ``write(packet)``, idempotent ``close()``)
and is driven by one writer thread.
"""

from __future__ import annotations

from streamer.sinks.base import Sink, resolve_path
from streamer.sinks.jsonl import JsonlTracksSink
from streamer.sinks.mot import MotTracksSink
from streamer.sinks.supervision_adapter import detections_to_supervision, tracks_to_supervision
from streamer.sinks.video import AnnotatedVideoSink

__all__ = [
    "AnnotatedVideoSink",
    "JsonlTracksSink",
    "MotTracksSink",
    "Sink",
    "detections_to_supervision",
    "resolve_path",
    "tracks_to_supervision",
]
