"""The GStreamer preset strings run in the real GStreamer installed on this machine.

OpenCV's pip wheels have no GStreamer, so the strings are run with ``gst-launch-1.0``
instead, with the ``appsink ...`` tail (OpenCV's end) replaced by
``fdsink fd=1``: the raw BGR bytes come out on stdout and are counted, so a test
proves that frames of the expected size flowed, not only that the pipeline parsed.
The RTSP presets play from the real RTSP server in ``scripts/rtsp_server.py``.

The desktop presets run whole. The Jetson presets need NVIDIA elements
(``nvarguscamerasrc``, ``nvv4l2decoder``, ``nvvidconv``) that exist only on a Jetson;
their front half (source, demuxer, depayloader, parser) is run here with the Jetson
decoder and converter swapped for ``avdec_h264``.

Quoting is checked where OpenCV would parse it: ``gst_parse_launch`` (through the
system Python's ``gi`` bindings), and through ``gst-launch-1.0`` on a real file with
an awkward name.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import av
import pytest
from conftest import require_data

from streamer.sources.gstreamer import (
    APPSINK_FILE,
    APPSINK_LIVE,
    desktop_file,
    desktop_rtsp,
    jetson_file,
    jetson_rtsp,
)

REPO = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = "/usr/bin/python3"
SERVER = str(REPO / "scripts" / "rtsp_server.py")
GST_LAUNCH = shutil.which("gst-launch-1.0")
JETSON_DECODE = "nvv4l2decoder ! nvvidconv ! video/x-raw,format=BGRx"
SERVER_W, SERVER_H = 320, 240  # scripts/rtsp_server.py defaults

pytestmark = pytest.mark.skipif(
    GST_LAUNCH is None,
    reason="gst-launch-1.0 not found (apt install gstreamer1.0-tools gstreamer1.0-plugins-"
    "{base,good,bad,ugly} gstreamer1.0-libav)",
)


def require_elements(*names: str) -> None:
    """Skip unless every GStreamer element is installed."""
    inspect = shutil.which("gst-inspect-1.0")
    if inspect is None:
        pytest.skip("gst-inspect-1.0 not found")
    missing = [n for n in names if subprocess.run([inspect, "--exists", n], check=False).returncode]
    if missing:
        pytest.skip(f"GStreamer elements not installed: {', '.join(missing)}")


def launch_argv(pipeline: str) -> list[str]:
    """Split ``pipeline`` into gst-launch arguments at spaces outside double quotes.

    gst-launch-1.0 escapes the spaces inside each argument and joins them with
    spaces, so the parser sees exactly ``pipeline`` again: what OpenCV would parse.
    A quote escaped with a backslash does not toggle, as in GStreamer's own rule.
    """
    tokens: list[str] = []
    current: list[str] = []
    in_quotes = False
    prev = ""
    for ch in pipeline:
        if ch == '"' and prev != "\\":
            in_quotes = not in_quotes
        if ch == " " and not in_quotes:
            if current:
                tokens.append("".join(current))
            current = []
        else:
            current.append(ch)
        prev = ch
    if current:
        tokens.append("".join(current))
    return tokens


def with_tail(pipeline: str, tail: str) -> str:
    """Replace the preset's appsink (its last element) by ``tail``."""
    for sink in (APPSINK_LIVE, APPSINK_FILE):
        if pipeline.endswith(f" ! {sink}"):
            return pipeline[: -len(sink)] + tail
    raise AssertionError(f"preset does not end in a known appsink: {pipeline}")


def run_frames(pipeline: str, width: int, height: int, timeout_s: float = 20.0) -> int:
    """Run ``pipeline`` (ending in ``fdsink fd=1``); return the whole BGR frames it wrote.

    stdout is counted as it streams (a clip is hundreds of MB), not stored.
    """
    assert GST_LAUNCH is not None
    frame_bytes = width * height * 3
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [GST_LAUNCH, "-q", *launch_argv(pipeline)], stdout=subprocess.PIPE, stderr=err
        )
        assert proc.stdout is not None
        timer = threading.Timer(timeout_s, proc.kill)
        timer.start()
        try:
            total = 0
            while chunk := proc.stdout.read(1 << 20):
                total += len(chunk)
            rc = proc.wait()
        finally:
            timer.cancel()
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    assert rc == 0, f"gst-launch-1.0 failed ({rc}; killed after {timeout_s} s if -9): {stderr}"
    assert total % frame_bytes == 0, (total, frame_bytes, stderr)
    return total // frame_bytes


def video_facts(path: Path) -> tuple[int, int, int]:
    """Width, height and declared frame count of a file, from PyAV (independent of GStreamer)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return stream.codec_context.width, stream.codec_context.height, stream.frames


# -- files -----------------------------------------------------------------------------
def test_desktop_file_decodes_every_frame() -> None:
    """The whole clip (H.264 + an audio track) comes out as BGR, losslessly."""
    require_elements("filesrc", "decodebin", "videoconvert", "fdsink")
    clip = require_data("videos/car-detection.mp4")
    width, height, frames = video_facts(clip)
    pipeline = with_tail(desktop_file(clip), "fdsink fd=1")
    assert run_frames(pipeline, width, height) == frames == 377


def test_jetson_file_front_half_demuxes_and_parses() -> None:
    """filesrc ! qtdemux ! h264parse of the Jetson string, decoded by avdec_h264 here:
    every frame of a clip that also has an audio track."""
    require_elements("filesrc", "qtdemux", "h264parse", "avdec_h264", "videoconvert")
    clip = require_data("videos/car-detection.mp4")
    width, height, frames = video_facts(clip)
    pipeline = jetson_file(clip, codec="h264")
    assert JETSON_DECODE in pipeline
    pipeline = with_tail(pipeline.replace(JETSON_DECODE, "avdec_h264"), "fdsink fd=1")
    assert run_frames(pipeline, width, height) == frames == 377


def test_awkward_path_survives_gst_launch(tmp_path: Path) -> None:
    """Spaces, '!', quotes, commas and brackets in a real file's path."""
    require_elements("filesrc", "decodebin", "videoconvert", "identity", "fdsink")
    clip = require_data("videos/car-detection.mp4")
    width, height, _ = video_facts(clip)
    folder = tmp_path / "my videos (copy)"
    folder.mkdir()
    awkward = folder / 'cam 1 ! "front" it\'s, a=b; [x].mp4'
    awkward.symlink_to(clip)
    pipeline = with_tail(desktop_file(awkward), "identity eos-after=6 ! fdsink fd=1")
    assert run_frames(pipeline, width, height) >= 5  # eos-after is not exact for files


def test_quoting_round_trips_through_gst_parse_launch() -> None:
    """gst_parse_launch (what OpenCV calls) gives back every value exactly."""
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import gi; gi.require_version('Gst', '1.0')"],
        capture_output=True,
        check=False,
    )
    if probe.returncode != 0:
        pytest.skip(f"{SYSTEM_PYTHON} has no GStreamer gi bindings (apt install python3-gi)")
    values = [
        "/v/my clip.mp4",
        "/v/a!b.mp4",
        '/v/say "hi".mp4',
        "/v/back\\slash.mp4",
        "/v/ends\\",
        '/v/x\\"y.mp4',
        "/v/it's,a=b;c (1) {2} [3].mp4",
        "/v/ünï cödé.mp4",
    ]
    urls = ["rtsp://admin:p%40ss@10.0.0.5:554/s1?a=1&b=2", "rtsp://cam/live"]
    pipelines = [desktop_file(v) for v in values]
    pipelines += [desktop_rtsp(u) for u in urls]
    pipelines += [jetson_rtsp(u).replace(JETSON_DECODE, "avdec_h264") for u in urls]
    script = (
        "import json, sys\n"
        "import gi\n"
        "gi.require_version('Gst', '1.0')\n"
        "from gi.repository import Gst\n"
        "Gst.init(None)\n"
        "out = []\n"
        "for p in json.load(sys.stdin):\n"
        "    pl = Gst.parse_launch(p)\n"
        "    out.append(pl.iterate_sources().next()[1].get_property('location'))\n"
        "print(json.dumps(out))\n"
    )
    out = subprocess.run(
        [SYSTEM_PYTHON, "-c", script],
        input=json.dumps(pipelines),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == values + urls + urls


# -- RTSP against a real server --------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A running scripts/rtsp_server.py."""

    proc: subprocess.Popen[str]
    url: str
    stderr: IO[bytes]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.stderr.close()


def start_server(*extra: str) -> Server:
    """Start scripts/rtsp_server.py on a free port and wait for its READY line."""
    probe = subprocess.run(
        [
            SYSTEM_PYTHON,
            "-c",
            "import gi; gi.require_version('Gst', '1.0'); "
            "gi.require_version('GstRtspServer', '1.0')",
        ],
        capture_output=True,
        check=False,
    )
    if probe.returncode != 0:
        pytest.skip(
            "the RTSP test server needs the system Python with GstRtspServer "
            "(apt install python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp)"
        )
    port = free_port()
    stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed by Server.stop)
    proc = subprocess.Popen(
        [SYSTEM_PYTHON, SERVER, "--port", str(port), "--pattern", "ball", "--fps", "25", *extra],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    assert proc.stdout is not None
    timer = threading.Timer(15.0, proc.kill)  # readline() cannot time out by itself
    timer.start()
    try:
        line = proc.stdout.readline()
    finally:
        timer.cancel()
    server = Server(proc, line.split()[1] if line.startswith("READY ") else "", stderr)
    if not server.url:
        proc.kill()
        proc.wait(timeout=5)
        stderr.seek(0)
        err = stderr.read().decode(errors="replace")
        server.stop()
        raise AssertionError(f"RTSP server did not print READY within 15 s: {line!r} {err}")
    return server


@pytest.fixture(scope="module")
def rtsp_url() -> Iterator[str]:
    server = start_server()
    try:
        yield server.url
    finally:
        server.stop()


def rtsp_frames(pipeline: str, n: int) -> int:
    tail = f"identity eos-after={n + 1} ! fdsink fd=1"
    return run_frames(with_tail(pipeline, tail), SERVER_W, SERVER_H)


@pytest.mark.parametrize("transport", ["tcp", "udp", "auto"])
def test_desktop_rtsp_plays_from_a_real_server(rtsp_url: str, transport: str) -> None:
    require_elements("rtspsrc", "decodebin", "videoconvert", "identity", "fdsink")
    pipeline = desktop_rtsp(rtsp_url, latency_ms=100, transport=transport)
    assert rtsp_frames(pipeline, 10) >= 10


def test_jetson_rtsp_front_half_depayloads_and_parses(rtsp_url: str) -> None:
    """rtspsrc ! rtph264depay ! h264parse of the Jetson string, decoded by avdec_h264 here."""
    require_elements("rtspsrc", "rtph264depay", "h264parse", "avdec_h264", "videoconvert")
    pipeline = jetson_rtsp(rtsp_url, codec="h264", latency_ms=100)
    assert JETSON_DECODE in pipeline
    assert rtsp_frames(pipeline.replace(JETSON_DECODE, "avdec_h264"), 10) >= 10


def test_desktop_rtsp_passes_credentials_to_the_server() -> None:
    """The credentials kept in the pipeline string really authenticate."""
    require_elements("rtspsrc", "decodebin", "videoconvert", "identity", "fdsink")
    server = start_server("--user", "viewer", "--password", "pa ss!word")
    url = server.url
    try:
        good = url.replace("rtsp://", "rtsp://viewer:pa%20ss%21word@")
        assert rtsp_frames(desktop_rtsp(good, latency_ms=100), 5) >= 5
        bad = url.replace("rtsp://", "rtsp://viewer:wrong@")
        assert GST_LAUNCH is not None
        out = subprocess.run(
            [GST_LAUNCH, "-q", *launch_argv(with_tail(desktop_rtsp(bad), "fakesink"))],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
        assert out.returncode != 0
        assert "Unauthorized" in out.stderr or "401" in out.stderr, out.stderr
    finally:
        server.stop()


# -- GStreamerSource itself, where an OpenCV with GStreamer exists ----------------------
SOURCE_SCRIPT = """
import json, sys
from streamer.errors import SourceError
from streamer.sources.gstreamer import GStreamerSource
args = json.loads(sys.argv[1])
out = {}
src = GStreamerSource(preset="desktop_file", preset_args={"path": args["clip"]}, source_id="f")
info = src.open()
frames = []
while (f := src.read()) is not None:
    frames.append(f)
src.close()
src.close()
out["file"] = {
    "info": [info.fps, info.width_px, info.height_px, info.frame_count, info.uri],
    "n": len(frames),
    "seq_ok": [f.seq for f in frames] == list(range(len(frames))),
    "shapes": sorted({str(f.image.shape) + str(f.image.dtype) for f in frames}),
    "pts_last_ns": frames[-1].pts_ns,
}
src = GStreamerSource(
    preset="desktop_rtsp",
    preset_args={"url": args["url"], "latency_ms": 100},
    source_id="cam",
    read_timeout_s=2,
)
info = src.open()
got = [src.read() for _ in range(10)]
out["rtsp"] = {
    "info": [info.width_px, info.height_px, info.frame_count, info.uri, repr(src)],
    "seqs": [f.seq for f in got],
    "pts_increasing": all(b.pts_ns > a.pts_ns for a, b in zip(got, got[1:])),
    "shape": str(got[-1].image.shape),
}
print("KILL", flush=True)
sys.stdin.readline()  # the test kills the server, then says go
try:
    while src.read() is not None:
        pass
    out["after_kill"] = "ended without error"
except SourceError as e:
    out["after_kill"] = str(e)
src.close()
print(json.dumps(out), flush=True)
"""


def system_opencv_with_gstreamer() -> bool:
    probe = subprocess.run(
        [
            SYSTEM_PYTHON,
            "-c",
            "import av, numpy, cv2, sys; "
            "sys.exit(0 if any(l.strip().startswith('GStreamer:') and 'YES' in l "
            "for l in cv2.getBuildInformation().splitlines()) else 1)",
        ],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


@pytest.mark.skipif(
    not system_opencv_with_gstreamer(),
    reason=f"no OpenCV with GStreamer (and PyAV) for {SYSTEM_PYTHON}; the venv's pip OpenCV "
    "has none (apt install python3-opencv python3-av to run this)",
)
def test_gstreamer_source_reads_through_a_real_opencv_gstreamer_backend() -> None:
    """GStreamerSource end to end in the system Python, whose OpenCV has GStreamer.

    The file preset gives every frame losslessly; the RTSP preset (with credentials)
    gives fresh frames and never shows the password; a killed server fails the read.
    """
    require_elements("rtspsrc", "decodebin", "videoconvert", "appsink")
    clip = require_data("videos/car-detection.mp4")
    width, height, frames = video_facts(clip)
    server = start_server("--user", "viewer", "--password", "s3cret")
    try:
        url = server.url.replace("rtsp://", "rtsp://viewer:s3cret@")
        proc = subprocess.Popen(
            [SYSTEM_PYTHON, "-c", SOURCE_SCRIPT, json.dumps({"clip": str(clip), "url": url})],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        assert proc.stdin is not None and proc.stdout is not None
        timer = threading.Timer(60.0, proc.kill)
        timer.start()
        try:
            assert proc.stdout.readline().strip() == "KILL"
            server.proc.kill()
            server.proc.wait(timeout=5)
            proc.stdin.write("go\n")
            proc.stdin.flush()
            result = json.loads(proc.stdout.readline())
            proc.wait()
        finally:
            timer.cancel()
    finally:
        server.stop()
    assert result["file"] == {
        "info": [12.5, width, height, None, str(clip)],
        "n": frames,
        "seq_ok": True,
        "shapes": [f"({height}, {width}, 3)uint8"],
        "pts_last_ns": round((frames - 1) / 12.5 * 1e9),
    }
    rtsp = result["rtsp"]
    redacted = server.url.replace("rtsp://", "rtsp://***@")
    assert rtsp["info"][:4] == [SERVER_W, SERVER_H, None, redacted]
    assert "s3cret" not in rtsp["info"][4]
    assert rtsp["seqs"] == list(range(10)) and rtsp["pts_increasing"]
    assert rtsp["shape"] == f"({SERVER_H}, {SERVER_W}, 3)"
    assert result["after_kill"].startswith("source 'cam': GStreamer pipeline gave no frame at")
    assert "s3cret" not in result["after_kill"]
