"""RTSP sources against a real RTSP server on loopback (Debian's GStreamer RTSP server).

Each test starts ``scripts/rtsp_server.py`` with the system Python and runs real
pipelines (real model, real tracker, real sinks) or the source alone.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from conftest import require_data, yolox_people_pipeline
from rtsp_server import RtspServer, require_rtsp_server

from streamer.config.loader import dump_resolved, load_pipeline
from streamer.config.schema import PipelineConfig
from streamer.errors import SourceError
from streamer.pipeline.build import build_pipeline
from streamer.pipeline.runner import RunResult
from streamer.sources.rtsp import Backoff, RtspSource
from streamer.types import Frame, StreamGap

pytestmark = pytest.mark.slow

PETS09 = "videos/pets09_s2l1_480x360.mp4"


@pytest.fixture(autouse=True)
def _server_available() -> None:
    require_rtsp_server()


def _config(sources: list[dict[str, Any]], tmp_path: Path, **detect: Any) -> PipelineConfig:
    sinks = [{"type": "jsonl", "path": "{source_id}.jsonl"}]
    return yolox_people_pipeline("rtsp_test", sources, tmp_path, sinks, detect)


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _run(cfg: PipelineConfig, run_dir: Path, during: Any = None) -> RunResult:
    built = build_pipeline(cfg, run_dir)
    if during is None:
        return built.pipeline.run()
    worker = threading.Thread(target=during, args=(built.pipeline,), daemon=True)
    worker.start()
    result = built.pipeline.run()
    worker.join(30)
    return result


def _long_tracks(records: list[dict[str, Any]], min_frames: int) -> dict[int, int]:
    counts: dict[int, int] = {}
    for r in records:
        for t in r["tracks"]:
            counts[t["track_id"]] = counts.get(t["track_id"], 0) + 1
    return {k: v for k, v in counts.items() if v >= min_frames}


def test_rtsp_pipeline_tracks_people_like_the_file_pipeline(tmp_path: Path) -> None:
    """PETS09 served over RTSP (decoded, re-encoded with x264, paced at 10 fps) and
    read losslessly (``buffer.policy: block``) tracks the same people as the file:
    frame for frame the same number of people within one, 95 % of the file's track
    boxes have an RTSP box with IoU >= 0.5, and the long tracks match (within one).
    """
    video = require_data(PETS09)
    n = 80
    file_cfg = _config(
        [{"type": "video_file", "id": "file", "path": str(video), "max_frames": n}], tmp_path
    )
    _run(file_cfg, tmp_path / "file")
    with RtspServer("--file", str(video)) as server:
        rtsp_cfg = _config(
            [
                {
                    "type": "rtsp",
                    "id": "cam",
                    "url": server.url,
                    "max_frames": n,
                    "buffer": {"capacity": 8, "policy": "block"},
                }
            ],
            tmp_path,
        )
        result = _run(rtsp_cfg, tmp_path / "rtsp")
    assert result.ok, result.errors
    assert result.frames == {"cam": n}
    file_recs = _records(tmp_path / "file" / "file.jsonl")
    rtsp_recs = _records(tmp_path / "rtsp" / "cam.jsonl")
    assert [r["seq"] for r in rtsp_recs] == list(range(n))  # nothing lost, nothing invented
    people_file = np.array([len(r["tracks"]) for r in file_recs])
    people_rtsp = np.array([len(r["tracks"]) for r in rtsp_recs])
    assert people_file.mean() >= 4  # the scene has several people throughout
    assert np.abs(people_file - people_rtsp).max() <= 1
    # Boxes agree: each file track box has an RTSP box with IoU >= 0.5 in most frames.
    matched = total = 0
    for rf, rr in zip(file_recs, rtsp_recs, strict=True):
        boxes_r = np.array([t["xyxy"] for t in rr["tracks"]]).reshape(-1, 4)
        for t in rf["tracks"]:
            total += 1
            b = np.array(t["xyxy"])
            if len(boxes_r) == 0:
                continue
            ix = np.clip(np.minimum(b[2], boxes_r[:, 2]) - np.maximum(b[0], boxes_r[:, 0]), 0, None)
            iy = np.clip(np.minimum(b[3], boxes_r[:, 3]) - np.maximum(b[1], boxes_r[:, 1]), 0, None)
            inter = ix * iy
            area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])  # noqa: E731
            iou = inter / (area(b) + area(boxes_r) - inter)
            matched += int(iou.max() >= 0.5)
    assert matched / total >= 0.95
    long_file = _long_tracks(file_recs, 40)
    long_rtsp = _long_tracks(rtsp_recs, 40)
    assert len(long_file) >= 3 and abs(len(long_file) - len(long_rtsp)) <= 1


def test_killed_server_gap_reconnect_and_second_source_keeps_running(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Kill camera A's server mid-stream, restart it 3 s later: the pipeline neither
    hangs nor fails, logs the loss once, records one gap of about the downtime's
    frames, reconnects, and goes on; camera B's frames keep flowing throughout."""
    caplog.set_level(logging.INFO, logger="streamer.sources.rtsp")
    a = RtspServer("--fps", "25").start()
    b = RtspServer("--fps", "25", "--pattern", "smpte").start()
    times: dict[str, float] = {}
    try:
        fast = {"initial_delay_s": 0.2, "max_delay_s": 1.0}
        cfg = _config(
            [
                {"type": "rtsp", "id": "a", "url": a.url, "reconnect": fast},
                {"type": "rtsp", "id": "b", "url": b.url, "reconnect": fast},
            ],
            tmp_path,
        )

        def scenario(pipe: Any) -> None:
            deadline = time.monotonic() + 20
            while pipe.source_stats["a"].frames < 50 and time.monotonic() < deadline:
                time.sleep(0.05)
            times["killed"] = time.time()
            a.kill()
            time.sleep(3.0)
            a.start()
            times["restarted"] = time.time()
            frames_at_restart = pipe.source_stats["a"].frames
            while pipe.source_stats["a"].frames < frames_at_restart + 50:
                if time.monotonic() > deadline + 20:
                    break
                time.sleep(0.05)
            pipe.request_stop()

        t0 = time.monotonic()
        result = _run(cfg, tmp_path, during=scenario)
        assert time.monotonic() - t0 < 45
    finally:
        a.kill()
        b.kill()
    assert not result.errors, result.errors
    sa, sb = result.sources["a"], result.sources["b"]
    assert sa.reconnects == 1 and sa.gaps == 1
    downtime_frames = 25 * 3.0
    assert downtime_frames * 0.8 <= sa.missing_frames <= downtime_frames * 3
    lost = [r for r in caplog.records if "stream lost" in r.getMessage()]
    assert len(lost) == 1 and "source 'a'" in lost[0].getMessage()
    assert any("reconnected" in r.getMessage() for r in caplog.records)
    # A's records jump over the gap in seq; B never paused while A was down.
    recs_a = _records(tmp_path / "a.jsonl")
    seqs = np.array([r["seq"] for r in recs_a])
    assert np.all(np.diff(seqs) > 0) and np.diff(seqs).max() >= sa.missing_frames
    wall_b = np.array([r["wall_time_s"] for r in _records(tmp_path / "b.jsonl")])
    during = wall_b[(wall_b > times["killed"]) & (wall_b < times["restarted"])]
    assert len(during) >= 25 * 3.0 * 0.5
    assert np.diff(wall_b).max() < 1.0
    assert sb.gaps == 0


def test_frozen_server_read_times_out_within_the_configured_timeout() -> None:
    """SIGSTOP the server: a read returns an error within ``read_timeout_s`` (no hang,
    no stale frames), and the message carries no credentials."""
    with RtspServer("--fps", "25") as server:
        url = server.url.replace("rtsp://", "rtsp://viewer:s3cretpw@")
        src = RtspSource(url, "cam", open_timeout_s=5, read_timeout_s=2.0, reconnect=None)
        src.open()
        for _ in range(30):
            assert isinstance(src.read(), Frame)
        server.freeze()
        frozen_at = time.monotonic()
        with pytest.raises(SourceError) as err:
            while True:
                src.read()  # frames already buffered may still come out first
        waited_s = time.monotonic() - frozen_at
        server.thaw()
        src.close()
    assert waited_s <= 2.0 + 0.5, waited_s
    assert "s3cretpw" not in str(err.value) and "viewer" not in str(err.value)
    assert "source 'cam'" in str(err.value)


def test_frozen_then_restarted_server_reconnects_with_a_gap() -> None:
    """With reconnect on, a frozen server is treated as lost: backoff, reconnect once
    it serves again, a gap event, and ``seq`` advanced past the gap."""
    server = RtspServer("--fps", "25").start()
    try:
        src = RtspSource(server.url, "cam", read_timeout_s=1.5, reconnect=Backoff(0.2, 1.0), seed=0)
        src.open()
        last_seq = -1
        for _ in range(20):
            item = src.read()
            assert isinstance(item, Frame)
            last_seq = item.seq
        server.freeze()
        threading.Timer(3.0, lambda: (server.kill(), server.start())).start()
        item = src.read()
        while isinstance(item, Frame):  # buffered frames, then the loss
            last_seq = item.seq
            item = src.read()
        assert isinstance(item, StreamGap) and item.missing_frames >= 25
        nxt = src.read()
        assert isinstance(nxt, Frame) and nxt.seq == last_seq + 1 + item.missing_frames
        src.close()
    finally:
        server.kill()


def test_credentials_from_env_are_used_and_never_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A password-protected server: the right ``${env:...}`` credentials stream; the
    resolved config keeps the template; a wrong password fails without echoing it."""
    caplog.set_level(logging.DEBUG)
    with RtspServer("--fps", "25", "--user", "op", "--password", "Pa55word-xyz") as server:
        host = server.url.removeprefix("rtsp://")
        monkeypatch.setenv("CAM_USER", "op")
        monkeypatch.setenv("CAM_PASS", "Pa55word-xyz")
        model = require_data("models/yolox_nano.onnx")
        yaml_path = tmp_path / "cam.yaml"
        yaml_path.write_text(
            yaml.safe_dump(
                {
                    "name": "cam",
                    "sources": [
                        {
                            "type": "rtsp",
                            "id": "cam",
                            "url": f"rtsp://${{env:CAM_USER}}:${{env:CAM_PASS}}@{host}",
                            "max_frames": 10,
                        }
                    ],
                    "stages": [{"type": "detect", "model": str(model)}, {"type": "jsonl"}],
                }
            )
        )
        cfg = load_pipeline(yaml_path)
        resolved = dump_resolved(cfg)
        assert "Pa55word-xyz" not in resolved and "${env:CAM_PASS}" in resolved
        result = build_pipeline(cfg, tmp_path / "run").pipeline.run()
        assert result.ok, result.errors
        assert result.frames == {"cam": 10}

        bad = RtspSource(f"rtsp://op:WrongPass-123@{host}", "cam", reconnect=None)
        with pytest.raises(SourceError) as err:
            bad.open()
        assert "WrongPass-123" not in str(err.value) and "***@" in str(err.value)
        assert "WrongPass-123" not in repr(bad)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "Pa55word-xyz" not in logged and "WrongPass-123" not in logged


def test_udp_transport_streams() -> None:
    """``transport: udp`` receives frames on loopback too."""
    with RtspServer("--fps", "25") as server:
        src = RtspSource(server.url, "cam", transport="udp", reconnect=None)
        info = src.open()
        frames = [src.read() for _ in range(10)]
        src.close()
    assert (info.width_px, info.height_px) == (320, 240)
    assert all(isinstance(f, Frame) for f in frames)


def test_unreachable_camera_at_start_keeps_retrying_until_stopped() -> None:
    """A camera that is down at start: ``open`` retries with backoff (never hangs) and
    returns promptly once the pipeline's stop signal is set."""
    from rtsp_server import free_port

    src = RtspSource(
        f"rtsp://127.0.0.1:{free_port()}/stream", "cam", reconnect=Backoff(0.1, 0.4), seed=0
    )
    stop = threading.Event()
    src.bind_stop(stop)
    threading.Timer(1.5, stop.set).start()
    t0 = time.monotonic()
    with pytest.raises(SourceError, match="stopped while reconnecting"):
        src.open()
    assert 1.4 <= time.monotonic() - t0 < 3.0


def _slow_pipeline(url: str, tmp_path: Path, policy: str, **source: Any) -> PipelineConfig:
    """YOLOv8n at 640 px (~8-10 frames/s on 2 cores) behind a 25 frames/s camera."""
    cfg = _config(
        [
            {
                "type": "rtsp",
                "id": "cam",
                "url": url,
                "buffer": {"capacity": 2, "policy": policy},
                **source,
            }
        ],
        tmp_path,
        model=str(require_data("models/yolov8n_int8_dynamic.onnx")),
    )
    cfg.queue.capacity = 1
    return cfg


def test_drop_oldest_keeps_latency_bounded_when_the_camera_outpaces_the_pipeline(
    tmp_path: Path,
) -> None:
    """A 25 frames/s camera into a pipeline that manages well under half of that:
    with ``drop_oldest`` the capture buffer drops (counted) and end-to-end latency
    stays bounded and flat (the last third's p95 is no worse than the first's plus
    a margin). ``scripts/bench_freshness.py`` runs the same for 2 minutes."""
    with RtspServer("--fps", "25", "--width", "640", "--height", "480") as server:
        cfg = _slow_pipeline(server.url, tmp_path, "drop_oldest")

        def stop_after(pipe: Any) -> None:
            time.sleep(15.0)
            pipe.request_stop()

        result = _run(cfg, tmp_path, during=stop_after)
    assert not result.errors, result.errors
    st = result.sources["cam"]
    drops = result.channel_stats[0].drops.get("cam", 0)
    assert result.packets_out > 20
    # The camera delivered at least twice what the pipeline processed.
    assert st.frames + drops >= 2 * result.packets_out, (st.frames, drops, result.packets_out)
    assert drops > 0
    lat = st.latency.recent_ms()[5:]  # after the connection's initial burst
    third = len(lat) // 3
    p95_first = float(np.percentile(lat[:third], 95))
    p95_last = float(np.percentile(lat[-third:], 95))
    assert p95_last < p95_first * 1.5 + 150, (p95_first, p95_last)
    assert float(np.percentile(lat, 95)) < 1500


def test_block_policy_is_lossless_when_the_camera_outpaces_the_pipeline(tmp_path: Path) -> None:
    """The same overload with ``policy: block``: every frame read is processed, in
    order, none dropped (latency grows instead: that is the trade)."""
    with RtspServer("--fps", "25", "--width", "640", "--height", "480") as server:
        cfg = _slow_pipeline(server.url, tmp_path, "block", max_frames=60)
        result = _run(cfg, tmp_path)
    assert result.ok, result.errors
    assert result.frames == {"cam": 60} and result.packets_out == 60
    assert result.channel_stats[0].total_drops == 0 and not result.stale_drops
    seqs = [r["seq"] for r in _records(tmp_path / "cam.jsonl")]
    assert seqs == list(range(60))
    lat = result.sources["cam"].latency.recent_ms()
    assert lat[-10:].mean() > lat[5:15].mean()  # a backlog built up, none was dropped


def test_max_frame_age_drops_stale_frames_before_they_are_processed(tmp_path: Path) -> None:
    """``max_frame_age_ms`` on a lossless buffer: frames older than the budget are
    dropped before detection (counted per stage) and never reach the sink; what is
    processed stays in order. (The tracker stepping over the holes this leaves in
    ``seq`` is tested in tests/unit/test_live_sources_units.py.)"""
    with RtspServer("--fps", "25", "--width", "640", "--height", "480") as server:
        cfg = _slow_pipeline(server.url, tmp_path, "block", max_frames=60, max_frame_age_ms=300.0)
        result = _run(cfg, tmp_path)
    assert not result.errors, result.errors
    stale = result.stale_drops.get("cam", 0)
    assert stale > 0 and result.packets_out + stale == 60
    seqs = [r["seq"] for r in _records(tmp_path / "cam.jsonl")]
    assert seqs == sorted(seqs) and len(seqs) == result.packets_out


def test_many_sources_batch_across_streams_and_end_independently(tmp_path: Path) -> None:
    """Two cameras and a file in one pipeline: detection batches frames of different
    sources together (``max_batch``/``max_wait_ms``), each source gets its own tracker
    and output, a camera whose server dies (reconnect off) fails alone, the file
    ending early stops nothing, and the run ends when every source has ended."""
    video = require_data(PETS09)
    a = RtspServer("--fps", "25").start()
    b = RtspServer("--fps", "25", "--pattern", "smpte").start()
    try:
        cfg = _config(
            [
                {"type": "rtsp", "id": "a", "url": a.url, "max_frames": 150},
                {"type": "rtsp", "id": "b", "url": b.url, "reconnect": None},
                {"type": "video_file", "id": "file", "path": str(video), "max_frames": 30},
            ],
            tmp_path,
            max_batch=3,
            max_wait_ms=20,
        )

        def kill_b(pipe: Any) -> None:
            deadline = time.monotonic() + 20
            while pipe.source_stats["b"].frames < 40 and time.monotonic() < deadline:
                time.sleep(0.05)
            b.kill()

        t0 = time.monotonic()
        result = _run(cfg, tmp_path, during=kill_b)
        elapsed_s = time.monotonic() - t0
    finally:
        a.kill()
        b.kill()
    assert elapsed_s < 30
    assert len(result.errors) == 1 and "source 'b'" in result.errors[0], result.errors
    assert result.frames["a"] == 150 and result.frames["file"] == 30
    assert result.frames["b"] >= 40
    detect = next(s for s in result.stage_stats if s.name == "detect")
    assert detect.cross_source_batches > 0 and detect.batches < detect.packets
    drops = result.channel_stats[0].drops
    assert drops.get("file", 0) == 0  # the file stays lossless beside dropping cameras
    for sid in ("a", "b", "file"):
        recs = _records(tmp_path / f"{sid}.jsonl")
        assert len(recs) == result.frames[sid] - drops.get(sid, 0)
        assert {r["source_id"] for r in recs} == {sid}
    ids_file = {t["track_id"] for r in _records(tmp_path / "file.jsonl") for t in r["tracks"]}
    assert ids_file and min(ids_file) == 1  # its own tracker: ids start at 1
