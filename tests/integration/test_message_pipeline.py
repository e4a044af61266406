"""A real pipeline run publishes every frame's results over ZeroMQ PUSH and MQTT.

The pipeline is loaded from YAML (so the config wiring is tested too): PETS09 through
YOLOX-nano and ByteTrack into a ``zeromq`` sink (PUSH, connecting to the test's PULL
socket) and an ``mqtt`` sink (QoS 1, to a real mosquitto broker on loopback).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

pytest.importorskip("zmq", reason="pyzmq not installed")
import zmq
from brokers import Mosquitto, Subscriber, free_port
from conftest import require_data

from streamer.config.loader import load_pipeline
from streamer.pipeline.build import build_pipeline
from streamer.sinks.messages import EVENT_SCHEMA, FRAME_SCHEMA

N_FRAMES = 40


def test_subscribers_receive_every_frame_over_zeromq_push_and_mqtt(tmp_path: Path) -> None:
    video = require_data("videos/pets09_s2l1_480x360.mp4")
    broker = Mosquitto(tmp_path, free_port()).start()
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    zmq_port = pull.bind_to_random_port("tcp://127.0.0.1")
    sub = Subscriber(broker.port, topic="pets/#", qos=1)
    try:
        yaml_path = tmp_path / "p.yaml"
        yaml_path.write_text(
            yaml.safe_dump(
                {
                    "name": "messages",
                    "sources": [
                        {
                            "type": "video_file",
                            "id": "pets09",
                            "path": str(video),
                            "max_frames": N_FRAMES,
                        }
                    ],
                    "stages": [
                        {"type": "detect", "preset": "yolox_nano", "classes": ["person"]},
                        {"type": "track", "preset": "bytetrack"},
                        {"type": "jsonl"},
                        {
                            "type": "zeromq",
                            "mode": "push",
                            "bind": False,
                            "endpoint": f"tcp://127.0.0.1:{zmq_port}",
                            "send_timeout_ms": 2000,
                        },
                        {
                            "type": "mqtt",
                            "port": broker.port,
                            "topic_prefix": "pets",
                            "qos": 1,
                            "flush_timeout_s": 5.0,
                        },
                    ],
                }
            )
        )
        cfg = load_pipeline(yaml_path)
        result = build_pipeline(cfg, tmp_path / "run").pipeline.run()
        assert result.ok, result.errors

        # ZeroMQ PUSH: start event, every frame in order, end event; nothing dropped.
        got = []
        deadline = time.monotonic() + 10
        while len(got) < N_FRAMES + 2 and time.monotonic() < deadline:
            if pull.poll(200):
                _topic, payload = pull.recv_multipart()
                got.append(json.loads(payload))
        assert got[0]["schema"] == EVENT_SCHEMA and got[0]["type"] == "stream_start"
        assert got[-1]["schema"] == EVENT_SCHEMA and got[-1]["type"] == "stream_end"
        frames = [m for m in got if m["schema"] == FRAME_SCHEMA]
        assert [m["seq"] for m in frames] == list(range(N_FRAMES))
        # The same content as the JSON-lines file of the same run.
        jsonl = [
            json.loads(x) for x in (tmp_path / "run" / "tracks.jsonl").read_text().splitlines()
        ]
        assert [m["tracks"] for m in frames] == [r["tracks"] for r in jsonl]
        assert sum(len(m["tracks"]) for m in frames) > N_FRAMES  # people were tracked

        # MQTT QoS 1: every frame on pets/pets09/frames, events on pets/pets09/events.
        deadline = time.monotonic() + 10
        while len(sub.received("/frames")) < N_FRAMES and time.monotonic() < deadline:
            time.sleep(0.05)
        mqtt_frames = sub.received("/frames")
        assert [m["seq"] for m in mqtt_frames] == list(range(N_FRAMES))
        assert [m["tracks"] for m in mqtt_frames] == [r["tracks"] for r in jsonl]
        types = [m["type"] for m in sub.received("/events")]
        assert types[0] == "stream_start" and types[-1] == "stream_end"
    finally:
        sub.close()
        pull.close(linger=0)
        ctx.term()
        broker.kill()
