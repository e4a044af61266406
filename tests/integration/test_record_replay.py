"""Record a real RTSP server into a clip, replay it deterministically.

* ``streamer record`` against the RTSP test server, replayed twice on the virtual clock
  through YOLOX-nano + ByteTrack + jsonl: byte-identical outputs, losslessly and with
  a modelled slow pipeline that drops frames (the same frames, counted, every run).
* ``record:`` on a pipeline's RTSP source, with the server killed and restarted: the
  clip holds two segments and the gap, and its lossless replay reproduces the live
  run's ``tracks.jsonl`` byte for byte (frames, seq, times, gap, tracks).
* A recorder killed with SIGKILL leaves a clip that replays up to its last cluster.
* ``streamer record`` reconnects after the server dies: a new segment and a gap row,
  replayed as a StreamGap.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import require_data, yolox_people_pipeline
from rtsp_server import RtspServer, require_rtsp_server

from streamer.cli import main as streamer_main
from streamer.config.schema import PipelineConfig
from streamer.pipeline.build import build_pipeline
from streamer.pipeline.runner import Pipeline, RunResult
from streamer.sources.clip import FrameRow, GapRow, load_clip
from streamer.sources.recorder import record
from streamer.sources.replay import ReplaySource
from streamer.sources.rtsp import Backoff
from streamer.types import StreamGap

pytestmark = pytest.mark.slow

PETS09 = "videos/pets09_s2l1_480x360.mp4"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _server_available() -> None:
    require_rtsp_server()


def _config(source: dict[str, Any], out: Path) -> PipelineConfig:
    sinks = [{"type": "jsonl", "path": "tracks.jsonl"}]
    return yolox_people_pipeline("replay_test", [source], out, sinks)


def _replay(clip: Path, out: Path, **options: Any) -> tuple[bytes, RunResult, dict[str, int]]:
    cfg = _config({"type": "replay", "id": "cam", "path": str(clip), **options}, out)
    pipe = build_pipeline(cfg, out).pipeline
    result = pipe.run()
    assert result.ok, result.errors
    stats = pipe.sources[0].replay_stats.as_dict()  # type: ignore[attr-defined]
    return (out / "tracks.jsonl").read_bytes(), result, stats


def _records(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.decode().splitlines()]


def test_recorded_rtsp_clip_replays_identically_lossless_and_lossy(tmp_path: Path) -> None:
    """Done-when: ``streamer record`` from the real RTSP server (PETS09 at 10 fps), then
    two virtual-clock replays give byte-identical ``tracks.jsonl``, with every recorded
    frame (seq and times from the recording). A modelled 250 ms/frame pipeline behind a
    2-frame ``drop_oldest`` buffer drops the same frames in both runs (counted), and
    the tracker keeps identities across the holes in ``seq``."""
    clip = tmp_path / "clip"
    with RtspServer("--file", str(require_data(PETS09))) as server:
        t0 = time.monotonic()
        rc = streamer_main(["record", server.url, "--duration", "5", "--out", str(clip)])
        record_s = time.monotonic() - t0
    assert rc == 0
    manifest = json.loads((clip / "clip.json").read_text())
    rows = load_clip(clip).frame_rows
    assert manifest["complete"] and manifest["source_kind"] == "rtsp"
    assert (manifest["codec"], manifest["width_px"], manifest["height_px"]) == ("h264", 480, 360)
    assert manifest["fps"] == 10.0 and manifest["frame_count"] == len(rows) >= 40
    assert [r.seq for r in rows] == list(range(len(rows)))
    assert rows[-1].arrival_ns <= 5e9 and manifest["segments"] == ["segment-000.mkv"]

    a, res_a, stats_a = _replay(clip, tmp_path / "a")
    b, _, stats_b = _replay(clip, tmp_path / "b")
    assert a == b
    recs = _records(a)
    assert [r["seq"] for r in recs] == [r.seq for r in rows]
    assert [r["pts_s"] for r in recs] == [round(r.pts_ns / 1e9, 6) for r in rows]
    assert [r["wall_time_s"] for r in recs] == [round(r.wall_ns / 1e9, 6) for r in rows]
    assert stats_a == stats_b and stats_a["emitted"] == len(rows) == res_a.packets_out
    assert sum(len(r["tracks"]) for r in recs) >= 3 * len(recs)  # people are tracked

    lossy = {"virtual_cost_ms": 250.0, "buffer": {"capacity": 2, "policy": "drop_oldest"}}
    c, res_c, stats_c = _replay(clip, tmp_path / "c", **lossy)
    d, _, stats_d = _replay(clip, tmp_path / "d", **lossy)
    assert c == d and stats_c == stats_d
    dropped = stats_c["buffer_drops"] + stats_c["stale_drops"]
    assert dropped > 0 and stats_c["emitted"] + dropped == len(rows) == stats_c["recorded_frames"]
    assert res_c.packets_out == stats_c["emitted"]
    lossy_recs = _records(c)
    seqs = [r["seq"] for r in lossy_recs]
    assert len(seqs) == stats_c["emitted"] and max(b - a for a, b in itertools.pairwise(seqs)) > 1
    # Coasting: some track is matched right before and right after a hole in seq.
    kept = 0
    for prev, nxt in itertools.pairwise(lossy_recs):
        if nxt["seq"] - prev["seq"] > 1:
            ids_before = {t["track_id"] for t in prev["tracks"]}
            kept += len(ids_before & {t["track_id"] for t in nxt["tracks"]})
    assert kept > 10
    # Dropping frames does not multiply identities.
    ids_lossless = {t["track_id"] for r in recs for t in r["tracks"]}
    ids_lossy = {t["track_id"] for r in lossy_recs for t in r["tracks"]}
    assert len(ids_lossy) <= len(ids_lossless) + 3
    print(
        f"recorded {len(rows)} frames in {record_s:.1f} s; lossy replay kept "
        f"{stats_c['emitted']}, {stats_c['buffer_drops']} buffer drops; {kept} track "
        f"continuations over holes; ids {len(ids_lossless)} lossless, {len(ids_lossy)} lossy"
    )


def test_pipeline_records_its_source_and_the_replay_reproduces_the_live_run(
    tmp_path: Path,
) -> None:
    """``record:`` on the RTSP source of a live, lossless pipeline; the server is
    killed after 20 frames and restarted. The clip holds two segments and one gap row
    with the live run's gap; replaying it losslessly gives the live ``tracks.jsonl``
    byte for byte (same frames, seq, pts, wall times and tracks)."""
    video = require_data(PETS09)
    server = RtspServer("--file", str(video)).start()
    live_dir, clip = tmp_path / "live", tmp_path / "live" / "clip-cam"
    try:
        cfg = _config(
            {
                "type": "rtsp",
                "id": "cam",
                "url": server.url,
                "buffer": {"capacity": 8, "policy": "block"},
                "reconnect": {"initial_delay_s": 0.2, "max_delay_s": 0.5},
                "record": {"path": "clip-{source_id}"},
            },
            live_dir,
        )
        pipe = build_pipeline(cfg, live_dir).pipeline

        def scenario(p: Pipeline) -> None:
            deadline = time.monotonic() + 30
            while p.source_stats["cam"].frames < 20 and time.monotonic() < deadline:
                time.sleep(0.02)
            server.kill()
            time.sleep(1.0)
            server.start()
            while p.source_stats["cam"].frames < 40 and time.monotonic() < deadline:
                time.sleep(0.02)
            p.request_stop()

        worker = threading.Thread(target=scenario, args=(pipe,), daemon=True)
        worker.start()
        live = pipe.run()
        worker.join(30)
    finally:
        server.kill()
    assert not live.errors, live.errors
    st = live.sources["cam"]
    assert st.reconnects == 1 and st.gaps == 1 and st.missing_frames > 0
    loaded = load_clip(clip)
    assert loaded.manifest["complete"] and len(loaded.segments) == 2
    gaps = [r for r in loaded.rows if isinstance(r, GapRow)]
    assert len(gaps) == 1 and gaps[0].missing_frames == st.missing_frames
    frames = [r for r in loaded.rows if isinstance(r, FrameRow)]
    assert {r.segment for r in frames} == {0, 1} and len(frames) == st.frames

    replayed, result, stats = _replay(clip, tmp_path / "replay")
    assert result.sources["cam"].gaps == 1
    assert result.sources["cam"].missing_frames == st.missing_frames
    assert stats["emitted"] == st.frames
    assert replayed == (live_dir / "tracks.jsonl").read_bytes()


def test_killed_recorder_leaves_a_replayable_clip(tmp_path: Path) -> None:
    """SIGKILL ``streamer record`` mid-recording: the manifest says incomplete, the
    segment is readable up to its last cluster (about a second is lost), rows past it
    are ignored, and the replay emits contiguous frames."""
    clip = tmp_path / "clip"
    with RtspServer("--fps", "25") as server:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamer", "record", server.url, "--out", str(clip)],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        rows_file = clip / "frames.jsonl"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if rows_file.exists() and len(rows_file.read_bytes().splitlines()) >= 75:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    rows_written = len(rows_file.read_bytes().splitlines())
    assert rows_written >= 75
    manifest = json.loads((clip / "clip.json").read_text())
    assert manifest["complete"] is False
    src = ReplaySource(clip, "cam")
    info = src.open()
    seqs = []
    while (item := src.read()) is not None:
        seqs.append(item.seq)  # type: ignore[union-attr]
    src.close()
    assert info.frame_count == len(seqs) == src.replay_stats.recorded_frames
    assert seqs == list(range(len(seqs)))
    assert rows_written - 2 * 25 <= len(seqs) <= rows_written  # at most ~1 s of clusters lost


def test_recorder_reconnects_into_a_new_segment_with_a_gap(tmp_path: Path) -> None:
    """The server dies 1.5 s into a 5 s recording and comes back 1 s later: the
    recorder reconnects, starts segment 1 and rows the outage as a gap (about the
    downtime's frames); the replay emits that StreamGap and jumps ``seq`` past it."""
    clip = tmp_path / "clip"
    server = RtspServer("--fps", "25").start()

    def outage() -> None:
        time.sleep(1.5)
        server.kill()
        time.sleep(1.0)
        server.start()

    chaos = threading.Thread(target=outage, daemon=True)
    chaos.start()
    try:
        result = record(server.url, clip, duration_s=5.0, reconnect=Backoff(0.2, 0.5))
    finally:
        chaos.join(10)
        server.kill()
    assert (result.reconnects, result.gaps, result.ended) == (1, 1, "duration")
    assert 25 * 1.0 * 0.8 <= result.missing_frames <= 25 * 5
    loaded = load_clip(clip)
    assert loaded.manifest["segments"] == ["segment-000.mkv", "segment-001.mkv"]
    gap = next(r for r in loaded.rows if isinstance(r, GapRow))
    src = ReplaySource(clip, "cam")
    src.open()
    items = []
    while (item := src.read()) is not None:
        items.append(item)
    src.close()
    at = next(i for i, x in enumerate(items) if isinstance(x, StreamGap))
    assert items[at] == StreamGap("cam", gap.missing_frames)
    assert items[at + 1].seq == items[at - 1].seq + 1 + gap.missing_frames  # type: ignore[union-attr]
    assert len(items) == result.frames + 1
