"""Annotated video sink: boxes, labels and motion trails drawn with supervision, H.264 MP4 out.

Encoding uses PyAV's bundled FFmpeg with libx264 (the pip OpenCV wheels cannot
encode H.264), ``yuv420p`` pixels and even frame sizes, so browsers play the file.

Crash safety: the MP4 is *fragmented* (``movflags=frag_keyframe+empty_moov+
default_base_moof``): the header is written up front and every keyframe (one per
``keyframe_interval_s``) closes a self-contained ``moof``+``mdat`` fragment that is
handed to the OS at once (``flush_packets=1``). If the process is killed
(SIGKILL, OOM, power-cycle of the container), everything up to the last complete
fragment still decodes; what is lost is at most the open fragment plus the
frames inside the encoder (``keyframe_interval_s`` of video plus x264's delay of
about ``rc_lookahead + threads - 1`` frames: 10 + threads - 1 for ``veryfast``). On a
clean stop or Ctrl-C (``close()`` in a ``finally``) nothing is lost.

Timing: the stream's time base is ``1 / fps`` (``StreamInfo.fps``) and a frame's
presentation time is ``seq - first_seq`` of its source, so frames dropped upstream
(live sources with ``drop_oldest``) keep their place in time and the file's
duration is ``(last_seq - first_seq + 1) / fps``. B-frames are disabled (``bf=0``):
with an ``empty_moov`` there is no edit list, and B-frames would shift the first
frame to 2/fps; it also shortens the encoder delay, at about +5 % file size.

Analytics: given the line/zone geometry (``analytics=``, the same
:class:`~streamer.analytics.zones.AnalyticsSpec` the analytics stage gets), a packet
with ``packet.analytics`` has its lines drawn with ``"name in N out M"`` and its
zones with ``"name: count"``, under the boxes. The geometry is static
configuration, so it is handed to the sink once rather than repeated in every
packet (and every JSON-lines record); the packet carries only the numbers.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, cast

import av
import cv2
import numpy as np

from streamer.errors import SinkError
from streamer.sinks.annotate import DrawState, FrameAnnotator
from streamer.sinks.base import close_all, prepare_output_file, resolve_path
from streamer.types import ImageBGR, Packet, StreamInfo

if TYPE_CHECKING:  # a runtime import would be circular (analytics uses our adapter)
    from streamer.analytics.zones import AnalyticsSpecs

_log = logging.getLogger(__name__)
_NAME = "video sink"

X264_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
)
MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof"


def even_size(width_px: int, height_px: int) -> tuple[int, int]:
    """Return ``(width, height)`` rounded up to even numbers (yuv420p needs them)."""
    return width_px + (width_px & 1), height_px + (height_px & 1)


def pad_to_even(image: ImageBGR) -> ImageBGR:
    """Return a writable copy of ``image`` padded with black on the right/bottom to even size.

    Args:
        image: ``(H, W, 3) uint8`` BGR.

    Returns:
        ``(H + H % 2, W + W % 2, 3) uint8`` BGR, always a new array (safe to draw on).
    """
    h, w = image.shape[:2]
    pad_h, pad_w = h & 1, w & 1
    if pad_h or pad_w:
        padded = cv2.copyMakeBorder(image, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=0)
        return cast(ImageBGR, padded)
    return np.array(image, dtype=np.uint8, order="C", copy=True)


def rate_of(fps: float) -> Fraction:
    """Return ``fps`` as a fraction (29.97002997 → 30000/1001, 10.0 → 10).

    Raises:
        SinkError: if ``fps`` is not a finite number in (0, 1000].
    """
    if not (math.isfinite(fps) and 0.0 < fps <= 1000.0):
        raise SinkError(f"{_NAME}: stream fps must be in (0, 1000], got {fps}")
    return Fraction(fps).limit_denominator(1001)


@dataclass
class _VideoOutput:
    """Per-source state (one file, one encoder, one drawing state with its trail annotator)."""

    source_id: str
    path: Path
    container: av.container.OutputContainer
    stream: av.video.stream.VideoStream
    time_base: Fraction
    draw: DrawState  # class names, trail annotator, line/zone geometry, last seq drawn
    size_wh: tuple[int, int] | None = None  # frame size (before padding) fixed at first write
    first_seq: int | None = None
    last_pts: int = -1
    frames: int = 0
    warned_resize: bool = False
    closed: bool = False

    def close(self) -> None:
        """Flush the encoder and finish the file; idempotent. Removes the file if empty."""
        if self.closed:
            return
        self.closed = True
        try:
            if self.frames > 0:
                for pkt in self.stream.encode(None):
                    self.container.mux(pkt)
        finally:
            self.container.close()
            if self.frames == 0:
                self.path.unlink(missing_ok=True)


class AnnotatedVideoSink:
    """Draw tracks (or detections) on each frame and encode an H.264 MP4 per source.

    Tracks are drawn with a box, a label ``"class_name confidence #track_id"`` and a
    motion trail of the last ``trace_length_s`` seconds, coloured by track id. A packet
    without tracks has its detections drawn (box and ``"class_name confidence"``,
    coloured by class); a packet with neither is written as it is.

    Args:
        path_template: Output ``.mp4`` path; ``{source_id}`` is replaced by the source
            id. Must contain it when more than one source is opened.
        crf: x264 constant rate factor in [0, 51] (lower is better quality, bigger).
        preset: x264 speed preset, one of :data:`X264_PRESETS`.
        trace_length_s: Length of the motion trails, seconds (converted to frames with
            the stream's fps); 0 disables trails.
        draw_confidence: Whether labels show the confidence.
        draw_labels: Whether to draw labels at all.
        keyframe_interval_s: Seconds between keyframes, i.e. the fragment length and
            the most video a crash can lose (plus the encoder look-ahead), in (0, 60].
        threads: x264 encoder threads; 0 lets x264 choose (1.5 x cores). Each frame
            thread delays the output by one frame, i.e. one more frame a crash can lose.
        text_scale: Label font scale (supervision's ``text_scale``).
        box_thickness: Box line thickness, pixels, >= 1.
        codec_options: Extra libx264 options (FFmpeg names, string values) that
            override the defaults, e.g. ``{"tune": "zerolatency"}``.
        analytics: Line/zone geometry to draw with the counts of ``packet.analytics``:
            one :class:`~streamer.analytics.zones.AnalyticsSpec` for every source or a
            mapping ``source_id -> spec``; None draws no analytics.

    Raises:
        ValueError: if a parameter is out of its valid range.

    Thread-safety: one writer thread calls ``open``/``write``; ``close`` may come
    from another thread after writes stopped. The trail annotator is stateful, so
    there is one per source.
    """

    def __init__(
        self,
        path_template: str | Path,
        crf: int = 23,
        preset: str = "veryfast",
        trace_length_s: float = 2.0,
        draw_confidence: bool = True,
        *,
        draw_labels: bool = True,
        keyframe_interval_s: float = 1.0,
        threads: int = 0,
        text_scale: float = 0.5,
        box_thickness: int = 2,
        codec_options: Mapping[str, str] | None = None,
        analytics: AnalyticsSpecs | None = None,
    ) -> None:
        if not 0 <= crf <= 51:
            raise ValueError(f"crf: must be in [0, 51], got {crf}")
        if preset not in X264_PRESETS:
            raise ValueError(f"preset: must be one of {', '.join(X264_PRESETS)}, got {preset!r}")
        if not (math.isfinite(keyframe_interval_s) and 0.0 < keyframe_interval_s <= 60.0):
            raise ValueError(f"keyframe_interval_s: must be in (0, 60], got {keyframe_interval_s}")
        if threads < 0:
            raise ValueError(f"threads: must be >= 0, got {threads}")
        # Drawing (shared with the preview sink); checks trace_length_s, text_scale and
        # box_thickness. Its box and label annotators are stateless: shared by all sources.
        self._annotator = FrameAnnotator(
            trace_length_s,
            draw_confidence,
            draw_labels=draw_labels,
            text_scale=text_scale,
            box_thickness=box_thickness,
            analytics=analytics,
        )
        self.path_template = str(path_template)
        self.crf = int(crf)
        self.preset = preset
        self.trace_length_s = float(trace_length_s)
        self.draw_confidence = draw_confidence
        self.draw_labels = draw_labels
        self.keyframe_interval_s = float(keyframe_interval_s)
        self.threads = int(threads)
        self.box_thickness = int(box_thickness)
        self.codec_options = dict(codec_options or {})
        self.text_scale = float(text_scale)
        self.analytics = analytics
        self._outputs: dict[str, _VideoOutput] = {}
        self._closed = False

    # ------------------------------------------------------------------ info
    def paths(self) -> dict[str, Path]:
        """Return the output file of every opened source, by source id."""
        return {sid: out.path for sid, out in self._outputs.items()}

    def frames_written(self) -> dict[str, int]:
        """Return how many frames each source has handed to the encoder."""
        return {sid: out.frames for sid, out in self._outputs.items()}

    # ------------------------------------------------------------- lifecycle
    def open(self, info: StreamInfo, class_names: Sequence[str]) -> None:
        """Create the MP4 of ``info.source_id``; a repeated open of a source is a no-op.

        The file is created (and truncated) now, so an unwritable path fails here;
        if no frame is ever written, ``close`` removes it again.

        Raises:
            SinkError: if the sink is closed, ``info.fps`` is not usable, the path is
                already used by another source, or the file cannot be created.
        """
        if self._closed:
            raise SinkError(f"{_NAME}: open('{info.source_id}') after close")
        if info.source_id in self._outputs:
            return
        rate = rate_of(info.fps)
        path = resolve_path(self.path_template, info.source_id)
        for other, out in self._outputs.items():
            if out.path == path:
                raise SinkError(
                    f"{_NAME}: sources '{other}' and '{info.source_id}' would share '{path}'; "
                    "put {source_id} in path_template"
                )
        prepare_output_file(path, _NAME)
        gop = max(1, round(float(rate) * self.keyframe_interval_s))
        options = {
            "crf": str(self.crf),
            "preset": self.preset,
            "g": str(gop),
            "bf": "0",
            **self.codec_options,
        }
        try:
            container = av.open(
                str(path),
                mode="w",
                format="mp4",
                container_options={"movflags": MOVFLAGS, "flush_packets": "1"},
            )
            try:
                stream = container.add_stream("libx264", rate=rate)
                stream.pix_fmt = "yuv420p"
                if info.width_px > 0 and info.height_px > 0:
                    stream.width, stream.height = even_size(info.width_px, info.height_px)
                time_base = Fraction(rate.denominator, rate.numerator)
                stream.codec_context.time_base = time_base
                stream.codec_context.thread_count = self.threads
                stream.codec_context.options = options
            except BaseException:
                container.close()
                raise
        except (av.FFmpegError, OSError, ValueError) as exc:
            path.unlink(missing_ok=True)
            raise SinkError(f"{_NAME}: cannot open '{path}' for libx264: {exc}") from exc
        self._outputs[info.source_id] = _VideoOutput(
            source_id=info.source_id,
            path=path,
            container=container,
            stream=stream,
            time_base=time_base,
            draw=self._annotator.new_state(info.source_id, class_names, float(rate)),
        )

    def write(self, packet: Packet) -> None:
        """Annotate a copy of the packet's frame and encode it.

        Raises:
            SinkError: if the source was not opened, the sink is closed, the image is
                not ``(H, W, 3) uint8``, or encoding/writing fails.
        """
        out = self._outputs.get(packet.source_id)
        if out is None or self._closed or out.closed:
            state = "closed" if self._closed else "not opened"
            raise SinkError(
                f"{_NAME}: write for source '{packet.source_id}' (frame {packet.seq}): sink {state}"
            )
        frame = packet.frame
        canvas = self._prepare_canvas(out, frame.image, frame.seq)
        self._annotator.annotate(out.draw, canvas, packet)
        if out.first_seq is None:
            out.first_seq = frame.seq
        pts = frame.seq - out.first_seq
        if pts <= out.last_pts:  # a source that restarted its seq: keep time monotonic
            pts = out.last_pts + 1
        out.last_pts = pts
        video_frame = av.VideoFrame.from_ndarray(canvas, format="bgr24")
        video_frame.pts = pts
        video_frame.time_base = out.time_base
        try:
            for pkt in out.stream.encode(video_frame):
                out.container.mux(pkt)
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise SinkError(
                f"{_NAME}: cannot encode frame {frame.seq} of source '{packet.source_id}' "
                f"to '{out.path}': {exc}"
            ) from exc
        out.frames += 1

    def close(self) -> None:
        """Flush every encoder and finish every file; idempotent.

        Raises:
            SinkError: if a file could not be finished (all files are still closed).
        """
        if self._closed:
            return
        self._closed = True
        close_all([(str(o.path), o) for o in self._outputs.values()], _NAME)

    # --------------------------------------------------------------- helpers
    def _prepare_canvas(self, out: _VideoOutput, image: np.ndarray, seq: int) -> ImageBGR:
        """Validate the image, fix the output size at the first frame, return a padded copy."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise SinkError(
                f"{_NAME}: frame {seq} of source '{out.source_id}': expected (H, W, 3) uint8 "
                f"BGR, got {image.shape} {image.dtype}"
            )
        h, w = image.shape[:2]
        if out.size_wh is None:
            out.size_wh = (w, h)
            # Not yet encoding: the stream may still take the real frame size.
            out.stream.width, out.stream.height = even_size(w, h)
        elif out.size_wh != (w, h):
            if not out.warned_resize:
                _log.warning(
                    "%s: source '%s' changed frame size from %sx%s to %sx%s at frame %d; "
                    "resizing to the first size",
                    _NAME,
                    out.source_id,
                    *out.size_wh,
                    w,
                    h,
                    seq,
                )
                out.warned_resize = True
            image = cv2.resize(image, out.size_wh, interpolation=cv2.INTER_AREA)
        return pad_to_even(image)


__all__ = [
    "MOVFLAGS",
    "X264_PRESETS",
    "AnnotatedVideoSink",
    "even_size",
    "pad_to_even",
    "rate_of",
]
