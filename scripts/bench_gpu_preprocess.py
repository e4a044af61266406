#!/usr/bin/env python3
"""CPU letterbox (OpenCV + numpy) against torch preprocessing, frames per second.

Both paths make the same model input from the same decoded PETS09 frames (decoded into
memory first, so decoding is not timed): the CPU reference
(:func:`streamer.preprocess.letterbox.letterbox_to_tensor`) and
:class:`streamer.preprocess.gpu.TorchLetterbox` on ``--device`` (upload from pinned
memory, resize, pad, colour order, scale, batch, on a CUDA stream). The torch path is
timed until its tensor is ready on the device (the call waits for its stream). Runs are
interleaved ``--repeats`` times and medians compared (machines drift; compare only
ratios of one run). It also prints the largest difference between the two outputs.

Meant for a GPU machine (``--device cuda``); on a CPU it runs the same code on CPU torch,
which says nothing about GPU speed. The device is printed with the results.

Usage::

    python scripts/bench_gpu_preprocess.py --device cuda --frames 200 --batch 8
    python scripts/bench_gpu_preprocess.py --device cpu --input 416 --layout yolox
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from streamer.data import data_path
from streamer.detect.decoders import get_layout
from streamer.errors import StreamerError
from streamer.preprocess.gpu import TorchLetterbox, import_torch
from streamer.preprocess.letterbox import compute_letterbox, letterbox_to_tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pipeline import decode_frames  # the same clip decode as the pipeline benchmark


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--video", default=str(data_path("videos/pets09_s2l1_480x360.mp4")))
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--input", type=int, default=640, help="square model input, pixels")
    ap.add_argument("--layout", default="ultralytics", choices=["ultralytics", "yolox"])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batch", type=int, default=1, help="frames per torch call")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--torch-threads", type=int, help="CPU torch intra-op threads (default: torch's)"
    )
    args = ap.parse_args(argv)

    torch = import_torch("this benchmark")
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    frames = decode_frames(Path(args.video), args.frames)
    if not frames:
        print(f"no frames in {args.video}", file=sys.stderr)
        return 1
    spec = get_layout(args.layout)
    wh = (args.input, args.input)
    gpu = TorchLetterbox(
        wh,
        center=spec.center,
        swap_rb=spec.swap_rb,
        scale=spec.input_scale,
        pad_value=spec.pad_value,
        device=args.device,
    )
    if gpu.device.type == "cuda":
        name = torch.cuda.get_device_name(gpu.device)
    else:
        name = f"CPU torch {torch.__version__}, {torch.get_num_threads()} threads"
    lb = compute_letterbox((frames[0].shape[1], frames[0].shape[0]), wh, spec.center)

    def cpu_pass() -> float:
        out = np.empty((3, args.input, args.input), np.float32)
        t0 = time.perf_counter()
        for f in frames:
            letterbox_to_tensor(
                f,
                lb,
                swap_rb=spec.swap_rb,
                scale=spec.input_scale,
                pad_value=spec.pad_value,
                out=out,
            )
        return len(frames) / (time.perf_counter() - t0)

    def torch_pass() -> float:
        t0 = time.perf_counter()
        for i in range(0, len(frames), args.batch):
            gpu.batch(frames[i : i + args.batch])
        return len(frames) / (time.perf_counter() - t0)

    torch_pass()  # warm-up: kernels, pinned buffers, allocator
    cpu_fps, torch_fps = [], []
    for _ in range(args.repeats):
        cpu_fps.append(cpu_pass())
        torch_fps.append(torch_pass())
    ref = letterbox_to_tensor(frames[0], lb, swap_rb=spec.swap_rb, scale=spec.input_scale)
    got = gpu(frames[0])[0].float().cpu().numpy()
    diff = float(np.abs(got - ref).max())
    c, t = statistics.median(cpu_fps), statistics.median(torch_fps)
    print(f"device: {gpu.device} ({name})")
    print(
        f"{len(frames)} frames {frames[0].shape[1]}x{frames[0].shape[0]} -> "
        f"{args.input}x{args.input} ({args.layout}), torch batch {args.batch}, "
        f"{args.repeats} repeats (median)"
    )
    print(f"CPU letterbox (OpenCV): {c:8.1f} frames/s  ({1000 / c:.2f} ms/frame)")
    print(f"torch on {gpu.device}: {t:11.1f} frames/s  ({1000 / t:.2f} ms/frame)")
    print(f"torch / CPU: {t / c:.2f}x; max |difference| of the two tensors {diff:.6f}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except StreamerError as e:  # no CUDA, no torch: one line
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
