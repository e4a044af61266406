"""Video file source, decoded with PyAV (FFmpeg).

PyAV is used rather than OpenCV because it reports decode errors as exceptions,
gives the container's presentation times and frame rate exactly (as fractions),
and lets us tell a truncated file from a complete one by comparing decoded frames
with the count the container declares.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import av.error
import numpy as np

from streamer.errors import SourceError
from streamer.types import Frame, StreamInfo


class VideoFileSource:
    """Frames of a video file, in decode order, losslessly.

    Every frame is emitted (files never drop). ``seq`` counts from 0. ``pts_ns`` is
    the frame's presentation time relative to the stream start, in nanoseconds.

    Thread-safety: use from one thread (the runner's source thread).

    Args:
        path: Video file path.
        source_id: Name carried by every frame.
        decode_threads: FFmpeg decoder threads (0 = FFmpeg's choice).
        truncation_tolerance: Fraction of the declared frame count that may be missing
            at the end before the file is reported as truncated (some containers'
            edit lists hide a frame or two).
        max_frames: Stop after this many frames (None: the whole file).

    Raises:
        SourceError: (from ``open``/``read``) missing file, a file that is not a video,
            a decode error (names the frame), or a file that ends early (truncated).
    """

    def __init__(
        self,
        path: str | Path,
        source_id: str = "video",
        decode_threads: int = 0,
        truncation_tolerance: float = 0.01,
        max_frames: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.source_id = source_id
        self.decode_threads = decode_threads
        self.truncation_tolerance = truncation_tolerance
        self.max_frames = max_frames
        self._container: av.container.InputContainer | None = None
        self._frames: Iterator[av.VideoFrame] | None = None
        self._time_base: Fraction = Fraction(1, 1)
        self._first_pts: int | None = None
        self._fps = 0.0
        self._declared: int | None = None
        self._seq = 0

    def _where(self) -> str:
        return f"source '{self.source_id}' ({self.path})"

    def open(self) -> StreamInfo:
        """Open the file and return its stream information.

        Raises:
            SourceError: the file is missing, unreadable, or holds no video stream.
        """
        if not self.path.exists():
            raise SourceError(f"{self._where()}: video file not found")
        if not self.path.is_file():
            raise SourceError(f"{self._where()}: not a file")
        try:
            container = av.open(str(self.path), mode="r")
        except (av.error.FFmpegError, OSError) as e:
            raise SourceError(f"{self._where()}: not a readable video file ({e})") from None
        if not container.streams.video:
            container.close()
            raise SourceError(f"{self._where()}: the file holds no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if self.decode_threads:
            stream.thread_count = self.decode_threads
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        self._fps = float(rate) if rate else 0.0
        if self._fps <= 0:
            container.close()
            raise SourceError(f"{self._where()}: the stream states no frame rate")
        self._time_base = stream.time_base or Fraction(1, 1)
        self._declared = int(stream.frames) if stream.frames else None
        self._container = container
        self._frames = container.decode(stream)
        self._seq = 0
        ctx = stream.codec_context
        return StreamInfo(
            source_id=self.source_id,
            fps=self._fps,
            width_px=int(ctx.width),
            height_px=int(ctx.height),
            frame_count=(
                min(self._declared, self.max_frames)
                if self._declared is not None and self.max_frames is not None
                else self._declared or self.max_frames
            ),
            uri=str(self.path),
        )

    def read(self) -> Frame | None:
        """Decode the next frame; None at the end of the file.

        Raises:
            SourceError: decode error (naming the frame) or a truncated file.
        """
        if self._frames is None:
            raise SourceError(f"{self._where()}: read before open")
        if self.max_frames is not None and self._seq >= self.max_frames:
            return None
        try:
            vf = next(self._frames)
        except StopIteration:
            self._check_complete()
            return None
        except av.error.FFmpegError as e:
            raise SourceError(f"{self._where()}: decode error at frame {self._seq}: {e}") from None
        image: np.ndarray = vf.to_ndarray(format="bgr24")
        if vf.pts is not None:
            if self._first_pts is None:
                self._first_pts = vf.pts
            pts_ns = int((vf.pts - self._first_pts) * self._time_base * 1_000_000_000)
        else:
            pts_ns = int(self._seq / self._fps * 1e9)
        frame = Frame(
            source_id=self.source_id,
            seq=self._seq,
            pts_ns=pts_ns,
            capture_ns=time.monotonic_ns(),
            image=image,
            wall_ns=time.time_ns(),
        )
        self._seq += 1
        return frame

    def _check_complete(self) -> None:
        if self._declared is None:
            return
        missing = self._declared - self._seq
        if missing > max(1, int(self._declared * self.truncation_tolerance)):
            raise SourceError(
                f"{self._where()}: stream ended at frame {self._seq} of {self._declared} "
                "declared (file truncated or corrupt); frames before it were processed"
            )

    def close(self) -> None:
        """Close the file; idempotent."""
        if self._container is not None:
            self._container.close()
            self._container = None
            self._frames = None
