"""Load a fleet YAML: substitutions, validation, and one resolved pipeline per camera.

Each camera resolves to a :class:`CameraSpec`: its pipeline YAML loaded with the
pipeline loader (presets, paths), its source replaced by the camera's (the
pipeline's single source with the group's and the camera's ``source`` keys merged
over it, validated as a pipeline source, ``id`` = camera id) and its placement
(fleet defaults, then the group's, then the camera's). Errors are one line naming the
file and the YAML path: ``fleet.yaml: groups[0].cameras[2].source.url: ...``.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from streamer.config.loader import (
    _read_yaml,
    deep_merge,
    hide_secrets,
    load_pipeline,
    substitute,
    validation_message,
)
from streamer.config.schema import (
    CameraSourceConfig,
    GStreamerSourceConfig,
    MqttSinkConfig,
    PipelineConfig,
    ReplaySourceConfig,
    RtspSourceConfig,
    SourceConfig,
    ZeroMqSinkConfig,
)
from streamer.errors import ConfigError
from streamer.fleet.schema import CameraConfig, CameraGroupConfig, FleetConfig, PlacementConfig

_SOURCE = TypeAdapter(SourceConfig)


@dataclass(frozen=True)
class Placement:
    """A camera's resolved placement (see :class:`~streamer.fleet.schema.PlacementConfig`)."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    memory_mb: int | None = None
    resources: Mapping[str, float] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    strategy: str = "spread"

    def ray_options(self) -> dict[str, Any]:
        """Keyword arguments of ``ActorClass.options(...)`` for this placement."""
        opts: dict[str, Any] = {
            "num_cpus": self.num_cpus,
            "num_gpus": self.num_gpus,
            "scheduling_strategy": "SPREAD" if self.strategy == "spread" else "DEFAULT",
        }
        if self.memory_mb is not None:
            opts["memory"] = self.memory_mb * 1024 * 1024
        if self.resources:
            opts["resources"] = dict(self.resources)
        if self.labels:
            opts["label_selector"] = dict(self.labels)
        return opts

    def describe(self) -> str:
        """A short text such as ``cpu 0.5, gpu 0.25, labels {kind: gpu}``."""
        parts = [f"cpu {self.num_cpus:g}"]
        if self.num_gpus:
            parts.append(f"gpu {self.num_gpus:g}")
        if self.memory_mb:
            parts.append(f"memory {self.memory_mb} MiB")
        if self.resources:
            parts.append(f"resources {dict(self.resources)}")
        if self.labels:
            parts.append(f"labels {dict(self.labels)}")
        parts.append(self.strategy)
        return ", ".join(parts)


def resolve_placement(*layers: PlacementConfig | None) -> Placement:
    """Merge placement layers, later ones winning field by field, over the defaults."""
    values: dict[str, Any] = {}
    for layer in layers:
        if layer is None:
            continue
        for name, value in layer.model_dump(exclude_none=True).items():
            values[name] = value
    if "strategy" in values:
        values["strategy"] = str(values["strategy"])
    return Placement(**values)


@dataclass
class CameraSpec:
    """A camera ready to run: its pipeline config (one source, id = camera id).

    Attributes:
        id: Camera id (= source id).
        group: Group name, or None.
        pipeline_path: The pipeline YAML it was made from.
        config: The validated pipeline config (absolute paths).
        placement: Where its actor may run.
        live: Its source is live: a restart starts a new stream (see
            :mod:`streamer.fleet.resume`).
    """

    id: str
    group: str | None
    pipeline_path: Path
    config: PipelineConfig
    placement: Placement
    live: bool


@dataclass
class Fleet:
    """A loaded fleet: the config, where it came from, its cameras in order, and the
    resolver that turns camera entries added later into :class:`CameraSpec`."""

    config: FleetConfig
    path: Path | None
    base_dir: Path
    cameras: list[CameraSpec]
    resolver: FleetResolver

    def run_dir(self, now: _dt.datetime | None = None) -> Path:
        """``output_dir`` with ``{name}`` and ``{timestamp}`` filled in."""
        stamp = (now or _dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
        try:
            return Path(self.config.output_dir.format(name=self.config.name, timestamp=stamp))
        except (KeyError, IndexError, ValueError) as e:
            raise ConfigError(
                f"output_dir: unknown placeholder {e} in {self.config.output_dir!r} "
                "(known: {name}, {timestamp})"
            ) from None


def is_live(source: Any) -> bool:
    """A live source cannot be rewound: a restart starts a new stream."""
    if isinstance(source, RtspSourceConfig | CameraSourceConfig | GStreamerSourceConfig):
        return True
    return isinstance(source, ReplaySourceConfig) and source.clock == "realtime"


def _camera_locations(cfg: FleetConfig) -> Iterator[tuple[tuple[Any, ...], CameraConfig, Any]]:
    """``(YAML path of the camera, camera, group or None)`` in fleet order."""
    for i, cam in enumerate(cfg.cameras):
        yield ("cameras", i), cam, None
    for g, group in enumerate(cfg.groups):
        for j, cam in enumerate(group.cameras):
            yield ("groups", g, "cameras", j), cam, group


def _where(loc: tuple[Any, ...]) -> str:
    from streamer.config.loader import format_path

    return format_path(loc)


class FleetResolver:
    """Turns camera entries into :class:`CameraSpec` (also for cameras added live).

    Args:
        config: The validated fleet config.
        base_dir: Folder relative paths are resolved against (the fleet file's).
        source_name: Name printed first in errors (the fleet file).
        env_templates: ``{YAML path: template}`` of strings that used ``${env:...}``
            in the fleet file (a camera's resolved config keeps the template, not the
            value, and errors hide the values).
        env_values: The values those templates expanded to.
    """

    def __init__(
        self,
        config: FleetConfig,
        base_dir: Path,
        source_name: str,
        env_templates: dict[tuple[Any, ...], str] | None = None,
        env_values: list[str] | None = None,
    ) -> None:
        self.config = config
        self.base_dir = base_dir
        self.source_name = source_name
        self.env_templates = env_templates or {}
        self.secrets = sorted({v for v in env_values or [] if v}, key=len, reverse=True)
        self._pipelines: dict[Path, PipelineConfig] = {}

    def group(self, name: str) -> CameraGroupConfig:
        """The group called ``name``.

        Raises:
            ConfigError: no such group.
        """
        for g in self.config.groups:
            if g.name == name:
                return g
        known = [g.name for g in self.config.groups]
        raise ConfigError(f"unknown group {name!r} (known: {known})")

    def resolve(
        self,
        cam: CameraConfig,
        group: CameraGroupConfig | None,
        loc: tuple[Any, ...],
        base_dir: Path | None = None,
        max_frames: int | None = None,
    ) -> CameraSpec:
        """Resolve one camera entry.

        Args:
            cam: The camera entry.
            group: Its group, or None.
            loc: YAML path of the entry (for errors).
            base_dir: Folder the camera's relative paths are relative to (default:
                the fleet file's).
            max_frames: If set, the source stops after this many frames.

        Raises:
            ConfigError: one line naming the YAML path of the problem.
        """
        base = base_dir or self.base_dir
        where = f"{self.source_name}: {_where(loc)}"
        pipeline = cam.pipeline or (group.pipeline if group else None) or self.config.pipeline
        if pipeline is None:
            raise ConfigError(
                f"{where}.pipeline: no pipeline (set it on the camera, its group or the fleet)"
            )
        pipeline_base = base if cam.pipeline is not None else self.base_dir
        path = pipeline if pipeline.is_absolute() else (pipeline_base / pipeline).resolve()
        try:
            base_cfg = self._load(path)
        except ConfigError as e:
            raise ConfigError(f"{where}.pipeline: {e}") from None
        if len(base_cfg.sources) != 1:
            raise ConfigError(
                f"{where}.pipeline: {path} has {len(base_cfg.sources)} sources; a camera is "
                "one stream: give the fleet a pipeline with one source (and each stream its "
                "own camera entry)"
            )
        original = base_cfg.sources[0]
        override: dict[str, Any] = {}
        if group is not None and group.source:
            override = deep_merge(override, group.source)
        if cam.source:
            override = deep_merge(override, cam.source)
        if "id" in override and override["id"] != cam.id:
            raise ConfigError(
                f"{where}.source.id: the source id is the camera id ({cam.id!r}); "
                f"got {override['id']!r}"
            )
        override = {k: v for k, v in override.items() if k != "id"}
        for key in ("path",):  # file sources: relative to the fleet file
            value = override.get(key)
            if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
                override[key] = str((base / value).resolve())
        if "type" in override and override["type"] != original.type:
            merged = dict(override)
        else:
            merged = deep_merge(original.model_dump(), override)
        merged["id"] = cam.id
        if max_frames is not None:
            merged["max_frames"] = max_frames
        try:
            source = _SOURCE.validate_python(merged)
        except ValidationError as e:
            raise ConfigError(
                hide_secrets(
                    validation_message(e, self.source_name, (*loc, "source")), self.secrets
                )
            ) from None
        prefixes = [(*loc, "source")]
        if group is not None and loc[:1] == ("groups",):
            prefixes.insert(0, (*loc[:2], "source"))
        source_templates = {
            ("sources", 0, *t_loc[len(prefix) :]): template
            for prefix in prefixes
            for t_loc, template in self.env_templates.items()
            if t_loc[: len(prefix)] == prefix
        }
        cfg = self._with_source(base_cfg, source, cam.id, where, path)
        cfg._env_templates.update(source_templates)
        placement = resolve_placement(
            self.config.placement, group.placement if group else None, cam.placement
        )
        return CameraSpec(
            id=cam.id,
            group=group.name if group else None,
            pipeline_path=path,
            config=cfg,
            placement=placement,
            live=is_live(source),
        )

    def _load(self, path: Path) -> PipelineConfig:
        if path not in self._pipelines:
            self._pipelines[path] = load_pipeline(path)
        return self._pipelines[path]

    def _with_source(
        self, base_cfg: PipelineConfig, source: Any, camera_id: str, where: str, path: Path
    ) -> PipelineConfig:
        old_id = base_cfg.sources[0].id
        data = base_cfg.model_dump(exclude={"sources"})
        for st in data["stages"]:
            if st.get("type") == "analytics" and st.get("sources"):
                st["sources"] = [camera_id if s == old_id else s for s in st["sources"]]
        data["sources"] = [source]
        try:
            cfg = PipelineConfig.model_validate(data)
        except ValidationError as e:
            raise ConfigError(f"{where}: {validation_message(e, str(path))}") from None
        templates = {
            loc: t for loc, t in base_cfg._env_templates.items() if loc[:1] != ("sources",)
        }
        cfg._env_templates = templates
        for i, st in enumerate(cfg.stages):
            if isinstance(st, ZeroMqSinkConfig) and st.bind:
                raise ConfigError(
                    f"{where}: pipeline {path}: stages[{i}]: a zeromq sink that binds "
                    f"{st.endpoint} cannot run in a fleet (every camera would bind it); set "
                    "'bind: false' and bind the consumer (a SUB or PULL socket) instead"
                )
            if isinstance(st, MqttSinkConfig) and st.client_id:
                st.client_id = f"{st.client_id}-{camera_id}"  # one MQTT session per camera
        if cfg.server is not None:  # several cameras share a node: any free port
            cfg.server = cfg.server.model_copy(update={"port": 0})
        return cfg


def parse_fleet(raw: Any, source_name: str) -> FleetConfig:
    """Validate a parsed (and substituted) fleet document.

    Raises:
        ConfigError: one line naming ``source_name`` and the YAML path.
    """
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{source_name}: a fleet must be a mapping with 'name' and 'cameras' or "
            f"'groups', got {type(raw).__name__}"
        )
    try:
        return FleetConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(validation_message(e, source_name)) from None


def _expanded(templates: Mapping[tuple[Any, ...], str], substituted: Any) -> list[str]:
    """The strings that ``${env:...}`` templates expanded to."""
    out = []
    for loc in templates:
        value: Any = substituted
        for part in loc:
            value = value[part]
        if isinstance(value, str) and value:
            out.append(value)
    return sorted(set(out), key=len, reverse=True)


def load_fleet(path: str | Path, max_frames: int | None = None) -> Fleet:
    """Load, substitute, validate and resolve a fleet YAML.

    Args:
        path: The fleet YAML file.
        max_frames: If set, every camera of the file stops after this many frames
            (cameras added later through the API keep their own ``max_frames``).

    Raises:
        ConfigError: one line naming the file, the YAML path and the bad value.
    """
    path = Path(path)
    raw = _read_yaml(path, "fleet file")
    templates: dict[tuple[Any, ...], str] = {}
    substituted = substitute(raw, env_templates=templates) if isinstance(raw, dict) else raw
    try:
        cfg = parse_fleet(substituted, str(path))
    except ConfigError as e:
        raise ConfigError(hide_secrets(str(e), _expanded(templates, substituted))) from None
    base_dir = path.resolve().parent
    env_values = _expanded(templates, substituted)
    resolver = FleetResolver(cfg, base_dir, str(path), templates, env_values)
    cameras = [
        resolver.resolve(cam, group, loc, max_frames=max_frames)
        for loc, cam, group in _camera_locations(cfg)
    ]
    return Fleet(config=cfg, path=path, base_dir=base_dir, cameras=cameras, resolver=resolver)


__all__ = [
    "CameraSpec",
    "Fleet",
    "FleetResolver",
    "Placement",
    "is_live",
    "load_fleet",
    "parse_fleet",
    "resolve_placement",
]
