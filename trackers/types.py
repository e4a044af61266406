"""Value types of the ``trackers`` package (numpy only).

``trackers`` never imports ``streamer``; :class:`TrackerOutput` has the same fields
as ``streamer.types.Tracks`` so that a pipeline stage can convert one into the
other without copying.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
Float64Array = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int32]
Int64Array = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


def _readonly(
    name: str, value: npt.ArrayLike, dtype: type, shape_tail: tuple[int, ...]
) -> np.ndarray:
    arr: np.ndarray = np.asarray(value, dtype=dtype)
    if arr is value:
        arr = arr.copy()  # never alias (or freeze) an array the caller still holds
    if arr.ndim != 1 + len(shape_tail) or arr.shape[1:] != shape_tail:
        expected = "(M" + "".join(f", {d}" for d in shape_tail) + ")"
        raise ValueError(f"TrackerOutput.{name}: expected shape {expected}, got {tuple(arr.shape)}")
    arr.flags.writeable = False
    return arr


@dataclass(frozen=True)
class TrackerOutput:
    """Struct-of-arrays result of one tracker ``update`` (one frame).

    Attributes:
        xyxy: ``(M, 4) float32`` track boxes, pixels, same frame as the detections
            passed in: the Kalman state after this frame's update (ByteTrack, SORT)
            or the matched detection's box (OC-SORT, as its reference does); the
            prediction for a coasting track.
        confidence: ``(M,) float32`` score of the detection the track was last
            updated with.
        class_id: ``(M,) int32`` class of the track (of its last detection).
        track_id: ``(M,) int64`` identity, >= 1, unique and never reused within one
            tracker instance.
        det_index: ``(M,) int32`` row of this frame's input detections the track
            was updated with, or -1 for a coasting (predicted only) track.

    The arrays are read-only copies.

    Raises:
        ValueError: if a field has the wrong shape or the lengths disagree.
    """

    xyxy: FloatArray
    confidence: FloatArray
    class_id: IntArray
    track_id: Int64Array
    det_index: IntArray

    def __post_init__(self) -> None:
        fields = {
            "xyxy": _readonly("xyxy", self.xyxy, np.float32, (4,)),
            "confidence": _readonly("confidence", self.confidence, np.float32, ()),
            "class_id": _readonly("class_id", self.class_id, np.int32, ()),
            "track_id": _readonly("track_id", self.track_id, np.int64, ()),
            "det_index": _readonly("det_index", self.det_index, np.int32, ()),
        }
        lengths = {k: len(v) for k, v in fields.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"TrackerOutput: lengths differ {lengths}")
        for k, v in fields.items():
            object.__setattr__(self, k, v)

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    @classmethod
    def empty(cls) -> TrackerOutput:
        """Return zero tracks with correctly shaped arrays."""
        return cls(
            np.zeros((0, 4), np.float32),
            np.zeros((0,), np.float32),
            np.zeros((0,), np.int32),
            np.zeros((0,), np.int64),
            np.zeros((0,), np.int32),
        )


class Tracker(Protocol):
    """The contract every tracker of this package meets (one instance per stream).

    ``update`` takes one frame's detections — ``xyxy (N, 4)`` float pixels,
    ``confidence (N,)``, ``class_id (N,)`` — and the number of frames since the
    previous call (``> 1`` over a gap in the stream), and returns the frame's tracks.
    """

    def update(
        self,
        xyxy: npt.ArrayLike,
        confidence: npt.ArrayLike,
        class_id: npt.ArrayLike,
        frames_elapsed: int = 1,
    ) -> TrackerOutput: ...

    def reset(self) -> None: ...

    def set_frame_rate(self, fps: float) -> None: ...
