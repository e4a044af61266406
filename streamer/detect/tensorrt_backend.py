"""TensorRT inference backend and engine builder (``backend: tensorrt``).

* :func:`build_engine` parses an ONNX file and builds a serialized engine (a *plan*):
  FP32, FP16, or INT8 with an entropy calibrator fed from frames of a clip; one
  optimization profile with the min/opt/max input shapes of an
  :class:`~streamer.detect.engine_cache.EngineSpec`; build progress reported through
  TensorRT's ``IProgressMonitor`` (TensorRT >= 8.6) to a :class:`BuildProgress`.
* :class:`TensorRTBackend` deserializes a plan and runs it with torch CUDA tensors as
  the input and output buffers (``set_tensor_address`` + ``execute_async_v3`` on its own
  CUDA stream). It satisfies the contract of
  :class:`~streamer.detect.onnx_backend.OnnxRuntimeBackend`, so
  :class:`~streamer.detect.detector.YoloDetector` works unchanged, and takes device
  tensors straight from GPU preprocessing (``accepts_device_tensors``).

Engines are cached by :mod:`streamer.detect.engine_cache`; building and caching from a
pipeline config is done by :mod:`streamer.pipeline.engines`.

Supported TensorRT: 8.6 (JetPack 6.0) and 10.x (JetPack 6.1/6.2, x86 wheels): the
calls used exist in both (explicit-batch networks, named I/O tensors,
``execute_async_v3``). Not run on real TensorRT in this repository's CI (no GPU there):
see README, "GPU path: what has been run where".

Thread-safety: :meth:`TensorRTBackend.run` may be called from several threads; one
execution context serves one call at a time (a lock).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from streamer.detect.batching import batch_rows, join_runs, split_runs
from streamer.detect.engine_cache import tensorrt_missing_message
from streamer.errors import BackendError
from streamer.preprocess.gpu import import_torch, parse_device

__all__ = ["BuildProgress", "TensorRTBackend", "build_engine", "import_tensorrt"]


def import_tensorrt() -> Any:
    """Import ``tensorrt`` or raise the one-line :class:`BackendError` saying how to get it."""
    try:
        import tensorrt
    except ImportError as exc:
        raise BackendError(tensorrt_missing_message()) from exc
    return tensorrt


class BuildProgress(Protocol):
    """Receives TensorRT builder progress (the ``IProgressMonitor`` callbacks).

    Called from TensorRT's builder threads: implementations must be thread-safe.
    """

    def phase_start(self, phase: str, parent: str | None, steps: int) -> None:
        """A phase of ``steps`` steps started (inside ``parent``, or top level)."""

    def step_complete(self, phase: str, step: int) -> bool:
        """Step ``step`` of ``phase`` finished; return False to cancel the build."""
        return True

    def phase_finish(self, phase: str) -> None:
        """``phase`` finished."""


def _major(trt: Any) -> int:
    try:
        return int(str(trt.__version__).split(".")[0])
    except ValueError:
        return 10


def _make_monitor(trt: Any, progress: BuildProgress) -> Any:
    class _Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            progress.phase_start(phase_name, parent_phase, int(num_steps))

        def step_complete(self, phase_name: str, step: int) -> bool:
            return bool(progress.step_complete(phase_name, int(step)))

        def phase_finish(self, phase_name: str) -> None:
            progress.phase_finish(phase_name)

    return _Monitor()


def _make_calibrator(trt: Any, data: np.ndarray, batch_size: int, device: Any) -> Any:
    """An ``IInt8EntropyCalibrator2`` serving ``data`` ``(N, 3, H, W) float32`` in batches."""
    torch = import_torch("INT8 calibration")

    class _Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._i = 0
            self._buf = torch.empty(
                (batch_size, *data.shape[1:]), dtype=torch.float32, device=device
            )

        def get_batch_size(self) -> int:
            return batch_size

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self._i + batch_size > data.shape[0]:
                return None
            chunk = torch.from_numpy(np.ascontiguousarray(data[self._i : self._i + batch_size]))
            self._buf.copy_(chunk)
            torch.cuda.synchronize(device)
            self._i += batch_size
            return [int(self._buf.data_ptr())]

        def read_calibration_cache(self) -> bytes | None:
            return None  # the engine cache keys INT8 engines by the calibration data

        def write_calibration_cache(self, cache: bytes) -> None:
            return None

    return _Calibrator()


def build_engine(
    onnx_path: str | Path,
    *,
    precision: str,
    input_name: str,
    min_shape: tuple[int, ...],
    opt_shape: tuple[int, ...],
    max_shape: tuple[int, ...],
    workspace_mib: int | None = None,
    calibration: np.ndarray | None = None,
    device: str = "cuda",
    progress: BuildProgress | None = None,
    verbose: bool = False,
) -> bytes:
    """Build a serialized TensorRT engine from an ONNX file.

    Args:
        onnx_path: The model.
        precision: ``fp32``, ``fp16`` or ``int8`` (INT8 also allows FP16 kernels).
        input_name: The image input's name.
        min_shape: Smallest input shape of the optimization profile.
        opt_shape: Shape the kernels are tuned for.
        max_shape: Largest input shape.
        workspace_mib: Builder workspace limit, MiB (None: TensorRT's default).
        calibration: INT8: ``(N, 3, H, W) float32`` preprocessed frames, N >= batch.
        device: CUDA device of the calibration buffers.
        progress: Receives the builder's progress (TensorRT >= 8.6).
        verbose: TensorRT's INFO messages on stderr (else warnings and errors).

    Returns:
        The plan's bytes.

    Raises:
        BackendError: tensorrt missing, the ONNX parser's errors (the first few), INT8
            without calibration data, or a failed build.
    """
    trt = import_tensorrt()
    if precision not in ("fp32", "fp16", "int8"):
        raise BackendError(f"precision must be fp32, fp16 or int8, got {precision!r}")
    if precision == "int8" and (calibration is None or len(calibration) == 0):
        raise BackendError("an int8 engine needs calibration frames")
    logger = trt.Logger(trt.Logger.INFO if verbose else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if _major(trt) < 10:  # explicit batch is the only mode from TensorRT 10 on
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    path = Path(onnx_path)
    if not parser.parse_from_file(str(path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise BackendError(
            f"TensorRT cannot parse {path.name}: {' | '.join(errors[:3]) or 'unknown error'}"
        )
    config = builder.create_builder_config()
    if workspace_mib is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mib) << 20)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    dynamic = any(d < 0 for i in range(network.num_inputs) for d in network.get_input(i).shape)
    profile = None
    if dynamic:
        profile = builder.create_optimization_profile()
        profile.set_shape(input_name, tuple(min_shape), tuple(opt_shape), tuple(max_shape))
        config.add_optimization_profile(profile)
    if precision == "int8":
        assert calibration is not None
        config.set_flag(trt.BuilderFlag.INT8)
        batch = int(opt_shape[0]) if dynamic else int(max_shape[0])
        batch = max(1, min(batch, len(calibration)))
        config.int8_calibrator = _make_calibrator(
            trt, calibration.astype(np.float32, copy=False), batch, parse_device(device)
        )
        if profile is not None:
            config.set_calibration_profile(profile)
    if progress is not None and hasattr(trt, "IProgressMonitor"):
        config.progress_monitor = _make_monitor(trt, progress)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError(
            f"TensorRT failed to build an engine for {path.name} ({precision}); "
            "its log above says why"
        )
    return bytes(serialized)


_TORCH_DTYPES = {"FLOAT": "float32", "HALF": "float16", "INT32": "int32", "INT64": "int64",
                 "INT8": "int8", "UINT8": "uint8", "BOOL": "bool"}  # fmt: skip


class TensorRTBackend:
    """Runs a serialized TensorRT engine with torch CUDA tensors as buffers.

    Args:
        plan: The serialized engine (from the cache: checked against this machine).
        device: ``cuda`` or ``cuda:N`` (the GPU the engine was built for).
        name: Shown in messages (the model file name).
        metadata: The ONNX model's metadata (class names, imgsz), which the plan
            does not keep.

    Attributes:
        input_name: Image input name.
        input_hw: ``(H, W)`` of the input, pixels.
        fixed_batch: Batch baked into the engine (static shape), or None (profile).
        max_batch: Largest batch of one engine call (larger batches are chunked).
        metadata: As given.
        output_names: Output names, in order.
        output_shapes: Output shapes; dynamic dims are None.
        providers: ``["tensorrt:<device>"]`` (what the CLI prints).
        accepts_device_tensors: True.

    Raises:
        BackendError: tensorrt/torch missing, no CUDA, or the plan does not deserialize.
    """

    accepts_device_tensors = True

    def __init__(
        self,
        plan: bytes,
        *,
        device: str = "cuda",
        name: str = "engine",
        metadata: dict[str, str] | None = None,
    ) -> None:
        trt = import_tensorrt()
        torch = import_torch("backend 'tensorrt'")
        self.device = parse_device(device, "backend 'tensorrt' device")
        if self.device.type != "cuda":
            raise BackendError("backend 'tensorrt' needs device: cuda[:N]")
        self._torch = torch
        self.name = name
        self._logger = trt.Logger(trt.Logger.WARNING)
        with torch.cuda.device(self.device):
            self._runtime = trt.Runtime(self._logger)
            engine = self._runtime.deserialize_cuda_engine(plan)
            if engine is None:
                raise BackendError(
                    f"TensorRT {trt.__version__} cannot deserialize the engine of {name} "
                    "(built by another TensorRT version or for another GPU?); rebuild it"
                )
            self._engine = engine
            self._context = engine.create_execution_context()
            self._stream = torch.cuda.Stream(device=self.device)
        inputs: list[str] = []
        outputs: list[str] = []
        for i in range(engine.num_io_tensors):
            tname = engine.get_tensor_name(i)
            mode = engine.get_tensor_mode(tname)
            (inputs if mode == trt.TensorIOMode.INPUT else outputs).append(tname)
        if len(inputs) != 1 or len(engine.get_tensor_shape(inputs[0])) != 4:
            raise BackendError(f"engine of {name}: expected one (B, 3, H, W) input, got {inputs}")
        self.input_name: str = inputs[0]
        shape = tuple(engine.get_tensor_shape(self.input_name))
        if any(int(d) < 0 for d in shape):  # dynamic dims: the optimization profile's range
            profile = engine.get_tensor_profile_shape(self.input_name, 0)  # min, opt, max
            popt, pmax = (tuple(int(d) for d in s) for s in profile[1:])
        else:
            popt = pmax = shape
        self.fixed_batch: int | None = int(shape[0]) if shape[0] > 0 else None
        self.max_batch: int = int(pmax[0])
        self.input_hw: tuple[int, int] = (
            int(shape[2] if shape[2] > 0 else popt[2]),
            int(shape[3] if shape[3] > 0 else popt[3]),
        )
        self._input_dtype = self._dtype(engine.get_tensor_dtype(self.input_name))
        self.output_names: list[str] = outputs
        self.output_shapes: list[tuple[int | None, ...]] = [
            tuple(int(d) if d > 0 else None for d in engine.get_tensor_shape(o)) for o in outputs
        ]
        self._output_dtypes = [self._dtype(engine.get_tensor_dtype(o)) for o in outputs]
        self.metadata: dict[str, str] = dict(metadata or {})
        self.providers = [f"tensorrt:{self.device}"]
        self._lock = threading.Lock()

    def _dtype(self, trt_dtype: Any) -> Any:
        name = str(trt_dtype).rsplit(".", 1)[-1]
        if name not in _TORCH_DTYPES:
            raise BackendError(f"engine of {self.name}: unsupported tensor type {name}")
        return getattr(self._torch, _TORCH_DTYPES[name])

    def __repr__(self) -> str:
        return (
            f"TensorRTBackend({self.name!r}, input {self.input_hw[0]}x{self.input_hw[1]}, "
            f"batch {self.fixed_batch or f'1..{self.max_batch}'}, {self.device})"
        )

    def close(self) -> None:
        """Nothing to release explicitly (TensorRT objects are freed with the backend)."""

    def run(self, batch: Any) -> list[np.ndarray]:
        """Run the engine on ``(B, 3, H, W)`` (numpy float32, or a torch tensor).

        A batch larger than the engine takes is run in chunks (a fixed-batch engine's
        last chunk zero-padded) and the outputs concatenated and trimmed to ``B`` rows.

        Returns:
            The outputs in :attr:`output_names` order, float32 numpy arrays with ``B``
            rows (integer outputs keep their dtype).

        Raises:
            ValueError: wrong shape or empty batch.
            BackendError: TensorRT refused the shape or failed to run.
        """
        torch = self._torch
        x = batch if isinstance(batch, torch.Tensor) else torch.from_numpy(np.asarray(batch))
        n = batch_rows(tuple(x.shape), self.input_hw)
        x = x.to(device=self.device, dtype=self._input_dtype)
        step = self.fixed_batch or self.max_batch
        if n <= step and (self.fixed_batch is None or n == self.fixed_batch):
            return self._run_once(x)
        runs = split_runs(x, step, pad=self.fixed_batch is not None)
        return join_runs([self._run_once(r) for r in runs], n)

    def _run_once(self, x: Any) -> list[np.ndarray]:
        torch = self._torch
        with self._lock, torch.cuda.device(self.device):
            stream = self._stream
            stream.wait_stream(torch.cuda.current_stream(self.device))  # x is ready
            with torch.cuda.stream(stream):
                x = x.contiguous()
                ctx = self._context
                if not ctx.set_input_shape(self.input_name, tuple(x.shape)):
                    raise BackendError(
                        f"engine of {self.name} does not take input shape {tuple(x.shape)} "
                        f"(batch 1..{self.max_batch})"
                    )
                ctx.set_tensor_address(self.input_name, int(x.data_ptr()))
                outs = []
                for oname, dtype in zip(self.output_names, self._output_dtypes, strict=True):
                    out = torch.empty(
                        tuple(ctx.get_tensor_shape(oname)), dtype=dtype, device=self.device
                    )
                    ctx.set_tensor_address(oname, int(out.data_ptr()))
                    outs.append(out)
                if not ctx.execute_async_v3(stream.cuda_stream):
                    raise BackendError(f"TensorRT failed to run the engine of {self.name}")
                host = [
                    (o.float() if o.is_floating_point() else o).to("cpu", non_blocking=False)
                    for o in outs
                ]
            stream.synchronize()
        return [np.asarray(h.numpy()) for h in host]
