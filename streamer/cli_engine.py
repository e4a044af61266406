"""``streamer engine build | list``: TensorRT engines ahead of time, with progress.

``streamer engine build PIPELINE.yaml`` builds (or finds in the cache) the engine of the
pipeline's ``detect`` stage, exactly as ``streamer run`` would at start; ``streamer
engine build MODEL.onnx --precision fp16`` does the same for a bare model. The build
shows TensorRT's phases as progress bars. Without TensorRT it fails at once with one
line saying what to install (exit 1). ``streamer engine list`` shows the cache.
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from streamer.config.schema import DetectStageConfig
from streamer.errors import ConfigError

__all__ = ["RichBuildProgress", "add_engine_parser", "engine_stage_config"]


class RichBuildProgress:
    """Shows TensorRT builder phases as rich progress bars (a ``BuildProgress``).

    One bar per phase, indented under its parent; finished sub-phases are removed so
    the display stays short. Thread-safe (TensorRT calls from its builder threads).
    """

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self._tasks: dict[str, tuple[TaskID, str | None]] = {}
        self._depth: dict[str, int] = {}
        self._lock = threading.Lock()
        self.phases_seen: list[str] = []

    def __enter__(self) -> RichBuildProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def phase_start(self, phase: str, parent: str | None, steps: int) -> None:
        with self._lock:
            depth = self._depth.get(parent, -1) + 1 if parent else 0
            self._depth[phase] = depth
            task = self.progress.add_task("  " * depth + phase, total=max(int(steps), 1))
            self._tasks[phase] = (task, parent)
            self.phases_seen.append(phase)

    def step_complete(self, phase: str, step: int) -> bool:
        with self._lock:
            found = self._tasks.get(phase)
            if found is not None:
                self.progress.update(found[0], completed=int(step) + 1)
        return True

    def phase_finish(self, phase: str) -> None:
        with self._lock:
            found = self._tasks.pop(phase, None)
            if found is None:
                return
            task, parent = found
            total = self.progress.tasks[self._index(task)].total if self._index(task) >= 0 else 1
            self.progress.update(task, completed=total)
            if parent is not None:
                self.progress.remove_task(task)

    def _index(self, task: TaskID) -> int:
        for i, t in enumerate(self.progress.tasks):
            if t.id == task:
                return i
        return -1


class _NothingToBuild(Exception):
    """The pipeline does not use TensorRT and ``--only-tensorrt`` was given."""


def engine_stage_config(args: argparse.Namespace) -> DetectStageConfig:
    """The ``detect`` stage to build an engine for: from a pipeline YAML or an ONNX file,
    with the command line's overrides.

    Raises:
        ConfigError: a file of another kind, a stage that is not ``backend: tensorrt``,
            or an invalid override.
    """
    from streamer.config.loader import load_pipeline, validation_message

    target = Path(args.target)
    overrides: dict[str, Any] = {}
    for key in ("precision", "device", "max_batch", "workspace_mib"):
        value = getattr(args, key, None)
        if value is not None:
            overrides[key] = value
    if args.cache is not None:
        overrides["engine_cache_dir"] = Path(args.cache).resolve()
    if args.calibration_video is not None:
        overrides["calibration"] = {
            "video": Path(args.calibration_video).resolve(),
            "frames": args.calibration_frames,
        }
    if target.suffix in (".yaml", ".yml"):
        cfg = load_pipeline(target)
        det = cfg.stages[0]
        assert isinstance(det, DetectStageConfig)  # guaranteed by the schema
        if det.backend != "tensorrt":
            if getattr(args, "only_tensorrt", False):
                raise _NothingToBuild(f"{target}: backend {det.backend}: no engine to build")
            raise ConfigError(
                f"{target}: stages[0].backend is {det.backend}: there is no TensorRT engine "
                "to build (set backend: tensorrt, or give the .onnx file)"
            )
        raw = det.model_dump()
        if overrides.get("precision") not in (None, "int8"):
            raw.update(calibration=None, accuracy_gate=None)
    elif target.suffix == ".onnx":
        raw = {
            "type": "detect",
            "model": target.resolve(),
            "backend": "tensorrt",
            "device": "cuda",
            "precision": "fp16",
        }
    else:
        raise ConfigError(f"engine build: give a pipeline .yaml or a model .onnx, got {target}")
    raw.update(overrides)
    try:
        return DetectStageConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(validation_message(e, f"engine build {target}", ("stages", 0))) from None


def _cmd_engine_build(args: argparse.Namespace) -> int:
    from streamer.pipeline.engines import ensure_engine

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        cfg = engine_stage_config(args)
    except _NothingToBuild as e:
        console.print(str(e), markup=False)
        return 0
    t0 = time.monotonic()
    with RichBuildProgress(console) as display:
        result = ensure_engine(
            cfg,
            progress=display,
            on_wait=lambda: console.print(
                "another process is building this engine; waiting for it", markup=False
            ),
            on_build=lambda line: console.print(line, markup=False),
        )
    entry = result.entry
    how = f"built in {time.monotonic() - t0:.0f} s" if result.built else "found in the cache"
    console.print(f"engine {how}: {entry.plan_path}", markup=False)
    if result.gate is not None:
        console.print(f"accuracy gate passed: {result.gate.describe()}", markup=False)
    return 0


def _cmd_engine_list(args: argparse.Namespace) -> int:
    from streamer.detect.engine_cache import EngineCache, MachineFacts, default_cache_dir

    root = Path(args.cache) if args.cache else default_cache_dir()
    entries = EngineCache(root).entries()
    table = Table(title=f"TensorRT engines in {root}")
    for col in ("entry", "model", "precision", "input max", "built for", "MiB", "built", "gate"):
        table.add_column(col)
    for e in entries:
        spec = e.meta.get("spec", {})
        machine = e.meta.get("machine", {})
        try:
            built_for = MachineFacts(**machine).describe()
        except TypeError:
            built_for = str(machine)
        gate = e.gate
        shown_gate = "-"
        if gate is not None:
            result = gate.get("result") or {}
            shown_gate = (
                f"{'passed' if result.get('passed') else 'REFUSED'} {result.get('recall', 0):.3f}"
            )
        table.add_row(
            e.dir.name,
            str(e.meta.get("model_name", "")),
            str(spec.get("precision", "")),
            "x".join(str(d) for d in spec.get("max_shape", [])),
            built_for,
            f"{int(e.meta.get('plan_bytes', 0)) / 2**20:.1f}",
            str(e.meta.get("built_at", "")),
            shown_gate,
        )
    Console(highlight=False).print(table)
    if not entries:
        Console(stderr=True).print(f"no engines in {root}", markup=False)
    return 0


def add_engine_parser(sub: Any) -> None:
    """Add ``engine build`` and ``engine list`` to the CLI's subparsers."""
    eng = sub.add_parser("engine", help="build and list TensorRT engines (engine cache)")
    eng_sub = eng.add_subparsers(dest="engine_command", required=True)
    b = eng_sub.add_parser("build", help="build (or find cached) the TensorRT engine")
    b.add_argument("target", help="pipeline YAML (its detect stage) or an ONNX model")
    b.add_argument("--precision", choices=["fp32", "fp16", "int8"], help="engine precision")
    b.add_argument("--cache", help="engine cache folder (default: the stage's or ~/.cache)")
    b.add_argument("--device", help="cuda or cuda:N (default: the stage's, else cuda)")
    b.add_argument("--max-batch", type=int, help="largest batch (dynamic-batch models)")
    b.add_argument("--workspace-mib", type=int, help="builder workspace limit, MiB")
    b.add_argument("--calibration-video", help="INT8: clip to calibrate on")
    b.add_argument("--calibration-frames", type=int, default=200, help="INT8: frames (200)")
    b.add_argument(
        "--only-tensorrt",
        action="store_true",
        help="exit 0 without building when the pipeline's backend is not tensorrt",
    )
    b.set_defaults(func=_cmd_engine_build)
    ls = eng_sub.add_parser("list", help="list the engines in a cache folder")
    ls.add_argument("--cache", help="engine cache folder (default: ~/.cache/streamer/engines)")
    ls.set_defaults(func=_cmd_engine_list)
