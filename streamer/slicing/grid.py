"""Tile grids for sliced (SAHI-style) inference: pure geometry, no image data.

Sliced inference (Akyon, Altinuc, Temizel, "Slicing Aided Hyper Inference and
Fine-tuning for Small Object Detection", ICIP 2022, "SAHI") runs a detector on
overlapping crops of a large frame so that small objects are seen at (or near) full
resolution, then maps the crop detections back and merges them.

Geometry conventions (all values integer pixels of the original frame):

* a tile is ``x1, y1, x2, y2`` **half-open**: it holds columns ``x1 .. x2 - 1`` and rows
  ``y1 .. y2 - 1``, so ``image[y1:y2, x1:x2]`` is the tile and its size is
  ``(x2 - x1, y2 - y1)``;
* sizes are ``(width, height)`` (``_wh``).

Grid rule along one axis of length ``L`` with tile size ``t`` and overlap ``o``
(``0 <= o < t``): the tile is first clipped to the frame (``t = min(t, L)``); the
step is ``s = t - o``; there are ``n = 1`` tile if ``t == L``, else
``n = ceil((L - t) / s) + 1`` tiles starting at ``min(i * s, L - t)``. Every tile has
size ``t`` and lies inside the frame; the last tile is shifted inward, so it overlaps
its neighbour by *at least* ``o`` (SAHI shifts the last slice the same way). Tiles
are emitted in row-major order (top row first, left to right), so the grid is a
deterministic function of its arguments.

All functions are pure and thread-safe.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = ["auto_tile_wh", "grid_shape", "tile_grid"]

IntArray = npt.NDArray[np.int32]


def _check_wh(name: str, value: tuple[int, int]) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a (width, height) pair of ints, got {value!r}") from exc
    if w < 1 or h < 1:
        raise ValueError(f"{name} must be >= 1 pixel in both dims, got {tuple(value)}")
    return w, h


def _overlap_px(
    tile_wh: tuple[int, int], overlap_ratio: float | None, overlap_px: int | None
) -> tuple[int, int]:
    """Overlap in pixels per axis, validated against the requested tile size."""
    if overlap_ratio is not None and overlap_px is not None:
        raise ValueError("give at most one of overlap_ratio and overlap_px, got both")
    if overlap_px is not None:
        o = int(overlap_px)
        if o != overlap_px or o < 0:
            raise ValueError(f"overlap_px must be an int >= 0, got {overlap_px!r}")
        if o >= min(tile_wh):
            raise ValueError(
                f"overlap_px must be in [0, {min(tile_wh)}) (smaller than the tile), got {o}"
            )
        return o, o
    r = 0.0 if overlap_ratio is None else float(overlap_ratio)
    if not 0.0 <= r < 1.0:
        raise ValueError(f"overlap_ratio must be in [0, 1), got {overlap_ratio}")
    # floor keeps o < t for every t >= 1 and r < 1.
    return math.floor(r * tile_wh[0]), math.floor(r * tile_wh[1])


def _axis_count(length: int, tile: int, overlap: int) -> int:
    t = min(tile, length)
    if t >= length:
        return 1
    step = tile - overlap  # overlap < tile, so step >= 1
    return -(-(length - t) // step) + 1


def _axis_starts(length: int, tile: int, overlap: int) -> npt.NDArray[np.int64]:
    t = min(tile, length)
    n = _axis_count(length, tile, overlap)
    step = tile - overlap
    return np.minimum(np.arange(n, dtype=np.int64) * step, length - t)


def _scaled_tile(
    image_wh: tuple[int, int],
    tile_wh: tuple[int, int],
    overlap_ratio: float | None,
    overlap_px: int | None,
    max_tiles: int,
) -> tuple[tuple[int, int], tuple[int, int]]:
    """Smallest aspect-preserving enlargement of the tile whose grid has <= max_tiles."""
    (iw, ih), (tw, th) = image_wh, tile_wh
    long0, short0 = (tw, th) if tw >= th else (th, tw)
    # Past this size both axes are clipped to the frame: a single tile, always enough.
    limit = max(long0, math.ceil(max(iw / tw, ih / th) * long0))
    for long_side in range(long0, limit + 1):
        short_side = -(-long_side * short0 // long0)  # ceil, keeps the aspect ratio
        cand = (long_side, short_side) if tw >= th else (short_side, long_side)
        ov = _overlap_px(cand, overlap_ratio, overlap_px)
        n = _axis_count(iw, cand[0], ov[0]) * _axis_count(ih, cand[1], ov[1])
        if n <= max_tiles:
            return cand, ov
    cand = (max(iw, tw), max(ih, th))  # unreachable in practice; one tile
    return cand, _overlap_px(cand, overlap_ratio, overlap_px)


def _resolve(
    image_wh: tuple[int, int],
    tile_wh: tuple[int, int],
    overlap_ratio: float | None,
    overlap_px: int | None,
    max_tiles: int | None,
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    iw, ih = _check_wh("image_wh", image_wh)
    tw, th = _check_wh("tile_wh", tile_wh)
    ov = _overlap_px((tw, th), overlap_ratio, overlap_px)
    if max_tiles is not None:
        if int(max_tiles) != max_tiles or int(max_tiles) < 1:
            raise ValueError(f"max_tiles must be an int >= 1 or None, got {max_tiles!r}")
        n = _axis_count(iw, tw, ov[0]) * _axis_count(ih, th, ov[1])
        if n > int(max_tiles):
            (tw, th), ov = _scaled_tile((iw, ih), (tw, th), overlap_ratio, overlap_px, max_tiles)
    return (iw, ih), (tw, th), ov


def grid_shape(
    image_wh: tuple[int, int],
    tile_wh: tuple[int, int],
    overlap_ratio: float | None = None,
    overlap_px: int | None = None,
    max_tiles: int | None = None,
) -> tuple[int, int]:
    """Number of tile columns and rows, ``(nx, ny)``, that :func:`tile_grid` would emit.

    Takes the same arguments (and raises the same errors) as :func:`tile_grid`.
    """
    (iw, ih), (tw, th), (ox, oy) = _resolve(image_wh, tile_wh, overlap_ratio, overlap_px, max_tiles)
    return _axis_count(iw, tw, ox), _axis_count(ih, th, oy)


def tile_grid(
    image_wh: tuple[int, int],
    tile_wh: tuple[int, int],
    overlap_ratio: float | None = None,
    overlap_px: int | None = None,
    max_tiles: int | None = None,
) -> IntArray:
    """Overlapping tiles that cover a frame exactly (SAHI slicing, Akyon et al. 2022).

    Args:
        image_wh: ``(width, height)`` of the frame, pixels, both >= 1.
        tile_wh: ``(width, height)`` of a tile, pixels, both >= 1. A tile larger than
            the frame along an axis is clipped to the frame along that axis.
        overlap_ratio: Overlap between neighbouring tiles as a fraction of the tile
            size, in [0, 1); ``floor(ratio * tile)`` pixels per axis.
        overlap_px: Overlap between neighbouring tiles, pixels, in ``[0, min(tile_wh))``.
            At most one of ``overlap_ratio`` / ``overlap_px`` may be given; neither
            means no overlap.
        max_tiles: Budget of tiles, >= 1, or None for no budget. When the grid needs
            more tiles, the tile is enlarged by the smallest factor that keeps its
            aspect ratio (long side grown one pixel at a time, short side
            ``ceil(long * short0 / long0)``), with the overlap recomputed for the new
            size (same ratio, or the same ``overlap_px``), until the grid has at most
            ``max_tiles`` tiles. The frame is then still covered; tiles larger than
            the model input are downscaled by the detector's letterbox.

    Returns:
        ``(T, 4) int32`` tiles ``x1, y1, x2, y2`` in frame pixels, half-open
        (``image[y1:y2, x1:x2]``), row-major order, all of one size, inside the frame,
        covering every pixel; neighbours overlap by at least the requested overlap.

    Raises:
        ValueError: if a size is not positive, an overlap is out of range, both
            overlaps are given, or ``max_tiles`` is < 1.
    """
    (iw, ih), (tw, th), (ox, oy) = _resolve(image_wh, tile_wh, overlap_ratio, overlap_px, max_tiles)
    xs = _axis_starts(iw, tw, ox)
    ys = _axis_starts(ih, th, oy)
    w, h = min(tw, iw), min(th, ih)
    y_grid, x_grid = np.meshgrid(ys, xs, indexing="ij")  # row-major: y outer, x inner
    x1, y1 = x_grid.reshape(-1), y_grid.reshape(-1)
    return np.stack([x1, y1, x1 + w, y1 + h], axis=1).astype(np.int32)


def auto_tile_wh(image_wh: tuple[int, int], model_input_wh: tuple[int, int]) -> tuple[int, int]:
    """Pick the tile size for a model: its input size, clipped to the frame.

    Tiles of the model's input size are letterboxed at scale 1, so small objects
    keep every pixel (no downscaling), which is the point of slicing (SAHI).

    Args:
        image_wh: ``(width, height)`` of the frame, pixels, both >= 1.
        model_input_wh: ``(width, height)`` of the model input, pixels, both >= 1.

    Returns:
        ``(width, height)`` of the tile, pixels: ``min(model, frame)`` per axis.

    Raises:
        ValueError: if a size is not positive.
    """
    iw, ih = _check_wh("image_wh", image_wh)
    mw, mh = _check_wh("model_input_wh", model_input_wh)
    return min(mw, iw), min(mh, ih)
