"""Line counts and zone occupancy/dwell on synthetic tracks (exact unit tests).

Geometry used throughout (frame pixels, y down):

* ``H``: horizontal line from (0, 100) to (200, 100), drawn left to right: walking
  *up* the image (y decreasing) crosses it *in*, walking down crosses it *out*.
* ``V``: vertical line from (600, 432) to (600, 250), drawn bottom to top: walking to
  the *right* crosses it *out*, to the left *in* (the exit line of the real clip).
* ``SQUARE``: zone with corners (100, 100) and (200, 200).

Tracks are 20 x 40 px boxes placed by their bottom centre (the default anchor).
Frames are 100 ms apart unless a test says otherwise.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.analytics import (
    AnalyticsSpec,
    LineCounter,
    LineSpec,
    SceneAnalytics,
    ZoneMonitor,
    ZoneSpec,
    resolve_class_ids,
    spec_for,
)
from streamer.pipeline.stages import AnalyticsStage
from streamer.sinks.jsonl import packet_to_record
from streamer.sinks.supervision_adapter import tracks_to_supervision
from streamer.sinks.video import AnnotatedVideoSink
from streamer.types import Frame, Packet, StreamEnd, StreamInfo, StreamStart, Tracks

NAMES = ("person", "bicycle", "car")
PERSON, CAR = 0, 2
FRAME_NS = 100_000_000  # 10 fps

H = LineSpec("h", start_px=(0, 100), end_px=(200, 100))
V = LineSpec("v", start_px=(600, 432), end_px=(600, 250))
SQUARE = ((100, 100), (200, 100), (200, 200), (100, 200))

# One track: (track_id, class_id, bottom-centre x, bottom-centre y)
Row = tuple[int, int, float, float]


def tracks(rows: Sequence[Row]) -> Tracks:
    """Tracks whose 20 x 40 boxes stand on the given bottom-centre points."""
    xyxy = np.array([[x - 10, y - 40, x + 10, y] for _, _, x, y in rows], np.float32)
    return Tracks(
        xyxy=xyxy.reshape(-1, 4),
        confidence=np.full(len(rows), 0.9, np.float32),
        class_id=np.array([c for _, c, _, _ in rows], np.int32),
        track_id=np.array([t for t, _, _, _ in rows], np.int64),
        det_index=np.arange(len(rows), dtype=np.int32),
    )


def run_line(spec: LineSpec, frames: Sequence[Sequence[Row]]) -> list[dict[str, Any]]:
    counter = LineCounter(spec, NAMES)
    return [counter.update(tracks_to_supervision(tracks(f), NAMES)) for f in frames]


def run_zone(
    spec: ZoneSpec, frames: Sequence[Sequence[Row]], pts_ns: Sequence[int] | None = None
) -> list[dict[str, Any]]:
    monitor = ZoneMonitor(spec, NAMES)
    times = pts_ns if pts_ns is not None else [i * FRAME_NS for i in range(len(frames))]
    return [
        monitor.update(tracks_to_supervision(tracks(f), NAMES), t)
        for f, t in zip(frames, times, strict=True)
    ]


def walk(track_id: int, class_id: int, points: Sequence[tuple[float, float]]) -> list[list[Row]]:
    """One track per frame along ``points``."""
    return [[(track_id, class_id, x, y)] for x, y in points]


# ---------------------------------------------------------------- specs
@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda: LineSpec("", (0, 0), (1, 0)), "name must not be empty"),
        (lambda: LineSpec("a", (5, 5), (5, 5)), "must differ"),
        (lambda: LineSpec("a", (0, float("nan")), (1, 0)), "two finite numbers"),
        (lambda: LineSpec("a", (0, 0, 0), (1, 0)), "two finite numbers"),  # type: ignore[arg-type]
        (lambda: LineSpec("a", (0, 0), (1, 0), minimum_crossing_threshold=0), ">= 1, got 0"),
        (lambda: LineSpec("a", (0, 0), (1, 0), triggering_anchors=()), "must not be empty"),
        (
            lambda: LineSpec("a", (0, 0), (1, 0), triggering_anchors=("feet",)),  # type: ignore[arg-type]
            "unknown anchor 'feet'",
        ),
        (
            lambda: LineSpec("a", (0, 0), (1, 0), triggering_anchors=("center_of_mass",)),  # type: ignore[arg-type]
            "needs masks",
        ),
        (lambda: LineSpec("a", (0, 0), (1, 0), classes=()), "classes must not be empty"),
        (lambda: ZoneSpec("z", ((0, 0), (1, 0))), "at least 3 vertices, got 2"),
        (lambda: ZoneSpec("z", ((0, 0), (1, 0), (-1, 5))), "must be >= 0"),
        (lambda: ZoneSpec("z", SQUARE, exit_grace_s=-0.1), "exit_grace_s must be >= 0"),
        (lambda: AnalyticsSpec(), "at least one line or zone"),
        (lambda: AnalyticsSpec(lines=(H, H)), "line names must be unique, repeated: ['h']"),
        (
            lambda: AnalyticsSpec(zones=(ZoneSpec("z", SQUARE), ZoneSpec("z", SQUARE))),
            "zone names must be unique",
        ),
    ],
)
def test_invalid_specs_raise(make: Any, error: str) -> None:
    with pytest.raises(ValueError, match=None) as info:
        make()
    assert error in str(info.value)


def test_spec_normalises_names_lists_and_numbers() -> None:
    spec = LineSpec("a", [1, 2], [3, 4], triggering_anchors=["top_center", "TOP_CENTER"])  # type: ignore[arg-type]
    assert spec.start_px == (1.0, 2.0) and spec.end_px == (3.0, 4.0)
    assert [p.value for p in spec.triggering_anchors] == ["TOP_CENTER"]
    zone = ZoneSpec("z", [[0, 0], [1, 0], [1, 1]], classes=["person"])  # type: ignore[arg-type]
    assert zone.polygon_px == ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0))
    assert zone.classes == ("person",)


@pytest.mark.parametrize(
    ("classes", "expected", "error"),
    [
        (None, None, None),
        (("person", "car"), {0, 2}, None),
        ((2, "person"), {0, 2}, None),
        (("dog",), None, "unknown class name 'dog'"),
        ((3,), None, r"class id must be in \[0, 3\), got 3"),
        ((-1,), None, "got -1"),
    ],
)
def test_resolve_class_ids(
    classes: tuple[str | int, ...] | None, expected: set[int] | None, error: str | None
) -> None:
    if error is not None:
        with pytest.raises(ValueError, match=error):
            resolve_class_ids(classes, NAMES)
        return
    assert resolve_class_ids(classes, NAMES) == (None if expected is None else frozenset(expected))


def test_unknown_class_fails_when_the_component_is_built() -> None:
    with pytest.raises(ValueError, match="line 'h': classes: unknown class name 'dog'"):
        LineCounter(LineSpec("h", (0, 100), (200, 100), classes=("dog",)), NAMES)
    with pytest.raises(ValueError, match="zone 'z': classes: unknown class name 'dog'"):
        ZoneMonitor(ZoneSpec("z", SQUARE, classes=("dog",)), NAMES)
    with pytest.raises(ValueError, match="unknown class name 'dog'"):
        AnalyticsStage(AnalyticsSpec(zones=(ZoneSpec("z", SQUARE, classes=("dog",)),)), NAMES)


# ---------------------------------------------------------------- lines
UP = [(100.0, 130.0), (100.0, 110.0), (100.0, 90.0), (100.0, 70.0)]
DOWN = UP[::-1]
RIGHT = [(560.0, 400.0), (590.0, 400.0), (610.0, 400.0), (640.0, 400.0)]
LEFT = RIGHT[::-1]


@pytest.mark.parametrize(
    ("spec", "points", "expected_in", "expected_out", "frame_of_crossing"),
    [
        (H, UP, 1, 0, 2),
        (H, DOWN, 0, 1, 2),
        (V, RIGHT, 0, 1, 2),
        (V, LEFT, 1, 0, 2),
        # Reversing the line's direction swaps in and out.
        (LineSpec("h_rev", (200, 100), (0, 100)), UP, 0, 1, 2),
        (LineSpec("v_rev", (600, 250), (600, 432)), RIGHT, 1, 0, 2),
        # Past the end of the segment: not a crossing.
        (H, [(300.0, 130.0), (300.0, 70.0)], 0, 0, None),
        # Staying on one side: nothing.
        (H, [(100.0, 130.0), (50.0, 120.0), (150.0, 101.0)], 0, 0, None),
    ],
)
def test_direction_of_a_crossing(
    spec: LineSpec,
    points: list[tuple[float, float]],
    expected_in: int,
    expected_out: int,
    frame_of_crossing: int | None,
) -> None:
    results = run_line(spec, walk(7, PERSON, points))
    last = results[-1]
    assert (last["in"], last["out"]) == (expected_in, expected_out)
    crossed_at = [i for i, r in enumerate(results) if r["crossed"]]
    assert crossed_at == ([] if frame_of_crossing is None else [frame_of_crossing])
    if frame_of_crossing is not None:
        direction = "in" if expected_in else "out"
        event = {"track_id": 7, "direction": direction, "class_name": "person"}
        assert results[frame_of_crossing]["crossed"] == [event]


def test_both_ways_with_class_breakdown() -> None:
    # Two people walk up (in), one car walks up (in), one person walks down (out).
    frames: list[list[Row]] = []
    for (x1, y_up), (_, y_down) in zip(UP, DOWN, strict=True):
        frames.append(
            [
                (1, PERSON, 20.0, y_up),
                (2, PERSON, 60.0, y_up),
                (3, CAR, x1 + 40, y_up),
                (4, PERSON, 180.0, y_down),
            ]
        )
    results = run_line(H, frames)
    assert results[-1] == {
        "in": 3,
        "out": 1,
        "in_by_class": {"car": 1, "person": 2},
        "out_by_class": {"person": 1},
        "crossed": [],
    }
    assert sorted((c["track_id"], c["direction"]) for c in results[2]["crossed"]) == [
        (1, "in"),
        (2, "in"),
        (3, "in"),
        (4, "out"),
    ]
    json.dumps(results)  # JSON-ready: plain ints, strs, lists and dicts only


def test_class_filter_ignores_other_classes() -> None:
    spec = LineSpec("people", (0, 100), (200, 100), classes=("person",))
    frames = [[(1, PERSON, 50.0, y), (2, CAR, 150.0, y)] for _, y in UP]
    last = run_line(spec, frames)[-1]
    assert (last["in"], last["in_by_class"]) == (1, {"person": 1})


def test_anchor_choice_decides_what_crosses() -> None:
    # Bottom moves from 130 to 110 to 95: the feet cross y=100, the head (top, 40 px
    # higher) was above the line all along.
    points = [(100.0, 130.0), (100.0, 110.0), (100.0, 95.0)]
    feet = run_line(H, walk(1, PERSON, points))[-1]
    head = run_line(
        LineSpec("h", (0, 100), (200, 100), triggering_anchors=("top_center",)),  # type: ignore[arg-type]
        walk(1, PERSON, points),
    )[-1]
    assert feet["in"] == 1
    assert head["in"] == 0


# Bottom y of one track jittering on the line y=100, then walking up for good.
JITTER = [120, 95, 105, 95, 105, 95, 90, 80, 70]


@pytest.mark.parametrize(
    ("threshold", "expected_in", "expected_out", "crossed_at"),
    [
        (1, 3, 2, [1, 2, 3, 4, 5]),  # every side change counts
        (2, 1, 0, [6]),  # single-frame excursions are noise
        (3, 1, 0, [7]),  # counted once, on the 3rd frame in a row above
    ],
)
def test_jitter_on_the_line_counted_once_with_threshold(
    threshold: int, expected_in: int, expected_out: int, crossed_at: list[int]
) -> None:
    spec = LineSpec("h", (0, 100), (200, 100), minimum_crossing_threshold=threshold)
    results = run_line(spec, walk(5, PERSON, [(100.0, float(y)) for y in JITTER]))
    assert (results[-1]["in"], results[-1]["out"]) == (expected_in, expected_out)
    assert [i for i, r in enumerate(results) if r["crossed"]] == crossed_at


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(50, 150).filter(lambda y: y != 100), min_size=1, max_size=30))
def test_line_counts_follow_side_changes(ys: list[int]) -> None:
    """With threshold 1 every change of side is one crossing, in when it ends above."""
    results = run_line(H, walk(1, PERSON, [(100.0, float(y)) for y in ys]))
    above = [y < 100 for y in ys]
    changes = sum(a != b for a, b in itertools.pairwise(above))
    last = results[-1]
    assert last["in"] + last["out"] == changes
    assert last["in"] - last["out"] == int(above[-1]) - int(above[0])


# ---------------------------------------------------------------- zones
def test_zone_occupancy_by_class_and_class_filter() -> None:
    rows: list[Row] = [
        (1, PERSON, 150.0, 150.0),
        (2, PERSON, 120.0, 190.0),
        (3, CAR, 180.0, 110.0),
        (4, PERSON, 250.0, 150.0),  # outside
    ]
    everything = run_zone(ZoneSpec("z", SQUARE), [rows])[0]
    assert everything["count"] == 3
    assert everything["count_by_class"] == {"car": 1, "person": 2}
    assert sorted(e["track_id"] for e in everything["entered"]) == [1, 2, 3]
    people = run_zone(ZoneSpec("z", SQUARE, classes=("person",)), [rows])[0]
    assert (people["count"], people["count_by_class"]) == (2, {"person": 2})


def test_dwell_from_pts_and_left_event() -> None:
    # Frame:        0      1      2      3      4      5      6      7      8      9
    # Track 7:    out    out     in     in     in     in     in    out    out    out
    inside, outside = (150.0, 150.0), (250.0, 150.0)
    points = [outside] * 2 + [inside] * 5 + [outside] * 3
    no_grace = run_zone(ZoneSpec("z", SQUARE, exit_grace_s=0.0), walk(7, PERSON, points))
    assert [r["count"] for r in no_grace] == [0, 0, 1, 1, 1, 1, 1, 0, 0, 0]
    assert no_grace[2]["entered"] == [{"track_id": 7, "class_name": "person"}]
    assert [r["dwell_s"] for r in no_grace[2:7]] == [{"7": d} for d in (0.0, 0.1, 0.2, 0.3, 0.4)]
    assert no_grace[7]["left"] == [{"track_id": 7, "dwell_s": 0.4, "class_name": "person"}]
    assert [i for i, r in enumerate(no_grace) if r["left"]] == [7]
    # With a grace of 0.25 s the event comes once 0.3 s have passed; the dwell is the same.
    grace = run_zone(ZoneSpec("z", SQUARE, exit_grace_s=0.25), walk(7, PERSON, points))
    assert [i for i, r in enumerate(grace) if r["left"]] == [9]
    assert grace[9]["left"][0]["dwell_s"] == 0.4
    json.dumps(grace)


def test_short_excursion_or_dropout_within_grace_is_one_visit() -> None:
    inside, outside = (150.0, 150.0), (250.0, 150.0)
    # Out for one frame at 3, absent (no track at all) at 5 and 6.
    frames = [*walk(3, PERSON, [*[inside] * 3, outside, inside]), [], [], [(3, PERSON, *inside)]]
    one = run_zone(ZoneSpec("z", SQUARE, exit_grace_s=0.25), frames)
    assert [r["count"] for r in one] == [1, 1, 1, 0, 1, 0, 0, 1]
    assert sum(len(r["entered"]) for r in one) == 1
    assert all(not r["left"] for r in one)
    assert one[-1]["dwell_s"] == {"3": 0.7}
    # Without grace the same track makes three visits.
    split = run_zone(ZoneSpec("z", SQUARE, exit_grace_s=0.0), frames)
    assert [len(r["entered"]) for r in split] == [1, 0, 0, 0, 1, 0, 0, 1]
    assert [[e["dwell_s"] for e in r["left"]] for r in split] == [
        [], [], [], [0.2], [], [0.0], [], []
    ]  # fmt: skip


def test_dwell_counts_stream_time_across_missing_frames() -> None:
    # 0.0 s, 0.1 s, then 5 frames missing upstream: the next frame is at 0.7 s.
    pts = [0, FRAME_NS, 7 * FRAME_NS]
    results = run_zone(
        ZoneSpec("z", SQUARE, exit_grace_s=1.0), walk(1, PERSON, [(150.0, 150.0)] * 3), pts
    )
    assert results[-1]["dwell_s"] == {"1": 0.7}


def test_decreasing_pts_raises() -> None:
    monitor = ZoneMonitor(ZoneSpec("z", SQUARE), NAMES)
    empty = tracks_to_supervision(Tracks.empty(), NAMES)
    monitor.update(empty, 2 * FRAME_NS)
    monitor.update(empty, 2 * FRAME_NS)  # equal is fine
    with pytest.raises(ValueError, match="pts_ns must not decrease, got 100000000 after 200000000"):
        monitor.update(empty, FRAME_NS)


def test_scene_output_layout() -> None:
    spec = AnalyticsSpec(lines=(H,), zones=(ZoneSpec("z", SQUARE),))
    scene = SceneAnalytics(spec, NAMES)
    out = scene.update(tracks([(1, PERSON, 150.0, 150.0)]), 0)
    assert out == {
        "lines": {"h": {"in": 0, "out": 0, "in_by_class": {}, "out_by_class": {}, "crossed": []}},
        "zones": {
            "z": {
                "count": 1,
                "count_by_class": {"person": 1},
                "dwell_s": {"1": 0.0},
                "entered": [{"track_id": 1, "class_name": "person"}],
                "left": [],
            }
        },
    }
    assert json.loads(json.dumps(out)) == out


# ---------------------------------------------------------------- stage: one state per source
def packet(source_id: str, seq: int, rows: Sequence[Row] | None) -> Packet:
    image = np.zeros((4, 4, 3), np.uint8)
    frame = Frame(source_id, seq, seq * FRAME_NS, 0, image)
    return Packet(frame, tracks=None if rows is None else tracks(rows))


def start(source_id: str) -> StreamStart:
    return StreamStart(StreamInfo(source_id, 10.0, 640, 480))


def test_stage_keeps_sources_apart() -> None:
    spec = AnalyticsSpec(lines=(H,), zones=(ZoneSpec("z", SQUARE, exit_grace_s=0.0),))
    stage = AnalyticsStage(spec, NAMES)
    stage.on_event(start("a"))
    stage.on_event(start("b"))
    # The same track id 1 walks up across the line in "a" and stays below it in "b";
    # in "b" it stands in the zone.
    for seq, (x, y) in enumerate(UP):
        pa = packet("a", seq, [(1, PERSON, x, y)])
        pb = packet("b", seq, [(1, PERSON, 150.0, 150.0)])
        stage.process([pa, pb])  # interleaved in one batch
    assert pa.analytics is not None and pb.analytics is not None
    assert pa.analytics["lines"]["h"]["in"] == 1
    assert pb.analytics["lines"]["h"]["in"] == 0
    assert pa.analytics["zones"]["z"]["count"] == 0
    assert pb.analytics["zones"]["z"]["dwell_s"] == {"1": 0.3}
    # "a" ends and starts again: its counts start from zero; "b" goes on.
    stage.on_event(StreamEnd("a", frames=4))
    stage.on_event(start("a"))
    pa = packet("a", 0, [])
    pb = packet("b", 4, [(1, PERSON, 150.0, 150.0)])
    stage.process([pa, pb])
    assert pa.analytics is not None and pa.analytics["lines"]["h"]["in"] == 0
    assert pb.analytics is not None and pb.analytics["zones"]["z"]["dwell_s"] == {"1": 0.4}


def test_stage_with_per_source_specs_passes_other_sources_through() -> None:
    stage = AnalyticsStage({"a": AnalyticsSpec(lines=(H,))}, NAMES)
    stage.on_event(start("a"))
    stage.on_event(start("b"))
    pa, pb = packet("a", 0, []), packet("b", 0, [])
    stage.process([pa, pb])
    assert pa.analytics is not None and "h" in pa.analytics["lines"]
    assert pb.analytics is None
    assert spec_for({"a": AnalyticsSpec(lines=(H,))}, "b") is None


def test_stage_errors() -> None:
    stage = AnalyticsStage(AnalyticsSpec(lines=(H,)), NAMES)
    with pytest.raises(RuntimeError, match="missing StreamStart"):
        stage.process([packet("a", 0, [])])
    stage.on_event(start("a"))
    with pytest.raises(RuntimeError, match="without tracks"):
        stage.process([packet("a", 0, None)])


# ---------------------------------------------------------------- sinks
def test_jsonl_record_appends_analytics_last() -> None:
    scene = SceneAnalytics(AnalyticsSpec(lines=(H,)), NAMES)
    p = packet("a", 0, [(1, PERSON, 10.0, 130.0)])
    assert "analytics" not in packet_to_record(p, NAMES)
    p.analytics = scene.update(p.tracks or Tracks.empty(), 0)
    record = packet_to_record(p, NAMES)
    assert list(record) == [
        "source_id",
        "seq",
        "pts_s",
        "timestamp",
        "wall_time_s",
        "tracks",
        "analytics",
    ]
    assert json.loads(json.dumps(record))["analytics"]["lines"]["h"]["in"] == 0


def _first_frame(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return next(iter(c.decode(video=0))).to_ndarray(format="bgr24")


def test_video_sink_draws_lines_and_zones_from_its_geometry(tmp_path: Path) -> None:
    spec = AnalyticsSpec(
        lines=(LineSpec("door", (10, 100), (310, 100)),),
        zones=(ZoneSpec("desk", ((20, 140), (120, 140), (120, 220), (20, 220))),),
    )
    info = StreamInfo("cam", 10.0, 320, 240)
    frames: dict[str, np.ndarray] = {}
    for name, geometry in (("with", spec), ("without", None)):
        sink = AnnotatedVideoSink(
            tmp_path / f"{name}.mp4", trace_length_s=0.0, box_thickness=4, analytics=geometry
        )
        sink.open(info, NAMES)
        scene = SceneAnalytics(spec, NAMES)
        for seq in range(3):
            p = Packet(Frame("cam", seq, seq * FRAME_NS, 0, np.zeros((240, 320, 3), np.uint8)))
            p.tracks = Tracks.empty()
            p.analytics = scene.update(p.tracks, p.frame.pts_ns)
            sink.write(p)
        sink.close()
        frames[name] = _first_frame(tmp_path / f"{name}.mp4")
    drawn, plain = frames["with"].astype(int), frames["without"].astype(int)
    b, g, r = drawn[100, 30]  # on the line, away from its label
    assert r > 150 and g > 150 and b < 100, f"line pixel is BGR {(b, g, r)}, not yellow"
    b, g, r = drawn[180, 20]  # on the zone's left edge
    assert b > 150 and g > 100 and r < 100, f"zone pixel is BGR {(b, g, r)}, not cyan-blue"
    assert drawn[100, 160].sum() > 300  # the label "door in 0 out 0" on its box
    assert plain.max() < 30  # the same packets without geometry: nothing drawn
