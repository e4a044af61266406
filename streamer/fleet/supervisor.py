"""The fleet supervisor: launches one actor per camera, watches them, restarts the
ones that die (with exponential backoff), and adds or removes cameras while running.

The supervisor runs on the driver and owns all state; an *engine* runs the actors:

* :class:`RayEngine`: each camera attempt is a Ray actor (``ray.remote(CameraRunner)``)
  with the camera's placement (CPUs, GPU share, memory, custom resources, node label
  selector, spread or pack), ``max_restarts=0``: restarts are the supervisor's, so
  they get backoff, a restart budget and a visible ``restarting`` state, and a
  restarted actor is scheduled afresh (on another node when its node is gone).
* :class:`InProcessEngine`: the same runners as threads of this process (tests, and
  ``streamer fleet run --engine local`` where Ray is not installed).

Camera states (``status``): ``pending`` (actor created, waiting for a node or still
starting its process), ``starting`` (building the pipeline: loading the model),
``running``, ``reconnecting`` (a live source silent for a while), ``restarting``
(its process died or its pipeline failed; waiting out the backoff), ``stopping``,
``finished`` (the source ended and everything was written), ``failed`` (a config
error, a file source error, or the restart budget is spent), ``removed`` (through the
API) and ``stopped`` (the fleet was stopped: Ctrl-C, SIGTERM).

Thread-safety: :meth:`FleetSupervisor.step` (and so every engine call) runs on one
thread, the one that calls :meth:`run`; :meth:`add`, :meth:`remove` and
:meth:`status` may be called from any thread (the HTTP API): add and remove are
queued and carried out by the next step.
"""

from __future__ import annotations

import json
import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from streamer.errors import ConfigError, StreamerError
from streamer.fleet.loader import CameraSpec, Placement
from streamer.fleet.schema import RestartConfig
from streamer.fleet.worker import CameraJob, CameraRunner
from streamer.sources.rtsp import Backoff

logger = logging.getLogger(__name__)

TERMINAL_STATES = frozenset({"finished", "failed", "removed", "stopped"})
ACTIVE_STATES = frozenset({"pending", "starting", "running", "reconnecting", "stopping"})


@dataclass(frozen=True)
class Dead:
    """An engine's answer for an actor whose process is gone (crash, node lost)."""

    reason: str


Poll = Mapping[str, Any] | Dead | None
"""A status dict, :class:`Dead`, or None (no answer yet: pending or busy)."""


class Engine(Protocol):
    """Runs camera attempts somewhere; called from the supervisor's thread only."""

    def launch(self, job: CameraJob, placement: Placement) -> Any:
        """Start one attempt; returns a handle."""
        ...

    def poll(self, handles: Mapping[str, Any], timeout_s: float) -> dict[str, Poll]:
        """Status of each handle, by camera id, waiting at most ``timeout_s``."""
        ...

    def stop(self, handle: Any, hard: bool = False) -> None:
        """Ask an attempt to stop (drain and flush unless ``hard``)."""
        ...

    def kill(self, handle: Any) -> None:
        """End an attempt's process/actor now (idempotent)."""
        ...

    def shutdown(self) -> None:
        """Release the engine (disconnect from Ray)."""
        ...

    def describe(self) -> str:
        """One line: where the actors run."""
        ...


# -- in-process engine -------------------------------------------------------------------
class InProcessEngine:
    """Runs every camera attempt as a :class:`CameraRunner` thread in this process.

    ``crash(camera_id)`` simulates the loss of an attempt's process: its pipeline is
    stopped at once and the next poll reports it :class:`Dead` (tests).
    """

    def __init__(self) -> None:
        self._crashed: set[int] = set()
        self.launched: list[CameraJob] = []

    def launch(self, job: CameraJob, placement: Placement) -> CameraRunner:
        runner = CameraRunner(job)
        runner.start()
        self.launched.append(job)
        return runner

    def poll(self, handles: Mapping[str, Any], timeout_s: float) -> dict[str, Poll]:
        out: dict[str, Poll] = {}
        for cid, runner in handles.items():
            if id(runner) in self._crashed:
                out[cid] = Dead("process crashed (simulated)")
            else:
                out[cid] = runner.status()
        return out

    def crash(self, runner: CameraRunner) -> None:
        """Kill ``runner``'s pipeline hard and report it dead from now on."""
        self._crashed.add(id(runner))
        runner.stop(hard=True)
        runner.join(10.0)

    def stop(self, handle: Any, hard: bool = False) -> None:
        handle.stop(hard=hard)

    def kill(self, handle: Any) -> None:
        handle.stop(hard=True)

    def shutdown(self) -> None:
        pass

    def describe(self) -> str:
        return "in-process threads (no Ray)"


# -- Ray engine --------------------------------------------------------------------------
def import_ray() -> Any:
    """``import ray``, or a one-line error saying how to install it.

    Raises:
        StreamerError: Ray is not installed.
    """
    try:
        import ray
    except ImportError:
        raise StreamerError(
            "streamer fleet needs Ray: pip install 'streamer[fleet]' (or 'ray[default]'), "
            "or run it with --engine local"
        ) from None
    return ray


@dataclass
class _RayHandle:
    actor: Any
    start_ref: Any
    status_ref: Any = None


class RayEngine:
    """Runs every camera attempt as a Ray actor.

    Args:
        address: Ray address (None: start a local instance; ``auto``; ``HOST:PORT``;
            ``ray://HOST:10001``).
        namespace: Ray namespace of the actors.
        log_to_driver: Forward the workers' output to this process's stderr.
        num_cpus: CPUs of a local instance (ignored with an address).
        num_gpus: GPUs of a local instance (ignored with an address).
        runtime_env: Ray runtime environment for the workers.

    Raises:
        StreamerError: Ray is missing or cannot be reached.
    """

    def __init__(
        self,
        address: str | None = None,
        namespace: str = "streamer",
        log_to_driver: bool = True,
        num_cpus: int | None = None,
        num_gpus: int | None = None,
        runtime_env: Mapping[str, Any] | None = None,
    ) -> None:
        ray = import_ray()
        self._ray = ray
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            kwargs: dict[str, Any] = {
                "namespace": namespace,
                "log_to_driver": log_to_driver,
                "logging_level": logging.WARNING,
            }
            if runtime_env:
                kwargs["runtime_env"] = dict(runtime_env)
            if address is None:
                kwargs.update(num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False)
            else:
                kwargs["address"] = address
            try:
                ray.init(**kwargs)
            except Exception as e:  # ConnectionError, RuntimeError, ValueError, ...
                where = address or "a local instance"
                raise StreamerError(f"cannot start or join Ray ({where}): {e}") from None
        self.address = address
        self._actor_cls = ray.remote(CameraRunner)
        from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

        self._died = (ActorDiedError,)
        self._unavailable = (ActorUnavailableError,)
        self._actor_error = (RayActorError,)

    def describe(self) -> str:
        nodes = [n for n in self._ray.nodes() if n.get("Alive")]
        cpus = sum(n["Resources"].get("CPU", 0.0) for n in nodes)
        gpus = sum(n["Resources"].get("GPU", 0.0) for n in nodes)
        where = self.address or "local instance"
        return (
            f"Ray {self._ray.__version__} ({where}): {len(nodes)} nodes, {cpus:g} CPUs, "
            f"{gpus:g} GPUs"
        )

    def launch(self, job: CameraJob, placement: Placement) -> _RayHandle:
        opts = placement.ray_options()
        opts.update(max_restarts=0, max_task_retries=0)
        actor = self._actor_cls.options(**opts).remote(job)
        return _RayHandle(actor=actor, start_ref=actor.start.remote())

    def poll(self, handles: Mapping[str, Any], timeout_s: float) -> dict[str, Poll]:
        ray = self._ray
        for h in handles.values():
            if h.status_ref is None:
                h.status_ref = h.actor.status.remote()
        refs = [h.status_ref for h in handles.values()]
        if refs:
            ray.wait(refs, num_returns=len(refs), timeout=timeout_s, fetch_local=True)
        out: dict[str, Poll] = {}
        for cid, h in handles.items():
            ready, _ = ray.wait([h.status_ref], timeout=0)
            if not ready:
                out[cid] = None
                continue
            ref, h.status_ref = h.status_ref, None
            try:
                out[cid] = ray.get(ref)
            except self._unavailable:
                out[cid] = None  # a blip, or a node on its way out: ask again
            except self._actor_error as e:
                out[cid] = Dead(_first_line(str(e)))
        return out

    def stop(self, handle: Any, hard: bool = False) -> None:
        handle.actor.stop.remote(hard)

    def kill(self, handle: Any) -> None:
        try:
            self._ray.kill(handle.actor, no_restart=True)
        except Exception as e:  # already gone
            logger.debug("ray.kill: %s", e)

    def shutdown(self) -> None:
        if self._owns_ray:
            self._ray.shutdown()


def _where_running(status: Mapping[str, Any]) -> str:
    node = status.get("node_id") or status.get("host")
    text = f"node {str(node)[:12]} ({status.get('node_ip') or status.get('host')}, "
    text += f"pid {status.get('pid')})"
    if status.get("resumed_from"):
        text += f", resuming at frame {status['resumed_from']}"
    return text


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    reason = next((ln for ln in lines if "died because" in ln or "node" in ln.lower()), None)
    head = lines[0] if lines else text
    return f"{head} ({reason})" if reason and reason != head else head


# -- the supervisor ----------------------------------------------------------------------
@dataclass
class CameraState:
    """The supervisor's record of one camera (all its attempts)."""

    spec: CameraSpec
    state: str = "pending"
    attempt: int = 0
    restarts: int = 0
    failures_in_row: int = 0
    handle: Any = None
    status: dict[str, Any] = field(default_factory=dict)
    last_error: str | None = None
    attempt_started: float = 0.0
    state_since: float = 0.0
    restart_at: float | None = None
    stop_deadline: float | None = None
    removing: bool = False
    end_state: str = "removed"  # what a stop ends in: removed (API) or stopped (shutdown)
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Command:
    kind: str
    arg: Any
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: StreamerError | None = None


class FleetSupervisor:
    """Keeps every camera of a fleet running on an engine.

    Args:
        name: Fleet name (tags, logs).
        engine: Where the actors run.
        run_dir: Fleet run directory; camera ``X`` writes under ``run_dir / X``.
        restart: Restart policy.
        poll_s: Interval of status polls, seconds.
        stop_timeout_s: How long a stopping camera may drain before it is killed.
        on_event: Called with one line for every state change (progress output).
        seed: Seed of the backoff jitter (tests).
    """

    def __init__(
        self,
        name: str,
        engine: Engine,
        run_dir: Path,
        restart: RestartConfig | None = None,
        *,
        poll_s: float = 0.5,
        stop_timeout_s: float = 20.0,
        on_event: Callable[[str], None] | None = None,
        seed: int | None = None,
    ) -> None:
        self.name = name
        self.engine = engine
        self.run_dir = run_dir
        self.restart = restart or RestartConfig.model_validate({})
        self.backoff = Backoff(
            initial_delay_s=self.restart.initial_delay_s,
            max_delay_s=self.restart.max_delay_s,
            factor=self.restart.factor,
            jitter=self.restart.jitter,
        )
        self.poll_s = poll_s
        self.stop_timeout_s = stop_timeout_s
        self.on_event = on_event or (lambda line: logger.info("%s", line))
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._cameras: dict[str, CameraState] = {}
        self._commands: queue.Queue[_Command] = queue.Queue()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self.started = time.time()

    # -- thread-safe API ---------------------------------------------------------------
    def add(self, spec: CameraSpec, timeout_s: float = 30.0) -> dict[str, Any]:
        """Add a camera and launch it (carried out by the supervisor's thread).

        Raises:
            ConfigError: a camera with this id is already in the fleet (not removed).
            StreamerError: the supervisor did not take the command within ``timeout_s``.
        """
        return self._submit("add", spec, timeout_s)

    def remove(self, camera_id: str, timeout_s: float = 30.0) -> dict[str, Any]:
        """Stop a camera (drain and flush, then end its actor) and mark it removed.

        Returns at once with the camera ``stopping`` (or ``removed``); poll
        :meth:`status` to see it gone.

        Raises:
            ConfigError: no such camera.
        """
        return self._submit("remove", camera_id, timeout_s)

    def status(self) -> list[dict[str, Any]]:
        """One JSON-ready row per camera, in the order they were added."""
        now = time.monotonic()
        with self._lock:
            return [self._row(c, now) for c in self._cameras.values()]

    def camera(self, camera_id: str) -> dict[str, Any] | None:
        """The status row of one camera, or None."""
        now = time.monotonic()
        with self._lock:
            c = self._cameras.get(camera_id)
            return None if c is None else self._row(c, now)

    def handle(self, camera_id: str) -> Any:
        """The engine's handle of a camera's current attempt, or None (tests, tools)."""
        with self._lock:
            c = self._cameras.get(camera_id)
            return None if c is None else c.handle

    def request_stop(self) -> None:
        """Make :meth:`run` return after stopping every camera."""
        self._stop.set()
        self._wake.set()

    @property
    def done(self) -> bool:
        """Every camera is finished, failed or removed (and there is at least one)."""
        with self._lock:
            states = [c.state for c in self._cameras.values()]
        return bool(states) and all(s in TERMINAL_STATES for s in states)

    def _submit(self, kind: str, arg: Any, timeout_s: float) -> dict[str, Any]:
        cmd = _Command(kind, arg)
        self._commands.put(cmd)
        self._wake.set()
        if not cmd.done.wait(timeout_s):
            raise StreamerError(f"fleet supervisor did not {kind} within {timeout_s:g} s")
        if cmd.error is not None:
            raise cmd.error
        return dict(cmd.result)

    # -- the supervisor's thread ---------------------------------------------------------
    def start(self, cameras: list[CameraSpec]) -> None:
        """Launch the fleet's initial cameras (supervisor's thread)."""
        for spec in cameras:
            self._add(spec)

    def run(
        self,
        cameras: list[CameraSpec],
        *,
        until_done: bool = True,
        on_tick: Callable[[FleetSupervisor], None] | None = None,
    ) -> list[dict[str, Any]]:
        """Launch ``cameras`` and supervise until done (or :meth:`request_stop`).

        Args:
            cameras: The initial cameras.
            until_done: Return when every camera is finished, failed or removed;
                False keeps running (for cameras added later) until stopped.
            on_tick: Called after every step.

        Returns:
            The final status rows. Every actor is stopped (gracefully, then killed)
            on every exit path, Ctrl-C included.
        """
        try:
            self.start(cameras)
            while not self._stop.is_set():
                t0 = time.monotonic()
                self.step()
                if on_tick is not None:
                    on_tick(self)
                if until_done and self.done and self._commands.empty():
                    break
                # One round per poll_s at most (a command or a stop request wakes it):
                # status calls take the GIL of the cameras' processes.
                self._wake.wait(max(0.0, self.poll_s - (time.monotonic() - t0)))
                self._wake.clear()
        finally:
            self.shutdown()
        return self.status()

    def step(self) -> None:
        """One round: commands, status polls, deaths, due restarts, stop deadlines."""
        self._run_commands()
        with self._lock:
            handles = {c.spec.id: c.handle for c in self._cameras.values() if c.handle is not None}
        polls = self.engine.poll(handles, self.poll_s) if handles else {}
        now = time.monotonic()
        with self._lock:
            cams = list(self._cameras.values())
        for cam in cams:
            if cam.spec.id in polls and cam.handle is handles.get(cam.spec.id):
                self._on_poll(cam, polls[cam.spec.id], now)
            if cam.state == "restarting" and cam.restart_at is not None and now >= cam.restart_at:
                self._launch(cam, cam.attempt + 1)
            if cam.stop_deadline is not None and now >= cam.stop_deadline and cam.handle:
                self._event(cam, f"did not stop within {self.stop_timeout_s:g} s: killed")
                self._end_attempt(cam, cam.end_state, None)

    def shutdown(self) -> None:
        """Stop every running camera (drain and flush, up to ``stop_timeout_s``), then
        kill what is left and release the engine."""
        self._run_commands()
        with self._lock:
            live = [c for c in self._cameras.values() if c.handle is not None]
        for cam in live:
            self.engine.stop(cam.handle)
            if not cam.removing:  # a camera already being removed ends as removed
                cam.end_state = "stopped"
            cam.removing = True
            self._set(cam, "stopping")
        deadline = time.monotonic() + self.stop_timeout_s
        while live and time.monotonic() < deadline:
            handles = {c.spec.id: c.handle for c in live if c.handle is not None}
            if not handles:
                break
            t0 = time.monotonic()
            polls = self.engine.poll(handles, min(self.poll_s, 0.5))
            now = time.monotonic()
            for cam in live:
                if cam.handle is not None and cam.spec.id in polls:
                    self._on_poll(cam, polls[cam.spec.id], now)
            live = [c for c in live if c.handle is not None]
            if live:
                time.sleep(max(0.0, min(self.poll_s, 0.5) - (time.monotonic() - t0)))
        for cam in live:
            self._end_attempt(cam, cam.end_state, "killed at shutdown")
        with self._lock:
            for cam in self._cameras.values():
                if cam.state == "restarting":
                    self._set(cam, "stopped")
        self.engine.shutdown()

    # -- internals -----------------------------------------------------------------------
    def _run_commands(self) -> None:
        while True:
            try:
                cmd = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                if cmd.kind == "add":
                    cmd.result = self._add(cmd.arg)
                else:
                    cmd.result = self._remove(cmd.arg)
            except StreamerError as e:
                cmd.error = e
            except Exception as e:  # an engine failure: report it to the caller
                cmd.error = StreamerError(f"{cmd.kind} failed: {type(e).__name__}: {e}")
            cmd.done.set()

    def _add(self, spec: CameraSpec) -> dict[str, Any]:
        with self._lock:
            old = self._cameras.get(spec.id)
            if old is not None and old.state not in ("removed", "stopped"):
                raise ConfigError(f"camera {spec.id!r} is already in the fleet ({old.state})")
            cam = CameraState(spec=spec)
            self._cameras.pop(spec.id, None)
            self._cameras[spec.id] = cam
        self._launch(cam, 0)
        return self._row(cam, time.monotonic())

    def _remove(self, camera_id: str) -> dict[str, Any]:
        with self._lock:
            cam = self._cameras.get(camera_id)
        if cam is None:
            raise ConfigError(f"no camera {camera_id!r} in the fleet")
        cam.removing = True
        if cam.handle is not None and cam.state in ACTIVE_STATES:
            self.engine.stop(cam.handle)
            cam.stop_deadline = time.monotonic() + self.stop_timeout_s
            self._set(cam, "stopping")
            self._event(cam, "stopping (removed)")
        elif cam.handle is not None:
            self._end_attempt(cam, "removed", None)
        elif cam.state != "removed":
            self._set(cam, "removed")
            self._event(cam, "removed")
        return self._row(cam, time.monotonic())

    def _launch(self, cam: CameraState, attempt: int) -> None:
        job = CameraJob(
            fleet=self.name, camera=cam.spec, run_dir=self.run_dir / cam.spec.id, attempt=attempt
        )
        cam.attempt = attempt
        cam.restart_at = None
        cam.stop_deadline = None
        cam.status = {}
        cam.attempt_started = time.monotonic()
        try:
            cam.handle = self.engine.launch(job, cam.spec.placement)
        except Exception as e:  # bad placement (unknown label syntax), engine gone
            cam.handle = None
            self._fail_or_restart(cam, f"cannot launch: {type(e).__name__}: {e}")
            return
        self._set(cam, "pending")
        cam.state_since = time.monotonic()
        what = "restarting" if attempt else "launched"
        self._event(cam, f"{what} (attempt {attempt}; {cam.spec.placement.describe()})")

    def _on_poll(self, cam: CameraState, poll: Poll, now: float) -> None:
        if poll is None:
            return
        if isinstance(poll, Dead):
            reason = f"process lost: {poll.reason}"
            self._record_attempt(cam, "died", reason)
            cam.handle = None
            if cam.removing:
                self._set(cam, cam.end_state)
                self._event(cam, f"{cam.end_state} ({reason})")
            else:
                self._fail_or_restart(cam, reason)
            return
        status = dict(poll)
        was_running = cam.state in ("running", "reconnecting")
        cam.status = status
        worker_state = status.get("state", "running")
        if worker_state in ("starting", "running", "reconnecting", "stopping"):
            if cam.state != "stopping" or worker_state == "stopping":
                self._set(cam, worker_state)
            if worker_state == "running" and not was_running:
                self._event(cam, "running on " + _where_running(status))
            return
        error = status.get("last_error")
        if worker_state == "finished":
            self._end_attempt(cam, cam.end_state if cam.removing else "finished", None)
        elif worker_state == "stopped" or cam.removing:
            self._end_attempt(cam, cam.end_state, error)
        elif status.get("retryable", False):
            self._record_attempt(cam, "failed", error)
            self.engine.kill(cam.handle)
            cam.handle = None
            self._fail_or_restart(cam, error or "pipeline failed")
        else:
            self._end_attempt(cam, "failed", error)

    def _end_attempt(self, cam: CameraState, state: str, error: str | None) -> None:
        self._record_attempt(cam, state, error)
        if cam.handle is not None:
            self.engine.kill(cam.handle)
            cam.handle = None
        cam.stop_deadline = None
        if error:
            cam.last_error = error
        self._set(cam, state)
        frames = cam.status.get("frames")
        detail = f" ({frames} frames)" if frames is not None else ""
        self._event(cam, f"{state}{detail}" + (f": {error}" if error else ""))

    def _record_attempt(self, cam: CameraState, ended: str, error: str | None) -> None:
        st = cam.status
        cam.history.append(
            {
                "attempt": cam.attempt,
                "ended": ended,
                "error": error,
                "node_id": st.get("node_id"),
                "node_ip": st.get("node_ip"),
                "host": st.get("host"),
                "pid": st.get("pid"),
                "frames": st.get("frames"),
                "resumed_from": st.get("resumed_from"),
                "ran_s": round(time.monotonic() - cam.attempt_started, 3),
            }
        )

    def _fail_or_restart(self, cam: CameraState, reason: str) -> None:
        cam.last_error = reason
        limit = self.restart.max_restarts
        if limit is not None and cam.restarts >= limit:
            self._set(cam, "failed")
            self._event(cam, f"failed after {cam.restarts} restarts: {reason}")
            return
        ran_s = time.monotonic() - cam.attempt_started
        if ran_s >= self.restart.reset_after_s:
            cam.failures_in_row = 0
        delay = self.backoff.delay_s(cam.failures_in_row, self._rng)
        cam.failures_in_row += 1
        cam.restarts += 1
        cam.restart_at = time.monotonic() + delay
        self._set(cam, "restarting")
        self._event(cam, f"{reason}; restart {cam.restarts} in {delay:.1f} s")

    def _set(self, cam: CameraState, state: str) -> None:
        if cam.state != state:
            cam.state = state
            cam.state_since = time.monotonic()

    def _event(self, cam: CameraState, text: str) -> None:
        self.on_event(f"camera {cam.spec.id}: {text}")

    def _row(self, cam: CameraState, now: float) -> dict[str, Any]:
        st = cam.status
        return {
            "camera": cam.spec.id,
            "group": cam.spec.group,
            "state": cam.state,
            "attempt": cam.attempt,
            "restarts": cam.restarts,
            "node_id": st.get("node_id"),
            "node_ip": st.get("node_ip"),
            "host": st.get("host"),
            "pid": st.get("pid"),
            "frames": st.get("frames", 0),
            "expected_frames": st.get("expected_frames"),
            "fps": st.get("fps", 0.0),
            "latency_p50_ms": st.get("latency_p50_ms"),
            "latency_p95_ms": st.get("latency_p95_ms"),
            "reconnects": st.get("reconnects", 0),
            "resumed_from": st.get("resumed_from"),
            "last_error": st.get("last_error") or cam.last_error or self._waiting(cam, now),
            "restart_in_s": (
                round(max(0.0, cam.restart_at - now), 2)
                if cam.state == "restarting" and cam.restart_at is not None
                else None
            ),
            "state_for_s": round(now - cam.state_since, 2) if cam.state_since else None,
            "pipeline": str(cam.spec.pipeline_path),
            "placement": cam.spec.placement.describe(),
            "live": cam.spec.live,
            "run_dir": str(self.run_dir / cam.spec.id),
            "history": list(cam.history),
        }

    @staticmethod
    def _waiting(cam: CameraState, now: float) -> str | None:
        """Why a camera has been pending for a while (no node has room or the labels)."""
        if cam.state != "pending" or not cam.state_since or now - cam.state_since < 10.0:
            return None
        return f"waiting for a node with {cam.spec.placement.describe()}"

    def write_report(self, path: Path) -> None:
        """Write the final status of every camera (with its attempts) as JSON."""
        data = {"fleet": self.name, "run_dir": str(self.run_dir), "cameras": self.status()}
        path.write_text(json.dumps(data, indent=2), encoding="utf-8")


__all__ = [
    "ACTIVE_STATES",
    "TERMINAL_STATES",
    "CameraState",
    "Dead",
    "Engine",
    "FleetSupervisor",
    "InProcessEngine",
    "RayEngine",
    "import_ray",
]
