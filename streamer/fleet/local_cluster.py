"""A multi-node Ray cluster on loopback, for tests, benchmarks and trying fleets.

One head (``--num-cpus 0`` by default: no camera runs on it) and any number of worker
nodes, each started with ``ray start`` in its own process group (session), so one
node can be killed the way a machine dies: SIGKILL to its raylet, agents and the
worker processes (actors) the raylet started. Every process gets
``RAY_AUTH_MODE=disabled`` (needed for a second node on one machine with Ray 2.60)
and faster node health checks (a dead node is noticed in about 2 s instead of ~15 s).

Example::

    with LocalRayCluster() as cluster:
        cluster.add_worker("a", num_cpus=1, resources={"node_a": 1})
        cluster.add_worker("b", num_cpus=1, labels={"streamer.io/node": "b"})
        os.environ.update(cluster.env)            # the driver needs RAY_AUTH_MODE too
        ray.init(address=cluster.address)
        ...
        cluster.kill_worker("a")                 # node loss

Linux only (reads ``/proc``). Only the processes this object started are signalled.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from streamer.errors import StreamerError

CLUSTER_ENV = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "4",
}
"""Environment of every process of a local cluster (the driver's included)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """``(name, ppid, pgid)`` of a process, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name = text[text.index("(") + 1 : text.rindex(")")]
    fields = text[text.rindex(")") + 2 :].split()
    return name, int(fields[1]), int(fields[2])


def _all_procs() -> dict[int, tuple[str, int, int]]:
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _proc_stat(int(entry))
            if st is not None:
                out[int(entry)] = st
    return out


@dataclass
class Node:
    """One node of the cluster: its name and the process group of its ``ray start``."""

    name: str
    pgid: int
    log: Path


class LocalRayCluster:
    """Start and stop a Ray head and worker nodes on 127.0.0.1.

    Args:
        head_cpus: CPUs the head offers to actors (0: none).
        object_store_mb: Object store of each node, MiB (cameras pass little data).
        workdir: Folder for logs and Ray's temp dir (short, under /tmp, by default:
            Unix socket paths must stay under 108 characters).
        env: Extra environment of every node.

    Thread-safety: use from one thread.
    """

    def __init__(
        self,
        head_cpus: int = 0,
        object_store_mb: int = 100,
        workdir: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.head_cpus = head_cpus
        self.object_store_mb = object_store_mb
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="sray", dir="/tmp"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.env = {**CLUSTER_ENV, **(env or {})}
        self.nodes: dict[str, Node] = {}
        self._ray = str(Path(sys.executable).with_name("ray"))
        if not Path(self._ray).exists():
            found = shutil.which("ray")
            if found is None:
                raise StreamerError(
                    "the 'ray' command is not installed (pip install 'ray[default]')"
                )
            self._ray = found

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT`` of the head (the GCS)."""
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> LocalRayCluster:
        self.start_head()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _ray_start(self, name: str, args: list[str], timeout_s: float) -> Node:
        log = self.workdir / f"ray-start-{name}.log"
        env = {**os.environ, **self.env}
        with open(log, "wb") as fh:
            proc = subprocess.Popen(
                [self._ray, "start", *args, "--disable-usage-stats"],
                stdout=fh,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        node = Node(name=name, pgid=proc.pid, log=log)
        self.nodes[name] = node
        try:
            code = proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill_node(name)
            raise StreamerError(f"ray start ({name}) did not finish in {timeout_s:g} s") from None
        if code != 0:
            self.kill_node(name)
            tail = log.read_text(errors="replace")[-2000:]
            raise StreamerError(f"ray start ({name}) failed with status {code}:\n{tail}")
        return node

    def start_head(self, timeout_s: float = 60.0) -> None:
        """Start the head node.

        Raises:
            StreamerError: ``ray start`` failed or took too long.
        """
        self._ray_start(
            "head",
            [
                "--head",
                "--node-ip-address=127.0.0.1",
                f"--port={self.port}",
                f"--num-cpus={self.head_cpus}",
                "--num-gpus=0",
                f"--object-store-memory={self.object_store_mb * 1024 * 1024}",
                "--include-dashboard=false",
                f"--temp-dir={self.workdir / 'ray'}",
            ],
            timeout_s,
        )

    def add_worker(
        self,
        name: str,
        num_cpus: float = 1,
        resources: Mapping[str, float] | None = None,
        labels: Mapping[str, str] | None = None,
        timeout_s: float = 60.0,
    ) -> Node:
        """Start a worker node joining the head (one at a time: parallel starts clash).

        Args:
            name: Node name (for :meth:`kill_worker`).
            num_cpus: CPUs it offers.
            resources: Custom resources, e.g. ``{"node_a": 1}``.
            labels: Node labels, e.g. ``{"streamer.io/node": "a"}``.

        Raises:
            StreamerError: ``ray start`` failed or took too long.
        """
        if name in self.nodes:
            raise StreamerError(f"node {name!r} exists")
        args = [
            f"--address={self.address}",
            "--node-ip-address=127.0.0.1",
            f"--num-cpus={num_cpus:g}",
            "--num-gpus=0",
            f"--object-store-memory={self.object_store_mb * 1024 * 1024}",
        ]
        if resources:
            args.append(f"--resources={json.dumps(dict(resources))}")
        if labels:
            args.append("--labels=" + ",".join(f"{k}={v}" for k, v in labels.items()))
        return self._ray_start(name, args, timeout_s)

    def node_pids(self, name: str) -> list[int]:
        """Every process of node ``name``: its process group, and the processes its
        raylet started (actor workers put themselves in groups of their own)."""
        node = self.nodes[name]
        procs = _all_procs()
        group = {pid for pid, (_, _, pgid) in procs.items() if pgid == node.pgid}
        out = set(group)
        frontier = list(group)
        while frontier:  # descendants of the group (workers and their children)
            parent = frontier.pop()
            for pid, (_, ppid, _) in procs.items():
                if ppid == parent and pid not in out:
                    out.add(pid)
                    frontier.append(pid)
        return sorted(out)

    def kill_node(self, name: str) -> list[int]:
        """SIGKILL every process of node ``name`` (as if its machine died).

        Returns:
            The process ids signalled.
        """
        pids = self.node_pids(name)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.nodes.pop(name, None)
        return pids

    kill_worker = kill_node

    def stop(self) -> None:
        """Kill every node's processes (workers first, then the head); idempotent."""
        groups = {n.pgid for n in self.nodes.values()}
        for name in sorted(self.nodes, key=lambda n: n == "head"):
            self.kill_node(name)
        deadline = time.monotonic() + 5
        while groups and time.monotonic() < deadline:
            if not any(pgid in groups for _, _, pgid in _all_procs().values()):
                break
            time.sleep(0.1)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


__all__ = ["CLUSTER_ENV", "LocalRayCluster", "Node"]
