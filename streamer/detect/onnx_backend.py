"""ONNX Runtime inference backend for image detectors.

Thread-safety: :meth:`OnnxRuntimeBackend.run` may be called from several threads at
once (ONNX Runtime's ``InferenceSession.run`` is thread-safe); after construction the
object's only mutable state is the lazily created chunk pool (``parallel_runs > 1``),
created under a lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from streamer.detect.batching import batch_rows, join_runs, resolve_input_hw, split_runs
from streamer.errors import BackendError

__all__ = ["OnnxRuntimeBackend", "ProviderSpec"]

ProviderSpec = str | tuple[str, dict[str, Any]]
"""An execution provider: its name, or ``(name, options)``."""

_T = TypeVar("_T")
_R = TypeVar("_R")


def _provider_name(p: ProviderSpec) -> str:
    return p if isinstance(p, str) else p[0]


def _dim(value: object) -> int | None:
    """A fixed positive dim as int; symbolic (str), None or non-positive dims as None."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def provider_install_hint(name: str) -> str:
    """What to install for a missing GPU execution provider ("" for other providers)."""
    if name not in ("CUDAExecutionProvider", "TensorrtExecutionProvider"):
        return ""
    extra = " and TensorRT" if name == "TensorrtExecutionProvider" else ""
    return (
        f" (the CPU-only onnxruntime package lacks it: pip uninstall onnxruntime && pip "
        f"install onnxruntime-gpu, with a CUDA driver, CUDA and cuDNN{extra} of the versions "
        "that onnxruntime-gpu release needs; on a Jetson, the onnxruntime-gpu wheel built "
        "for your JetPack)"
    )


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] + ("…" if len(text) > 300 else "")


class OnnxRuntimeBackend:
    """Runs one ONNX model with ONNX Runtime.

    Args:
        model_path: Path of the ``.onnx`` file.
        providers: Execution providers in priority order, names (``"CUDAExecutionProvider"``)
            or ``(name, options)`` pairs.
        intra_op_threads: Threads ONNX Runtime uses inside one operator; None lets it
            choose (one per physical core).
        allow_spinning: Let idle intra-op worker threads busy-wait after each run. Off by
            default: on small machines spinning steals CPU from every other stage
            (measured: a tracker in the same process ran 2.4x slower with it on).
        input_hw: ``(H, W)`` to use when the model's spatial input dims are dynamic;
            otherwise ignored. Defaults to the Ultralytics ``imgsz`` metadata, else 640x640.
        parallel_runs: For a model with a fixed batch ``k``: how many ``k``-chunks of
            one :meth:`run` call execute at once (concurrent ``InferenceSession.run``
            calls on this one session), >= 1. Each run uses ``intra_op_threads``
            threads, so ``parallel_runs=2, intra_op_threads=1`` keeps two cores busy
            with two images instead of splitting each image's operators over two
            cores. Measured with YOLOv8n-int8 on an otherwise idle 2-core VM: 55 vs
            71 ms per 640x640 image (1.3x; CPU/wall 1.8 vs 1.6); with the cores
            already oversubscribed by other processes there was no gain (up to 1.2x
            slower), see ``scripts/bench_slicing.py``. Outputs are identical to
            sequential runs (each chunk is the same batch-``k`` run). Ignored for
            dynamic-batch models and for batches of one chunk. The worker threads
            are created on first use and stopped by :meth:`close`; :meth:`close`
            must not run concurrently with :meth:`run`.

    Attributes:
        model_path: Resolved path of the model file.
        input_name: Name of the (first) image input.
        input_hw: ``(H, W)`` of the model input, pixels.
        fixed_batch: The batch size baked into the model, or None when it is dynamic.
        metadata: ONNX ``custom_metadata_map`` (str → str; empty when absent).
        output_names: Names of the outputs, in order.
        output_shapes: Declared output shapes; dynamic dims are None.
        providers: Providers the session actually uses.

    Raises:
        ValueError: if ``intra_op_threads`` or ``parallel_runs`` is out of range.
        BackendError: (one line) if the file is missing (full path in the message), is
            not a loadable ONNX model, or a requested provider is not in this
            onnxruntime build (the message lists the available ones), or the model
            has no 4-D ``(B, 3, H, W)`` image input.
    """

    def __init__(
        self,
        model_path: str | Path,
        providers: Sequence[ProviderSpec] = ("CPUExecutionProvider",),
        intra_op_threads: int | None = None,
        allow_spinning: bool = False,
        input_hw: tuple[int, int] | None = None,
        parallel_runs: int = 1,
    ) -> None:
        import onnxruntime as ort

        path = Path(model_path).expanduser().resolve()
        if not path.is_file():
            raise BackendError(f"model file not found: {path}")
        available = list(ort.get_available_providers())
        requested = list(providers)
        if not requested:
            raise BackendError("no execution providers requested")
        for p in requested:
            if _provider_name(p) not in available:
                raise BackendError(
                    f"execution provider {_provider_name(p)!r} is not available in "
                    f"onnxruntime {ort.__version__}; available: {', '.join(available)}"
                    f"{provider_install_hint(_provider_name(p))}"
                )
        if intra_op_threads is not None and intra_op_threads < 1:
            raise ValueError(f"intra_op_threads must be >= 1 or None, got {intra_op_threads}")
        if int(parallel_runs) != parallel_runs or parallel_runs < 1:
            raise ValueError(f"parallel_runs must be an int >= 1, got {parallel_runs!r}")

        options = ort.SessionOptions()
        if intra_op_threads is not None:
            options.intra_op_num_threads = int(intra_op_threads)
        spin = "1" if allow_spinning else "0"
        options.add_session_config_entry("session.intra_op.allow_spinning", spin)
        options.add_session_config_entry("session.inter_op.allow_spinning", spin)
        try:
            session = ort.InferenceSession(str(path), sess_options=options, providers=requested)
        except Exception as exc:  # onnxruntime raises several private exception types
            raise BackendError(
                f"cannot load ONNX model {path}: {type(exc).__name__}: {_one_line(exc)}"
            ) from exc

        self._session = session
        self._parallel_runs = int(parallel_runs)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self.model_path = path
        self.providers: list[str] = list(session.get_providers())
        self.metadata: dict[str, str] = dict(session.get_modelmeta().custom_metadata_map or {})

        inputs = session.get_inputs()
        image_input = next((i for i in inputs if len(i.shape) == 4), None)
        if image_input is None or len(inputs) != 1:
            shapes = [(i.name, list(i.shape)) for i in inputs]
            raise BackendError(
                f"model {path.name}: expected one (B, 3, H, W) image input, got {shapes}"
            )
        self.input_name: str = image_input.name
        shape = list(image_input.shape)
        self.fixed_batch: int | None = _dim(shape[0])
        if _dim(shape[1]) not in (3, None):
            raise BackendError(
                f"model {path.name}: input {self.input_name} has {shape[1]} channels, expected 3"
            )
        self.input_hw: tuple[int, int] = resolve_input_hw(
            _dim(shape[2]), _dim(shape[3]), input_hw, self.metadata
        )
        self._input_dtype = np.float16 if image_input.type == "tensor(float16)" else np.float32
        outputs = session.get_outputs()
        self.output_names: list[str] = [o.name for o in outputs]
        self.output_shapes: list[tuple[int | None, ...]] = [
            tuple(_dim(d) for d in o.shape) for o in outputs
        ]

    @property
    def parallel_runs(self) -> int:
        """Chunks of a fixed-batch model run at once (see the class docstring)."""
        return self._parallel_runs

    def close(self) -> None:
        """Stop the chunk worker threads, if any were started (idempotent).

        A later :meth:`run` starts them again.
        """
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def __repr__(self) -> str:
        par = f", parallel_runs {self._parallel_runs}" if self._parallel_runs > 1 else ""
        return (
            f"OnnxRuntimeBackend({self.model_path.name!r}, input {self.input_hw[0]}x"
            f"{self.input_hw[1]}, batch {self.fixed_batch or 'dynamic'}{par}, {self.providers})"
        )

    def run(self, batch: npt.NDArray[np.float32]) -> list[np.ndarray]:
        """Run the model on a batch of preprocessed images.

        A model with a fixed batch size ``k`` accepts any ``B``: the batch is run in
        chunks of ``k`` (the last chunk zero-padded; ``parallel_runs`` chunks at a
        time) and the outputs are concatenated in batch order and trimmed to ``B``
        rows.

        Args:
            batch: ``(B, 3, H, W) float32`` tensor with ``(H, W) == input_hw``.

        Returns:
            The model outputs, in :attr:`output_names` order, each with ``B`` rows and
            float32 when the model emits float16.

        Raises:
            ValueError: if ``batch`` has the wrong shape.
            BackendError: if ONNX Runtime fails to run the model.
        """
        n = batch_rows(batch.shape, self.input_hw)
        x = np.ascontiguousarray(batch, dtype=self._input_dtype)
        k = self.fixed_batch
        if k is None or n == k:
            return self._run_once(x)
        runs = split_runs(x, k, pad=True)
        return join_runs(self.map_runs(self._run_once, runs), n)

    def map_runs(self, fn: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
        """Apply ``fn`` to every item, ``parallel_runs`` at a time; results in item order.

        For work made of whole model runs (e.g. a caller that letterboxes, runs and
        decodes one fixed-size chunk per item, as
        :class:`~streamer.slicing.SlicedDetector` does): the same concurrency as
        :meth:`run` gives its chunks. ``fn`` may call :meth:`run` with one chunk (it
        then runs in the calling worker; it must not call :meth:`map_runs`).

        Raises:
            Whatever ``fn`` raises (the first failing item's exception).
        """
        if self._parallel_runs > 1 and len(items) > 1:
            return list(self._chunk_pool().map(fn, items))
        return [fn(item) for item in items]

    def _chunk_pool(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=self._parallel_runs, thread_name_prefix="ort-chunk"
                )
            return self._pool

    def _run_once(self, x: np.ndarray) -> list[np.ndarray]:
        try:
            outputs = self._session.run(None, {self.input_name: x})
        except Exception as exc:
            raise BackendError(
                f"onnxruntime failed on {self.model_path.name}: {_one_line(exc)}"
            ) from exc
        return [o.astype(np.float32) if o.dtype == np.float16 else np.asarray(o) for o in outputs]
