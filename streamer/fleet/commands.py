"""``streamer fleet run | status | add | remove | validate``.

``run`` loads a fleet YAML, joins Ray (``--address``, else the YAML's ``ray.address``,
else a new local instance), launches one actor per camera, serves the control API
and prints every state change; it returns when every camera has finished, failed or
been removed (``--keep-running``: until Ctrl-C), after stopping every actor. The
other commands talk to a running fleet's API (``--api``, default
``$STREAMER_FLEET_API`` or ``http://127.0.0.1:8765``).

Exit status: 0 every camera finished (or was removed); 1 a camera failed; 2 invalid
configuration; 130 interrupted (every camera is stopped and flushed first).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import time
from pathlib import Path
from types import FrameType
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from streamer.errors import ConfigError, StreamerError

DEFAULT_API = "http://127.0.0.1:8765"
EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_INTERRUPTED = 0, 1, 2, 130


def _console(stderr: bool = True) -> Console:
    console = Console(stderr=stderr, highlight=False, soft_wrap=True)
    if not console.is_terminal:  # a pipe or a file: do not squeeze tables into 80 columns
        console = Console(stderr=stderr, highlight=False, soft_wrap=True, width=160)
    return console


def _default_api() -> str:
    return os.environ.get("STREAMER_FLEET_API", DEFAULT_API)


# -- helpers ---------------------------------------------------------------------------
def parse_assignments(items: list[str] | None, what: str) -> dict[str, Any]:
    """``["a=1", "b.c=x"]`` -> ``{"a": 1, "b": {"c": "x"}}`` (values parsed as YAML).

    Raises:
        ConfigError: an item without ``=`` or with an unparsable value.
    """
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{what}: want KEY=VALUE, got {item!r}")
        try:
            value = yaml.safe_load(text) if text else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"{what}: {key}: cannot parse {text!r}: {e}") from None
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{what}: {key}: {part} is both a value and a mapping")
        node[parts[-1]] = value
    return out


def _node(row: dict[str, Any]) -> str:
    node = row.get("node_id")
    where = row.get("node_ip") or row.get("host") or ""
    if not node:
        return where or "-"
    return f"{str(node)[:8]} {where}".strip()


def _num(value: Any, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def status_table(rows: list[dict[str, Any]], title: str = "fleet") -> Table:
    """A rich table of camera status rows."""
    table = Table(title=title)
    for col, justify in (
        ("camera", "left"),
        ("state", "left"),
        ("node", "left"),
        ("attempt", "right"),
        ("restarts", "right"),
        ("frames", "right"),
        ("fps", "right"),
        ("p95 ms", "right"),
        ("reconnects", "right"),
        ("last error", "left"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        frames = str(r.get("frames", 0))
        if r.get("expected_frames"):
            frames += f"/{r['expected_frames']}"
        state = r["state"]
        if state == "restarting" and r.get("restart_in_s") is not None:
            state += f" (in {r['restart_in_s']:.1f} s)"
        error = r.get("last_error") or ""
        table.add_row(
            r["camera"],
            state,
            _node(r),
            str(r.get("attempt", 0)),
            str(r.get("restarts", 0)),
            frames,
            _num(r.get("fps"), ".1f"),
            _num(r.get("latency_p95_ms"), ".1f"),
            str(r.get("reconnects", 0)),
            error if len(error) <= 80 else error[:77] + "...",
        )
    return table


def _check(code: int, data: Any, what: str) -> dict[str, Any]:
    if 200 <= code < 300 and isinstance(data, dict):
        return data
    message = data.get("error") if isinstance(data, dict) else str(data)
    if code in (400, 404, 409):
        raise ConfigError(f"{what}: {message}")
    raise StreamerError(f"{what}: HTTP {code}: {message}")


# -- commands --------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from streamer.fleet.api import FleetApi
    from streamer.fleet.loader import load_fleet
    from streamer.fleet.supervisor import Engine, FleetSupervisor, InProcessEngine, RayEngine

    console = _console()
    fleet = load_fleet(args.fleet, max_frames=args.max_frames)
    cfg = fleet.config
    run_dir = Path(args.output) if args.output else fleet.run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    if fleet.path is not None:
        shutil.copyfile(fleet.path, run_dir / "fleet.yaml")  # templates, not secrets
    engine: Engine
    if args.engine == "local":
        engine = InProcessEngine()
    else:
        rc = cfg.ray
        engine = RayEngine(
            address=args.address if args.address is not None else rc.address,
            namespace=rc.namespace,
            log_to_driver=rc.log_to_driver,
            num_cpus=rc.num_cpus,
            num_gpus=rc.num_gpus,
            runtime_env=rc.runtime_env,
        )
    # Ray's driver replaces the SIGTERM handler (and would end this process on the
    # spot): put back the one that stops every camera gracefully, as Ctrl-C does.
    signal.signal(signal.SIGTERM, _sigterm_to_interrupt)
    description = engine.describe()
    console.print(
        f"fleet [bold]{cfg.name}[/bold]: {len(fleet.cameras)} cameras on {description} -> {run_dir}"
    )
    supervisor = FleetSupervisor(
        cfg.name,
        engine,
        run_dir,
        cfg.restart,
        poll_s=cfg.poll_s,
        stop_timeout_s=cfg.stop_timeout_s,
        on_event=lambda line: console.print(line, markup=False),
    )
    api = None
    interrupted = False
    ran = False
    try:
        if cfg.api is not None:
            port = args.api_port if args.api_port is not None else cfg.api.port
            api = FleetApi(supervisor, fleet.resolver, cfg.api.host, port, {"engine": description})
            api.start()
            console.print(
                f"control API {api.url} (streamer fleet status|add|remove --api {api.url})",
                markup=False,
            )
        until_done = bool(fleet.cameras) and not args.keep_running
        ran = True
        try:  # run() stops every camera and releases the engine on every exit path
            rows = supervisor.run(fleet.cameras, until_done=until_done)
        except KeyboardInterrupt:
            interrupted = True
            rows = supervisor.status()
    finally:
        if api is not None:
            api.close()
        if not ran:
            engine.shutdown()
    supervisor.write_report(run_dir / "fleet.json")
    console.print(status_table(rows, title=f"fleet {cfg.name}"))
    console.print(f"wrote {run_dir / 'fleet.json'}")
    if interrupted:
        console.print("interrupted: every camera was stopped and its outputs flushed")
        return EXIT_INTERRUPTED
    return EXIT_FAILED if any(r["state"] == "failed" for r in rows) else EXIT_OK


def _sigterm_to_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def cmd_status(args: argparse.Namespace) -> int:
    from streamer.fleet.api import api_request

    console = _console(stderr=False)
    while True:
        data = _check(*api_request(args.api, "GET", "/status"), "status")
        if args.json:
            print(json.dumps(data, indent=2))
        else:
            title = f"fleet {data.get('fleet')} ({data.get('engine', '?')})"
            console.print(status_table(data.get("cameras", []), title=title))
        if not args.watch:
            return EXIT_OK
        time.sleep(args.watch)


def cmd_add(args: argparse.Namespace) -> int:
    from streamer.fleet.api import api_request

    camera: dict[str, Any] = {"id": args.id}
    if args.pipeline:
        camera["pipeline"] = args.pipeline
    source = parse_assignments(args.source, "--source")
    if source:
        camera["source"] = source
    placement = parse_assignments(args.placement, "--placement")
    if placement:
        camera["placement"] = placement
    body = {"camera": camera, "group": args.group, "base_dir": str(Path.cwd())}
    row = _check(*api_request(args.api, "POST", "/cameras", body), f"add {args.id}")
    console = _console()
    console.print(f"camera {args.id}: {row['state']} ({row['placement']})", markup=False)
    if args.wait:
        row = _wait_for(args.api, args.id, {"running", "finished", "failed"}, args.wait)
        console.print(f"camera {args.id}: {row['state']} on {_node(row)}", markup=False)
        if row["state"] == "failed":
            return EXIT_FAILED
    return EXIT_OK


def cmd_remove(args: argparse.Namespace) -> int:
    from streamer.fleet.api import api_request

    row = _check(*api_request(args.api, "DELETE", f"/cameras/{args.id}"), f"remove {args.id}")
    console = _console()
    console.print(f"camera {args.id}: {row['state']}", markup=False)
    if not args.no_wait and row["state"] != "removed":
        row = _wait_for(args.api, args.id, {"removed"}, args.timeout)
        console.print(f"camera {args.id}: {row['state']} ({row.get('frames', 0)} frames)")
    return EXIT_OK


def _wait_for(api: str, camera: str, states: set[str], timeout_s: float) -> dict[str, Any]:
    from streamer.fleet.api import api_request

    deadline = time.monotonic() + timeout_s
    while True:
        row = _check(*api_request(api, "GET", f"/cameras/{camera}"), camera)
        if row["state"] in states:
            return row
        if time.monotonic() > deadline:
            raise StreamerError(
                f"camera {camera}: still {row['state']} after {timeout_s:g} s "
                f"(waiting for {' or '.join(sorted(states))})"
            )
        time.sleep(0.2)


def cmd_validate(args: argparse.Namespace) -> int:
    from streamer.config.loader import hide_secrets
    from streamer.config.schema import (
        ReplaySourceConfig,
        RtspSourceConfig,
        VideoFileSourceConfig,
    )
    from streamer.fleet.loader import load_fleet

    fleet = load_fleet(args.fleet, max_frames=args.max_frames)
    console = _console(stderr=False)
    table = Table(title=f"fleet {fleet.config.name}: {len(fleet.cameras)} cameras")
    for col in ("camera", "group", "pipeline", "source", "placement", "restart"):
        table.add_column(col)
    for cam in fleet.cameras:
        src = cam.config.sources[0]
        if isinstance(src, VideoFileSourceConfig | ReplaySourceConfig):
            what = f"{src.type} {src.path.name}"
        elif isinstance(src, RtspSourceConfig):
            what = f"rtsp {hide_secrets(src.url, [])}"
        else:
            what = src.type
        table.add_row(
            cam.id,
            cam.group or "-",
            cam.pipeline_path.name,
            what + (" (live)" if cam.live else ""),
            cam.placement.describe(),
            "new stream" if cam.live else "resume",
        )
    console.print(table)
    _console().print(f"[green]ok[/green]: {args.fleet} is a valid fleet")
    return EXIT_OK


# -- parser ----------------------------------------------------------------------------
def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return n


def add_fleet_parser(sub: Any) -> None:
    """Add ``fleet`` and its subcommands to the ``streamer`` parser's subparsers."""
    from streamer.cli import port_number

    fleet = sub.add_parser(
        "fleet", help="run many cameras on a Ray cluster (run | status | add | remove | validate)"
    )
    fsub = fleet.add_subparsers(dest="fleet_command", required=True)

    run = fsub.add_parser("run", help="run a fleet YAML: one Ray actor per camera")
    run.add_argument("fleet", help="fleet YAML")
    run.add_argument(
        "--address",
        help="Ray address: auto, HOST:PORT or ray://HOST:10001 (default: the YAML's "
        "ray.address; none: start a local Ray instance)",
    )
    run.add_argument(
        "--engine",
        choices=["ray", "local"],
        default="ray",
        help="ray (default) or local: every camera in a thread of this process, no Ray",
    )
    run.add_argument("-o", "--output", help="run directory (default: the YAML's output_dir)")
    run.add_argument("--api-port", type=port_number, metavar="PORT", help="control API port")
    run.add_argument(
        "--max-frames", type=_positive_int, metavar="N", help="stop each camera after N frames"
    )
    run.add_argument(
        "--keep-running",
        action="store_true",
        help="keep running when every camera is done (for cameras added later); Ctrl-C stops",
    )
    run.set_defaults(func=cmd_run)

    api_help = "fleet API URL (default $STREAMER_FLEET_API or " + DEFAULT_API + ")"
    st = fsub.add_parser("status", help="per-camera state, node, fps, latency, errors")
    st.add_argument("--api", default=_default_api(), help=api_help)
    st.add_argument("--json", action="store_true", help="print the API's JSON")
    st.add_argument("--watch", type=float, metavar="S", help="repeat every S seconds")
    st.set_defaults(func=cmd_status)

    add = fsub.add_parser("add", help="add a camera to a running fleet")
    add.add_argument("id", help="camera id")
    add.add_argument("--api", default=_default_api(), help=api_help)
    add.add_argument("--pipeline", help="pipeline YAML (default: the group's or fleet's)")
    add.add_argument("--group", help="take the defaults of this group of the fleet")
    add.add_argument(
        "--source",
        action="append",
        metavar="KEY=VALUE",
        help="source key merged over the pipeline's source (repeat; e.g. path=clip.mp4, "
        "url=rtsp://..., max_frames=100, reconnect.max_attempts=5)",
    )
    add.add_argument(
        "--placement",
        action="append",
        metavar="KEY=VALUE",
        help="placement key (repeat; e.g. num_gpus=0.25, labels={kind: gpu})",
    )
    add.add_argument("--wait", type=float, metavar="S", help="wait up to S seconds for it to run")
    add.set_defaults(func=cmd_add)

    rm = fsub.add_parser("remove", help="stop a camera (drain, flush) and remove it")
    rm.add_argument("id", help="camera id")
    rm.add_argument("--api", default=_default_api(), help=api_help)
    rm.add_argument("--no-wait", action="store_true", help="do not wait until it is removed")
    rm.add_argument("--timeout", type=float, default=60.0, help="longest wait, seconds (60)")
    rm.set_defaults(func=cmd_remove)

    val = fsub.add_parser("validate", help="check a fleet YAML and every camera's pipeline")
    val.add_argument("fleet", help="fleet YAML")
    val.add_argument("--max-frames", type=_positive_int, metavar="N", help=argparse.SUPPRESS)
    val.set_defaults(func=cmd_validate)


__all__ = ["DEFAULT_API", "add_fleet_parser", "parse_assignments", "status_table"]
