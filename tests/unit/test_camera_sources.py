"""Camera (V4L2) and GStreamer sources: everything that can be checked without a camera.

Nothing here mocks OpenCV: the error paths run against the real ``cv2`` (a missing
device, a file that is not a device, ``/dev/null`` which V4L2 refuses, a real
character device this user may not open), the preset strings are compared exactly,
and the GStreamer check reads the real build information. A real camera is used
when one is present (``/dev/video*`` or ``$STREAMER_TEST_CAMERA``).
"""

from __future__ import annotations

import glob
import itertools
import os
import re
import shutil
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from streamer.errors import SourceError
from streamer.sources import gstreamer as gst
from streamer.sources.camera import (
    V4L2CameraSource,
    device_path,
    fourcc_to_int,
    int_to_fourcc,
)
from streamer.sources.gstreamer import (
    GStreamerSource,
    build_preset,
    desktop_file,
    desktop_rtsp,
    gstreamer_in_build_info,
    jetson_csi,
    jetson_file,
    jetson_rtsp,
    opencv_has_gstreamer,
    opencv_has_gstreamer_timeouts,
    quote_value,
    redact_pipeline,
)

REPO = Path(__file__).resolve().parents[2]
LIVE = "appsink drop=true max-buffers=1 sync=false"
FILE = "appsink drop=false max-buffers=1 sync=false"
BGR = "videoconvert ! video/x-raw,format=BGR"
JETSON_BGR = f"nvvidconv ! video/x-raw,format=BGRx ! {BGR}"
URL = "rtsp://admin:s3cret@10.0.0.5:554/stream1"


# -- FOURCC ----------------------------------------------------------------------------
@pytest.mark.parametrize("code", ["MJPG", "YUYV", "H264", "NV12", "Y16 ", "GREY", "BGR3"])
def test_fourcc_packs_like_opencv_and_round_trips(code: str) -> None:
    value = fourcc_to_int(code)
    assert value == cv2.VideoWriter_fourcc(*code)
    assert int_to_fourcc(value) == code
    assert int_to_fourcc(float(value)) == code  # cap.get() returns a float


def test_fourcc_byte_order() -> None:
    assert fourcc_to_int("MJPG") == 0x47504A4D  # 'M' is the least significant byte
    assert int_to_fourcc(0) == ""


@pytest.mark.parametrize("code", ["MJP", "MJPEG", "", "MJ\tG", "MJPÉ", None, 1196444237])
def test_fourcc_rejects_bad_codes(code: object) -> None:
    with pytest.raises(ValueError, match=r"^fourcc: must be 4 printable ASCII characters"):
        fourcc_to_int(code)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [-1, 2**32, 1.5])
def test_int_to_fourcc_rejects_out_of_range(value: float) -> None:
    with pytest.raises(ValueError, match="fourcc value"):
        int_to_fourcc(value)


# -- V4L2CameraSource: arguments -------------------------------------------------------
@pytest.mark.parametrize(
    ("device", "path"),
    [(0, "/dev/video0"), (12, "/dev/video12"), ("/dev/v4l/by-id/usb-x-video-index0", None)],
)
def test_device_path(device: str | int, path: str | None) -> None:
    assert device_path(device) == (path or device)


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"device": -1}, "device"),
        ({"device": True}, "device"),
        ({"device": ""}, "device"),
        ({"device": 1.0}, "device"),
        ({"width_px": 0}, "width_px"),
        ({"height_px": -480}, "height_px"),
        ({"width_px": 640.5}, "width_px"),
        ({"fps": 0}, "fps"),
        ({"fps": True}, "fps"),
        ({"read_timeout_s": 0}, "read_timeout_s"),
        ({"buffer_size": 0}, "buffer_size"),
        ({"buffer_size": 11}, "buffer_size"),
        ({"buffer_size": 1.0}, "buffer_size"),
        ({"fourcc": "MJPEG"}, "fourcc"),
    ],
)
def test_camera_bad_arguments_name_the_argument(kwargs: dict, argument: str) -> None:
    with pytest.raises(ValueError, match=rf"^{argument}: "):
        V4L2CameraSource(**kwargs)


# -- V4L2CameraSource: open errors against the real OpenCV -----------------------------
def _free_video_index() -> int:
    n = 0
    while os.path.exists(f"/dev/video{n}"):
        n += 1
    return n


def test_missing_device_says_to_plug_it_in() -> None:
    n = _free_video_index()
    src = V4L2CameraSource(n, source_id="usb0")
    with pytest.raises(SourceError) as e:
        src.open()
    assert str(e.value) == (
        f"source 'usb0': camera device /dev/video{n} not found "
        "(is the camera plugged in? ls /dev/video*)"
    )


def test_regular_file_is_not_a_camera(tmp_path: Path) -> None:
    fake = tmp_path / "video0"
    fake.write_bytes(b"not a device")
    with pytest.raises(SourceError, match=r"^source 'usb0': .*video0 is not a camera device"):
        V4L2CameraSource(str(fake), source_id="usb0").open()


def test_device_opencv_cannot_open() -> None:
    """/dev/null is a character device that V4L2 rejects (VIDIOC_QUERYCAP fails)."""
    src = V4L2CameraSource("/dev/null", source_id="usb0")
    with pytest.raises(SourceError) as e:
        src.open()
    assert str(e.value).startswith(
        "source 'usb0': OpenCV cannot open camera device /dev/null with V4L2"
    )
    src.close()
    src.close()  # idempotent


DROP_DAC_OVERRIDE = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root (to create a device node) and util-linux setpriv (to drop root's "
    "permission override); as a normal user no device here is unreadable on purpose",
)
def test_device_without_permission_names_the_video_group(tmp_path: Path) -> None:
    """A real character device (1,3 = null), mode 600 for another user, opened by root
    without CAP_DAC_OVERRIDE: the kernel refuses it as it would a camera outside 'video'."""
    node = tmp_path / "video0"
    try:
        os.mknod(node, stat.S_IFCHR | 0o600, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("this container may not create device nodes (no CAP_MKNOD)")
    os.chown(node, 65534, 65534)
    code = (
        "from streamer.sources.camera import V4L2CameraSource\n"
        "from streamer.errors import SourceError\n"
        f"try:\n    V4L2CameraSource({str(node)!r}, source_id='usb0').open()\n"
        "except SourceError as e:\n    print(e)\n"
    )
    out = subprocess.run(
        [*DROP_DAC_OVERRIDE, sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    if "setpriv" in out.stderr:
        pytest.skip(f"setpriv cannot drop capabilities here: {out.stderr.strip()}")
    assert out.stdout.strip() == (
        f"source 'usb0': no permission to open camera device {node} (add the user to "
        "the 'video' group: sudo usermod -aG video $USER, then log in again)"
    ), out.stderr


def test_read_before_open() -> None:
    with pytest.raises(SourceError, match=r"^source 'usb0': read before open$"):
        V4L2CameraSource(0, source_id="usb0").read()


def _real_camera() -> str | None:
    env = os.environ.get("STREAMER_TEST_CAMERA")
    if env:
        return env
    found = sorted(glob.glob("/dev/video*"))
    return found[0] if found else None


@pytest.mark.skipif(
    _real_camera() is None,
    reason="no V4L2 camera here (/dev/video* absent) and v4l2loopback cannot be loaded "
    "(no kernel modules in a container); set STREAMER_TEST_CAMERA=/dev/videoN to run",
)
def test_real_camera_reads_fresh_frames_and_stops_promptly() -> None:
    path = _real_camera()
    assert path is not None
    src = V4L2CameraSource(path, source_id="cam", read_timeout_s=3.0)
    stop = threading.Event()
    src.bind_stop(stop)
    info = src.open()
    try:
        assert info.frame_count is None and info.fps > 0 and info.uri == path
        frames = [src.read() for _ in range(5)]
        seqs = [f.seq for f in frames if f is not None]
        assert seqs == [0, 1, 2, 3, 4]
        pts = [f.pts_ns for f in frames if f is not None]
        assert all(b > a for a, b in itertools.pairwise(pts))
        for f in frames:
            assert f is not None
            assert f.image.shape == (info.height_px, info.width_px, 3)
            assert f.image.dtype == np.uint8
        stop.set()
        t0 = time.monotonic()
        assert src.read() is None
        assert time.monotonic() - t0 < 0.5
    finally:
        src.close()


# -- GStreamer presets: exact strings --------------------------------------------------
@pytest.mark.parametrize(
    ("pipeline", "expected"),
    [
        (
            jetson_csi(),
            "nvarguscamerasrc sensor-id=0 ! video/x-raw(memory:NVMM),width=1920,height=1080,"
            f"framerate=30/1,format=NV12 ! nvvidconv flip-method=0 ! video/x-raw,format=BGRx ! "
            f"{BGR} ! {LIVE}",
        ),
        (
            jetson_csi(sensor_id=1, width_px=1280, height_px=720, fps=60, flip_method=2),
            "nvarguscamerasrc sensor-id=1 ! video/x-raw(memory:NVMM),width=1280,height=720,"
            f"framerate=60/1,format=NV12 ! nvvidconv flip-method=2 ! video/x-raw,format=BGRx ! "
            f"{BGR} ! {LIVE}",
        ),
        (
            jetson_rtsp(URL),
            f'rtspsrc location="{URL}" latency=200 protocols=tcp ! rtph264depay ! h264parse ! '
            f"nvv4l2decoder ! {JETSON_BGR} ! {LIVE}",
        ),
        (
            jetson_rtsp(URL, codec="h265", latency_ms=0, transport="udp"),
            f'rtspsrc location="{URL}" latency=0 protocols=udp ! rtph265depay ! h265parse ! '
            f"nvv4l2decoder ! {JETSON_BGR} ! {LIVE}",
        ),
        (
            jetson_rtsp(URL, transport="auto"),
            f'rtspsrc location="{URL}" latency=200 ! rtph264depay ! h264parse ! '
            f"nvv4l2decoder ! {JETSON_BGR} ! {LIVE}",
        ),
        (
            jetson_file("/data/clip.mp4"),
            'filesrc location="/data/clip.mp4" ! qtdemux ! h264parse ! nvv4l2decoder ! '
            f"{JETSON_BGR} ! {FILE}",
        ),
        (
            jetson_file(Path("/data/clip.MKV"), codec="h265"),
            'filesrc location="/data/clip.MKV" ! matroskademux ! h265parse ! nvv4l2decoder ! '
            f"{JETSON_BGR} ! {FILE}",
        ),
        (
            jetson_file("rec.ts"),
            f'filesrc location="rec.ts" ! tsdemux ! h264parse ! nvv4l2decoder ! {JETSON_BGR} ! '
            f"{FILE}",
        ),
        (
            desktop_rtsp(URL),
            f'rtspsrc location="{URL}" latency=200 protocols=tcp ! decodebin ! {BGR} ! {LIVE}',
        ),
        (
            desktop_rtsp("rtsps://cam.local/live", latency_ms=50, transport="udp"),
            'rtspsrc location="rtsps://cam.local/live" latency=50 protocols=udp ! decodebin ! '
            f"{BGR} ! {LIVE}",
        ),
        (
            desktop_file("../shared/data/videos/car-detection.mp4"),
            'filesrc location="../shared/data/videos/car-detection.mp4" ! decodebin ! '
            f"{BGR} ! {FILE}",
        ),
    ],
)
def test_preset_strings(pipeline: str, expected: str) -> None:
    assert pipeline == expected


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        ("/videos/my clip.mp4", '"/videos/my clip.mp4"'),
        ("/v/a!b.mp4", '"/v/a!b.mp4"'),
        ('/v/say "hi".mp4', '"/v/say \\"hi\\".mp4"'),
        ("/v/back\\slash.mp4", '"/v/back\\\\slash.mp4"'),
        ("/v/ends\\", '"/v/ends\\\\"'),
        ("/v/it's,a=b;c (1).mp4", '"/v/it\'s,a=b;c (1).mp4"'),
        ("/v/ünï cödé.mp4", '"/v/ünï cödé.mp4"'),
    ],
)
def test_locations_are_quoted_and_escaped(value: str, quoted: str) -> None:
    assert quote_value("path", value) == quoted
    assert desktop_file(value) == f"filesrc location={quoted} ! decodebin ! {BGR} ! {FILE}"


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda: jetson_csi(sensor_id=-1), "sensor_id"),
        (lambda: jetson_csi(width_px=0), "width_px"),
        (lambda: jetson_csi(height_px=1080.0), "height_px"),
        (lambda: jetson_csi(fps=29.97), "fps"),
        (lambda: jetson_csi(fps=True), "fps"),
        (lambda: jetson_csi(flip_method=8), "flip_method"),
        (lambda: jetson_rtsp("http://cam/stream"), "url"),
        (lambda: jetson_rtsp(URL, codec="vp9"), "codec"),
        (lambda: jetson_rtsp(URL, latency_ms=-1), "latency_ms"),
        (lambda: jetson_rtsp(URL, transport="sctp"), "transport"),
        (lambda: jetson_file("/v/clip.avi"), "path"),
        (lambda: jetson_file("/v/clip"), "path"),
        (lambda: jetson_file("/v/clip.mp4", codec="H264"), "codec"),
        (lambda: desktop_rtsp(""), "url"),
        (lambda: desktop_rtsp(URL + "\n"), "url"),
        (lambda: desktop_rtsp(URL, latency_ms="200"), "latency_ms"),
        (lambda: desktop_file(""), "path"),
        (lambda: desktop_file("/v/a\nb.mp4"), "path"),
        (lambda: desktop_file("/v/a\x00b.mp4"), "path"),
        (lambda: desktop_file(None), "path"),
    ],
)
def test_bad_preset_arguments_name_the_argument(call: Callable[[], str], argument: str) -> None:
    with pytest.raises(ValueError, match=rf"^{argument}: "):
        call()


def test_bad_url_errors_do_not_show_credentials() -> None:
    with pytest.raises(ValueError) as e:
        desktop_rtsp("http://admin:s3cret@cam/stream")
    assert "s3cret" not in str(e.value) and "***@cam" in str(e.value)
    with pytest.raises(ValueError) as e:
        desktop_rtsp(URL + "\n")
    assert "s3cret" not in str(e.value)


def test_build_preset_by_name() -> None:
    assert build_preset("desktop_file", {"path": "/v/a.mp4"}) == desktop_file("/v/a.mp4")
    assert build_preset("jetson_csi") == jetson_csi()
    with pytest.raises(ValueError, match=r"^preset: unknown 'jetson_usb'; known: jetson_csi, "):
        build_preset("jetson_usb")
    with pytest.raises(ValueError, match=r"^preset_args: desktop_rtsp does not take latency; "):
        build_preset("desktop_rtsp", {"url": URL, "latency": 10})
    with pytest.raises(ValueError, match=r"^preset_args: jetson_file needs path$"):
        build_preset("jetson_file", {})


def test_redact_pipeline() -> None:
    text = f'rtspsrc location="{URL}" ! decodebin ! fakesink'
    assert redact_pipeline(text) == (
        'rtspsrc location="rtsp://***@10.0.0.5:554/stream1" ! decodebin ! fakesink'
    )
    assert redact_pipeline("rtspsrc location=rtsp://u:p!w@h/x ! fakesink") == (
        "rtspsrc location=rtsp://***@h/x ! fakesink"
    )
    assert redact_pipeline(jetson_csi()) == jetson_csi()


# -- OpenCV GStreamer detection --------------------------------------------------------
BUILD_INFO = """
  Video I/O:
    FFMPEG:                      YES
      avcodec:                   YES (62.28.101)
    GStreamer:                   {value}
    v4l/v4l2:                    YES (linux/videodev2.h)
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (BUILD_INFO.format(value="NO"), False),
        (BUILD_INFO.format(value="YES (1.22.0)"), True),
        (BUILD_INFO.format(value="YES (1.16.3)"), True),
        (BUILD_INFO.replace("    GStreamer:                   {value}\n", ""), False),
        ("", False),
        ("  GStreamer:   YES (ver 1.0)\n", True),  # no Video I/O heading (old builds)
        ("  Other:\n    GStreamer: YES\n  Video I/O:\n    GStreamer: NO\n", False),
    ],
)
def test_gstreamer_in_build_info(text: str, expected: bool) -> None:
    assert gstreamer_in_build_info(text) is expected


def test_opencv_has_gstreamer_agrees_with_build_info() -> None:
    lines = [
        line.split(":", 1)[1].strip()
        for line in cv2.getBuildInformation().splitlines()
        if line.strip().startswith("GStreamer:")
    ]
    assert lines, "the OpenCV build information has no GStreamer line"
    assert opencv_has_gstreamer() is lines[0].startswith("YES")


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("4.5.4", False),  # JetPack 5
        ("4.6.0", False),  # Debian 12
        ("4.7.0", True),  # opencv/opencv#22919
        ("4.8.0", True),  # JetPack 6
        ("4.10.0-dev", True),
        ("5.0.0", True),
        ("3.4.20", False),
        ("unknown", False),
    ],
)
def test_gstreamer_timeouts_need_opencv_4_7(version: str, expected: bool) -> None:
    assert opencv_has_gstreamer_timeouts(version) is expected


# -- GStreamerSource -------------------------------------------------------------------
def test_source_needs_exactly_one_of_pipeline_or_preset() -> None:
    with pytest.raises(ValueError, match="exactly one of pipeline or preset"):
        GStreamerSource()
    with pytest.raises(ValueError, match="exactly one of pipeline or preset"):
        GStreamerSource(pipeline=desktop_file("/a.mp4"), preset="desktop_file")
    with pytest.raises(ValueError, match=r"^preset_args: "):
        GStreamerSource(pipeline=desktop_file("/a.mp4"), preset_args={"path": "/a.mp4"})
    with pytest.raises(ValueError, match=r"^pipeline: must end in an appsink"):
        GStreamerSource(pipeline="videotestsrc ! autovideosink")
    with pytest.raises(ValueError, match=r"^read_timeout_s: "):
        GStreamerSource(preset="jetson_csi", read_timeout_s=0)
    with pytest.raises(ValueError, match=r"^fps: "):
        GStreamerSource(preset="jetson_csi", fps=0)
    with pytest.raises(ValueError, match=r"^flip_method: "):
        GStreamerSource(preset="jetson_csi", preset_args={"flip_method": 9})


def test_source_never_shows_credentials() -> None:
    src = GStreamerSource(preset="desktop_rtsp", preset_args={"url": URL}, source_id="door")
    assert src.pipeline == desktop_rtsp(URL)  # GStreamer needs them
    assert src.uri == "rtsp://***@10.0.0.5:554/stream1"
    assert "s3cret" not in repr(src)
    custom = GStreamerSource(pipeline=desktop_rtsp(URL), source_id="door")
    assert "s3cret" not in custom.uri and "s3cret" not in repr(custom)
    with pytest.raises(SourceError) as e:
        src.open()
    assert "s3cret" not in str(e.value)


def test_source_kinds() -> None:
    assert GStreamerSource(preset="jetson_csi").live
    assert GStreamerSource(preset="jetson_csi").uri == "jetson_csi()"
    assert GStreamerSource(preset="jetson_csi", preset_args={"fps": 60}).default_fps == 60.0
    assert not GStreamerSource(preset="desktop_file", preset_args={"path": "/a.mp4"}).live
    assert GStreamerSource(pipeline=desktop_file("/a.mp4")).live  # custom: live unless told
    assert not GStreamerSource(pipeline=desktop_file("/a.mp4"), live=False).live


@pytest.mark.skipif(opencv_has_gstreamer(), reason="this OpenCV has GStreamer")
def test_open_without_gstreamer_says_what_to_install() -> None:
    src = GStreamerSource(preset="jetson_rtsp", preset_args={"url": URL}, source_id="gate")
    with pytest.raises(SourceError) as e:
        src.open()
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith(
        f"source 'gate': the installed OpenCV {cv2.__version__} ({cv2.__file__}) "
        "was built without GStreamer"
    )
    for fix in (
        "sudo apt install nvidia-opencv python3-opencv",
        "--system-site-packages",
        "pip uninstall opencv-python-headless",
        "sudo apt install python3-opencv gstreamer1.0-plugins-good gstreamer1.0-plugins-bad "
        "gstreamer1.0-libav",
        "-D WITH_GSTREAMER=ON",
    ):
        assert fix in message
    with pytest.raises(SourceError, match=r"^source 'gate': read before open$"):
        src.read()
    src.close()
    src.close()


def test_file_preset_reports_a_missing_file_first(tmp_path: Path) -> None:
    missing = tmp_path / "nope.mp4"
    src = GStreamerSource(preset="desktop_file", preset_args={"path": missing}, source_id="f")
    with pytest.raises(SourceError, match=re.escape(f"video file not found: {missing}")):
        src.open()


def test_presets_registry_matches_builders() -> None:
    assert set(gst.PRESETS) == {
        "jetson_csi",
        "jetson_rtsp",
        "jetson_file",
        "desktop_rtsp",
        "desktop_file",
    }
    for name, spec in gst.PRESETS.items():
        tail = LIVE if spec.live else FILE
        args = {"url": URL} if spec.location_arg == "url" else {}
        if spec.location_arg == "path":
            args = {"path": "/a.mp4"}
        assert build_preset(name, args).endswith(f"{BGR} ! {tail}"), name
