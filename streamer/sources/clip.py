"""Recorded clips: the on-disk format written by ``streamer record`` and read by replay.

A clip is a folder::

    clip/
      clip.json          manifest (written at start, rewritten when the recording ends)
      frames.jsonl       one row per recorded frame, plus a row per gap, in order
      segment-000.mkv    the encoded stream of the first connection, remuxed (no re-encode)
      segment-001.mkv    the next connection after a reconnect, and so on

Container: Matroska. A recording that is killed (power loss, SIGKILL) must stay
readable. Plain MP4 writes its index (``moov``) only when it is closed, so a killed
MP4 is unreadable; Matroska writes its header first and then self-contained clusters,
so FFmpeg reads a killed file up to its last complete cluster. Clusters are closed
every second (``cluster_time_limit``), so a kill loses at most about a second of
video. MPEG-TS survives a kill too, but it cannot carry every codec a camera gives
(raw video, MJPEG); Matroska can. Matroska stores timestamps in milliseconds: the
exact times live in ``frames.jsonl``, never in the container.

Segments: each connection of a live source is its own segment file, starting at its
first keyframe (packets before it cannot be decoded and are not kept). A reconnect
therefore never splices two streams whose timestamps restart or whose parameters
(size, codec) changed, and each segment file plays on its own. The clip stays one
timeline: ``frames.jsonl`` numbers frames across segments and marks the gap between
them.

``frames.jsonl`` rows (integers in nanoseconds; one JSON object per line):

* frame: ``{"kind": "frame", "seq": 41, "segment": 0, "pts_ns": 4100000000,
  "arrival_ns": 4102345678, "wall_ns": 1714564800123456789}``. ``seq`` counts frames
  that should have arrived (it jumps over a gap); ``pts_ns`` is the frame's time on
  the source's timeline from the first frame; ``arrival_ns`` is when the frame was
  read, on the monotonic clock, relative to the first frame (``arrival_clock:
  "pts"`` in the manifest: a file, read as fast as possible, where arrival is the
  presentation time); ``wall_ns`` is ``time.time_ns()`` at capture.
* gap: ``{"kind": "gap", "seq": 57, "missing_frames": 75, "reason": "..."}``: the
  stream was lost after frame 56; frames 57 to 131 never arrived; the next frame
  row has ``seq`` 132 and belongs to the next segment.

Frame rows of a segment are in decode-output order and pair one to one, in order,
with the frames that decoding the segment file gives (the writer only rows frames
decoded from packets it muxed). A killed recording may hold rows for frames whose
cluster was lost, or frames without a row: readers pair what both have.

Manifest (``clip.json``): ``format`` (``"streamer.clip"``), ``version`` (1),
``source_uri`` (credentials redacted), ``source_kind`` (``rtsp``, ``device``,
``file``), ``codec``, ``width_px``, ``height_px``, ``fps`` (nominal), ``container``,
``arrival_clock``, ``segments``, ``frame_count``, ``gaps``, ``missing_frames``,
``duration_s``, ``started_utc``, ``complete`` (false until the recording was closed).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO, Any, Literal

import av
import av.error

from streamer.errors import SourceError

log = logging.getLogger("streamer.sources.clip")

CLIP_FORMAT = "streamer.clip"
CLIP_VERSION = 1
MANIFEST_NAME = "clip.json"
ROWS_NAME = "frames.jsonl"
CONTAINER = "matroska"
SEGMENT_SUFFIX = ".mkv"
CLUSTER_TIME_LIMIT_MS = 1000

ArrivalClock = Literal["monotonic", "pts"]


def segment_name(index: int) -> str:
    """File name of segment ``index`` (``segment-000.mkv``)."""
    return f"segment-{index:03d}{SEGMENT_SUFFIX}"


@dataclass(frozen=True)
class FrameRow:
    """One recorded frame (see the module docstring for the units)."""

    seq: int
    segment: int
    pts_ns: int
    arrival_ns: int
    wall_ns: int


@dataclass(frozen=True)
class GapRow:
    """Frames ``seq`` .. ``seq + missing_frames - 1`` never arrived (stream lost)."""

    seq: int
    missing_frames: int
    reason: str = ""


Row = FrameRow | GapRow


@dataclass(frozen=True)
class Clip:
    """A clip folder read back: its manifest and its rows (see :func:`load_clip`).

    Attributes:
        path: The clip folder.
        manifest: ``clip.json`` as a dict.
        rows: Frame and gap rows in order.
        segments: Segment files, by index.
    """

    path: Path
    manifest: dict[str, Any]
    rows: list[Row]
    segments: list[Path]

    @property
    def fps(self) -> float:
        return float(self.manifest.get("fps") or 0.0)

    @property
    def frame_rows(self) -> list[FrameRow]:
        return [r for r in self.rows if isinstance(r, FrameRow)]


def is_clip(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a clip folder (holds a ``clip.json``)."""
    return (Path(path) / MANIFEST_NAME).is_file()


def _parse_row(obj: Any) -> Row:
    kind = obj.get("kind")
    if kind == "frame":
        return FrameRow(
            int(obj["seq"]),
            int(obj["segment"]),
            int(obj["pts_ns"]),
            int(obj["arrival_ns"]),
            int(obj.get("wall_ns") or 0),
        )
    if kind == "gap":
        return GapRow(int(obj["seq"]), int(obj["missing_frames"]), str(obj.get("reason", "")))
    raise ValueError(f"unknown row kind {kind!r}")


def load_clip(path: str | os.PathLike[str]) -> Clip:
    """Read a clip folder's manifest and rows.

    A last row cut short by a kill is ignored; any other bad row is an error.

    Raises:
        SourceError: no manifest, a format or version this code does not read, a
            malformed row (names the line), or rows naming a segment file that is
            missing.
    """
    folder = Path(path)
    where = f"clip {folder}"
    try:
        manifest = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SourceError(f"{where}: no {MANIFEST_NAME} (not a recorded clip)") from None
    except (OSError, ValueError) as e:
        raise SourceError(f"{where}: unreadable {MANIFEST_NAME}: {e}") from None
    if manifest.get("format") != CLIP_FORMAT:
        raise SourceError(f"{where}: format {manifest.get('format')!r} is not {CLIP_FORMAT!r}")
    if manifest.get("version") != CLIP_VERSION:
        raise SourceError(
            f"{where}: clip format version {manifest.get('version')!r}; this streamer reads "
            f"version {CLIP_VERSION}"
        )
    rows: list[Row] = []
    try:
        lines = (folder / ROWS_NAME).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        lines = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rows.append(_parse_row(json.loads(line)))
        except (ValueError, KeyError, TypeError) as e:
            if i == len(lines) - 1:
                log.warning("%s: ignoring a last row cut short (%s)", where, e)
                break
            raise SourceError(f"{where}: {ROWS_NAME} line {i + 1}: bad row ({e})") from None
    segments = [folder / str(name) for name in manifest.get("segments", [])]
    used = {r.segment for r in rows if isinstance(r, FrameRow)}
    for index in sorted(used):
        if index >= len(segments) or not segments[index].is_file():
            raise SourceError(f"{where}: frame rows name segment {index}, which is missing")
    return Clip(folder, manifest, rows, segments)


class ClipWriter:
    """Writes a clip folder: segment files, ``frames.jsonl`` and ``clip.json``.

    The caller demuxes the source, hands every packet to :meth:`accept` (which muxes a
    copy and says whether to decode it), decodes the accepted packets and reports each
    decoded frame with :meth:`add_frame`, and reports a lost stream with
    :meth:`add_gap` before the first frame of the next connection.

    Rows are flushed line by line and the manifest is rewritten atomically, so a
    killed recording leaves a readable clip (see the module docstring).

    Thread-safety: use from one thread.

    Args:
        folder: Clip folder; created. It must not already hold a clip.
        source_uri: Where the stream comes from (redacted by the caller).
        source_kind: ``rtsp``, ``device`` or ``file``.
        arrival_clock: ``monotonic`` (live sources) or ``pts`` (files).

    Raises:
        SourceError: the folder already holds a clip or cannot be written.
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        *,
        source_uri: str,
        source_kind: str,
        arrival_clock: ArrivalClock = "monotonic",
    ) -> None:
        self.folder = Path(folder)
        self._where = f"recording {self.folder}"
        if is_clip(self.folder):
            raise SourceError(f"{self._where}: the folder already holds a clip")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._rows: IO[str] | None = open(  # noqa: SIM115 - closed in close()
                self.folder / ROWS_NAME, "w", encoding="utf-8", buffering=1
            )
        except OSError as e:
            raise SourceError(f"{self._where}: cannot write: {e}") from None
        self.manifest: dict[str, Any] = {
            "format": CLIP_FORMAT,
            "version": CLIP_VERSION,
            "source_uri": source_uri,
            "source_kind": source_kind,
            "codec": None,
            "width_px": None,
            "height_px": None,
            "fps": None,
            "container": CONTAINER,
            "arrival_clock": arrival_clock,
            "segments": [],
            "frame_count": 0,
            "gaps": 0,
            "missing_frames": 0,
            "duration_s": 0.0,
            "started_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds"),
            "complete": False,
        }
        self._template: av.video.stream.VideoStream | None = None
        self._out: av.container.OutputContainer | None = None
        self._out_stream: Any = None
        self._ts_offset = 0
        self._last_dts: int | None = None
        self._dts_step = 1
        self._segment = -1
        self._first_arrival_ns: int | None = None
        self._last_arrival_rel_ns = 0
        self._closed = False
        self._write_manifest()

    @property
    def frame_count(self) -> int:
        """Frame rows written so far."""
        return int(self.manifest["frame_count"])

    @property
    def recording(self) -> bool:
        """True once the current segment has started (its first keyframe was muxed)."""
        return self._out is not None

    @property
    def segment(self) -> int:
        """Index of the segment being written (-1 before the first keyframe)."""
        return self._segment

    def _write_manifest(self) -> None:
        tmp = self.folder / (MANIFEST_NAME + ".tmp")
        try:
            tmp.write_text(json.dumps(self.manifest, indent=2) + "\n", encoding="utf-8")
            os.replace(tmp, self.folder / MANIFEST_NAME)
        except OSError as e:
            raise SourceError(f"{self._where}: cannot write {MANIFEST_NAME}: {e}") from None

    def start_segment(self, stream: av.video.stream.VideoStream, fps: float) -> None:
        """A new connection: its packets go to a new segment from its first keyframe.

        Args:
            stream: The input video stream (the template of the output stream).
            fps: The stream's nominal frame rate.
        """
        self.end_segment()
        self._template = stream
        ctx = stream.codec_context
        if self.manifest["codec"] is None:
            self.manifest.update(
                codec=ctx.name, width_px=int(ctx.width), height_px=int(ctx.height), fps=fps
            )

    def _open_segment(self) -> None:
        assert self._template is not None
        index = len(self.manifest["segments"])
        name = segment_name(index)
        try:
            out = av.open(
                str(self.folder / name),
                "w",
                format=CONTAINER,
                options={"cluster_time_limit": str(CLUSTER_TIME_LIMIT_MS), "flush_packets": "1"},
            )
            self._out_stream = out.add_stream_from_template(self._template)
        except (av.error.FFmpegError, OSError, ValueError) as e:
            raise SourceError(f"{self._where}: cannot create {name}: {e}") from None
        self._out = out
        self._segment = index
        self._last_dts = None
        tb = self._template.time_base or Fraction(1, 1000)
        self._dts_step = max(1, round(Fraction(1, 1000) / tb))  # one millisecond
        self.manifest["segments"].append(name)
        self._write_manifest()

    def accept(self, packet: av.Packet) -> bool:
        """Mux a copy of ``packet`` into the current segment.

        Packets before the segment's first keyframe are not kept (they cannot be
        decoded on replay); the caller must not decode them either, so that the
        frames it rows are exactly those a replay decodes.

        Returns:
            True if the packet was recorded (decode it), False if it was skipped.

        Raises:
            SourceError: the segment cannot be written (disk full, ...).
        """
        if self._template is None or packet.size == 0:
            return False
        if self._out is None:
            if not packet.is_keyframe:
                return False
            self._open_segment()
        # ``mux`` rebases the packet's timestamps to the output in place: keep the
        # caller's packet as it was, for its decoder.
        stream, pts, dts, time_base = packet.stream, packet.pts, packet.dts, packet.time_base
        self._fix_timestamps(packet)
        try:
            packet.stream = self._out_stream
            assert self._out is not None
            self._out.mux(packet)
        except (av.error.FFmpegError, OSError) as e:
            raise SourceError(f"{self._where}: cannot write a packet: {e}") from None
        finally:
            packet.stream = stream
            packet.time_base = time_base
            packet.pts, packet.dts = pts, dts
        return True

    def _fix_timestamps(self, packet: av.Packet) -> None:
        """Make timestamps non-negative and strictly increasing from 0 per segment.

        Live streams may start with a packet without timestamps and have timestamps
        that start anywhere; the muxer rejects the first and shifts the second.
        """
        pts, dts = packet.pts, packet.dts
        if dts is None:
            dts = pts
        if dts is None:
            dts = 0 if self._last_dts is None else self._last_dts + self._dts_step
        if self._last_dts is None:
            self._ts_offset = dts
            dts = 0
        else:
            dts -= self._ts_offset
            if dts <= self._last_dts:
                dts = self._last_dts + self._dts_step
        pts = dts if pts is None else max(pts - self._ts_offset, dts)
        packet.dts, packet.pts = dts, pts
        self._last_dts = dts

    def add_frame(self, seq: int, pts_ns: int, arrival_ns: int, wall_ns: int) -> None:
        """Row one decoded frame of the current segment.

        Args:
            seq: Frame number on the source's timeline (gaps counted).
            pts_ns: Time on the source's timeline, ns.
            arrival_ns: ``time.monotonic_ns()`` when it was read (absolute; stored
                relative to the first frame), or its presentation time for files.
            wall_ns: ``time.time_ns()`` at capture (0: unknown).
        """
        if self._first_arrival_ns is None:
            self._first_arrival_ns = arrival_ns
        rel = arrival_ns - self._first_arrival_ns
        self._last_arrival_rel_ns = rel
        self._row(
            {
                "kind": "frame",
                "seq": seq,
                "segment": self._segment,
                "pts_ns": pts_ns,
                "arrival_ns": rel,
                "wall_ns": wall_ns,
            }
        )
        self.manifest["frame_count"] += 1

    def add_gap(self, seq: int, missing_frames: int, reason: str) -> None:
        """Row a gap: ``missing_frames`` frames from ``seq`` on never arrived."""
        self._row({"kind": "gap", "seq": seq, "missing_frames": missing_frames, "reason": reason})
        self.manifest["gaps"] += 1
        self.manifest["missing_frames"] += missing_frames

    def _row(self, row: dict[str, Any]) -> None:
        if self._rows is None:
            raise SourceError(f"{self._where}: row after close")
        try:
            self._rows.write(json.dumps(row, separators=(",", ":")) + "\n")
        except OSError as e:
            raise SourceError(f"{self._where}: cannot write {ROWS_NAME}: {e}") from None

    def end_segment(self) -> None:
        """Close the current segment file (the connection ended)."""
        out, self._out = self._out, None
        self._template = None
        if out is not None:
            try:
                out.close()
            except (av.error.FFmpegError, OSError) as e:
                log.warning("%s: closing %s: %s", self._where, segment_name(self._segment), e)

    def close(self) -> None:
        """Close the segment and the rows, and mark the manifest complete; idempotent."""
        if self._closed:
            return
        self._closed = True
        self.end_segment()
        rows, self._rows = self._rows, None
        if rows is not None:
            with contextlib.suppress(OSError):
                rows.close()
        self.manifest["duration_s"] = round(self._last_arrival_rel_ns / 1e9, 6)
        self.manifest["complete"] = True
        self._write_manifest()


__all__ = [
    "CLIP_FORMAT",
    "CLIP_VERSION",
    "Clip",
    "ClipWriter",
    "FrameRow",
    "GapRow",
    "Row",
    "is_clip",
    "load_clip",
    "segment_name",
]
