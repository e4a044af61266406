"""Letterbox preprocessing on a torch device (the GPU path), matching the CPU reference.

On a GPU, CPU preprocessing (resize, pad, normalise: 2–10 ms a frame) can cost more
than the inference itself. :class:`TorchLetterbox` uploads the ``uint8`` frame (from
pinned host memory, non-blocking: a quarter of the bytes of the float tensor) and does
the rest on the device: bilinear resize, padding, colour order, scaling and batching.

Parity with :mod:`streamer.preprocess.letterbox` (the CPU reference):

* the geometry is the same object: :func:`~streamer.preprocess.letterbox.compute_letterbox`
  gives the scale, resized size and padding of both paths, so boxes map back
  identically;
* resizing is bilinear with half-pixel centres and edge clamping, as
  ``cv2.resize(..., INTER_LINEAR)`` (no antialiasing in either); the result is rounded
  and clamped to 0–255 like the CPU path's ``uint8`` intermediate. OpenCV computes
  with 11-bit fixed-point weights, torch in float32, so a pixel can differ by one grey
  level (1/255 after normalisation); the padding and every pixel of an unresized frame
  are bit-identical. Measured on PETS09 frames: see
  ``tests/integration/test_gpu_preprocess_real.py``.

The same code runs on CPU torch (``device="cpu"``), which is how CI tests it.

CUDA streams: on a CUDA device each calling thread gets its own stream; the copy and
the kernels of one call are queued on it and the call waits for that stream only
before it returns (so the tensor it returns is ready for any other stream, and the
pipeline's inference thread keeps the GPU busy meanwhile). Tensors are returned on
the device; they are not tied to the stream after the call.

Thread-safety: a :class:`TorchLetterbox` may be called from several threads; streams
and pinned staging buffers are per thread.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from streamer.errors import BackendError
from streamer.preprocess.letterbox import Letterbox, compute_letterbox

__all__ = ["TorchLetterbox", "import_torch", "parse_device"]

Tensor = Any  # torch.Tensor; torch is an optional dependency


def import_torch(what: str) -> Any:
    """Import torch or raise a one-line :class:`BackendError` saying what needs it.

    Args:
        what: What needs torch, e.g. ``"backend 'torch'"`` or ``"preprocess: gpu"``.
    """
    try:
        import torch
    except ImportError as exc:
        raise BackendError(
            f"{what} needs the torch package: pip install 'streamer[gpu]' (on a Jetson: "
            "NVIDIA's PyTorch wheel for your JetPack, see README 'Jetson deployment')"
        ) from exc
    return torch


def parse_device(device: str, what: str = "device") -> Any:
    """A ``torch.device`` for ``cpu`` / ``cuda`` / ``cuda:N``, checked against this machine.

    Raises:
        BackendError: torch is missing, the string is not a device, or CUDA (or GPU
            ``N``) is not available here.
    """
    torch = import_torch(f"{what} {device!r}")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise BackendError(f"{what}: not a torch device: {device!r}") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise BackendError(
                f"{what} {device!r}: CUDA is not available (torch {torch.__version__}, "
                f"built with CUDA {torch.version.cuda or 'none'}); use device: cpu"
            )
        count = torch.cuda.device_count()
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        if index >= count:
            raise BackendError(f"{what} {device!r}: this machine has {count} CUDA device(s)")
        dev = torch.device("cuda", index)
    elif dev.type != "cpu":
        raise BackendError(f"{what}: only cpu and cuda[:N] are supported, got {device!r}")
    return dev


class TorchLetterbox:
    """Letterbox + normalise frames on a torch device.

    Args:
        input_wh: ``(width, height)`` of the model input, pixels.
        center: Centre the resized image (Ultralytics) or place it top-left (YOLOX).
        swap_rb: Emit RGB (True) or keep BGR (False).
        scale: Factor applied to 0–255 values (``1/255`` or ``1.0``).
        pad_value: Grey level of the padding, 0–255, before scaling.
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        dtype: ``"float32"`` or ``"float16"`` output.
        round_resized: Round the resized pixels to whole grey levels, as the CPU path's
            ``uint8`` intermediate does (default; False keeps float32 precision).

    Raises:
        BackendError: torch missing or the device unavailable.
        ValueError: a bad size, pad value or dtype.
    """

    def __init__(
        self,
        input_wh: tuple[int, int],
        *,
        center: bool,
        swap_rb: bool,
        scale: float,
        pad_value: int = 114,
        device: str = "cuda",
        dtype: str = "float32",
        round_resized: bool = True,
    ) -> None:
        torch = import_torch("GPU preprocessing (preprocess: gpu)")
        if input_wh[0] <= 0 or input_wh[1] <= 0:
            raise ValueError(f"input_wh must be positive, got {tuple(input_wh)}")
        if not 0 <= int(pad_value) <= 255:
            raise ValueError(f"pad_value must be in [0, 255], got {pad_value}")
        if dtype not in ("float32", "float16"):
            raise ValueError(f"dtype must be float32 or float16, got {dtype!r}")
        self.input_wh = (int(input_wh[0]), int(input_wh[1]))
        self.center = bool(center)
        self.swap_rb = bool(swap_rb)
        self.scale = float(scale)
        self.pad_value = int(pad_value)
        self.round_resized = bool(round_resized)
        self.device = parse_device(device, "preprocess device")
        self.dtype = torch.float16 if dtype == "float16" else torch.float32
        self._cuda = self.device.type == "cuda"
        self._local = threading.local()
        # The padding value after scaling, computed as the CPU path does (float32).
        self._fill = float(np.float32(np.float32(self.pad_value) * np.float32(self.scale)))

    def __repr__(self) -> str:
        return (
            f"TorchLetterbox(input_wh={self.input_wh}, center={self.center}, "
            f"swap_rb={self.swap_rb}, scale={self.scale:g}, device={self.device})"
        )

    # ------------------------------------------------------------------ per-thread state

    def _stream(self) -> Any:
        stream = getattr(self._local, "stream", None)
        if stream is None and self._cuda:
            torch = import_torch("GPU preprocessing")
            stream = torch.cuda.Stream(device=self.device)
            self._local.stream = stream
        return stream

    def _pinned(self, shape: tuple[int, ...], slot: int) -> Tensor:
        """A pinned host staging buffer of ``shape`` (uint8) for frame ``slot`` of a call.

        One buffer per (shape, slot) and thread: a call waits for its stream before it
        returns, so the next call of the thread may refill them.
        """
        torch = import_torch("GPU preprocessing")
        pool: dict[tuple[tuple[int, ...], int], Tensor] | None = getattr(
            self._local, "pinned", None
        )
        if pool is None:
            pool = self._local.pinned = {}
        buf = pool.get((shape, slot))
        if buf is None:
            buf = torch.empty(shape, dtype=torch.uint8, pin_memory=True)
            pool[(shape, slot)] = buf
        return buf

    # ------------------------------------------------------------------ public API

    def letterbox_for(self, image_wh: tuple[int, int]) -> Letterbox:
        """The :class:`Letterbox` of an image of ``image_wh`` (the CPU path's geometry)."""
        return compute_letterbox(image_wh, self.input_wh, center=self.center)

    def upload(self, image_bgr: npt.NDArray[np.uint8] | Tensor, slot: int = 0) -> Tensor:
        """Copy an ``(H, W, 3) uint8`` frame to the device (pinned, non-blocking on CUDA).

        Called by :meth:`__call__` / :meth:`batch`, which order the copy on the calling
        thread's stream and wait for it; ``slot`` picks the staging buffer (one per
        frame of a call). A tensor already on the device is returned as is.
        """
        torch = import_torch("GPU preprocessing")
        if isinstance(image_bgr, torch.Tensor):
            t = image_bgr
            if t.ndim != 3 or t.shape[2] != 3 or t.dtype != torch.uint8:
                raise ValueError(f"image must be (H, W, 3) uint8, got {tuple(t.shape)} {t.dtype}")
            return t if t.device == self.device else t.to(self.device, non_blocking=True)
        arr = np.asarray(image_bgr)
        if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
            raise ValueError(f"image must be (H, W, 3) uint8, got {tuple(arr.shape)} {arr.dtype}")
        if self._cuda:
            staging = self._pinned(tuple(arr.shape), slot)
            np.copyto(staging.numpy(), arr)
            return staging.to(self.device, non_blocking=True)
        if not arr.flags.writeable or not arr.flags.c_contiguous:
            arr = np.array(arr, copy=True, order="C")  # torch wants a writable array
        return torch.from_numpy(arr)

    def __call__(
        self, image_bgr: npt.NDArray[np.uint8] | Tensor, out: Tensor | None = None
    ) -> tuple[Tensor, Letterbox]:
        """Letterbox one frame.

        Args:
            image_bgr: ``(H, W, 3) uint8`` BGR frame (numpy, or a torch tensor).
            out: Optional ``(3, in_h, in_w)`` device tensor of :attr:`dtype` to fill.

        Returns:
            ``(tensor, letterbox)``: the ``(3, in_h, in_w)`` model input on the device
            and its :class:`Letterbox`.
        """
        tensors, lbs = self._run([image_bgr], out=None if out is None else out[None])
        return tensors[0], lbs[0]

    def batch(
        self, images: Sequence[npt.NDArray[np.uint8] | Tensor]
    ) -> tuple[Tensor, list[Letterbox]]:
        """Letterbox several frames into one ``(B, 3, in_h, in_w)`` device tensor.

        Frames of the same size are resized together (one kernel per size).
        """
        if len(images) == 0:
            raise ValueError("images is empty")
        tensors, lbs = self._run(images)
        return tensors, lbs

    # ------------------------------------------------------------------ internals

    def _run(
        self, images: Sequence[npt.NDArray[np.uint8] | Tensor], out: Tensor | None = None
    ) -> tuple[Tensor, list[Letterbox]]:
        torch = import_torch("GPU preprocessing")
        sw, sh = self.input_wh
        stream = self._stream()
        ctx = torch.cuda.stream(stream) if stream is not None else _null()
        with ctx, torch.inference_mode():
            if out is None:
                out = torch.empty((len(images), 3, sh, sw), dtype=self.dtype, device=self.device)
            elif tuple(out.shape) != (len(images), 3, sh, sw) or out.dtype != self.dtype:
                raise ValueError(
                    f"out must be ({len(images)}, 3, {sh}, {sw}) {self.dtype}, "
                    f"got {tuple(out.shape)} {out.dtype}"
                )
            uploaded = [self.upload(img, slot=i) for i, img in enumerate(images)]
            lbs = [self.letterbox_for((int(u.shape[1]), int(u.shape[0]))) for u in uploaded]
            groups: dict[tuple[int, int], list[int]] = {}
            for i, u in enumerate(uploaded):
                groups.setdefault((int(u.shape[1]), int(u.shape[0])), []).append(i)
            for idx in groups.values():
                self._letterbox_group([uploaded[i] for i in idx], lbs[idx[0]], out, idx)
        if stream is not None:
            stream.synchronize()
        return out, lbs

    def _letterbox_group(
        self, frames: list[Tensor], lb: Letterbox, out: Tensor, rows: list[int]
    ) -> None:
        """Resize same-size frames together and write them into ``out[rows]``."""
        import torch.nn.functional as F

        torch = import_torch("GPU preprocessing")
        x = torch.stack(frames) if len(frames) > 1 else frames[0][None]  # (n, H, W, 3) uint8
        x = x.permute(0, 3, 1, 2)  # (n, 3, H, W), BGR
        if self.swap_rb:
            x = x.flip(1)
        rw, rh = lb.resized_wh
        if (rw, rh) != lb.image_wh:
            xf = F.interpolate(
                x.float(), size=(rh, rw), mode="bilinear", align_corners=False, antialias=False
            )
            if self.round_resized:
                xf = xf.round_().clamp_(0.0, 255.0)
        else:
            xf = x.float()
        if self.scale != 1.0:
            xf = xf * float(np.float32(self.scale))  # the CPU path multiplies in float32
        sw, sh = self.input_wh
        x0, y0 = lb.pad_x_px, lb.pad_y_px
        if len(rows) == out.shape[0] and rows == list(range(len(rows))):
            dst = out
        else:
            dst = torch.empty((len(rows), 3, sh, sw), dtype=self.dtype, device=self.device)
        dst.fill_(self._fill)
        dst[:, :, y0 : y0 + rh, x0 : x0 + rw] = xf.to(self.dtype)
        if dst is not out:
            out.index_copy_(0, torch.as_tensor(rows, device=self.device), dst)


class _null:
    """A do-nothing context manager (no CUDA stream on CPU)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
