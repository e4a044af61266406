"""Letterbox geometry, letterboxed images, input tensors and the inverse box map."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.preprocess.letterbox import (
    Letterbox,
    compute_letterbox,
    letterbox_image,
    letterbox_to_tensor,
    to_input_tensor,
    unletterbox_xyxy,
)

# ----------------------------------------------------------------------------- geometry


@pytest.mark.parametrize(
    ("image_wh", "input_wh", "center", "scale", "pad_xy", "resized_wh"),
    [
        # Ultralytics bus.jpg: 810x1080 -> 640: r = 640/1080, 480x640, 80 px each side.
        ((810, 1080), (640, 640), True, 640 / 1080, (80, 0), (480, 640)),
        ((810, 1080), (640, 640), False, 640 / 1080, (0, 0), (480, 640)),
        # YOLOX bus.jpg at 416: r = 416/1080, 312x416 top-left.
        ((810, 1080), (416, 416), False, 416 / 1080, (0, 0), (312, 416)),
        # Landscape 1920x1080 -> 640: 640x360, 140 px above and below.
        ((1920, 1080), (640, 640), True, 1 / 3, (0, 140), (640, 360)),
        # Odd padding: 100x99 -> 64: r = 0.64, 64x63; 1 px split as round(0.5-0.1)=0 above.
        ((100, 99), (64, 64), True, 0.64, (0, 0), (64, 63)),
        # Upscaling a small image.
        ((32, 16), (64, 64), True, 2.0, (0, 16), (64, 32)),
        # Already the input size.
        ((640, 640), (640, 640), True, 1.0, (0, 0), (640, 640)),
        # Non-square input.
        ((640, 480), (320, 192), True, 0.4, (32, 0), (256, 192)),
    ],
)
def test_compute_letterbox_table(image_wh, input_wh, center, scale, pad_xy, resized_wh):
    lb = compute_letterbox(image_wh, input_wh, center=center)
    assert lb.scale == pytest.approx(scale)
    assert (lb.pad_x_px, lb.pad_y_px) == pad_xy
    assert lb.resized_wh == resized_wh
    assert lb.input_wh == input_wh
    assert lb.image_wh == image_wh


@pytest.mark.parametrize(
    ("image_wh", "input_wh"),
    [((0, 10), (640, 640)), ((10, -1), (640, 640)), ((10, 10), (0, 640))],
)
def test_compute_letterbox_rejects_non_positive_sizes(image_wh, input_wh):
    with pytest.raises(ValueError, match="positive"):
        compute_letterbox(image_wh, input_wh, center=True)


def test_letterbox_is_frozen():
    lb = compute_letterbox((10, 10), (20, 20), center=True)
    with pytest.raises(AttributeError):
        lb.scale = 2.0  # type: ignore[misc]


@given(
    w=st.integers(1, 2000),
    h=st.integers(1, 2000),
    sw=st.integers(1, 700),
    sh=st.integers(1, 700),
    center=st.booleans(),
)
def test_letterbox_fits_inside_input(w, h, sw, sh, center):
    lb = compute_letterbox((w, h), (sw, sh), center=center)
    rw, rh = lb.resized_wh
    assert 1 <= rw <= sw and 1 <= rh <= sh
    assert lb.pad_x_px >= 0 and lb.pad_x_px + rw <= sw
    assert lb.pad_y_px >= 0 and lb.pad_y_px + rh <= sh
    # One side fills the input (up to rounding).
    assert rw == sw or rh == sh or abs(rw - w * lb.scale) <= 0.5 or abs(rh - h * lb.scale) <= 0.5
    if center:
        assert abs((sw - rw - lb.pad_x_px) - lb.pad_x_px) <= 1
        assert abs((sh - rh - lb.pad_y_px) - lb.pad_y_px) <= 1
    else:
        assert (lb.pad_x_px, lb.pad_y_px) == (0, 0)


# ----------------------------------------------------------------------------- images


def _random_image(w: int, h: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("center", [True, False])
def test_letterbox_image_places_resized_image_and_pads_with_114(center):
    img = _random_image(90, 60)
    lb = compute_letterbox((90, 60), (64, 64), center=center)
    out = letterbox_image(img, lb)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    rw, rh = lb.resized_wh
    x0, y0 = lb.pad_x_px, lb.pad_y_px
    expected = cv2.resize(img, (rw, rh), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(out[y0 : y0 + rh, x0 : x0 + rw], expected)
    mask = np.ones((64, 64), bool)
    mask[y0 : y0 + rh, x0 : x0 + rw] = False
    assert mask.any()
    assert (out[mask] == 114).all()
    if not center:
        assert (x0, y0) == (0, 0)


def test_letterbox_image_custom_pad_value():
    img = _random_image(20, 10)
    lb = compute_letterbox((20, 10), (20, 20), center=True)
    out = letterbox_image(img, lb, pad_value=0)
    assert (out[:5] == 0).all() and (out[15:] == 0).all()


@pytest.mark.parametrize(
    ("image", "match"),
    [
        (np.zeros((10, 20), np.uint8), "uint8"),
        (np.zeros((10, 20, 3), np.float32), "uint8"),
        (np.zeros((11, 20, 3), np.uint8), "letterbox"),
    ],
)
def test_letterbox_image_rejects_bad_images(image, match):
    lb = compute_letterbox((20, 10), (32, 32), center=True)
    with pytest.raises(ValueError, match=match):
        letterbox_image(image, lb)


# ----------------------------------------------------------------------------- tensors


def test_to_input_tensor_rgb_div255_matches_blob_from_image():
    img = _random_image(64, 48)
    tensor = to_input_tensor(img, swap_rb=True, scale=1 / 255)
    blob = cv2.dnn.blobFromImage(img, 1 / 255, swapRB=True)[0]
    assert tensor.shape == (3, 48, 64) and tensor.dtype == np.float32
    np.testing.assert_allclose(tensor, blob, rtol=0, atol=1e-6)
    # Channel 0 is red = BGR channel 2.
    np.testing.assert_allclose(tensor[0], img[:, :, 2] / 255, atol=1e-6)


def test_to_input_tensor_bgr_raw_keeps_values():
    img = _random_image(32, 16)
    tensor = to_input_tensor(img, swap_rb=False, scale=1.0)
    np.testing.assert_array_equal(tensor, img.transpose(2, 0, 1).astype(np.float32))


def test_to_input_tensor_writes_into_out():
    img = _random_image(32, 16)
    batch = np.zeros((2, 3, 16, 32), np.float32)
    result = to_input_tensor(img, swap_rb=True, scale=1 / 255, out=batch[1])
    assert np.shares_memory(result, batch)
    np.testing.assert_array_equal(batch[1], to_input_tensor(img, swap_rb=True, scale=1 / 255))
    assert (batch[0] == 0).all()


@pytest.mark.parametrize(
    "out",
    [
        np.zeros((3, 16, 31), np.float32),
        np.zeros((3, 16, 32), np.float64),
        np.zeros((3, 32, 32), np.float32)[:, ::2],
    ],
)
def test_to_input_tensor_rejects_bad_out(out):
    with pytest.raises(ValueError, match="out must be"):
        to_input_tensor(_random_image(32, 16), swap_rb=True, scale=1.0, out=out)


@settings(max_examples=60, deadline=None)
@given(
    w=st.integers(1, 300),
    h=st.integers(1, 300),
    sw=st.sampled_from([32, 64, 96, 128]),
    sh=st.sampled_from([32, 64, 128]),
    center=st.booleans(),
    swap_rb=st.booleans(),
    scale=st.sampled_from([1.0, 1 / 255]),
    pad_value=st.sampled_from([0, 114, 255]),
    seed=st.integers(0, 2**16),
)
def test_fused_letterbox_to_tensor_equals_two_step(
    w, h, sw, sh, center, swap_rb, scale, pad_value, seed
):
    img = _random_image(w, h, seed)
    lb = compute_letterbox((w, h), (sw, sh), center=center)
    two_step = to_input_tensor(letterbox_image(img, lb, pad_value), swap_rb=swap_rb, scale=scale)
    out = np.full((3, sh, sw), np.nan, np.float32)
    fused = letterbox_to_tensor(img, lb, swap_rb=swap_rb, scale=scale, pad_value=pad_value, out=out)
    assert fused is out
    np.testing.assert_array_equal(fused, two_step)


# ----------------------------------------------------------------------------- inverse map


def _forward(xyxy: np.ndarray, lb: Letterbox) -> np.ndarray:
    out = xyxy.astype(np.float64) * lb.scale
    out[:, 0::2] += lb.pad_x_px
    out[:, 1::2] += lb.pad_y_px
    return out


@given(
    w=st.integers(8, 2000),
    h=st.integers(8, 2000),
    center=st.booleans(),
    fx=st.lists(st.floats(0, 1), min_size=4, max_size=4),
)
def test_unletterbox_inverts_the_forward_map(w, h, center, fx):
    lb = compute_letterbox((w, h), (640, 640), center=center)
    x1, x2 = sorted([fx[0] * w, fx[1] * w])
    y1, y2 = sorted([fx[2] * h, fx[3] * h])
    boxes = np.array([[x1, y1, x2, y2]], np.float32)
    back = unletterbox_xyxy(_forward(boxes, lb), lb)
    assert back.dtype == np.float32 and back.shape == (1, 4)
    np.testing.assert_allclose(back, boxes, atol=1e-3 * max(w, h))


def test_unletterbox_clips_to_image_and_can_skip_clipping():
    lb = compute_letterbox((810, 1080), (640, 640), center=True)  # pad_x 80
    boxes = np.array([[70.0, -5.0, 600.0, 700.0]], np.float32)
    clipped = unletterbox_xyxy(boxes, lb)
    np.testing.assert_allclose(clipped, [[0.0, 0.0, 810.0, 1080.0]])
    raw = unletterbox_xyxy(boxes, lb, clip=False)
    np.testing.assert_allclose(
        raw, [[(70 - 80) / lb.scale, -5 / lb.scale, 520 / lb.scale, 700 / lb.scale]], rtol=1e-6
    )


def test_unletterbox_does_not_modify_its_input_and_handles_empty():
    lb = compute_letterbox((100, 50), (64, 64), center=True)
    boxes = np.array([[10.0, 20.0, 30.0, 40.0]], np.float32)
    before = boxes.copy()
    unletterbox_xyxy(boxes, lb)
    np.testing.assert_array_equal(boxes, before)
    assert unletterbox_xyxy(np.zeros((0, 4), np.float32), lb).shape == (0, 4)
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        unletterbox_xyxy(np.zeros((3,), np.float32), lb)


@pytest.mark.parametrize("center", [True, False])
def test_rectangle_found_in_letterbox_maps_back_to_its_image_position(center):
    """End to end on pixels: draw a box, letterbox, locate it, map it back."""
    img = np.zeros((1080, 810, 3), np.uint8)
    x1, y1, x2, y2 = 200, 300, 500, 900
    img[y1:y2, x1:x2] = 255
    lb = compute_letterbox((810, 1080), (640, 640), center=center)
    boxed = letterbox_image(img, lb, pad_value=0)
    ys, xs = np.nonzero(boxed[:, :, 0] > 127)
    found = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32)
    back = unletterbox_xyxy(found, lb)
    np.testing.assert_allclose(back, [[x1, y1, x2, y2]], atol=1.5 / lb.scale)
