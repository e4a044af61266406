"""Shared fixtures: the shared-data resolver with clean skips, and a tiny ONNX model maker."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from streamer.config.schema import PipelineConfig
from streamer.data import data_path


def require_data(relative: str) -> Path:
    """Path of a shared data file, or skip the test with a reason when it is absent."""
    path = data_path(relative)
    if not path.exists():
        pytest.skip(f"shared test data not found: {path} (set STREAMER_DATA)")
    return path


def yolox_people_pipeline(
    name: str,
    sources: list[dict[str, Any]],
    output_dir: Path,
    sinks: list[dict[str, Any]],
    detect: dict[str, Any] | None = None,
    **top_level: Any,
) -> PipelineConfig:
    """A validated ``PipelineConfig``: YOLOX-nano people (conf 0.3, 2 threads) ->
    ByteTrack -> ``sinks``, on ``sources``; ``detect`` overrides detect-stage fields,
    ``top_level`` adds top-level blocks (``server=...``). Skips without the model."""
    stage = {
        "type": "detect",
        "model": str(require_data("models/yolox_nano.onnx")),
        "conf_threshold": 0.3,
        "classes": [0],
        "intra_op_threads": 2,
        **(detect or {}),
    }
    return PipelineConfig.model_validate(
        {
            "name": name,
            "sources": sources,
            "stages": [stage, {"type": "track", "tracker": {"type": "bytetrack"}}, *sinks],
            "output_dir": str(output_dir),
            **top_level,
        }
    )


@pytest.fixture
def data() -> Callable[[str], Path]:
    """``data("videos/x.mp4")`` resolves a shared data file or skips the test."""
    return require_data


def make_tiny_onnx(path: Path, output_shape: tuple[int, int, int]) -> Path:
    """Write a valid ONNX model: image input [1, 3, 32, 32] -> a slice of ``output_shape``.

    Used to provoke output layouts that no decoder knows.
    """
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    _, h, w = output_shape
    starts = helper.make_tensor("starts", TensorProto.INT64, [3], [0, 0, 0])
    ends = helper.make_tensor("ends", TensorProto.INT64, [3], [1, h, w])
    axes = helper.make_tensor("axes", TensorProto.INT64, [3], [1, 2, 3])
    shape = helper.make_tensor("shape", TensorProto.INT64, [3], list(output_shape))
    graph = helper.make_graph(
        [
            helper.make_node("Slice", ["images", "starts", "ends", "axes"], ["sliced"]),
            helper.make_node("Reshape", ["sliced", "shape"], ["output"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, list(output_shape))],
        initializer=[starts, ends, axes, shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture
def tiny_onnx(tmp_path: Path) -> Callable[[tuple[int, int, int]], Path]:
    """``tiny_onnx((1, 7, 7))`` writes a tiny model with that output shape into tmp_path."""
    return lambda shape: make_tiny_onnx(tmp_path / "tiny.onnx", shape)


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests marked ``gpu`` (with the reason) on machines without CUDA torch."""
    gpu_items = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not gpu_items or _cuda_available():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU with CUDA torch (gpu marker)")
    for item in gpu_items:
        item.add_marker(skip)


def restore_sigint() -> None:
    """``preexec_fn`` for a child process that a test interrupts with SIGINT.

    A test run started in the background (``cmd &`` in a non-interactive shell) ignores
    SIGINT and its children inherit that, so Python in the child would never raise
    KeyboardInterrupt; the child gets the default disposition back instead.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Run CPU torch on one intra-op thread for the test, then restore the setting.

    On a shared 2-core machine torch's OpenMP workers busy-wait between operators;
    under load that made a YOLOX-nano forward pass 5-10x slower with 2 threads than
    with 1 (measured: 375-720 ms vs 70-80 ms).
    """
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
