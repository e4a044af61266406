"""Load a pipeline YAML: substitutions, presets, validation, path resolution.

Steps, each failing with a one-line :class:`~streamer.errors.ConfigError` that names
the YAML path of the problem:

1. Parse YAML (syntax errors name the line).
2. Substitute ``${env:NAME}`` (``${env:NAME:-default}`` for a default) and
   ``${data:relative/path}`` (the shared data folder, see :mod:`streamer.data`) in
   every string.
3. Merge presets: a stage with ``preset: NAME`` takes ``configs/<kind>/NAME.yaml``
   (``trackers`` for ``track``, ``detectors`` for ``detect``) as defaults and its own
   keys override them (mappings merge key by key).
4. Validate with :class:`~streamer.config.schema.PipelineConfig`.
5. Make relative file paths (models, videos) absolute, relative to the YAML's folder.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from streamer.config.schema import PipelineConfig
from streamer.data import data_path
from streamer.errors import ConfigError
from streamer.redact import redact_urls

_SUBST = re.compile(r"\$\{(env|data):([^}]*)\}")
_PRESET_DIRS = {"track": "trackers", "detect": "detectors"}
_REPO_ROOT = Path(__file__).resolve().parents[2]
_SECRET_HINTS = ("password", "passwd", "secret", "token", "key")


def format_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """Render a location tuple as a YAML path: ``("stages", 1, "iou")`` -> ``stages[1].iou``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "<root>"


def substitute(
    value: Any, loc: tuple[Any, ...] = (), env_templates: dict[tuple[Any, ...], str] | None = None
) -> Any:
    """Replace ``${env:...}`` and ``${data:...}`` in every string inside ``value``.

    Args:
        value: Parsed YAML (mappings, lists, scalars).
        loc: YAML path of ``value`` (for error messages).
        env_templates: If given, filled with ``{YAML path: original string}`` for every
            string that used ``${env:...}``, so that the resolved config can be written
            without the values (credentials) and errors can hide them.

    Raises:
        ConfigError: an environment variable is unset and has no default.
    """
    if isinstance(value, dict):
        return {k: substitute(v, (*loc, k), env_templates) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, (*loc, i), env_templates) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value
    if env_templates is not None and "${env:" in value:
        env_templates[loc] = value

    def repl(m: re.Match[str]) -> str:
        kind, arg = m.group(1), m.group(2)
        if kind == "data":
            return str(data_path(arg.strip()))
        name, _, default = arg.partition(":-")
        name = name.strip()
        if name in os.environ:
            return os.environ[name]
        if ":-" in arg:
            return default
        raise ConfigError(
            f"{format_path(loc)}: environment variable {name} is not set (used as ${{env:{name}}})"
        )

    return _SUBST.sub(repl, value)


def deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``over``, nested mappings merged key by key (a new dict;
    neither input changes). Used for presets under a stage and fleet overrides."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def find_configs_dir(start: Path) -> Path | None:
    """The nearest ``configs/`` folder at or above ``start``, else the repository's."""
    for d in [start, *start.parents]:
        if (d / "configs").is_dir():
            return d / "configs"
    repo = _REPO_ROOT / "configs"
    return repo if repo.is_dir() else None


def _read_yaml(path: Path, what: str) -> Any:
    if not path.exists():
        raise ConfigError(f"{what} not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{what} {path}: cannot read ({e})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{what} {path}:{where}: invalid YAML: {problem}") from None


def apply_presets(raw: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    stages = raw.get("stages")
    if not isinstance(stages, list):
        return raw
    merged = []
    for i, st in enumerate(stages):
        # Only detect and track stages have preset files; on other stages ``preset`` is
        # their own field (the x264 preset of ``annotated_video``).
        if not isinstance(st, dict) or "preset" not in st or st.get("type") not in _PRESET_DIRS:
            merged.append(st)
            continue
        preset = st["preset"]
        loc = f"stages[{i}].preset"
        if not isinstance(preset, str) or not preset:
            raise ConfigError(f"{loc}: must be a preset name or a path, got {preset!r}")
        if preset.endswith((".yaml", ".yml")) or "/" in preset:
            p = Path(preset)
            preset_path = p if p.is_absolute() else base_dir / p
        else:
            kind = _PRESET_DIRS[str(st.get("type"))]
            configs = find_configs_dir(base_dir)
            preset_path = (configs or base_dir / "configs") / kind / f"{preset}.yaml"
            if not preset_path.exists():
                known = sorted(q.stem for q in preset_path.parent.glob("*.yaml"))
                raise ConfigError(
                    f"{loc}: unknown preset {preset!r} (no {preset_path}); known: {known}"
                )
        data = _read_yaml(preset_path, f"{loc}: preset file")
        if not isinstance(data, dict):
            raise ConfigError(f"{loc}: preset file {preset_path} must hold a mapping")
        data = substitute(data, ("stages", i))
        merged.append(deep_merge(data, st))
    return {**raw, "stages": merged}


def _describe_input(value: Any, loc: tuple[Any, ...]) -> str:
    if any(isinstance(p, str) and any(h in p.lower() for h in _SECRET_HINTS) for p in loc):
        return "<hidden>"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def validation_message(
    error: ValidationError, source: str, prefix: tuple[str | int, ...] = ()
) -> str:
    """One line for a pydantic error: the first problem with its YAML path and value.

    Args:
        error: The pydantic error.
        source: What was validated (a file name), printed first.
        prefix: Path of the validated value inside a larger document.
    """
    errs = error.errors(include_url=False)
    first = errs[0]
    loc = (*prefix, *first["loc"])
    # Drop the discriminator tags pydantic inserts for tagged unions
    # ('stages.1.detect.iou_threshold' -> 'stages[1].iou_threshold').
    clean = [p for i, p in enumerate(loc) if not (i > 0 and p in _TAGS)]
    msg = str(first["msg"]).removeprefix("Value error, ")
    got = ""
    if first["type"] not in ("missing",) and "input" in first:
        inp = first["input"]
        if not isinstance(inp, dict):
            got = f", got {_describe_input(inp, loc)}"
    more = ""
    if len(errs) > 1:
        more = f" (and {len(errs) - 1} more problem{'s' if len(errs) > 2 else ''})"
    return f"{source}: {format_path(clean)}: {msg}{got}{more}"


_TAGS = {
    "video_file",
    "rtsp",
    "replay",
    "camera",
    "gstreamer",
    "bytetrack",
    "sort",
    "ocsort",
    "detect",
    "track",
    "analytics",
    "annotated_video",
    "jsonl",
    "mot",
    "zeromq",
    "mqtt",
    "preview",
}


def _resolve_paths(cfg: PipelineConfig, base_dir: Path) -> PipelineConfig:
    def absolute(p: Path) -> Path:
        p = p.expanduser()
        return p if p.is_absolute() else (base_dir / p).resolve()

    for src in cfg.sources:
        if src.type in ("video_file", "replay"):
            src.path = absolute(src.path)
    for st in cfg.stages:
        if st.type == "detect":
            st.model = absolute(st.model)
            if st.engine_cache_dir is not None:
                st.engine_cache_dir = absolute(st.engine_cache_dir)
            if st.calibration is not None:
                st.calibration.video = absolute(st.calibration.video)
            if st.accuracy_gate is not None and st.accuracy_gate.video is not None:
                st.accuracy_gate.video = absolute(st.accuracy_gate.video)
    return cfg


def load_pipeline(path: str | Path) -> PipelineConfig:
    """Load, substitute, merge presets, validate and resolve a pipeline YAML.

    Args:
        path: The pipeline YAML file.

    Returns:
        The validated :class:`PipelineConfig` with absolute file paths.

    Raises:
        ConfigError: one line naming the file, the YAML path and the bad value.
    """
    path = Path(path)
    raw = _read_yaml(path, "pipeline file")
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: a pipeline must be a mapping with 'name', 'sources' and 'stages', "
            f"got {type(raw).__name__}"
        )
    base_dir = path.resolve().parent
    templates: dict[tuple[Any, ...], str] = {}
    substituted = substitute(raw, env_templates=templates)
    raw = apply_presets(substituted, base_dir)
    try:
        cfg = PipelineConfig.model_validate(raw)
    except ValidationError as e:
        secrets = _env_values(templates, substituted)
        raise ConfigError(hide_secrets(validation_message(e, str(path)), secrets)) from None
    cfg._env_templates = templates
    return _resolve_paths(cfg, base_dir)


def _get_path(data: Any, loc: tuple[Any, ...]) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _env_values(templates: dict[tuple[Any, ...], str], substituted: Any) -> list[str]:
    """The strings that ``${env:...}`` templates expanded to (to hide them)."""
    out = []
    for loc in templates:
        value = _get_path(substituted, loc)
        if isinstance(value, str) and value:
            out.append(value)
            # The parts of a URL's credentials, so a message quoting only them hides too.
            for part in re.split(r"[:@/]", value.split("://", 1)[-1].split("@", 1)[0]):
                if len(part) >= 3 and "@" in value:
                    out.append(part)
    return sorted(set(out), key=len, reverse=True)


def hide_secrets(text: str, secrets: list[str]) -> str:
    """Replace every value in ``secrets`` and any URL credentials in ``text`` by ``***``."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return redact_urls(text)


def dump_resolved(cfg: PipelineConfig) -> str:
    """The fully resolved pipeline as YAML (defaults filled in, absolute paths).

    Strings that came from ``${env:...}`` are written as their template (the values,
    often credentials, never reach the file), and credentials typed directly into a
    URL are replaced by ``***``.
    """
    data = cfg.model_dump(mode="json")
    for loc, template in cfg._env_templates.items():
        parent = _get_path(data, loc[:-1])
        if loc and isinstance(_get_path(data, loc), str):
            parent[loc[-1]] = template
    for src in data.get("sources", []):
        url = src.get("url")
        if isinstance(url, str) and "${env:" not in url:
            src["url"] = hide_secrets(url, [])
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)
