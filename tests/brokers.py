"""Real brokers for tests: a mosquitto MQTT broker on loopback and a paho subscriber.

Tests that need mosquitto skip with the reason when the Debian package is missing
(``.ci/run`` installs it).
"""

from __future__ import annotations

import getpass
import json
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

MOSQUITTO = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Mosquitto:
    """A real mosquitto broker on a loopback port, started and stopped by a test."""

    def __init__(self, workdir: Path, port: int, password_file: Path | None = None) -> None:
        if MOSQUITTO is None:
            pytest.skip("mosquitto not installed (apt-get install mosquitto)")
        self.port = port
        self.conf = workdir / f"mosquitto_{port}.conf"
        lines = [
            f"listener {port} 127.0.0.1",
            "persistence false",
            f"user {getpass.getuser()}",  # stay this user when run as root (else ignored)
        ]
        if password_file is None:
            lines.append("allow_anonymous true")
        else:
            lines += ["allow_anonymous false", f"password_file {password_file}"]
        self.conf.write_text("\n".join(lines) + "\n")
        self.log = workdir / f"mosquitto_{port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Mosquitto:
        assert MOSQUITTO is not None
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"mosquitto exited: {self.log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError("mosquitto did not listen within 10 s") from None
                time.sleep(0.01)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)


class Subscriber:
    """A paho client collecting ``(topic, message)`` of every publish it receives."""

    def __init__(self, port: int, topic: str = "streamer/#", qos: int = 1) -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self._subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._subscribed.wait(5), "subscriber got no SUBACK within 5 s"

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self._lock:
            self.messages.append((msg.topic, json.loads(msg.payload)))

    def received(self, suffix: str = "") -> list[dict[str, Any]]:
        with self._lock:
            return [m for t, m in self.messages if t.endswith(suffix)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
