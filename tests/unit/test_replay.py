"""Clips and replay without shared data: the capture model, the clip format, replay
on both clocks, the config and the builder's lossless wiring (synthetic videos)."""

from __future__ import annotations

import itertools
import json
import threading
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.cli import main as streamer_main
from streamer.config.loader import load_pipeline
from streamer.config.schema import PipelineConfig
from streamer.errors import ConfigError, SourceError
from streamer.pipeline.build import _virtual_replay_lossless, make_source
from streamer.pipeline.runner import EdgeSpec
from streamer.sources.clip import ClipWriter, load_clip
from streamer.sources.recorder import record
from streamer.sources.replay import ReplaySource, simulate_capture
from streamer.sources.rtsp import RtspSource
from streamer.sources.video_file import VideoFileSource
from streamer.types import Frame, StreamGap

MS = 1_000_000


def make_video(path: Path, n: int = 30, fps: int = 10, wh: tuple[int, int] = (64, 48)) -> Path:
    """An H.264 MP4 (with B-frames) whose frames all differ: a square moving right."""
    w, h = wh
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"g": "10", "bf": "2"}
        for i in range(n):
            img = np.full((h, w, 3), 40, np.uint8)
            x = (2 * i) % (w - 8)
            img[10:18, x : x + 8] = (0, 200, 255)
            img[0, 0] = i
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_video(tmp_path_factory.mktemp("video") / "v.mp4")


def read_all(src: Any) -> list[Frame | StreamGap]:
    items = []
    while (item := src.read()) is not None:
        items.append(item)
    return items


# -- the capture model ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("arrivals_ms", "cost_ms", "capacity", "policy", "max_age_ms", "expected"),
    [
        # Free pipeline: lossless whatever the buffer.
        ([0, 0, 0, 100], 0, 1, "drop_oldest", 10, "EEEE"),
        # 250 ms a frame, 100 ms apart, 1-frame buffer: the newest waiting frame wins.
        ([0, 100, 200, 300, 400, 500], 250, 1, "drop_oldest", None, "EBEBEE"),
        # block never drops in the buffer; the freshness budget drops the old ones.
        ([0, 100, 200, 300, 400], 250, 1, "block", 200, "EESES"),
        # Tie: a pipeline free exactly at an arrival takes the waiting frame first ...
        ([0, 100, 250], 250, 1, "drop_oldest", None, "EEE"),
        # ... one nanosecond earlier the arrival pushes it out.
        ([0, 100, 249], 250, 1, "drop_oldest", None, "EBE"),
        ([], 250, 1, "drop_oldest", None, ""),
    ],
)
def test_capture_model_decisions(
    arrivals_ms: list[int],
    cost_ms: int,
    capacity: int,
    policy: Any,
    max_age_ms: int | None,
    expected: str,
) -> None:
    names = {"emit": "E", "buffer_drop": "B", "stale_drop": "S"}
    arrivals = [a * MS for a in arrivals_ms]
    if arrivals_ms[-1:] == [249]:
        arrivals[-1] = 250 * MS - 1
    age = max_age_ms * MS if max_age_ms is not None else None
    got = simulate_capture(arrivals, cost_ms * MS, capacity, policy, age)
    assert "".join(names[d] for d in got) == expected


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"cost_ns": -1}, "cost_ns must be >= 0"),
        ({"capacity": 0}, "capacity must be >= 1"),
        ({"policy": "newest"}, "policy must be"),
    ],
)
def test_capture_model_rejects_bad_arguments(kwargs: dict[str, Any], error: str) -> None:
    args: dict[str, Any] = {"cost_ns": 0, "capacity": 2, "policy": "drop_oldest", **kwargs}
    with pytest.raises(ValueError, match=error):
        simulate_capture([0, 1], **args)


arrival_lists = st.lists(st.integers(0, 10**9), max_size=60).map(sorted)


@settings(max_examples=150, deadline=None)
@given(
    arrivals=arrival_lists,
    capacity=st.integers(1, 5),
    policy=st.sampled_from(["block", "drop_oldest"]),
    max_age=st.one_of(st.none(), st.integers(0, 10**8)),
)
def test_a_free_pipeline_is_lossless(
    arrivals: list[int], capacity: int, policy: Any, max_age: int | None
) -> None:
    assert set(simulate_capture(arrivals, 0, capacity, policy, max_age)) <= {"emit"}


@settings(max_examples=150, deadline=None)
@given(
    arrivals=arrival_lists,
    cost=st.integers(1, 3 * 10**8),
    capacity=st.integers(1, 5),
)
def test_capture_model_invariants(arrivals: list[int], cost: int, capacity: int) -> None:
    """Block without a budget loses nothing; drop_oldest takes at most one frame per
    ``cost`` up to the last arrival plus what the buffer holds then; the first frame
    is always taken; the model is a pure function."""
    assert set(simulate_capture(arrivals, cost, capacity, "block")) <= {"emit"}
    got = simulate_capture(arrivals, cost, capacity, "drop_oldest")
    assert got == simulate_capture(arrivals, cost, capacity, "drop_oldest")
    assert len(got) == len(arrivals)
    if arrivals:
        assert got[0] == "emit"
        span = arrivals[-1] - arrivals[0]
        assert got.count("emit") <= span // cost + 1 + capacity
        assert set(got) <= {"emit", "buffer_drop"}


# -- clips ----------------------------------------------------------------------------
def test_recorded_file_replays_the_same_pixels_seq_and_times(video: Path, tmp_path: Path) -> None:
    """Recording remuxes without re-encoding: the clip's frames are the file's frames
    (B-frames included), rowed in order with their presentation times."""
    result = record(str(video), tmp_path / "clip")
    assert (result.frames, result.ended) == (30, "end")
    clip = load_clip(tmp_path / "clip")
    m = clip.manifest
    assert m["complete"] and m["source_kind"] == "file" and m["arrival_clock"] == "pts"
    assert (m["codec"], m["width_px"], m["height_px"], m["fps"]) == ("h264", 64, 48, 10.0)
    assert m["frame_count"] == 30 and m["container"] == "matroska"
    rows = clip.frame_rows
    assert [r.seq for r in rows] == list(range(30))
    assert [r.pts_ns for r in rows] == [i * 100 * MS for i in range(30)]
    assert [r.arrival_ns for r in rows] == [r.pts_ns for r in rows]
    replay, original = ReplaySource(tmp_path / "clip", "a"), VideoFileSource(video, "a")
    info = replay.open()
    original.open()
    assert (info.fps, info.width_px, info.height_px, info.frame_count) == (10.0, 64, 48, 30)
    got, want = read_all(replay), read_all(original)
    assert len(got) == len(want) == 30
    for g, w in zip(got, want, strict=True):
        assert isinstance(g, Frame) and isinstance(w, Frame)
        assert (g.seq, g.pts_ns) == (w.seq, w.pts_ns)
        assert np.array_equal(g.image, w.image)
    assert got[5].wall_ns == rows[5].wall_ns > 0


def test_cli_record_of_a_file_and_bad_arguments(video: Path, tmp_path: Path) -> None:
    assert streamer_main(["record", str(video), "--frames", "5", "--out", str(tmp_path / "c")]) == 0
    assert len(load_clip(tmp_path / "c").frame_rows) == 5
    # A folder that already holds a clip is refused; bad limits are usage errors.
    assert streamer_main(["record", str(video), "--out", str(tmp_path / "c")]) == 1
    assert streamer_main(["record", str(video), "--duration", "0", "--out", "x"]) == 2
    assert streamer_main(["record", str(tmp_path / "nope.mp4"), "--out", "y"]) == 1


def _two_segment_clip(video: Path, folder: Path) -> None:
    """Segment 0: the video's first 10 frames; a gap of 5; segment 1: 10 frames."""
    writer = ClipWriter(folder, source_uri="rtsp://***@cam/x", source_kind="rtsp")
    seq = 0
    for segment in range(2):
        if segment == 1:
            writer.add_gap(seq, 5, "the server ended the stream")
            seq += 5
        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            writer.start_segment(stream, 10.0)
            n = 0
            for packet in container.demux(stream):
                if n >= 10:
                    break
                if packet.size and not writer.accept(packet):
                    continue
                for _ in packet.decode():
                    if n < 10:
                        writer.add_frame(seq, seq * 100 * MS, (seq * 100 + 7) * MS, 10**18 + seq)
                        seq += 1
                        n += 1
    writer.close()


def test_segments_and_gaps_replay_as_stream_gaps(video: Path, tmp_path: Path) -> None:
    """A reconnect's gap row comes back as a StreamGap before the next segment's first
    frame, whose seq is advanced past it; times come from the rows."""
    _two_segment_clip(video, tmp_path / "clip")
    clip = load_clip(tmp_path / "clip")
    assert [p.name for p in clip.segments] == ["segment-000.mkv", "segment-001.mkv"]
    assert clip.manifest["gaps"] == 1 and clip.manifest["missing_frames"] == 5
    src = ReplaySource(tmp_path / "clip", "cam")
    assert src.open().frame_count == 20
    items = read_all(src)
    gap_at = next(i for i, x in enumerate(items) if isinstance(x, StreamGap))
    assert gap_at == 10 and items[10] == StreamGap("cam", 5)
    frames = [x for x in items if isinstance(x, Frame)]
    assert [f.seq for f in frames] == [*range(10), *range(15, 25)]
    assert frames[10].pts_ns == 1500 * MS and frames[10].wall_ns == 10**18 + 15
    # Frame 10 of the replay is the segment's first frame: the video's first frame.
    with av.open(str(video)) as container:
        first = next(container.decode(video=0)).to_ndarray(format="bgr24")
    assert np.array_equal(frames[10].image, first)
    assert src.replay_stats.gaps == 1 and src.replay_stats.missing_frames == 5
    limited = ReplaySource(tmp_path / "clip", "cam", max_frames=12)
    limited.open()
    assert [getattr(x, "seq", "gap") for x in read_all(limited)] == [*range(10), "gap", 15, 16]


def test_killed_recording_rows_past_the_last_packet_are_ignored(
    video: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "clip"
    record(str(video), folder)  # 30 frames, 30 packets
    manifest = json.loads((folder / "clip.json").read_text())
    manifest["complete"] = False  # as if killed: rows for frames whose cluster was lost
    (folder / "clip.json").write_text(json.dumps(manifest))
    with (folder / "frames.jsonl").open("a") as f:
        for seq in (30, 31):
            row = {"kind": "frame", "seq": seq, "segment": 0, "pts_ns": 0, "arrival_ns": 0}
            f.write(json.dumps({**row, "wall_ns": 0}) + "\n")
        f.write('{"kind": "frame", "seq": 32, "seg')  # cut short by the kill
    assert len(load_clip(folder).frame_rows) == 32
    src = ReplaySource(folder)
    assert src.open().frame_count == 30
    assert [f.seq for f in read_all(src)] == list(range(30))  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"version": 2}, "clip format version 2"),
        ({"format": "other"}, "is not 'streamer.clip'"),
        ({"segments": []}, "segment 0, which is missing"),
    ],
)
def test_bad_clips_are_reported(
    video: Path, tmp_path: Path, change: dict[str, Any], error: str
) -> None:
    folder = tmp_path / "clip"
    record(str(video), folder, max_frames=3)
    manifest = json.loads((folder / "clip.json").read_text())
    (folder / "clip.json").write_text(json.dumps({**manifest, **change}))
    with pytest.raises(SourceError, match=error):
        ReplaySource(folder).open()


def test_virtual_clock_drops_by_the_model_and_realtime_paces(video: Path, tmp_path: Path) -> None:
    """A plain video arrives at its nominal fps: a 250 ms/frame model at 10 fps takes
    the frames the model says; on the real-time clock at speed 5, 10 frames 100 ms
    apart take about 180 ms and are all emitted."""
    lossy = ReplaySource(video, virtual_cost_ms=250, buffer_capacity=1)
    decisions = simulate_capture([i * 100 * MS for i in range(30)], 250 * MS, 1, "drop_oldest")
    emitted = [i for i, d in enumerate(decisions) if d == "emit"]
    assert lossy.open().frame_count == lossy.replay_stats.emitted == len(emitted) == 13
    assert lossy.replay_stats.buffer_drops == 17
    assert [f.seq for f in read_all(lossy)] == emitted  # type: ignore[union-attr]
    fast = ReplaySource(video, clock="realtime", speed=5.0, max_frames=10)
    fast.open()
    t0 = time.monotonic()
    frames = read_all(fast)
    elapsed = time.monotonic() - t0
    assert len(frames) == 10 and 0.17 <= elapsed < 1.0
    caps = [f.capture_ns for f in frames]  # type: ignore[union-attr]
    assert [b - a for a, b in itertools.pairwise(caps)] == [20 * MS] * 9


def test_realtime_wait_honours_the_stop_event(video: Path) -> None:
    src = ReplaySource(video, clock="realtime", speed=0.05)  # a frame every 2 s
    stop = threading.Event()
    src.bind_stop(stop)
    src.open()
    assert isinstance(src.read(), Frame)
    threading.Timer(0.2, stop.set).start()
    t0 = time.monotonic()
    assert src.read() is None
    assert time.monotonic() - t0 < 1.0
    src.close()


# -- config and build -----------------------------------------------------------------
def _pipeline(tmp_path: Path, source: str, queue: str = "") -> Path:
    p = tmp_path / "p.yaml"
    p.write_text(
        f"""
name: demo
sources:
  - {source}
stages:
  - {{type: detect, model: model.onnx{queue}}}
  - {{type: jsonl}}
"""
    )
    return p


@pytest.mark.parametrize(
    ("source", "error"),
    [
        (
            "{type: replay, path: clip, speed: 2.0}",
            "sources[0]: speed needs clock: realtime",
        ),
        (
            "{type: replay, path: clip, clock: realtime, virtual_cost_ms: 40}",
            "sources[0]: virtual_cost_ms needs clock: virtual",
        ),
        ("{type: replay, path: clip, virtual_cost_ms: -1}", "sources[0].virtual_cost_ms"),
        ("{type: replay, path: clip, clock: fast}", "sources[0].clock"),
        ("{type: rtsp, url: 'rtsp://h/x', record: {pth: x}}", "sources[0].record.pth"),
        (
            "{type: rtsp, url: 'rtsp://h/x', record: {path: 'c-{cam}'}}",
            "sources[0].record: path: unknown placeholder 'cam'",
        ),
    ],
)
def test_replay_and_record_config_errors_name_the_yaml_path(
    tmp_path: Path, source: str, error: str
) -> None:
    with pytest.raises(ConfigError) as e:
        load_pipeline(_pipeline(tmp_path, source))
    assert error in str(e.value)


def test_builder_makes_virtual_replay_lossless_and_clock_free(tmp_path: Path) -> None:
    """Virtual replay: block buffer, no runner age budget (the model has them);
    real-time replay keeps a live buffer and the runner's budget; a drop_oldest
    stage queue beside a virtual replay is refused, naming its YAML path."""
    cfg = PipelineConfig.model_validate(
        {
            "name": "d",
            "sources": [
                {"type": "replay", "id": "v", "path": "c", "max_frame_age_ms": 300},
                {
                    "type": "replay",
                    "id": "r",
                    "path": "c",
                    "clock": "realtime",
                    "max_frame_age_ms": 300,
                },
            ],
            "stages": [{"type": "detect", "model": "m.onnx"}, {"type": "jsonl"}],
        }
    )
    buffers = {s.id: EdgeSpec(s.buffer.capacity, s.buffer.policy) for s in cfg.sources}
    ages = {"v": 300.0, "r": 300.0}
    _virtual_replay_lossless(cfg, buffers, ages)
    assert buffers == {"v": EdgeSpec(4, "block"), "r": EdgeSpec(2, "drop_oldest")}
    assert ages == {"r": 300.0}
    virtual = make_source(cfg.sources[0])
    realtime = make_source(cfg.sources[1])
    assert isinstance(virtual, ReplaySource) and virtual.max_frame_age_ms == 300
    assert isinstance(realtime, ReplaySource) and realtime.max_frame_age_ms is None
    dropping = _pipeline(
        tmp_path, "{type: replay, path: c}", ", queue: {capacity: 2, policy: drop_oldest}"
    )
    with pytest.raises(ConfigError, match=r"stages\[0\]\.queue\.policy: drop_oldest"):
        _virtual_replay_lossless(load_pipeline(dropping), {}, {})


def test_rtsp_record_path_is_in_the_run_directory(tmp_path: Path) -> None:
    cfg = load_pipeline(_pipeline(tmp_path, "{type: rtsp, id: cam, url: 'rtsp://h/x', record: {}}"))
    src = make_source(cfg.sources[0], tmp_path / "run")
    assert isinstance(src, RtspSource) and src.record == tmp_path / "run" / "clip-cam"
    assert isinstance(make_source(cfg.sources[0]), RtspSource)
