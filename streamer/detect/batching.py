"""Input-size, batch-shape and fixed-batch helpers shared by the inference backends.

``OnnxRuntimeBackend``, ``TorchBackend`` and ``TensorRTBackend`` take the same
``(B, 3, H, W)`` batches and run a model whose batch is fixed in runs of that size;
these helpers hold that logic once, for numpy arrays and torch tensors alike.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

__all__ = [
    "DEFAULT_INPUT_HW",
    "batch_rows",
    "join_runs",
    "resolve_input_hw",
    "split_runs",
    "zero_pad_rows",
]

DEFAULT_INPUT_HW = (640, 640)
"""``(H, W)`` of a model whose spatial dims are dynamic and that states no ``imgsz``."""

_A = TypeVar("_A")


def _imgsz(metadata: Mapping[str, str]) -> tuple[int, int] | None:
    """The Ultralytics ``imgsz`` metadata (``"640"`` or ``"[384, 640]"``) as ``(H, W)``."""
    raw = metadata.get("imgsz")
    if not raw:
        return None
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return None
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return (int(value[0]), int(value[1]))
    return None


def resolve_input_hw(
    h: int | None,
    w: int | None,
    input_hw: tuple[int, int] | None,
    metadata: Mapping[str, str],
) -> tuple[int, int]:
    """The model input ``(H, W)`` in pixels.

    Args:
        h: The model's declared input height, or None when it is dynamic.
        w: The model's declared input width, or None when it is dynamic.
        input_hw: The caller's ``(H, W)`` for dynamic dims, or None.
        metadata: The model's metadata; its Ultralytics ``imgsz`` is the next choice.

    Returns:
        Declared dims as they are; a dynamic one from ``input_hw``, else ``imgsz``,
        else :data:`DEFAULT_INPUT_HW`.
    """
    if h is None or w is None:
        fallback = input_hw or _imgsz(metadata) or DEFAULT_INPUT_HW
        h = h or int(fallback[0])
        w = w or int(fallback[1])
    return (int(h), int(w))


def batch_rows(shape: Sequence[int], input_hw: tuple[int, int]) -> int:
    """The number of rows ``B`` of a ``(B, 3, H, W)`` batch for a model input ``(H, W)``.

    Raises:
        ValueError: if the shape is not ``(B, 3, *input_hw)`` or ``B`` is 0.
    """
    if len(shape) != 4 or shape[1] != 3 or tuple(shape[2:]) != tuple(input_hw):
        raise ValueError(f"batch must be (B, 3, {input_hw[0]}, {input_hw[1]}), got {tuple(shape)}")
    if shape[0] == 0:
        raise ValueError("batch is empty")
    return int(shape[0])


def zero_pad_rows(part: _A, missing: int) -> _A:
    """``part`` (numpy array or torch tensor, rows first) with ``missing`` zero rows
    appended, of its dtype and on its device."""
    a: Any = part
    padded: Any
    if isinstance(a, np.ndarray):
        padded = np.concatenate([a, np.zeros((missing, *a.shape[1:]), a.dtype)])
    else:
        import torch  # a torch tensor: torch is already loaded

        padded = torch.cat([a, a.new_zeros((missing, *a.shape[1:]))])
    return padded


def split_runs(x: _A, step: int, pad: bool = False) -> list[_A]:
    """Cut a batch (numpy array or torch tensor) into runs of ``step`` rows, in order.

    Args:
        x: ``(B, ...)`` batch.
        step: Rows per run, >= 1.
        pad: For a model whose batch is fixed at ``step``: zero-pad the last run to
            ``step`` rows (:func:`zero_pad_rows`). False leaves a short last run as
            it is (a model that takes up to ``step`` rows).

    Returns:
        The runs: views of ``x`` (the last one a padded copy when ``pad`` is set).
    """
    b: Any = x
    n = int(b.shape[0])
    runs = [b[start : start + step] for start in range(0, n, step)]
    missing = step - int(runs[-1].shape[0])
    if pad and missing > 0:
        runs[-1] = zero_pad_rows(runs[-1], missing)
    return runs


def join_runs(outputs: Sequence[Sequence[np.ndarray]], rows: int) -> list[np.ndarray]:
    """Concatenate the outputs of :func:`split_runs`'s runs, trimmed to ``rows``.

    Args:
        outputs: Per run, the model outputs (numpy arrays, run rows first).
        rows: Rows of the batch before padding.

    Returns:
        One array per model output, ``rows`` rows, in run order.
    """
    return [np.concatenate(parts)[:rows] for parts in zip(*outputs, strict=True)]
