"""A synthetic source: numbered frames of one colour, for tests and benchmarks."""

from __future__ import annotations

import time

import numpy as np

from streamer.errors import SourceError
from streamer.types import Frame, StreamInfo


class SyntheticSource:
    """``frames`` frames of ``(height_px, width_px, 3) uint8`` whose pixels hold ``seq % 256``.

    Args:
        source_id: Name carried by every frame.
        frames: Number of frames before the end of the stream.
        fps: Stated frame rate (frames are produced as fast as they are read).
        width_px: Frame width.
        height_px: Frame height.
        fail_at: If set, ``read`` raises SourceError instead of returning this frame.

    Thread-safety: use from one thread.
    """

    def __init__(
        self,
        source_id: str = "synthetic",
        frames: int = 100,
        fps: float = 25.0,
        width_px: int = 64,
        height_px: int = 48,
        fail_at: int | None = None,
    ) -> None:
        self.source_id = source_id
        self.frames = frames
        self.fps = fps
        self.width_px = width_px
        self.height_px = height_px
        self.fail_at = fail_at
        self._seq = 0
        self.closed = False

    def open(self) -> StreamInfo:
        self._seq = 0
        self.closed = False
        return StreamInfo(self.source_id, self.fps, self.width_px, self.height_px, self.frames)

    def read(self) -> Frame | None:
        if self._seq >= self.frames:
            return None
        if self.fail_at is not None and self._seq == self.fail_at:
            raise SourceError(f"source '{self.source_id}': synthetic failure at frame {self._seq}")
        image = np.full((self.height_px, self.width_px, 3), self._seq % 256, np.uint8)
        frame = Frame(
            self.source_id,
            self._seq,
            int(self._seq / self.fps * 1e9),
            time.monotonic_ns(),
            image,
            time.time_ns(),
        )
        self._seq += 1
        return frame

    def close(self) -> None:
        self.closed = True
