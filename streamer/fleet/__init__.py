"""Fleets: many cameras, each running a pipeline YAML as a Ray actor.

* :mod:`streamer.fleet.schema` — the fleet YAML (cameras, groups, placement, restarts).
* :mod:`streamer.fleet.loader` — resolves each camera into a pipeline config.
* :mod:`streamer.fleet.worker` — :class:`CameraRunner`, the body of a camera's actor.
* :mod:`streamer.fleet.resume` — resume after a restart (progress files, appending sinks).
* :mod:`streamer.fleet.supervisor` — launches, watches, restarts; the Ray engine.
* :mod:`streamer.fleet.api` — the driver's control API and its client.
* :mod:`streamer.fleet.commands` — ``streamer fleet run | status | add | remove | validate``.
* :mod:`streamer.fleet.local_cluster` — a multi-node Ray cluster on loopback (tests,
  benchmarks).

Ray is optional (``pip install 'streamer[fleet]'``); nothing here imports it at module
level.
"""

from __future__ import annotations

from streamer.fleet.loader import CameraSpec, Fleet, Placement, load_fleet
from streamer.fleet.schema import FleetConfig
from streamer.fleet.supervisor import FleetSupervisor, InProcessEngine, RayEngine
from streamer.fleet.worker import CameraJob, CameraRunner

__all__ = [
    "CameraJob",
    "CameraRunner",
    "CameraSpec",
    "Fleet",
    "FleetConfig",
    "FleetSupervisor",
    "InProcessEngine",
    "Placement",
    "RayEngine",
    "load_fleet",
]
