"""The TensorRT engine cache, without TensorRT: keys, entries, checks, locking.

Engines here are small fake plan files and the machine facts are given explicitly
(:class:`MachineFacts` is plain data that :func:`detect_machine_facts` computes on a
GPU machine); everything under test is our own file handling.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from streamer.detect.engine_cache import (
    ENGINE_FILE,
    META_FILE,
    EngineCache,
    EngineMismatchError,
    EngineSpec,
    MachineFacts,
    cache_key,
    default_cache_dir,
    file_lock,
    load_checked,
    read_l4t_release,
)
from streamer.errors import BackendError

ORIN = MachineFacts("10.3.0", "Orin", "8.7", "R36.4.0")
H100 = MachineFacts("10.3.0", "NVIDIA H100 80GB HBM3", "9.0", None)
SPEC = EngineSpec(
    model_sha256="a" * 64,
    model_name="yolov8n.onnx",
    precision="fp16",
    input_name="images",
    min_shape=(1, 3, 640, 640),
    opt_shape=(4, 3, 640, 640),
    max_shape=(4, 3, 640, 640),
)
PLAN = b"fake TensorRT plan \x00\x01\x02" * 100


# ----------------------------------------------------------------------------- facts


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "# R36 (release), REVISION: 4.0, GCID: 37537400, BOARD: generic, EABI: aarch64, "
            "DATE: Fri Sep 13 04:36:44 UTC 2024\n",
            "R36.4.0",
        ),
        (
            "# R35 (release), REVISION: 5.0, GCID: 35550185, BOARD: t186ref, EABI: aarch64\n",
            "R35.5.0",
        ),
        ("# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic\n", "R36.4.3"),
        ("", None),
        ("not a tegra release file", None),
    ],
)
def test_read_l4t_release(text, expected):
    assert read_l4t_release(text) == expected


def test_describe_facts():
    assert ORIN.describe() == "TensorRT 10.3.0, Orin (sm 8.7), L4T R36.4.0"
    assert "L4T" not in H100.describe()


def test_default_cache_dir_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("STREAMER_ENGINE_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("STREAMER_ENGINE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "x" / "streamer" / "engines"


# ----------------------------------------------------------------------------- keys


def test_key_is_stable_and_independent_of_the_model_file_name():
    assert cache_key(SPEC, ORIN) == cache_key(dataclasses.replace(SPEC), ORIN)
    assert len(cache_key(SPEC, ORIN)) == 64
    renamed = dataclasses.replace(SPEC, model_name="other_name.onnx")
    assert cache_key(renamed, ORIN) == cache_key(SPEC, ORIN)


@pytest.mark.parametrize(
    "change",
    [
        {"model_sha256": "b" * 64},
        {"precision": "fp32"},
        {"input_name": "input"},
        {"min_shape": (2, 3, 640, 640), "opt_shape": (4, 3, 640, 640)},
        {"opt_shape": (2, 3, 640, 640)},
        {"max_shape": (8, 3, 640, 640)},
        {"workspace_mib": 1024},
        {"precision": "int8", "calibration_sha256": "c" * 64},
    ],
)
def test_every_spec_field_changes_the_key(change):
    assert cache_key(dataclasses.replace(SPEC, **change), ORIN) != cache_key(SPEC, ORIN)


@pytest.mark.parametrize(
    "change",
    [
        {"tensorrt_version": "10.3.1"},
        {"gpu_name": "Orin Nano"},
        {"compute_capability": "8.6"},
        {"l4t_release": "R36.3.0"},
        {"l4t_release": None},
    ],
)
def test_every_machine_fact_changes_the_key(change):
    assert cache_key(SPEC, dataclasses.replace(ORIN, **change)) != cache_key(SPEC, ORIN)


def test_int8_calibration_data_is_part_of_the_key():
    a = dataclasses.replace(SPEC, precision="int8", calibration_sha256="1" * 64)
    b = dataclasses.replace(SPEC, precision="int8", calibration_sha256="2" * 64)
    assert cache_key(a, ORIN) != cache_key(b, ORIN)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"precision": "bf16"}, "precision"),
        ({"precision": "int8"}, "calibration"),
        ({"min_shape": (8, 3, 640, 640)}, "min <= opt <= max"),
        ({"max_shape": (4, 3, 640)}, "same rank"),
    ],
)
def test_invalid_specs(change, match):
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(SPEC, **change)


# ----------------------------------------------------------------------------- entries


def test_store_then_lookup_round_trip(tmp_path):
    cache = EngineCache(tmp_path)
    assert cache.lookup(SPEC, ORIN) is None
    entry = cache.store(SPEC, ORIN, PLAN, build_s=12.5)
    assert entry.dir.name.startswith("yolov8n-fp16-b4-")
    assert sorted(p.name for p in entry.dir.iterdir()) == [ENGINE_FILE, META_FILE]
    found = cache.lookup(SPEC, ORIN)
    assert found is not None and found.read_plan() == PLAN
    meta = json.loads((entry.dir / META_FILE).read_text())
    assert meta["machine"] == dataclasses.asdict(ORIN)
    assert meta["spec"]["max_shape"] == [4, 3, 640, 640]
    assert meta["plan_bytes"] == len(PLAN) and meta["build_s"] == 12.5
    # another machine's key is another entry: the Orin engine is never offered to it
    assert cache.lookup(SPEC, H100) is None
    assert [e.dir for e in cache.entries()] == [entry.dir]


def test_incomplete_or_corrupt_entries_count_as_absent(tmp_path):
    cache = EngineCache(tmp_path)
    entry = cache.store(SPEC, ORIN, PLAN)
    (entry.dir / ENGINE_FILE).write_bytes(PLAN[:-10])  # truncated (crash mid-copy)
    assert cache.lookup(SPEC, ORIN) is None
    (entry.dir / ENGINE_FILE).write_bytes(PLAN)
    (entry.dir / META_FILE).write_text("{not json")
    assert cache.lookup(SPEC, ORIN) is None
    (entry.dir / META_FILE).unlink()
    assert cache.lookup(SPEC, ORIN) is None


def test_same_size_but_altered_plan_is_refused_on_read(tmp_path):
    entry = EngineCache(tmp_path).store(SPEC, ORIN, PLAN)
    altered = bytearray(PLAN)
    altered[0] ^= 0xFF
    entry.plan_path.write_bytes(bytes(altered))
    with pytest.raises(BackendError, match="does not match the SHA-256"):
        entry.read_plan()


def test_entry_copied_from_another_machine_is_refused_with_the_differences(tmp_path):
    """A cache folder copied from an Orin onto an H100 (same folder name)."""
    cache = EngineCache(tmp_path)
    orin_entry = cache.store(SPEC, ORIN, PLAN)
    target = cache.entry_dir(SPEC, H100)
    orin_entry.dir.rename(target)
    with pytest.raises(EngineMismatchError) as exc:
        cache.lookup(SPEC, H100)
    msg = str(exc.value)
    assert "gpu_name 'Orin' (this machine: 'NVIDIA H100 80GB HBM3')" in msg
    assert "compute_capability '8.7' (this machine: '9.0')" in msg
    assert "l4t_release 'R36.4.0' (this machine: None)" in msg
    assert "\n" not in msg
    with pytest.raises(EngineMismatchError, match="gpu_name"):
        load_checked(target, SPEC, H100)
    assert load_checked(target, SPEC, ORIN).read_plan() == PLAN


def test_writes_are_atomic_no_temporary_files_left(tmp_path):
    cache = EngineCache(tmp_path)
    entry = cache.store(SPEC, ORIN, PLAN)
    cache.update_gate(entry, {"params": {}, "result": {"passed": True}})
    assert not [p for p in entry.dir.iterdir() if p.name.endswith(".tmp")]


def test_get_or_build_builds_once_then_reuses(tmp_path):
    cache = EngineCache(tmp_path)
    calls: list[int] = []

    def build() -> bytes:
        calls.append(1)
        return PLAN

    first, built = cache.get_or_build(SPEC, ORIN, build)
    assert built and calls == [1]
    second, built = cache.get_or_build(SPEC, ORIN, build)
    assert not built and calls == [1] and second.dir == first.dir

    # a failing build leaves nothing behind, and the error passes through
    def broken() -> bytes:
        raise BackendError("TensorRT failed")

    other = dataclasses.replace(SPEC, precision="fp32")
    with pytest.raises(BackendError, match="TensorRT failed"):
        cache.get_or_build(other, ORIN, broken)
    assert cache.lookup(other, ORIN) is None


_BUILDER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from streamer.detect.engine_cache import EngineCache, EngineSpec, MachineFacts
    root, log = Path(sys.argv[1]), Path(sys.argv[2])
    spec = EngineSpec("a" * 64, "m.onnx", "fp16", "images",
                      (1, 3, 64, 64), (1, 3, 64, 64), (1, 3, 64, 64))
    facts = MachineFacts("10.3.0", "Orin", "8.7", "R36.4.0")
    def build():
        with log.open("a") as f:
            f.write("build\\n")
        time.sleep(1.0)
        return b"plan-bytes" * 10
    entry, built = EngineCache(root).get_or_build(spec, facts, build, lock_timeout_s=60)
    print(json.dumps({"built": built, "plan": entry.read_plan().decode()}))
    """
)


def test_two_processes_starting_at_once_build_the_engine_once(tmp_path):
    script = tmp_path / "builder.py"
    script.write_text(_BUILDER)
    log = tmp_path / "builds.log"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(tmp_path / "cache"), str(log)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    outs = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert log.read_text().count("build") == 1
    assert sorted(o["built"] for o in outs) == [False, True]
    assert outs[0]["plan"] == outs[1]["plan"]


def test_lock_times_out_with_a_clear_message(tmp_path):
    lock = tmp_path / "x.lock"
    waited: list[bool] = []
    with file_lock(lock), pytest.raises(BackendError, match=r"more than 0\.2 s"):
        t0 = time.monotonic()
        with file_lock(lock, timeout_s=0.2, poll_s=0.05, on_wait=lambda: waited.append(True)):
            pass  # pragma: no cover - never acquired
    assert waited == [True] and time.monotonic() - t0 < 5
