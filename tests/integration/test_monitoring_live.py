"""Metrics, health and the live preview of real pipelines, seen from real HTTP clients.

A real pipeline (YOLOX-nano, ByteTrack, the ``preview`` sink) runs with its HTTP
server on, reading PETS09 from the real RTSP test server (Debian's GStreamer RTSP
server) or from the file; during the run the test reads ``/metrics`` (urllib and the
``curl`` binary), ``/healthz``, ``/stream/<id>.mjpg`` and loads ``/`` in headless
Chromium over the DevTools protocol. Waits are deadline-based polls; no assertion
depends on a bare sleep.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml
from chromium import HeadlessChromium, require_chromium
from conftest import require_data, restore_sigint, yolox_people_pipeline
from prometheus_client.parser import text_string_to_metric_families
from rtsp_server import RtspServer, free_port, require_rtsp_server

from streamer.cli import run_pipeline
from streamer.config.schema import PipelineConfig
from streamer.pipeline.runner import Pipeline, RunResult
from streamer.pipeline.server import MonitorServer

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
PETS09 = "videos/pets09_s2l1_480x360.mp4"
YOLOX = "models/yolox_nano.onnx"


# -- HTTP helpers ---------------------------------------------------------------------
def get(url: str, timeout_s: float = 5.0) -> tuple[int, bytes]:
    """``(status, body)`` of a GET; 4xx/5xx are returned, not raised."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def health(base: str) -> tuple[int, dict[str, Any]]:
    status, body = get(base + "healthz")
    return status, json.loads(body)


def wait_for(what: str, check: Callable[[], Any], timeout_s: float, every_s: float = 0.1) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every_s)
    pytest.fail(f"timed out after {timeout_s} s waiting for {what} (last: {last!r})")


def metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text page: ``(name, sorted labels) -> value``."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def sample(
    m: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    key = (name, tuple(sorted(labels.items())))
    assert key in m, f"{name}{labels} not exported; have {sorted({k[0] for k in m})}"
    return m[key]


def mjpeg_frames(url: str, n: int, timeout_s: float) -> list[bytes]:
    """The first ``n`` JPEG parts of a ``multipart/x-mixed-replace`` stream."""
    frames: list[bytes] = []
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:
        ctype = resp.headers["Content-Type"]
        assert ctype.startswith("multipart/x-mixed-replace"), ctype
        boundary = b"--" + ctype.split("boundary=")[1].encode()
        deadline = time.monotonic() + timeout_s
        while len(frames) < n and time.monotonic() < deadline:
            line = resp.readline()
            if not line:
                break
            if line.strip() != boundary:
                continue
            headers = {}
            while (h := resp.readline().strip()) != b"":
                k, v = h.decode().split(":", 1)
                headers[k.strip().lower()] = v.strip()
            assert headers["content-type"] == "image/jpeg"
            frames.append(resp.read(int(headers["content-length"])))
    return frames


def port_is_closed(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) != 0


class Background:
    """``run_pipeline`` in a thread; ``pipe`` and ``server`` once it has started."""

    def __init__(self, cfg: PipelineConfig, run_dir: Path) -> None:
        self.started = threading.Event()
        self.pipe: Pipeline | None = None
        self.server: MonitorServer | None = None
        self.result: RunResult | None = None
        self.error: BaseException | None = None

        def on_start(pipe: Pipeline, server: MonitorServer | None) -> None:
            self.pipe, self.server = pipe, server
            self.started.set()

        def target() -> None:
            try:
                self.result = run_pipeline(cfg, run_dir, show_progress=False, on_start=on_start)
            except BaseException as e:  # reported by the test
                self.error = e
            finally:
                self.started.set()

        self.thread = threading.Thread(target=target, name="test:run_pipeline", daemon=True)
        self.thread.start()

    def wait_started(self, timeout_s: float = 30.0) -> tuple[Pipeline, MonitorServer]:
        assert self.started.wait(timeout_s), "pipeline did not start"
        assert self.error is None, self.error
        assert self.pipe is not None and self.server is not None
        return self.pipe, self.server

    def stop(self, timeout_s: float = 20.0) -> RunResult:
        if self.pipe is not None:
            self.pipe.request_stop()
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "run_pipeline did not return"
        assert self.error is None, self.error
        assert self.result is not None
        return self.result


def _config(sources: list[dict[str, Any]], tmp_path: Path, **server: Any) -> PipelineConfig:
    sinks = [{"type": "preview", "max_fps": 10, "jpeg_quality": 80}]
    return yolox_people_pipeline(
        "monitor_test",
        sources,
        tmp_path,
        sinks,
        server={"host": "127.0.0.1", "port": 0, **server},
    )


# -- the live scenario ----------------------------------------------------------------
def test_live_rtsp_metrics_health_preview_and_outage(tmp_path: Path) -> None:
    """One live run, PETS09 over RTSP at 10 fps, watched from outside:

    1. ``/metrics`` (urllib and ``curl``) has every stage's frames and latency
       histogram, the queue policy and capacity, per-source frames and end-to-end
       latency, with sensible values; ``/healthz`` is 200.
    2. ``/stream/cam.mjpg`` delivers distinct JPEGs of the frame size.
    3. The RTSP server is killed: ``/healthz`` turns 503 naming source 'cam' once it
       has been silent past ``source_down_s``; the server is restarted: 200 again,
       and the reconnect and gap are counted in ``/metrics``.
    4. After the run, the server's port is closed.
    """
    require_rtsp_server()
    video = require_data(PETS09)
    rtsp = RtspServer("--file", str(video)).start()
    down_s = 1.5
    cfg = _config(
        [
            {
                "type": "rtsp",
                "id": "cam",
                "url": rtsp.url,
                "open_timeout_s": 2,
                "read_timeout_s": 2,
                "reconnect": {"initial_delay_s": 0.2, "max_delay_s": 0.5},
            }
        ],
        tmp_path,
        health={"source_down_s": down_s},
    )
    run = Background(cfg, tmp_path)
    t0 = time.monotonic()
    timings: dict[str, float] = {}
    try:
        pipe, server = run.wait_started()
        port, base = server.port, server.url
        assert base.startswith("http://127.0.0.1:") and server.port > 0
        wait_for("first frames out", lambda: pipe.packets_out >= 15, 20)
        timings["first frames"] = time.monotonic() - t0

        # 1. metrics and health
        status, body = health(base)
        assert status == 200 and body["status"] == "ok", body
        assert body["sources"]["cam"]["state"] == "up"
        status, raw = get(base + "metrics")
        assert status == 200
        m = metrics(raw.decode())
        assert sample(m, "streamer_pipeline_info", pipeline="monitor_test") == 1
        assert sample(m, "streamer_pipeline_healthy") == 1
        assert sample(m, "streamer_source_up", source="cam") == 1
        frames_in = sample(m, "streamer_source_frames_total", source="cam")
        assert frames_in >= 15
        for stage in ("preprocess", "detect", "track", "preview"):
            n = sample(m, "streamer_stage_frames_total", stage=stage, source="cam")
            assert 0 < n <= frames_in
            count = sample(m, "streamer_stage_latency_seconds_count", stage=stage)
            inf = sample(m, "streamer_stage_latency_seconds_bucket", stage=stage, le="+Inf")
            batches = sample(m, "streamer_stage_batches_total", stage=stage)
            assert count == inf and abs(count - batches) <= 1  # read a moment apart
        det_mean_s = sample(m, "streamer_stage_latency_seconds_sum", stage="detect") / sample(
            m, "streamer_stage_latency_seconds_count", stage="detect"
        )
        assert 0.001 < det_mean_s < 0.5, det_mean_s  # YOLOX-nano: ~13 ms a frame here
        e2e_n = sample(m, "streamer_end_to_end_latency_seconds_count", source="cam")
        e2e_mean_s = sample(m, "streamer_end_to_end_latency_seconds_sum", source="cam") / e2e_n
        assert e2e_n > 0 and 0.0 < e2e_mean_s < 3.0, e2e_mean_s
        assert sample(m, "streamer_queue_capacity", stage="preprocess", policy="per_source") == 2
        assert sample(m, "streamer_source_buffer_capacity", source="cam", policy="drop_oldest") == 2
        assert sample(m, "streamer_queue_capacity", stage="detect", policy="block") == 4
        assert sample(m, "streamer_source_reconnects_total", source="cam") == 0
        assert 0 <= sample(m, "streamer_source_last_frame_age_seconds", source="cam") < down_s
        if shutil.which("curl"):
            proc = subprocess.run(
                ["curl", "-sS", "--fail", "--max-time", "5", base + "metrics"],
                capture_output=True,
                text=True,
                timeout=10,
            )
            assert proc.returncode == 0, proc.stderr
            curl_m = metrics(proc.stdout)
            assert sample(curl_m, "streamer_source_frames_total", source="cam") >= frames_in
        timings["metrics"] = time.monotonic() - t0

        # 2. MJPEG
        jpegs = mjpeg_frames(base + "stream/cam.mjpg", 4, timeout_s=10)
        assert len(jpegs) == 4 and len(set(jpegs)) == 4
        for jpeg in jpegs:
            image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
            assert image is not None and image.shape == (360, 480, 3)
        timings["mjpeg"] = time.monotonic() - t0

        # 3. outage and recovery
        frames_before = pipe.source_stats["cam"].frames
        rtsp.kill()

        def unhealthy() -> dict[str, Any] | None:
            status, body = health(base)
            return body if status == 503 else None

        body = wait_for("/healthz 503 after the camera died", unhealthy, down_s + 10)
        assert body["status"] == "unhealthy"
        assert len(body["reasons"]) == 1, body
        down = re.fullmatch(r"source 'cam' down for (\d+\.\d) s \(> 1\.5 s\)", body["reasons"][0])
        assert down is not None, body["reasons"]
        assert float(down.group(1)) >= down_s  # not before the threshold
        assert body["sources"]["cam"]["state"] == "down"
        m = metrics(get(base + "metrics")[1].decode())
        assert sample(m, "streamer_source_up", source="cam") == 0
        assert sample(m, "streamer_pipeline_healthy") == 0
        timings["503"] = time.monotonic() - t0

        rtsp.start()
        wait_for("/healthz 200 after the camera came back", lambda: health(base)[0] == 200, 20)
        assert pipe.source_stats["cam"].frames > frames_before
        m = metrics(get(base + "metrics")[1].decode())
        assert sample(m, "streamer_source_reconnects_total", source="cam") == 1
        assert sample(m, "streamer_source_gaps_total", source="cam") == 1
        assert sample(m, "streamer_source_missing_frames_total", source="cam") >= 10
        assert sample(m, "streamer_source_up", source="cam") == 1
        timings["200 again"] = time.monotonic() - t0
    finally:
        result = run.stop()
        rtsp.kill()
    assert not result.errors, result.errors
    assert port_is_closed(port)
    print("timings (s since start):", {k: round(v, 1) for k, v in timings.items()})


def test_browser_page_shows_live_frames_and_stats(tmp_path: Path) -> None:
    """Headless Chromium loads ``/`` of a running file pipeline: the ``<img>`` gets
    frames; two screenshots of it a second apart are not blank and differ (the video
    moves); the stats line (fps, latency, drops) and the stage table appear in the DOM.
    """
    require_chromium()
    video = require_data(PETS09)
    run = Background(
        _config([{"type": "video_file", "id": "cam", "path": str(video)}], tmp_path), tmp_path
    )
    try:
        _, server = run.wait_started()
        _check_page_in_chromium(server.url, tmp_path)
    finally:
        result = run.stop()
    assert not result.errors, result.errors


def _check_page_in_chromium(base: str, tmp_path: Path) -> None:
    with HeadlessChromium(width=1000, height=800) as browser:
        browser.navigate(base)
        wait_for(
            "the stream to show a frame in the page",
            lambda: browser.evaluate("(document.querySelector('img') || {}).naturalWidth > 0"),
            15,
        )
        rect = browser.evaluate(
            "(() => { const r = document.querySelector('img').getBoundingClientRect();"
            " return {x: r.x, y: r.y, width: r.width, height: r.height}; })()"
        )
        assert rect["width"] >= 400 and rect["height"] >= 300, rect
        first = browser.screenshot(rect)
        time.sleep(1.0)  # the interval between the two shots, not an assertion
        second = browser.screenshot(rect)
        cv2.imwrite(str(tmp_path / "page_1.png"), first)
        cv2.imwrite(str(tmp_path / "page_2.png"), second)
        for shot in (first, second):
            assert shot.std() > 20, "the stream region is blank"
        changed = np.abs(first.astype(np.int16) - second.astype(np.int16)).max(axis=2) > 40
        assert changed.mean() > 0.002, f"the stream did not move: {changed.mean():.4%} changed"
        stats_re = r"cam: \d+\.\d fps, latency p50 \d+ ms / p95 \d+ ms, drops \d+, up"
        text = wait_for(
            "the stats line",
            lambda: re.search(
                stats_re,
                browser.evaluate("document.querySelector('[data-stats=\"cam\"]').textContent")
                or "",
            ),
            10,
        )
        dom = browser.evaluate("document.documentElement.outerHTML")
        assert text.group(0) in dom
        assert re.search(r"<td>detect</td><td>\d+</td>", dom), "stage table missing"
        assert "healthy" in browser.evaluate("document.getElementById('status').textContent")


# -- the command line -----------------------------------------------------------------
def test_cli_serve_reports_port_serves_metrics_and_closes_on_sigterm(tmp_path: Path) -> None:
    """``streamer run --serve 0`` prints the bound port on stderr, serves ``/metrics``
    and ``/healthz`` while the file pipeline runs, and on SIGTERM exits 130 with its
    outputs written (the server goes with it)."""
    video = require_data(PETS09)
    model = require_data(YOLOX)
    cfg = {
        "name": "cli_serve",
        "sources": [{"type": "video_file", "id": "pets09", "path": str(video)}],
        "stages": [
            {"type": "detect", "model": str(model), "classes": [0]},
            {"type": "track"},
            {"type": "jsonl"},
        ],
    }
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "out"
    args = ["run", str(path), "-o", str(out), "--no-progress", "--serve", "0"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamer", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        preexec_fn=restore_sigint,
    )
    try:
        assert proc.stderr is not None
        lines: list[str] = []

        def port_line() -> re.Match[str] | None:
            line = proc.stderr.readline() if proc.stderr else ""
            lines.append(line)
            return re.search(r"serving http://127\.0\.0\.1:(\d+)/", line)

        found = wait_for("the 'serving' line on stderr", port_line, 30, every_s=0)
        base = f"http://127.0.0.1:{found.group(1)}/"
        wait_for(
            "frames out", lambda: _metric_value(base, "streamer_pipeline_frames_out_total") > 0, 20
        )
        status, body = health(base)
        assert status == 200 and body["sources"]["pets09"]["state"] in ("up", "ended")
        if shutil.which("curl"):
            text = subprocess.run(
                ["curl", "-sS", "--fail", base + "metrics"],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout
        else:
            text = get(base + "metrics")[1].decode()
        m = metrics(text)
        assert sample(m, "streamer_stage_frames_total", stage="detect", source="pets09") > 0
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 130, "".join(lines) + err
    assert "interrupted" in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] and summary["packets_out"] > 0
    assert port_is_closed(int(found.group(1)))


def _metric_value(base: str, name: str) -> float:
    status, raw = get(base + "metrics")
    return (
        sum(v for (n, _), v in metrics(raw.decode()).items() if n == name) if status == 200 else 0
    )


def test_failed_source_makes_health_503_and_server_closes_when_the_run_ends(
    tmp_path: Path,
) -> None:
    """A camera that cannot be reached (reconnect off) beside a file: while the file
    still runs, ``/healthz`` is 503 naming the failed camera and why; once
    ``run_pipeline`` returns (with that error), the server's port is closed."""
    video = require_data(PETS09)
    dead = f"rtsp://127.0.0.1:{free_port()}/stream"
    cfg = _config(
        [
            {"type": "video_file", "id": "pets09", "path": str(video)},
            {"type": "rtsp", "id": "dead", "url": dead, "reconnect": None},
        ],
        tmp_path,
    )
    run = Background(cfg, tmp_path)
    try:
        pipe, server = run.wait_started()
        port, base = server.port, server.url

        def unhealthy_while_file_runs() -> dict[str, Any] | None:
            status, body = health(base)
            up = body["sources"]["pets09"]["state"] == "up"
            return body if status == 503 and up else None

        body = wait_for("/healthz 503 while the file runs", unhealthy_while_file_runs, 15)
        assert body["sources"]["dead"]["state"] == "failed"
        assert len(body["reasons"]) == 1 and body["reasons"][0].startswith(
            "source 'dead' failed: source 'dead' (rtsp://127.0.0.1:"
        ), body["reasons"]
        assert "cannot open" in body["reasons"][0]
        m = metrics(get(base + "metrics")[1].decode())
        assert sample(m, "streamer_source_up", source="dead") == 0
        assert sample(m, "streamer_source_up", source="pets09") == 1
        assert not pipe.finished
    finally:
        result = run.stop()
    assert len(result.errors) == 1 and "source 'dead'" in result.errors[0], result.errors
    assert port_is_closed(port)
