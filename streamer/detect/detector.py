"""YOLO-family detector: letterbox preprocessing, backend inference, layout decoding.

The three phases are separate methods so that a pipeline can run them in different
threads and time each one (Ultralytics' preprocess → infer → postprocess split)::

    det = YoloDetector.from_onnx(data_path("models/yolov8n_int8_dynamic.onnx"))
    tensor, lb = det.preprocess(image_bgr)          # thread A
    outputs = det.infer(tensor[None])               # thread B
    detections = det.postprocess(outputs, [lb])[0]  # thread B

Thread-safety: a :class:`YoloDetector` holds only immutable configuration after
construction (``class_filter`` may be replaced, atomically, through its setter).
:meth:`preprocess` writes into a fresh array (or the caller's ``out``),
:meth:`postprocess` is pure, and :meth:`infer` calls the backend, which must be
thread-safe (:class:`~streamer.detect.onnx_backend.OnnxRuntimeBackend` is). All methods
may therefore be called concurrently from different threads.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from streamer.detect.decoders import (
    LayoutSpec,
    detect_layout,
    get_layout,
    layout_num_classes,
)
from streamer.detect.onnx_backend import OnnxRuntimeBackend, ProviderSpec
from streamer.errors import BackendError
from streamer.preprocess.letterbox import Letterbox, compute_letterbox, letterbox_to_tensor
from streamer.types import Detections

__all__ = ["COCO80_NAMES", "InferenceBackend", "YoloDetector", "parse_class_names"]

COCO80_NAMES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat",
    "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack",
    "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball",
    "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket",
    "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair",
    "couch", "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse",
    "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "book", "clock", "vase", "scissors", "teddy bear", "hair drier",
    "toothbrush",
)  # fmt: skip
"""The 80 COCO detection classes in the order YOLO models use (Ultralytics ``coco.yaml``)."""


class InferenceBackend(Protocol):
    """What :class:`YoloDetector` needs from an inference backend.

    Attributes:
        input_hw: ``(H, W)`` of the model input, pixels.
        fixed_batch: Batch size baked into the model, or None when dynamic.
        metadata: Model metadata (str → str), empty when absent.
        output_shapes: Declared output shapes; dynamic dims are None.
    """

    input_hw: tuple[int, int]
    fixed_batch: int | None
    metadata: dict[str, str]
    output_shapes: list[tuple[int | None, ...]]

    def run(self, batch: npt.NDArray[np.float32]) -> list[np.ndarray]:
        """Run ``(B, 3, H, W) float32`` and return the raw outputs with ``B`` rows each."""
        ...


def parse_class_names(raw: str) -> tuple[str, ...]:
    """Parse Ultralytics ``names`` metadata (a Python dict or list literal).

    Args:
        raw: e.g. ``"{0: 'person', 1: 'bicycle'}"``.

    Returns:
        Names indexed by class id; ids missing from the dict get ``"class_<id>"``.

    Raises:
        BackendError: if the text is not a dict/list literal of names.
    """
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError) as exc:
        raise BackendError(f"metadata 'names' is not a Python literal: {raw[:80]!r}") from exc
    if isinstance(value, (list, tuple)):
        return tuple(str(v) for v in value)
    if isinstance(value, dict) and all(isinstance(k, int) and k >= 0 for k in value):
        size = max(value, default=-1) + 1
        return tuple(str(value.get(i, f"class_{i}")) for i in range(size))
    raise BackendError(f"metadata 'names' is not a dict of class names: {raw[:80]!r}")


def _as_class_filter(value: Iterable[int] | None) -> frozenset[int] | None:
    if value is None:
        return None
    ids = frozenset(int(c) for c in value)
    if any(c < 0 for c in ids):
        raise ValueError(f"class_filter ids must be >= 0, got {sorted(ids)}")
    return ids


def _check_unit(name: str, value: float) -> float:
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return float(value)


class YoloDetector:
    """Detects objects with a YOLO-family model (Ultralytics v8/11, YOLOX, end-to-end).

    Args:
        backend: Inference backend (e.g. :class:`OnnxRuntimeBackend`).
        layout: Output layout name (``"ultralytics"``, ``"yolox"``, ``"end2end"``) or
            ``"auto"`` to pick it from the model's metadata and output shape. The
            layout fixes the preprocessing too (see :mod:`streamer.detect.decoders`).
        conf_threshold: Keep detections with score strictly greater than this, in [0, 1].
        iou_threshold: Class-aware NMS IoU threshold in [0, 1] (unused by end2end).
        class_filter: Class ids to keep, or None for all.
        class_names: Names by class id. When None: the model's ``names`` metadata,
            else the 80 COCO names (``class_<i>`` names if the model has another
            class count). An explicit list wins over the metadata.
        max_detections: At most this many detections per image, >= 1.

    Raises:
        ValueError: on an out-of-range threshold, unknown layout name, bad class filter,
            or fewer class names than the model has classes.
        BackendError: if ``layout="auto"`` cannot recognise the model output, or the
            model's ``names`` metadata cannot be parsed.

    Thread-safety: see the module docstring; all methods may run concurrently.
    """

    def __init__(
        self,
        backend: InferenceBackend,
        layout: str = "auto",
        conf_threshold: float = 0.25,
        iou_threshold: float = 0.45,
        class_filter: Iterable[int] | None = None,
        class_names: Sequence[str] | None = None,
        max_detections: int = 300,
    ) -> None:
        self._backend = backend
        self._conf = _check_unit("conf_threshold", conf_threshold)
        self._iou = _check_unit("iou_threshold", iou_threshold)
        if int(max_detections) < 1:
            raise ValueError(f"max_detections must be >= 1, got {max_detections}")
        self._max_det = int(max_detections)
        self._class_filter = _as_class_filter(class_filter)

        h, w = backend.input_hw
        self._input_hw = (int(h), int(w))
        output_shape = self._output_shape()
        if layout == "auto":
            layout = detect_layout(backend.metadata, output_shape, self._input_hw)
        self._spec: LayoutSpec = get_layout(layout)

        n_classes = layout_num_classes(self._spec.name, output_shape)
        self._class_names = self._resolve_names(class_names, n_classes)

    def _output_shape(self) -> tuple[int | None, ...]:
        """Declared shape of output 0; probed with one zero batch when dims are dynamic."""
        if not self._backend.output_shapes:
            raise BackendError("model has no outputs")
        shape = tuple(self._backend.output_shapes[0])
        if len(shape) >= 2 and all(d is not None for d in shape[1:]):
            return shape
        probe = np.zeros((self._backend.fixed_batch or 1, 3, *self._input_hw), np.float32)
        return tuple(int(d) for d in self._backend.run(probe)[0].shape)

    def _resolve_names(
        self, class_names: Sequence[str] | None, n_classes: int | None
    ) -> tuple[str, ...]:
        if class_names is not None:
            names = tuple(str(n) for n in class_names)
            if n_classes is not None and len(names) < n_classes:
                raise ValueError(
                    f"class_names has {len(names)} names but the model has {n_classes} classes"
                )
            return names
        raw = self._backend.metadata.get("names")
        if raw:
            return parse_class_names(raw)
        if n_classes is None or n_classes == len(COCO80_NAMES):
            return COCO80_NAMES
        return tuple(f"class_{i}" for i in range(n_classes))

    # ------------------------------------------------------------------ factory

    @classmethod
    def from_onnx(
        cls,
        path: str | Path,
        providers: Sequence[ProviderSpec] = ("CPUExecutionProvider",),
        intra_op_threads: int | None = None,
        allow_spinning: bool = False,
        parallel_runs: int = 1,
        **kwargs: Any,
    ) -> YoloDetector:
        """Build a detector on an :class:`OnnxRuntimeBackend`.

        Args:
            path: ONNX model file.
            providers: ONNX Runtime execution providers, in priority order.
            intra_op_threads: ONNX Runtime intra-op threads (None: its default).
            allow_spinning: Let ONNX Runtime worker threads busy-wait (default off).
            parallel_runs: Fixed-batch chunks of one batch run at once (see
                :class:`OnnxRuntimeBackend`); e.g. the tiles of a
                :class:`~streamer.slicing.SlicedDetector` frame on a batch-1 model.
            **kwargs: Passed to :class:`YoloDetector` (``layout``, thresholds, ...).

        Raises:
            BackendError: if the model cannot be loaded or its layout recognised.
        """
        backend = OnnxRuntimeBackend(
            path,
            providers=providers,
            intra_op_threads=intra_op_threads,
            allow_spinning=allow_spinning,
            parallel_runs=parallel_runs,
        )
        return cls(backend, **kwargs)

    # ------------------------------------------------------------------ properties

    @property
    def backend(self) -> InferenceBackend:
        """The inference backend."""
        return self._backend

    @property
    def layout(self) -> str:
        """Name of the output layout in use."""
        return self._spec.name

    @property
    def layout_spec(self) -> LayoutSpec:
        """The layout's preprocessing and decoding convention."""
        return self._spec

    @property
    def class_names(self) -> tuple[str, ...]:
        """Class names indexed by class id."""
        return self._class_names

    @property
    def input_wh(self) -> tuple[int, int]:
        """``(width, height)`` of the model input, pixels."""
        return (self._input_hw[1], self._input_hw[0])

    @property
    def conf_threshold(self) -> float:
        """Score threshold (strict)."""
        return self._conf

    @property
    def iou_threshold(self) -> float:
        """NMS IoU threshold."""
        return self._iou

    @property
    def class_filter(self) -> frozenset[int] | None:
        """Class ids kept, or None for all.

        Settable (any iterable of ids, or None). The new set replaces the old one in a
        single reference assignment, so a concurrent :meth:`postprocess` sees either
        the old or the new filter, never a mix.

        Raises:
            ValueError: on setting a negative class id.
        """
        return self._class_filter

    @class_filter.setter
    def class_filter(self, value: Iterable[int] | None) -> None:
        self._class_filter = _as_class_filter(value)

    @property
    def max_detections(self) -> int:
        """Maximum detections per image."""
        return self._max_det

    # ------------------------------------------------------------------ phases

    def preprocess(
        self, image_bgr: npt.NDArray[np.uint8], out: npt.NDArray[np.float32] | None = None
    ) -> tuple[npt.NDArray[np.float32], Letterbox]:
        """Letterbox and convert one image for the model.

        Args:
            image_bgr: ``(H, W, 3) uint8`` BGR frame, any size.
            out: Optional C-contiguous ``(3, in_h, in_w) float32`` destination (e.g. a
                row of a batch array); a new array is allocated when None.

        Returns:
            ``(tensor, letterbox)``: the ``(3, in_h, in_w) float32`` model input in the
            layout's channel order and value range, and the :class:`Letterbox` needed
            to map boxes back to frame pixels.

        Raises:
            ValueError: if the image is not ``(H, W, 3) uint8`` or ``out`` is wrong.
        """
        if image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
            raise ValueError(f"image must be (H, W, 3) uint8, got {tuple(image_bgr.shape)}")
        spec = self._spec
        lb = compute_letterbox(
            (image_bgr.shape[1], image_bgr.shape[0]), self.input_wh, center=spec.center
        )
        tensor = letterbox_to_tensor(
            image_bgr,
            lb,
            swap_rb=spec.swap_rb,
            scale=spec.input_scale,
            pad_value=spec.pad_value,
            out=out,
        )
        return tensor, lb

    def infer(self, batch: npt.NDArray[np.float32]) -> list[np.ndarray]:
        """Run the backend on ``(B, 3, in_h, in_w) float32``; returns its raw outputs.

        Raises:
            ValueError: if the batch has the wrong shape.
            BackendError: if inference fails.
        """
        return self._backend.run(batch)

    def postprocess(
        self, outputs: Sequence[np.ndarray], letterboxes: Sequence[Letterbox]
    ) -> list[Detections]:
        """Decode raw outputs into detections in original-frame pixels.

        Args:
            outputs: What :meth:`infer` returned for a batch of ``B`` images.
            letterboxes: The ``B`` letterboxes from :meth:`preprocess`, in batch order.

        Returns:
            ``B`` :class:`Detections`, boxes ``xyxy`` float32 in each frame's pixels,
            sorted by descending confidence.

        Raises:
            BackendError: if the outputs do not fit the layout.
        """
        current = self._class_filter  # read once: a concurrent setter swaps the reference
        class_filter = set(current) if current is not None else None
        return self._spec.decode(
            outputs, letterboxes, self._conf, self._iou, class_filter, self._max_det
        )

    def detect_batch(self, images: Sequence[npt.NDArray[np.uint8]]) -> list[Detections]:
        """Detect in several frames with one backend call.

        Args:
            images: ``(H_i, W_i, 3) uint8`` BGR frames (sizes may differ).

        Returns:
            One :class:`Detections` per image, in order.
        """
        if len(images) == 0:
            return []
        h, w = self._input_hw
        batch = np.empty((len(images), 3, h, w), np.float32)
        letterboxes = [self.preprocess(img, out=batch[i])[1] for i, img in enumerate(images)]
        return self.postprocess(self.infer(batch), letterboxes)

    def __call__(self, image_bgr: npt.NDArray[np.uint8]) -> Detections:
        """Detect in one ``(H, W, 3) uint8`` BGR frame; boxes in its pixels."""
        return self.detect_batch([image_bgr])[0]

    def __repr__(self) -> str:
        return (
            f"YoloDetector(layout={self.layout!r}, input_wh={self.input_wh}, "
            f"conf={self._conf}, iou={self._iou}, classes={len(self._class_names)})"
        )
