"""A :class:`~streamer.detect.detector.YoloDetector` whose preprocessing runs on a torch
device (``preprocess: gpu`` in a pipeline YAML).

:class:`DevicePreprocessDetector` keeps the detector's layout, thresholds, decoding
and backend, and replaces only the preprocess phase with
:class:`~streamer.preprocess.gpu.TorchLetterbox` built from the same layout spec, so the
two paths can never disagree on channel order, scale, padding or placement. Tensors
stay on the device into backends that take them (``tensorrt``, ``torch``: they set
``accepts_device_tensors``); for ONNX Runtime they are copied back to the host.

Thread-safety: as :class:`YoloDetector` and :class:`TorchLetterbox` (all methods may
run concurrently).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from streamer.detect.decoders import LayoutSpec
from streamer.detect.detector import InferenceBackend, YoloDetector
from streamer.preprocess.gpu import TorchLetterbox
from streamer.preprocess.letterbox import Letterbox
from streamer.types import Detections

__all__ = ["DevicePreprocessDetector"]


class DevicePreprocessDetector:
    """Wraps a :class:`YoloDetector`: letterbox on ``device``, then its backend and decoder.

    Args:
        detector: The detector (its backend, layout and thresholds are used as they are).
        device: ``cpu``, ``cuda`` or ``cuda:N`` (``cpu`` runs the same torch code on
            the CPU: that is how CI tests it).

    Raises:
        BackendError: torch is missing or the device is not available.
    """

    def __init__(self, detector: YoloDetector, device: str = "cuda") -> None:
        self.detector = detector
        spec = detector.layout_spec
        self.preprocessor = TorchLetterbox(
            detector.input_wh,
            center=spec.center,
            swap_rb=spec.swap_rb,
            scale=spec.input_scale,
            pad_value=spec.pad_value,
            device=device,
        )
        self._device_in = bool(getattr(detector.backend, "accepts_device_tensors", False))

    # -- what the pipeline and the CLI read ------------------------------------------
    @property
    def backend(self) -> InferenceBackend:
        """The detector's inference backend."""
        return self.detector.backend

    @property
    def class_names(self) -> tuple[str, ...]:
        """Class names indexed by class id."""
        return self.detector.class_names

    @property
    def layout(self) -> str:
        """Name of the output layout."""
        return self.detector.layout

    @property
    def layout_spec(self) -> LayoutSpec:
        """The layout's preprocessing and decoding convention."""
        return self.detector.layout_spec

    @property
    def input_wh(self) -> tuple[int, int]:
        """``(width, height)`` of the model input, pixels."""
        return self.detector.input_wh

    @property
    def class_filter(self) -> frozenset[int] | None:
        """Class ids kept (settable), as :attr:`YoloDetector.class_filter`."""
        return self.detector.class_filter

    @class_filter.setter
    def class_filter(self, value: Iterable[int] | None) -> None:
        self.detector.class_filter = value

    # -- phases -------------------------------------------------------------------------
    def preprocess(self, image_bgr: npt.NDArray[np.uint8]) -> tuple[Any, Letterbox]:
        """Letterbox one ``(H, W, 3) uint8`` BGR frame on the device.

        Returns:
            ``(tensor, letterbox)``: a ``(3, in_h, in_w) float32`` torch tensor on the
            device and the :class:`Letterbox` (the CPU path's geometry).
        """
        return self.preprocessor(image_bgr)

    def infer(self, batch: Any) -> list[np.ndarray]:
        """Run the backend on a ``(B, 3, in_h, in_w)`` batch (torch tensor or numpy)."""
        if not isinstance(batch, np.ndarray) and not self._device_in:
            batch = batch.detach().to("cpu").numpy()
        return self.detector.infer(batch)

    def postprocess(
        self, outputs: Sequence[np.ndarray], letterboxes: Sequence[Letterbox]
    ) -> list[Detections]:
        """Decode raw outputs into detections in frame pixels (the detector's decoder)."""
        return self.detector.postprocess(outputs, letterboxes)

    def detect_batch(self, images: Sequence[npt.NDArray[np.uint8]]) -> list[Detections]:
        """Detect in several frames: one device letterbox call, one backend call."""
        if len(images) == 0:
            return []
        batch, letterboxes = self.preprocessor.batch(images)
        return self.postprocess(self.infer(batch), letterboxes)

    def __call__(self, image_bgr: npt.NDArray[np.uint8]) -> Detections:
        """Detect in one ``(H, W, 3) uint8`` BGR frame; boxes in its pixels."""
        return self.detect_batch([image_bgr])[0]

    def __repr__(self) -> str:
        return f"DevicePreprocessDetector({self.detector!r}, {self.preprocessor!r})"
