"""Core value types that every stage speaks (numpy only; imports nothing else of ours).

Coordinate frame: unless a docstring says otherwise, boxes are ``xyxy`` in
original-frame pixels (x to the right, y down, origin at the top-left corner of
the decoded frame), float32.

Arrays inside :class:`Detections` and :class:`Tracks` are made read-only at
construction so that one instance can be shared by several sinks without copies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int32]
Int64Array = npt.NDArray[np.int64]
ImageBGR = npt.NDArray[np.uint8]


def _as_readonly(name: str, value: Any, dtype: type, shape_tail: tuple[int, ...]) -> np.ndarray:
    arr: np.ndarray = np.asarray(value, dtype=dtype)
    if arr.ndim != 1 + len(shape_tail) or arr.shape[1:] != shape_tail:
        expected = "(N" + "".join(f", {d}" for d in shape_tail) + ")"
        raise ValueError(f"{name}: expected shape {expected}, got {tuple(arr.shape)}")
    if arr.flags.writeable:
        arr = arr.copy() if arr is value else arr
        arr.flags.writeable = False
    return arr


@dataclass(frozen=True)
class Detections:
    """Struct-of-arrays detections of one frame.

    Attributes:
        xyxy: ``(N, 4) float32`` boxes in original-frame pixels.
        confidence: ``(N,) float32`` scores in [0, 1].
        class_id: ``(N,) int32`` class indices into the detector's class names.

    Raises:
        ValueError: if a field has the wrong shape or the lengths disagree.
    """

    xyxy: FloatArray
    confidence: FloatArray
    class_id: IntArray

    def __post_init__(self) -> None:
        xyxy = _as_readonly("xyxy", self.xyxy, np.float32, (4,))
        conf = _as_readonly("confidence", self.confidence, np.float32, ())
        cls = _as_readonly("class_id", self.class_id, np.int32, ())
        if not (len(xyxy) == len(conf) == len(cls)):
            raise ValueError(
                f"Detections: lengths differ (xyxy {len(xyxy)}, confidence {len(conf)}, "
                f"class_id {len(cls)})"
            )
        object.__setattr__(self, "xyxy", xyxy)
        object.__setattr__(self, "confidence", conf)
        object.__setattr__(self, "class_id", cls)

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    @classmethod
    def empty(cls) -> Detections:
        """Return zero detections with correctly shaped arrays."""
        return cls(
            np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0,), np.int32)
        )

    def select(self, index: np.ndarray) -> Detections:
        """Return the rows picked by a boolean mask or an integer index array."""
        return Detections(self.xyxy[index], self.confidence[index], self.class_id[index])


@dataclass(frozen=True)
class Tracks:
    """Struct-of-arrays tracker output of one frame.

    Attributes:
        xyxy: ``(M, 4) float32`` track boxes in original-frame pixels.
        confidence: ``(M,) float32`` score of the detection the track was updated with.
        class_id: ``(M,) int32`` class of the track.
        track_id: ``(M,) int64`` per-source track identity, positive, never reused.
        det_index: ``(M,) int32`` row of this frame's :class:`Detections` the track was
            updated with, or -1 for a track that coasted (predicted only).
    """

    xyxy: FloatArray
    confidence: FloatArray
    class_id: IntArray
    track_id: Int64Array
    det_index: IntArray

    def __post_init__(self) -> None:
        fields = {
            "xyxy": _as_readonly("xyxy", self.xyxy, np.float32, (4,)),
            "confidence": _as_readonly("confidence", self.confidence, np.float32, ()),
            "class_id": _as_readonly("class_id", self.class_id, np.int32, ()),
            "track_id": _as_readonly("track_id", self.track_id, np.int64, ()),
            "det_index": _as_readonly("det_index", self.det_index, np.int32, ()),
        }
        lengths = {k: len(v) for k, v in fields.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"Tracks: lengths differ {lengths}")
        for k, v in fields.items():
            object.__setattr__(self, k, v)

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    @classmethod
    def empty(cls) -> Tracks:
        """Return zero tracks with correctly shaped arrays."""
        return cls(
            np.zeros((0, 4), np.float32),
            np.zeros((0,), np.float32),
            np.zeros((0,), np.int32),
            np.zeros((0,), np.int64),
            np.zeros((0,), np.int32),
        )


@dataclass
class Frame:
    """One decoded frame.

    Attributes:
        source_id: Name of the source the frame came from.
        seq: Per-source sequence number, 0-based, strictly increasing.
        pts_ns: Presentation time in the container, nanoseconds from stream start.
        capture_ns: ``time.monotonic_ns()`` when the frame was read.
        image: ``(H, W, 3) uint8`` BGR pixels.
        wall_ns: ``time.time_ns()`` when the frame was read (wall clock, for records).
    """

    source_id: str
    seq: int
    pts_ns: int
    capture_ns: int
    image: ImageBGR
    wall_ns: int = 0

    @property
    def pts_s(self) -> float:
        """Presentation time in seconds."""
        return self.pts_ns / 1e9


@dataclass(frozen=True)
class StreamInfo:
    """What a source knows about its stream once it is open.

    Attributes:
        source_id: Name of the source.
        fps: Frames per second of the stream (the container's average rate).
        width_px: Frame width in pixels.
        height_px: Frame height in pixels.
        frame_count: Number of frames if the container states it, else None.
        uri: Where the stream comes from (a file path; credentials never appear here).
    """

    source_id: str
    fps: float
    width_px: int
    height_px: int
    frame_count: int | None = None
    uri: str = ""


@dataclass(frozen=True)
class StreamStart:
    """In-band event: a source opened. Travels before its first frame."""

    info: StreamInfo

    @property
    def source_id(self) -> str:
        return self.info.source_id


@dataclass(frozen=True)
class StreamEnd:
    """In-band event: a source ended (cleanly or not); no more frames follow from it.

    Attributes:
        source_id: Name of the source.
        frames: Number of frames the source emitted.
        error: One-line reason if the source ended because of an error, else None.
    """

    source_id: str
    frames: int
    error: str | None = None


@dataclass(frozen=True)
class StreamGap:
    """In-band event: ``missing_frames`` frames are missing before the next frame.

    Trackers coast over the gap; nothing is invented.
    """

    source_id: str
    missing_frames: int


Event = StreamStart | StreamEnd | StreamGap


@dataclass
class Packet:
    """What flows between stages: a frame and what stages have added to it.

    Attributes:
        frame: The decoded frame.
        input_tensor: ``(3, S_h, S_w) float32`` model input made by preprocessing (a
            torch tensor on the device with ``preprocess: gpu``), or None.
        letterbox: Letterbox parameters used to make ``input_tensor`` (an object of
            :class:`streamer.preprocess.letterbox.Letterbox`), or None.
        detections: Detector output in original-frame pixels, or None before detection.
        tracks: Tracker output, or None before tracking.
        analytics: Line-crossing counts and zone occupancy/dwell of this frame, a
            JSON-ready dict ``{"lines": {name: {...}}, "zones": {name: {...}}}`` made by
            the analytics stage (layout in :mod:`streamer.analytics.zones`), or None
            when the pipeline has no analytics stage for this source.
        stage_ms: Wall time each stage spent on this packet, milliseconds, by stage name.
    """

    frame: Frame
    input_tensor: np.ndarray | None = None
    letterbox: Any = None
    detections: Detections | None = None
    tracks: Tracks | None = None
    analytics: dict[str, Any] | None = None
    stage_ms: dict[str, float] = field(default_factory=dict)

    @property
    def source_id(self) -> str:
        return self.frame.source_id

    @property
    def seq(self) -> int:
        return self.frame.seq


Item = Packet | StreamStart | StreamEnd | StreamGap
