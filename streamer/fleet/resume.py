"""Resuming a camera after its pipeline process died: progress files, appending
record sinks and the sink-stage wrapper that skips what was already written.

Semantics (README, "Fleets: resume after a restart"):

* **Replayable sources** (``video_file``; ``replay`` on the virtual clock) give the
  same frames with the same ``seq`` on every run, and the pipeline is deterministic.
  Each record sink (``jsonl``, ``mot``, ``zeromq``, ``mqtt``) keeps a progress file,
  ``.fleet/<stage>.progress``: the last ``seq`` it wrote, overwritten in place after
  every frame (one ``pwrite`` of 21 bytes, after the record reached the OS). A
  restarted attempt decodes, detects and tracks *every* frame again, so trackers
  resume with exactly the state (and track ids) of an uninterrupted run, but a record
  sink skips the frames below its own resume point ``K = last seq + 1``. JSON-lines
  and MOT files are first cut back to their records with ``seq < K`` (dropping a
  record written after the last progress update, or half a line) and then appended
  to, one flushed record at a time; the annotated video is rewritten from frame 0
  (MP4 fragments cannot be appended to). The files end byte-identical to an
  uninterrupted run (up to the wall-clock fields), with nothing lost and nothing
  duplicated. A message sink may publish once more the one frame it sent between its
  last progress update and the crash, and loses what ZeroMQ or paho still held in
  memory when the process died (not yet transmitted / not yet acknowledged).
* **Live sources** (``rtsp``, ``camera``, ``gstreamer``, ``replay`` in real time):
  the stream cannot be rewound, ``seq`` restarts at 0 and trackers start afresh, so a
  restart is a new stream: the previous attempt's files are moved to
  ``attempt-<n>/`` inside the camera's folder and the new attempt writes fresh files;
  messages go on to the same topics (a new ``stream_start``, ``tags.attempt`` one
  higher).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from streamer.errors import SinkError
from streamer.pipeline.stages import SinkStage
from streamer.sinks.base import resolve_path
from streamer.sinks.jsonl import JsonlTracksSink, packet_to_record
from streamer.sinks.mot import MotTracksSink, mot_rows
from streamer.types import Packet, StreamInfo

STATE_DIR = ".fleet"
"""Folder inside a camera's run directory holding the progress files."""

RECORD_SINK_TYPES = frozenset({"jsonl", "mot", "zeromq", "mqtt"})
"""Sink stage types that skip frames already written when a camera resumes."""

_PROGRESS_WIDTH = 20
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode

RecordKind = Literal["jsonl", "mot"]


# -- progress files ------------------------------------------------------------------
class ProgressFile:
    """The last ``seq`` a sink wrote, kept in a fixed-width file overwritten in place.

    Each update is one ``pwrite`` of 21 bytes at offset 0: it reaches the OS whole or
    not at all when the process is killed, so a reader sees an old or a new value,
    never a mixture. (Machine crashes are out of scope: there is no ``fsync``.)

    Args:
        path: The file (created with its folder).

    Thread-safety: one writer thread.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        self.last_seq: int | None = None

    def record(self, seq: int) -> None:
        """Store ``seq`` as the last one written."""
        if self._fd is None:
            raise SinkError(f"progress file '{self.path}' is closed")
        os.pwrite(self._fd, b"%0*d\n" % (_PROGRESS_WIDTH, seq), 0)
        self.last_seq = seq

    def close(self) -> None:
        """Close; idempotent."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    @staticmethod
    def read(path: Path) -> int | None:
        """The stored ``seq``, or None when the file is absent, empty or unreadable."""
        try:
            text = path.read_bytes()[: _PROGRESS_WIDTH + 1]
        except OSError:
            return None
        if len(text) != _PROGRESS_WIDTH + 1 or not text[:-1].isdigit():
            return None
        return int(text[:-1])


def progress_path(run_dir: Path, stage_name: str) -> Path:
    """The progress file of sink stage ``stage_name`` in a camera's run directory."""
    return run_dir / STATE_DIR / f"{stage_name}.progress"


def resume_points(run_dir: Path, stage_names: Sequence[str]) -> dict[str, int]:
    """Resume point ``K`` (first ``seq`` not yet written) of each record sink stage.

    Returns:
        ``{stage name: K}``; 0 for a stage without a readable progress file.
    """
    out = {}
    for name in stage_names:
        last = ProgressFile.read(progress_path(run_dir, name))
        out[name] = 0 if last is None else last + 1
    return out


# -- preparing a camera folder for an attempt ------------------------------------------
def prepare_run_dir(run_dir: Path, attempt: int, live: bool) -> Path | None:
    """Make a camera's run directory ready for ``attempt`` (0-based).

    Attempt 0 starts clean: old progress files are removed (outputs are truncated by
    the sinks). A later attempt of a live camera moves everything the previous
    attempt wrote into ``attempt-<attempt - 1>/``; a later attempt of a replayable
    camera keeps files and progress (it resumes them).

    Returns:
        The folder the previous attempt's files were moved to, or None.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    state = run_dir / STATE_DIR
    if attempt == 0 or live:
        shutil.rmtree(state, ignore_errors=True)
    if attempt == 0 or not live:
        return None
    archive = run_dir / f"attempt-{attempt - 1}"
    archive.mkdir(exist_ok=True)
    for entry in sorted(run_dir.iterdir()):
        if entry.name == STATE_DIR or entry.name.startswith("attempt-"):
            continue
        entry.rename(archive / entry.name)
    return archive


# -- record files that can be cut back and appended to ----------------------------------
def truncate_records(path: Path, kind: RecordKind, keep_below_seq: int) -> int:
    """Cut a JSON-lines or MOT file back to its complete records with ``seq < K``.

    Records must be in ``seq`` order (one source per file, as in a fleet). Reading
    stops at the first incomplete line (a write cut by the crash), unparsable line
    or record at or beyond ``keep_below_seq``; the file is truncated there.

    Args:
        path: The file (a missing file counts as empty).
        kind: ``jsonl`` (key ``seq``) or ``mot`` (first column, ``seq + 1``).
        keep_below_seq: ``K``: records of frames ``seq >= K`` are removed.

    Returns:
        The number of frames kept: distinct ``seq`` values for ``mot`` (frames without
        tracks write no row), records for ``jsonl``.
    """
    if not path.exists():
        return 0
    keep_bytes = 0
    frames: set[int] = set()
    with open(path, "rb") as fh:
        for line in fh:
            if not line.endswith(b"\n"):
                break
            try:
                if kind == "jsonl":
                    seq = int(json.loads(line)["seq"])
                else:
                    seq = int(line.split(b",", 1)[0]) - 1
            except (ValueError, KeyError, TypeError):
                break
            if seq >= keep_below_seq:
                break
            frames.add(seq)
            keep_bytes += len(line)
    with open(path, "r+b") as fh:
        fh.truncate(keep_bytes)
    return len(frames)


class AppendingRecordSink:
    """A JSON-lines or MOT sink that resumes its file instead of truncating it.

    Writes the same records as :class:`~streamer.sinks.jsonl.JsonlTracksSink` and
    :class:`~streamer.sinks.mot.MotTracksSink` (same functions, same encoding), but at
    ``open`` it cuts the file back to the records with ``seq < keep_below_seq`` and
    appends after them, and it flushes every record to the OS (so a progress file
    written after ``write`` never runs ahead of the file).

    Args:
        kind: ``jsonl`` or ``mot``.
        path_template: Output path; ``{source_id}`` is replaced by the source id.
        keep_below_seq: Resume point ``K``; 0 starts the file afresh.

    Raises:
        ValueError: an unknown ``kind`` or a negative ``keep_below_seq``.

    Thread-safety: one writer thread calls ``open``/``write``; ``close`` after writes
    stopped.
    """

    def __init__(self, kind: RecordKind, path_template: str | Path, keep_below_seq: int) -> None:
        if kind not in ("jsonl", "mot"):
            raise ValueError(f"kind: must be 'jsonl' or 'mot', got {kind!r}")
        if keep_below_seq < 0:
            raise ValueError(f"keep_below_seq: must be >= 0, got {keep_below_seq}")
        self.kind: RecordKind = kind
        self.path_template = str(path_template)
        self.keep_below_seq = keep_below_seq
        self.kept_frames: dict[str, int] = {}
        self._what = f"{kind} sink"
        self._files: dict[str, IO[str]] = {}
        self._paths: dict[str, Path] = {}
        self._class_names: dict[str, tuple[str, ...]] = {}
        self._closed = False

    def paths(self) -> dict[str, Path]:
        """The output file of every opened source, by source id."""
        return dict(self._paths)

    def open(self, info: StreamInfo, class_names: Sequence[str]) -> None:
        """Cut back and open (for appending) the file of ``info.source_id``.

        Raises:
            SinkError: the sink is closed, two sources would share a file, or the
                file cannot be opened.
        """
        sid = info.source_id
        if self._closed:
            raise SinkError(f"{self._what}: open('{sid}') after close")
        self._class_names[sid] = tuple(class_names)
        if sid in self._files:
            return
        path = resolve_path(self.path_template, sid)
        if path in self._paths.values():
            raise SinkError(
                f"{self._what}: two sources would share '{path}'; put {{source_id}} in the path"
            )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.kept_frames[sid] = truncate_records(path, self.kind, self.keep_below_seq)
            self._files[sid] = open(path, "a", encoding="utf-8", newline="\n")  # noqa: SIM115
        except OSError as exc:
            raise SinkError(f"{self._what}: cannot open '{path}': {exc}") from exc
        self._paths[sid] = path

    def write(self, packet: Packet) -> None:
        """Append the record(s) of ``packet`` and flush them to the OS.

        Raises:
            SinkError: the source was not opened, the sink is closed, or the write fails.
        """
        fh = self._files.get(packet.source_id)
        if fh is None or self._closed:
            state = "closed" if self._closed else "not opened"
            raise SinkError(
                f"{self._what}: write for source '{packet.source_id}' (frame {packet.seq}): "
                f"sink {state}"
            )
        if self.kind == "jsonl":
            text = _ENCODE(packet_to_record(packet, self._class_names[packet.source_id])) + "\n"
        elif packet.tracks is not None:
            t = packet.tracks
            text = mot_rows(packet.seq + 1, t.xyxy, t.confidence, t.track_id)
        elif packet.detections is not None:
            d = packet.detections
            text = mot_rows(packet.seq + 1, d.xyxy, d.confidence, None)
        else:
            text = ""
        try:
            if text:
                fh.write(text)
                fh.flush()
        except OSError as exc:
            path = self._paths[packet.source_id]
            raise SinkError(f"{self._what}: cannot write '{path}': {exc}") from exc

    def close(self) -> None:
        """Close every file; idempotent.

        Raises:
            SinkError: a file could not be closed (the others still are).
        """
        if self._closed:
            return
        self._closed = True
        failures = []
        for sid, fh in self._files.items():
            try:
                fh.close()
            except OSError as exc:
                failures.append(f"{self._paths[sid]}: {exc}")
        if failures:
            raise SinkError(f"{self._what}: close failed: " + "; ".join(failures))


# -- the wrapper stage -----------------------------------------------------------------
class FleetSinkStage(SinkStage):
    """A sink stage that skips frames below its resume point and records its progress.

    Every packet still goes on to the next stage (later sinks decide for themselves).

    Args:
        inner: The sink stage built from the pipeline (its sink, class names, name).
        skip_below_seq: Frames with ``seq`` below this are not written (0: none).
        progress: Where to record the last ``seq`` written, or None (live sources).
    """

    def __init__(
        self, inner: SinkStage, skip_below_seq: int = 0, progress: ProgressFile | None = None
    ) -> None:
        super().__init__(inner.sink, inner.class_names, inner.name)
        self.max_batch = inner.max_batch
        self.max_wait_ms = inner.max_wait_ms
        self.skip_below_seq = skip_below_seq
        self.progress = progress
        self.skipped = 0

    def process(self, packets: list[Packet]) -> list[Packet]:
        for p in packets:
            if p.seq < self.skip_below_seq:
                self.skipped += 1
                continue
            self.sink.write(p)
            if self.progress is not None:
                self.progress.record(p.seq)
        return packets

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self.progress is not None:
                self.progress.close()


@dataclass
class ResumePlan:
    """What an attempt of a camera resumes from.

    Attributes:
        attempt: 0-based attempt number.
        live: The camera's source is live (no resume by ``seq``).
        points: Resume point ``K`` of each record sink stage, by stage name.
        archived: Folder the previous attempt's files were moved to (live), or None.
    """

    attempt: int
    live: bool
    points: dict[str, int] = field(default_factory=dict)
    archived: Path | None = None

    @property
    def resume_seq(self) -> int:
        """Frames before this ``seq`` were written by every record sink (0: none)."""
        return min(self.points.values()) if self.points else 0


def plan_resume(
    run_dir: Path, attempt: int, live: bool, stage_types: Mapping[str, str]
) -> ResumePlan:
    """Prepare the run directory of an attempt and read the record sinks' resume points.

    Args:
        run_dir: The camera's run directory.
        attempt: 0-based attempt number.
        live: The camera's source is live.
        stage_types: ``{stage name: stage type}`` of the pipeline.
    """
    archived = prepare_run_dir(run_dir, attempt, live)
    records = [n for n, t in stage_types.items() if t in RECORD_SINK_TYPES]
    points = {n: 0 for n in records}
    if attempt > 0 and not live:
        points = resume_points(run_dir, records)
    return ResumePlan(attempt=attempt, live=live, points=points, archived=archived)


def install_fleet_sinks(
    stages: list[Any], plan: ResumePlan, run_dir: Path, tags: Mapping[str, Any]
) -> None:
    """Swap a built pipeline's sink stages for fleet ones, in place, before it runs.

    JSON-lines and MOT sinks become :class:`AppendingRecordSink` (cut back to the
    resume point); every record sink stage skips below its resume point and (for a
    replayable source) records its progress; message sinks get ``tags``.

    Args:
        stages: ``Pipeline.stages`` (modified in place).
        plan: The attempt's resume plan.
        run_dir: The camera's run directory.
        tags: Tags for message sinks (camera, node, attempt, ...).
    """
    for i, stage in enumerate(stages):
        if not isinstance(stage, SinkStage):
            continue
        if stage.name not in plan.points:
            continue  # video (rewritten from frame 0), preview
        k = plan.points[stage.name]
        sink = stage.sink
        if isinstance(sink, JsonlTracksSink):
            stage.sink = AppendingRecordSink("jsonl", sink.path_template, k)
        elif isinstance(sink, MotTracksSink):
            stage.sink = AppendingRecordSink("mot", sink.path_template, k)
        if hasattr(stage.sink, "tags"):
            setattr(stage.sink, "tags", dict(tags))  # noqa: B010 (not every sink has tags)
        progress = None if plan.live else ProgressFile(progress_path(run_dir, stage.name))
        stages[i] = FleetSinkStage(stage, skip_below_seq=k, progress=progress)


__all__ = [
    "RECORD_SINK_TYPES",
    "STATE_DIR",
    "AppendingRecordSink",
    "FleetSinkStage",
    "ProgressFile",
    "ResumePlan",
    "install_fleet_sinks",
    "plan_resume",
    "prepare_run_dir",
    "progress_path",
    "resume_points",
    "truncate_records",
]
