"""Exact formatting and lifecycle tests of the file sinks (JSONL, MOT) and sink helpers."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.errors import SinkError
from streamer.sinks import (
    AnnotatedVideoSink,
    JsonlTracksSink,
    MotTracksSink,
    Sink,
    detections_to_supervision,
    tracks_to_supervision,
)
from streamer.sinks import base as sinks_base
from streamer.sinks.base import class_name_of, resolve_path, safe_source_id
from streamer.sinks.jsonl import format_timestamp
from streamer.sinks.mot import mot_rows
from streamer.sinks.video import even_size, pad_to_even, rate_of
from streamer.types import Detections, Frame, Packet, StreamInfo, Tracks

CLASS_NAMES = ("person", "car")
# 2024-05-01T12:00:00Z + 123.456789 ms
WALL_NS = 1_714_564_800_123_456_789


def make_tracks() -> Tracks:
    return Tracks(
        xyxy=np.array([[10.0, 20.5, 30.25, 40.0], [1.004, 2.004, 3.333, 4.6666]], np.float32),
        confidence=np.array([0.9, 0.12345], np.float32),
        class_id=np.array([0, 7], np.int32),  # 7: outside CLASS_NAMES
        track_id=np.array([3, 12], np.int64),
        det_index=np.array([0, -1], np.int32),
    )


def make_detections() -> Detections:
    return Detections(
        xyxy=np.array([[5.0, 6.0, 15.5, 26.25]], np.float32),
        confidence=np.array([0.5], np.float32),
        class_id=np.array([1], np.int32),
    )


def make_packet(
    seq: int = 4,
    *,
    source_id: str = "cam1",
    tracks: Tracks | None = None,
    detections: Detections | None = None,
    wall_ns: int = WALL_NS,
) -> Packet:
    image = np.zeros((8, 8, 3), np.uint8)
    frame = Frame(source_id, seq, seq * 100_000_000, 0, image, wall_ns)
    return Packet(frame, detections=detections, tracks=tracks)


def info(source_id: str = "cam1") -> StreamInfo:
    return StreamInfo(source_id=source_id, fps=10.0, width_px=8, height_px=8)


# ---------------------------------------------------------------- JSONL


def test_jsonl_track_record_is_exact(tmp_path: Path) -> None:
    sink = JsonlTracksSink(tmp_path / "{source_id}.jsonl")
    sink.open(info(), CLASS_NAMES)
    sink.write(make_packet(tracks=make_tracks(), detections=make_detections()))
    sink.close()
    text = (tmp_path / "cam1.jsonl").read_text(encoding="utf-8")
    assert text == (
        '{"source_id":"cam1","seq":4,"pts_s":0.4,"timestamp":"2024-05-01T12:00:00.123Z",'
        '"wall_time_s":1714564800.123457,"tracks":['
        '{"track_id":3,"xyxy":[10.0,20.5,30.25,40.0],"confidence":0.9,"class_id":0,'
        '"class_name":"person"},'
        '{"track_id":12,"xyxy":[1.0,2.0,3.33,4.67],"confidence":0.123,"class_id":7,'
        '"class_name":"7"}]}\n'
    )


def test_jsonl_detector_only_record_has_detections_without_track_id(tmp_path: Path) -> None:
    sink = JsonlTracksSink(tmp_path / "out.jsonl")
    sink.open(info(), CLASS_NAMES)
    sink.write(make_packet(detections=make_detections()))
    sink.close()
    record = json.loads((tmp_path / "out.jsonl").read_text(encoding="utf-8"))
    assert "tracks" not in record
    assert record["detections"] == [
        {"xyxy": [5.0, 6.0, 15.5, 26.25], "confidence": 0.5, "class_id": 1, "class_name": "car"}
    ]


@pytest.mark.parametrize(
    ("tracks", "detections", "key"),
    [
        (Tracks.empty(), make_detections(), "tracks"),  # tracker ran, nothing tracked
        (None, Detections.empty(), "detections"),  # detector ran, nothing found
        (None, None, "detections"),  # neither stage ran
    ],
)
def test_jsonl_empty_frame_still_writes_a_record(
    tmp_path: Path, tracks: Tracks | None, detections: Detections | None, key: str
) -> None:
    sink = JsonlTracksSink(tmp_path / "out.jsonl")
    sink.open(info(), CLASS_NAMES)
    sink.write(make_packet(tracks=tracks, detections=detections))
    sink.close()
    lines = (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record[key] == []
    assert list(record) == ["source_id", "seq", "pts_s", "timestamp", "wall_time_s", key]


def test_jsonl_unrecorded_wall_clock_is_null(tmp_path: Path) -> None:
    sink = JsonlTracksSink(tmp_path / "out.jsonl")
    sink.open(info(), CLASS_NAMES)
    sink.write(make_packet(tracks=Tracks.empty(), wall_ns=0))
    sink.close()
    record = json.loads((tmp_path / "out.jsonl").read_text(encoding="utf-8"))
    assert record["timestamp"] is None
    assert record["wall_time_s"] is None


def test_jsonl_non_finite_values_become_null(tmp_path: Path) -> None:
    tracks = Tracks(
        np.array([[np.nan, 1.0, np.inf, 2.0]], np.float32),
        np.array([np.nan], np.float32),
        np.array([0], np.int32),
        np.array([1], np.int64),
        np.array([0], np.int32),
    )
    sink = JsonlTracksSink(tmp_path / "out.jsonl")
    sink.open(info(), CLASS_NAMES)
    sink.write(make_packet(tracks=tracks))
    sink.close()
    line = (tmp_path / "out.jsonl").read_text(encoding="utf-8")
    assert "NaN" not in line and "Infinity" not in line
    track = json.loads(line)["tracks"][0]
    assert track["xyxy"] == [None, 1.0, None, 2.0]
    assert track["confidence"] is None


@pytest.mark.parametrize(
    ("wall_ns", "expected"),
    [
        (0, None),
        (1, "1970-01-01T00:00:00.000Z"),
        (WALL_NS, "2024-05-01T12:00:00.123Z"),
        (1_714_564_800_999_999_999, "2024-05-01T12:00:00.999Z"),  # truncated, not rounded
    ],
)
def test_format_timestamp(wall_ns: int, expected: str | None) -> None:
    assert format_timestamp(wall_ns) == expected


def test_jsonl_sources_share_a_file_without_source_id_field(tmp_path: Path) -> None:
    sink = JsonlTracksSink(tmp_path / "all.jsonl")
    sink.open(info("a"), CLASS_NAMES)
    sink.open(info("b"), CLASS_NAMES)
    sink.write(make_packet(0, source_id="a", tracks=Tracks.empty()))
    sink.write(make_packet(0, source_id="b", tracks=Tracks.empty()))
    sink.write(make_packet(1, source_id="a", tracks=Tracks.empty()))
    sink.close()
    records = [json.loads(x) for x in (tmp_path / "all.jsonl").read_text().splitlines()]
    assert [(r["source_id"], r["seq"]) for r in records] == [("a", 0), ("b", 0), ("a", 1)]


def test_jsonl_one_file_per_source_with_source_id_field(tmp_path: Path) -> None:
    sink = JsonlTracksSink(str(tmp_path / "sub" / "{source_id}.jsonl"))
    sink.open(info("a"), CLASS_NAMES)
    sink.open(info("cam/2"), CLASS_NAMES)
    sink.write(make_packet(0, source_id="cam/2", tracks=Tracks.empty()))
    sink.close()
    assert sink.paths() == {
        "a": tmp_path / "sub" / "a.jsonl",
        "cam/2": tmp_path / "sub/cam_2.jsonl",
    }
    assert (tmp_path / "sub" / "a.jsonl").read_text() == ""
    assert len((tmp_path / "sub" / "cam_2.jsonl").read_text().splitlines()) == 1


def test_jsonl_flushes_once_the_interval_has_passed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(sinks_base.time, "monotonic", lambda: now[0])
    path = tmp_path / "out.jsonl"
    sink = JsonlTracksSink(path, flush_interval_s=1.0)
    sink.open(info(), CLASS_NAMES)
    sink.write(make_packet(0, tracks=Tracks.empty()))
    assert path.read_text() == ""  # still buffered: less than a second passed
    now[0] += 1.0
    sink.write(make_packet(1, tracks=Tracks.empty()))
    assert len(path.read_text().splitlines()) == 2  # on disk without close()
    sink.close()


# ------------------------------------------------------------------ MOT


def test_mot_rows_are_exact(tmp_path: Path) -> None:
    sink = MotTracksSink(tmp_path / "{source_id}.txt")
    sink.open(info(), CLASS_NAMES)
    sink.write(make_packet(0, tracks=make_tracks()))
    sink.write(make_packet(1, tracks=Tracks.empty()))  # no rows
    sink.write(make_packet(2, tracks=Tracks(*_first_row(make_tracks()))))
    sink.close()
    assert (tmp_path / "cam1.txt").read_text() == (
        "1,3,10.00,20.50,20.25,19.50,0.900,-1,-1,-1\n"
        "1,12,1.00,2.00,2.33,2.66,0.123,-1,-1,-1\n"
        "3,3,10.00,20.50,20.25,19.50,0.900,-1,-1,-1\n"
    )


def _first_row(t: Tracks) -> tuple[np.ndarray, ...]:
    return (t.xyxy[:1], t.confidence[:1], t.class_id[:1], t.track_id[:1], t.det_index[:1])


def test_mot_detector_only_rows_have_id_minus_one(tmp_path: Path) -> None:
    sink = MotTracksSink(tmp_path / "out.txt")
    sink.open(info(), CLASS_NAMES)
    sink.write(make_packet(9, detections=make_detections()))
    sink.write(make_packet(10))  # neither tracks nor detections: no rows
    sink.close()
    assert (tmp_path / "out.txt").read_text() == "10,-1,5.00,6.00,10.50,20.25,0.500,-1,-1,-1\n"


def test_mot_empty_tracks_frame_writes_no_rows(tmp_path: Path) -> None:
    sink = MotTracksSink(tmp_path / "out.txt")
    sink.open(info(), CLASS_NAMES)
    sink.write(make_packet(0, tracks=Tracks.empty(), detections=make_detections()))
    sink.close()
    assert (tmp_path / "out.txt").read_text() == ""


@pytest.mark.parametrize("cls", [MotTracksSink, AnnotatedVideoSink])
def test_two_sources_need_source_id_in_template(tmp_path: Path, cls: type) -> None:
    sink = cls(tmp_path / "out")
    sink.open(info("a"), CLASS_NAMES)
    with pytest.raises(SinkError, match=r"\{source_id\}"):
        sink.open(info("b"), CLASS_NAMES)
    sink.close()


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(0, 4000, width=32),
            st.floats(0, 4000, width=32),
            st.floats(0, 500, width=32),
            st.floats(0, 500, width=32),
            st.floats(0, 1, width=32),
            st.integers(1, 2**40),
        ),
        max_size=20,
    ),
    st.integers(0, 10**6),
)
def test_mot_rows_parse_back_within_rounding(rows: list[tuple[float, ...]], seq: int) -> None:
    arr = np.array([r[:5] for r in rows], np.float64).reshape(-1, 5)
    xyxy = np.stack([arr[:, 0], arr[:, 1], arr[:, 0] + arr[:, 2], arr[:, 1] + arr[:, 3]], 1)
    ids = np.array([r[5] for r in rows], np.int64)
    text = mot_rows(seq + 1, xyxy.astype(np.float32), arr[:, 4].astype(np.float32), ids)
    lines = text.splitlines()
    assert len(lines) == len(rows)
    for line, box, conf, track_id in zip(lines, xyxy, arr[:, 4], ids, strict=True):
        f = line.split(",")
        assert len(f) == 10 and f[7:] == ["-1", "-1", "-1"]
        assert int(f[0]) == seq + 1 and int(f[1]) == track_id
        x, y, w, h = (float(v) for v in f[2:6])
        box32 = box.astype(np.float32).astype(np.float64)
        np.testing.assert_allclose([x, y, x + w, y + h], box32, atol=0.0051 * 2 + 1e-9, rtol=0)
        assert abs(float(f[6]) - conf) <= 0.0006


# ------------------------------------------------------ lifecycle, all sinks

SinkFactory = Callable[[Path], Sink]
FACTORIES: list[tuple[str, SinkFactory]] = [
    ("jsonl", lambda d: JsonlTracksSink(d / "{source_id}.jsonl")),
    ("mot", lambda d: MotTracksSink(d / "{source_id}.txt")),
    ("video", lambda d: AnnotatedVideoSink(d / "{source_id}.mp4")),
]
FACTORY_PARAMS = [pytest.param(f, id=name) for name, f in FACTORIES]


@pytest.mark.parametrize("factory", FACTORY_PARAMS)
def test_sink_follows_protocol(tmp_path: Path, factory: SinkFactory) -> None:
    assert isinstance(factory(tmp_path), Sink)


@pytest.mark.parametrize("factory", FACTORY_PARAMS)
def test_close_without_open_and_twice(tmp_path: Path, factory: SinkFactory) -> None:
    sink = factory(tmp_path)
    sink.close()
    sink.close()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("factory", FACTORY_PARAMS)
def test_close_is_idempotent_after_writes(tmp_path: Path, factory: SinkFactory) -> None:
    sink = factory(tmp_path)
    sink.open(info(), CLASS_NAMES)
    sink.write(make_packet(0, tracks=make_tracks()))
    sink.close()
    sink.close()
    with pytest.raises(SinkError, match="closed"):
        sink.write(make_packet(1, tracks=make_tracks()))
    with pytest.raises(SinkError, match="after close"):
        sink.open(info("other"), CLASS_NAMES)


@pytest.mark.parametrize("factory", FACTORY_PARAMS)
def test_close_after_failed_open(tmp_path: Path, factory: SinkFactory) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")  # a file where the sink needs a folder
    sink = factory(blocker)
    with pytest.raises(SinkError, match="cannot create"):
        sink.open(info(), CLASS_NAMES)
    sink.close()
    sink.close()


@pytest.mark.parametrize("factory", FACTORY_PARAMS)
def test_write_before_open_raises(tmp_path: Path, factory: SinkFactory) -> None:
    sink = factory(tmp_path)
    with pytest.raises(SinkError, match=r"source 'cam1' \(frame 4\): sink not opened"):
        sink.write(make_packet(tracks=make_tracks()))
    sink.close()


@pytest.mark.parametrize("factory", FACTORY_PARAMS)
def test_reopening_a_source_keeps_its_output(tmp_path: Path, factory: SinkFactory) -> None:
    sink = factory(tmp_path)
    sink.open(info(), CLASS_NAMES)
    sink.write(make_packet(0, tracks=make_tracks()))
    sink.open(info(), CLASS_NAMES)  # no-op: does not truncate
    sink.write(make_packet(1, tracks=make_tracks()))
    sink.close()
    (out,) = tmp_path.iterdir()
    assert out.stat().st_size > 0


# --------------------------------------------------------------- helpers


@pytest.mark.parametrize(
    ("template", "source_id", "expected"),
    [
        ("out/{source_id}.mp4", "cam1", "out/cam1.mp4"),
        ("out/{source_id}/{source_id}.txt", "a b", "out/a_b/a_b.txt"),
        ("out/x.jsonl", "cam1", "out/x.jsonl"),
        ("out/{other}_{source_id}.jsonl", "../up", "out/{other}_.._up.jsonl"),
    ],
)
def test_resolve_path(template: str, source_id: str, expected: str) -> None:
    assert resolve_path(template, source_id) == Path(expected)


def test_safe_source_id_never_empty() -> None:
    assert safe_source_id("") == "_"
    assert safe_source_id("rtsp://u:p@h/1") == "rtsp___u_p_h_1"


@pytest.mark.parametrize(
    ("class_id", "expected"), [(0, "person"), (1, "car"), (2, "2"), (-1, "-1")]
)
def test_class_name_of(class_id: int, expected: str) -> None:
    assert class_name_of(CLASS_NAMES, class_id) == expected


def test_tracks_to_supervision() -> None:
    det = tracks_to_supervision(make_tracks(), CLASS_NAMES)
    np.testing.assert_array_equal(det.xyxy, make_tracks().xyxy)
    np.testing.assert_array_equal(det.tracker_id, [3, 12])
    np.testing.assert_array_equal(det.class_id, [0, 7])
    assert det.confidence is not None and det.confidence.dtype == np.float32
    assert det.data["class_name"].tolist() == ["person", "7"]
    assert det.data["det_index"].tolist() == [0, -1]
    assert det.xyxy.flags.writeable
    assert len(tracks_to_supervision(Tracks.empty(), CLASS_NAMES)) == 0


def test_detections_to_supervision() -> None:
    det = detections_to_supervision(make_detections(), CLASS_NAMES)
    assert det.tracker_id is None
    assert det.data["class_name"].tolist() == ["car"]
    assert len(detections_to_supervision(Detections.empty())) == 0


@pytest.mark.parametrize(
    ("wh", "expected"), [((480, 360), (480, 360)), ((101, 75), (102, 76)), ((1, 1), (2, 2))]
)
def test_even_size_and_pad(wh: tuple[int, int], expected: tuple[int, int]) -> None:
    assert even_size(*wh) == expected
    image = np.full((wh[1], wh[0], 3), 200, np.uint8)
    padded = pad_to_even(image)
    assert padded.shape == (expected[1], expected[0], 3)
    assert padded.flags.writeable and padded is not image
    np.testing.assert_array_equal(padded[: wh[1], : wh[0]], image)
    assert not padded[wh[1] :].any() and not padded[:, wh[0] :].any()


@pytest.mark.parametrize(
    ("fps", "expected", "error"),
    [
        (10.0, 10, None),
        (25.0, 25, None),
        (30000 / 1001, (30000, 1001), None),
        (29.97, (2997, 100), None),
        (0.0, None, SinkError),
        (-5.0, None, SinkError),
        (float("nan"), None, SinkError),
        (float("inf"), None, SinkError),
    ],
)
def test_rate_of(fps: float, expected: object, error: type[Exception] | None) -> None:
    if error is not None:
        with pytest.raises(error, match="fps"):
            rate_of(fps)
        return
    rate = rate_of(fps)
    if isinstance(expected, tuple):
        assert (rate.numerator, rate.denominator) == expected
    else:
        assert rate == expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"crf": 52}, "crf"),
        ({"crf": -1}, "crf"),
        ({"preset": "turbo"}, "preset"),
        ({"trace_length_s": -1.0}, "trace_length_s"),
        ({"keyframe_interval_s": 0.0}, "keyframe_interval_s"),
        ({"threads": -1}, "threads"),
        ({"box_thickness": 0}, "box_thickness"),
        ({"text_scale": 0.0}, "text_scale"),
    ],
)
def test_video_sink_rejects_bad_parameters(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AnnotatedVideoSink("x.mp4", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("cls", [JsonlTracksSink, MotTracksSink])
def test_text_sinks_reject_bad_flush_interval(cls: type) -> None:
    with pytest.raises(ValueError, match="flush_interval_s"):
        cls("x", flush_interval_s=-1.0)
