"""Resume after a restart: progress files, cutting record files back, appending sinks
that write what the plain sinks write, the skipping sink stage, live archives, tags."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.fleet.resume import (
    AppendingRecordSink,
    FleetSinkStage,
    ProgressFile,
    install_fleet_sinks,
    plan_resume,
    prepare_run_dir,
    progress_path,
    truncate_records,
)
from streamer.pipeline.stages import SinkStage
from streamer.sinks.jsonl import JsonlTracksSink
from streamer.sinks.messages import event_message, frame_message
from streamer.sinks.mot import MotTracksSink
from streamer.sinks.zeromq import ZmqSink
from streamer.types import Frame, Packet, StreamEnd, StreamInfo, Tracks

NAMES = ("person", "car")
INFO = StreamInfo("cam", fps=10.0, width_px=64, height_px=48)


def packet(seq: int, n_tracks: int) -> Packet:
    rng = np.random.default_rng(seq)
    xy = rng.uniform(0, 40, (n_tracks, 2))
    tracks = Tracks(
        xyxy=np.hstack([xy, xy + 5]).astype(np.float32),
        confidence=rng.uniform(0.3, 1, n_tracks).astype(np.float32),
        class_id=np.zeros(n_tracks, np.int32),
        track_id=np.arange(1, n_tracks + 1, dtype=np.int64),
        det_index=np.arange(n_tracks, dtype=np.int32),
    )
    image = np.zeros((48, 64, 3), np.uint8)
    frame = Frame("cam", seq, seq * 100_000_000, 0, image, wall_ns=1_714_564_800_000_000_000)
    return Packet(frame=frame, tracks=tracks)


PACKETS = [packet(i, i % 3) for i in range(12)]  # frames 0, 3, 6, 9 have no tracks


def write_all(sink: object, packets: list[Packet]) -> None:
    sink.open(INFO, NAMES)  # type: ignore[attr-defined]
    for p in packets:
        sink.write(p)  # type: ignore[attr-defined]
    sink.close()  # type: ignore[attr-defined]


@pytest.mark.parametrize(("kind", "plain"), [("jsonl", JsonlTracksSink), ("mot", MotTracksSink)])
def test_appending_sinks_write_exactly_what_the_plain_sinks_write(
    tmp_path: Path, kind: str, plain: type
) -> None:
    write_all(plain(tmp_path / "plain.txt"), PACKETS)
    write_all(AppendingRecordSink(kind, tmp_path / "append.txt", 0), PACKETS)  # type: ignore[arg-type]
    assert (tmp_path / "append.txt").read_bytes() == (tmp_path / "plain.txt").read_bytes()


@pytest.mark.parametrize("kind", ["jsonl", "mot"])
@pytest.mark.parametrize("resume_at", [0, 1, 4, 7, 11, 12])
def test_a_resumed_file_equals_an_uninterrupted_one(
    tmp_path: Path, kind: str, resume_at: int
) -> None:
    whole = tmp_path / "whole.txt"
    write_all(AppendingRecordSink(kind, whole, 0), PACKETS)  # type: ignore[arg-type]
    # The crashed attempt wrote two frames past the resume point and half a record.
    crashed = tmp_path / "crashed.txt"
    write_all(AppendingRecordSink(kind, crashed, 0), PACKETS[: resume_at + 2])  # type: ignore[arg-type]
    with open(crashed, "a") as fh:
        fh.write('{"source_id":"cam","seq":' if kind == "jsonl" else "99,1,2.0")
    sink = AppendingRecordSink(kind, crashed, resume_at)  # type: ignore[arg-type]
    write_all(sink, PACKETS[resume_at:])
    assert crashed.read_bytes() == whole.read_bytes()
    expected_kept = resume_at if kind == "jsonl" else sum(1 for i in range(resume_at) if i % 3)
    assert sink.kept_frames["cam"] == expected_kept


def test_truncate_stops_at_garbage_and_handles_missing_files(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    assert truncate_records(path, "jsonl", 5) == 0
    path.write_text('{"seq":0}\n{"seq":1}\nnot json\n{"seq":2}\n')
    assert truncate_records(path, "jsonl", 5) == 2
    assert path.read_text() == '{"seq":0}\n{"seq":1}\n'


@given(seqs=st.lists(st.integers(0, 10**15), min_size=1, max_size=5))
@settings(max_examples=30, deadline=None)
def test_progress_file_keeps_the_last_value(
    tmp_path_factory: pytest.TempPathFactory, seqs: list[int]
) -> None:
    path = tmp_path_factory.mktemp("p") / "s.progress"
    progress = ProgressFile(path)
    for s in seqs:
        progress.record(s)
    progress.close()
    assert ProgressFile.read(path) == seqs[-1]


def test_progress_file_unreadable_means_start_over(tmp_path: Path) -> None:
    assert ProgressFile.read(tmp_path / "absent") is None
    (tmp_path / "torn").write_bytes(b"00000000000000000012")  # no newline: torn write
    assert ProgressFile.read(tmp_path / "torn") is None


def test_sink_stage_skips_below_its_resume_point_and_records_progress(tmp_path: Path) -> None:
    sink = AppendingRecordSink("jsonl", tmp_path / "t.jsonl", 0)
    progress = ProgressFile(progress_path(tmp_path, "jsonl"))
    stage = FleetSinkStage(SinkStage(sink, NAMES, "jsonl"), skip_below_seq=5, progress=progress)
    from streamer.types import StreamStart

    stage.on_event(StreamStart(INFO))
    out = stage.process(PACKETS[:8])
    stage.on_event(StreamEnd("cam", 8))
    stage.close()
    assert out == PACKETS[:8]  # every packet goes on to later stages
    assert [json.loads(x)["seq"] for x in (tmp_path / "t.jsonl").read_text().splitlines()] == [
        5,
        6,
        7,
    ]
    assert stage.skipped == 5
    assert ProgressFile.read(progress_path(tmp_path, "jsonl")) == 7


def test_plan_and_install_for_a_replayable_camera(tmp_path: Path) -> None:
    types = {
        "detect": "detect",
        "annotated_video": "annotated_video",
        "jsonl": "jsonl",
        "z": "zeromq",
    }
    assert plan_resume(tmp_path, 0, False, types).points == {"jsonl": 0, "z": 0}
    ProgressFile(progress_path(tmp_path, "jsonl")).record(41)
    ProgressFile(progress_path(tmp_path, "z")).record(43)
    plan = plan_resume(tmp_path, 2, False, types)
    assert plan.points == {"jsonl": 42, "z": 44} and plan.resume_seq == 42
    zmq = ZmqSink("tcp://127.0.0.1:1", bind=False)
    stages: list[object] = [
        SinkStage(JsonlTracksSink(tmp_path / "t.jsonl"), NAMES, "jsonl"),
        SinkStage(zmq, NAMES, "z"),
    ]
    install_fleet_sinks(stages, plan, tmp_path, {"camera": "cam", "attempt": 2})
    jsonl_stage, z_stage = stages
    assert isinstance(jsonl_stage, FleetSinkStage) and jsonl_stage.skip_below_seq == 42
    assert isinstance(jsonl_stage.sink, AppendingRecordSink)
    assert isinstance(z_stage, FleetSinkStage) and z_stage.sink is zmq
    assert zmq.tags == {"camera": "cam", "attempt": 2}
    for s in stages:
        s.close()  # type: ignore[attr-defined]
    # Attempt 0 of a new run starts clean.
    assert plan_resume(tmp_path, 0, False, types).points == {"jsonl": 0, "z": 0}
    assert not progress_path(tmp_path, "jsonl").exists()


def test_a_live_camera_restart_archives_the_previous_attempt(tmp_path: Path) -> None:
    (tmp_path / "tracks.jsonl").write_text("old\n")
    (tmp_path / "clip-cam").mkdir()
    assert prepare_run_dir(tmp_path, 0, live=True) is None
    archived = prepare_run_dir(tmp_path, 1, live=True)
    assert archived == tmp_path / "attempt-0"
    assert (archived / "tracks.jsonl").read_text() == "old\n" and (archived / "clip-cam").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["attempt-0"]
    (tmp_path / "tracks.jsonl").write_text("second\n")
    prepare_run_dir(tmp_path, 2, live=True)
    assert (tmp_path / "attempt-1" / "tracks.jsonl").read_text() == "second\n"


def test_messages_carry_tags_only_when_given() -> None:
    p = PACKETS[1]
    assert "tags" not in frame_message(p, NAMES)
    tagged = frame_message(p, NAMES, {"camera": "cam", "node": "n1", "attempt": 1})
    assert list(tagged)[-1] == "tags" and tagged["tags"]["node"] == "n1"
    event = event_message(StreamEnd("cam", 3), wall_ns=1, tags={"camera": "cam"})
    assert event["tags"] == {"camera": "cam"} and "tags" not in event_message(StreamEnd("cam", 3))
