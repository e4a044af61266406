"""Metrics, health, preview slots and the monitoring HTTP server, on real pipelines of
synthetic sources and real loopback sockets (no model needed)."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from streamer.cli import main, run_pipeline
from streamer.config.loader import load_pipeline
from streamer.config.schema import PipelineConfig
from streamer.errors import ConfigError, StreamerError
from streamer.pipeline.health import check_health
from streamer.pipeline.metrics import LatencyStats
from streamer.pipeline.prometheus import make_registry
from streamer.pipeline.runner import EdgeSpec, Pipeline
from streamer.pipeline.server import MonitorServer, RateTracker, render_page
from streamer.pipeline.stage import BaseStage
from streamer.sinks.preview import PreviewHub, PreviewSink
from streamer.sources.synthetic import SyntheticSource
from streamer.types import Frame, Packet, StreamInfo, Tracks


class Pass(BaseStage):
    def __init__(self, name: str, fail_at: int | None = None) -> None:
        self.name = name
        self.fail_at = fail_at

    def process(self, packets: list[Packet]) -> list[Packet]:
        for p in packets:
            if p.seq == self.fail_at:
                raise ValueError("bad value in frame")
        return packets


class StallingSource:
    """``frames`` frames, then silence until ``release`` is set (a camera that froze)."""

    def __init__(self, source_id: str, frames: int) -> None:
        self.source_id = source_id
        self.frames = frames
        self.release = threading.Event()
        self._seq = 0
        self._stop = threading.Event()

    def bind_stop(self, stop: threading.Event) -> None:
        self._stop = stop

    def open(self) -> StreamInfo:
        return StreamInfo(self.source_id, 25.0, 32, 24)

    def read(self) -> Frame | None:
        if self._seq >= self.frames:
            while not (self.release.is_set() or self._stop.is_set()):
                self.release.wait(0.05)
            return None
        self._seq += 1
        image = np.zeros((24, 32, 3), np.uint8)
        return Frame(self.source_id, self._seq - 1, 0, time.monotonic_ns(), image)

    def close(self) -> None:
        pass


def samples(registry_text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(registry_text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(
    m: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return m[(name, tuple(sorted(labels.items())))]


def get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.headers["Content-Type"], r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read()


def strict_json(body: bytes) -> Any:
    def no_constants(name: str) -> None:
        raise AssertionError(f"{name} is not JSON")

    return json.loads(body, parse_constant=no_constants)


# -- LatencyStats histogram ----------------------------------------------------------
@pytest.mark.parametrize(
    ("samples_ms", "cumulative"),
    [
        ([], [0, 0, 0, 0]),
        ([0.2, 0.5], [2, 2, 2, 2]),  # a sample equal to a bound is in its bucket (le)
        ([0.2, 0.5, 0.7, 3.0, 20_000.0], [2, 3, 4, 5]),
        ([7.0, 7.0, 7.0], [0, 0, 0, 3]),
    ],
)
def test_latency_histogram_is_cumulative_with_le_buckets(
    samples_ms: list[float], cumulative: list[int]
) -> None:
    stats = LatencyStats(window=2, buckets_ms=(0.5, 1.0, 5.0))
    for ms in samples_ms:
        stats.record(ms)
    bounds, counts, sum_ms, count = stats.histogram()
    assert bounds == (0.5, 1.0, 5.0)
    assert counts == cumulative
    assert count == len(samples_ms) and sum_ms == pytest.approx(sum(samples_ms))


@pytest.mark.parametrize("buckets", [(), (1.0, 1.0), (5.0, 1.0)])
def test_latency_histogram_rejects_bad_buckets(buckets: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="buckets_ms"):
        LatencyStats(buckets_ms=buckets)


# -- Prometheus collector ------------------------------------------------------------
def test_metrics_equal_the_runners_counters_and_registries_are_per_pipeline() -> None:
    a, b = SyntheticSource("a", frames=30), SyntheticSource("b", frames=20)
    pipe = Pipeline(
        [a, b],
        [Pass("first"), Pass("last")],
        [EdgeSpec(2), EdgeSpec(2)],
        source_buffers={"a": EdgeSpec(3, "block")},
    )
    other = Pipeline([SyntheticSource("a", frames=5)], [Pass("only")])
    registry, other_registry = make_registry(pipe, "p1"), make_registry(other, "p2")
    before = samples(generate_latest(registry).decode())
    assert value(before, "streamer_source_frames_total", source="a") == 0
    assert value(before, "streamer_pipeline_healthy") == 1  # not started: nothing wrong
    result = pipe.run()
    other.run()
    assert result.ok, result.errors
    m = samples(generate_latest(registry).decode())
    assert value(m, "streamer_pipeline_info", pipeline="p1") == 1
    assert value(m, "streamer_pipeline_frames_out_total") == result.packets_out == 50
    for sid, n in (("a", 30), ("b", 20)):
        assert value(m, "streamer_source_frames_total", source=sid) == n
        assert value(m, "streamer_source_frames_out_total", source=sid) == n
        assert value(m, "streamer_source_dropped_frames_total", source=sid, reason="queue") == 0
        assert value(m, "streamer_source_dropped_frames_total", source=sid, reason="stale") == 0
        assert value(m, "streamer_source_reconnects_total", source=sid) == 0
        for stage in ("first", "last"):
            assert value(m, "streamer_stage_frames_total", stage=stage, source=sid) == n
        e2e = result.sources[sid].latency
        assert value(m, "streamer_end_to_end_latency_seconds_count", source=sid) == n
        assert value(m, "streamer_end_to_end_latency_seconds_sum", source=sid) == pytest.approx(
            e2e.mean_ms * n / 1000.0
        )
        assert value(m, "streamer_source_up", source=sid) == 1  # ended normally
    for st in result.stage_stats:
        assert value(m, "streamer_stage_batches_total", stage=st.name) == st.batches
        assert value(m, "streamer_stage_latency_seconds_count", stage=st.name) == st.batches
        inf = value(m, "streamer_stage_latency_seconds_bucket", stage=st.name, le="+Inf")
        assert inf == st.batches
        assert value(m, "streamer_queue_depth", stage=st.name) == 0
    assert value(m, "streamer_queue_capacity", stage="first", policy="per_source") == 5
    assert value(m, "streamer_source_buffer_capacity", source="a", policy="block") == 3
    assert value(m, "streamer_source_buffer_capacity", source="b", policy="block") == 2
    assert value(m, "streamer_queue_capacity", stage="last", policy="block") == 2
    assert any(k[0].startswith("process_") for k in m)  # the process collector
    o = samples(generate_latest(other_registry).decode())
    assert value(o, "streamer_pipeline_info", pipeline="p2") == 1
    assert value(o, "streamer_source_frames_total", source="a") == 5
    assert ("streamer_source_frames_total", (("source", "b"),)) not in o


class Slow(BaseStage):
    def __init__(self, name: str, delay_s: float) -> None:
        self.name = name
        self.delay_s = delay_s

    def process(self, packets: list[Packet]) -> list[Packet]:
        time.sleep(self.delay_s)
        return packets


def test_drop_and_stale_metrics_equal_the_runners_counts() -> None:
    """A source far faster than a 2 ms stage behind a 1-frame ``drop_oldest`` buffer,
    and a second one with a 1 ms freshness budget: every frame read is either out,
    dropped by the queue, or dropped as stale, and the metrics say how many."""
    fast = SyntheticSource("fast", frames=200)
    old = SyntheticSource("old", frames=50)
    pipe = Pipeline(
        [fast, old],
        [Slow("slow", 0.002), Pass("last")],
        source_buffers={"fast": EdgeSpec(1, "drop_oldest")},
        max_frame_age_ms={"old": 1.0},
    )
    result = pipe.run()
    assert result.ok, result.errors
    m = samples(generate_latest(make_registry(pipe)).decode())
    queue_drops = result.channel_stats[0].drops.get("fast", 0)
    stale = result.stale_drops.get("old", 0)
    assert queue_drops > 0 and stale > 0
    assert value(m, "streamer_queue_drops_total", stage="slow", source="fast") == queue_drops
    assert value(m, "streamer_source_dropped_frames_total", source="fast", reason="queue") == (
        queue_drops
    )
    assert value(m, "streamer_source_dropped_frames_total", source="old", reason="stale") == stale
    stage_stale = sum(
        value(m, "streamer_stage_stale_drops_total", stage=s.name, source="old")
        for s in result.stage_stats
        if "old" in s.stale_drops
    )
    assert stage_stale == stale
    for sid, dropped in (("fast", queue_drops), ("old", stale)):
        out = value(m, "streamer_source_frames_out_total", source=sid)
        assert out + dropped == value(m, "streamer_source_frames_total", source=sid)


# -- health --------------------------------------------------------------------------
def test_health_judges_a_stalled_source_by_its_last_frame() -> None:
    cam = StallingSource("cam", frames=5)
    pipe = Pipeline([cam], [Pass("stage")])
    before = check_health(pipe, 1.0)
    assert before.healthy and before.sources["cam"].state == "starting"
    thread = threading.Thread(target=pipe.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while pipe.source_stats["cam"].frames < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    last = pipe.source_stats["cam"].last_frame_ns
    assert last is not None
    fresh = check_health(pipe, 1.0, now_ns=last + 500_000_000)
    assert fresh.healthy and fresh.sources["cam"].state == "up"
    assert fresh.sources["cam"].last_frame_age_s == pytest.approx(0.5)
    stale = check_health(pipe, 1.0, now_ns=last + 2_345_000_000)
    assert not stale.healthy and stale.sources["cam"].state == "down"
    assert stale.reasons == ["source 'cam' down for 2.3 s (> 1 s)"]
    body = stale.to_dict()
    assert body["status"] == "unhealthy" and body["reasons"] == stale.reasons
    cam.release.set()
    thread.join(10)
    done = check_health(pipe, 1.0, now_ns=last + 60_000_000_000)
    assert done.healthy and done.sources["cam"].state == "ended"
    assert "reasons" not in done.to_dict()


def test_health_counts_a_source_without_any_frame_from_the_start() -> None:
    cam = StallingSource("cam", frames=0)
    pipe = Pipeline([cam], [Pass("stage")])
    thread = threading.Thread(target=pipe.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while pipe.started_ns is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pipe.started_ns is not None
    report = check_health(pipe, 10.0, now_ns=pipe.started_ns + 12_300_000_000)
    assert report.reasons == ["source 'cam' down for 12.3 s (> 10 s)"]
    assert report.sources["cam"].last_frame_age_s is None
    cam.release.set()
    thread.join(10)


@pytest.mark.parametrize(
    ("sources", "stages", "reason"),
    [
        (
            [SyntheticSource("cam", 20, fail_at=3)],
            [Pass("s")],
            "source 'cam' failed: source 'cam': synthetic failure at frame 3",
        ),
        (
            [SyntheticSource("cam", 20)],
            [Pass("boom", fail_at=3)],
            "pipeline failed: stage 'boom', source 'cam', frame 3: ValueError: bad value in frame",
        ),
    ],
)
def test_health_reports_failures(sources: list[Any], stages: list[Any], reason: str) -> None:
    pipe = Pipeline(sources, stages)
    pipe.run()
    report = check_health(pipe, 10.0)
    assert not report.healthy and report.reasons == [reason]


def test_health_rejects_a_bad_threshold() -> None:
    with pytest.raises(ValueError, match="source_down_s"):
        check_health(Pipeline([SyntheticSource("a")], [Pass("s")]), 0.0)


# -- preview slots and sink ----------------------------------------------------------
def test_hub_gives_readers_only_the_newest_frame_and_never_blocks_the_writer() -> None:
    hub = PreviewHub()
    hub.add_source("cam")
    assert hub.wait_newer("cam", 0, timeout_s=0.05) is None  # nothing yet: times out
    t0 = time.perf_counter()
    for seq in range(1000):  # nobody reads: publishing still never waits
        hub.publish("cam", seq, b"jpeg%d" % seq)
    assert time.perf_counter() - t0 < 1.0
    newest = hub.wait_newer("cam", 0, timeout_s=1.0)
    assert newest is not None and (newest.version, newest.seq) == (1000, 999)
    assert hub.wait_newer("cam", newest.version, timeout_s=0.05) is None
    got: list[Any] = []
    reader = threading.Thread(target=lambda: got.append(hub.wait_newer("cam", 1000, 10.0)))
    reader.start()
    hub.publish("cam", 1000, b"later")
    reader.join(5)
    assert got[0].jpeg == b"later"
    waiting = threading.Thread(target=lambda: got.append(hub.wait_newer("cam", 1001, 30.0)))
    waiting.start()
    t0 = time.monotonic()
    hub.close()  # wakes the waiting reader at once
    waiting.join(5)
    assert got[1] is None and time.monotonic() - t0 < 1.0


def test_hub_counts_viewers() -> None:
    hub = PreviewHub()
    assert not hub.watched("cam")
    with hub.viewer("cam"), hub.viewer("cam"):
        assert hub.watched("cam")
    assert not hub.watched("cam")


def _packet(seq: int, image: np.ndarray, tracks: Tracks | None = None) -> Packet:
    return Packet(Frame("cam", seq, seq * 40_000_000, time.monotonic_ns(), image), tracks=tracks)


def test_preview_sink_draws_like_the_video_sink_and_limits_its_rate() -> None:
    hub = PreviewHub()
    sink = PreviewSink(hub, max_fps=0.5, jpeg_quality=90, only_when_watched=False)
    sink.open(StreamInfo("cam", 25.0, 64, 48), ["person"])
    image = np.full((48, 64, 3), 128, np.uint8)
    tracks = Tracks(
        xyxy=np.array([[10, 10, 40, 40]], np.float32),
        confidence=np.array([0.9], np.float32),
        class_id=np.array([0], np.int32),
        track_id=np.array([7], np.int64),
        det_index=np.array([0], np.int32),
    )
    for seq in range(10):  # within one 2 s period: only the first is published
        sink.write(_packet(seq, image, tracks))
    frame = hub.latest("cam")
    assert frame is not None and frame.version == 1 and frame.seq == 0
    decoded = cv2.imdecode(np.frombuffer(frame.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (48, 64, 3)
    diff = np.abs(decoded.astype(int) - 128).max(axis=2)
    assert diff[10, 10:40].max() > 60  # the box's top edge was drawn
    assert diff[44:, 50:].max() < 20  # far from the box: the plain frame
    assert image.max() == image.min() == 128  # the shared frame was not drawn on
    assert sink.stats()["published"] == 1
    sink.close()
    sink.close()


def test_preview_sink_encodes_nothing_while_nobody_watches_and_scales_down() -> None:
    hub = PreviewHub()
    sink = PreviewSink(hub, max_fps=100.0, max_width_px=32)
    sink.open(StreamInfo("cam", 25.0, 64, 48), [])
    image = np.zeros((48, 64, 3), np.uint8)
    sink.write(_packet(0, image))
    assert hub.latest("cam") is None
    with hub.viewer("cam"):
        sink.write(_packet(1, image))
    frame = hub.latest("cam")
    assert frame is not None and frame.seq == 1
    decoded = cv2.imdecode(np.frombuffer(frame.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (24, 32, 3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_fps": 0.0}, "max_fps"),
        ({"max_fps": float("nan")}, "max_fps"),
        ({"jpeg_quality": 0}, "jpeg_quality"),
        ({"jpeg_quality": 101}, "jpeg_quality"),
        ({"max_width_px": 8}, "max_width_px"),
        ({"trace_length_s": -1.0}, "trace_length_s"),
    ],
)
def test_preview_sink_rejects_bad_parameters(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PreviewSink(PreviewHub(), **kwargs)


def test_preview_sink_write_before_open_raises() -> None:
    with pytest.raises(StreamerError, match="not opened"):
        PreviewSink(PreviewHub()).write(_packet(0, np.zeros((4, 4, 3), np.uint8)))


# -- server --------------------------------------------------------------------------
def test_server_serves_health_stats_metrics_page_and_errors_over_http() -> None:
    pipe = Pipeline([SyntheticSource("cam", 20)], [Pass("boom", fail_at=3)])
    empty = Pipeline([SyntheticSource("idle", 5)], [Pass("s")])
    with MonitorServer(empty, name="idle") as idle:  # before any frame: NaN-free JSON
        status, _, body = get(idle.url + "stats.json")
        stats = strict_json(body)
        assert status == 200 and stats["sources"]["idle"]["latency_ms"]["p50"] is None
        assert stats["sources"]["idle"]["state"] == "starting"
    pipe.run()
    with MonitorServer(pipe, name="t", source_down_s=5.0) as server:
        base = server.url
        assert base == f"http://127.0.0.1:{server.port}/"
        status, ctype, body = get(base + "healthz")
        assert status == 503 and ctype == "application/json"
        report = strict_json(body)
        assert report["status"] == "unhealthy"
        assert report["reasons"][0].startswith("pipeline failed: stage 'boom', source 'cam'")
        status, ctype, body = get(base + "metrics")
        assert status == 200 and ctype.startswith("text/plain")
        m = samples(body.decode())
        assert value(m, "streamer_pipeline_healthy") == 0
        assert value(m, "streamer_stage_frames_total", stage="boom", source="cam") == 3
        status, _, body = get(base + "stats.json")
        stats = strict_json(body)
        assert stats["status"] == "unhealthy" and stats["stages"][0]["name"] == "boom"
        assert stats["sources"]["cam"]["frames"] == pipe.source_stats["cam"].frames
        status, ctype, page = get(base)
        assert status == 200 and ctype.startswith("text/html")
        assert b'data-stats="cam"' in page and b"<img" not in page  # no preview stage
        assert get(base + "nope")[0] == 404
        assert get(base + "stream/cam.mjpg")[0] == 404  # no preview stage
        assert get(base + "stream/other.mjpg")[0] == 404  # no such source
    with socket.socket() as busy:  # a port someone else listens on
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(StreamerError, match=f"cannot listen on 127.0.0.1:{port}: "):
            MonitorServer(pipe, port=port).start()


def test_server_close_ends_open_streams_at_once_and_frees_the_port() -> None:
    hub = PreviewHub()
    hub.add_source("cam")
    pipe = Pipeline([SyntheticSource("cam", 1)], [Pass("s")])
    server = MonitorServer(pipe, preview=hub).start()
    port = server.port
    resp = urllib.request.urlopen(server.url + "stream/cam.mjpg", timeout=5)
    assert resp.headers["Content-Type"] == "multipart/x-mixed-replace; boundary=frame"
    hub.publish("cam", 0, b"\xff\xd8first\xff\xd9")
    assert resp.readline() == b"--frame\r\n"
    t0 = time.monotonic()
    server.close()
    assert time.monotonic() - t0 < 2.0
    resp.close()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0
    server.close()  # idempotent


def test_page_escapes_source_ids_and_streams_only_previewed_sources() -> None:
    page = render_page("p<1>", ["a", "b&c"], {"a"})
    assert "<title>streamer: p&lt;1&gt;</title>" in page
    assert 'data-src="stream/a.mjpg"' in page and 'data-stats="b&amp;c"' in page
    assert page.count("<img") == 1


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ([(0.0, 0.0)], None),  # one snapshot: no rate yet
        ([(0.0, 0.0), (0.1, 10.0)], None),  # too close together
        ([(0.0, 0.0), (1.0, 10.0)], 10.0),
        ([(0.0, 0.0), (1.0, 10.0), (2.0, 30.0)], 15.0),
        ([(0.0, 0.0), (5.0, 50.0), (10.0, 150.0), (12.0, 170.0)], 120.0 / 7.0),
    ],
)
def test_rate_tracker(steps: list[tuple[float, float]], expected: float | None) -> None:
    rates = RateTracker(window_s=5.0, min_interval_s=0.2)
    got: float | None = None
    for t, v in steps:
        got = rates.update(t, {"x": v})["x"]
    assert got == (pytest.approx(expected) if expected is not None else None)


# -- configuration -------------------------------------------------------------------
BASE = """
name: demo
sources:
  - {type: video_file, id: cam, path: clip.mp4}
stages:
  - {type: detect, model: model.onnx}
  - {type: preview}
"""


def test_server_block_defaults_and_errors(tmp_path: Path) -> None:
    p = tmp_path / "p.yaml"
    p.write_text(BASE + "server: {}\n")
    cfg = load_pipeline(p)
    assert cfg.server is not None
    assert (cfg.server.host, cfg.server.port, cfg.server.health.source_down_s) == (
        "127.0.0.1",
        9090,
        10.0,
    )
    preview = cfg.stages[1]
    assert preview.type == "preview" and (preview.max_fps, preview.jpeg_quality) == (10.0, 80)
    for bad, where in [
        ("server: {port: 70000}\n", "server.port"),
        ("server: {health: {source_down_s: 0}}\n", "server.health.source_down_s"),
        ("server: {hots: x}\n", "server.hots"),
    ]:
        p.write_text(BASE + bad)
        with pytest.raises(ConfigError, match=rf"p\.yaml: {where}:"):
            load_pipeline(p)
    p.write_text(BASE.replace("{type: preview}", "{type: preview, max_fps: 0}"))
    with pytest.raises(ConfigError, match=r"stages\[1\]\.max_fps: Input should be greater than 0"):
        load_pipeline(p)


def test_preview_without_a_server_is_a_config_error(tmp_path: Path) -> None:
    p = tmp_path / "p.yaml"
    p.write_text(BASE)
    cfg: PipelineConfig = load_pipeline(p)
    with pytest.raises(ConfigError, match=r"stages\[1\]: a 'preview' stage needs a server"):
        run_pipeline(cfg, tmp_path / "run", show_progress=False)
    assert not (tmp_path / "run").exists()  # nothing was built or written


def test_validate_notes_a_preview_without_a_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = tmp_path / "p.yaml"
    p.write_text(BASE)
    assert main(["validate", "--config-only", str(p)]) == 0  # `run --serve PORT` completes it
    err = capsys.readouterr().err
    assert "note: stages[1]: a 'preview' stage needs a server" in " ".join(err.split())
    p.write_text(BASE + "server: {port: 0}\n")
    assert main(["validate", "--config-only", str(p)]) == 0
    assert "needs a server" not in capsys.readouterr().err


@pytest.mark.parametrize("port", ["70000", "-1", "http"])
def test_cli_rejects_a_bad_serve_port(port: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["run", "p.yaml", "--serve", port])
    assert exit_.value.code == 2
    assert "--serve: must be a port number in [0, 65535]" in capsys.readouterr().err
