"""Sliced (SAHI-style) inference around any :class:`~streamer.detect.YoloDetector`.

Implements slicing-aided hyper inference (Akyon, Altinuc, Temizel, "Slicing Aided
Hyper Inference and Fine-tuning for Small Object Detection", ICIP 2022): the frame is
cut into overlapping tiles (:func:`~streamer.slicing.grid.tile_grid`), each tile is
detected at (near) full resolution, an optional full-frame pass keeps large objects,
and the detections are mapped back to frame pixels and merged
(:func:`~streamer.slicing.merge.merge_detections`).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from streamer.detect.detector import YoloDetector
from streamer.preprocess.letterbox import Letterbox
from streamer.slicing.grid import auto_tile_wh, tile_grid
from streamer.slicing.merge import MatchMetric, MergeMethod, merge_detections
from streamer.types import Detections

__all__ = ["SlicePlan", "SlicedDetector", "SlicedStats"]


@dataclass(frozen=True)
class SlicedStats:
    """Counters of a :class:`SlicedDetector`.

    Attributes:
        frames: Frames processed so far.
        tiles_last_frame: Tiles cut from the last frame (the full-frame pass excluded).
        batch_last_frame: Images in the last frame's batch (tiles + full frame).
        detections_before_merge: Detections of the last frame before merging.
        inference_calls: Inference passes so far: one per :meth:`infer` call (which
            may hold several frames' batches) and one per :meth:`__call__` frame
            (which a fixed-batch model runs chunk by chunk).
        images_inferred: Images sent to the model so far (sum of batch sizes).
        tiles_total: Tiles cut so far (the full-frame passes excluded).
    """

    frames: int = 0
    tiles_last_frame: int = 0
    batch_last_frame: int = 0
    detections_before_merge: int = 0
    inference_calls: int = 0
    images_inferred: int = 0
    tiles_total: int = 0

    @property
    def tiles_per_frame(self) -> float:
        """Mean tiles per frame so far (the full-frame pass excluded)."""
        return self.tiles_total / self.frames if self.frames else 0.0


@dataclass(frozen=True)
class SlicePlan:
    """How one frame's batch rows map back to the frame.

    Attributes:
        tiles: ``(T, 4) int32`` half-open ``xyxy`` tiles, frame pixels.
        letterboxes: Letterbox of each batch row (tiles, then the full frame).
        run_full: Whether the last batch row is the full frame.
    """

    tiles: npt.NDArray[np.int32]
    letterboxes: tuple[Letterbox, ...]
    run_full: bool

    @property
    def batch_size(self) -> int:
        """Rows of this frame in the model batch."""
        return len(self.tiles) + int(self.run_full)


def _to_frame(per_image: Sequence[Detections], tiles: npt.NDArray[np.int32]) -> Detections:
    """Concatenate per-row detections (tiles, then the full frame if present) in row
    order, tile boxes shifted by their tile origin into frame pixels.

    Same values as :func:`~streamer.slicing.merge.offset_detections` per tile followed
    by :func:`~streamer.slicing.merge.concat_detections` (sum in float64, rounded once
    to float32), in one vector step.
    """
    if not per_image:
        return Detections.empty()
    counts = [len(d) for d in per_image]
    offsets = np.zeros((len(per_image), 4), np.float64)
    offsets[: len(tiles)] = tiles[:, [0, 1, 0, 1]]
    xyxy = np.concatenate([d.xyxy for d in per_image]).reshape(-1, 4).astype(np.float64)
    xyxy += np.repeat(offsets, counts, axis=0)
    return Detections(
        xyxy.astype(np.float32),
        np.concatenate([d.confidence for d in per_image]),
        np.concatenate([d.class_id for d in per_image]),
    )


class SlicedDetector:
    """Detects small objects by running a detector on overlapping tiles of the frame.

    Per frame: the tile grid (cached per frame size) is cut from the frame as views
    (no copy); each tile, and the whole frame when ``full_frame``, is letterboxed
    with ``detector.preprocess`` straight into one row of a ``float32`` model batch;
    the model runs; ``detector.postprocess`` decodes each row into the pixels of its
    tile (with the detector's own confidence threshold and per-tile NMS); tile boxes
    are offset by the tile origin into frame pixels, concatenated in tile order
    (full frame last), and merged.

    How :meth:`__call__` runs the model depends on the backend:

    * dynamic batch: all rows of the frame in **one** ``(T [+ 1], 3, in_h, in_w)``
      batch, one session run, into a batch buffer kept for the next frame;
    * fixed batch ``k`` (``backend.fixed_batch``, e.g. 1 for a static export): one
      ``k``-row chunk at a time (the last one zero-padded) is letterboxed into a
      kept ``k``-row buffer, run and decoded, so a frame never holds more than a
      chunk's input and outputs (with ``k = 1`` the same memory as a plain detector
      call per tile: a whole 9-tile batch and its outputs would be ~70 MB, and in
      a fresh process touching new memory cost ~2 ms/MB on the VMs measured).
      When the backend has ``map_runs`` (``OnnxRuntimeBackend`` with
      ``parallel_runs > 1``), that many chunks run at once.

    Either way the detections are the same, value for value, and the frame counts
    as one inference call. The phases API (:meth:`preprocess` → :meth:`infer` →
    :meth:`postprocess`, used by pipelines that run the phases in different
    threads) always makes the whole batch, and the backend runs it (in chunks for a
    fixed batch). :meth:`preprocess` fills a kept buffer when one is free; the
    caller owns the batch until it hands it back with :meth:`recycle` after
    :meth:`infer` (optional: a batch never handed back is simply freed). The
    pipeline's detect stage does so, so a stream reuses a few batches instead of
    allocating a fresh ~44 MB one per 1080p frame (glibc maps blocks that large
    anew on every allocation, and faulting them in cost ~3 ms a frame).

    When the grid is a single tile equal to the whole frame (frame no larger than
    the tile), the full-frame pass would repeat it and is skipped.

    Args:
        detector: The detector to wrap (any layout; its thresholds apply per tile).
        tile_wh: ``(width, height)`` of a tile, pixels, or None for
            :func:`~streamer.slicing.grid.auto_tile_wh` (the model input size, so
            tiles are not downscaled).
        overlap_ratio: Overlap of neighbouring tiles as a fraction of the tile size,
            in [0, 1) (SAHI's default is 0.2).
        overlap_px: Overlap in pixels; when given it replaces ``overlap_ratio``.
        full_frame: Also run the whole frame (SAHI's "standard prediction") so that
            objects larger than a tile are still found.
        max_tiles: Budget of tiles per frame, >= 1, or None; see
            :func:`~streamer.slicing.grid.tile_grid` for how the tile grows.
        merge: ``"nmm"`` (greedy non-maximum merging, SAHI's default), ``"nms"`` or
            ``"none"``.
        metric: ``"ios"`` (intersection over smaller, SAHI's default, also matches
            a cut piece against the whole object) or ``"iou"``.
        merge_threshold: Match threshold of the merge, in [0, 1].
        class_aware: Only detections of the same class are merged.

    Raises:
        ValueError: on an out-of-range argument (raised at construction where the
            frame size is not needed, otherwise on the first frame).

    Thread-safety: ``__call__`` may run concurrently from several threads (the
    detector is thread-safe; the grid cache, the kept buffers and the counters are
    guarded by a lock; a buffer belongs to one call or chunk at a time).
    """

    _MAX_FREE_BUFFERS = 4  # kept between calls: one per concurrent call or chunk

    def __init__(
        self,
        detector: YoloDetector,
        tile_wh: tuple[int, int] | None = None,
        overlap_ratio: float = 0.2,
        overlap_px: int | None = None,
        full_frame: bool = True,
        max_tiles: int | None = None,
        merge: MergeMethod = "nmm",
        metric: MatchMetric = "ios",
        merge_threshold: float = 0.5,
        class_aware: bool = True,
    ) -> None:
        self._detector = detector
        self._overlap_ratio: float | None = None if overlap_px is not None else overlap_ratio
        self._overlap_px = overlap_px
        self._tile_wh = tile_wh
        self._full_frame = bool(full_frame)
        self._max_tiles = max_tiles
        self._merge: MergeMethod = merge
        self._metric: MatchMetric = metric
        self._threshold = float(merge_threshold)
        self._class_aware = bool(class_aware)
        # Validate everything that does not need the frame size now.
        probe_tile = tile_wh if tile_wh is not None else detector.input_wh
        tile_grid(probe_tile, probe_tile, self._overlap_ratio, overlap_px, max_tiles)
        merge_detections(Detections.empty(), merge, metric, merge_threshold, class_aware)
        self._grids: dict[tuple[int, int], npt.NDArray[np.int32]] = {}
        self._lock = threading.Lock()
        self._stats = SlicedStats()
        self._free: list[npt.NDArray[np.float32]] = []  # batch buffers kept by __call__

    @property
    def detector(self) -> YoloDetector:
        """The wrapped detector."""
        return self._detector

    @property
    def stats(self) -> SlicedStats:
        """A snapshot of the counters."""
        return self._stats

    def tiles_for(self, image_wh: tuple[int, int]) -> npt.NDArray[np.int32]:
        """The ``(T, 4) int32`` half-open ``xyxy`` tiles (frame pixels) for a frame size.

        Raises:
            ValueError: if the frame size or the grid arguments are invalid.
        """
        key = (int(image_wh[0]), int(image_wh[1]))
        grid = self._grids.get(key)
        if grid is None:
            tile = self._tile_wh or auto_tile_wh(key, self._detector.input_wh)
            grid = tile_grid(key, tile, self._overlap_ratio, self._overlap_px, self._max_tiles)
            grid.flags.writeable = False
            with self._lock:
                self._grids[key] = grid
        return grid

    def preprocess(
        self, image_bgr: npt.NDArray[np.uint8]
    ) -> tuple[npt.NDArray[np.float32], SlicePlan]:
        """Cut and letterbox the tiles (and the full frame) of one frame into a batch.

        Args:
            image_bgr: ``(H, W, 3) uint8`` BGR frame.

        Returns:
            ``(n, 3, in_h, in_w) float32`` model input (tiles in row-major order, then
            the full frame when it is run) and the :class:`SlicePlan` that maps the
            outputs back.

        Raises:
            ValueError: if the image is not ``(H, W, 3)``.
        """
        tiles, run_full = self._rows(image_bgr)
        batch = self.batch_buffer(len(tiles) + int(run_full))
        return batch, self._fill(image_bgr, tiles, run_full, batch)

    def batch_buffer(self, n: int) -> npt.NDArray[np.float32]:
        """An ``(n, 3, in_h, in_w) float32`` batch (uninitialised): the first rows of a
        kept buffer when one is free, else a new array. Hand it back with
        :meth:`recycle` once nothing reads it any more."""
        if n == 0:  # (adaptive slicing may run no tile) keep the kept buffers free
            in_w, in_h = self._detector.input_wh
            return np.empty((0, 3, in_h, in_w), np.float32)
        return self._take_buffer(n)[:n]

    def recycle(self, batch: npt.NDArray[np.float32]) -> None:
        """Keep a batch from :meth:`preprocess` (or :meth:`batch_buffer`) for a later
        frame. Call it once per batch, after :meth:`infer` has run it, and do not
        touch the batch afterwards; arrays that are not such batches are ignored."""
        root = batch if batch.base is None else batch.base
        in_w, in_h = self._detector.input_wh
        if (
            isinstance(root, np.ndarray)
            and root.dtype == np.float32
            and root.shape[1:] == (3, in_h, in_w)
            and root.flags.c_contiguous
            and root.flags.owndata
        ):
            self._keep_buffer(root)

    def _rows(self, image_bgr: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.int32], bool]:
        """The frame's tiles and whether the full-frame pass runs."""
        if image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
            raise ValueError(f"image must be (H, W, 3) uint8, got {tuple(image_bgr.shape)}")
        h, w = image_bgr.shape[:2]
        tiles = self.tiles_for((w, h))
        whole = len(tiles) == 1 and tuple(tiles[0]) == (0, 0, w, h)
        return tiles, self._full_frame and not whole

    def _fill(
        self,
        image_bgr: npt.NDArray[np.uint8],
        tiles: npt.NDArray[np.int32],
        run_full: bool,
        batch: npt.NDArray[np.float32],
    ) -> SlicePlan:
        """Letterbox each tile (views of the frame, no copy), then the frame, into
        the rows of ``batch``."""
        pre = self._detector.preprocess
        letterboxes = [
            pre(image_bgr[y1:y2, x1:x2], out=batch[i])[1]
            for i, (x1, y1, x2, y2) in enumerate(tiles.tolist())
        ]
        if run_full:
            letterboxes.append(pre(image_bgr, out=batch[len(tiles)])[1])
        return SlicePlan(tiles, tuple(letterboxes), run_full)

    def _take_buffer(self, n: int) -> npt.NDArray[np.float32]:
        """The smallest kept batch buffer with at least ``n`` rows, or a new one."""
        with self._lock:
            fits = [i for i, buf in enumerate(self._free) if buf.shape[0] >= n]
            if fits:
                return self._free.pop(min(fits, key=lambda i: self._free[i].shape[0]))
        in_w, in_h = self._detector.input_wh
        return np.empty((n, 3, in_h, in_w), np.float32)

    def _keep_buffer(self, buf: npt.NDArray[np.float32]) -> None:
        with self._lock:
            if any(kept is buf for kept in self._free):  # handed back twice
                return
            self._free.append(buf)
            if len(self._free) > self._MAX_FREE_BUFFERS:
                del self._free[min(range(len(self._free)), key=lambda i: len(self._free[i]))]

    def infer(self, batch: npt.NDArray[np.float32]) -> list[np.ndarray]:
        """Run the wrapped detector's backend on a batch from :meth:`preprocess` (or
        several concatenated along the first axis)."""
        return self._detector.infer(batch)

    def postprocess(
        self, outputs: list[np.ndarray], plans: Sequence[SlicePlan]
    ) -> list[Detections]:
        """Decode, map back to frame pixels and merge, one :class:`Detections` per plan.

        Args:
            outputs: Raw model outputs of the concatenated batches of ``plans``.
            plans: The plans of the frames in the batch, in batch order.

        Returns:
            One merged :class:`Detections` per frame, ``xyxy`` float32 in frame pixels,
            sorted by descending confidence.
        """
        results = []
        start = 0
        for i, plan in enumerate(plans):
            n = plan.batch_size
            part = [o[start : start + n] for o in outputs]
            start += n
            per_image = self._detector.postprocess(part, list(plan.letterboxes))
            # One inference call ran all plans of the batch: count it once.
            results.append(self._merge_frame(per_image, plan, count_call=i == 0))
        return results

    def __call__(self, image_bgr: npt.NDArray[np.uint8]) -> Detections:
        """Detect in one ``(H, W, 3) uint8`` BGR frame: the same detections as
        :meth:`preprocess` → :meth:`infer` → :meth:`postprocess`, with less memory
        (see the class docstring: kept buffers; chunk by chunk on a fixed batch).

        Returns:
            Merged :class:`Detections`, ``xyxy`` float32 in frame pixels (inside the
            frame), sorted by descending confidence.

        Raises:
            ValueError: if the image is not ``(H, W, 3)``.
            BackendError: if inference fails.
        """
        tiles, run_full = self._rows(image_bgr)
        n = len(tiles) + int(run_full)
        k = self._detector.backend.fixed_batch
        if k is not None and n > k:
            per_image = self._streamed(image_bgr, tiles, run_full, k)
            plan = SlicePlan(tiles, (), run_full)
            return self._merge_frame(per_image, plan)
        buf = self._take_buffer(n)
        try:
            batch = buf[:n]
            plan = self._fill(image_bgr, tiles, run_full, batch)
            outputs = self.infer(batch)  # new arrays: the buffer is free again
        finally:
            self._keep_buffer(buf)
        return self.postprocess(outputs, [plan])[0]

    def _streamed(
        self,
        image_bgr: npt.NDArray[np.uint8],
        tiles: npt.NDArray[np.int32],
        run_full: bool,
        k: int,
    ) -> list[Detections]:
        """Per-row detections of a frame on a fixed-batch-``k`` model, chunk by chunk:
        each chunk is letterboxed into a kept ``k``-row buffer, run and decoded before
        the next needs memory (``backend.map_runs`` runs several chunks at once when
        the backend offers it)."""
        views = [image_bgr[y1:y2, x1:x2] for x1, y1, x2, y2 in tiles.tolist()]
        if run_full:
            views.append(image_bgr)
        chunks = [views[i : i + k] for i in range(0, len(views), k)]
        det = self._detector

        def run_chunk(chunk: list[npt.NDArray[np.uint8]]) -> list[Detections]:
            buf = self._take_buffer(k)
            try:
                batch = buf[:k]
                lbs = [det.preprocess(v, out=batch[j])[1] for j, v in enumerate(chunk)]
                batch[len(chunk) :] = 0.0  # the padding rows of a last, short chunk
                outputs = det.infer(batch)
            finally:
                self._keep_buffer(buf)
            return det.postprocess([o[: len(chunk)] for o in outputs], lbs)

        map_runs = getattr(det.backend, "map_runs", None)
        if map_runs is not None:
            per_chunk: list[list[Detections]] = map_runs(run_chunk, chunks)
        else:
            per_chunk = [run_chunk(c) for c in chunks]
        return [d for part in per_chunk for d in part]

    def _merge_frame(
        self, per_image: Sequence[Detections], plan: SlicePlan, count_call: bool = True
    ) -> Detections:
        """Map one frame's per-row detections to frame pixels, merge, count."""
        merged_in = _to_frame(per_image, plan.tiles)
        out = merge_detections(
            merged_in, self._merge, self._metric, self._threshold, self._class_aware
        )
        k = len(plan.tiles)
        with self._lock:
            s = self._stats
            self._stats = SlicedStats(
                frames=s.frames + 1,
                tiles_last_frame=k,
                batch_last_frame=plan.batch_size,
                detections_before_merge=len(merged_in),
                inference_calls=s.inference_calls + int(count_call),
                images_inferred=s.images_inferred + plan.batch_size,
                tiles_total=s.tiles_total + k,
            )
        return out

    @property
    def full_frame(self) -> bool:
        """Whether a full-frame pass runs beside the tiles (when the grid is not one
        tile covering the whole frame)."""
        return self._full_frame

    @property
    def class_names(self) -> tuple[str, ...]:
        """Class names of the wrapped detector."""
        return self._detector.class_names

    @property
    def input_wh(self) -> tuple[int, int]:
        """Model input size of the wrapped detector, pixels."""
        return self._detector.input_wh

    @property
    def layout(self) -> str:
        """Output layout of the wrapped detector."""
        return self._detector.layout

    def __repr__(self) -> str:
        return (
            f"SlicedDetector(tile_wh={self._tile_wh or 'auto'}, overlap_ratio="
            f"{self._overlap_ratio}, overlap_px={self._overlap_px}, full_frame="
            f"{self._full_frame}, max_tiles={self._max_tiles}, merge={self._merge!r}, "
            f"metric={self._metric!r}, merge_threshold={self._threshold})"
        )
