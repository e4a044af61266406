"""Fleet YAML schema (pydantic v2): cameras and camera groups, each running a pipeline
YAML on a Ray cluster, with placement hints and a restart policy.

::

    name: site1
    pipeline: ../pipelines/pets09_yolox.yaml   # default pipeline of every camera
    placement: {num_cpus: 1}                   # defaults; groups and cameras override
    restart: {max_restarts: 10, initial_delay_s: 1, max_delay_s: 30}
    api: {host: 127.0.0.1, port: 8765}
    ray: {address: null}                       # null: start a local Ray instance
    cameras:
      - id: lobby
        source: {type: rtsp, url: "rtsp://${env:CAM_USER}:${env:CAM_PASS}@10.0.0.7/s1"}
    groups:
      - name: parking
        placement: {num_gpus: 0.25, labels: {streamer.io/accelerator: jetson}}
        source: {type: rtsp, read_timeout_s: 5}    # shared by the group's cameras
        cameras:
          - {id: p1, source: {url: rtsp://10.0.1.1/s1}}
          - {id: p2, source: {url: rtsp://10.0.1.2/s1}}

Every model forbids unknown keys. A camera's ``source`` is merged key by key over the
single source of its pipeline (or replaces it when it names another ``type``); the
merged source is validated as a pipeline source and gets the camera's id. See
README.md ("Fleets: many cameras on a Ray cluster").
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from streamer.config.schema import NAME_PATTERN, StrictModel

# Ray node labels follow Kubernetes label syntax: optional DNS prefix, a name of at
# most 63 characters. A selector value may carry Ray's operators (!, in(), !in()).
_LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
_LABEL_SELECTOR_VALUE = re.compile(r"^!?(in\()?[-A-Za-z0-9_.,\s]*\)?$")
_RESERVED_RESOURCES = {"CPU", "GPU", "memory", "object_store_memory"}


class PlacementConfig(StrictModel):
    """Where and with what a camera's pipeline runs: the Ray resources its actor asks
    for. Every field left out (null) is taken from the group, then the fleet, then the
    default given here.

    Attributes:
        num_cpus: Ray CPUs reserved (default 1); fractions pack several cameras on a
            core (Ray counts them, it does not pin threads).
        num_gpus: GPU fraction, e.g. 0.25 for four cameras per GPU (default 0); above
            1 it must be a whole number. Ray sets ``CUDA_VISIBLE_DEVICES`` for the actor.
        memory_mb: Memory reserved for scheduling, MiB (null: none).
        resources: Custom Ray resources, e.g. ``{jetson: 1}`` for nodes started with
            ``--resources '{"jetson": 4}'``.
        labels: Node labels the node must have (Ray's ``label_selector``), e.g.
            ``{streamer.io/accelerator: gpu}`` for nodes started with
            ``--labels streamer.io/accelerator=gpu``; values may use ``!v``,
            ``in(a,b)``, ``!in(a,b)``.
        strategy: ``spread`` (default: cameras spread over nodes) or ``pack``
            (Ray's default: fill a node before the next).
    """

    num_cpus: float | None = Field(None, ge=0.0, le=1024.0)
    num_gpus: float | None = Field(None, ge=0.0, le=64.0)
    memory_mb: int | None = Field(None, ge=1, le=16 * 1024 * 1024)
    resources: dict[str, float] | None = None
    labels: dict[str, str] | None = None
    strategy: Literal["spread", "pack"] | None = None

    @field_validator("num_gpus")
    @classmethod
    def _whole_above_one(cls, v: float | None) -> float | None:
        if v is not None and v > 1 and v != int(v):
            raise ValueError(f"a GPU share above 1 must be a whole number of GPUs, got {v}")
        return v

    @field_validator("resources")
    @classmethod
    def _custom_only(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        for name, amount in (v or {}).items():
            if name in _RESERVED_RESOURCES:
                raise ValueError(
                    f"{name!r} is not a custom resource: use num_cpus, num_gpus or memory_mb"
                )
            if not name or amount < 0:
                raise ValueError(f"resource {name!r}: need a name and an amount >= 0")
        return v

    @field_validator("labels")
    @classmethod
    def _label_syntax(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        for key, value in (v or {}).items():
            if not _LABEL_KEY.match(key):
                raise ValueError(
                    f"label key {key!r}: want [prefix/]name (Kubernetes label syntax, "
                    "name at most 63 characters)"
                )
            if not isinstance(value, str) or not _LABEL_SELECTOR_VALUE.match(value):
                raise ValueError(f"label {key!r}: bad selector value {value!r}")
        return v


class RestartConfig(StrictModel):
    """Restarts of a camera whose pipeline process died (crash, node lost) or failed.

    The delay before restart ``k`` (0-based, counted since the last long run) is
    ``min(max_delay_s, initial_delay_s * factor**k)`` times a random factor in
    ``[1 - jitter, 1 + jitter]``.

    Attributes:
        max_restarts: Restarts allowed per camera before it is marked ``failed``
            (null: unlimited).
        initial_delay_s: First delay, seconds.
        max_delay_s: Largest delay, seconds.
        factor: Growth of the delay per restart in a row.
        jitter: Relative random spread of each delay, [0, 1).
        reset_after_s: An attempt that ran this long before failing resets the
            backoff to ``initial_delay_s``, seconds.
    """

    max_restarts: int | None = Field(10, ge=0, le=1_000_000)
    initial_delay_s: float = Field(1.0, gt=0.0, le=3600.0)
    max_delay_s: float = Field(30.0, gt=0.0, le=3600.0)
    factor: float = Field(2.0, ge=1.0, le=10.0)
    jitter: float = Field(0.2, ge=0.0, lt=1.0)
    reset_after_s: float = Field(60.0, gt=0.0, le=86_400.0)

    @model_validator(mode="after")
    def _max_not_below_initial(self) -> RestartConfig:
        if self.max_delay_s < self.initial_delay_s:
            raise ValueError(
                f"max_delay_s ({self.max_delay_s}) must be >= initial_delay_s "
                f"({self.initial_delay_s})"
            )
        return self


class ApiConfig(StrictModel):
    """The driver's control API (``streamer fleet status|add|remove`` talk to it).

    Attributes:
        host: Address to bind (127.0.0.1: this machine only; there is no
            authentication).
        port: TCP port; 0 picks a free one (printed at start).
    """

    host: str = Field("127.0.0.1", min_length=1)
    port: int = Field(8765, ge=0, le=65535)


class RayConfig(StrictModel):
    """How the driver joins Ray.

    Attributes:
        address: null starts a local Ray instance; ``auto`` joins the cluster of this
            machine (``ray start``); ``HOST:PORT`` a head's GCS; ``ray://HOST:10001``
            a remote cluster through Ray Client. ``--address`` overrides it.
        namespace: Ray namespace of the fleet's actors.
        log_to_driver: Print the workers' logs on the driver's stderr.
        num_cpus: CPUs of a local instance (null: all cores); ignored with an address.
        num_gpus: GPUs of a local instance (null: detected); ignored with an address.
        runtime_env: Ray runtime environment for the workers (e.g. ``{pip: [...]}``
            when the cluster image lacks streamer).
    """

    address: str | None = None
    namespace: str = Field("streamer", min_length=1)
    log_to_driver: bool = True
    num_cpus: int | None = Field(None, ge=0)
    num_gpus: int | None = Field(None, ge=0)
    runtime_env: dict[str, Any] | None = None


class CameraConfig(StrictModel):
    """One camera: a stream and the pipeline that processes it.

    Attributes:
        id: Camera id: the pipeline's source id, the topic of its messages and the
            folder of its outputs.
        pipeline: Pipeline YAML (relative to the fleet file); null: the group's or
            the fleet's.
        source: Keys merged over the pipeline's source (relative paths are relative
            to the fleet file); with another ``type`` it replaces that source.
        placement: Overrides of the group's and fleet's placement.
    """

    id: str = Field(pattern=NAME_PATTERN)
    pipeline: Path | None = None
    source: dict[str, Any] | None = None
    placement: PlacementConfig | None = None


class CameraGroupConfig(StrictModel):
    """Cameras sharing a pipeline, source settings and placement (each camera is
    still its own Ray actor, restarted on its own).

    Attributes:
        name: Group name (shown in ``status``).
        pipeline: Pipeline YAML of the group's cameras (relative to the fleet file).
        source: Source keys shared by the group's cameras (each camera's ``source``
            is merged over them).
        placement: Placement of the group's cameras (over the fleet's).
        cameras: The cameras.
    """

    name: str = Field(pattern=NAME_PATTERN)
    pipeline: Path | None = None
    source: dict[str, Any] | None = None
    placement: PlacementConfig | None = None
    cameras: list[CameraConfig] = Field(min_length=1)


class FleetConfig(StrictModel):
    """A fleet: cameras and camera groups run as Ray actors.

    Attributes:
        name: Fleet name (run directory, message tags, Ray actor names).
        output_dir: Run directory; ``{name}`` and ``{timestamp}`` are filled in;
            camera ``X`` writes under ``<output_dir>/X/``. On a cluster it must be a
            filesystem every node sees.
        pipeline: Default pipeline YAML of every camera.
        placement: Default placement.
        restart: Restart policy.
        api: Control API on the driver (null: none).
        ray: How to join Ray.
        poll_s: How often the driver asks every camera for its status, seconds.
        stop_timeout_s: How long a stopping camera may drain and flush before its
            actor is killed, seconds.
        cameras: Cameras.
        groups: Camera groups.
    """

    name: str = Field(pattern=NAME_PATTERN)
    output_dir: str = "runs/fleet-{name}-{timestamp}"
    pipeline: Path | None = None
    placement: PlacementConfig = Field(default_factory=PlacementConfig)  # type: ignore[arg-type]
    restart: RestartConfig = Field(default_factory=RestartConfig)  # type: ignore[arg-type]
    api: ApiConfig | None = Field(default_factory=ApiConfig)  # type: ignore[arg-type]
    ray: RayConfig = Field(default_factory=RayConfig)  # type: ignore[arg-type]
    poll_s: float = Field(0.5, gt=0.0, le=60.0)
    stop_timeout_s: float = Field(20.0, gt=0.0, le=3600.0)
    cameras: list[CameraConfig] = Field(default_factory=list)
    groups: list[CameraGroupConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_ids(self) -> FleetConfig:
        ids = [c.id for c in self.cameras] + [c.id for g in self.groups for c in g.cameras]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"camera ids must be unique, repeated: {dupes}")
        names = [g.name for g in self.groups]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"group names must be unique, repeated: {dupes}")
        return self


__all__ = [
    "ApiConfig",
    "CameraConfig",
    "CameraGroupConfig",
    "FleetConfig",
    "PlacementConfig",
    "RayConfig",
    "RestartConfig",
]
