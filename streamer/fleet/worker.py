"""The body of a fleet actor: one camera's pipeline, run in a thread, with status.

:class:`CameraRunner` is plain Python (no Ray import): the supervisor wraps it with
``ray.remote`` to run it as an actor in a Ray worker process, and the in-process
engine runs it directly (tests, ``--engine local``). The pipeline is built in the
worker from the camera's validated config (``run_pipeline``: ``config.resolved.yaml``
and ``summary.json`` land in the camera's run directory), its sink stages are swapped
for fleet ones (resume points, progress files, message tags; see
:mod:`streamer.fleet.resume`), and ``Pipeline.run()`` runs in a thread owned by the
runner, so the actor keeps answering ``status`` and ``stop``.
"""

from __future__ import annotations

import collections
import os
import socket
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from streamer.errors import ConfigError
from streamer.fleet.loader import CameraSpec
from streamer.fleet.resume import ResumePlan, install_fleet_sinks, plan_resume
from streamer.pipeline.runner import Pipeline, RunResult

RECENT_LATENCY_SAMPLES = 300
"""End-to-end latency percentiles in ``status`` cover this many newest frames."""

FPS_WINDOW_S = 5.0
"""``status`` reports frames per second over about this many seconds."""

WORKER_STATES = ("starting", "running", "reconnecting", "stopping", "finished", "failed", "stopped")


@dataclass
class CameraJob:
    """What one attempt of a camera runs (sent to the actor).

    Attributes:
        fleet: Fleet name (message tags).
        camera: The resolved camera.
        run_dir: The camera's run directory (shared by its attempts).
        attempt: 0-based attempt number (restarts so far).
        stall_s: A live source silent this long counts as reconnecting, seconds.
    """

    fleet: str
    camera: CameraSpec
    run_dir: Path
    attempt: int = 0
    stall_s: float = 2.0


def node_info() -> dict[str, Any]:
    """Host name, process id and (inside Ray) node id and address of this process."""
    info: dict[str, Any] = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "node_id": None,
        "node_ip": None,
    }
    try:
        import ray
    except ImportError:
        return info
    if ray.is_initialized():
        info["node_id"] = ray.get_runtime_context().get_node_id()
        info["node_ip"] = ray.util.get_node_ip_address()
    return info


class CameraRunner:
    """Runs one attempt of one camera's pipeline in a background thread.

    Args:
        job: The camera, its run directory and the attempt number.

    Thread-safety: ``start`` once; ``status`` and ``stop`` from any thread (a Ray
    actor calls them one at a time); the pipeline runs in the runner's own thread.
    """

    def __init__(self, job: CameraJob) -> None:
        self.job = job
        self._lock = threading.Lock()
        self._state = "starting"
        self._error: str | None = None
        self._retryable = True
        self._pipe: Pipeline | None = None
        self._plan: ResumePlan | None = None
        self._result: RunResult | None = None
        self._thread: threading.Thread | None = None
        self._stop_asked: bool | None = None  # None: no; False: graceful; True: hard
        self._server_url: str | None = None
        self._node = node_info()
        self._started = time.monotonic()
        self._run_started: float | None = None
        self._samples: collections.deque[tuple[float, int]] = collections.deque(maxlen=64)

    # -- control -------------------------------------------------------------------
    def start(self) -> dict[str, Any]:
        """Start the pipeline thread (idempotent); returns where it runs."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"camera:{self.job.camera.id}", daemon=True
                )
                self._thread.start()
        return dict(self._node)

    def stop(self, hard: bool = False) -> None:
        """Ask the pipeline to stop: drain and flush (``hard``: at once)."""
        with self._lock:
            self._stop_asked = hard or bool(self._stop_asked)
            pipe = self._pipe
            if self._state in ("starting", "running", "reconnecting"):
                self._state = "stopping"
        if pipe is not None:
            pipe.request_stop(hard=hard)

    def join(self, timeout_s: float | None = None) -> bool:
        """Wait for the pipeline thread; True when it has ended."""
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout_s)
        return not thread.is_alive()

    def node(self) -> dict[str, Any]:
        """Host, pid, Ray node id and address of the process running this camera."""
        return dict(self._node)

    # -- status --------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """A JSON-ready snapshot: state, frames, fps, latency, reconnects, errors, node."""
        now = time.monotonic()
        with self._lock:
            state, error, pipe, plan = self._state, self._error, self._pipe, self._plan
            result, retryable = self._result, self._retryable
        cam = self.job.camera
        out: dict[str, Any] = {
            "camera": cam.id,
            "attempt": self.job.attempt,
            "state": state,
            "retryable": retryable,
            "last_error": error,
            **self._node,
            "uptime_s": round(now - self._started, 3),
            "frames": 0,
            "frames_read": 0,
            "expected_frames": None,
            "fps": 0.0,
            "latency_p50_ms": None,
            "latency_p95_ms": None,
            "reconnects": 0,
            "gaps": 0,
            "resumed_from": plan.resume_seq if plan is not None else None,
            "metrics_url": self._server_url,
        }
        if pipe is None:
            return out
        packets = pipe.packets_out
        stats = pipe.source_stats.get(cam.id)
        out["frames"] = packets
        out["frames_read"] = stats.frames if stats is not None else 0
        out["expected_frames"] = pipe.expected_frames
        out["fps"] = round(self._fps(now, packets, result), 2)
        recent = pipe.latency_ms.recent_ms()[-RECENT_LATENCY_SAMPLES:]
        if len(recent):
            out["latency_p50_ms"] = round(float(np.percentile(recent, 50)), 2)
            out["latency_p95_ms"] = round(float(np.percentile(recent, 95)), 2)
        if stats is not None:
            out["reconnects"] = stats.reconnects
            out["gaps"] = stats.gaps
            if (
                state == "running"
                and cam.live
                and not stats.ended
                and stats.last_frame_ns is not None
                and (time.monotonic_ns() - stats.last_frame_ns) / 1e9 > self.job.stall_s
            ):
                out["state"] = "reconnecting"
        if result is not None:
            out["wall_s"] = round(result.wall_s, 3)
            out["errors"] = list(result.errors)
        return out

    def _fps(self, now: float, packets: int, result: RunResult | None) -> float:
        if result is not None:
            return result.fps
        self._samples.append((now, packets))
        while len(self._samples) > 2 and now - self._samples[1][0] >= FPS_WINDOW_S:
            self._samples.popleft()
        t0, p0 = self._samples[0]
        if now - t0 >= 0.2:
            return (packets - p0) / (now - t0)
        if self._run_started is not None and now - self._run_started > 0:
            return packets / (now - self._run_started)
        return 0.0

    # -- the pipeline thread ---------------------------------------------------------
    def _run(self) -> None:
        from streamer.cli import run_pipeline

        job = self.job
        cam = job.camera
        try:
            stage_types = {st.name: st.type for st in cam.config.stages}
            plan = plan_resume(job.run_dir, job.attempt, cam.live, stage_types)
            with self._lock:
                self._plan = plan
            result = run_pipeline(
                cam.config,
                job.run_dir,
                show_progress=False,
                console=Console(stderr=True, quiet=True),
                on_start=self._on_start,
            )
        except ConfigError as e:  # the same everywhere: restarting will not help
            self._finish("failed", str(e), retryable=False)
            return
        except Exception as e:  # model, sink or build failure: may be this node's
            detail = "".join(traceback.format_exception_only(type(e), e)).strip()
            self._finish("failed", detail, retryable=True)
            return
        with self._lock:
            self._result = result
            pipe_failed = self._pipe is not None and self._pipe.failed
            stop_asked = self._stop_asked
        if stop_asked is not None and not pipe_failed:  # stopped (removed, shutdown)
            self._finish("stopped", result.errors[0] if result.errors else None, False)
        elif result.ok:
            self._finish("finished", None, retryable=False)
        elif pipe_failed:  # a stage raised: retry (bounded by the restart policy)
            self._finish("failed", result.errors[0], retryable=True)
        else:  # the source ended with an error: a file will fail the same way again
            self._finish("failed", result.errors[0] if result.errors else None, cam.live)

    def _on_start(self, pipe: Pipeline, server: Any) -> None:
        job = self.job
        node = self._node
        tags = {
            "fleet": job.fleet,
            "camera": job.camera.id,
            "node": node.get("node_id") or node["host"],
            "host": node["host"],
            "attempt": job.attempt,
        }
        assert self._plan is not None
        install_fleet_sinks(pipe.stages, self._plan, job.run_dir, tags)
        with self._lock:
            self._pipe = pipe
            self._server_url = getattr(server, "url", None)
            self._run_started = time.monotonic()
            if self._state == "starting":
                self._state = "running"
            stop = self._stop_asked
        if stop is not None:
            pipe.request_stop(hard=stop)

    def _finish(self, state: str, error: str | None, retryable: bool) -> None:
        with self._lock:
            self._state = state
            self._error = error
            self._retryable = retryable


__all__ = ["WORKER_STATES", "CameraJob", "CameraRunner", "node_info"]
