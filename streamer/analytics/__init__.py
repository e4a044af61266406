"""Analytics on tracks: line-crossing counts and zone occupancy/dwell (built on supervision).

Components work without the pipeline (one instance per source, like a tracker)::

    spec = AnalyticsSpec(
        lines=(LineSpec("exit", start_px=(600, 432), end_px=(600, 250)),),
        zones=(ZoneSpec("table", polygon_px=((380, 330), (540, 330), (540, 425), (380, 425))),),
    )
    scene = SceneAnalytics(spec, class_names)
    result = scene.update(tracks, frame.pts_ns)   # JSON-ready dict

:class:`~streamer.pipeline.stages.AnalyticsStage` is the pipeline adapter.
"""

from __future__ import annotations

from streamer.analytics.zones import (
    DEFAULT_ANCHORS,
    AnalyticsSpec,
    AnalyticsSpecs,
    LineCounter,
    LineSpec,
    SceneAnalytics,
    ZoneMonitor,
    ZoneSpec,
    resolve_class_ids,
    spec_for,
)

__all__ = [
    "DEFAULT_ANCHORS",
    "AnalyticsSpec",
    "AnalyticsSpecs",
    "LineCounter",
    "LineSpec",
    "SceneAnalytics",
    "ZoneMonitor",
    "ZoneSpec",
    "resolve_class_ids",
    "spec_for",
]
