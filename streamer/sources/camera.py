"""USB / V4L2 camera source, read with OpenCV's V4L2 backend.

:class:`V4L2CameraSource` opens ``/dev/videoN`` (or a stable ``/dev/v4l/by-id/...``
link) with ``cv2.VideoCapture(path, cv2.CAP_V4L2)``, asks for a pixel format
(FOURCC), size, rate and driver queue length, reads back what the driver actually
accepted (drivers silently pick the nearest mode they support) and logs a warning
on logger ``streamer.sources.camera`` when that differs from what was asked.

How ``read`` is kept from hanging. OpenCV's V4L2 backend ignores
``CAP_PROP_READ_TIMEOUT_MSEC`` (its ``setProperty`` has no case for it; only the
FFmpeg and GStreamer backends honour it). Two mechanisms bound a read instead:

1. Before each read but the first the source waits for the device with
   ``cv2.VideoCapture.waitAny([cap], timeout_ns)`` (``poll()`` on the device's file
   descriptor, a V4L2-only API) in slices of at most 0.1 s, until a frame is ready,
   ``read_timeout_s`` has passed (→ :class:`~streamer.errors.SourceError`) or the
   stop event given to :meth:`V4L2CameraSource.bind_stop` is set (→ ``None``). A
   device that is unplugged reports ``POLLERR``, which OpenCV raises as an error and
   the source reports as a failed read.
2. Inside OpenCV every blocking ``ioctl`` waits in ``select()`` for
   ``OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT`` seconds (default 10, read once per process
   on first use). Before opening its first device the source sets this environment
   variable to ``ceil(read_timeout_s)`` unless it is already set, which bounds the
   first read (a plain ``cap.read()``: ``waitAny`` would take the first frame itself
   and then wait for a second one) and any ioctl that ``poll`` did not cover.

So a read returns within ``read_timeout_s`` (plus decode time; the first one after
``open`` within about ``ceil(read_timeout_s)`` seconds, and it does not see the stop
event), and any later one within about 0.1 s of a stop request.

Gaps: OpenCV does not expose V4L2 buffer sequence numbers, so frames the driver
drops (with ``buffer_size=1`` it keeps only the newest while the consumer is busy,
which is what freshness wants) are not counted; this source never returns
:class:`~streamer.types.StreamGap`. ``pts_ns`` is the arrival time since ``open``,
so consumers see real time between frames.
"""

from __future__ import annotations

import logging
import math
import os
import stat
import threading
import time

import cv2
import numpy as np

from streamer.errors import SourceError
from streamer.types import Frame, StreamInfo

log = logging.getLogger("streamer.sources.camera")

SELECT_TIMEOUT_ENV = "OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT"
"""OpenCV's V4L2 ``select()`` timeout, whole seconds (read once per process)."""

MAX_BUFFER_SIZE = 10
"""Most driver buffers OpenCV's V4L2 backend accepts (``MAX_V4L_BUFFERS``)."""

_POLL_SLICE_S = 0.1


def fourcc_to_int(code: str) -> int:
    """Pack a four-character code into the integer V4L2 and OpenCV use.

    The first character is the least significant byte, as in ``v4l2_fourcc`` and
    ``cv2.VideoWriter_fourcc``: ``fourcc_to_int("MJPG") == 0x47504A4D``.

    Args:
        code: Exactly 4 printable ASCII characters, e.g. ``"MJPG"``, ``"YUYV"``,
            ``"Y16 "`` (trailing spaces are significant).

    Returns:
        The packed code, in ``[0, 2**32)``.

    Raises:
        ValueError: ``code`` is not 4 printable ASCII characters.
    """
    if not isinstance(code, str) or len(code) != 4 or not all(" " <= c <= "~" for c in code):
        raise ValueError(f"fourcc: must be 4 printable ASCII characters, got {code!r}")
    return sum(ord(c) << (8 * i) for i, c in enumerate(code))


def int_to_fourcc(value: float) -> str:
    """Unpack an integer code (as ``cap.get(cv2.CAP_PROP_FOURCC)`` returns it).

    Args:
        value: Packed code; a float is accepted because OpenCV returns one.

    Returns:
        The four characters (bytes outside printable ASCII are kept as the Latin-1
        character of that byte), or ``""`` for 0 (the backend reported none).

    Raises:
        ValueError: ``value`` is negative, not a whole number, or >= 2**32.
    """
    if not float(value).is_integer() or not 0 <= value < 2**32:
        raise ValueError(f"fourcc value must be an integer in [0, 2**32), got {value!r}")
    n = int(value)
    if n == 0:
        return ""
    return "".join(chr((n >> (8 * i)) & 0xFF) for i in range(4))


def device_path(device: str | int) -> str:
    """Path of a camera: ``/dev/video{N}`` for an index, else the path as given.

    Raises:
        ValueError: a negative index, a bool, or an empty path.
    """
    if isinstance(device, bool) or not isinstance(device, (int, str)):
        raise ValueError(f"device: must be a /dev/video* path or an index >= 0, got {device!r}")
    if isinstance(device, int):
        if device < 0:
            raise ValueError(f"device: index must be >= 0, got {device}")
        return f"/dev/video{device}"
    if not device.strip():
        raise ValueError("device: must be a /dev/video* path or an index >= 0, got ''")
    return device


def _positive(name: str, value: float | None, kind: type = int) -> None:
    if value is None:
        return
    ok_type = isinstance(value, (int, float)) if kind is float else isinstance(value, int)
    if isinstance(value, bool) or not ok_type or not value > 0:
        what = "a number" if kind is float else "an integer"
        raise ValueError(f"{name}: must be {what} > 0, got {value!r}")


class V4L2CameraSource:
    """Frames of a V4L2 camera (USB webcam, HDMI grabber, v4l2loopback), freshest first.

    ``seq`` counts frames returned, from 0. ``pts_ns`` is the arrival time since
    ``open`` (monotonic clock). ``StreamInfo.frame_count`` is None (live) and its
    size, rate and ``fps`` are what the driver accepted, not what was asked. The
    stream never ends by itself: ``read`` returns None only after a stop request.

    Thread-safety: ``open``/``read``/``close`` from one thread (the runner's source
    thread); the event passed to :meth:`bind_stop` may be set from any thread.

    Args:
        device: ``/dev/videoN`` (or a ``/dev/v4l/by-id/...`` link), or the index N.
        source_id: Name carried by every frame.
        width_px: Frame width to ask for, pixels (None: the driver's current mode).
        height_px: Frame height to ask for, pixels (None: the driver's current mode).
        fps: Frame rate to ask for, frames per second (None: the driver's current).
        fourcc: Pixel format to ask for, 4 characters: ``"MJPG"`` (compressed; the
            usual way to get 1080p30 over USB 2) or ``"YUYV"`` (raw); None: the
            driver's current format.
        read_timeout_s: Longest wait for one frame, seconds (> 0); see the module
            docstring for how it is enforced.
        buffer_size: Driver buffers, 1..10 (``CAP_PROP_BUFFERSIZE``); 1 keeps the
            newest frame only (lowest latency), more smooth out a slow consumer.

    Raises:
        ValueError: a bad argument (names it).
        SourceError: (from ``open``/``read``) see those methods.
    """

    def __init__(
        self,
        device: str | int = 0,
        source_id: str = "camera",
        width_px: int | None = None,
        height_px: int | None = None,
        fps: float | None = None,
        fourcc: str | None = None,
        read_timeout_s: float = 2.0,
        buffer_size: int = 1,
    ) -> None:
        self.device = device_path(device)
        _positive("width_px", width_px)
        _positive("height_px", height_px)
        _positive("fps", fps, float)
        _positive("read_timeout_s", read_timeout_s, float)
        if isinstance(buffer_size, bool) or not isinstance(buffer_size, int):
            raise ValueError(f"buffer_size: must be an integer in 1..10, got {buffer_size!r}")
        if not 1 <= buffer_size <= MAX_BUFFER_SIZE:
            raise ValueError(f"buffer_size: must be in 1..{MAX_BUFFER_SIZE}, got {buffer_size}")
        self.fourcc_code = fourcc_to_int(fourcc) if fourcc is not None else None
        self.source_id = source_id
        self.width_px = width_px
        self.height_px = height_px
        self.fps = fps
        self.fourcc = fourcc
        self.read_timeout_s = float(read_timeout_s)
        self.buffer_size = buffer_size
        self._stop = threading.Event()
        self._cap: cv2.VideoCapture | None = None
        self._seq = 0
        self._open_ns = 0

    def __repr__(self) -> str:
        return (
            f"V4L2CameraSource(source_id={self.source_id!r}, device={self.device!r}, "
            f"width_px={self.width_px}, height_px={self.height_px}, fps={self.fps}, "
            f"fourcc={self.fourcc!r})"
        )

    def _where(self) -> str:
        return f"source '{self.source_id}'"

    def bind_stop(self, stop: threading.Event) -> None:
        """Use ``stop`` (the runner's stop signal): a waiting ``read`` returns None."""
        self._stop = stop

    def _check_device(self) -> None:
        path = self.device
        if not os.path.exists(path):
            raise SourceError(
                f"{self._where()}: camera device {path} not found "
                "(is the camera plugged in? ls /dev/video*)"
            )
        mode = os.stat(path).st_mode
        if not stat.S_ISCHR(mode):
            raise SourceError(
                f"{self._where()}: {path} is not a camera device (not a character device)"
            )
        if not os.access(path, os.R_OK | os.W_OK):
            raise SourceError(
                f"{self._where()}: no permission to open camera device {path} "
                "(add the user to the 'video' group: sudo usermod -aG video $USER, "
                "then log in again)"
            )

    def open(self) -> StreamInfo:
        """Open the camera, apply the requested mode and return what the driver gave.

        Returns:
            Stream information with the driver's actual width, height and rate;
            ``frame_count`` None; ``uri`` the device path.

        Raises:
            SourceError: the device does not exist, is not a character device, is not
                readable and writable by this user (names the ``video`` group), or
                OpenCV's V4L2 backend cannot open it (busy, not a capture device).
        """
        self.close()
        self._check_device()
        if SELECT_TIMEOUT_ENV not in os.environ:
            os.environ[SELECT_TIMEOUT_ENV] = str(max(1, math.ceil(self.read_timeout_s)))
        cap = cv2.VideoCapture(self.device, cv2.CAP_V4L2)
        if not cap.isOpened():
            cap.release()
            raise SourceError(
                f"{self._where()}: OpenCV cannot open camera device {self.device} with V4L2 "
                f"(in use by another process, or not a capture device? "
                f"v4l2-ctl -d {self.device} --all)"
            )
        # Order matters: the format decides which sizes exist, the size which rates.
        if self.fourcc_code is not None:
            cap.set(cv2.CAP_PROP_FOURCC, self.fourcc_code)
        if self.width_px is not None:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width_px)
        if self.height_px is not None:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height_px)
        if self.fps is not None:
            cap.set(cv2.CAP_PROP_FPS, self.fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, self.buffer_size)

        width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps = float(cap.get(cv2.CAP_PROP_FPS))
        try:
            fourcc = int_to_fourcc(cap.get(cv2.CAP_PROP_FOURCC))
        except ValueError:
            fourcc = "?"
        buffers = int(cap.get(cv2.CAP_PROP_BUFFERSIZE))
        differs = []
        if self.width_px is not None and width != self.width_px:
            differs.append(f"width {width} px (asked {self.width_px})")
        if self.height_px is not None and height != self.height_px:
            differs.append(f"height {height} px (asked {self.height_px})")
        if self.fps is not None and not math.isclose(fps, self.fps, rel_tol=0.01):
            differs.append(f"{fps:g} fps (asked {self.fps:g})")
        if self.fourcc is not None and fourcc != self.fourcc:
            differs.append(f"format {fourcc!r} (asked {self.fourcc!r})")
        if buffers != self.buffer_size:
            differs.append(f"{buffers} buffers (asked {self.buffer_size})")
        if differs:
            log.warning(
                "%s: camera %s gave %s; list its modes with v4l2-ctl -d %s --list-formats-ext",
                self._where(),
                self.device,
                ", ".join(differs),
                self.device,
            )
        if not fps > 0:
            fps = float(self.fps) if self.fps is not None else 30.0
            log.warning(
                "%s: camera %s states no frame rate; assuming %g fps",
                self._where(),
                self.device,
                fps,
            )
        self._cap = cap
        self._seq = 0
        self._open_ns = time.monotonic_ns()
        return StreamInfo(
            source_id=self.source_id,
            fps=fps,
            width_px=width,
            height_px=height,
            frame_count=None,
            uri=self.device,
        )

    def _failed(self, detail: str = "") -> SourceError:
        return SourceError(
            f"{self._where()}: camera read failed at frame {self._seq}{detail} (device unplugged?)"
        )

    def read(self) -> Frame | None:
        """Wait for the next frame (at most ``read_timeout_s``).

        Returns:
            The frame (``image`` ``(H, W, 3) uint8`` BGR), or None once the stop event
            is set.

        Raises:
            SourceError: read before ``open``; no frame within ``read_timeout_s``; the
                device reported an error (unplugged) or OpenCV could not decode the
                frame. The message names the source and the frame number.
        """
        cap = self._cap
        if cap is None:
            raise SourceError(f"{self._where()}: read before open")
        if self._stop.is_set():
            return None
        deadline_ns = time.monotonic_ns() + int(self.read_timeout_s * 1e9)
        while self._seq > 0:  # the first read is bounded by the select() timeout
            if self._stop.is_set():
                return None
            left_ns = deadline_ns - time.monotonic_ns()
            if left_ns <= 0:
                raise self._failed(f": no frame within {self.read_timeout_s:g} s")
            slice_ns = max(1_000_000, min(left_ns, int(_POLL_SLICE_S * 1e9)))
            try:
                ready, _ = cv2.VideoCapture.waitAny([cap], slice_ns)
            except cv2.error as e:
                raise self._failed(f": {str(e).strip().splitlines()[-1]}") from None
            if ready:
                break
        ok, image = cap.read()
        if not ok or image is None:
            raise self._failed()
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise SourceError(
                f"{self._where()}: camera gave a frame of shape {image.shape} {image.dtype} "
                f"at frame {self._seq}, expected (H, W, 3) uint8 BGR"
            )
        now_ns = time.monotonic_ns()
        frame = Frame(
            source_id=self.source_id,
            seq=self._seq,
            pts_ns=now_ns - self._open_ns,
            capture_ns=now_ns,
            image=image.astype(np.uint8, copy=False),  # checked above; typed for mypy
            wall_ns=time.time_ns(),
        )
        self._seq += 1
        return frame

    def close(self) -> None:
        """Release the device; idempotent."""
        if self._cap is not None:
            self._cap.release()
            self._cap = None
