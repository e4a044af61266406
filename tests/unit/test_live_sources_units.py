"""Pure parts of live sources: backoff, URL redaction, per-source lanes, stale drops,
tracker coasting over holes in ``seq``, and secrets kept out of resolved configs."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import require_data

from streamer.config.loader import dump_resolved, load_pipeline
from streamer.errors import ConfigError
from streamer.pipeline.channel import Channel
from streamer.pipeline.metrics import LatencyStats
from streamer.pipeline.runner import Pipeline
from streamer.pipeline.stage import BaseStage
from streamer.pipeline.stages import TrackStage
from streamer.sources.rtsp import Backoff, RtspSource, redact_url, scrub
from streamer.sources.synthetic import SyntheticSource
from streamer.types import Detections, Frame, Packet, StreamGap, StreamInfo, StreamStart
from trackers.types import TrackerOutput


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("rtsp://admin:secret@10.0.0.5:554/s1", "rtsp://***@10.0.0.5:554/s1"),
        ("rtsp://admin@cam.local/live?x=1", "rtsp://***@cam.local/live?x=1"),
        ("rtsp://10.0.0.5/s1", "rtsp://10.0.0.5/s1"),
        ("rtsp://u:p%40ss@h/p", "rtsp://***@h/p"),
        ("not a url", "not a url"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_scrub_removes_url_and_its_parts() -> None:
    url = "rtsp://admin:s3cret@h:554/x"
    msg = f"Errno 5: '{url}' failed; user admin password s3cret"
    out = scrub(msg, url)
    assert "s3cret" not in out and "admin" not in out and "rtsp://***@h:554/x" in out


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"initial_delay_s": 0}, "initial_delay_s"),
        ({"initial_delay_s": 2, "max_delay_s": 1}, "max_delay_s"),
        ({"factor": 0.5}, "factor"),
        ({"jitter": 1.0}, "jitter"),
        ({"max_attempts": 0}, "max_attempts"),
    ],
)
def test_backoff_validates(kwargs: dict, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        Backoff(**kwargs)


def test_backoff_grows_exponentially_caps_and_jitters_within_bounds() -> None:
    b = Backoff(initial_delay_s=0.5, max_delay_s=4.0, factor=2.0, jitter=0.2)
    rng = random.Random(7)
    for attempt, base in enumerate([0.5, 1.0, 2.0, 4.0, 4.0, 4.0]):
        d = b.delay_s(attempt, rng)
        assert base * 0.8 <= d <= base * 1.2
    no_jitter = Backoff(0.5, 4.0, jitter=0.0)
    assert [no_jitter.delay_s(k, rng) for k in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    # Jitter spreads cameras that failed together.
    assert len({round(b.delay_s(3, rng), 6) for _ in range(20)}) > 10


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"url": "http://cam/x"}, "rtsp://"),
        ({"url": "rtsp://cam/x", "transport": "sctp"}, "transport"),
        ({"url": "rtsp://cam/x", "read_timeout_s": 0}, "timeouts"),
    ],
)
def test_rtsp_source_validates_arguments(kwargs: dict, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        RtspSource(**kwargs)


def test_rtsp_repr_and_uri_hide_credentials() -> None:
    src = RtspSource("rtsp://op:Secret-99@h/x", "cam")
    assert "Secret-99" not in repr(src) and "Secret-99" not in src.uri


def _packet(source_id: str, seq: int, capture_ns: int | None = None) -> Packet:
    image = np.zeros((2, 2, 3), np.uint8)
    now = time.monotonic_ns() if capture_ns is None else capture_ns
    return Packet(Frame(source_id, seq, seq, now, image))


def test_lanes_give_each_source_its_own_capacity_and_policy() -> None:
    ch = Channel("src", 4, lanes={"cam": (2, "drop_oldest"), "file": (3, "block")})
    assert ch.capacity == 5
    stop = threading.Event()
    for seq in range(6):
        assert ch.put(_packet("cam", seq), stop)
    for seq in range(3):
        assert ch.put(_packet("file", seq), stop)
    # The file's lane is full: a fourth put waits (and gives up on stop) even though
    # the camera keeps dropping its own oldest frames.
    stop.set()
    assert not ch.put(_packet("file", 3), stop, poll_s=0.01)
    stats = ch.stats()
    assert stats.drops == {"cam": 4} and stats.depth == 5
    taken = [ch.get(0.1) for _ in range(5)]
    got = [(p.source_id, p.seq) for p in taken if isinstance(p, Packet)]
    assert got == [("cam", 4), ("cam", 5), ("file", 0), ("file", 1), ("file", 2)]


def test_lane_producer_resumes_when_its_items_are_taken() -> None:
    ch = Channel("src", 4, lanes={"a": (1, "block"), "b": (1, "block")})
    stop = threading.Event()
    ch.put(_packet("a", 0), stop)
    ch.put(_packet("b", 0), stop)
    done = threading.Event()

    def producer() -> None:
        ch.put(_packet("a", 1), stop)
        done.set()

    threading.Thread(target=producer, daemon=True).start()
    assert not done.wait(0.2)
    ch.get(0.1)  # takes a's packet: a's lane has room again
    assert done.wait(2.0)


class SlowRecorder(BaseStage):
    def __init__(self, name: str, delay_s: float) -> None:
        self.name = name
        self.delay_s = delay_s
        self.seqs: list[int] = []

    def process(self, packets: list[Packet]) -> list[Packet]:
        time.sleep(self.delay_s)
        self.seqs.extend(p.seq for p in packets)
        return packets


def test_max_frame_age_drops_old_packets_before_a_slow_stage() -> None:
    """Frames older than the budget when a stage takes them are dropped and counted;
    the stage sees the rest in order."""
    first = SlowRecorder("slow", 0.03)
    last = SlowRecorder("last", 0.0)
    pipe = Pipeline(
        [SyntheticSource("cam", frames=40)],
        [first, last],
        max_frame_age_ms={"cam": 50.0},
    )
    result = pipe.run()
    by_stage = {s.name: s.stale_drops.get("cam", 0) for s in result.stage_stats}
    assert by_stage["slow"] > 0 and len(first.seqs) + by_stage["slow"] == 40
    assert len(last.seqs) + by_stage["last"] == len(first.seqs)
    assert first.seqs == sorted(first.seqs) and set(last.seqs) <= set(first.seqs)
    assert result.stale_drops["cam"] == sum(by_stage.values())
    assert result.sources["cam"].frames == 40


class RecordingTracker:
    """A real tracker contract (update -> TrackerOutput) that records frames_elapsed."""

    def __init__(self) -> None:
        self.elapsed: list[int] = []

    def update(self, xyxy, confidence, class_id, frames_elapsed: int = 1) -> TrackerOutput:  # type: ignore[no-untyped-def]
        self.elapsed.append(frames_elapsed)
        n = len(xyxy)
        return TrackerOutput(
            np.asarray(xyxy, np.float32).reshape(n, 4),
            np.asarray(confidence, np.float32),
            np.asarray(class_id, np.int32),
            np.arange(1, n + 1, dtype=np.int64),
            np.arange(n, dtype=np.int32),
        )


def test_track_stage_coasts_over_holes_in_seq_and_gap_events() -> None:
    tracker = RecordingTracker()
    stage = TrackStage(lambda fps: tracker)  # type: ignore[arg-type, return-value]
    stage.on_event(StreamStart(StreamInfo("cam", 25.0, 2, 2)))
    for seq in (0, 1, 4):  # frames 2 and 3 dropped for freshness
        p = _packet("cam", seq)
        p.detections = Detections.empty()
        stage.process([p])
    # A source that announces a gap and skips its seq (RTSP reconnect): counted once.
    stage.on_event(StreamGap("cam", 10))
    p = _packet("cam", 15)
    p.detections = Detections.empty()
    stage.process([p])
    assert tracker.elapsed == [1, 1, 3, 11]


def test_latency_stats_max_and_recent_in_order() -> None:
    lat = LatencyStats(window=4)
    for ms in [5.0, 1.0, 9.0, 2.0, 3.0, 4.0]:
        lat.record(ms)
    assert lat.max_ms == 9.0 and lat.count == 6
    assert lat.recent_ms().tolist() == [9.0, 2.0, 3.0, 4.0]
    assert lat.summary()["max"] == 9.0


RTSP_YAML = """
name: cam
sources:
  - type: rtsp
    id: door
    url: "rtsp://${env:CAM_USER}:${env:CAM_PASS}@10.1.2.3:554/stream1"
  - {type: rtsp, id: yard, url: "rtsp://admin:typed-in-pw@10.1.2.4/s"}
stages:
  - {type: detect, model: model.onnx}
"""


def test_resolved_config_keeps_env_templates_and_hides_typed_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAM_USER", "operator")
    monkeypatch.setenv("CAM_PASS", "Very-Secret-1")
    path = tmp_path / "p.yaml"
    path.write_text(RTSP_YAML)
    cfg = load_pipeline(path)
    assert cfg.sources[0].url == "rtsp://operator:Very-Secret-1@10.1.2.3:554/stream1"
    assert cfg.sources[0].buffer.policy == "drop_oldest"  # live default: freshness
    text = dump_resolved(cfg)
    assert "Very-Secret-1" not in text and "operator" not in text
    assert "rtsp://${env:CAM_USER}:${env:CAM_PASS}@10.1.2.3:554/stream1" in text
    assert "typed-in-pw" not in text and "rtsp://***@10.1.2.4/s" in text


def test_config_error_never_echoes_an_env_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAM_PASS", "Very-Secret-2")
    path = tmp_path / "p.yaml"
    path.write_text(RTSP_YAML.replace("${env:CAM_USER}", "x").replace("rtsp://x", "http://x"))
    with pytest.raises(ConfigError) as err:
        load_pipeline(path)
    assert "sources[0].url" in str(err.value)
    assert "Very-Secret-2" not in str(err.value)


SOURCES_YAML = """
name: live
sources:
  - {type: camera, id: usb0, device: /dev/video0, width_px: 1280, height_px: 720, fps: 30,
     fourcc: MJPG}
  - {type: gstreamer, id: csi0, preset: jetson_csi, preset_args: {sensor_id: 1, fps: 30}}
  - {type: gstreamer, id: dec, preset: jetson_rtsp,
     preset_args: {url: "rtsp://cam/s", codec: h265}}
stages:
  - {type: detect, model: model.onnx}
  - {type: jsonl}
  - {type: zeromq, mode: push, endpoint: "tcp://127.0.0.1:5557"}
  - {type: mqtt, host: broker.local, username: u, password: "${env:MQTT_PASS}"}
"""


def test_camera_gstreamer_and_message_sinks_validate_and_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamer.pipeline.build import make_source
    from streamer.sources.gstreamer import jetson_csi

    monkeypatch.setenv("MQTT_PASS", "Mqtt-Secret-7")
    path = tmp_path / "p.yaml"
    path.write_text(SOURCES_YAML)
    cfg = load_pipeline(path)
    cam, csi, dec = cfg.sources
    assert cam.type == "camera" and cam.buffer.policy == "drop_oldest"
    src = make_source(csi)
    assert src.source_id == "csi0"
    assert src.pipeline == jetson_csi(sensor_id=1, fps=30)  # type: ignore[attr-defined]
    assert "nvv4l2decoder" in make_source(dec).pipeline  # type: ignore[attr-defined]
    text = dump_resolved(cfg)
    assert "Mqtt-Secret-7" not in text and "${env:MQTT_PASS}" in text


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("{type: gstreamer, id: g}", "exactly one of 'pipeline' or 'preset'"),
        ("{type: gstreamer, id: g, pipeline: 'videotestsrc ! fakesink'}", "appsink"),
        (
            "{type: gstreamer, id: g, preset: jetson_csi, preset_args: {flip_method: 9}}",
            "sources[0]: flip_method",
        ),
        ("{type: gstreamer, id: g, preset: nvidia_magic}", "sources[0].preset"),
        ("{type: camera, id: c, fourcc: MJPEG}", "sources[0].fourcc"),
        ("{type: rtsp, id: r, url: 'rtsp://h/s', transport: quic}", "sources[0].transport"),
        (
            "{type: rtsp, id: r, url: 'rtsp://h/s', reconnect: {initial_delay_s: 5, "
            "max_delay_s: 1}}",
            "max_delay_s",
        ),
    ],
)
def test_live_source_errors_name_the_yaml_path(tmp_path: Path, source: str, error: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        f"name: x\nsources:\n  - {source}\nstages:\n  - {{type: detect, model: m.onnx}}\n"
    )
    with pytest.raises(ConfigError) as err:
        load_pipeline(path)
    assert error in str(err.value)


def test_builder_gives_each_source_its_own_lane(tmp_path: Path) -> None:
    """The builder gives each live source its own drop_oldest lane."""
    from streamer.config.schema import PipelineConfig
    from streamer.pipeline.build import build_pipeline

    cfg = PipelineConfig.model_validate(
        {
            "name": "x",
            "sources": [
                {"type": "rtsp", "id": "cam", "url": "rtsp://127.0.0.1:9/s"},
                {"type": "video_file", "id": "file", "path": str(tmp_path / "v.mp4")},
            ],
            "stages": [{"type": "detect", "model": str(require_data("models/yolox_nano.onnx"))}],
        }
    )
    pipe = build_pipeline(cfg, tmp_path / "run").pipeline
    lanes = pipe.channels[0]._lanes
    assert lanes == {"cam": (2, "drop_oldest"), "file": (4, "block")}
