"""Letterbox geometry and the CPU reference preprocessing for YOLO-family detectors.

A letterbox scales an image by one factor ``r`` (aspect ratio kept) so that it fits
inside the model input, then pads the rest with a constant grey. Two placements are
in use:

* centred (Ultralytics ``LetterBox(center=True)``): the padding is split between
  both sides, rounded as Ultralytics does (``round(d/2 - 0.1)`` before, the rest after);
* top-left (Megvii YOLOX ``preproc``): the image sits at the origin and all padding is
  on the right and at the bottom.

Coordinate frames: *image pixels* are pixels of the original (decoded) frame;
*input pixels* are pixels of the letterboxed model input. The map between them is
``input = image * scale + pad`` and its inverse :func:`unletterbox_xyxy`.

All functions are pure (no module state) and thread-safe; the only memory they
write is their return value or a caller-supplied ``out`` array.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import cv2
import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
ImageBGR = npt.NDArray[np.uint8]

__all__ = [
    "Letterbox",
    "compute_letterbox",
    "letterbox_image",
    "letterbox_to_tensor",
    "to_input_tensor",
    "unletterbox_xyxy",
]


@dataclass(frozen=True)
class Letterbox:
    """Parameters of one letterbox transform (original image → model input).

    Attributes:
        scale: Factor ``r`` applied to image pixels, ``min(in_w / w, in_h / h)``.
        pad_x_px: Columns of padding left of the resized image, input pixels.
        pad_y_px: Rows of padding above the resized image, input pixels.
        input_wh: ``(width, height)`` of the model input, pixels.
        image_wh: ``(width, height)`` of the original image, pixels.
    """

    scale: float
    pad_x_px: int
    pad_y_px: int
    input_wh: tuple[int, int]
    image_wh: tuple[int, int]

    @property
    def resized_wh(self) -> tuple[int, int]:
        """``(width, height)`` of the resized image inside the input, pixels."""
        return _resized_wh(self.image_wh, self.input_wh, self.scale)


def _resized_wh(
    image_wh: tuple[int, int], input_wh: tuple[int, int], scale: float
) -> tuple[int, int]:
    w = min(max(round(image_wh[0] * scale), 1), input_wh[0])
    h = min(max(round(image_wh[1] * scale), 1), input_wh[1])
    return int(w), int(h)


def compute_letterbox(
    image_wh: tuple[int, int], input_wh: tuple[int, int], center: bool
) -> Letterbox:
    """Compute the letterbox that fits an image into a model input.

    Args:
        image_wh: ``(width, height)`` of the original image, pixels, both > 0.
        input_wh: ``(width, height)`` of the model input, pixels, both > 0.
        center: True to centre the resized image (Ultralytics); False to place it at
            the top-left corner (YOLOX).

    Returns:
        The :class:`Letterbox`. Rounding follows Ultralytics: the resized size is
        ``round(w * r), round(h * r)`` and the leading pad is ``round(d / 2 - 0.1)``
        where ``d`` is the total padding along that axis.

    Raises:
        ValueError: if a size is not positive.
    """
    iw, ih = int(image_wh[0]), int(image_wh[1])
    sw, sh = int(input_wh[0]), int(input_wh[1])
    if iw <= 0 or ih <= 0:
        raise ValueError(f"image_wh must be positive, got {tuple(image_wh)}")
    if sw <= 0 or sh <= 0:
        raise ValueError(f"input_wh must be positive, got {tuple(input_wh)}")
    scale = min(sw / iw, sh / ih)
    rw, rh = _resized_wh((iw, ih), (sw, sh), scale)
    if center:
        pad_x = round((sw - rw) / 2 - 0.1)
        pad_y = round((sh - rh) / 2 - 0.1)
    else:
        pad_x = pad_y = 0
    return Letterbox(
        scale=float(scale),
        pad_x_px=max(int(pad_x), 0),
        pad_y_px=max(int(pad_y), 0),
        input_wh=(sw, sh),
        image_wh=(iw, ih),
    )


def _check_image(image_bgr: np.ndarray, lb: Letterbox) -> None:
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.dtype != np.uint8:
        raise ValueError(
            f"image must be (H, W, 3) uint8, got {tuple(image_bgr.shape)} {image_bgr.dtype}"
        )
    if (image_bgr.shape[1], image_bgr.shape[0]) != lb.image_wh:
        raise ValueError(
            f"image is {image_bgr.shape[1]}x{image_bgr.shape[0]} (WxH) but the letterbox "
            f"was computed for {lb.image_wh[0]}x{lb.image_wh[1]}"
        )


def _resize(image_bgr: ImageBGR, lb: Letterbox) -> ImageBGR:
    rw, rh = lb.resized_wh
    if (image_bgr.shape[1], image_bgr.shape[0]) == (rw, rh):
        return image_bgr
    return cast(ImageBGR, cv2.resize(image_bgr, (rw, rh), interpolation=cv2.INTER_LINEAR))


def letterbox_image(image_bgr: ImageBGR, lb: Letterbox, pad_value: int = 114) -> ImageBGR:
    """Resize (``cv2.INTER_LINEAR``) and pad an image as described by ``lb``.

    Args:
        image_bgr: ``(H, W, 3) uint8`` image whose size is ``lb.image_wh``.
        lb: Letterbox from :func:`compute_letterbox`.
        pad_value: Grey level (0–255) of the padding, all three channels.

    Returns:
        ``(in_h, in_w, 3) uint8`` letterboxed image, same channel order as the input.

    Raises:
        ValueError: if the image is not ``(H, W, 3) uint8`` or its size differs from
            ``lb.image_wh``.
    """
    _check_image(image_bgr, lb)
    resized = _resize(image_bgr, lb)
    rw, rh = lb.resized_wh
    sw, sh = lb.input_wh
    padded = cv2.copyMakeBorder(
        resized,
        lb.pad_y_px,
        sh - rh - lb.pad_y_px,
        lb.pad_x_px,
        sw - rw - lb.pad_x_px,
        cv2.BORDER_CONSTANT,
        value=(pad_value, pad_value, pad_value),
    )
    return cast(ImageBGR, padded)


def _output(out: FloatArray | None, shape: tuple[int, int, int]) -> FloatArray:
    if out is None:
        return np.empty(shape, np.float32)
    if out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(
            f"out must be a C-contiguous {shape} float32 array, got {tuple(out.shape)} {out.dtype}"
        )
    return out


def _convert(src: ImageBGR, swap_rb: bool, scale: float, dst: FloatArray) -> None:
    """Write ``src`` (h, w, 3) uint8 into ``dst`` (3, h, w) float32, channel-swapped, scaled."""
    chw = src.transpose(2, 0, 1)
    if swap_rb:
        chw = chw[::-1]
    if scale == 1.0:
        np.copyto(dst, chw, casting="unsafe")
    else:
        np.multiply(chw, np.float32(scale), out=dst, casting="unsafe")


def to_input_tensor(
    image: ImageBGR,
    *,
    swap_rb: bool,
    scale: float,
    out: FloatArray | None = None,
) -> FloatArray:
    """Convert a letterboxed image to a model input tensor in one fused pass.

    Args:
        image: ``(H, W, 3) uint8`` image (normally from :func:`letterbox_image`), BGR.
        swap_rb: True to emit RGB channel order (Ultralytics), False to keep BGR (YOLOX).
        scale: Factor applied to the 0–255 values: ``1 / 255`` (Ultralytics) or
            ``1.0`` (YOLOX, raw values).
        out: Optional preallocated C-contiguous ``(3, H, W) float32`` array (for example
            one row of a batch) that receives the result.

    Returns:
        ``(3, H, W) float32`` tensor (``out`` itself when given).

    Raises:
        ValueError: if ``image`` is not ``(H, W, 3) uint8`` or ``out`` has the wrong
            shape, dtype or memory layout.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8, got {tuple(image.shape)} {image.dtype}")
    h, w = image.shape[:2]
    dst = _output(out, (3, h, w))
    _convert(image, swap_rb, scale, dst)
    return dst


def letterbox_to_tensor(
    image_bgr: ImageBGR,
    lb: Letterbox,
    *,
    swap_rb: bool,
    scale: float,
    pad_value: int = 114,
    out: FloatArray | None = None,
) -> FloatArray:
    """Letterbox an image straight into a model input tensor (fast path).

    Equal, value for value, to
    ``to_input_tensor(letterbox_image(image_bgr, lb, pad_value), swap_rb=..., scale=...)``
    but it converts only the resized region and fills the padding with a constant,
    skipping the padded uint8 intermediate.

    Args:
        image_bgr: ``(H, W, 3) uint8`` BGR image whose size is ``lb.image_wh``.
        lb: Letterbox from :func:`compute_letterbox`.
        swap_rb: True for RGB channel order in the tensor, False for BGR.
        scale: Factor applied to the 0–255 values (``1 / 255`` or ``1.0``).
        pad_value: Grey level (0–255) of the padding before scaling.
        out: Optional preallocated C-contiguous ``(3, in_h, in_w) float32`` array.

    Returns:
        ``(3, in_h, in_w) float32`` tensor (``out`` itself when given).

    Raises:
        ValueError: on a wrong image shape/dtype/size or a wrong ``out``.
    """
    _check_image(image_bgr, lb)
    sw, sh = lb.input_wh
    rw, rh = lb.resized_wh
    dst = _output(out, (3, sh, sw))
    resized = _resize(image_bgr, lb)
    x0, y0 = lb.pad_x_px, lb.pad_y_px
    x1, y1 = x0 + rw, y0 + rh
    fill = np.float32(np.float32(pad_value) * np.float32(scale)) if scale != 1.0 else pad_value
    dst[:, :y0, :] = fill
    dst[:, y1:, :] = fill
    dst[:, y0:y1, :x0] = fill
    dst[:, y0:y1, x1:] = fill
    _convert(resized, swap_rb, scale, dst[:, y0:y1, x0:x1])
    return dst


def unletterbox_xyxy(
    xyxy: npt.ArrayLike, lb: Letterbox, clip: bool = True
) -> npt.NDArray[np.float32]:
    """Map boxes from input pixels back to original-image pixels.

    ``image = (input - pad) / scale``, then (optionally) clip to
    ``[0, image_w] x [0, image_h]``.

    Args:
        xyxy: ``(N, 4)`` boxes ``x1, y1, x2, y2`` in letterboxed input pixels.
        lb: Letterbox used to make the input.
        clip: Clip the boxes to the original image.

    Returns:
        New ``(N, 4) float32`` array of boxes in original-image pixels.

    Raises:
        ValueError: if ``xyxy`` is not ``(N, 4)``.
    """
    boxes = np.array(xyxy, dtype=np.float32, copy=True)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"xyxy must be (N, 4), got {tuple(boxes.shape)}")
    boxes[:, 0::2] -= np.float32(lb.pad_x_px)
    boxes[:, 1::2] -= np.float32(lb.pad_y_px)
    boxes /= np.float32(lb.scale)
    if clip:
        np.clip(boxes[:, 0::2], 0.0, np.float32(lb.image_wh[0]), out=boxes[:, 0::2])
        np.clip(boxes[:, 1::2], 0.0, np.float32(lb.image_wh[1]), out=boxes[:, 1::2])
    return boxes
