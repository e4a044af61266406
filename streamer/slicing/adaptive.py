"""Adaptive sliced inference for video: run only the tiles a frame needs.

Sliced inference (SAHI: Akyon, Altinuc, Temizel, "Slicing Aided Hyper Inference and
Fine-tuning for Small Object Detection", ICIP 2022) runs the detector on every tile
of every frame. On a video from a fixed camera most tiles show the same static
scene from frame to frame, so :class:`AdaptiveSlicedDetector` runs, per frame, only
the tiles of the wrapped :class:`~streamer.slicing.sliced.SlicedDetector` grid that
are *needed*:

a. **motion**: the tile overlaps a region that changed since the previous frame
   (frame differencing on a downscaled, blurred grayscale copy; see
   :class:`AdaptiveSlicedDetector` for the thresholds);
b. **small objects**: the tile overlaps a small detection (box area below
   ``small_area_px``) of the latest frame whose detections are known, grown by
   ``margin_px`` per frame of age for the motion since then;
c. **sweep**: every ``full_sweep_every`` frames (and on the first frame, after
   :meth:`AdaptiveSlicedDetector.reset` and after a change of frame size) all tiles
   run, so that static objects that appeared without motion are found too.

The full-frame pass of the wrapped detector (if it has one) runs on every frame, so
large objects are always seen.

One instance serves **one** video source: it keeps the previous frame and the latest
detections of that source. It is not thread-safe across sources.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from streamer.detect.detector import YoloDetector
from streamer.slicing.sliced import SlicedDetector, SlicePlan
from streamer.types import Detections

__all__ = ["AdaptivePlan", "AdaptiveSlicedDetector", "AdaptiveStats"]


@dataclass(frozen=True)
class AdaptiveStats:
    """Counters of an :class:`AdaptiveSlicedDetector` (counted at :meth:`preprocess`).

    Attributes:
        frames: Frames planned so far.
        tiles_total: Tiles run so far (the full-frame pass excluded).
        grid_tiles_total: Tiles that full slicing would have run so far.
        full_sweeps: Frames on which every tile ran (periodic sweeps, the first
            frame, resets).
        motion_tiles_total: Tiles selected by motion (outside sweeps).
        detection_tiles_total: Tiles selected by a small previous detection (outside
            sweeps; a tile selected by both rules counts in both).
        tiles_last_frame: Tiles run on the last planned frame.
    """

    frames: int = 0
    tiles_total: int = 0
    grid_tiles_total: int = 0
    full_sweeps: int = 0
    motion_tiles_total: int = 0
    detection_tiles_total: int = 0
    tiles_last_frame: int = 0

    @property
    def tiles_per_frame(self) -> float:
        """Mean tiles run per frame so far (the full-frame pass excluded)."""
        return self.tiles_total / self.frames if self.frames else 0.0

    @property
    def tile_fraction(self) -> float:
        """Tiles run / tiles that full slicing would have run, in [0, 1]."""
        return self.tiles_total / self.grid_tiles_total if self.grid_tiles_total else 0.0


@dataclass(frozen=True)
class AdaptivePlan:
    """How one frame's batch rows map back to the frame.

    Attributes:
        frame_index: 0-based index of the frame in this instance's stream.
        slice_plan: The plan of the wrapped detector, holding only the selected tiles.
        selected: ``(T,) bool`` which tiles of the full grid were run.
        sweep: Whether this frame was a full sweep.
    """

    frame_index: int
    slice_plan: SlicePlan
    selected: npt.NDArray[np.bool_]
    sweep: bool

    @property
    def batch_size(self) -> int:
        """Rows of this frame in the model batch (may be 0)."""
        return self.slice_plan.batch_size


def _check_int(name: str, value: int, low: int) -> int:
    if isinstance(value, bool) or int(value) != value or int(value) < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


def _check_float(name: str, value: float, low: float, high: float = math.inf) -> float:
    v = float(value)
    if not (low <= v <= high):
        rng = f"[{low}, {high}]" if math.isfinite(high) else f">= {low}"
        raise ValueError(
            f"{name} must be {'in ' if math.isfinite(high) else ''}{rng}, got {value!r}"
        )
    return v


class AdaptiveSlicedDetector:
    """Sliced inference on video that runs only the tiles where something may be.

    Drop-in for a :class:`~streamer.slicing.sliced.SlicedDetector` in a pipeline:
    same three phases (:meth:`preprocess` → :meth:`infer` → :meth:`postprocess`) and
    :meth:`__call__`. Tiles are SAHI slices (Akyon et al., ICIP 2022) of the wrapped
    detector's grid; per frame a tile is run when

    a. **motion** overlaps it: the frame is converted to grayscale, downscaled by
       ``motion_downscale`` (``cv2.INTER_AREA``), blurred (5x5 Gaussian, to drop
       compression noise), and ``cv2.absdiff``-ed against the previous frame's copy;
       pixels whose difference exceeds ``motion_threshold`` gray levels are moving,
       the mask is dilated by ``motion_dilate_px`` frame pixels (so a tile an object
       is about to enter is run too), and a tile is needed when the moving area
       inside it is at least ``min_motion_area_px`` frame pixels² (counted on the
       downscaled mask, times ``motion_downscale²``);
    b. a **small detection** of the latest known frame overlaps it: a box with area
       below ``small_area_px`` (frame pixels²), grown on every side by
       ``margin_px x age`` pixels, where ``age >= 1`` is the number of frames
       between that detection's frame and this one;
    c. it is a **full sweep**: on the first frame, then every ``full_sweep_every``
       frames (and after :meth:`reset` or a change of frame size), all tiles run.

    The full-frame pass of the wrapped detector always runs (when it has one). When
    its grid is one tile covering the whole frame, that tile is always run (it *is*
    the full frame).

    Latest detections: :meth:`preprocess` of frame ``t`` uses the detections of the
    latest frame that :meth:`postprocess` has finished. A pipeline that runs
    :meth:`preprocess` ahead of :meth:`postprocess` (queued frames) therefore plans
    frame ``t`` from frame ``t - 2`` or older; nothing blocks, and the margin grows
    with the age so that objects that moved since are still covered (motion, rule a,
    also covers moving objects regardless of that lag).

    State and threads: one instance serves **one** source (it keeps that source's
    previous frame and latest detections) and must not be shared across sources.
    :meth:`preprocess` must be called in frame order from one thread, and
    :meth:`postprocess` in frame order from one (possibly other) thread; the
    detections handed between them and the counters are guarded by a lock.

    Counters: :attr:`stats` counts this instance's frames; the wrapped detector's own
    ``stats`` also count the frames decoded through it here (tiles run, not planned).

    Caveat: with a wrapped detector without full-frame pass, a static object in a
    tile that is not selected is only reported on sweep frames (or while it is small
    and keeps being detected, rule b).

    Args:
        sliced: The sliced detector whose grid, detector and merge are used.
        full_sweep_every: Run every tile once every this many frames, >= 1 (1 = full
            slicing on every frame).
        small_area_px: Detections with box area below this (frame pixels², >= 0)
            keep their tiles running on the next frames. 0 disables rule b.
        margin_px: Growth of a small detection's box per frame of age, pixels, >= 0.
        motion_threshold: Gray-level difference (0-255 scale) above which a pixel
            moved, in [0, 255]; 255 disables rule a.
        motion_downscale: Integer factor by which the frame is shrunk for
            differencing, >= 1 (4 = quarter width and height).
        motion_dilate_px: Dilation of the motion mask, frame pixels, >= 0.
        min_motion_area_px: Moving area a tile needs to be run, frame pixels², >= 0
            (at least one downscaled pixel is always required).

    Raises:
        ValueError: naming the parameter and its range when one is out of range.
    """

    def __init__(
        self,
        sliced: SlicedDetector,
        full_sweep_every: int = 25,
        small_area_px: float = 96.0 * 96.0,
        margin_px: float = 16.0,
        motion_threshold: float = 25.0,
        motion_downscale: int = 4,
        motion_dilate_px: int = 16,
        min_motion_area_px: float = 64.0,
    ) -> None:
        if not isinstance(sliced, SlicedDetector):
            raise ValueError(f"sliced must be a SlicedDetector, got {type(sliced).__name__}")
        self._sliced = sliced
        self._sweep_every = _check_int("full_sweep_every", full_sweep_every, 1)
        self._small_area = _check_float("small_area_px", small_area_px, 0.0)
        self._margin = _check_float("margin_px", margin_px, 0.0)
        self._motion_threshold = _check_float("motion_threshold", motion_threshold, 0.0, 255.0)
        self._down = _check_int("motion_downscale", motion_downscale, 1)
        self._dilate_px = _check_int("motion_dilate_px", motion_dilate_px, 0)
        self._min_motion = _check_float("min_motion_area_px", min_motion_area_px, 0.0)
        # SlicedDetector has no public accessor for it; read it, default on.
        self._full_frame = sliced.full_frame
        dil = max(0, round(self._dilate_px / self._down))
        self._kernel = (
            cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dil + 1, 2 * dil + 1))
            if dil > 0
            else None
        )
        self._min_count = max(1, math.ceil(self._min_motion / (self._down * self._down)))
        self._lock = threading.Lock()
        self._stats = AdaptiveStats()
        self._prev_gray: npt.NDArray[np.uint8] | None = None
        self._next_index = 0  # frame index of the next preprocess call
        self._since_sweep = 0  # frames since the last sweep (preprocess side)
        self._latest: tuple[int, Detections] | None = None  # (frame index, detections)

    # ------------------------------------------------------------------ properties

    @property
    def sliced(self) -> SlicedDetector:
        """The wrapped sliced detector."""
        return self._sliced

    @property
    def detector(self) -> YoloDetector:
        """The wrapped detector."""
        return self._sliced.detector

    @property
    def stats(self) -> AdaptiveStats:
        """A snapshot of the counters."""
        return self._stats

    @property
    def class_names(self) -> tuple[str, ...]:
        """Class names of the wrapped detector."""
        return self._sliced.class_names

    @property
    def input_wh(self) -> tuple[int, int]:
        """Model input size of the wrapped detector, pixels."""
        return self._sliced.input_wh

    @property
    def layout(self) -> str:
        """Output layout of the wrapped detector."""
        return self._sliced.layout

    def tiles_for(self, image_wh: tuple[int, int]) -> npt.NDArray[np.int32]:
        """The full ``(T, 4) int32`` tile grid of the wrapped detector for a frame size."""
        return self._sliced.tiles_for(image_wh)

    def reset(self) -> None:
        """Forget the previous frame and detections (e.g. on a source seek or restart);
        the next frame is a full sweep. Counters are kept."""
        with self._lock:
            self._prev_gray = None
            self._latest = None
            self._since_sweep = 0

    # ------------------------------------------------------------------ selection

    def _gray(self, image_bgr: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
        h, w = image_bgr.shape[:2]
        gray = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)
        if self._down > 1:
            size = (max(1, w // self._down), max(1, h // self._down))
            gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
        return np.asarray(cv2.GaussianBlur(gray, (5, 5), 0), np.uint8)

    def motion_tiles(
        self,
        gray: npt.NDArray[np.uint8],
        prev_gray: npt.NDArray[np.uint8],
        tiles: npt.NDArray[np.int32],
    ) -> npt.NDArray[np.bool_]:
        """Tiles (``(T,) bool``) that overlap motion between two downscaled gray frames.

        Args:
            gray: Current frame, as made by the instance (grayscale, downscaled by
                ``motion_downscale``, blurred).
            prev_gray: Previous frame, same size.
            tiles: ``(T, 4)`` half-open ``xyxy`` tiles, frame pixels.
        """
        diff = cv2.absdiff(gray, prev_gray)
        _, mask = cv2.threshold(diff, self._motion_threshold, 1, cv2.THRESH_BINARY)
        if self._kernel is not None:
            mask = cv2.dilate(mask, self._kernel)
        integral = cv2.integral(mask)  # (h + 1, w + 1), integral[y, x] = sum mask[:y, :x]
        gh, gw = mask.shape[:2]
        d = self._down
        x1 = np.clip(tiles[:, 0] // d, 0, gw)
        y1 = np.clip(tiles[:, 1] // d, 0, gh)
        x2 = np.clip(-(-tiles[:, 2] // d), 0, gw)
        y2 = np.clip(-(-tiles[:, 3] // d), 0, gh)
        counts = integral[y2, x2] - integral[y1, x2] - integral[y2, x1] + integral[y1, x1]
        return np.asarray(counts >= self._min_count, np.bool_)

    def detection_tiles(
        self, detections: Detections, age: int, tiles: npt.NDArray[np.int32]
    ) -> npt.NDArray[np.bool_]:
        """Tiles (``(T,) bool``) that overlap a small detection grown for its age.

        Args:
            detections: Detections of an earlier frame, frame pixels.
            age: Frames between that frame and the current one, >= 1.
            tiles: ``(T, 4)`` half-open ``xyxy`` tiles, frame pixels.
        """
        if len(detections) == 0 or self._small_area <= 0.0:
            return np.zeros(len(tiles), np.bool_)
        b = detections.xyxy.astype(np.float64)
        area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        b = b[area < self._small_area]
        if len(b) == 0:
            return np.zeros(len(tiles), np.bool_)
        m = self._margin * max(1, age)
        b = b + np.array([-m, -m, m, m])
        t = tiles.astype(np.float64)
        ix = np.minimum(b[:, None, 2], t[None, :, 2]) - np.maximum(b[:, None, 0], t[None, :, 0])
        iy = np.minimum(b[:, None, 3], t[None, :, 3]) - np.maximum(b[:, None, 1], t[None, :, 1])
        return np.asarray(((ix > 0) & (iy > 0)).any(axis=0), np.bool_)

    # ------------------------------------------------------------------ phases

    def preprocess(
        self, image_bgr: npt.NDArray[np.uint8]
    ) -> tuple[npt.NDArray[np.float32], AdaptivePlan]:
        """Select the needed tiles of one frame and letterbox them into a batch.

        Call in frame order, from one thread.

        Args:
            image_bgr: ``(H, W, 3) uint8`` BGR frame.

        Returns:
            ``(n, 3, in_h, in_w) float32`` model input (the selected tiles in
            row-major order, then the full frame when it is run; ``n`` may be 0) and
            the :class:`AdaptivePlan` that maps the outputs back.

        Raises:
            ValueError: if the image is not ``(H, W, 3)``.
        """
        if image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
            raise ValueError(f"image must be (H, W, 3) uint8, got {tuple(image_bgr.shape)}")
        h, w = image_bgr.shape[:2]
        tiles = self._sliced.tiles_for((w, h))
        whole = len(tiles) == 1 and tuple(tiles[0]) == (0, 0, w, h)
        run_full = self._full_frame and not whole
        gray = self._gray(image_bgr)
        with self._lock:
            index = self._next_index
            self._next_index += 1
            prev = self._prev_gray
            latest = self._latest
            self._prev_gray = gray
            sweep = prev is None or prev.shape != gray.shape or self._since_sweep <= 0
            self._since_sweep = self._sweep_every if sweep else self._since_sweep
            self._since_sweep -= 1
        n_tiles = len(tiles)
        by_motion = np.zeros(n_tiles, np.bool_)
        by_dets = np.zeros(n_tiles, np.bool_)
        if sweep or whole:
            selected = np.ones(n_tiles, np.bool_)
        else:
            assert prev is not None
            by_motion = self.motion_tiles(gray, prev, tiles)
            if latest is not None:
                by_dets = self.detection_tiles(latest[1], index - latest[0], tiles)
            selected = by_motion | by_dets
        chosen = tiles[selected]
        n = len(chosen) + int(run_full)
        batch = self._sliced.batch_buffer(n)
        letterboxes = []
        det = self._sliced.detector
        for i, (x1, y1, x2, y2) in enumerate(chosen):
            letterboxes.append(det.preprocess(image_bgr[y1:y2, x1:x2], out=batch[i])[1])
        if run_full:
            letterboxes.append(det.preprocess(image_bgr, out=batch[n - 1])[1])
        selected.flags.writeable = False
        plan = AdaptivePlan(index, SlicePlan(chosen, tuple(letterboxes), run_full), selected, sweep)
        with self._lock:
            s = self._stats
            self._stats = AdaptiveStats(
                frames=s.frames + 1,
                tiles_total=s.tiles_total + len(chosen),
                grid_tiles_total=s.grid_tiles_total + n_tiles,
                full_sweeps=s.full_sweeps + int(sweep),
                motion_tiles_total=s.motion_tiles_total + int(by_motion.sum()),
                detection_tiles_total=s.detection_tiles_total + int(by_dets.sum()),
                tiles_last_frame=len(chosen),
            )
        return batch, plan

    def recycle(self, batch: npt.NDArray[np.float32]) -> None:
        """Keep a batch from :meth:`preprocess` for a later frame, after :meth:`infer`
        (see :meth:`SlicedDetector.recycle`)."""
        self._sliced.recycle(batch)

    def infer(self, batch: npt.NDArray[np.float32]) -> list[np.ndarray]:
        """Run the wrapped detector's backend on a batch from :meth:`preprocess` (or
        several concatenated along the first axis); an empty batch gives ``[]``."""
        if len(batch) == 0:
            return []
        return self._sliced.infer(batch)

    def postprocess(
        self, outputs: list[np.ndarray], plans: Sequence[AdaptivePlan]
    ) -> list[Detections]:
        """Decode, map back to frame pixels and merge, one :class:`Detections` per plan.

        Call in frame order. The last frame's detections become the "latest
        detections" that :meth:`preprocess` uses for rule b.

        Args:
            outputs: Raw model outputs of the concatenated batches of ``plans``.
            plans: The plans of the frames in the batch, in batch order.

        Returns:
            One merged :class:`Detections` per frame, ``xyxy`` float32 in frame pixels.
        """
        busy = [p.slice_plan for p in plans if p.batch_size > 0]
        decoded = iter(self._sliced.postprocess(outputs, busy) if busy else [])
        results = [next(decoded) if p.batch_size > 0 else Detections.empty() for p in plans]
        if plans:
            with self._lock:
                if self._latest is None or plans[-1].frame_index > self._latest[0]:
                    self._latest = (plans[-1].frame_index, results[-1])
        return results

    def __call__(self, image_bgr: npt.NDArray[np.uint8]) -> Detections:
        """Detect in one ``(H, W, 3) uint8`` BGR frame of this instance's stream.

        Returns:
            Merged :class:`Detections`, ``xyxy`` float32 in frame pixels.

        Raises:
            ValueError: if the image is not ``(H, W, 3)``.
            BackendError: if inference fails.
        """
        batch, plan = self.preprocess(image_bgr)
        return self.postprocess(self.infer(batch), [plan])[0]

    def __repr__(self) -> str:
        return (
            f"AdaptiveSlicedDetector({self._sliced!r}, full_sweep_every={self._sweep_every}, "
            f"small_area_px={self._small_area}, margin_px={self._margin}, "
            f"motion_threshold={self._motion_threshold}, motion_downscale={self._down}, "
            f"motion_dilate_px={self._dilate_px}, min_motion_area_px={self._min_motion})"
        )
