"""Shared backend helpers: input size, batch shape, fixed-batch runs."""

from __future__ import annotations

import numpy as np
import pytest

from streamer.detect.batching import (
    DEFAULT_INPUT_HW,
    batch_rows,
    join_runs,
    resolve_input_hw,
    split_runs,
)


@pytest.mark.parametrize(
    ("h", "w", "input_hw", "metadata", "expected"),
    [
        (480, 640, (320, 320), {"imgsz": "[384, 640]"}, (480, 640)),  # declared dims win
        (None, None, (320, 416), {"imgsz": "[384, 640]"}, (320, 416)),
        (None, None, None, {"imgsz": "[384, 640]"}, (384, 640)),
        (None, 640, None, {"imgsz": "512"}, (512, 640)),
        (None, None, None, {"imgsz": "not a size"}, DEFAULT_INPUT_HW),
        (None, None, None, {}, DEFAULT_INPUT_HW),
    ],
)
def test_resolve_input_hw(h, w, input_hw, metadata, expected) -> None:
    assert resolve_input_hw(h, w, input_hw, metadata) == expected


def test_batch_rows_checks_the_shape() -> None:
    assert batch_rows((5, 3, 64, 32), (64, 32)) == 5
    for bad in [(5, 3, 32, 64), (5, 1, 64, 32), (3, 64, 32)]:
        with pytest.raises(ValueError, match=r"batch must be \(B, 3, 64, 32\)"):
            batch_rows(bad, (64, 32))
    with pytest.raises(ValueError, match="batch is empty"):
        batch_rows((0, 3, 64, 32), (64, 32))


@pytest.mark.parametrize(("n", "step"), [(1, 1), (5, 2), (6, 3), (2, 4)])
def test_split_pads_only_when_asked_and_join_restores_the_batch(n: int, step: int) -> None:
    x = np.arange(n * 2, dtype=np.float32).reshape(n, 2) + 1
    loose = split_runs(x, step)
    assert [len(r) for r in loose] == [min(step, n - s) for s in range(0, n, step)]
    fixed = split_runs(x, step, pad=True)
    assert all(len(r) == step for r in fixed)
    assert not fixed[-1][n - step * (len(fixed) - 1) :].any()  # the padding is zeros
    # A "model" with two outputs: each run's rows, and their sum.
    outputs = [[r, r.sum(axis=1)] for r in fixed]
    rows, sums = join_runs(outputs, n)
    np.testing.assert_array_equal(rows, x)
    np.testing.assert_array_equal(sums, x.sum(axis=1))


def test_split_pads_torch_tensors_on_their_dtype() -> None:
    torch = pytest.importorskip("torch")
    x = torch.ones((3, 2), dtype=torch.float16)
    runs = split_runs(x, 2, pad=True)
    assert [tuple(r.shape) for r in runs] == [(2, 2), (2, 2)]
    assert runs[1].dtype == torch.float16 and runs[1][1].abs().sum().item() == 0
    assert runs[1][0].sum().item() == 2
