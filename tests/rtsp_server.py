"""Start, kill, freeze and restart the real RTSP test server (``scripts/rtsp_server.py``).

The server is Debian's GStreamer RTSP server driven by the *system* Python (the
``gi`` bindings are not visible from a virtual environment). Tests that need it call
:func:`require_rtsp_server`, which skips with the reason when the packages are missing
(``.ci/run`` installs them).
"""

from __future__ import annotations

import functools
import os
import select
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

SYSTEM_PYTHON = "/usr/bin/python3"
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "rtsp_server.py"
PROBE = (
    "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); "
    "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
    "assert Gst.ElementFactory.find('x264enc') and Gst.ElementFactory.find('rtph264pay')"
)


@functools.cache
def rtsp_server_problem() -> str | None:
    """Why the RTSP test server cannot run here, or None when it can."""
    if not os.path.exists(SYSTEM_PYTHON):
        return f"{SYSTEM_PYTHON} not found"
    proc = subprocess.run([SYSTEM_PYTHON, "-c", PROBE], capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return (
            "GStreamer RTSP server not installed (apt-get install gstreamer1.0-rtsp "
            "gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-ugly python3-gi): " + last
        )
    return None


def require_rtsp_server() -> None:
    """Skip the calling test with a clear reason when the server cannot run."""
    problem = rtsp_server_problem()
    if problem:
        pytest.skip(problem)


def free_port() -> int:
    """A TCP port on loopback that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RtspServer:
    """One server process serving ``rtsp://127.0.0.1:PORT/stream``.

    Args:
        args: Extra arguments of ``scripts/rtsp_server.py`` (``--file``, ``--fps``, ...).
        port: Port to listen on (a free one by default); kept across restarts.
    """

    def __init__(self, *args: str, port: int | None = None) -> None:
        self.args = list(args)
        self.port = port or free_port()
        self.url = f"rtsp://127.0.0.1:{self.port}/stream"
        self.proc: subprocess.Popen[str] | None = None

    def start(self, timeout_s: float = 10.0) -> RtspServer:
        """Start the server and wait until it prints READY (it then listens)."""
        self.proc = subprocess.Popen(
            [SYSTEM_PYTHON, str(SCRIPT), "--port", str(self.port), *self.args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if ready:
                line = self.proc.stdout.readline()
                if line.startswith("READY"):
                    return self
                if not line:
                    break
        err = self.proc.stderr.read() if self.proc.poll() is not None and self.proc.stderr else ""
        self.kill()
        raise RuntimeError(f"RTSP server did not start on port {self.port}: {err.strip()}")

    def kill(self) -> None:
        """SIGKILL the server (a camera that loses power) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            with_stopped = self.proc
            with_stopped.send_signal(signal.SIGCONT)
            with_stopped.kill()
            with_stopped.wait(5)
        self.proc = None

    def freeze(self) -> None:
        """SIGSTOP the server: the socket stays open but nothing more arrives."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT a frozen server."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def __enter__(self) -> RtspServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()
