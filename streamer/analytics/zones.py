"""Line-crossing counts and zone occupancy/dwell on tracks, built on supervision.

Algorithms: :class:`supervision.LineZone` (side of a directed line per track
anchor, a crossing once a track is seen on the other side for
``minimum_crossing_threshold`` frames in a row) and :class:`supervision.PolygonZone`
(anchor point inside a rasterised polygon). This module adds what a stream
processor needs around them: per-class counts by class *name*, the tracks that
crossed on this frame, dwell time per track from the frames' presentation times
(``pts_ns``), an event when a track leaves a zone, and JSON-ready output.

Every component is single-stream (one instance per source, like a tracker):
:class:`LineCounter` (one line), :class:`ZoneMonitor` (one zone) and
:class:`SceneAnalytics` (all lines and zones of one source).
:class:`~streamer.pipeline.stages.AnalyticsStage` keeps one
:class:`SceneAnalytics` per ``source_id``.

Coordinates are original-frame pixels (x right, y down, origin top-left), as
everywhere in ``streamer``.

Direction of a line: stand at ``start_px`` and look towards ``end_px`` on the
screen. A track crossing from the right-hand side to the left-hand side counts
as **in**; from left to right as **out** (supervision's convention). For a line
drawn left to right (``start_px=(0, 300)``, ``end_px=(640, 300)``), walking up
the image is *in*; for a line drawn bottom to top (``start_px=(600, 432)``,
``end_px=(600, 250)``), walking to the right is *out*.

Output of :meth:`SceneAnalytics.update` for one frame (JSON-ready)::

    {"lines": {"door": {"in": 3, "out": 1,
                        "in_by_class": {"person": 3}, "out_by_class": {"person": 1},
                        "crossed": [{"track_id": 7, "direction": "in",
                                     "class_name": "person"}]}},
     "zones": {"desk": {"count": 2, "count_by_class": {"person": 2},
                        "dwell_s": {"7": 4.2, "9": 0.6},
                        "entered": [{"track_id": 9, "class_name": "person"}],
                        "left": [{"track_id": 5, "dwell_s": 12.0,
                                  "class_name": "person"}]}}}

``in``/``out`` are cumulative since the source started; ``crossed``,
``entered`` and ``left`` list only this frame's events; ``count`` and
``dwell_s`` describe the tracks inside the zone on this frame (``dwell_s`` keys
are track ids as strings, since JSON keys are strings).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import supervision as sv

from streamer.sinks.supervision_adapter import tracks_to_supervision
from streamer.types import Tracks

DEFAULT_ANCHORS: tuple[sv.Position, ...] = (sv.Position.BOTTOM_CENTER,)
"""Default triggering anchor: the bottom centre of the box (where a person's feet are)."""

_ANCHOR_NAMES = tuple(p.value.lower() for p in sv.Position if p is not sv.Position.CENTER_OF_MASS)


def _as_anchors(name: str, anchors: Iterable[sv.Position | str]) -> tuple[sv.Position, ...]:
    """Normalise anchors given as ``sv.Position`` or names (``"bottom_center"``)."""
    out: list[sv.Position] = []
    for a in anchors:
        if isinstance(a, sv.Position):
            pos = a
        else:
            try:
                pos = sv.Position(str(a).upper())
            except ValueError:
                raise ValueError(
                    f"{name}: unknown anchor {a!r} (known: {', '.join(_ANCHOR_NAMES)})"
                ) from None
        if pos is sv.Position.CENTER_OF_MASS:
            raise ValueError(f"{name}: anchor center_of_mass needs masks; tracks have boxes only")
        out.append(pos)
    if not out:
        raise ValueError(f"{name}: triggering_anchors must not be empty")
    return tuple(dict.fromkeys(out))


def _as_point(name: str, value: Sequence[float]) -> tuple[float, float]:
    """Return ``(x, y)`` as floats; raise ValueError unless two finite numbers."""
    pt = tuple(float(v) for v in value)
    if len(pt) != 2 or not all(math.isfinite(v) for v in pt):
        raise ValueError(f"{name}: expected two finite numbers (x, y) in pixels, got {value!r}")
    return pt[0], pt[1]


def _as_classes(name: str, classes: Iterable[str | int] | None) -> tuple[str | int, ...] | None:
    if classes is None:
        return None
    out = tuple(classes)
    if not out:
        raise ValueError(f"{name}: classes must not be empty (None counts every class)")
    return out


def resolve_class_ids(
    classes: Iterable[str | int] | None, class_names: Sequence[str]
) -> frozenset[int] | None:
    """Map a class filter given by names or ids to class ids.

    Args:
        classes: Class names (``"person"``) or non-negative ids, or None for every class.
        class_names: The detector's class names, indexed by class id.

    Returns:
        The class ids, or None when ``classes`` is None.

    Raises:
        ValueError: a name that is not in ``class_names``, or an id outside
            ``[0, len(class_names))`` (any id >= 0 when ``class_names`` is empty).
    """
    if classes is None:
        return None
    ids: set[int] = set()
    for c in classes:
        if isinstance(c, str):
            if c not in class_names:
                shown = ", ".join(class_names[:8]) + (", ..." if len(class_names) > 8 else "")
                raise ValueError(
                    f"unknown class name {c!r} (the detector has {len(class_names)} classes: "
                    f"{shown})"
                )
            ids.add(class_names.index(c))
        else:
            cid = int(c)
            if cid < 0 or (class_names and cid >= len(class_names)):
                raise ValueError(f"class id must be in [0, {len(class_names)}), got {cid}")
            ids.add(cid)
    return frozenset(ids)


def _class_name(class_names: Sequence[str], class_id: int) -> str:
    return class_names[class_id] if 0 <= class_id < len(class_names) else str(class_id)


@dataclass(frozen=True)
class LineSpec:
    """A directed counting line.

    Attributes:
        name: Key of the line in the output (unique among lines).
        start_px: ``(x, y)`` start of the line, original-frame pixels.
        end_px: ``(x, y)`` end of the line, pixels; the direction ``start -> end``
            decides which crossing is *in* (see the module docstring).
        triggering_anchors: Box points tested against the line (``sv.Position`` or
            names such as ``"bottom_center"``); a track is on one side only when all
            of them are, frames where they straddle the line are skipped.
            Default: bottom centre.
        minimum_crossing_threshold: Frames in a row a track must be seen on the new
            side before the crossing counts (>= 1); filters jitter on the line.
        classes: Count only these classes (names or ids), or None for all.

    Raises:
        ValueError: an empty name, non-finite or equal end points, a threshold < 1,
            or an unknown / empty anchor list.
    """

    name: str
    start_px: tuple[float, float]
    end_px: tuple[float, float]
    triggering_anchors: tuple[sv.Position, ...] = DEFAULT_ANCHORS
    minimum_crossing_threshold: int = 1
    classes: tuple[str | int, ...] | None = None

    def __post_init__(self) -> None:
        where = f"line {self.name!r}"
        if not self.name:
            raise ValueError("line: name must not be empty")
        start = _as_point(f"{where}: start_px", self.start_px)
        end = _as_point(f"{where}: end_px", self.end_px)
        if start == end:
            raise ValueError(f"{where}: start_px and end_px must differ, both are {start}")
        if int(self.minimum_crossing_threshold) < 1:
            raise ValueError(
                f"{where}: minimum_crossing_threshold must be >= 1, "
                f"got {self.minimum_crossing_threshold}"
            )
        object.__setattr__(self, "start_px", start)
        object.__setattr__(self, "end_px", end)
        object.__setattr__(
            self,
            "triggering_anchors",
            _as_anchors(f"{where}: triggering_anchors", self.triggering_anchors),
        )
        object.__setattr__(self, "minimum_crossing_threshold", int(self.minimum_crossing_threshold))
        object.__setattr__(self, "classes", _as_classes(f"{where}: classes", self.classes))


@dataclass(frozen=True)
class ZoneSpec:
    """A polygonal zone for occupancy and dwell time.

    Attributes:
        name: Key of the zone in the output (unique among zones).
        polygon_px: ``(K, 2)`` vertices ``(x, y)``, original-frame pixels, K >= 3,
            all >= 0 (supervision rasterises the polygon into a mask from the origin).
        triggering_anchors: Box points that must all be inside the polygon for the
            track to be inside. Default: bottom centre.
        classes: Watch only these classes (names or ids), or None for all.
        exit_grace_s: A track counts as having left once it has not been seen inside
            for longer than this, seconds of stream time (>= 0). Absorbs box jitter at
            the border and short tracker drop-outs; the ``left`` event comes this much
            later than the last frame inside.

    Raises:
        ValueError: an empty name, fewer than 3 vertices, a negative or non-finite
            vertex, a negative ``exit_grace_s``, or an unknown / empty anchor list.
    """

    name: str
    polygon_px: tuple[tuple[float, float], ...]
    triggering_anchors: tuple[sv.Position, ...] = DEFAULT_ANCHORS
    classes: tuple[str | int, ...] | None = None
    exit_grace_s: float = 0.5

    def __post_init__(self) -> None:
        where = f"zone {self.name!r}"
        if not self.name:
            raise ValueError("zone: name must not be empty")
        poly = tuple(
            _as_point(f"{where}: polygon_px[{i}]", p) for i, p in enumerate(self.polygon_px)
        )
        if len(poly) < 3:
            raise ValueError(f"{where}: polygon_px needs at least 3 vertices, got {len(poly)}")
        if any(v < 0 for p in poly for v in p):
            raise ValueError(f"{where}: polygon_px vertices must be >= 0, got {poly}")
        if not (math.isfinite(self.exit_grace_s) and self.exit_grace_s >= 0):
            raise ValueError(f"{where}: exit_grace_s must be >= 0, got {self.exit_grace_s}")
        object.__setattr__(self, "polygon_px", poly)
        object.__setattr__(
            self,
            "triggering_anchors",
            _as_anchors(f"{where}: triggering_anchors", self.triggering_anchors),
        )
        object.__setattr__(self, "classes", _as_classes(f"{where}: classes", self.classes))
        object.__setattr__(self, "exit_grace_s", float(self.exit_grace_s))


@dataclass(frozen=True)
class AnalyticsSpec:
    """The lines and zones of one camera view.

    Attributes:
        lines: Counting lines.
        zones: Occupancy/dwell zones.

    Raises:
        ValueError: no line and no zone, or two lines (or two zones) share a name.
    """

    lines: tuple[LineSpec, ...] = ()
    zones: tuple[ZoneSpec, ...] = ()

    def __post_init__(self) -> None:
        lines, zones = tuple(self.lines), tuple(self.zones)
        if not lines and not zones:
            raise ValueError("analytics: needs at least one line or zone")
        for kind, items in (("line", lines), ("zone", zones)):
            names = [x.name for x in items]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"analytics: {kind} names must be unique, repeated: {dupes}")
        object.__setattr__(self, "lines", lines)
        object.__setattr__(self, "zones", zones)


AnalyticsSpecs = AnalyticsSpec | Mapping[str, AnalyticsSpec]
"""One spec for every source, or one per ``source_id`` (sources not in it get none)."""


def spec_for(specs: AnalyticsSpecs | None, source_id: str) -> AnalyticsSpec | None:
    """Return the spec that applies to ``source_id`` (None: no analytics for it)."""
    if specs is None or isinstance(specs, AnalyticsSpec):
        return specs
    return specs.get(source_id)


def _select_classes(detections: sv.Detections, class_ids: frozenset[int] | None) -> sv.Detections:
    if class_ids is None or len(detections) == 0:
        return detections
    assert detections.class_id is not None  # set by tracks_to_supervision
    keep = np.isin(detections.class_id, np.fromiter(class_ids, dtype=np.int64))
    return detections if bool(keep.all()) else cast(sv.Detections, detections[keep])


class LineCounter:
    """In/out counts of tracks crossing one line, per class (one source).

    Wraps :class:`supervision.LineZone` (one per instance), which keeps per-track
    side history; see :class:`LineSpec` for the parameters.

    Args:
        spec: The line.
        class_names: The detector's class names, indexed by class id.

    Raises:
        ValueError: ``spec.classes`` names a class the detector does not have.

    Thread-safety: not thread-safe; one instance per source, updated in frame order.
    """

    def __init__(self, spec: LineSpec, class_names: Sequence[str] = ()) -> None:
        self.spec = spec
        self.class_names = tuple(class_names)
        try:
            self._class_ids = resolve_class_ids(spec.classes, self.class_names)
        except ValueError as e:
            raise ValueError(f"line {spec.name!r}: classes: {e}") from None
        self._zone = sv.LineZone(
            start=sv.Point(*spec.start_px),
            end=sv.Point(*spec.end_px),
            triggering_anchors=spec.triggering_anchors,
            minimum_crossing_threshold=spec.minimum_crossing_threshold,
        )

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def in_count(self) -> int:
        """Tracks that crossed in since the start."""
        return int(self._zone.in_count)

    @property
    def out_count(self) -> int:
        """Tracks that crossed out since the start."""
        return int(self._zone.out_count)

    def _by_name(self, per_class: Mapping[int | None, int]) -> dict[str, int]:
        out: Counter[str] = Counter()
        for cid, n in per_class.items():
            out[_class_name(self.class_names, -1 if cid is None else int(cid))] += int(n)
        return dict(sorted(out.items()))

    def update(self, detections: sv.Detections) -> dict[str, Any]:
        """Feed one frame's tracks and return the line's state.

        Args:
            detections: This frame's tracks as ``sv.Detections`` with ``tracker_id``
                (see :func:`~streamer.sinks.supervision_adapter.tracks_to_supervision`);
                boxes in original-frame pixels. Every frame must be fed, empty or not,
                in order.

        Returns:
            ``{"in": int, "out": int, "in_by_class": {name: int},
            "out_by_class": {name: int}, "crossed": [{"track_id": int,
            "direction": "in" | "out", "class_name": str}]}``; counts are cumulative,
            ``crossed`` lists this frame's crossings.
        """
        det = _select_classes(detections, self._class_ids)
        crossed_in, crossed_out = self._zone.trigger(det)
        crossed: list[dict[str, Any]] = []
        if len(det) and (crossed_in.any() or crossed_out.any()):
            assert det.tracker_id is not None and det.class_id is not None
            for i in np.flatnonzero(crossed_in | crossed_out).tolist():
                crossed.append(
                    {
                        "track_id": int(det.tracker_id[i]),
                        "direction": "in" if crossed_in[i] else "out",
                        "class_name": _class_name(self.class_names, int(det.class_id[i])),
                    }
                )
        return {
            "in": self.in_count,
            "out": self.out_count,
            "in_by_class": self._by_name(self._zone.in_count_per_class),
            "out_by_class": self._by_name(self._zone.out_count_per_class),
            "crossed": crossed,
        }


@dataclass
class _Stay:
    """One track's current visit of a zone (times are ``pts_ns``)."""

    first_inside_ns: int
    last_inside_ns: int
    class_id: int


class ZoneMonitor:
    """Occupancy of one zone per class, and dwell time per track (one source).

    Inside-ness comes from :class:`supervision.PolygonZone` (the box's triggering
    anchors inside the polygon). A track's visit starts on the first frame it is
    inside and ends once it has not been inside for longer than
    ``spec.exit_grace_s`` (it walked out, or its track ended); the ``left`` event
    then reports ``dwell_s`` = time between its first and last frame inside, from
    the frames' ``pts_ns``. Tracks still inside when the stream ends are not
    reported as left (they did not leave).

    Args:
        spec: The zone.
        class_names: The detector's class names, indexed by class id.

    Raises:
        ValueError: ``spec.classes`` names a class the detector does not have.

    Thread-safety: not thread-safe; one instance per source, updated in frame order.
    """

    def __init__(self, spec: ZoneSpec, class_names: Sequence[str] = ()) -> None:
        self.spec = spec
        self.class_names = tuple(class_names)
        try:
            self._class_ids = resolve_class_ids(spec.classes, self.class_names)
        except ValueError as e:
            raise ValueError(f"zone {spec.name!r}: classes: {e}") from None
        polygon = np.rint(np.array(spec.polygon_px, dtype=np.float64)).astype(np.int64)
        self._zone = sv.PolygonZone(polygon=polygon, triggering_anchors=spec.triggering_anchors)
        self._grace_ns = round(spec.exit_grace_s * 1e9)
        self._stays: dict[int, _Stay] = {}
        self._last_pts_ns: int | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    def update(self, detections: sv.Detections, pts_ns: int) -> dict[str, Any]:
        """Feed one frame's tracks and return the zone's state.

        Args:
            detections: This frame's tracks as ``sv.Detections`` with ``tracker_id``;
                boxes in original-frame pixels. Every frame must be fed, in order.
            pts_ns: The frame's presentation time, nanoseconds; must not decrease.

        Returns:
            ``{"count": int, "count_by_class": {name: int}, "dwell_s": {"<track_id>":
            float}, "entered": [{"track_id", "class_name"}], "left": [{"track_id",
            "dwell_s", "class_name"}]}``. ``count`` and ``dwell_s`` cover the tracks
            inside on this frame (dwell so far, seconds, 3 decimals).

        Raises:
            ValueError: ``pts_ns`` is smaller than on the previous call, or a track
                has no ``tracker_id``.
        """
        pts_ns = int(pts_ns)
        if self._last_pts_ns is not None and pts_ns < self._last_pts_ns:
            raise ValueError(
                f"zone {self.name!r}: pts_ns must not decrease, got {pts_ns} after "
                f"{self._last_pts_ns}"
            )
        self._last_pts_ns = pts_ns
        det = _select_classes(detections, self._class_ids)
        inside = self._zone.trigger(det) if len(det) else np.zeros(0, dtype=bool)
        ids: list[int] = []
        classes: list[int] = []
        if inside.any():
            if det.tracker_id is None:
                raise ValueError(f"zone {self.name!r}: detections need tracker_id (tracks)")
            assert det.class_id is not None
            ids = det.tracker_id[inside].astype(np.int64).tolist()
            classes = det.class_id[inside].astype(np.int64).tolist()
        entered: list[dict[str, Any]] = []
        for tid, cid in zip(ids, classes, strict=True):
            stay = self._stays.get(tid)
            if stay is None:
                self._stays[tid] = _Stay(pts_ns, pts_ns, cid)
                entered.append({"track_id": tid, "class_name": _class_name(self.class_names, cid)})
            else:
                stay.last_inside_ns = pts_ns
                stay.class_id = cid
        left: list[dict[str, Any]] = []
        now_inside = set(ids)
        for tid in [t for t in self._stays if t not in now_inside]:
            stay = self._stays[tid]
            if pts_ns - stay.last_inside_ns > self._grace_ns:
                del self._stays[tid]
                left.append(
                    {
                        "track_id": tid,
                        "dwell_s": round((stay.last_inside_ns - stay.first_inside_ns) / 1e9, 3),
                        "class_name": _class_name(self.class_names, stay.class_id),
                    }
                )
        by_class = Counter(_class_name(self.class_names, c) for c in classes)
        return {
            "count": len(ids),
            "count_by_class": dict(sorted(by_class.items())),
            "dwell_s": {
                str(t): round((pts_ns - self._stays[t].first_inside_ns) / 1e9, 3) for t in ids
            },
            "entered": entered,
            "left": left,
        }


class SceneAnalytics:
    """All lines and zones of one source: one :class:`LineCounter` / :class:`ZoneMonitor` each.

    Args:
        spec: The lines and zones.
        class_names: The detector's class names, indexed by class id.

    Raises:
        ValueError: a line or zone names a class the detector does not have.

    Example:
        >>> scene = SceneAnalytics(AnalyticsSpec(lines=(LineSpec("door", (0, 300), (640, 300)),)))
        >>> scene.update(Tracks.empty(), pts_ns=0)["lines"]["door"]["in"]
        0

    Thread-safety: not thread-safe; one instance per source, updated in frame order.
    """

    def __init__(self, spec: AnalyticsSpec, class_names: Sequence[str] = ()) -> None:
        self.spec = spec
        self.class_names = tuple(class_names)
        self.lines = [LineCounter(s, self.class_names) for s in spec.lines]
        self.zones = [ZoneMonitor(s, self.class_names) for s in spec.zones]

    def update(self, tracks: Tracks, pts_ns: int) -> dict[str, Any]:
        """Feed one frame's tracks; return ``{"lines": {...}, "zones": {...}}`` (JSON-ready).

        Args:
            tracks: This frame's tracks, boxes in original-frame pixels.
            pts_ns: The frame's presentation time, nanoseconds; must not decrease.

        Raises:
            ValueError: ``pts_ns`` decreased.
        """
        det = tracks_to_supervision(tracks, self.class_names)
        return {
            "lines": {line.name: line.update(det) for line in self.lines},
            "zones": {zone.name: zone.update(det, pts_ns) for zone in self.zones},
        }


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
