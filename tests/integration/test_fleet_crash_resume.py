"""A camera whose process dies mid-run resumes exactly (in-process engine, no Ray):
YOLOX-nano + ByteTrack on the PETS09 clip, the attempt killed after some frames;
the restarted attempt re-tracks from frame 0 and writes only what was missing, so
tracks.jsonl and the MOT file equal an uninterrupted run's, the annotated video has
every frame, and ZeroMQ consumers get every frame (at most one twice) with tags."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import av
import pytest
import yaml
import zmq
from conftest import require_data

from streamer.cli import run_pipeline
from streamer.fleet.loader import load_fleet
from streamer.fleet.schema import RestartConfig
from streamer.fleet.supervisor import FleetSupervisor, InProcessEngine
from streamer.sinks.messages import decode_message

FRAMES = 80
CRASH_AFTER = 30

pytestmark = pytest.mark.slow


def records(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        rec.pop("timestamp")
        rec.pop("wall_time_s")
        out.append(rec)
    return out


@pytest.fixture(scope="module")
def fleet_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    folder = tmp_path_factory.mktemp("fleet")
    video = require_data("videos/pets09_s2l1_480x360.mp4")
    require_data("models/yolox_nano.onnx")
    with zmq.Context() as ctx, ctx.socket(zmq.PULL) as probe:
        port = probe.bind_to_random_port("tcp://127.0.0.1")
    pipeline = {
        "name": "people",
        "sources": [{"type": "video_file", "id": "x", "path": str(video)}],
        "stages": [
            {
                "type": "detect",
                "preset": "yolox_nano",
                "classes": ["person"],
                "intra_op_threads": 1,
            },
            {"type": "track", "preset": "bytetrack"},
            {"type": "annotated_video", "preset": "ultrafast"},
            {"type": "jsonl"},
            {"type": "mot"},
            {
                "type": "zeromq",
                "mode": "push",
                "bind": False,
                "endpoint": f"tcp://127.0.0.1:{port}",
                "send_timeout_ms": 2000,
            },
        ],
    }
    (folder / "people.yaml").write_text(yaml.safe_dump(pipeline))
    fleet = {
        "name": "resume",
        "pipeline": "people.yaml",
        "cameras": [{"id": "cam", "source": {"max_frames": FRAMES}}],
    }
    (folder / "fleet.yaml").write_text(yaml.safe_dump(fleet))
    return folder / "fleet.yaml", port


def test_a_crashed_camera_resumes_without_loss_or_duplicates(
    fleet_file: tuple[Path, int], tmp_path: Path
) -> None:
    path, port = fleet_file
    fleet = load_fleet(path)
    spec = fleet.cameras[0]
    # The same camera alone, without the message sink: the reference outputs.
    alone = spec.config.model_copy(
        update={"stages": [s for s in spec.config.stages if s.type != "zeromq"]}
    )
    result = run_pipeline(alone, tmp_path / "alone", show_progress=False)
    assert result.ok, result.errors

    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.bind(f"tcp://127.0.0.1:{port}")
    messages: list[dict[str, Any]] = []
    receiving = threading.Event()
    receiving.set()

    def receive() -> None:
        while receiving.is_set():
            if pull.poll(100):
                _topic, payload = pull.recv_multipart()
                messages.append(decode_message(payload))

    receiver = threading.Thread(target=receive)
    receiver.start()
    engine = InProcessEngine()
    restart = RestartConfig.model_validate({"initial_delay_s": 0.05, "jitter": 0.0})
    events: list[str] = []
    sup = FleetSupervisor(
        "resume", engine, tmp_path / "fleet", restart, poll_s=0.05, on_event=events.append
    )
    runner = threading.Thread(target=sup.run, args=(fleet.cameras,))
    runner.start()
    try:
        deadline = time.monotonic() + 60
        while (sup.camera("cam") or {}).get("frames", 0) < CRASH_AFTER:
            assert time.monotonic() < deadline, events
            time.sleep(0.02)
        engine.crash(sup.handle("cam"))
        runner.join(120)
        assert not runner.is_alive()
    finally:
        sup.request_stop()
        runner.join(10)
        time.sleep(0.3)  # the last messages in flight
        receiving.clear()
        receiver.join(5)
        pull.close(linger=0)
        ctx.term()

    row = sup.camera("cam")
    assert row is not None and row["state"] == "finished", events
    assert [h["ended"] for h in row["history"]] == ["died", "finished"]
    resumed_from = row["history"][1]["resumed_from"]
    assert CRASH_AFTER <= resumed_from < FRAMES, row["history"]

    run = tmp_path / "fleet" / "cam"
    got, want = records(run / "tracks.jsonl"), records(tmp_path / "alone" / "tracks.jsonl")
    assert [r["seq"] for r in got] == list(range(FRAMES))
    assert got == want
    assert (run / "tracks_mot.txt").read_bytes() == (
        tmp_path / "alone" / "tracks_mot.txt"
    ).read_bytes()
    with av.open(str(run / "annotated.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == FRAMES  # rewritten whole

    frames = [m for m in messages if m["schema"] == "streamer.frame/1"]
    seqs = [m["seq"] for m in frames]
    assert set(seqs) == set(range(FRAMES))
    assert len(seqs) - FRAMES <= 1  # at most the one frame sent as the process died
    assert {m["tags"]["camera"] for m in frames} == {"cam"}
    assert {m["tags"]["attempt"] for m in frames} == {0, 1}
    assert all(m["tags"]["attempt"] == 1 for m in frames if m["seq"] > resumed_from)
    by_seq = {m["seq"]: m for m in frames}
    assert [by_seq[r["seq"]]["tracks"] for r in got] == [r["tracks"] for r in got]
