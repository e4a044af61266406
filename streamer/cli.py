"""Command line: ``streamer run | validate | ... | engine build``.

Errors a user can cause (bad YAML, missing files, broken videos, unloadable models)
are printed as one line, ``error: ...``, with a non-zero exit status; no traceback.
Exit status: 0 success, 1 the run failed, 2 invalid configuration or usage,
130 interrupted (Ctrl-C / SIGTERM; outputs are flushed and closed first).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from streamer.config.loader import dump_resolved, load_pipeline
from streamer.config.schema import (
    TRACKER_TYPES,
    PipelineConfig,
    PreviewSinkConfig,
    ServerConfig,
)
from streamer.errors import ConfigError, StreamerError
from streamer.pipeline.runner import Pipeline, RunResult
from streamer.pipeline.stages import SinkStage
from streamer.slicing.adaptive import AdaptiveSlicedDetector
from streamer.slicing.sliced import SlicedDetector, SlicedStats

if TYPE_CHECKING:
    from streamer.pipeline.build import BuiltPipeline
    from streamer.pipeline.server import MonitorServer

DEFAULT_PIPELINE = Path(__file__).resolve().parents[1] / "pipelines" / "pets09_people.yaml"

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_INTERRUPTED = 0, 1, 2, 130


def _stderr() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def run_pipeline(
    cfg: PipelineConfig,
    run_dir: Path,
    *,
    show_progress: bool = True,
    console: Console | None = None,
    on_start: Callable[[Pipeline, MonitorServer | None], None] | None = None,
) -> RunResult:
    """Build and run ``cfg``, writing ``config.resolved.yaml`` and ``summary.json``.

    With ``cfg.server`` set, the HTTP server (metrics, health, live preview) listens
    from before the first frame until the run ends, on every exit path.

    Args:
        cfg: Validated pipeline configuration.
        run_dir: Output folder (created).
        show_progress: Draw a progress bar with frames/s and ETA on stderr.
        console: Where progress goes (stderr by default).
        on_start: Called once the pipeline is built and the server listens, right
            before the run, with the pipeline and the server (None without one);
            e.g. to stop a live run from another thread with ``request_stop``.

    Returns:
        The run's result; failures are reported in ``result.errors``.

    Raises:
        StreamerError: the pipeline could not be built (model, config, outputs) or the
            server cannot listen.
    """
    from streamer.pipeline.build import build_pipeline

    console = console or _stderr()
    problems = _previews_without_server(cfg)
    if problems:
        raise ConfigError(problems[0])
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.resolved.yaml").write_text(dump_resolved(cfg), encoding="utf-8")
    built = build_pipeline(cfg, run_dir)
    pipe = built.pipeline
    server = _start_server(cfg, built, console)
    try:
        if on_start is not None:
            on_start(pipe, server)
        if not show_progress:
            result = pipe.run()
        else:
            progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[fps]:>6.1f} frames/s"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=console,
                transient=False,
            )
            t0 = time.monotonic()
            with progress:
                task: TaskID = progress.add_task(cfg.name, total=None, fps=0.0)

                def tick(p: Pipeline) -> None:
                    elapsed = max(time.monotonic() - t0, 1e-6)
                    progress.update(
                        task,
                        completed=p.packets_out,
                        total=p.expected_frames,
                        fps=p.packets_out / elapsed,
                    )

                result = pipe.run(on_tick=tick)
    finally:
        if server is not None:
            server.close()
    summary = summary_dict(cfg, result)
    sink_stats = {
        st.name: stats
        for st in pipe.stages
        if isinstance(st, SinkStage) and (stats := st.stats()) is not None
    }
    if sink_stats:
        summary["sinks"] = sink_stats
        for name, stats in sink_stats.items():
            shown = ", ".join(f"{k} {v}" for k, v in stats.items() if isinstance(v, int | float))
            result.notes.append(f"{name}: {shown}")
    replays = {
        src.source_id: stats.as_dict()
        for src in pipe.sources
        if (stats := getattr(src, "replay_stats", None)) is not None
    }
    if replays:  # what the virtual clock's capture model decided, per replay source
        summary["replay"] = replays
        for sid, r in replays.items():
            result.notes.append(
                f"replay '{sid}': {r['emitted']} of {r['recorded_frames']} recorded frames, "
                f"{r['buffer_drops']} buffer drops, {r['stale_drops']} stale drops (modelled)"
            )
    if isinstance(built.detector, SlicedDetector | AdaptiveSlicedDetector):
        st = built.detector.stats
        result.notes.append(f"slicing: {st.tiles_per_frame:.2f} tiles per frame")
        slicing: dict[str, object] = {
            "tiles_per_frame": round(st.tiles_per_frame, 3),
            "adaptive": isinstance(built.detector, AdaptiveSlicedDetector),
        }
        if isinstance(st, SlicedStats):
            slicing.update(images_inferred=st.images_inferred, inference_calls=st.inference_calls)
        summary["slicing"] = slicing
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return result


def _start_server(
    cfg: PipelineConfig, built: BuiltPipeline, console: Console
) -> MonitorServer | None:
    """Start the run's HTTP server when ``cfg.server`` asks for one; print its URL.

    Raises:
        StreamerError: the address cannot be bound (the built stages are closed first).
    """
    if cfg.server is None:
        return None
    from streamer.pipeline.server import MonitorServer

    server = MonitorServer(
        built.pipeline,
        name=cfg.name,
        host=cfg.server.host,
        port=cfg.server.port,
        source_down_s=cfg.server.health.source_down_s,
        preview=built.preview,
    )
    try:
        server.start()
    except StreamerError:
        for stage in built.pipeline.stages:  # sinks may already hold files or sockets
            with contextlib.suppress(Exception):
                stage.close()
        raise
    console.print(
        f"serving {server.url} (metrics /metrics, health /healthz, stats /stats.json, "
        "preview / and /stream/<source>.mjpg)",
        markup=False,
    )
    return server


def summary_dict(cfg: PipelineConfig, result: RunResult) -> dict[str, object]:
    """The run's figures as plain data (written to ``summary.json``)."""
    return {
        "pipeline": cfg.name,
        "frames": result.frames,
        "packets_out": result.packets_out,
        "wall_s": round(result.wall_s, 3),
        "fps": round(result.fps, 2),
        "stages": [
            {
                "name": s.name,
                "packets": s.packets,
                "batches": s.batches,
                "mean_ms": round(s.latency.mean_ms, 3),
                "p95_ms": round(s.latency.percentile_ms(95), 3),
            }
            for s in result.stage_stats
        ],
        "queues": [
            {
                "name": c.name,
                "capacity": c.capacity,
                "policy": c.policy,
                "peak_depth": c.peak_depth,
                "drops": c.total_drops,
            }
            for c in result.channel_stats
        ],
        "latency_ms": result.latency_ms.summary(),
        "sources": {
            sid: {
                "frames": st.frames,
                "gaps": st.gaps,
                "missing_frames": st.missing_frames,
                "reconnects": st.reconnects,
                "buffer_drops": result.channel_stats[0].drops.get(sid, 0)
                if result.channel_stats
                else 0,
                "stale_drops": result.stale_drops.get(sid, 0),
                "latency_ms": st.latency.summary(),
            }
            for sid, st in result.sources.items()
        },
        "errors": result.errors,
        "interrupted": result.interrupted,
    }


def summary_table(result: RunResult) -> Table:
    """A rich table of frames, wall time, fps, per-stage latency and queue use."""
    table = Table(title="run summary", show_lines=False)
    table.add_column("stage / queue")
    table.add_column("frames", justify="right")
    table.add_column("mean ms", justify="right")
    table.add_column("p95 ms", justify="right")
    table.add_column("queue in (cap, policy)")
    table.add_column("peak", justify="right")
    table.add_column("drops", justify="right")
    for s, c in zip(result.stage_stats, result.channel_stats, strict=True):
        table.add_row(
            s.name,
            str(s.packets),
            f"{s.latency.mean_ms:.2f}",
            f"{s.latency.percentile_ms(95):.2f}",
            f"{c.capacity}, {c.policy}",
            str(c.peak_depth),
            str(c.total_drops),
        )
    frames = sum(result.frames.values())
    notes = "".join(f"; {n}" for n in result.notes)
    lat = result.latency_ms
    table.caption = (
        f"{frames} frames read, {result.packets_out} written in {result.wall_s:.2f} s "
        f"= {result.fps:.1f} frames/s; end-to-end latency p50 "
        f"{lat.percentile_ms(50):.1f} ms, p95 {lat.percentile_ms(95):.1f} ms, "
        f"max {lat.max_ms:.1f} ms{notes}"
    )
    stale = result.stale_drops
    live = [
        st
        for st in result.sources.values()
        if st.gaps or st.reconnects or stale.get(st.source_id) or len(result.sources) > 1
    ]
    for st in live:
        table.caption += (
            f"\nsource '{st.source_id}': {st.frames} frames, latency p50 "
            f"{st.latency.percentile_ms(50):.1f} / p95 {st.latency.percentile_ms(95):.1f} / "
            f"max {st.latency.max_ms:.1f} ms, {st.gaps} gaps ({st.missing_frames} frames "
            f"missing), {st.reconnects} reconnects, {stale.get(st.source_id, 0)} stale drops"
        )
    return table


def check_inputs(cfg: PipelineConfig) -> list[str]:
    """Open every source and load the model without running anything.

    Returns:
        One line per input checked (what was found).

    Raises:
        SourceError: a source cannot be opened.
        BackendError: the model cannot be loaded or its output layout is unknown.
        ConfigError: a class filter names a class the model does not have.
    """
    from streamer.config.schema import DetectStageConfig
    from streamer.pipeline.build import make_detector, make_source

    found = []
    for s in cfg.sources:
        # Fail fast: validate opens each source once, without reconnecting.
        # ... and without recording anything.
        live = {"reconnect": None, "record": None}
        src = make_source(s.model_copy(update=live) if s.type == "rtsp" else s)
        try:
            info = src.open()
        finally:
            src.close()
        found.append(
            f"source '{s.id}': {info.width_px}x{info.height_px} at {info.fps:g} fps, "
            f"{info.frame_count if info.frame_count is not None else 'unknown'} frames"
        )
    det = cfg.stages[0]
    assert isinstance(det, DetectStageConfig)  # guaranteed by the schema
    detector = make_detector(det)
    found.append(
        f"model {det.model.name}: layout {detector.layout}, input {detector.input_wh}, "
        f"{len(detector.class_names)} classes"
    )
    return found


def _previews_without_server(cfg: PipelineConfig) -> list[str]:
    """One message per ``preview`` stage of a pipeline that has no ``server:``."""
    return [
        f"stages[{i}]: a 'preview' stage needs a server: add a top-level 'server:' block "
        "or run with --serve PORT"
        for i, stage_cfg in enumerate(cfg.stages)
        if isinstance(stage_cfg, PreviewSinkConfig) and cfg.server is None
    ]


def _cmd_validate(args: argparse.Namespace) -> int:
    cfg = load_pipeline(args.pipeline)
    sys.stdout.write(dump_resolved(cfg))
    console = _stderr()
    for problem in _previews_without_server(cfg):  # valid YAML: `run --serve` completes it
        console.print(f"[yellow]note[/yellow]: {problem}", soft_wrap=True)
    if not args.config_only:
        for line in check_inputs(cfg):
            console.print(f"  {line}")
    console.print(f"[green]ok[/green]: {args.pipeline} is a valid pipeline")
    return EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    from streamer.pipeline.build import default_run_dir

    console = _stderr()
    cfg = load_pipeline(args.pipeline)
    if args.max_frames is not None:
        for src in cfg.sources:
            src.max_frames = args.max_frames
    if args.serve is not None:
        server = cfg.server or ServerConfig.model_validate({})
        cfg.server = server.model_copy(update={"port": args.serve})
    run_dir = Path(args.output) if args.output else default_run_dir(cfg)
    console.print(f"running [bold]{cfg.name}[/bold] -> {run_dir}")
    result = run_pipeline(cfg, run_dir, show_progress=not args.no_progress, console=console)
    console.print(summary_table(result))
    for f in sorted(run_dir.iterdir()):
        console.print(f"  wrote {f}")
    if result.errors:
        for e in result.errors:
            console.print(f"[red]error[/red]: {e}", soft_wrap=True)
        return EXIT_FAILED
    if result.interrupted:
        console.print("interrupted: outputs were flushed and closed")
        return EXIT_INTERRUPTED
    return EXIT_OK


def _cmd_track(args: argparse.Namespace) -> int:
    from streamer.evaluation import commands as ev

    cfg = ev.tracker_config(args.tracker, args.preset, ev.parse_overrides(args.set or []))
    console = _stderr()
    if args.det is not None:
        jobs = {Path(args.det).stem: (Path(args.det), Path(args.out))}
    else:
        seqs = ev.find_sequences(Path(args.det_dir), "det")
        jobs = {name: (det, Path(args.out) / f"{name}.txt") for name, det in seqs.items()}
    t0 = time.perf_counter()
    for name, (det, out) in jobs.items():
        frames, rows = ev.run_track(det, out, cfg, args.fps)
        console.print(f"{name}: {frames} frames, {rows} track rows -> {out}")
    console.print(
        f"tracker {cfg.type} ({len(jobs)} sequence(s), {time.perf_counter() - t0:.2f} s): "
        f"{cfg.model_dump(exclude={'type'})}"
    )
    return EXIT_OK


def _cmd_eval_mot(args: argparse.Namespace) -> int:
    from streamer.evaluation import commands as ev

    if args.gt is not None:
        if args.pred is None:
            raise ConfigError("eval mot: --gt needs --pred")
        gt = Path(args.gt)
        name = gt.parent.name if gt.name == "gt.txt" else gt.stem
        if name == "gt":  # MOTChallenge layout <seq>/gt/gt.txt
            name = gt.parent.parent.name
        pairs = {name: (gt, Path(args.pred))}
    else:
        if args.pred_dir is None:
            raise ConfigError("eval mot: --gt-dir needs --pred-dir")
        gts = ev.find_sequences(Path(args.gt_dir), "gt")
        pred_dir = Path(args.pred_dir)
        pairs = {
            n: (g, pred_dir / f"{n}.txt")
            for n, g in gts.items()
            if (pred_dir / f"{n}.txt").exists()
        }
        if not pairs:
            raise ConfigError(
                f"eval mot: no predictions in {pred_dir} for the sequences of {args.gt_dir} "
                f"({', '.join(gts)}); expected <seq>.txt"
            )
    results = ev.evaluate_pairs(pairs)
    print(ev.results_json(results) if args.json else ev.format_table(results))
    return EXIT_OK


def _cmd_eval_det(args: argparse.Namespace) -> int:
    from streamer.evaluation.det import eval_det_command

    try:
        table = eval_det_command([Path(p) for p in args.gt], Path(args.pred), args.format)
    except (OSError, ValueError) as e:
        raise StreamerError(str(e)) from None
    print(table)
    return EXIT_OK


def _cmd_detect(args: argparse.Namespace) -> int:
    import cv2
    import numpy as np
    from pydantic import ValidationError

    from streamer.config.loader import apply_presets, substitute, validation_message
    from streamer.config.schema import DetectStageConfig
    from streamer.evaluation.det import write_predictions
    from streamer.pipeline.build import make_frame_detector

    stage: dict[str, object] = {"type": "detect", "preset": args.preset}
    if args.model:
        stage["model"] = args.model
    if args.conf is not None:
        stage["conf_threshold"] = args.conf
    if args.threads is not None:
        stage["intra_op_threads"] = args.threads
    if args.parallel_runs is not None:
        stage["parallel_runs"] = args.parallel_runs
    if args.tile:
        stage["slicing"] = {
            "tile_wh": [args.tile, args.tile],
            "overlap_ratio": args.overlap,
            "full_frame": not args.no_full_frame,
        }
    raw = apply_presets(substitute({"stages": [stage]}), Path.cwd())
    try:
        cfg = DetectStageConfig.model_validate(raw["stages"][0])
    except ValidationError as e:
        raise ConfigError(validation_message(e, "streamer detect", ("stages", 0))) from None
    detector = make_frame_detector(cfg)
    console = _stderr()
    results = {}
    for name in args.images:
        read = cv2.imread(name)
        if read is None:
            raise StreamerError(f"{name}: not a readable image")
        image = np.asarray(read, dtype=np.uint8)
        t0 = time.perf_counter()
        results[Path(name).name] = dets = detector(image)
        ms = 1000 * (time.perf_counter() - t0)
        console.print(f"{name}: {len(dets)} detections in {ms:.0f} ms")
    n = write_predictions(Path(args.out), results, detector.class_names)
    console.print(f"wrote {n} predictions to {args.out}")
    return EXIT_OK


def port_number(text: str) -> int:
    """argparse type of a TCP port: an int in [0, 65535] (0: any free port).

    Raises:
        argparse.ArgumentTypeError: if ``text`` is not such a number.
    """
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number in [0, 65535], got {text!r}")
    return port


def _cmd_record(args: argparse.Namespace) -> int:
    from streamer.sources.recorder import record
    from streamer.sources.rtsp import Backoff

    if args.duration is not None and args.duration <= 0:
        raise ConfigError(f"record: --duration must be > 0, got {args.duration}")
    if args.frames is not None and args.frames < 1:
        raise ConfigError(f"record: --frames must be >= 1, got {args.frames}")
    options: dict[str, str] = {}
    for item in args.option or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"record: --option wants KEY=VALUE, got {item!r}")
        options[key] = value
    console = _stderr()
    t0 = time.monotonic()
    result = record(
        args.source,
        Path(args.out),
        duration_s=args.duration,
        max_frames=args.frames,
        transport=args.transport,
        reconnect=None if args.no_reconnect else Backoff(),
        input_format=args.format,
        input_options=options,
    )
    console.print(
        f"recorded {result.frames} frames ({result.duration_s:.2f} s of stream, "
        f"{result.gaps} gaps, {result.missing_frames} frames missing, {result.reconnects} "
        f"reconnects; ended: {result.ended}) in {time.monotonic() - t0:.1f} s -> {args.out}"
    )
    return EXIT_OK if result.frames else EXIT_FAILED


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamer", description="Real-time video analytics from a pipeline YAML."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a pipeline")
    run.add_argument(
        "pipeline",
        nargs="?",
        default=str(DEFAULT_PIPELINE),
        help="pipeline YAML (default: the bundled pipelines/pets09_people.yaml)",
    )
    run.add_argument("-o", "--output", help="run directory (default: runs/<name>-<timestamp>)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--max-frames", type=int, metavar="N", help="stop each source after N frames")
    run.add_argument(
        "--serve",
        type=port_number,
        metavar="PORT",
        help="serve /metrics, /healthz and the live preview (/) on PORT (0: any free port; "
        "host 127.0.0.1 unless the YAML's server: block says otherwise)",
    )
    run.set_defaults(func=_cmd_run)
    val = sub.add_parser("validate", help="check a pipeline and print its resolved config")
    val.add_argument("pipeline", help="pipeline YAML")
    val.add_argument(
        "--config-only",
        action="store_true",
        help="check the YAML only; do not open the sources or load the model",
    )
    val.set_defaults(func=_cmd_validate)

    trk = sub.add_parser("track", help="run a tracker over MOT detection files (no images)")
    src = trk.add_mutually_exclusive_group(required=True)
    src.add_argument("--det", help="MOT detection file (frame,-1,x,y,w,h,score,...)")
    src.add_argument("--det-dir", help="folder of sequences: <seq>/det/det.txt or <seq>/det.txt")
    trk.add_argument("--out", required=True, help="output MOT file (a folder with --det-dir)")
    trk.add_argument("--tracker", choices=TRACKER_TYPES, help="tracker type (default bytetrack)")
    trk.add_argument("--preset", help="tracker preset: a name in configs/trackers/ or a path")
    trk.add_argument("--fps", type=float, help="frame rate (default: seqinfo.ini, else 30)")
    trk.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a tracker parameter"
    )
    trk.set_defaults(func=_cmd_track)

    ev = sub.add_parser("eval", help="evaluate outputs against ground truth")
    ev_sub = ev.add_subparsers(dest="what", required=True)
    mot = ev_sub.add_parser("mot", help="HOTA, MOTA, IDF1 of MOT files (TrackEval)")
    gt = mot.add_mutually_exclusive_group(required=True)
    gt.add_argument("--gt", help="ground-truth MOT file")
    gt.add_argument("--gt-dir", help="folder of sequences: <seq>/gt/gt.txt or <seq>/gt.txt")
    mot.add_argument("--pred", help="predicted MOT file (with --gt)")
    mot.add_argument("--pred-dir", help="folder of <seq>.txt predictions (with --gt-dir)")
    mot.add_argument("--json", action="store_true", help="print JSON instead of a table")
    mot.set_defaults(func=_cmd_eval_mot)
    det = ev_sub.add_parser("det", help="AP50 and recall, overall and small objects (COCO eval)")
    det.add_argument("--gt", nargs="+", required=True, help="VisDrone txt, COCO json or DOTA txt")
    det.add_argument("--pred", required=True, help="COCO results json (streamer detect --out)")
    det.add_argument(
        "--format",
        default="auto",
        choices=["auto", "visdrone", "coco", "dota"],
        help="ground-truth format (default: from the file)",
    )
    det.set_defaults(func=_cmd_eval_det)

    dt = sub.add_parser("detect", help="detect on images, optionally sliced, into a COCO json")
    dt.add_argument("images", nargs="+", help="image files")
    dt.add_argument("--out", required=True, help="COCO results json to write")
    dt.add_argument("--preset", default="yolov8n_int8", help="detector preset (configs/detectors)")
    dt.add_argument("--model", help="ONNX model (overrides the preset's)")
    dt.add_argument("--conf", type=float, help="confidence threshold")
    dt.add_argument("--tile", type=int, help="slice into square tiles of this many pixels")
    dt.add_argument("--overlap", type=float, default=0.2, help="tile overlap ratio (0.2)")
    dt.add_argument("--no-full-frame", action="store_true", help="tiles only, no full pass")
    dt.add_argument("--threads", type=int, help="ONNX Runtime threads per model run")
    dt.add_argument(
        "--parallel-runs",
        type=int,
        metavar="N",
        help="fixed-batch model: run N tiles at once (e.g. --parallel-runs 2 --threads 1)",
    )
    dt.set_defaults(func=_cmd_detect)

    rec = sub.add_parser(
        "record", help="record an RTSP stream, a capture device or a file into a clip folder"
    )
    rec.add_argument("source", help="rtsp:// URL, /dev/videoN, or a video file")
    rec.add_argument("--out", required=True, help="clip folder to create")
    rec.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    rec.add_argument("--frames", type=int, metavar="N", help="stop after N frames")
    rec.add_argument("--transport", choices=["tcp", "udp"], default="tcp", help="RTSP transport")
    rec.add_argument("--no-reconnect", action="store_true", help="a lost stream ends it")
    rec.add_argument("--format", help="FFmpeg input format of a device (default v4l2)")
    rec.add_argument("--option", action="append", metavar="KEY=VALUE", help="FFmpeg input option")
    rec.set_defaults(func=_cmd_record)

    from streamer.cli_engine import add_engine_parser

    add_engine_parser(sub)

    from streamer.fleet.commands import add_fleet_parser

    add_fleet_parser(sub)
    return parser


def _sigterm_to_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``streamer`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm_to_interrupt)
    try:
        return int(args.func(args))
    except ConfigError as e:
        _stderr().print(f"[red]error[/red]: {e}", soft_wrap=True)
        return EXIT_CONFIG
    except StreamerError as e:
        _stderr().print(f"[red]error[/red]: {e}", soft_wrap=True)
        return EXIT_FAILED
    except KeyboardInterrupt:
        _stderr().print("interrupted")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
