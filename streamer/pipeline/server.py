"""One small HTTP server per run: Prometheus metrics, health, stats and a live preview.

Endpoints (``GET``):

==========================  =============================================================
``/metrics``                Prometheus text format (``prometheus_client``), this
                            pipeline's registry only (see :mod:`streamer.pipeline.prometheus`)
``/healthz``                200 ``{"status": "ok", ...}`` or 503 ``{"status": "unhealthy",
                            "reasons": [...]}`` (see :mod:`streamer.pipeline.health`)
``/stats.json``             fps, latency, drops per source and per stage, as JSON
``/``                       an HTML page: one live ``<img>`` per source and the stats,
                            refreshed every second from ``/stats.json``
``/stream/<source>.mjpg``   the annotated frames of a source as MJPEG
                            (``multipart/x-mixed-replace``), from a ``preview`` stage
==========================  =============================================================

It is the stdlib ``ThreadingHTTPServer``: a thread per connection, so a slow or
stalled client holds only its own thread; MJPEG clients read the newest frame of a
:class:`~streamer.sinks.preview.PreviewHub` slot each time they are ready, and the
pipeline never waits for them. The server binds ``127.0.0.1`` unless told otherwise.

Lifecycle: :meth:`MonitorServer.start` binds and starts the one serving thread; the
caller that runs the pipeline (``streamer.cli.run_pipeline``) starts it and closes
it on every exit path (:meth:`MonitorServer.close`, or ``with``).
"""

from __future__ import annotations

import html
import json
import logging
import math
import socket
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry

from streamer.errors import StreamerError
from streamer.pipeline.health import HealthReport, check_health
from streamer.pipeline.prometheus import make_registry
from streamer.pipeline.runner import Pipeline
from streamer.sinks.preview import PreviewHub

log = logging.getLogger(__name__)

BOUNDARY = "frame"


def _num(x: float, digits: int = 2) -> float | None:
    """``x`` rounded, or None for NaN/inf (JSON has no NaN)."""
    return round(x, digits) if math.isfinite(x) else None


class RateTracker:
    """Rates (per second) of monotonic counters, from snapshots over a sliding window.

    Thread-safety: every method may be called from any thread.

    Args:
        window_s: Rates are measured over (up to) this many seconds.
        min_interval_s: Snapshots closer than this to the previous one are not kept.
    """

    def __init__(self, window_s: float = 5.0, min_interval_s: float = 0.2) -> None:
        self.window_s = window_s
        self.min_interval_s = min_interval_s
        self._samples: deque[tuple[float, dict[str, float]]] = deque()
        self._lock = threading.Lock()

    def update(self, now_s: float, values: Mapping[str, float]) -> dict[str, float | None]:
        """Record ``values`` at ``now_s`` (monotonic seconds); return each one's rate.

        A rate is None until two snapshots at least ``min_interval_s`` apart exist.
        """
        with self._lock:
            if not self._samples or now_s - self._samples[-1][0] >= self.min_interval_s:
                self._samples.append((now_s, dict(values)))
            while len(self._samples) > 2 and now_s - self._samples[1][0] >= self.window_s:
                self._samples.popleft()
            t0, old = self._samples[0]
        dt = now_s - t0
        if dt < self.min_interval_s:
            return dict.fromkeys(values)
        return {k: (v - old[k]) / dt if k in old else None for k, v in values.items()}


def stats_snapshot(
    pipeline: Pipeline,
    health: HealthReport,
    rates: RateTracker,
    name: str = "",
    preview: PreviewHub | None = None,
) -> dict[str, Any]:
    """The JSON body of ``/stats.json``: per-source and per-stage figures now.

    Rates (``fps_*``) come from the counters' change over the last few seconds of
    calls (the first call reports the average since the start instead).
    """
    now_s = time.monotonic()
    channels = [c.stats() for c in pipeline.channels]
    stage_stats = list(pipeline.stage_stats)
    sources = dict(pipeline.source_stats)
    counters: dict[str, float] = {"out": float(pipeline.packets_out)}
    for sid, ss in sources.items():
        counters[f"in:{sid}"] = float(ss.frames)
        counters[f"out:{sid}"] = float(ss.latency.count)
    for st in stage_stats:
        counters[f"stage:{st.name}"] = float(st.packets)
    rate = rates.update(now_s, counters)
    uptime_s = max(health.uptime_s, 1e-9)

    def fps(key: str) -> float | None:
        r = rate.get(key)
        value = r if r is not None else counters[key] / uptime_s
        return _num(value, 2)

    queue_drops: dict[str, int] = {}
    for ch in channels:
        for sid, n in ch.drops.items():
            queue_drops[sid] = queue_drops.get(sid, 0) + n
    stale: dict[str, int] = {}
    for st in stage_stats:
        for sid, n in dict(st.stale_drops).items():
            stale[sid] = stale.get(sid, 0) + n
    previewed = set(preview.sources()) if preview is not None else set()
    body: dict[str, Any] = {
        "pipeline": name,
        "status": "ok" if health.healthy else "unhealthy",
        "reasons": list(health.reasons),
        "uptime_s": round(health.uptime_s, 3),
        "frames_out": pipeline.packets_out,
        "fps_out": fps("out"),
        "sources": {},
        "stages": [],
    }
    for sid, ss in sources.items():
        lat = ss.latency.summary()
        sh = health.sources.get(sid)
        body["sources"][sid] = {
            "state": sh.state if sh is not None else "starting",
            "frames": ss.frames,
            "frames_out": ss.latency.count,
            "fps_in": fps(f"in:{sid}"),
            "fps_out": fps(f"out:{sid}"),
            "latency_ms": {k: _num(float(v)) for k, v in lat.items() if k != "count"},
            "drops": {"queue": queue_drops.get(sid, 0), "stale": stale.get(sid, 0)},
            "gaps": ss.gaps,
            "missing_frames": ss.missing_frames,
            "reconnects": ss.reconnects,
            "last_frame_age_s": (
                _num(sh.last_frame_age_s, 3)
                if sh is not None and sh.last_frame_age_s is not None
                else None
            ),
            "preview": sid in previewed,
        }
    for st, ch in zip(stage_stats, channels, strict=True):
        body["stages"].append(
            {
                "name": st.name,
                "frames": st.packets,
                "fps": fps(f"stage:{st.name}"),
                "mean_ms": _num(st.latency.mean_ms, 3),
                "p95_ms": _num(st.latency.percentile_ms(95), 3),
                "queue": {
                    "depth": ch.depth,
                    "capacity": ch.capacity,
                    "policy": ch.policy,
                    "peak": ch.peak_depth,
                    "drops": ch.total_drops,
                },
            }
        )
    return body


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>streamer: {title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 16px; background: #f4f4f4; color: #222; }}
h1 {{ font-size: 18px; margin: 0 0 8px; }}
#status {{ font-weight: bold; margin-bottom: 12px; }}
#status.bad {{ color: #b00020; }}
.sources {{ display: flex; flex-wrap: wrap; gap: 16px; }}
figure {{ margin: 0; background: #fff; padding: 8px; border-radius: 6px; }}
figure img {{ display: block; max-width: 100%; background: #000; min-width: 160px;
  min-height: 90px; }}
figcaption {{ margin-top: 6px; font-family: ui-monospace, monospace; }}
table {{ border-collapse: collapse; margin-top: 16px; background: #fff; }}
td, th {{ padding: 3px 10px; border-bottom: 1px solid #ddd; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
</style></head>
<body>
<h1>{title}</h1>
<div id="status">loading stats…</div>
<div class="sources">
{figures}
</div>
<table><thead><tr><th>stage</th><th>frames</th><th>fps</th><th>mean ms</th><th>p95 ms</th>
<th>queue</th><th>peak</th><th>drops</th></tr></thead><tbody id="stages"></tbody></table>
<script>
const fmt = (x, d) => (x === null || x === undefined) ? "-" : Number(x).toFixed(d);
async function refresh() {{
  const status = document.getElementById("status");
  try {{
    const r = await fetch("stats.json", {{cache: "no-store"}});
    const s = await r.json();
    status.textContent = s.status === "ok" ? "healthy, " + s.frames_out + " frames out, "
      + fmt(s.fps_out, 1) + " fps" : "UNHEALTHY: " + s.reasons.join("; ");
    status.className = s.status === "ok" ? "" : "bad";
    for (const [id, st] of Object.entries(s.sources)) {{
      const el = document.querySelector('[data-stats="' + CSS.escape(id) + '"]');
      if (!el) continue;
      el.textContent = id + ": " + fmt(st.fps_out, 1) + " fps, latency p50 "
        + fmt(st.latency_ms.p50, 0) + " ms / p95 " + fmt(st.latency_ms.p95, 0)
        + " ms, drops " + (st.drops.queue + st.drops.stale) + ", " + st.state;
    }}
    const rows = s.stages.map(g => "<tr><td>" + g.name.replace(/[<&>]/g, "")
      + "</td><td>" + g.frames + "</td><td>" + fmt(g.fps, 1) + "</td><td>"
      + fmt(g.mean_ms, 2) + "</td><td>" + fmt(g.p95_ms, 2) + "</td><td>" + g.queue.depth
      + "/" + g.queue.capacity + "</td><td>" + g.queue.peak + "</td><td>" + g.queue.drops
      + "</td></tr>");
    document.getElementById("stages").innerHTML = rows.join("");
  }} catch (e) {{
    status.textContent = "stats unavailable (" + e + ")";
    status.className = "bad";
  }}
}}
window.addEventListener("load", () => {{
  // Streams start after the load event: an endless MJPEG response would hold it back.
  for (const img of document.querySelectorAll("img[data-src]")) img.src = img.dataset.src;
  refresh();
  setInterval(refresh, 1000);
}});
</script>
</body></html>
"""


def render_page(title: str, sources: list[str], preview: set[str]) -> str:
    """The HTML of ``/``: a figure per source (a live image when it is previewed)."""
    figures = []
    for sid in sources:
        esc = html.escape(sid, quote=True)
        if sid in preview:
            url = html.escape(f"stream/{urllib.parse.quote(sid, safe='')}.mjpg", quote=True)
            media = f'<img alt="live preview of {esc}" data-src="{url}">'
        else:
            media = "<p>(no preview: add a <code>type: preview</code> stage)</p>"
        figures.append(
            f'<figure data-source="{esc}">{media}'
            f'<figcaption data-stats="{esc}">{esc}</figcaption></figure>'
        )
    return _PAGE.format(title=html.escape(title), figures="\n".join(figures))


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    monitor: MonitorServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("monitor server: error serving %s", client_address, exc_info=True)


class _HttpServer6(_HttpServer):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _HttpServer
    timeout = 10.0  # a client that stops reading frees its thread after this, seconds
    server_version = "streamer"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("monitor server: %s - %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        monitor = self.server.monitor
        path = urllib.parse.urlsplit(self.path).path
        if path == "/metrics":
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            self._send(200, encoder(monitor.registry), content_type)
        elif path == "/healthz":
            report = monitor.health()
            body = json.dumps(report.to_dict()).encode()
            self._send(200 if report.healthy else 503, body, "application/json")
        elif path == "/stats.json":
            body = json.dumps(monitor.stats()).encode()
            self._send(200, body, "application/json")
        elif path in ("/", "/index.html"):
            self._send(200, monitor.page().encode(), "text/html; charset=utf-8")
        elif path.startswith("/stream/") and path.endswith(".mjpg"):
            self._stream(urllib.parse.unquote(path[len("/stream/") : -len(".mjpg")]))
        else:
            self._send(404, b"not found\n", "text/plain; charset=utf-8")

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, source_id: str) -> None:
        monitor = self.server.monitor
        hub = monitor.preview
        if source_id not in monitor.pipeline.source_stats:
            self._send(404, f"unknown source {source_id!r}\n".encode(), "text/plain")
            return
        if hub is None:
            self._send(404, b"no preview stage in this pipeline\n", "text/plain")
            return
        # Only frames published after the request count: the slot may hold a stale
        # frame from before (nothing is drawn while nobody watches).
        current = hub.latest(source_id)
        version = current.version if current is not None else 0
        self.send_response(200)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        with hub.viewer(source_id):
            while not monitor.closing.is_set():
                frame = hub.wait_newer(source_id, version, monitor.poll_s)
                if frame is None:
                    continue
                version = frame.version
                head = (
                    f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                    f"Content-Length: {len(frame.jpeg)}\r\n\r\n"
                ).encode()
                try:
                    self.wfile.write(head + frame.jpeg + b"\r\n")
                    self.wfile.flush()
                except OSError:  # the client went away (or stalled past ``timeout``)
                    return


class MonitorServer:
    """HTTP server for ``/metrics``, ``/healthz``, ``/stats.json``, ``/`` and MJPEG streams.

    Args:
        pipeline: The pipeline to report on.
        name: Pipeline name (page title, ``streamer_pipeline_info``).
        host: Address to bind; ``127.0.0.1`` keeps it on this machine.
        port: TCP port; 0 picks a free one (read it from :attr:`port` after ``start``).
        source_down_s: ``/healthz`` reports a source silent for longer than this, seconds.
        preview: The latest-frame slots a ``preview`` stage fills, or None; the
            server closes it on ``close`` (to wake waiting streams).
        poll_s: How often a waiting stream re-checks for shutdown, seconds.

    Thread-safety: ``start`` and ``close`` from the owning thread; the handlers run in
    the server's threads and only read the pipeline's counters.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        name: str = "",
        host: str = "127.0.0.1",
        port: int = 0,
        source_down_s: float = 10.0,
        preview: PreviewHub | None = None,
        poll_s: float = 0.25,
    ) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"port: must be in [0, 65535], got {port}")
        if not source_down_s > 0:
            raise ValueError(f"source_down_s: must be > 0, got {source_down_s}")
        self.pipeline = pipeline
        self.name = name
        self.host = host
        self.source_down_s = float(source_down_s)
        self.preview = preview
        self.poll_s = poll_s
        self.registry: CollectorRegistry = make_registry(pipeline, name, self.source_down_s)
        self.closing = threading.Event()
        self._requested_port = port
        self._rates = RateTracker()
        self._httpd: _HttpServer | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The bound port (after ``start``; still known after ``close``)."""
        if self._port is None:
            raise RuntimeError("the server is not started")
        return self._port

    @property
    def url(self) -> str:
        """``http://HOST:PORT/`` of the bound server."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> MonitorServer:
        """Bind and serve in one background thread.

        Raises:
            StreamerError: the address cannot be bound (in use, not local, no permission).
        """
        if self._httpd is not None:
            return self
        cls = _HttpServer6 if ":" in self.host else _HttpServer
        try:
            httpd = cls((self.host, self._requested_port), _Handler)
        except OSError as e:
            raise StreamerError(
                f"server: cannot listen on {self.host}:{self._requested_port}: {e.strerror or e}"
            ) from None
        httpd.monitor = self
        self._httpd = httpd
        self._port = int(httpd.server_address[1])
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="http:monitor",
            daemon=True,
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving, end open streams and free the port; idempotent."""
        self.closing.set()
        if self.preview is not None:
            self.preview.close()
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(5.0)

    def __enter__(self) -> MonitorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what the handlers serve ------------------------------------------------------
    def health(self) -> HealthReport:
        return check_health(self.pipeline, self.source_down_s)

    def stats(self) -> dict[str, Any]:
        return stats_snapshot(self.pipeline, self.health(), self._rates, self.name, self.preview)

    def page(self) -> str:
        sources = list(self.pipeline.source_stats)
        preview = set(sources) if self.preview is not None else set()
        return render_page(self.name or "pipeline", sources, preview)


__all__ = ["MonitorServer", "RateTracker", "render_page", "stats_snapshot"]
