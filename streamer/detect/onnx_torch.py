"""A small ONNX graph interpreter on torch: runs a YOLO ONNX model with torch operators.

Why not onnx2torch: it imports ``torchvision`` at import time (for its NMS
converter), and there is no CPU torchvision that pip picks by itself, so installing it
drags in a CUDA torch. The YOLO exports we support use a few dozen operators; this
module implements them directly on ``torch`` (and ``torch.nn.functional``), following
the ONNX operator specification (https://onnx.ai/onnx/operators/) for each one.

What runs (checked against ONNX Runtime on real frames in
``tests/integration/test_torch_backend.py``):

* FP32 models (``yolox_nano.onnx``: Conv, Sigmoid, Mul, Add, Slice, Concat, MaxPool,
  Resize, Reshape, Transpose);
* ONNX Runtime *dynamically quantized* models (``*_int8_dynamic.onnx``):
  ``DynamicQuantizeLinear`` and ``ConvInteger`` are computed exactly as specified
  (uint8 activations, int8 weights, integer products accumulated in float32 and rounded
  to int32), so they run in FP32 mode only;
* end-to-end models (TopK, GatherElements, Gather, Mod, Tile, Flatten, ReduceMax).

An operator outside :data:`SUPPORTED_OPS` fails at load time with a
:class:`~streamer.errors.BackendError` naming it.

Execution: at load the graph is topologically ordered (ONNX requires it already),
nodes whose inputs are all constants are folded once, float initializers move to the
device (and to half precision in FP16 mode), integer initializers (shapes, indices,
axes) stay on the CPU so that shape arithmetic never synchronises with the GPU. A run
walks the node list and frees each intermediate after its last use.

Thread-safety: :meth:`OnnxTorchModule.forward` keeps its values in a local dict; the
module's constants are read-only after construction. Concurrent calls are safe as far
as torch's own operators are.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streamer.errors import BackendError

__all__ = ["SUPPORTED_OPS", "OnnxTorchModule", "load_onnx_model", "load_onnx_torch"]

Tensor = Any  # torch.Tensor, kept as Any so that this module imports without torch
OpFn = Callable[[list[Tensor | None], dict[str, Any], "_Ctx"], list[Tensor]]


@dataclass(frozen=True)
class _Ctx:
    """What an operator needs besides its inputs."""

    opset: int
    float_dtype: Any  # torch.float32 or torch.float16: ONNX FLOAT maps to this
    device: Any


@dataclass(frozen=True)
class _Node:
    op: str
    fn: OpFn
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: dict[str, Any]
    name: str


# --------------------------------------------------------------------------- helpers


def _torch() -> Any:
    import torch

    return torch


def _F() -> Any:
    import torch.nn.functional as F

    return F


def _ints(t: Tensor | None) -> list[int]:
    """A small integer tensor (shape, axes, starts) as a list of Python ints."""
    if t is None:
        return []
    return [int(v) for v in t.reshape(-1).tolist()]


def _onnx_dtype(to: int, ctx: _Ctx) -> Any:
    torch = _torch()
    table = {
        1: ctx.float_dtype,  # FLOAT
        2: torch.uint8,
        3: torch.int8,
        5: torch.int16,
        6: torch.int32,
        7: torch.int64,
        9: torch.bool,
        10: torch.float16,
        11: torch.float64,
    }
    if to not in table:
        raise BackendError(f"Cast to ONNX data type {to} is not supported")
    return table[to]


def _same_device(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Move CPU shape/index constants to the other operand's device when they differ."""
    if a.device == b.device:
        return a, b
    if a.device.type == "cpu" and a.numel() <= 64:
        return a.to(b.device), b
    if b.device.type == "cpu" and b.numel() <= 64:
        return a, b.to(a.device)
    return a, b.to(a.device)


def _binary(fn: Callable[[Tensor, Tensor], Tensor]) -> OpFn:
    def op(x: list[Tensor | None], attrs: dict[str, Any], ctx: _Ctx) -> list[Tensor]:
        a, b = x[0], x[1]
        assert a is not None and b is not None
        a, b = _same_device(a, b)
        if a.dtype != b.dtype and a.is_floating_point() != b.is_floating_point():
            # ONNX has no mixed types; a float op meeting an int constant keeps float
            if a.is_floating_point():
                b = b.to(a.dtype)
            else:
                a = a.to(b.dtype)
        return [fn(a, b)]

    return op


def _unary(fn: Callable[[Tensor], Tensor]) -> OpFn:
    def op(x: list[Tensor | None], attrs: dict[str, Any], ctx: _Ctx) -> list[Tensor]:
        return [fn(x[0])]

    return op


def _conv_padding(attrs: dict[str, Any], ndim: int) -> tuple[tuple[int, ...], list[int] | None]:
    """Symmetric padding for F.conv/max_pool, or an explicit F.pad list when asymmetric."""
    if attrs.get("auto_pad", "NOTSET") not in ("NOTSET", b"NOTSET", ""):
        raise BackendError(f"auto_pad={attrs['auto_pad']!r} is not supported (use explicit pads)")
    pads = list(attrs.get("pads", [0] * (2 * ndim)))
    begin, end = pads[:ndim], pads[ndim:]
    if begin == end:
        return tuple(begin), None
    explicit: list[int] = []
    for i in reversed(range(ndim)):  # F.pad wants the last dim first
        explicit += [begin[i], end[i]]
    return (0,) * ndim, explicit


# --------------------------------------------------------------------------- operators


def _conv(x: list[Tensor | None], attrs: dict[str, Any], ctx: _Ctx) -> list[Tensor]:
    F = _F()
    data, weight, bias = x[0], x[1], x[2] if len(x) > 2 else None
    assert data is not None and weight is not None
    nd = weight.ndim - 2
    padding, explicit = _conv_padding(attrs, nd)
    if explicit is not None:
        data = F.pad(data, explicit)
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nd]
    return [
        conv(
            data,
            weight,
            bias,
            stride=tuple(attrs.get("strides", [1] * nd)),
            padding=padding,
            dilation=tuple(attrs.get("dilations", [1] * nd)),
            groups=int(attrs.get("group", 1)),
        )
    ]


def _conv_integer(x: list[Tensor | None], attrs: dict[str, Any], ctx: _Ctx) -> list[Tensor]:
    """ConvInteger: (x - x_zp) * (w - w_zp), accumulated exactly enough, as int32."""
    torch = _torch()
    data, weight = x[0], x[1]
    x_zp = x[2] if len(x) > 2 else None
    w_zp = x[3] if len(x) > 3 else None
    assert data is not None and weight is not None
    xf = data.to(torch.float32)
    if x_zp is not None:
        xf = xf - x_zp.to(device=xf.device, dtype=torch.float32).reshape(-1)[0]
    wf = weight.to(device=xf.device, dtype=torch.float32)
    if w_zp is not None:
        zp = w_zp.to(device=xf.device, dtype=torch.float32)
        wf = wf - (zp.reshape(-1, *([1] * (wf.ndim - 1))) if zp.numel() > 1 else zp.reshape(()))
    out = _conv([xf, wf, None], attrs, ctx)[0]
    return [torch.round(out).to(torch.int32)]


def _dynamic_quantize_linear(
    x: list[Tensor | None], attrs: dict[str, Any], ctx: _Ctx
) -> list[Tensor]:
    """DynamicQuantizeLinear: uint8 y, float scale, uint8 zero point (ONNX spec)."""
    torch = _torch()
    data = x[0]
    assert data is not None
    xf = data.to(torch.float32)
    x_min = torch.clamp(xf.min(), max=0.0)
    x_max = torch.clamp(xf.max(), min=0.0)
    scale = (x_max - x_min) / 255.0
    safe = torch.where(scale == 0, torch.ones_like(scale), scale)
    zp = torch.clamp(torch.round(-x_min / safe), 0, 255)
    y = torch.clamp(torch.round(xf / safe) + zp, 0, 255).to(torch.uint8)
    return [y, scale.to(ctx.float_dtype), zp.to(torch.uint8)]


def _max_pool(x: list[Tensor | None], attrs: dict[str, Any], ctx: _Ctx) -> list[Tensor]:
    F = _F()
    data = x[0]
    assert data is not None
    kernel = tuple(attrs["kernel_shape"])
    nd = len(kernel)
    padding, explicit = _conv_padding(attrs, nd)
    if explicit is not None:
        data = F.pad(data, explicit, value=-math.inf)
    pool = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[nd]
    return [
        pool(
            data,
            kernel,
            stride=tuple(attrs.get("strides", [1] * nd)),
            padding=padding,
            dilation=tuple(attrs.get("dilations", [1] * nd)),
            ceil_mode=bool(attrs.get("ceil_mode", 0)),
        )
    ]


def _resize(x: list[Tensor | None], attrs: dict[str, Any], ctx: _Ctx) -> list[Tensor]:
    F = _F()
    data = x[0]
    assert data is not None
    if ctx.opset < 11:
        scales_t, sizes_t = x[1], None
    else:
        scales_t = x[2] if len(x) > 2 else None
        sizes_t = x[3] if len(x) > 3 else None
    mode = attrs.get("mode", "nearest")
    coord = attrs.get("coordinate_transformation_mode", "half_pixel")
    spatial = data.shape[2:]
    if sizes_t is not None and sizes_t.numel():
        size = tuple(_ints(sizes_t)[2:])
    elif scales_t is not None and scales_t.numel():
        scales = [float(s) for s in scales_t.reshape(-1).tolist()]
        if scales[:2] != [1.0, 1.0]:
            raise BackendError(f"Resize of batch/channel dims is not supported: {scales}")
        size = tuple(math.floor(d * s) for d, s in zip(spatial, scales[2:], strict=True))
    else:
        raise BackendError("Resize without scales or sizes")
    if mode == "nearest":
        nearest = attrs.get("nearest_mode", "round_prefer_floor")
        if coord != "asymmetric" or nearest != "floor":
            raise BackendError(
                f"Resize nearest with coordinate_transformation_mode={coord!r}, "
                f"nearest_mode={nearest!r} is not supported (asymmetric/floor is)"
            )
        return [F.interpolate(data, size=size, mode="nearest")]
    if mode == "linear" and coord in ("half_pixel", "pytorch_half_pixel", "align_corners"):
        interp = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(size)]
        return [F.interpolate(data, size=size, mode=interp, align_corners=coord == "align_corners")]
    raise BackendError(f"Resize mode={mode!r} coordinate_transformation_mode={coord!r}")


def _reshape(x: list[Tensor | None], attrs: dict[str, Any], ctx: _Ctx) -> list[Tensor]:
    data = x[0]
    assert data is not None
    shape = _ints(x[1])
    if not attrs.get("allowzero", 0):
        shape = [data.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return [data.reshape(shape)]


def _slice(x: list[Tensor | None], attrs: dict[str, Any], ctx: _Ctx) -> list[Tensor]:
    data = x[0]
    assert data is not None
    if ctx.opset < 10:
        starts, ends = list(attrs["starts"]), list(attrs["ends"])
        axes = list(attrs.get("axes", range(len(starts))))
        steps = [1] * len(starts)
    else:
        starts, ends = _ints(x[1]), _ints(x[2])
        axes = _ints(x[3]) if len(x) > 3 and x[3] is not None else list(range(len(starts)))
        steps = _ints(x[4]) if len(x) > 4 and x[4] is not None else [1] * len(starts)
    index: list[slice] = [slice(None)] * data.ndim
    for s, e, a, st in zip(starts, ends, axes, steps, strict=True):
        if st <= 0:
            raise BackendError(f"Slice with step {st} is not supported")
        dim = data.shape[a]
        s = max(0, min(dim, s + dim if s < 0 else s))
        e = max(0, min(dim, e + dim if e < 0 else e))
        index[a] = slice(s, e, st)
    return [data[tuple(index)]]


def _split(x: list[Tensor | None], attrs: dict[str, Any], ctx: _Ctx, n_out: int) -> list[Tensor]:
    torch = _torch()
    data = x[0]
    assert data is not None
    axis = int(attrs.get("axis", 0))
    if ctx.opset >= 13 and len(x) > 1 and x[1] is not None:
        sizes = _ints(x[1])
    elif "split" in attrs:
        sizes = list(attrs["split"])
    else:
        dim = data.shape[axis]
        chunk = -(-dim // n_out)
        sizes = [min(chunk, dim - i * chunk) for i in range(n_out)]
    return list(torch.split(data, sizes, dim=axis))


def _softmax(x: list[Tensor | None], attrs: dict[str, Any], ctx: _Ctx) -> list[Tensor]:
    torch = _torch()
    data = x[0]
    assert data is not None
    if ctx.opset >= 13:
        return [torch.softmax(data, dim=int(attrs.get("axis", -1)))]
    # opset < 13: coerce to 2-D at ``axis`` and normalise over all trailing dims
    axis = int(attrs.get("axis", 1))
    axis = axis + data.ndim if axis < 0 else axis
    flat = data.reshape(*data.shape[:axis], -1)
    return [torch.softmax(flat, dim=-1).reshape(data.shape)]


def _concat(x: list[Tensor | None], attrs: dict[str, Any], ctx: _Ctx) -> list[Tensor]:
    torch = _torch()
    parts = [t for t in x if t is not None]
    devices = {p.device for p in parts}
    if len(devices) > 1:
        target = next(p.device for p in parts if p.device.type != "cpu")
        parts = [p.to(target) for p in parts]
    return [torch.cat(parts, dim=int(attrs["axis"]))]


def _axes(x: list[Tensor | None], attrs: dict[str, Any], ctx: _Ctx, since: int) -> list[int]:
    if ctx.opset >= since:
        return _ints(x[1]) if len(x) > 1 and x[1] is not None else []
    return list(attrs.get("axes", []))


def _unsqueeze(x: list[Tensor | None], attrs: dict[str, Any], ctx: _Ctx) -> list[Tensor]:
    data = x[0]
    assert data is not None
    axes = _axes(x, attrs, ctx, 13)
    out_rank = data.ndim + len(axes)
    for a in sorted(a + out_rank if a < 0 else a for a in axes):
        data = data.unsqueeze(a)
    return [data]


def _squeeze(x: list[Tensor | None], attrs: dict[str, Any], ctx: _Ctx) -> list[Tensor]:
    data = x[0]
    assert data is not None
    axes = _axes(x, attrs, ctx, 13)
    if not axes:
        return [data.squeeze()]
    for a in sorted((a + data.ndim if a < 0 else a for a in axes), reverse=True):
        data = data.squeeze(a)
    return [data]


def _reduce(name: str) -> OpFn:
    def op(x: list[Tensor | None], attrs: dict[str, Any], ctx: _Ctx) -> list[Tensor]:
        data = x[0]
        assert data is not None
        since = 18 if name != "sum" else 13
        axes = _axes(x, attrs, ctx, since) or list(range(data.ndim))
        keep = bool(attrs.get("keepdims", 1))
        out = data
        for a in sorted((a + data.ndim if a < 0 else a for a in axes), reverse=True):
            if name == "max":
                out = out.amax(dim=a, keepdim=keep)
            elif name == "min":
                out = out.amin(dim=a, keepdim=keep)
            elif name == "mean":
                out = out.mean(dim=a, keepdim=keep)
            else:
                out = out.sum(dim=a, keepdim=keep)
        return [out]

    return op


def _topk(x: list[Tensor | None], attrs: dict[str, Any], ctx: _Ctx) -> list[Tensor]:
    torch = _torch()
    data = x[0]
    assert data is not None
    k = _ints(x[1])[0] if ctx.opset >= 10 else int(attrs["k"])
    values, indices = torch.topk(
        data,
        k,
        dim=int(attrs.get("axis", -1)),
        largest=bool(attrs.get("largest", 1)),
        sorted=bool(attrs.get("sorted", 1)),
    )
    return [values, indices.to(torch.int64)]


def _gather(x: list[Tensor | None], attrs: dict[str, Any], ctx: _Ctx) -> list[Tensor]:
    torch = _torch()
    data, idx = x[0], x[1]
    assert data is not None and idx is not None
    axis = int(attrs.get("axis", 0))
    axis = axis + data.ndim if axis < 0 else axis
    idx = idx.to(device=data.device, dtype=torch.int64)
    idx = torch.where(idx < 0, idx + data.shape[axis], idx)
    out = data.index_select(axis, idx.reshape(-1))
    return [out.reshape(*data.shape[:axis], *idx.shape, *data.shape[axis + 1 :])]


def _gather_elements(x: list[Tensor | None], attrs: dict[str, Any], ctx: _Ctx) -> list[Tensor]:
    torch = _torch()
    data, idx = x[0], x[1]
    assert data is not None and idx is not None
    axis = int(attrs.get("axis", 0))
    idx = idx.to(device=data.device, dtype=torch.int64)
    idx = torch.where(idx < 0, idx + data.shape[axis], idx)
    return [torch.gather(data, axis, idx)]


def _flatten(x: list[Tensor | None], attrs: dict[str, Any], ctx: _Ctx) -> list[Tensor]:
    data = x[0]
    assert data is not None
    axis = int(attrs.get("axis", 1))
    axis = axis + data.ndim if axis < 0 else axis
    outer = int(np.prod(data.shape[:axis])) if axis else 1
    return [data.reshape(outer, -1)]


def _tile(x: list[Tensor | None], attrs: dict[str, Any], ctx: _Ctx) -> list[Tensor]:
    data = x[0]
    assert data is not None
    return [data.repeat(*_ints(x[1]))]


def _div(a: Tensor, b: Tensor) -> Tensor:
    torch = _torch()
    if a.is_floating_point():
        return a / b
    return torch.div(a, b, rounding_mode="trunc")


def _mod(x: list[Tensor | None], attrs: dict[str, Any], ctx: _Ctx) -> list[Tensor]:
    torch = _torch()
    a, b = x[0], x[1]
    assert a is not None and b is not None
    a, b = _same_device(a, b)
    return [torch.fmod(a, b) if attrs.get("fmod", 0) else torch.remainder(a, b)]


def _cast(x: list[Tensor | None], attrs: dict[str, Any], ctx: _Ctx) -> list[Tensor]:
    data = x[0]
    assert data is not None
    return [data.to(_onnx_dtype(int(attrs["to"]), ctx))]


def _transpose(x: list[Tensor | None], attrs: dict[str, Any], ctx: _Ctx) -> list[Tensor]:
    data = x[0]
    assert data is not None
    perm = attrs.get("perm") or list(reversed(range(data.ndim)))
    return [data.permute(*perm)]


def _shape(x: list[Tensor | None], attrs: dict[str, Any], ctx: _Ctx) -> list[Tensor]:
    torch = _torch()
    data = x[0]
    assert data is not None
    dims = list(data.shape)
    start, end = int(attrs.get("start", 0)), attrs.get("end")
    return [torch.tensor(dims[start : None if end is None else int(end)], dtype=torch.int64)]


def _clip(x: list[Tensor | None], attrs: dict[str, Any], ctx: _Ctx) -> list[Tensor]:
    torch = _torch()
    data = x[0]
    assert data is not None
    if ctx.opset < 11:
        lo, hi = attrs.get("min"), attrs.get("max")
    else:
        lo = float(x[1].reshape(-1)[0]) if len(x) > 1 and x[1] is not None else None
        hi = float(x[2].reshape(-1)[0]) if len(x) > 2 and x[2] is not None else None
    return [torch.clamp(data, min=lo, max=hi)]


def _where(x: list[Tensor | None], attrs: dict[str, Any], ctx: _Ctx) -> list[Tensor]:
    torch = _torch()
    cond, a, b = x[0], x[1], x[2]
    assert cond is not None and a is not None and b is not None
    device = next((t.device for t in (a, b, cond) if t.device.type != "cpu"), a.device)
    return [torch.where(cond.to(device), a.to(device), b.to(device))]


def _expand(x: list[Tensor | None], attrs: dict[str, Any], ctx: _Ctx) -> list[Tensor]:
    torch = _torch()
    data = x[0]
    assert data is not None
    shape = _ints(x[1])
    target = torch.broadcast_shapes(tuple(data.shape), tuple(shape))
    return [data.expand(target)]


def _constant_of_shape(x: list[Tensor | None], attrs: dict[str, Any], ctx: _Ctx) -> list[Tensor]:
    torch = _torch()
    value = attrs.get("value")
    fill = torch.zeros(1, dtype=torch.float32) if value is None else value
    return [fill.reshape(-1)[0].expand(_ints(x[0])).clone()]


def _range(x: list[Tensor | None], attrs: dict[str, Any], ctx: _Ctx) -> list[Tensor]:
    torch = _torch()
    start, limit, delta = x[0], x[1], x[2]
    assert start is not None and limit is not None and delta is not None
    return [torch.arange(start.item(), limit.item(), delta.item(), dtype=start.dtype)]


def _arg(name: str) -> OpFn:
    def op(x: list[Tensor | None], attrs: dict[str, Any], ctx: _Ctx) -> list[Tensor]:
        torch = _torch()
        data = x[0]
        assert data is not None
        fn = torch.argmax if name == "max" else torch.argmin
        return [fn(data, dim=int(attrs.get("axis", 0)), keepdim=bool(attrs.get("keepdims", 1)))]

    return op


def _leaky_relu(x: list[Tensor | None], attrs: dict[str, Any], ctx: _Ctx) -> list[Tensor]:
    return [_F().leaky_relu(x[0], float(attrs.get("alpha", 0.01)))]


def _constant(x: list[Tensor | None], attrs: dict[str, Any], ctx: _Ctx) -> list[Tensor]:
    if "value" not in attrs:
        raise BackendError(f"Constant without a tensor 'value' ({sorted(attrs)})")
    return [attrs["value"]]


def _ops() -> dict[str, OpFn]:
    torch = _torch()
    F = _F()
    return {
        "Add": _binary(torch.add),
        "Sub": _binary(torch.sub),
        "Mul": _binary(torch.mul),
        "Div": _binary(_div),
        "Pow": _binary(torch.pow),
        "MatMul": _binary(torch.matmul),
        "Equal": _binary(torch.eq),
        "Greater": _binary(torch.gt),
        "Less": _binary(torch.lt),
        "Max": _binary(torch.maximum),
        "Min": _binary(torch.minimum),
        "Mod": _mod,
        "Sigmoid": _unary(torch.sigmoid),
        "Relu": _unary(torch.relu),
        "Tanh": _unary(torch.tanh),
        "Exp": _unary(torch.exp),
        "Sqrt": _unary(torch.sqrt),
        "Neg": _unary(torch.neg),
        "Abs": _unary(torch.abs),
        "Floor": _unary(torch.floor),
        "Ceil": _unary(torch.ceil),
        "Erf": _unary(torch.erf),
        "Not": _unary(torch.logical_not),
        "HardSwish": _unary(F.hardswish),
        "Identity": _unary(lambda t: t),
        "LeakyRelu": _leaky_relu,
        "Conv": _conv,
        "ConvInteger": _conv_integer,
        "DynamicQuantizeLinear": _dynamic_quantize_linear,
        "MaxPool": _max_pool,
        "Resize": _resize,
        "Upsample": _resize,
        "Reshape": _reshape,
        "Slice": _slice,
        "Concat": _concat,
        "Softmax": _softmax,
        "Transpose": _transpose,
        "Unsqueeze": _unsqueeze,
        "Squeeze": _squeeze,
        "Flatten": _flatten,
        "Tile": _tile,
        "TopK": _topk,
        "Gather": _gather,
        "GatherElements": _gather_elements,
        "ReduceMax": _reduce("max"),
        "ReduceMin": _reduce("min"),
        "ReduceMean": _reduce("mean"),
        "ReduceSum": _reduce("sum"),
        "ArgMax": _arg("max"),
        "ArgMin": _arg("min"),
        "Cast": _cast,
        "Shape": _shape,
        "Clip": _clip,
        "Where": _where,
        "Expand": _expand,
        "ConstantOfShape": _constant_of_shape,
        "Range": _range,
        "Constant": _constant,
    }


SUPPORTED_OPS: tuple[str, ...] = (
    "Abs", "Add", "ArgMax", "ArgMin", "Cast", "Ceil", "Clip", "Concat", "Constant",
    "ConstantOfShape", "Conv", "ConvInteger", "Div", "DynamicQuantizeLinear", "Equal", "Erf",
    "Exp", "Expand", "Flatten", "Floor", "Gather", "GatherElements", "Greater", "HardSwish",
    "Identity", "LeakyRelu", "Less", "MatMul", "Max", "MaxPool", "Min", "Mod", "Mul", "Neg",
    "Not", "Pow", "Range", "ReduceMax", "ReduceMean", "ReduceMin", "ReduceSum", "Relu",
    "Reshape", "Resize", "Shape", "Sigmoid", "Slice", "Softmax", "Split", "Sqrt", "Squeeze",
    "Sub", "Tanh", "Tile", "TopK", "Transpose", "Unsqueeze", "Upsample", "Where",
)  # fmt: skip
"""ONNX operators (default domain) the interpreter implements."""

QUANTIZED_OPS = frozenset({"ConvInteger", "DynamicQuantizeLinear", "MatMulInteger"})
"""Operators of ONNX Runtime's dynamic quantization: FP32 mode only."""


# --------------------------------------------------------------------------- module


def _attr_value(attr: Any) -> Any:
    from onnx import helper, numpy_helper

    value = helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode()
    if attr.type == attr.TENSOR:
        return _torch().from_numpy(numpy_helper.to_array(attr.t).copy())
    return value


def load_onnx_model(path: Path) -> Any:
    """Read an ONNX file into an ``onnx.ModelProto`` (weights included).

    Raises:
        BackendError: the ``onnx`` package is missing (the message says what to
            install), the file does not exist, or it is not a readable ONNX model.
    """
    try:
        import onnx
    except ImportError as exc:
        raise BackendError(
            "backend 'torch' needs the onnx package to read the model: "
            "pip install 'streamer[gpu]' (or pip install onnx)"
        ) from exc
    if not path.is_file():
        raise BackendError(f"model file not found: {path}")
    try:
        return onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError and friends
        raise BackendError(f"cannot read ONNX model {path}: {type(exc).__name__}: {exc}") from exc


def load_onnx_torch(
    model_path: str | Path, device: str = "cpu", precision: str = "fp32"
) -> OnnxTorchModule:
    """Load an ONNX file into an :class:`OnnxTorchModule` on ``device``.

    Args:
        model_path: The ``.onnx`` file.
        device: torch device (``cpu``, ``cuda``, ``cuda:1``).
        precision: ``fp32`` or ``fp16`` (float weights and activations in half).

    Raises:
        BackendError: missing file, unreadable model, an unsupported operator (named),
            or ``fp16`` on a dynamically quantized model.
    """
    path = Path(model_path).expanduser().resolve()
    return OnnxTorchModule(
        load_onnx_model(path), device=device, precision=precision, name=path.name
    )


class OnnxTorchModule:
    """An ONNX graph run with torch operators (see the module docstring).

    Args:
        model: An ``onnx.ModelProto``.
        device: torch device string.
        precision: ``fp32`` or ``fp16``.
        name: Shown in error messages.

    Attributes:
        input_names: Graph inputs that are not initializers, in order.
        output_names: Graph outputs, in order.
        input_shapes: Declared input shapes (None for symbolic dims).
        output_shapes: Declared output shapes (None for symbolic dims).
        metadata: ``metadata_props`` of the model (str → str).
        ops: Operator types used by the graph.

    Raises:
        BackendError: see :func:`load_onnx_torch`.
    """

    def __init__(
        self, model: Any, device: str = "cpu", precision: str = "fp32", name: str = ""
    ) -> None:
        torch = _torch()
        from onnx import numpy_helper

        if precision not in ("fp32", "fp16"):
            raise BackendError(f"precision must be fp32 or fp16, got {precision!r}")
        self.name = name or model.graph.name
        self.device = torch.device(device)
        self.float_dtype = torch.float16 if precision == "fp16" else torch.float32
        graph = model.graph
        opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
        self._ctx = _Ctx(opset=int(opset), float_dtype=self.float_dtype, device=self.device)
        self.ops: frozenset[str] = frozenset(n.op_type for n in graph.node)
        foreign = sorted({n.op_type for n in graph.node if n.domain not in ("", "ai.onnx")})
        unsupported = sorted(self.ops - set(SUPPORTED_OPS)) + foreign
        if unsupported:
            raise BackendError(
                f"model {self.name}: operators not supported by the torch backend: "
                f"{', '.join(unsupported)} (supported: see streamer.detect.onnx_torch)"
            )
        if precision == "fp16" and self.ops & QUANTIZED_OPS:
            raise BackendError(
                f"model {self.name} is dynamically quantized "
                f"({', '.join(sorted(self.ops & QUANTIZED_OPS))}); the torch backend runs it "
                "in fp32 only: set precision: fp32, or use the model's FP32 export for fp16"
            )
        self.metadata: dict[str, str] = {p.key: p.value for p in model.metadata_props}

        consts: dict[str, Tensor] = {}
        for init in graph.initializer:
            consts[init.name] = torch.from_numpy(numpy_helper.to_array(init).copy())
        init_names = set(consts)
        self.input_names = [i.name for i in graph.input if i.name not in init_names]
        self.output_names = [o.name for o in graph.output]
        self.input_shapes = [_declared_shape(i) for i in graph.input if i.name not in init_names]
        self.output_shapes = [_declared_shape(o) for o in graph.output]

        table = _ops()
        nodes: list[_Node] = []
        for n in graph.node:
            attrs = {a.name: _attr_value(a) for a in n.attribute}
            fn = table.get(n.op_type)
            if n.op_type == "Split":
                n_out = len(n.output)

                def fn_split(
                    x: list[Tensor | None], a: dict[str, Any], c: _Ctx, _k: int = n_out
                ) -> list[Tensor]:
                    return _split(x, a, c, _k)

                fn = fn_split
            assert fn is not None
            node = _Node(n.op_type, fn, tuple(n.input), tuple(n.output), attrs, n.name)
            # Fold nodes whose inputs are all constants (bias reshapes, shape arithmetic)
            if all(i == "" or i in consts for i in node.inputs):
                outs = node.fn(
                    [consts.get(i) if i else None for i in node.inputs], attrs, self._ctx
                )
                for out_name, value in zip(node.outputs, outs, strict=False):
                    if out_name:
                        consts[out_name] = value
                continue
            nodes.append(node)
        self._nodes = nodes
        # Float constants go to the device (in half for fp16); integers stay on the CPU.
        self._consts: dict[str, Tensor] = {}
        for key, value in consts.items():
            if value.is_floating_point() and value.numel() > 0:
                value = value.to(device=self.device, dtype=self.float_dtype)
            elif value.dtype in (torch.uint8, torch.int8) and value.numel() > 64:
                value = value.to(device=self.device)  # quantized weights
            self._consts[key] = value
        # Last use of every value, so that intermediates are freed early.
        last: dict[str, int] = {}
        for i, node in enumerate(nodes):
            for name_in in node.inputs:
                last[name_in] = i
        self._free_after: list[tuple[str, ...]] = [() for _ in nodes]
        keep = set(self.output_names)
        for name_in, i in last.items():
            if name_in and name_in not in keep and name_in not in self._consts:
                self._free_after[i] += (name_in,)

    def __call__(self, *inputs: Tensor) -> list[Tensor]:
        return self.forward(*inputs)

    def forward(self, *inputs: Tensor) -> list[Tensor]:
        """Run the graph.

        Args:
            *inputs: One tensor per :attr:`input_names`, on :attr:`device`; float
                inputs are cast to the module's float dtype.

        Returns:
            The graph outputs in :attr:`output_names` order (on the device; float
            outputs in the module's float dtype).

        Raises:
            BackendError: an operator failed (names the node and operator).
        """
        torch = _torch()
        if len(inputs) != len(self.input_names):
            raise BackendError(
                f"model {self.name} takes {len(self.input_names)} inputs, got {len(inputs)}"
            )
        env: dict[str, Tensor] = dict(self._consts)
        for name, t in zip(self.input_names, inputs, strict=True):
            env[name] = t.to(self.float_dtype) if t.is_floating_point() else t
        with torch.inference_mode():
            for node, free in zip(self._nodes, self._free_after, strict=True):
                args = [env[i] if i else None for i in node.inputs]
                try:
                    outs = node.fn(args, node.attrs, self._ctx)
                except BackendError:
                    raise
                except Exception as exc:
                    raise BackendError(
                        f"model {self.name}: {node.op} node {node.name!r} failed: "
                        f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
                    ) from exc
                for out_name, value in zip(node.outputs, outs, strict=False):
                    if out_name:
                        env[out_name] = value
                for name in free:
                    env.pop(name, None)
        return [env[name] for name in self.output_names]


def _declared_shape(value_info: Any) -> tuple[int | None, ...]:
    dims = value_info.type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in dims)
