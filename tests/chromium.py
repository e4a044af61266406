"""Drive a real headless Chromium over the DevTools protocol (no extra Python packages).

Chromium is started with ``--remote-debugging-pipe``: it reads DevTools commands
from file descriptor 3 and writes replies to descriptor 4, each message a JSON
object followed by a NUL byte, so no WebSocket client is needed. One page load can
then be inspected as often as a test likes (several screenshots a second apart,
DOM text), which ``chromium --screenshot`` / ``--dump-dom`` cannot do.

Tests call :func:`require_chromium`, which skips with the reason when Debian's
``chromium`` package is missing (``apt-get install -y chromium``).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

import cv2
import numpy as np
import pytest

_TRAMPOLINE = (
    "import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); "
    "os.execv(sys.argv[3], sys.argv[3:])"
)
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium_path() -> str | None:
    """The first Chromium-like browser on ``PATH``, or None."""
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def require_chromium() -> str:
    """The browser's path; skips the calling test with a clear reason when absent."""
    path = chromium_path()
    if path is None:
        pytest.skip("headless Chromium not installed (apt-get install -y chromium)")
    return path


class HeadlessChromium:
    """One headless Chromium process with one page, driven over a DevTools pipe.

    Args:
        width: Window width, CSS pixels.
        height: Window height, CSS pixels.
        binary: The browser (default: :func:`chromium_path`).
    """

    def __init__(self, width: int = 1000, height: int = 800, binary: str | None = None) -> None:
        self.binary = binary or chromium_path()
        if self.binary is None:
            raise RuntimeError("no Chromium on PATH")
        self.width, self.height = width, height
        self._profile = tempfile.TemporaryDirectory(prefix="chromium-")
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close(); stderr, quoted when it dies)
        self._proc: subprocess.Popen[bytes] | None = None
        self._to_browser = self._from_browser = -1
        self._buffer = b""
        self._next_id = 0
        self._session: str | None = None

    def start(self, timeout_s: float = 20.0) -> HeadlessChromium:
        cmd_read, self._to_browser = os.pipe()
        self._from_browser, reply_write = os.pipe()
        args = [
            self.binary,
            "--headless",
            "--no-sandbox",  # tests may run as root
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--hide-scrollbars",
            "--mute-audio",
            "--remote-debugging-pipe",
            f"--user-data-dir={self._profile.name}",
            f"--window-size={self.width},{self.height}",
            "about:blank",
        ]
        # A tiny trampoline maps our pipe ends onto the descriptors 3 and 4 Chromium
        # expects, then execs it (dash's redirections cannot name descriptors > 9).
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _TRAMPOLINE, str(cmd_read), str(reply_write), *args],
            pass_fds=(cmd_read, reply_write),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )
        os.close(cmd_read)
        os.close(reply_write)
        target = self.call("Target.createTarget", {"url": "about:blank"}, timeout_s=timeout_s)
        attached = self.call(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )
        self._session = attached["sessionId"]
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False},
        )
        return self

    def call(
        self, method: str, params: dict[str, Any] | None = None, timeout_s: float = 15.0
    ) -> Any:
        """Send one DevTools command (to the page once attached) and return its result."""
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if self._session is not None and not method.startswith(("Target.", "Browser.")):
            msg["sessionId"] = self._session
        try:
            os.write(self._to_browser, json.dumps(msg).encode() + b"\0")
        except BrokenPipeError:
            raise RuntimeError(f"Chromium exited: {self._log_tail()}") from None
        deadline = time.monotonic() + timeout_s
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self._next_id:
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    return reply.get("result", {})
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"Chromium did not answer {method} within {timeout_s} s")
            ready, _, _ = select.select([self._from_browser], [], [], remaining)
            if ready:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"Chromium exited: {self._log_tail()}")
                self._buffer += chunk

    def _log_tail(self, lines: int = 5) -> str:
        self._log.seek(0)
        return " | ".join(self._log.read().decode(errors="replace").strip().splitlines()[-lines:])

    def navigate(self, url: str) -> None:
        """Load ``url`` (returns once navigation is committed, not when loading ends)."""
        self.call("Page.navigate", {"url": url})

    def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression in the page."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        return result.get("result", {}).get("value")

    def screenshot(self, clip: dict[str, float] | None = None) -> np.ndarray:
        """A PNG screenshot of the viewport (or of ``clip``: x, y, width, height in CSS
        pixels), decoded to ``(H, W, 3) uint8`` BGR."""
        params: dict[str, Any] = {"format": "png"}
        if clip is not None:
            params["clip"] = {**clip, "scale": 1}
        data = base64.b64decode(self.call("Page.captureScreenshot", params)["data"])
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None, "screenshot is not a PNG"
        return np.asarray(image)

    def close(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(RuntimeError, TimeoutError, OSError):
                self.call("Browser.close", timeout_s=5.0)
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
            self._proc = None
        for fd in (self._to_browser, self._from_browser):
            if fd >= 0:
                os.close(fd)
        self._to_browser = self._from_browser = -1
        self._log.close()
        self._profile.cleanup()

    def __enter__(self) -> HeadlessChromium:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
