"""The fleet's control API: a small HTTP server on the driver, and its client.

Endpoints (JSON in and out; no authentication: it binds 127.0.0.1 unless the fleet
YAML's ``api.host`` says otherwise):

========================  ===============================================================
``GET /status``           ``{"fleet", "run_dir", "engine", "cameras": [row, ...]}``
``GET /cameras/<id>``     one row (404 when unknown)
``POST /cameras``         add: ``{"camera": {id, pipeline, source, placement}, "group":
                          null, "base_dir": null}`` (a camera entry as in the fleet YAML;
                          relative paths against ``base_dir``) -> 201 row; 400 with
                          ``{"error": ...}`` for an invalid camera, 409 for a taken id
``DELETE /cameras/<id>``  remove: stop (drain, flush) then end its actor -> 202 row
``GET /healthz``          ``{"status": "ok", "cameras": n, "states": {state: n}}``
========================  ===============================================================

A row: ``camera``, ``group``, ``state``, ``attempt``, ``restarts``, ``node_id``,
``node_ip``, ``host``, ``pid``, ``frames``, ``expected_frames``, ``fps``,
``latency_p50_ms``, ``latency_p95_ms``, ``reconnects``, ``resumed_from``,
``last_error``, ``restart_in_s``, ``pipeline``, ``placement``, ``live``, ``run_dir``,
``history`` (one entry per ended attempt: node, pid, frames, why it ended).
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from streamer.config.loader import validation_message
from streamer.errors import ConfigError, StreamerError
from streamer.fleet.loader import FleetResolver
from streamer.fleet.schema import CameraConfig
from streamer.fleet.supervisor import FleetSupervisor

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20


class FleetApi:
    """Serves the control API of a running fleet in a background thread.

    Args:
        supervisor: The fleet's supervisor.
        resolver: Resolves added cameras against the fleet (defaults, groups).
        host: Address to bind.
        port: TCP port (0: any free port; see :attr:`url`).
        info: Extra fields of ``GET /status`` (engine description, ...).

    Raises:
        StreamerError: the address cannot be bound (from :meth:`start`).

    Thread-safety: requests are served on their own threads; the supervisor's
    methods are thread-safe.
    """

    def __init__(
        self,
        supervisor: FleetSupervisor,
        resolver: FleetResolver,
        host: str = "127.0.0.1",
        port: int = 8765,
        info: dict[str, Any] | None = None,
    ) -> None:
        self.supervisor = supervisor
        self.resolver = resolver
        self.host = host
        self.port = port
        self.info = dict(info or {})
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` actually bound (after :meth:`start`)."""
        port = self._server.server_address[1] if self._server is not None else self.port
        return f"http://{self.host}:{port}"

    def start(self) -> None:
        """Bind and serve in a daemon thread.

        Raises:
            StreamerError: the address is in use or invalid.
        """
        handler = _make_handler(self)
        try:
            server = ThreadingHTTPServer((self.host, self.port), handler)
        except OSError as e:
            raise StreamerError(
                f"fleet API: cannot listen on {self.host}:{self.port}: {e.strerror or e} "
                "(set api.port in the fleet YAML, or --api-port; 0 picks a free port)"
            ) from None
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.2},
            daemon=True,
            name="fleet-api",
        )
        self._thread.start()

    def close(self) -> None:
        """Stop serving; idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    # -- requests (called on the server's threads) ----------------------------------
    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        """Answer one request: ``(HTTP status, JSON-ready body)``."""
        parts = [p for p in path.split("?", 1)[0].split("/") if p]
        sup = self.supervisor
        if method == "GET" and parts == ["status"]:
            return 200, {
                "fleet": sup.name,
                "run_dir": str(sup.run_dir),
                **self.info,
                "cameras": sup.status(),
            }
        if method == "GET" and parts == ["healthz"]:
            rows = sup.status()
            states: dict[str, int] = {}
            for r in rows:
                states[r["state"]] = states.get(r["state"], 0) + 1
            return 200, {"status": "ok", "cameras": len(rows), "states": states}
        if len(parts) == 2 and parts[0] == "cameras" and method in ("GET", "DELETE"):
            if method == "GET":
                row = sup.camera(parts[1])
                return (200, row) if row is not None else (404, {"error": "no such camera"})
            if sup.camera(parts[1]) is None:
                return 404, {"error": f"no camera {parts[1]!r} in the fleet"}
            return self._call(lambda: sup.remove(parts[1]), 202)
        if method == "POST" and parts == ["cameras"]:
            return self._add(body)
        return 404, {"error": f"no such endpoint: {method} {path}"}

    def _add(self, body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("camera"), dict):
            return 400, {"error": 'want {"camera": {"id": ..., ...}, "group": null}'}
        try:
            cam = CameraConfig.model_validate(body["camera"])
        except ValidationError as e:
            return 400, {"error": validation_message(e, "add", ("camera",))}
        try:
            group = self.resolver.group(body["group"]) if body.get("group") else None
            base = body.get("base_dir")
            spec = self.resolver.resolve(
                cam, group, ("camera",), Path(base) if isinstance(base, str) else None
            )
        except ConfigError as e:
            return 400, {"error": str(e)}
        existing = self.supervisor.camera(cam.id)
        if existing is not None and existing["state"] not in ("removed", "stopped"):
            return 409, {"error": f"camera {cam.id!r} is already in the fleet"}
        return self._call(lambda: self.supervisor.add(spec), 201)

    @staticmethod
    def _call(fn: Callable[[], dict[str, Any]], ok: int) -> tuple[int, Any]:
        try:
            return ok, fn()
        except ConfigError as e:
            return 409, {"error": str(e)}
        except StreamerError as e:
            return 503, {"error": str(e)}


def _make_handler(api: FleetApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "streamer-fleet"

        def _respond(self, method: str) -> None:
            body: Any = None
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                self._send(413, {"error": f"body over {MAX_BODY_BYTES} bytes"})
                return
            if length:
                try:
                    body = json.loads(self.rfile.read(length))
                except ValueError as e:
                    self._send(400, {"error": f"body is not JSON: {e}"})
                    return
            try:
                code, data = api.handle(method, self.path, body)
            except Exception as e:  # a bug: answer, log, keep serving
                logger.exception("fleet API: %s %s", method, self.path)
                code, data = 500, {"error": f"{type(e).__name__}: {e}"}
            self._send(code, data)

        def _send(self, code: int, data: Any) -> None:
            payload = json.dumps(data).encode("utf-8")
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:
            self._respond("GET")

        def do_POST(self) -> None:
            self._respond("POST")

        def do_DELETE(self) -> None:
            self._respond("DELETE")

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("fleet API: " + format, *args)

    return Handler


# -- client --------------------------------------------------------------------------
def api_request(
    api_url: str, method: str, path: str, body: Any = None, timeout_s: float = 30.0
) -> tuple[int, Any]:
    """Call the fleet API: ``(HTTP status, decoded JSON body)``.

    Raises:
        StreamerError: the API cannot be reached (no fleet running there?).
    """
    data = json.dumps(body).encode("utf-8") if body is not None else None
    req = urllib.request.Request(
        api_url.rstrip("/") + path,
        data=data,
        method=method,
        headers={"Content-Type": "application/json"} if data is not None else {},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw or b"null")
        except ValueError:
            return e.code, {"error": raw.decode("utf-8", "replace")}
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise StreamerError(
            f"fleet API {api_url}: cannot connect ({reason}); is 'streamer fleet run' "
            "running, and on this port (--api)?"
        ) from None


__all__ = ["FleetApi", "api_request"]
