"""Torch inference backend: runs an ONNX model through torch (``backend: torch``).

For machines that have CUDA but no TensorRT: the ONNX graph is executed with torch
operators by :mod:`streamer.detect.onnx_torch` (our own small interpreter; onnx2torch
needs torchvision, which drags a CUDA torch into CPU installs), on ``cuda[:N]`` in FP32
or FP16, or on the CPU in FP32 (which is how CI checks its outputs against ONNX
Runtime's, on real frames).

It satisfies the same contract as
:class:`~streamer.detect.onnx_backend.OnnxRuntimeBackend` (``run``, ``input_hw``,
``fixed_batch``, ``metadata``, ``output_names``, ``output_shapes``), so
:class:`~streamer.detect.detector.YoloDetector` works unchanged, and it also takes
torch tensors already on its device (``accepts_device_tensors``), which is how GPU
preprocessing hands frames over without a copy back to the host.

Thread-safety: :meth:`TorchBackend.run` may be called from several threads (the
interpreter keeps no state between calls).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from streamer.detect.batching import batch_rows, join_runs, resolve_input_hw, split_runs
from streamer.detect.onnx_torch import OnnxTorchModule, load_onnx_model
from streamer.errors import BackendError
from streamer.preprocess.gpu import import_torch, parse_device

__all__ = ["TorchBackend"]


class TorchBackend:
    """Runs one ONNX model with torch on a CPU or CUDA device.

    Args:
        model_path: The ``.onnx`` file.
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        precision: ``fp32`` or ``fp16`` (``fp16`` needs a CUDA device, and a model
            that is not dynamically quantized).
        input_hw: ``(H, W)`` for models with dynamic spatial dims (default: the
            Ultralytics ``imgsz`` metadata, else 640x640).

    Attributes:
        model_path: Resolved path of the model file.
        device: The torch device.
        precision: ``fp32`` or ``fp16``.
        input_name: Name of the image input.
        input_hw: ``(H, W)`` of the model input, pixels.
        fixed_batch: The batch size baked into the model, or None when dynamic.
        metadata: ONNX metadata (str → str).
        output_names: Output names, in order.
        output_shapes: Declared output shapes; dynamic dims are None.
        providers: ``["torch:<device>:<precision>"]`` (what the CLI prints).
        accepts_device_tensors: True: :meth:`run` takes torch tensors on :attr:`device`.

    Raises:
        BackendError: (one line) torch or onnx missing, the device unavailable, the
            file missing or unreadable, an operator unsupported (named), FP16 on the CPU
            or on a quantized model, or no ``(B, 3, H, W)`` image input.
    """

    accepts_device_tensors = True

    def __init__(
        self,
        model_path: str | Path,
        device: str = "cuda",
        precision: str = "fp16",
        input_hw: tuple[int, int] | None = None,
    ) -> None:
        torch = import_torch("backend 'torch'")
        if precision not in ("fp32", "fp16"):
            raise BackendError(
                f"backend 'torch': precision must be fp32 or fp16, got {precision!r} "
                "(int8 needs backend: tensorrt)"
            )
        self.device = parse_device(device, "backend 'torch' device")
        if precision == "fp16" and self.device.type != "cuda":
            raise BackendError("backend 'torch': fp16 needs a CUDA device; use precision: fp32")
        path = Path(model_path).expanduser().resolve()
        model = load_onnx_model(path)
        self._module = OnnxTorchModule(
            model, device=str(self.device), precision=precision, name=path.name
        )
        self._torch = torch
        self.model_path = path
        self.precision = precision
        self.metadata: dict[str, str] = dict(self._module.metadata)
        images = [
            (n, s)
            for n, s in zip(self._module.input_names, self._module.input_shapes, strict=True)
            if len(s) == 4
        ]
        if len(images) != 1 or len(self._module.input_names) != 1:
            raise BackendError(
                f"model {path.name}: expected one (B, 3, H, W) image input, got "
                f"{list(zip(self._module.input_names, self._module.input_shapes, strict=True))}"
            )
        self.input_name, shape = images[0]
        if shape[1] not in (3, None):
            raise BackendError(
                f"model {path.name}: input {self.input_name} has {shape[1]} channels, expected 3"
            )
        self.fixed_batch: int | None = shape[0]
        self.input_hw: tuple[int, int] = resolve_input_hw(
            shape[2], shape[3], input_hw, self.metadata
        )
        self.output_names: list[str] = list(self._module.output_names)
        self.output_shapes: list[tuple[int | None, ...]] = list(self._module.output_shapes)
        self.providers = [f"torch:{self.device}:{precision}"]

    def __repr__(self) -> str:
        return (
            f"TorchBackend({self.model_path.name!r}, input {self.input_hw[0]}x"
            f"{self.input_hw[1]}, batch {self.fixed_batch or 'dynamic'}, {self.device}, "
            f"{self.precision})"
        )

    def close(self) -> None:
        """Nothing to release (the module is freed with the object); for symmetry."""

    def run(self, batch: Any) -> list[np.ndarray]:
        """Run the model on a batch of preprocessed images.

        A model with a fixed batch size ``k`` accepts any ``B``: the batch runs in
        chunks of ``k`` (the last one zero-padded) and the outputs are concatenated and
        trimmed to ``B`` rows (as :class:`OnnxRuntimeBackend` does).

        Args:
            batch: ``(B, 3, H, W)`` float32 numpy array, or a torch tensor (on
                :attr:`device` ideally; float16 or float32), ``(H, W) == input_hw``.

        Returns:
            The model outputs in :attr:`output_names` order, float32 numpy arrays with
            ``B`` rows (integer outputs keep their dtype).

        Raises:
            ValueError: the batch has the wrong shape or is empty.
            BackendError: an operator failed.
        """
        torch = self._torch
        x = batch if isinstance(batch, torch.Tensor) else torch.from_numpy(np.asarray(batch))
        n = batch_rows(tuple(x.shape), self.input_hw)
        x = x.to(self.device)
        k = self.fixed_batch
        if k is None or n == k:
            return [self._host(o) for o in self._module(x)]
        runs = split_runs(x, k, pad=True)
        return join_runs([[self._host(o) for o in self._module(r)] for r in runs], n)

    def _host(self, t: Any) -> np.ndarray:
        torch = self._torch
        if t.is_floating_point() and t.dtype != torch.float32:
            t = t.float()
        return np.asarray(t.detach().to("cpu").numpy())
