"""Tile grid geometry: table tests and Hypothesis invariants (SAHI slicing)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.slicing import auto_tile_wh, grid_shape, tile_grid

# image_wh, tile_wh, kwargs, expected tiles (x1, y1, x2, y2) or an exception type
CASES: list[tuple[tuple[int, int], tuple[int, int], dict, object]] = [
    ((10, 10), (10, 10), {}, [(0, 0, 10, 10)]),
    ((10, 4), (20, 20), {}, [(0, 0, 10, 4)]),  # tile larger than the frame: clipped
    ((10, 5), (5, 5), {}, [(0, 0, 5, 5), (5, 0, 10, 5)]),
    ((12, 5), (5, 5), {}, [(0, 0, 5, 5), (5, 0, 10, 5), (7, 0, 12, 5)]),  # last shifted in
    ((8, 5), (5, 5), {"overlap_px": 2}, [(0, 0, 5, 5), (3, 0, 8, 5)]),
    ((8, 8), (5, 5), {"overlap_px": 2}, [(0, 0, 5, 5), (3, 0, 8, 5), (0, 3, 5, 8), (3, 3, 8, 8)]),
    ((10, 5), (5, 5), {"overlap_ratio": 0.2}, [(0, 0, 5, 5), (4, 0, 9, 5), (5, 0, 10, 5)]),
    (
        (1920, 1080),
        (640, 640),
        {"overlap_ratio": 0.2},
        [(x, y, x + 640, y + 640) for y in (0, 440) for x in (0, 512, 1024, 1280)],
    ),
    # max_tiles: the 3x1 grid needs 3 tiles; budget 2 grows the square tile to 8 px
    # (6 and 7 px still need 3), clipped to the 5 px frame height.
    ((15, 5), (5, 5), {"max_tiles": 2}, [(0, 0, 8, 5), (7, 0, 15, 5)]),
    ((15, 5), (5, 5), {"max_tiles": 1}, [(0, 0, 15, 5)]),
    ((0, 5), (5, 5), {}, ValueError),
    ((5, 5), (0, 5), {}, ValueError),
    ((5, 5), (5, 5), {"overlap_ratio": 1.0}, ValueError),
    ((5, 5), (5, 5), {"overlap_ratio": -0.1}, ValueError),
    ((5, 5), (5, 5), {"overlap_px": 5}, ValueError),
    ((5, 5), (5, 5), {"overlap_px": -1}, ValueError),
    ((5, 5), (5, 5), {"overlap_px": 1, "overlap_ratio": 0.1}, ValueError),
    ((5, 5), (5, 5), {"max_tiles": 0}, ValueError),
]


@pytest.mark.parametrize(("image_wh", "tile_wh", "kwargs", "expected"), CASES)
def test_tile_grid_table(image_wh, tile_wh, kwargs, expected) -> None:
    if isinstance(expected, type) and issubclass(expected, Exception):
        with pytest.raises(expected):
            tile_grid(image_wh, tile_wh, **kwargs)
        return
    tiles = tile_grid(image_wh, tile_wh, **kwargs)
    assert tiles.dtype == np.int32 and tiles.ndim == 2 and tiles.shape[1] == 4
    assert tiles.tolist() == [list(t) for t in expected]
    _assert_covers(tiles, image_wh)


def test_error_messages_name_the_parameter() -> None:
    with pytest.raises(ValueError, match=r"overlap_ratio must be in \[0, 1\)"):
        tile_grid((10, 10), (5, 5), overlap_ratio=1.5)
    with pytest.raises(ValueError, match="max_tiles"):
        tile_grid((10, 10), (5, 5), max_tiles=0)
    with pytest.raises(ValueError, match="tile_wh"):
        tile_grid((10, 10), (5, -1))
    with pytest.raises(ValueError, match="image_wh"):
        auto_tile_wh((0, 10), (640, 640))


def test_auto_tile_wh_is_model_input_clipped_to_frame() -> None:
    assert auto_tile_wh((1920, 1080), (640, 640)) == (640, 640)
    assert auto_tile_wh((500, 300), (640, 640)) == (500, 300)
    assert auto_tile_wh((1920, 1080), (416, 320)) == (416, 320)


def test_grid_shape_matches_tile_grid() -> None:
    assert grid_shape((1920, 1080), (640, 640), overlap_ratio=0.2) == (4, 2)
    assert len(tile_grid((1920, 1080), (640, 640), overlap_ratio=0.2, max_tiles=4)) <= 4


def _assert_covers(tiles: np.ndarray, image_wh: tuple[int, int]) -> None:
    w, h = image_wh
    assert (tiles[:, 0] >= 0).all() and (tiles[:, 1] >= 0).all()
    assert (tiles[:, 2] <= w).all() and (tiles[:, 3] <= h).all()
    assert (tiles[:, 2] > tiles[:, 0]).all() and (tiles[:, 3] > tiles[:, 1]).all()
    # Coverage via a difference array (O(W*H) but frames here are small).
    cover = np.zeros((h + 1, w + 1), np.int32)
    for x1, y1, x2, y2 in tiles:
        cover[y1, x1] += 1
        cover[y1, x2] -= 1
        cover[y2, x1] -= 1
        cover[y2, x2] += 1
    counts = cover.cumsum(0).cumsum(1)[:h, :w]
    assert (counts >= 1).all(), "some pixel is not covered"


sizes = st.integers(min_value=1, max_value=300)


@settings(max_examples=200, deadline=None)
@given(
    iw=sizes,
    ih=sizes,
    tw=st.integers(1, 120),
    th=st.integers(1, 120),
    ratio=st.floats(0.0, 0.95, allow_nan=False),
    use_px=st.booleans(),
    px=st.integers(0, 119),
    max_tiles=st.none() | st.integers(1, 30),
)
def test_grid_invariants(iw, ih, tw, th, ratio, use_px, px, max_tiles) -> None:
    kwargs: dict = {"max_tiles": max_tiles}
    if use_px:
        kwargs["overlap_px"] = px % min(tw, th)
    else:
        kwargs["overlap_ratio"] = ratio
    tiles = tile_grid((iw, ih), (tw, th), **kwargs)
    _assert_covers(tiles, (iw, ih))
    if max_tiles is not None:
        assert len(tiles) <= max_tiles
    # All tiles have one size, at least the requested one (clipped to the frame).
    sizes_wh = np.unique(tiles[:, 2:] - tiles[:, :2], axis=0)
    assert len(sizes_wh) == 1
    sw, sh = sizes_wh[0]
    assert sw >= min(tw, iw) and sh >= min(th, ih)
    if max_tiles is None:
        assert (sw, sh) == (min(tw, iw), min(th, ih))
    # Row-major, deterministic, and neighbours overlap by at least the requested amount.
    nx, ny = grid_shape((iw, ih), (tw, th), **kwargs)
    assert nx * ny == len(tiles)
    assert np.array_equal(tiles, tile_grid((iw, ih), (tw, th), **kwargs))
    grid = tiles.reshape(ny, nx, 4)
    assert (np.diff(grid[:, :, 0], axis=1) > 0).all() and (np.diff(grid[:, :, 1], axis=0) > 0).all()
    if max_tiles is None:
        want_x = kwargs.get("overlap_px", int(np.floor(ratio * tw)) if not use_px else 0)
        want_y = kwargs.get("overlap_px", int(np.floor(ratio * th)) if not use_px else 0)
        if nx > 1:
            assert (grid[:, :-1, 2] - grid[:, 1:, 0] >= want_x).all()
        if ny > 1:
            assert (grid[:-1, :, 3] - grid[1:, :, 1] >= want_y).all()
