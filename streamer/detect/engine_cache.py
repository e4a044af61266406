"""A cache of TensorRT engines, keyed by everything an engine depends on.

A serialized TensorRT engine (a *plan*) only loads on the TensorRT version and the GPU
(compute capability) it was built for, and on a Jetson with the L4T/JetPack release it
was built on; it embodies one precision and one range of input shapes, and an INT8 one
also its calibration data. The cache key is the SHA-256 of all of these, so an engine
is never loaded on the wrong machine and never rebuilt needlessly:

* the model: SHA-256 of the ONNX bytes;
* the machine (:class:`MachineFacts`): TensorRT version, GPU name and compute
  capability, L4T release (``/etc/nv_tegra_release``, Jetson only);
* the build (:class:`EngineSpec`): precision, input name and min/opt/max shapes,
  workspace limit, and for INT8 the SHA-256 of the calibration data.

Layout of one entry, ``<root>/<model>-<precision>-b<max batch>-<key[:16]>/``:
``engine.plan`` (the plan) and ``meta.json`` (the spec, the machine facts, the plan's
SHA-256 and size, build time, and an accuracy-gate record for INT8). Both are written
atomically (a temporary file in the same folder, fsync, rename), the plan first, so a
crash leaves either no entry or a complete one; an entry whose plan is missing or does
not match its recorded hash is treated as absent and rebuilt. Loading re-checks
``meta.json`` against the running machine and refuses a mismatch with a message that
names each differing fact (a cache folder copied from another machine cannot slip
through).

Concurrency: :meth:`EngineCache.get_or_build` holds an exclusive lock file
(``<entry>.lock``, ``fcntl.flock``) while it looks up and builds, so two processes that
start at once build an engine once; the second waits, then finds it.

Machine facts are computed by :func:`detect_machine_facts` (TensorRT, CUDA through
torch, ``/etc/nv_tegra_release``) but may be given explicitly: everything here except
that function is pure file handling and runs without a GPU.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import hashlib
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from streamer.errors import BackendError

__all__ = [
    "CachedEngine",
    "EngineCache",
    "EngineMismatchError",
    "EngineSpec",
    "MachineFacts",
    "cache_key",
    "check_meta",
    "default_cache_dir",
    "detect_machine_facts",
    "file_lock",
    "file_sha256",
    "load_checked",
    "read_l4t_release",
    "tensorrt_missing_message",
]

log = logging.getLogger("streamer.detect.engine_cache")

ENGINE_FILE = "engine.plan"
META_FILE = "meta.json"
META_FORMAT = 1
ENV_CACHE_DIR = "STREAMER_ENGINE_CACHE"
NV_TEGRA_RELEASE = Path("/etc/nv_tegra_release")


class EngineMismatchError(BackendError):
    """A cached engine was built for another machine or another build spec."""


def default_cache_dir() -> Path:
    """``$STREAMER_ENGINE_CACHE``, else ``$XDG_CACHE_HOME/streamer/engines``
    (``~/.cache/streamer/engines``)."""
    env = os.environ.get(ENV_CACHE_DIR)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "streamer" / "engines"


def file_sha256(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """SHA-256 (hex) of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk_bytes), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------- facts


@dataclass(frozen=True)
class MachineFacts:
    """What a TensorRT engine is tied to on the machine that builds or loads it.

    Attributes:
        tensorrt_version: ``tensorrt.__version__``, e.g. ``"10.3.0"``.
        gpu_name: The GPU's name, e.g. ``"Orin"`` or ``"NVIDIA H100 80GB HBM3"``.
        compute_capability: ``"major.minor"``, e.g. ``"8.7"``.
        l4t_release: ``"R36.4.0"`` on a Jetson (from ``/etc/nv_tegra_release``), else None.
    """

    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    l4t_release: str | None = None

    def describe(self) -> str:
        """One line: ``TensorRT 10.3.0, Orin (sm 8.7), L4T R36.4.0``."""
        l4t = f", L4T {self.l4t_release}" if self.l4t_release else ""
        return (
            f"TensorRT {self.tensorrt_version}, {self.gpu_name} (sm {self.compute_capability}){l4t}"
        )


_L4T = re.compile(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([0-9.]+)")


def read_l4t_release(text: str) -> str | None:
    """The L4T release from the text of ``/etc/nv_tegra_release``.

    ``# R36 (release), REVISION: 4.0, GCID: ..., BOARD: generic, ...`` gives
    ``"R36.4.0"``; text in another form gives None.
    """
    m = _L4T.search(text)
    if m is None:
        return None
    return f"R{m.group(1)}.{m.group(2)}"


def detect_machine_facts(
    device_index: int = 0, nv_tegra_release: Path = NV_TEGRA_RELEASE
) -> MachineFacts:
    """The :class:`MachineFacts` of this machine's GPU ``device_index``.

    Raises:
        BackendError: tensorrt or torch is missing, or CUDA is not available.
    """
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendError(tensorrt_missing_message()) from exc
    from streamer.preprocess.gpu import import_torch

    torch = import_torch("backend 'tensorrt'")
    if not torch.cuda.is_available():
        raise BackendError("backend 'tensorrt': CUDA is not available (torch sees no GPU)")
    props = torch.cuda.get_device_properties(device_index)
    l4t = None
    with contextlib.suppress(OSError):
        l4t = read_l4t_release(nv_tegra_release.read_text(encoding="utf-8", errors="replace"))
    return MachineFacts(
        tensorrt_version=str(trt.__version__),
        gpu_name=str(props.name),
        compute_capability=f"{props.major}.{props.minor}",
        l4t_release=l4t,
    )


def tensorrt_missing_message() -> str:
    """The one-line error for a missing ``tensorrt`` package."""
    return (
        "backend 'tensorrt' needs the tensorrt package: on a Jetson it comes with JetPack "
        "(apt install python3-libnvinfer, or the deploy/jetson image); elsewhere "
        "pip install tensorrt (NVIDIA's wheels, a CUDA GPU and driver needed); "
        "without TensorRT use backend: torch or onnxruntime"
    )


# --------------------------------------------------------------------------- spec


@dataclass(frozen=True)
class EngineSpec:
    """How an engine is built (everything but the machine).

    Attributes:
        model_sha256: SHA-256 of the ONNX file's bytes.
        model_name: File name of the ONNX model (for people; not part of the key).
        precision: ``fp32``, ``fp16`` or ``int8`` (int8 also enables fp16 kernels).
        input_name: Name of the image input.
        min_shape: Smallest ``(B, 3, H, W)`` the engine accepts.
        opt_shape: The shape TensorRT tunes kernels for.
        max_shape: Largest shape the engine accepts.
        workspace_mib: Builder workspace limit, MiB (None: TensorRT's default).
        calibration_sha256: INT8 only: SHA-256 of the calibration data.
    """

    model_sha256: str
    model_name: str
    precision: str
    input_name: str
    min_shape: tuple[int, ...]
    opt_shape: tuple[int, ...]
    max_shape: tuple[int, ...]
    workspace_mib: int | None = None
    calibration_sha256: str | None = None

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "fp16", "int8"):
            raise ValueError(f"precision must be fp32, fp16 or int8, got {self.precision!r}")
        if not (len(self.min_shape) == len(self.opt_shape) == len(self.max_shape)):
            raise ValueError("min_shape, opt_shape and max_shape must have the same rank")
        for lo, mid, hi in zip(self.min_shape, self.opt_shape, self.max_shape, strict=True):
            if not 1 <= lo <= mid <= hi:
                raise ValueError(
                    f"shapes must satisfy 1 <= min <= opt <= max per dim, got "
                    f"{self.min_shape}, {self.opt_shape}, {self.max_shape}"
                )
        if self.precision == "int8" and not self.calibration_sha256:
            raise ValueError("an int8 engine needs calibration data (calibration_sha256)")

    def key_fields(self) -> dict[str, Any]:
        """The fields that go into the cache key (all but ``model_name``)."""
        d = asdict(self)
        d.pop("model_name")
        for k in ("min_shape", "opt_shape", "max_shape"):
            d[k] = list(d[k])
        return d


def cache_key(spec: EngineSpec, facts: MachineFacts) -> str:
    """SHA-256 (hex) of the spec's key fields and the machine facts, canonical JSON."""
    payload = {"format": META_FORMAT, "spec": spec.key_fields(), "machine": asdict(facts)}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _entry_name(spec: EngineSpec, key: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(spec.model_name).stem) or "model"
    return f"{stem}-{spec.precision}-b{spec.max_shape[0]}-{key[:16]}"


# --------------------------------------------------------------------------- entries


@dataclass
class CachedEngine:
    """One complete cache entry.

    Attributes:
        dir: The entry's folder.
        meta: The parsed ``meta.json``.
    """

    dir: Path
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def plan_path(self) -> Path:
        """Path of ``engine.plan``."""
        return self.dir / ENGINE_FILE

    @property
    def key(self) -> str:
        """The full cache key."""
        return str(self.meta.get("key", ""))

    @property
    def gate(self) -> dict[str, Any] | None:
        """The accuracy-gate record (INT8), or None."""
        gate = self.meta.get("gate")
        return dict(gate) if isinstance(gate, dict) else None

    def read_plan(self) -> bytes:
        """The plan's bytes, checked against the SHA-256 in ``meta.json``.

        Raises:
            BackendError: the plan is missing or does not match its recorded hash.
        """
        try:
            data = self.plan_path.read_bytes()
        except OSError as exc:
            raise BackendError(f"cannot read engine {self.plan_path}: {exc}") from exc
        if hashlib.sha256(data).hexdigest() != self.meta.get("plan_sha256"):
            raise BackendError(
                f"engine {self.plan_path} does not match the SHA-256 in its meta.json "
                "(corrupt or replaced); delete the folder to rebuild it"
            )
        return data


def check_meta(meta: dict[str, Any], spec: EngineSpec, facts: MachineFacts, where: Path) -> None:
    """Refuse an entry whose recorded machine or spec differs from ``facts``/``spec``.

    Raises:
        EngineMismatchError: names every differing fact, with both values.
    """
    recorded_machine = meta.get("machine") or {}
    recorded_spec = meta.get("spec") or {}
    diffs = [
        f"{k} {recorded_machine.get(k)!r} (this machine: {v!r})"
        for k, v in asdict(facts).items()
        if recorded_machine.get(k) != v
    ]
    diffs += [
        f"{k} {recorded_spec.get(k)!r} (wanted: {v!r})"
        for k, v in spec.key_fields().items()
        if recorded_spec.get(k) != v
    ]
    if meta.get("format") != META_FORMAT:
        diffs.append(f"format {meta.get('format')!r} (this version reads {META_FORMAT})")
    if diffs:
        raise EngineMismatchError(
            f"engine {where} was built for another machine or build: {'; '.join(diffs)}. "
            "TensorRT engines only load where they were built; rebuild it here "
            "(streamer engine build) or point engine_cache_dir at this machine's cache"
        )


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder, fsync, rename."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


@contextlib.contextmanager
def file_lock(
    path: Path,
    timeout_s: float = 3600.0,
    poll_s: float = 0.1,
    on_wait: Callable[[], None] | None = None,
) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created) for the ``with`` block.

    Args:
        path: Lock file.
        timeout_s: Longest wait for another holder, seconds.
        poll_s: Retry interval while waiting, seconds.
        on_wait: Called once when the lock is busy (e.g. to print "waiting for ...").

    Raises:
        BackendError: the lock was not acquired within ``timeout_s``.
    """
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout_s
        waited = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
            if not waited and on_wait is not None:
                on_wait()
            waited = True
            if time.monotonic() >= deadline:
                raise BackendError(
                    f"another process has held {path} for more than {timeout_s:g} s "
                    "(an engine build still running?); remove the lock file if it is stale"
                )
            time.sleep(poll_s)
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


class EngineCache:
    """TensorRT engines on disk under ``root`` (see the module docstring).

    Args:
        root: Cache folder (created on first store).

    Thread- and process-safety: lookups read complete files only (writes are atomic);
    :meth:`get_or_build` serialises builders of one entry with a lock file.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()

    def __repr__(self) -> str:
        return f"EngineCache({str(self.root)!r})"

    def entry_dir(self, spec: EngineSpec, facts: MachineFacts) -> Path:
        """Folder of the entry for ``spec`` built on ``facts``."""
        return self.root / _entry_name(spec, cache_key(spec, facts))

    def lookup(self, spec: EngineSpec, facts: MachineFacts) -> CachedEngine | None:
        """The complete entry for ``spec`` on ``facts``, or None.

        An entry without a readable ``meta.json``, or whose plan is missing or does
        not match its recorded size, counts as absent (a crashed or interrupted build).

        Raises:
            EngineMismatchError: the entry's recorded facts differ (a copied folder).
        """
        d = self.entry_dir(spec, facts)
        entry = self._read_entry(d)
        if entry is None:
            return None
        check_meta(entry.meta, spec, facts, d)
        if entry.meta.get("key") != cache_key(spec, facts):
            raise EngineMismatchError(f"engine {d}: meta.json records another key")
        return entry

    @staticmethod
    def _read_entry(d: Path) -> CachedEngine | None:
        try:
            meta = json.loads((d / META_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(meta, dict):
            return None
        try:
            size = (d / ENGINE_FILE).stat().st_size
        except OSError:
            return None
        if size != meta.get("plan_bytes"):
            log.warning("engine cache entry %s is incomplete or corrupt; it will be rebuilt", d)
            return None
        return CachedEngine(d, meta)

    def store(
        self,
        spec: EngineSpec,
        facts: MachineFacts,
        plan: bytes,
        *,
        build_s: float | None = None,
        gate: dict[str, Any] | None = None,
    ) -> CachedEngine:
        """Write ``plan`` and its ``meta.json`` atomically; returns the entry.

        Args:
            spec: The build spec.
            facts: The machine it was built on.
            plan: The serialized engine.
            build_s: Build time, seconds (recorded).
            gate: Accuracy-gate record (INT8), recorded in ``meta.json``.
        """
        if not plan:
            raise ValueError("plan is empty")
        key = cache_key(spec, facts)
        d = self.root / _entry_name(spec, key)
        d.mkdir(parents=True, exist_ok=True)
        meta: dict[str, Any] = {
            "format": META_FORMAT,
            "key": key,
            "model_name": spec.model_name,
            "spec": spec.key_fields(),
            "machine": asdict(facts),
            "plan_sha256": hashlib.sha256(plan).hexdigest(),
            "plan_bytes": len(plan),
            "built_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "build_s": None if build_s is None else round(float(build_s), 3),
        }
        if gate is not None:
            meta["gate"] = gate
        _write_atomic(d / ENGINE_FILE, plan)
        _write_atomic(d / META_FILE, (json.dumps(meta, indent=2) + "\n").encode())
        return CachedEngine(d, meta)

    def update_gate(self, entry: CachedEngine, gate: dict[str, Any]) -> CachedEngine:
        """Record a new accuracy-gate result in an entry's ``meta.json`` (atomically)."""
        meta = dict(entry.meta, gate=gate)
        _write_atomic(entry.dir / META_FILE, (json.dumps(meta, indent=2) + "\n").encode())
        return CachedEngine(entry.dir, meta)

    def get_or_build(
        self,
        spec: EngineSpec,
        facts: MachineFacts,
        build: Callable[[], bytes],
        *,
        lock_timeout_s: float = 3600.0,
        on_wait: Callable[[], None] | None = None,
    ) -> tuple[CachedEngine, bool]:
        """The cached entry for ``spec``, building (once, under a lock) when absent.

        Args:
            spec: The build spec.
            facts: This machine's facts.
            build: Returns the serialized plan (called at most once, with the lock held).
            lock_timeout_s: Longest wait for another process building the same engine.
            on_wait: Called once if another process holds the lock.

        Returns:
            ``(entry, built)``: ``built`` is True when this call built the engine.

        Raises:
            EngineMismatchError: an entry with this key records other facts.
            BackendError: the lock timed out, or ``build`` failed.
        """
        found = self.lookup(spec, facts)
        if found is not None:
            return found, False
        d = self.entry_dir(spec, facts)
        with file_lock(d.with_name(d.name + ".lock"), lock_timeout_s, on_wait=on_wait):
            found = self.lookup(spec, facts)  # another process may have built it meanwhile
            if found is not None:
                return found, False
            t0 = time.monotonic()
            plan = build()
            return self.store(spec, facts, plan, build_s=time.monotonic() - t0), True

    def entries(self) -> list[CachedEngine]:
        """Every complete entry under the root, sorted by folder name."""
        if not self.root.is_dir():
            return []
        out = []
        for d in sorted(p for p in self.root.iterdir() if p.is_dir()):
            entry = self._read_entry(d)
            if entry is not None:
                out.append(entry)
        return out


def load_checked(plan_dir: str | Path, spec: EngineSpec, facts: MachineFacts) -> CachedEngine:
    """Open an entry folder given explicitly (e.g. copied in by hand) and check it.

    Raises:
        BackendError: the folder holds no complete entry.
        EngineMismatchError: it was built for another machine or spec.
    """
    d = Path(plan_dir)
    entry = EngineCache._read_entry(d)
    if entry is None:
        raise BackendError(f"{d}: no complete engine (engine.plan + meta.json)")
    check_meta(entry.meta, spec, facts, d)
    return entry
