"""The one place where our :class:`Tracks` / :class:`Detections` become ``sv.Detections``.

Everything else (annotators, zones, line counters of supervision) then works on
our outputs unchanged. The conversion copies nothing it does not have to: our
arrays are read-only, so they are copied once into writable ``sv.Detections``
fields (supervision may index or concatenate them).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import supervision as sv

from streamer.types import Detections, Tracks

CLASS_NAME_KEY = "class_name"
"""Key of the per-row class name in ``sv.Detections.data`` (supervision's own convention)."""


def _class_names_array(class_id: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    """Map ``(N,) int`` class ids to an ``(N,)`` array of names; unknown ids become their digits."""
    n_names = len(class_names)
    return np.array(
        [class_names[c] if 0 <= c < n_names else str(c) for c in class_id.tolist()],
        dtype=object,
    )


def detections_to_supervision(
    detections: Detections, class_names: Sequence[str] = ()
) -> sv.Detections:
    """Convert detections of one frame to ``sv.Detections``.

    Args:
        detections: ``N`` detections; ``xyxy (N, 4) float32`` in original-frame pixels.
        class_names: Names indexed by ``class_id``; ids outside it are named by their digits.

    Returns:
        ``sv.Detections`` with ``xyxy (N, 4) float32``, ``confidence (N,) float32``,
        ``class_id (N,) int32``, ``tracker_id`` None and ``data["class_name"] (N,)``.
    """
    return sv.Detections(
        xyxy=np.array(detections.xyxy, dtype=np.float32),
        confidence=np.array(detections.confidence, dtype=np.float32),
        class_id=np.array(detections.class_id, dtype=np.int32),
        data={CLASS_NAME_KEY: _class_names_array(detections.class_id, class_names)},
    )


def tracks_to_supervision(tracks: Tracks, class_names: Sequence[str] = ()) -> sv.Detections:
    """Convert tracks of one frame to ``sv.Detections`` with ``tracker_id`` set.

    Args:
        tracks: ``M`` tracks; ``xyxy (M, 4) float32`` in original-frame pixels.
        class_names: Names indexed by ``class_id``; ids outside it are named by their digits.

    Returns:
        ``sv.Detections`` with ``xyxy (M, 4) float32``, ``confidence (M,) float32``,
        ``class_id (M,) int32``, ``tracker_id (M,) int64``, and in ``data``:
        ``"class_name" (M,)`` and ``"det_index" (M,) int32`` (-1 for a coasting track).
    """
    return sv.Detections(
        xyxy=np.array(tracks.xyxy, dtype=np.float32),
        confidence=np.array(tracks.confidence, dtype=np.float32),
        class_id=np.array(tracks.class_id, dtype=np.int32),
        tracker_id=np.array(tracks.track_id, dtype=np.int64),
        data={
            CLASS_NAME_KEY: _class_names_array(tracks.class_id, class_names),
            "det_index": np.array(tracks.det_index, dtype=np.int32),
        },
    )


__all__ = ["CLASS_NAME_KEY", "detections_to_supervision", "tracks_to_supervision"]
