"""Fleets on a real Ray cluster on loopback: a head and two worker nodes (one core each,
custom resources and labels ``streamer.io/node=a|b``), started with ``ray start``.

* Eight file cameras spread over both nodes all finish, with tracks identical to the
  same pipeline run alone.
* ``streamer fleet run`` (a separate driver process) with a camera added and one
  removed through ``streamer fleet add|remove``, both visible in ``status``.
* Node loss: every process of node ``a`` is SIGKILLed mid-run (and, at the same time,
  the process of one camera on node ``b``); the cameras restart on
  node ``b``, resume, and finish with outputs identical to a run alone (no record
  lost or written twice).

Skipped without Ray (``pip install 'streamer[fleet]'``). Every Ray process started
here is killed at the end (by process group, see ``LocalRayCluster``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import require_data, restore_sigint

ray = pytest.importorskip("ray", reason="Ray not installed (pip install 'streamer[fleet]')")

from streamer.cli import main, run_pipeline  # noqa: E402
from streamer.config.loader import load_pipeline  # noqa: E402
from streamer.fleet.api import api_request  # noqa: E402
from streamer.fleet.loader import load_fleet  # noqa: E402
from streamer.fleet.local_cluster import LocalRayCluster  # noqa: E402
from streamer.fleet.schema import RestartConfig  # noqa: E402
from streamer.fleet.supervisor import FleetSupervisor, RayEngine  # noqa: E402

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
PIPELINE = REPO / "fleets" / "pipelines" / "people_files.yaml"
VIDEOS = {"pets": "videos/pets09_s2l1_480x360.mp4", "one": "videos/one-by-one-person-detection.mp4"}
REFERENCE_FRAMES = {"pets": 80, "one": 50}


def records(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        out.append({"seq": rec["seq"], "tracks": rec["tracks"]})
    return out


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalRayCluster]:
    require_data("models/yolox_nano.onnx")
    saved = dict(os.environ)
    c = LocalRayCluster()
    os.environ.update(c.env)  # the driver (this process) needs RAY_AUTH_MODE too
    try:
        c.start_head()
        c.add_worker("a", num_cpus=1, resources={"node_a": 1}, labels={"streamer.io/node": "a"})
        c.add_worker("b", num_cpus=1, resources={"node_b": 1}, labels={"streamer.io/node": "b"})
        ray.init(address=c.address, namespace="streamer-test", log_to_driver=False)
        yield c
    finally:
        ray.shutdown()
        c.stop()
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each clip through the same pipeline alone (tracking is causal, so a camera that
    stops after N frames must equal the first N frames of these)."""
    base = tmp_path_factory.mktemp("alone")
    out = {}
    for key, rel in VIDEOS.items():
        cfg = load_pipeline(PIPELINE)
        cfg.sources[0].path = require_data(rel)
        cfg.sources[0].max_frames = REFERENCE_FRAMES[key]
        result = run_pipeline(cfg, base / key, show_progress=False)
        assert result.ok, result.errors
        out[key] = base / key
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def node_names() -> dict[str, str]:
    return {n["NodeID"]: n["Labels"].get("streamer.io/node", "head") for n in ray.nodes()}


def write_fleet(
    folder: Path,
    cameras: list[tuple[str, str, int]],
    placements: dict[str, dict[str, Any]] | None = None,
    **extra: Any,
) -> Path:
    doc = {
        "name": "t",
        "pipeline": str(PIPELINE),
        "placement": {"num_cpus": 0.25},
        "restart": {"initial_delay_s": 0.2, "jitter": 0.0},
        "poll_s": 0.2,
        "cameras": [
            {"id": cid, "source": {"path": str(require_data(VIDEOS[clip])), "max_frames": n}}
            for cid, clip, n in cameras
        ],
        **extra,
    }
    for cam in doc["cameras"]:
        if cam["id"] in (placements or {}):
            cam["placement"] = placements[cam["id"]]  # type: ignore[index]
    path = folder / "fleet.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def assert_matches_reference(run_dir: Path, clip: str, frames: int, ref: dict[str, Path]) -> None:
    got = records(run_dir / "tracks.jsonl")
    want = records(ref[clip] / "tracks.jsonl")[:frames]
    assert [r["seq"] for r in got] == list(range(frames)), run_dir
    assert got == want, run_dir
    mot = (run_dir / "tracks_mot.txt").read_text().splitlines()
    want_mot = [
        ln
        for ln in (ref[clip] / "tracks_mot.txt").read_text().splitlines()
        if int(ln.split(",")[0]) <= frames
    ]
    assert mot == want_mot, run_dir


class Driver:
    """A supervisor on the test's Ray connection, run in a thread."""

    def __init__(self, fleet_path: Path, run_dir: Path) -> None:
        self.fleet = load_fleet(fleet_path)
        self.events: list[str] = []
        self.sup = FleetSupervisor(
            "t",
            RayEngine(),
            run_dir,
            RestartConfig.model_validate({"initial_delay_s": 0.2, "jitter": 0.0}),
            poll_s=0.2,
            on_event=self.events.append,
        )
        self.thread = threading.Thread(target=self.sup.run, args=(self.fleet.cameras,))

    def __enter__(self) -> Driver:
        self.thread.start()
        return self

    def wait(self, timeout_s: float) -> None:
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "\n".join(self.events)

    def __exit__(self, *exc: object) -> None:
        self.sup.request_stop()
        self.thread.join(30)


def test_eight_cameras_spread_over_two_nodes_match_runs_alone(
    cluster: LocalRayCluster, reference: dict[str, Path], tmp_path: Path
) -> None:
    cams = [
        *[(f"p{i}", "pets", n) for i, n in enumerate((30, 35, 40, 25, 30), start=1)],
        *[(f"o{i}", "one", n) for i, n in enumerate((30, 35, 25), start=1)],
    ]
    # Two cameras are pinned: one by node label (Ray's label_selector), one by a custom
    # resource only node b has; the other six go where the spread strategy puts them.
    pinned = {
        "p1": {"labels": {"streamer.io/node": "a"}},
        "o1": {"resources": {"node_b": 0.1}},
    }
    t0 = time.monotonic()
    with Driver(write_fleet(tmp_path, cams, pinned), tmp_path / "run") as driver:
        driver.wait(240)
    rows = driver.sup.status()
    assert {r["camera"]: r["state"] for r in rows} == {c[0]: "finished" for c in cams}, (
        driver.events
    )
    names = node_names()
    placed = {r["camera"]: names[r["history"][-1]["node_id"]] for r in rows}
    assert set(placed.values()) == {"a", "b"}, placed  # spread, never on the head
    assert placed["p1"] == "a" and placed["o1"] == "b", placed
    for cid, clip, frames in cams:
        assert_matches_reference(tmp_path / "run" / cid, clip, frames, reference)
    print(f"8 cameras, {sum(c[2] for c in cams)} frames in {time.monotonic() - t0:.1f} s: {placed}")


def test_cli_add_remove_and_status_while_the_fleet_runs(
    cluster: LocalRayCluster, reference: dict[str, Path], tmp_path: Path
) -> None:
    port = free_port()
    fleet = write_fleet(tmp_path, [("long", "pets", 400)], api={"port": port})
    url = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "driver.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamer.cli", "fleet", "run", str(fleet), "--address",
         cluster.address, "--keep-running", "-o", str(tmp_path / "run")],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **cluster.env},
        preexec_fn=restore_sigint,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                code, data = api_request(url, "GET", "/cameras/long", timeout_s=2)
                if code == 200 and data["state"] == "running" and data["frames"] > 5:
                    break
            except Exception:
                pass
            assert proc.poll() is None, (tmp_path / "driver.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "driver.log").read_text()
            time.sleep(0.3)
        short = str(require_data(VIDEOS["one"]))
        assert main(["fleet", "add", "short", "--api", url, "--source", f"path={short}",
                     "--source", "max_frames=30", "--wait", "60"]) == 0  # fmt: skip
        code, data = api_request(url, "GET", "/status")
        states = {r["camera"]: r["state"] for r in data["cameras"]}
        assert states["long"] == "running" and states["short"] in ("running", "finished")
        assert main(["fleet", "remove", "long", "--api", url, "--timeout", "60"]) == 0
        deadline = time.monotonic() + 60
        while api_request(url, "GET", "/cameras/short")[1]["state"] != "finished":
            assert time.monotonic() < deadline
            time.sleep(0.3)
        code, data = api_request(url, "GET", "/status")
        rows = {r["camera"]: r for r in data["cameras"]}
        assert rows["long"]["state"] == "removed" and rows["short"]["state"] == "finished"
        assert main(["fleet", "status", "--api", url]) == 0
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
            log.close()
    assert code == 130, (tmp_path / "driver.log").read_text()
    report = json.loads((tmp_path / "run" / "fleet.json").read_text())
    assert {c["camera"]: c["state"] for c in report["cameras"]} == {
        "long": "removed",
        "short": "finished",
    }
    assert_matches_reference(tmp_path / "run" / "short", "one", 30, reference)
    # The removed camera was drained and flushed: a clean prefix of the run alone.
    long_records = records(tmp_path / "run" / "long" / "tracks.jsonl")
    n = min(len(long_records), REFERENCE_FRAMES["pets"])
    assert n > 5 and [r["seq"] for r in long_records] == list(range(len(long_records)))
    assert long_records[:n] == records(reference["pets"] / "tracks.jsonl")[:n]


def test_node_loss_restarts_cameras_elsewhere_and_they_resume(
    cluster: LocalRayCluster, reference: dict[str, Path], tmp_path: Path
) -> None:
    cams = [("k1", "pets", 80), ("k2", "pets", 70), ("k3", "one", 50), ("k4", "pets", 75)]
    with Driver(write_fleet(tmp_path, cams), tmp_path / "run") as driver:
        names = node_names()
        deadline = time.monotonic() + 90
        while True:  # a camera on each node is running and has written some frames
            rows = driver.sup.status()
            on = {
                node: [
                    r
                    for r in rows
                    if r.get("node_id")
                    and names.get(r["node_id"]) == node
                    and r["state"] == "running"
                    and r["frames"] >= 10
                ]
                for node in ("a", "b")
            }
            if on["a"] and on["b"]:
                break
            assert time.monotonic() < deadline, driver.events
            time.sleep(0.1)
        victims = {r["camera"] for r in on["a"]}  # every process of node a dies
        crashed = on["b"][0]["camera"]  # and one camera process on node b dies alone
        os.kill(on["b"][0]["pid"], signal.SIGKILL)
        killed = cluster.kill_worker("a")
        t_kill = time.monotonic()
        assert killed
        driver.wait(180)
    rows = {r["camera"]: r for r in driver.sup.status()}
    assert {c: r["state"] for c, r in rows.items()} == {c[0]: "finished" for c in cams}
    # A restart placed before Ray has declared node a dead can land there and die once
    # more (the supervisor restarts it again); every camera ends finished on node b.
    for cid in [*victims, crashed]:
        history = rows[cid]["history"]
        ended = [h["ended"] for h in history]
        assert ended[-1] == "finished" and set(ended[:-1]) == {"died"}, history
        assert len(history) <= 4 and names[history[-1]["node_id"]] == "b", history
        assert history[-1]["resumed_from"] >= 10, history
        assert history[0]["pid"] != history[-1]["pid"]
    for cid in victims:
        assert names[rows[cid]["history"][0]["node_id"]] == "a"
    for cid, clip, frames in cams:
        assert_matches_reference(tmp_path / "run" / cid, clip, frames, reference)
    print(
        f"killed node a ({len(killed)} processes) under {sorted(victims)} and the process "
        f"of {crashed} on node b; all finished {time.monotonic() - t_kill:.1f} s later"
    )
