"""GStreamer pipeline source (OpenCV's GStreamer backend) and pipeline presets.

:class:`GStreamerSource` hands a ``gst-launch``-style pipeline to
``cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER)``. The pipeline must end in an
``appsink`` that receives ``video/x-raw,format=BGR``. That needs an OpenCV built
with GStreamer: the pip wheels (``opencv-python[-headless]``) are not, and
:func:`opencv_has_gstreamer` tells from ``cv2.getBuildInformation()``; ``open``
then fails with a message that says what to install.

Presets (pure functions returning the pipeline string). Elements:

* ``nvarguscamerasrc sensor-id=N``: Jetson CSI camera through the Argus ISP
  (debayer, auto-exposure) into NVMM (GPU) memory.
* ``video/x-raw(memory:NVMM),width=..,height=..,framerate=N/1,format=NV12``: the
  sensor mode to ask for, kept in NVMM memory.
* ``rtspsrc location=".." latency=MS protocols=tcp``: RTSP client; ``latency`` is
  its jitter buffer in ms, ``protocols`` the lower transport (``tcp`` interleaved,
  or ``udp``; omitted for ``transport="auto"``, which tries UDP, multicast, TCP).
* ``filesrc location=".."``: reads a file.
* ``qtdemux`` / ``matroskademux`` / ``tsdemux``: container demuxer for MP4/MOV,
  MKV/WebM and MPEG-TS (picked from the file extension).
* ``rtph264depay`` / ``rtph265depay``: RTP payload to H.264/H.265 byte stream.
* ``h264parse`` / ``h265parse``: splits the stream into access units and adds the
  caps the hardware decoder needs.
* ``nvv4l2decoder``: Jetson hardware decoder (NVDEC), output in NVMM memory.
* ``nvvidconv [flip-method=K]``: Jetson VIC: copies NVMM to CPU memory, converts
  colour, and rotates/flips (``flip-method`` 0 none, 1 90° ccw, 2 180°, 3 90° cw,
  4 horizontal flip, 5 upper-right diagonal, 6 vertical flip, 7 upper-left
  diagonal).
* ``video/x-raw,format=BGRx``: what ``nvvidconv`` can output in CPU memory (it has
  no 3-channel BGR).
* ``decodebin``: desktop: picks the depayloader, parser and (software or VA-API)
  decoder by itself.
* ``videoconvert ! video/x-raw,format=BGR``: CPU conversion to the 3-channel BGR
  that OpenCV wants.
* ``appsink drop=true max-buffers=1 sync=false`` (live presets): keep only the
  newest frame (freshness; the older one is dropped when the reader is slow) and
  do not pace to the clock.
* ``appsink drop=false max-buffers=1 sync=false`` (file presets): the decoder waits
  for the reader (back-pressure), so every frame of a file is read, losslessly, as
  fast as the reader goes. Dropping frames of a file would make results depend on
  timing.

Quoting: locations are always double-quoted with ``\\`` and ``"`` escaped by a
backslash, which ``gst_parse_launch`` (what OpenCV calls) turns back into the exact
value, so spaces, ``!``, quotes and backslashes in paths are safe. Control characters
(NUL, newline, tab, ...) are rejected with ValueError: a C string cannot hold NUL, and
a line break would split the one-line log and error messages.

Credentials: an RTSP URL may hold ``user:pass@``. The pipeline string keeps them
(GStreamer needs them), but ``repr``, ``StreamInfo.uri``, logs and errors show the
redacted form (:func:`streamer.sources.rtsp.redact_url`).

Timeouts: with OpenCV >= 4.7 (JetPack 6 ships 4.8) the source passes
``CAP_PROP_OPEN_TIMEOUT_MSEC`` (:data:`OPEN_TIMEOUT_MS`, at least the read timeout)
and ``CAP_PROP_READ_TIMEOUT_MSEC`` (``read_timeout_s``) when it opens the capture, so
a stalled live pipeline makes ``read`` fail within ``read_timeout_s``. Older OpenCV
(JetPack 5's 4.5.4, Debian 12's 4.6) has no such timeouts: a stalled pipeline blocks
``read`` until GStreamer reports an error (26–29 s against a frozen RTSP server,
measured with Debian's OpenCV 4.6; a killed server fails the next read at once);
this is logged once per open of a live source, at INFO level.
Calling ``set()`` on those versions is not an option: it stops the pipeline and
fails to restart it (measured with Debian's OpenCV 4.6).
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from streamer.errors import SourceError
from streamer.redact import redact_url, redact_urls
from streamer.types import Frame, StreamInfo

log = logging.getLogger("streamer.sources.gstreamer")

APPSINK_LIVE = "appsink drop=true max-buffers=1 sync=false"
"""Tail of live presets: newest frame only, not paced to the clock."""

APPSINK_FILE = "appsink drop=false max-buffers=1 sync=false"
"""Tail of file presets: back-pressure, every frame, as fast as the reader."""

TO_BGR = "videoconvert ! video/x-raw,format=BGR"
"""CPU conversion to the 3-channel BGR that OpenCV returns."""

_JETSON_TO_BGR = f"nvvidconv ! video/x-raw,format=BGRx ! {TO_BGR}"

CODECS = ("h264", "h265")
TRANSPORTS = ("tcp", "udp", "auto")
DEMUXERS: dict[str, str] = {
    ".mp4": "qtdemux",
    ".m4v": "qtdemux",
    ".mov": "qtdemux",
    ".mkv": "matroskademux",
    ".webm": "matroskademux",
    ".ts": "tsdemux",
    ".m2ts": "tsdemux",
}

OPEN_TIMEOUT_MS = 10_000
"""Longest wait for a pipeline to start playing, ms (OpenCV >= 4.7; at least the read
timeout): an RTSP camera must answer and send a first keyframe within it."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# -- OpenCV build detection ------------------------------------------------------------
def gstreamer_in_build_info(build_info: str) -> bool:
    """Whether an OpenCV build-information text says GStreamer support is built in.

    Looks for the ``GStreamer:`` line (in the ``Video I/O:`` section when there is
    one) and returns True when its value starts with ``YES`` (``YES (1.22.0)``).

    Args:
        build_info: The text of ``cv2.getBuildInformation()``.

    Returns:
        True for ``YES ...``; False for ``NO`` or when there is no such line.
    """
    start = build_info.find("Video I/O:")
    section = build_info[start:] if start >= 0 else build_info
    match = re.search(r"^\s*GStreamer:\s*(.*)$", section, re.MULTILINE)
    return match is not None and match.group(1).strip().upper().startswith("YES")


def opencv_has_gstreamer() -> bool:
    """Whether the imported ``cv2`` was built with GStreamer (pip wheels: False)."""
    return gstreamer_in_build_info(cv2.getBuildInformation())


def opencv_has_gstreamer_timeouts(version: str | None = None) -> bool:
    """Whether OpenCV's GStreamer backend takes open/read timeouts (OpenCV >= 4.7).

    They arrived with opencv/opencv#22919 (4.7.0). Older backends refuse them as
    unknown open parameters, and ``set()`` after opening is worse there: it stops
    the pipeline and, failing to restart it, destroys it. So they are only passed,
    at construction, to a backend that knows them.

    Args:
        version: An OpenCV version string; default ``cv2.__version__``.
    """
    match = re.match(r"(\d+)\.(\d+)", version or cv2.__version__)
    return match is not None and (int(match.group(1)), int(match.group(2))) >= (4, 7)


def gstreamer_missing_message(source_id: str) -> str:
    """One-line reason and fix for an OpenCV built without GStreamer."""
    return (
        f"source '{source_id}': the installed OpenCV {cv2.__version__} ({cv2.__file__}) "
        "was built without GStreamer (cv2.getBuildInformation() says 'GStreamer: NO'; "
        "the pip wheels opencv-python[-headless] never have it). "
        "On Jetson use JetPack's OpenCV: sudo apt install nvidia-opencv python3-opencv, "
        "create the venv with --system-site-packages and pip uninstall "
        "opencv-python-headless opencv-python in it. "
        "On desktop Debian/Ubuntu: sudo apt install python3-opencv "
        "gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-libav "
        "(same venv steps), or build OpenCV with -D WITH_GSTREAMER=ON"
    )


# -- argument checks -------------------------------------------------------------------
def quote_value(name: str, value: str | os.PathLike[str]) -> str:
    """Double-quote a property value for ``gst_parse_launch`` (``\\`` and ``"`` escaped).

    Args:
        name: Argument name, for the error message.
        value: A path or URL.

    Returns:
        ``"..."``, which GStreamer's parser turns back into exactly ``value``.

    Raises:
        ValueError: ``value`` is empty or holds a control character.
    """
    text = os.fspath(value) if isinstance(value, (str, os.PathLike)) else None
    if not isinstance(text, str) or not text:
        raise ValueError(f"{name}: must be a non-empty string, got {value!r}")
    if _CONTROL.search(text):
        raise ValueError(
            f"{name}: control characters (newline, tab, NUL, ...) are not allowed, "
            f"got {redact_url(text)!r}"
        )
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _int_in(name: str, value: Any, low: int, high: int | None = None) -> int:
    ok = isinstance(value, int) and not isinstance(value, bool)
    if not ok or value < low or (high is not None and value > high):
        bounds = f"in {low}..{high}" if high is not None else f">= {low}"
        raise ValueError(f"{name}: must be an integer {bounds}, got {value!r}")
    return int(value)


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name}: must be one of {', '.join(choices)}; got {value!r}")
    return str(value)


def _rtsp_url(url: Any) -> str:
    if not isinstance(url, str) or not re.match(r"^rtsps?[a-z]?://", url, re.IGNORECASE):
        shown = redact_url(url) if isinstance(url, str) else url
        raise ValueError(f"url: must start with rtsp:// or rtsps://, got {shown!r}")
    return quote_value("url", url)


def _protocols(transport: str) -> str:
    return "" if transport == "auto" else f" protocols={transport}"


def _demuxer(path: str | os.PathLike[str]) -> str:
    suffix = Path(os.fspath(path)).suffix.lower()
    if suffix not in DEMUXERS:
        raise ValueError(
            f"path: cannot pick a demuxer for {suffix or 'a file without extension'!r} "
            f"(known: {', '.join(DEMUXERS)}); use desktop_file or a custom pipeline"
        )
    return DEMUXERS[suffix]


# -- presets ---------------------------------------------------------------------------
def jetson_csi(
    sensor_id: int = 0,
    width_px: int = 1920,
    height_px: int = 1080,
    fps: int = 30,
    flip_method: int = 0,
) -> str:
    """Jetson CSI camera (Argus) → BGR appsink, newest frame only.

    Args:
        sensor_id: CSI port / sensor index, >= 0.
        width_px: Sensor mode width, pixels.
        height_px: Sensor mode height, pixels.
        fps: Frame rate, whole frames per second.
        flip_method: ``nvvidconv`` rotation/flip, 0..7 (see the module docstring).

    Returns:
        The pipeline string.

    Raises:
        ValueError: a bad argument (names it).
    """
    sensor_id = _int_in("sensor_id", sensor_id, 0)
    width_px = _int_in("width_px", width_px, 1)
    height_px = _int_in("height_px", height_px, 1)
    fps = _int_in("fps", fps, 1)
    flip_method = _int_in("flip_method", flip_method, 0, 7)
    return (
        f"nvarguscamerasrc sensor-id={sensor_id} ! "
        f"video/x-raw(memory:NVMM),width={width_px},height={height_px},"
        f"framerate={fps}/1,format=NV12 ! "
        f"nvvidconv flip-method={flip_method} ! video/x-raw,format=BGRx ! "
        f"{TO_BGR} ! {APPSINK_LIVE}"
    )


def jetson_rtsp(
    url: str, codec: str = "h264", latency_ms: int = 200, transport: str = "tcp"
) -> str:
    """RTSP camera decoded by the Jetson hardware decoder → BGR appsink, newest frame only.

    Args:
        url: ``rtsp://[user:pass@]host[:port]/path`` (or ``rtsps://``).
        codec: ``h264`` or ``h265`` (what the camera sends).
        latency_ms: ``rtspsrc`` jitter buffer, ms (>= 0; lower is fresher, higher
            rides out network jitter).
        transport: ``tcp``, ``udp`` or ``auto`` (rtspsrc's default order).

    Returns:
        The pipeline string (it contains the credentials; never log it as is).

    Raises:
        ValueError: a bad argument (names it; the URL shown redacted).
    """
    location = _rtsp_url(url)
    codec = _choice("codec", codec, CODECS)
    latency_ms = _int_in("latency_ms", latency_ms, 0)
    transport = _choice("transport", transport, TRANSPORTS)
    return (
        f"rtspsrc location={location} latency={latency_ms}{_protocols(transport)} ! "
        f"rtp{codec}depay ! {codec}parse ! nvv4l2decoder ! {_JETSON_TO_BGR} ! {APPSINK_LIVE}"
    )


def jetson_file(path: str | os.PathLike[str], codec: str = "h264") -> str:
    """Video file decoded by the Jetson hardware decoder → BGR appsink, every frame.

    Args:
        path: MP4/MOV/M4V, MKV/WebM or MPEG-TS file (the extension picks the demuxer).
        codec: ``h264`` or ``h265`` (the file's video codec).

    Returns:
        The pipeline string.

    Raises:
        ValueError: a bad argument or an extension with no known demuxer (names it).
    """
    location = quote_value("path", path)
    demux = _demuxer(path)
    codec = _choice("codec", codec, CODECS)
    return (
        f"filesrc location={location} ! {demux} ! {codec}parse ! nvv4l2decoder ! "
        f"{_JETSON_TO_BGR} ! {APPSINK_FILE}"
    )


def desktop_rtsp(url: str, latency_ms: int = 200, transport: str = "tcp") -> str:
    """RTSP camera decoded by whatever ``decodebin`` picks → BGR appsink, newest frame only.

    Args:
        url: ``rtsp://[user:pass@]host[:port]/path`` (or ``rtsps://``).
        latency_ms: ``rtspsrc`` jitter buffer, ms (>= 0).
        transport: ``tcp``, ``udp`` or ``auto``.

    Returns:
        The pipeline string (it contains the credentials; never log it as is).

    Raises:
        ValueError: a bad argument (names it; the URL shown redacted).
    """
    location = _rtsp_url(url)
    latency_ms = _int_in("latency_ms", latency_ms, 0)
    transport = _choice("transport", transport, TRANSPORTS)
    return (
        f"rtspsrc location={location} latency={latency_ms}{_protocols(transport)} ! "
        f"decodebin ! {TO_BGR} ! {APPSINK_LIVE}"
    )


def desktop_file(path: str | os.PathLike[str]) -> str:
    """Any video file GStreamer can play, via ``decodebin`` → BGR appsink, every frame.

    Args:
        path: Video file.

    Returns:
        The pipeline string.

    Raises:
        ValueError: a bad path (names it).
    """
    location = quote_value("path", path)
    return f"filesrc location={location} ! decodebin ! {TO_BGR} ! {APPSINK_FILE}"


@dataclass(frozen=True)
class Preset:
    """A named pipeline builder.

    Attributes:
        build: Function of keyword arguments returning the pipeline string.
        live: True for cameras/streams (newest frame only, never ends by itself);
            False for files (every frame, None at the end).
        location_arg: Name of the argument holding a file path or URL, shown
            (redacted) as ``StreamInfo.uri``.
    """

    build: Callable[..., str]
    live: bool
    location_arg: str | None


PRESETS: dict[str, Preset] = {
    "jetson_csi": Preset(jetson_csi, live=True, location_arg=None),
    "jetson_rtsp": Preset(jetson_rtsp, live=True, location_arg="url"),
    "jetson_file": Preset(jetson_file, live=False, location_arg="path"),
    "desktop_rtsp": Preset(desktop_rtsp, live=True, location_arg="url"),
    "desktop_file": Preset(desktop_file, live=False, location_arg="path"),
}


def build_preset(name: str, args: Mapping[str, Any] | None = None) -> str:
    """Build the pipeline of preset ``name`` from keyword arguments.

    Raises:
        ValueError: unknown preset (lists the known ones), unknown or missing
            argument (lists the accepted ones), or a bad value (names it).
    """
    if name not in PRESETS:
        raise ValueError(f"preset: unknown {name!r}; known: {', '.join(PRESETS)}")
    build = PRESETS[name].build
    kwargs = dict(args or {})
    params = inspect.signature(build).parameters
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise ValueError(
            f"preset_args: {name} does not take {', '.join(unknown)}; it takes {', '.join(params)}"
        )
    missing = [
        p
        for p, spec in params.items()
        if spec.default is inspect.Parameter.empty and p not in kwargs
    ]
    if missing:
        raise ValueError(f"preset_args: {name} needs {', '.join(missing)}")
    return build(**kwargs)


def redact_pipeline(pipeline: str) -> str:
    """``pipeline`` with the credentials of every URL in it replaced by ``***``."""
    return redact_urls(pipeline)


# -- source ----------------------------------------------------------------------------
class GStreamerSource:
    """Frames of a GStreamer pipeline, read through OpenCV's GStreamer backend.

    Give either ``pipeline`` (any ``gst-launch`` description ending in an ``appsink``
    that receives ``video/x-raw,format=BGR``) or ``preset`` + ``preset_args`` (see
    :data:`PRESETS`).

    Live sources (cameras, RTSP, custom pipelines unless ``live=False``): ``pts_ns``
    is the arrival time since ``open`` (monotonic), ``frame_count`` None, and a read
    that fails raises SourceError. File sources: ``pts_ns`` = ``seq / fps``, and a read
    that fails is the end of the file (None). Frames dropped by a live ``appsink`` are
    not counted (OpenCV does not report them): no StreamGap is returned.

    Thread-safety: ``open``/``read``/``close`` from one thread; the event given to
    :meth:`bind_stop` may be set from any thread (a read already blocked in OpenCV
    returns within ``read_timeout_s``).

    Args:
        pipeline: A custom pipeline description.
        preset: A preset name (``jetson_csi``, ``jetson_rtsp``, ``jetson_file``,
            ``desktop_rtsp``, ``desktop_file``).
        preset_args: Keyword arguments of the preset builder.
        source_id: Name carried by every frame.
        read_timeout_s: Longest wait for one frame, seconds (> 0), where the
            installed OpenCV supports it (see the module docstring).
        live: Override whether the source is live (default: the preset's kind; True
            for a custom pipeline).
        fps: Frame rate to report when the stream states none (RTSP often states
            0/1), frames per second (> 0).

    Raises:
        ValueError: not exactly one of ``pipeline``/``preset``, a custom pipeline
            without ``appsink``, or a bad preset argument (names it).
        SourceError: (from ``open``/``read``) see those methods.
    """

    def __init__(
        self,
        pipeline: str | None = None,
        preset: str | None = None,
        preset_args: Mapping[str, Any] | None = None,
        source_id: str = "gstreamer",
        read_timeout_s: float = 5.0,
        live: bool | None = None,
        fps: float = 25.0,
    ) -> None:
        if (pipeline is None) == (preset is None):
            raise ValueError("give exactly one of pipeline or preset")
        if preset_args is not None and preset is None:
            raise ValueError("preset_args: only used with preset")
        if isinstance(read_timeout_s, bool) or not (
            isinstance(read_timeout_s, (int, float)) and read_timeout_s > 0
        ):
            raise ValueError(f"read_timeout_s: must be a number > 0, got {read_timeout_s!r}")
        if isinstance(fps, bool) or not (isinstance(fps, (int, float)) and 0 < fps < math.inf):
            raise ValueError(f"fps: must be a number > 0, got {fps!r}")
        self.file_path: str | None = None
        self.preset = preset
        if preset is None:
            if not isinstance(pipeline, str) or "appsink" not in pipeline:
                raise ValueError(
                    "pipeline: must end in an appsink receiving video/x-raw,format=BGR, "
                    f"got {redact_pipeline(str(pipeline))!r}"
                )
            self.pipeline = pipeline.strip()
            self.live = True if live is None else live
            self.uri = redact_pipeline(self.pipeline)
        else:
            self.pipeline = build_preset(preset, preset_args)
            spec = PRESETS[preset]
            args = dict(preset_args or {})
            self.live = spec.live if live is None else live
            location = args.get(spec.location_arg) if spec.location_arg else None
            if spec.location_arg == "path":
                self.file_path = os.fspath(location) if location is not None else None
            if location is not None:
                self.uri = redact_url(os.fspath(location))
            else:
                self.uri = f"{preset}({', '.join(f'{k}={v!r}' for k, v in args.items())})"
            if preset == "jetson_csi":  # the camera runs at the rate it was asked for
                fps = float(
                    args.get("fps", inspect.signature(jetson_csi).parameters["fps"].default)
                )
        self.source_id = source_id
        self.read_timeout_s = float(read_timeout_s)
        self.default_fps = float(fps)
        self._stop = threading.Event()
        self._cap: cv2.VideoCapture | None = None
        self._fps = self.default_fps
        self._timeouts = False
        self._seq = 0
        self._open_ns = 0

    def __repr__(self) -> str:
        what = f"preset={self.preset!r}, uri={self.uri!r}" if self.preset else f"{self.uri!r}"
        return f"GStreamerSource(source_id={self.source_id!r}, {what}, live={self.live})"

    def _where(self) -> str:
        return f"source '{self.source_id}'"

    def bind_stop(self, stop: threading.Event) -> None:
        """Use ``stop`` (the runner's stop signal): ``read`` returns None once it is set."""
        self._stop = stop

    def open(self) -> StreamInfo:
        """Start the pipeline and return its stream information.

        Returns:
            Size from the negotiated caps; ``fps`` from the caps, else the ``fps``
            argument (or the ``jetson_csi`` rate); ``frame_count`` None when live;
            ``uri`` the redacted location (or redacted pipeline).

        Raises:
            SourceError: a file preset's file is missing; OpenCV has no GStreamer
                (says what to install); or the pipeline does not start (a missing
                element, an unreachable camera, a file GStreamer cannot decode).
        """
        self.close()
        if self.file_path is not None and not Path(self.file_path).is_file():
            raise SourceError(f"{self._where()}: video file not found: {self.file_path}")
        if not opencv_has_gstreamer():
            raise SourceError(gstreamer_missing_message(self.source_id))
        params: list[int] = []
        self._timeouts = opencv_has_gstreamer_timeouts()
        if self._timeouts:
            timeout_ms = max(1, round(self.read_timeout_s * 1000))
            params = [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                max(timeout_ms, OPEN_TIMEOUT_MS),
                cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                timeout_ms,
            ]
        elif self.live:
            log.info(
                "%s: OpenCV %s's GStreamer backend has no read timeout (needs >= 4.7); "
                "a stalled live pipeline blocks read() until GStreamer reports an error",
                self._where(),
                cv2.__version__,
            )
        cap = cv2.VideoCapture(self.pipeline, cv2.CAP_GSTREAMER, params)
        if not cap.isOpened():
            cap.release()
            raise SourceError(
                f"{self._where()}: GStreamer could not start the pipeline "
                f"{redact_pipeline(self.pipeline)!r} (see the GStreamer warnings above; try "
                "it with gst-launch-1.0 -v after replacing the appsink by fakesink)"
            )
        width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps = float(cap.get(cv2.CAP_PROP_FPS))
        if not 0 < fps < 1000:
            fps = self.default_fps
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if not self.live else 0
        self._cap = cap
        self._fps = fps
        self._seq = 0
        self._open_ns = time.monotonic_ns()
        return StreamInfo(
            source_id=self.source_id,
            fps=fps,
            width_px=width,
            height_px=height,
            frame_count=count if count > 0 else None,
            uri=self.uri,
        )

    def read(self) -> Frame | None:
        """Return the next frame; None at the end of a file or once stop is set.

        Returns:
            The frame (``image`` ``(H, W, 3) uint8`` BGR), or None.

        Raises:
            SourceError: read before ``open``; a live pipeline gave no frame within
                ``read_timeout_s`` (stalled, ended or failed); or the appsink did not
                receive 3-channel BGR. Names the source and frame.
        """
        cap = self._cap
        if cap is None:
            raise SourceError(f"{self._where()}: read before open")
        if self._stop.is_set():
            return None
        ok, image = cap.read()
        if not ok or image is None:
            if not self.live:
                return None
            stalled = f"stalled for {self.read_timeout_s:g} s, " if self._timeouts else ""
            raise SourceError(
                f"{self._where()}: GStreamer pipeline gave no frame at frame {self._seq} "
                f"(stream {stalled}ended or failed; see the GStreamer warnings)"
            )
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise SourceError(
                f"{self._where()}: pipeline gave a frame of shape {image.shape} {image.dtype} "
                f"at frame {self._seq}; end it with {TO_BGR} ! appsink"
            )
        now_ns = time.monotonic_ns()
        pts_ns = now_ns - self._open_ns if self.live else round(self._seq / self._fps * 1e9)
        frame = Frame(
            source_id=self.source_id,
            seq=self._seq,
            pts_ns=pts_ns,
            capture_ns=now_ns,
            image=image.astype(np.uint8, copy=False),  # checked above; typed for mypy
            wall_ns=time.time_ns(),
        )
        self._seq += 1
        return frame

    def close(self) -> None:
        """Stop the pipeline; idempotent."""
        if self._cap is not None:
            self._cap.release()
            self._cap = None
