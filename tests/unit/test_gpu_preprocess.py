"""Torch letterbox (the GPU path) against the CPU reference, on CPU torch.

The geometry must be identical (the same Letterbox object), the padding bit-identical,
and resized pixels within one grey level of OpenCV's (fixed-point vs float bilinear).
"""

from __future__ import annotations

import numpy as np
import pytest

from streamer.errors import BackendError
from streamer.preprocess.letterbox import compute_letterbox, letterbox_to_tensor

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

from streamer.preprocess.gpu import TorchLetterbox, parse_device  # noqa: E402

LAYOUTS = {  # center, swap_rb, scale (as streamer.detect.decoders.LAYOUTS)
    "ultralytics": (True, True, 1 / 255),
    "yolox": (False, False, 1.0),
}


def _image(w: int, h: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # smooth content plus noise: both interpolation extremes are exercised
    yy, xx = np.mgrid[0:h, 0:w]
    base = (np.sin(xx / 7.0) + np.cos(yy / 5.0)) * 60 + 128
    img = base[..., None] + rng.normal(0, 25, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize(
    ("image_wh", "input_wh"),
    [
        ((480, 360), (640, 640)),  # upscale, landscape
        ((480, 360), (416, 416)),  # downscale
        ((810, 1080), (640, 640)),  # portrait
        ((640, 640), (640, 640)),  # no resize: bit-identical
        ((100, 99), (64, 64)),  # odd padding
        ((1920, 1080), (320, 192)),  # non-square input
    ],
)
def test_matches_cpu_reference_within_one_grey_level(layout, image_wh, input_wh):
    center, swap, scale = LAYOUTS[layout]
    img = _image(*image_wh)
    lb = compute_letterbox(image_wh, input_wh, center=center)
    ref = letterbox_to_tensor(img, lb, swap_rb=swap, scale=scale)
    tl = TorchLetterbox(input_wh, center=center, swap_rb=swap, scale=scale, device="cpu")
    got, got_lb = tl(img)
    assert got_lb == lb
    assert tuple(got.shape) == ref.shape and got.dtype == torch.float32
    diff = np.abs(got.numpy() - ref) / scale  # in grey levels
    assert diff.max() <= 1.0 + 1e-3
    # padding is bit-identical
    rw, rh = lb.resized_wh
    inside = np.zeros(ref.shape[1:], bool)
    inside[lb.pad_y_px : lb.pad_y_px + rh, lb.pad_x_px : lb.pad_x_px + rw] = True
    assert np.array_equal(got.numpy()[:, ~inside], ref[:, ~inside])
    if (rw, rh) == image_wh:
        assert np.array_equal(got.numpy(), ref)


def test_batch_equals_single_calls_and_handles_mixed_sizes():
    center, swap, scale = LAYOUTS["ultralytics"]
    tl = TorchLetterbox((320, 320), center=center, swap_rb=swap, scale=scale, device="cpu")
    images = [_image(480, 360, 1), _image(200, 300, 2), _image(480, 360, 3)]
    batch, lbs = tl.batch(images)
    assert tuple(batch.shape) == (3, 3, 320, 320)
    for i, img in enumerate(images):
        one, lb = tl(img)
        assert lb == lbs[i]
        assert torch.equal(batch[i], one)


def test_read_only_frames_and_float16_output():
    img = _image(64, 48)
    img.setflags(write=False)  # frames from sources are read-only
    tl = TorchLetterbox(
        (32, 32), center=True, swap_rb=True, scale=1 / 255, device="cpu", dtype="float16"
    )
    out, _ = tl(img)
    assert out.dtype == torch.float16


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"input_wh": (0, 640)}, ValueError, "positive"),
        ({"pad_value": 300}, ValueError, "pad_value"),
        ({"dtype": "int8"}, ValueError, "dtype"),
        ({"device": "tpu"}, BackendError, "device"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    args = {
        "input_wh": (64, 64),
        "center": True,
        "swap_rb": True,
        "scale": 1 / 255,
        "device": "cpu",
        **kwargs,
    }
    with pytest.raises(error, match=match):
        TorchLetterbox(**args)


def test_bad_image():
    tl = TorchLetterbox((32, 32), center=True, swap_rb=True, scale=1.0, device="cpu")
    with pytest.raises(ValueError, match="uint8"):
        tl(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="empty"):
        tl.batch([])


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_device_without_cuda_is_a_clear_error():
    with pytest.raises(BackendError, match=r"CUDA is not available.*use device: cpu"):
        parse_device("cuda:0")
