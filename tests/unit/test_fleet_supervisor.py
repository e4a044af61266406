"""The fleet supervisor on a scripted engine: restarts with exponential backoff and a
budget, failures that must not be retried, add and remove while running; the control
API and the ``streamer fleet status|add|remove`` commands against it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from streamer.cli import main
from streamer.errors import ConfigError
from streamer.fleet.api import FleetApi, api_request
from streamer.fleet.commands import parse_assignments
from streamer.fleet.loader import CameraSpec, load_fleet
from streamer.fleet.schema import RestartConfig
from streamer.fleet.supervisor import Dead, FleetSupervisor
from streamer.fleet.worker import CameraJob

PIPELINE = """
name: people
sources:
  - {type: video_file, id: orig, path: clip.mp4}
stages:
  - {type: detect, model: model.onnx}
  - {type: jsonl}
"""


class ScriptedEngine:
    """Answers polls from a per-camera script; ``running`` when the script is empty."""

    def __init__(self) -> None:
        self.launched: list[CameraJob] = []
        self.script: dict[str, list[Any]] = {}
        self.stopped: list[str] = []
        self.killed: list[str] = []

    def launch(self, job: CameraJob, placement: object) -> SimpleNamespace:
        self.launched.append(job)
        return SimpleNamespace(job=job, stopping=False)

    def poll(self, handles: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for cid, h in handles.items():
            script = self.script.get(cid)
            if script:
                out[cid] = script.pop(0)
            elif h.stopping:
                out[cid] = {"state": "stopped", "frames": 5}
            else:
                out[cid] = {"state": "running", "node_id": "n1", "frames": 3, "fps": 9.5}
        return out

    def stop(self, handle: Any, hard: bool = False) -> None:
        handle.stopping = True
        self.stopped.append(handle.job.camera.id)

    def kill(self, handle: Any) -> None:
        self.killed.append(handle.job.camera.id)

    def shutdown(self) -> None:
        pass

    def describe(self) -> str:
        return "scripted"


@pytest.fixture
def fleet_file(tmp_path: Path) -> Path:
    (tmp_path / "p.yaml").write_text(PIPELINE)
    doc = {
        "name": "site",
        "pipeline": "p.yaml",
        "api": {"port": 0},
        "cameras": [{"id": "a"}, {"id": "b"}],
        "groups": [{"name": "g", "placement": {"num_cpus": 0.25}, "cameras": [{"id": "c"}]}],
    }
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def specs(fleet_file: Path) -> list[CameraSpec]:
    return load_fleet(fleet_file).cameras


def supervisor(engine: ScriptedEngine, tmp_path: Path, **restart: Any) -> FleetSupervisor:
    policy = RestartConfig.model_validate({"jitter": 0.0, **restart})
    return FleetSupervisor("site", engine, tmp_path / "run", policy, poll_s=0.01, seed=1)


def test_a_dead_camera_restarts_with_exponential_backoff_until_the_budget(
    fleet_file: Path, tmp_path: Path
) -> None:
    engine = ScriptedEngine()
    sup = supervisor(engine, tmp_path, max_restarts=2, initial_delay_s=0.05, factor=3.0)
    a = specs(fleet_file)[0]
    engine.script["a"] = [Dead("node lost")]
    sup.start([a])
    sup.step()
    row = sup.camera("a")
    assert row is not None and row["state"] == "restarting" and row["restarts"] == 1
    assert 0 < row["restart_in_s"] <= 0.05
    assert "node lost" in row["last_error"]
    time.sleep(0.06)
    engine.script["a"] = [Dead("crash again")]
    sup.step()  # launches attempt 1
    assert [j.attempt for j in engine.launched] == [0, 1]
    sup.step()  # attempt 1 dies: second delay is 0.05 * 3
    row = sup.camera("a")
    assert row is not None and row["state"] == "restarting" and 0.1 < row["restart_in_s"] <= 0.15
    time.sleep(0.16)
    engine.script["a"] = [Dead("and again")]
    sup.step()
    sup.step()
    row = sup.camera("a")
    assert row is not None and row["state"] == "failed" and row["restarts"] == 2
    assert [h["ended"] for h in row["history"]] == ["died", "died", "died"]
    assert [j.attempt for j in engine.launched] == [0, 1, 2]
    assert all(j.run_dir == tmp_path / "run" / "a" for j in engine.launched)
    assert sup.done


def test_failures_that_a_restart_cannot_fix_are_final(fleet_file: Path, tmp_path: Path) -> None:
    engine = ScriptedEngine()
    sup = supervisor(engine, tmp_path, initial_delay_s=0.01)
    a, b, c = specs(fleet_file)
    engine.script["a"] = [{"state": "failed", "retryable": False, "last_error": "bad config"}]
    engine.script["b"] = [
        {"state": "failed", "retryable": True, "last_error": "stage 'detect' raised"}
    ]
    engine.script["c"] = [{"state": "finished", "frames": 10}]
    sup.start([a, b, c])
    sup.step()
    states = {r["camera"]: (r["state"], r["restarts"]) for r in sup.status()}
    assert states == {"a": ("failed", 0), "b": ("restarting", 1), "c": ("finished", 0)}
    assert engine.killed == ["a", "b", "c"]  # every ended attempt's actor is ended
    assert not sup.done


def test_a_long_run_resets_the_backoff(fleet_file: Path, tmp_path: Path) -> None:
    engine = ScriptedEngine()
    sup = supervisor(engine, tmp_path, initial_delay_s=0.02, factor=10.0, reset_after_s=0.05)
    a = specs(fleet_file)[0]
    sup.start([a])
    sup.step()
    time.sleep(0.06)  # ran longer than reset_after_s
    engine.script["a"] = [Dead("x")]
    sup.step()
    row = sup.camera("a")
    assert row is not None and row["restart_in_s"] <= 0.02


def test_add_and_remove_while_running(fleet_file: Path, tmp_path: Path) -> None:
    engine = ScriptedEngine()
    sup = supervisor(engine, tmp_path)
    a, b, _ = specs(fleet_file)
    thread = threading.Thread(target=sup.run, args=([a],), kwargs={"until_done": False})
    thread.start()
    try:
        row = sup.add(b)
        assert row["state"] == "pending"
        with pytest.raises(ConfigError, match="already in the fleet"):
            sup.add(b)
        with pytest.raises(ConfigError, match="no camera 'zz'"):
            sup.remove("zz")
        sup.remove("a")
        deadline = time.monotonic() + 5
        while (sup.camera("a") or {}).get("state") != "removed":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert engine.stopped == ["a"]
        assert (sup.camera("b") or {}).get("state") == "running"
        sup.add(a)  # a removed camera may come back, as a new camera
        assert (sup.camera("a") or {}).get("attempt") == 0
    finally:
        sup.request_stop()
        thread.join(10)
    assert not thread.is_alive()
    assert {r["camera"]: r["state"] for r in sup.status()} == {"a": "stopped", "b": "stopped"}
    assert sorted(engine.stopped) == ["a", "a", "b"]


@pytest.fixture
def running_api(fleet_file: Path, tmp_path: Path) -> Iterator[tuple[str, FleetSupervisor]]:
    fleet = load_fleet(fleet_file)
    engine = ScriptedEngine()
    sup = supervisor(engine, tmp_path)
    api = FleetApi(sup, fleet.resolver, "127.0.0.1", 0, {"engine": "scripted"})
    api.start()
    thread = threading.Thread(
        target=sup.run, args=(fleet.cameras[:1],), kwargs={"until_done": False}
    )
    thread.start()
    try:
        yield api.url, sup
    finally:
        sup.request_stop()
        thread.join(10)
        api.close()


def test_api_status_add_remove_and_errors(running_api: tuple[str, FleetSupervisor]) -> None:
    url, _ = running_api
    code, data = api_request(url, "GET", "/status")
    assert code == 200 and data["fleet"] == "site" and data["engine"] == "scripted"
    assert [r["camera"] for r in data["cameras"]] == ["a"]
    code, data = api_request(url, "POST", "/cameras", {"camera": {"id": "z", "source": {"x": 1}}})
    assert code == 400 and "camera.source" in data["error"], data
    code, data = api_request(url, "POST", "/cameras", {"camera": {"id": "bad id"}})
    assert code == 400 and "camera.id" in data["error"]
    code, data = api_request(url, "POST", "/cameras", {"camera": {"id": "a"}})
    assert code == 409
    code, data = api_request(url, "POST", "/cameras", {"camera": {"id": "n"}, "group": "g"})
    assert code == 201 and data["group"] == "g" and "cpu 0.25" in data["placement"]
    code, data = api_request(url, "GET", "/cameras/nope")
    assert code == 404
    code, data = api_request(url, "DELETE", "/cameras/n")
    assert code == 202 and data["state"] in ("stopping", "removed")
    code, data = api_request(url, "GET", "/healthz")
    assert code == 200 and data["cameras"] == 2


def test_cli_status_add_remove(
    running_api: tuple[str, FleetSupervisor], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, sup = running_api
    clip = tmp_path / "other.mp4"
    assert main(["fleet", "add", "cam9", "--api", url, "--source", f"path={clip}",
                 "--source", "max_frames=5", "--wait", "5"]) == 0  # fmt: skip
    row = sup.camera("cam9")
    assert row is not None and row["state"] == "running"
    assert main(["fleet", "status", "--api", url, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert {r["camera"]: r["state"] for r in status["cameras"]} == {
        "a": "running",
        "cam9": "running",
    }
    assert main(["fleet", "status", "--api", url]) == 0
    table = capsys.readouterr().out
    assert "cam9" in table and "running" in table
    assert main(["fleet", "remove", "cam9", "--api", url, "--timeout", "5"]) == 0
    assert (sup.camera("cam9") or {}).get("state") == "removed"
    assert main(["fleet", "add", "a", "--api", url]) == 2  # taken: a usage error
    assert main(["fleet", "remove", "zz", "--api", url]) == 2
    assert main(["fleet", "status", "--api", "http://127.0.0.1:1"]) == 1  # nobody there


def test_parse_assignments() -> None:
    assert parse_assignments(["a=1", "b.c=x y", "l={k: v}", "e="], "--source") == {
        "a": 1,
        "b": {"c": "x y"},
        "l": {"k": "v"},
        "e": "",
    }
    with pytest.raises(ConfigError, match="want KEY=VALUE"):
        parse_assignments(["novalue"], "--source")


def test_a_camera_waiting_for_a_node_says_what_it_waits_for(
    fleet_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = ScriptedEngine()
    sup = supervisor(engine, tmp_path)
    c = specs(fleet_file)[2]
    engine.script["c"] = [None]
    sup.start([c])
    sup.step()
    row = sup.camera("c")
    assert row is not None and row["state"] == "pending" and row["last_error"] is None
    later = time.monotonic() + 11
    monkeypatch.setattr(time, "monotonic", lambda: later)
    row = sup.camera("c")
    assert row is not None and row["last_error"] == "waiting for a node with cpu 0.25, spread"


def test_without_ray_the_fleet_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from streamer.errors import StreamerError
    from streamer.fleet.supervisor import import_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(StreamerError, match=r"pip install 'streamer\[fleet\]'"):
        import_ray()
