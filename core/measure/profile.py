"""Cost of a model: parameters, MACs per image, file size and latency (one harness for every backend).

MACs are counted with ``torch.utils.flop_counter.FlopCounterMode`` (a multiply-add is 2 FLOPs there,
so MACs = FLOPs / 2). It counts matrix products and convolutions (the usual SR convention); it does
not count element-wise ops (activations, residual adds), resampling, PixelShuffle or normalisation.
FFTs are counted with the formulas registered here (FlopCounterMode has none):

- ``aten._fft_c2c`` over transformed sizes n_1..n_k (N = n_1 ... n_k points) of a batch of B
  transforms: ``B * N * log2(N)`` MACs (radix-2 Cooley-Tukey: N/2 log2 N butterflies of one complex
  multiply-add, i.e. about 2 real MACs each);
- ``aten._fft_r2c`` and ``aten._fft_c2r`` (real input / real output, N = the real signal's points):
  half of that, ``B * N * log2(N) / 2``, since Hermitian symmetry halves the work.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.fx
from attrs import define, field
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from srcompress.modes import eval_mode

__all__ = [
    "FFT_FLOP_FORMULAS",
    "LatencyStats",
    "count_macs",
    "count_params",
    "file_size",
    "measure_latency",
]

aten = torch.ops.aten


def _fft_macs(batch: int, points: int, real: bool) -> float:
    if points <= 1:
        return 0.0
    macs = batch * points * math.log2(points)
    return macs / 2 if real else macs


def _split(shape: Sequence[int], dims: Sequence[int]) -> tuple[int, int]:
    """(batch, points) of a tensor of ``shape`` transformed along ``dims``."""
    dims = {d % len(shape) for d in dims}
    points = math.prod(shape[d] for d in dims)
    batch = math.prod(shape[d] for d in range(len(shape)) if d not in dims)
    return batch, points


def _fft_r2c_flop(x_shape: Sequence[int], dim: Sequence[int], *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    batch, points = _split(x_shape, dim)
    return int(round(2 * _fft_macs(batch, points, real=True)))


def _fft_c2r_flop(x_shape: Sequence[int], dim: Sequence[int], *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    batch, points = _split(out_shape, dim)  # the real output holds the full signal length
    return int(round(2 * _fft_macs(batch, points, real=True)))


def _fft_c2c_flop(x_shape: Sequence[int], dim: Sequence[int], *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    batch, points = _split(x_shape, dim)
    return int(round(2 * _fft_macs(batch, points, real=False)))


FFT_FLOP_FORMULAS: dict[Any, Callable[..., int]] = {
    aten._fft_r2c: _fft_r2c_flop,
    aten._fft_c2r: _fft_c2r_flop,
    aten._fft_c2c: _fft_c2c_flop,
}
"""FLOP formulas (2 x MACs) for FFT ops, in ``FlopCounterMode(custom_mapping=...)`` form."""


def count_params(model: nn.Module) -> tuple[int, int]:
    """(total, trainable) number of parameters; shared parameters are counted once.

    A traced graph (``torch.fx.GraphModule``, e.g. a PT2E-quantized model) keeps most weights as
    plain tensor attributes and may still hold parameters it no longer reads: it counts the
    parameters its graph reads plus the weights and biases its convs and linears read (through
    dequantize ops), as frozen parameters.
    """
    if isinstance(model, torch.fx.GraphModule):
        used = {id(t): t for t in _graph_attrs(model, weights_only=False)}
        unique = {k: p for k, p in used.items() if isinstance(p, nn.Parameter)}
        unique.update({id(t): t for t in _graph_attrs(model, weights_only=True)})
    else:
        unique = {id(p): p for p in model.parameters()}
    trainable = sum(p.numel() for p in unique.values() if isinstance(p, nn.Parameter) and p.requires_grad)
    return sum(p.numel() for p in unique.values()), trainable


_WEIGHTED_OPS = ("conv1d", "conv2d", "conv3d", "convolution", "linear", "conv_transpose2d")


def _graph_attrs(graph: torch.fx.GraphModule, *, weights_only: bool) -> list[torch.Tensor]:
    """Tensors the graph reads with get_attr (``weights_only``: those its conv/linear nodes read as
    weight and bias, through dequantize ops). Parameters the graph no longer reads are not included."""
    if not weights_only:
        return [t for n in graph.graph.nodes if n.op == "get_attr" for t in [_attr_value(graph, n)] if t is not None]
    found = []
    for node in graph.graph.nodes:
        if node.op != "call_function" or not any(f"aten.{op}." in str(node.target) for op in _WEIGHTED_OPS):
            continue
        for arg in node.args[1:3]:
            while isinstance(arg, torch.fx.Node) and arg.op == "call_function" and "dequantize" in str(arg.target):
                arg = arg.args[0]
            value = _attr_value(graph, arg) if isinstance(arg, torch.fx.Node) and arg.op == "get_attr" else None
            if value is not None:
                found.append(value)
    return found


def _attr_value(graph: torch.fx.GraphModule, node: torch.fx.Node) -> torch.Tensor | None:
    value: object = graph
    for part in str(node.target).split("."):
        value = getattr(value, part, None)
    return value if isinstance(value, torch.Tensor) else None


def _model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    for tensor in list(model.parameters()) + list(model.buffers()):
        if tensor.is_floating_point():
            return tensor.device, tensor.dtype
    return torch.device("cpu"), torch.float32


def count_macs(
    model: Callable[[torch.Tensor], torch.Tensor],
    lr_size: tuple[int, int] = (64, 64),
    scale: int | None = None,
    *,
    channels: int = 3,
) -> int:
    """Multiply-accumulates to upscale ONE image of ``lr_size`` = (H, W) LR pixels.

    The model runs once (no grad, eval mode for an ``nn.Module``, training flag restored) on a zero
    float image (1, ``channels``, H, W) on the model's device and dtype. Counted: convolutions,
    matrix products and FFTs (see the module docstring for the FFT formula).

    :param scale: when given, the output must be (1, 3, scale*H, scale*W); a mismatch raises
        ``ValueError`` (it catches a model built for another scale).
    """
    height, width = lr_size
    device, dtype = _model_device_dtype(model) if isinstance(model, nn.Module) else (torch.device("cpu"), torch.float32)
    x = torch.zeros(1, channels, height, width, device=device, dtype=dtype)
    counter = FlopCounterMode(display=False, custom_mapping=FFT_FLOP_FORMULAS)
    with eval_mode(model), torch.no_grad(), counter:
        out = model(x)
    if scale is not None and tuple(out.shape[-2:]) != (scale * height, scale * width):
        raise ValueError(
            f"model output {tuple(out.shape)} is not x{scale} of the input {tuple(x.shape)}; "
            f"is the model built for another scale?"
        )
    return counter.get_total_flops() // 2


def file_size(path: str | os.PathLike[str]) -> int:
    """Size in bytes of a file, or of all files under a folder (e.g. a saved engine directory)."""
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file or folder")
    return path.stat().st_size


@define(frozen=True, kw_only=True)
class LatencyStats:
    """Wall-clock latency of one call, over ``runs`` timed calls after warm-up (milliseconds)."""

    median_ms: float
    p90_ms: float
    mean_ms: float
    min_ms: float
    runs: int
    threads: int | None = None
    times_ms: tuple[float, ...] = field(factory=tuple, repr=False)

    @classmethod
    def from_times(cls, times: Sequence[float], *, threads: int | None = None) -> LatencyStats:
        """Summary of timed calls in milliseconds (any timer: wall clock, CUDA events)."""
        return cls(
            median_ms=statistics.median(times),
            p90_ms=float(np.percentile(times, 90)),
            mean_ms=statistics.fmean(times),
            min_ms=min(times),
            runs=len(times),
            threads=threads,
            times_ms=tuple(times),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (without the individual times)."""
        return {
            "median_ms": self.median_ms,
            "p90_ms": self.p90_ms,
            "mean_ms": self.mean_ms,
            "min_ms": self.min_ms,
            "runs": self.runs,
            "threads": self.threads,
        }


def measure_latency(
    fn: Callable[[], Any],
    *,
    warmup: int = 3,
    runs: int = 10,
    threads: int | None = None,
    cuda_sync: bool = False,
) -> LatencyStats:
    """Time ``fn()``: ``warmup`` untimed calls, then ``runs`` timed ones; median, p90, mean, min.

    The same harness times every backend: ``fn`` is any zero-argument callable (a torch model
    applied to a fixed input, an ONNX Runtime session run, a TensorRT engine call). Inputs are
    prepared outside ``fn`` so only inference is timed.

    :param threads: fix torch's intra-op thread count for the measurement (restored afterwards);
        backends with their own thread pools (ONNX Runtime) must be built with the same count.
    :param cuda_sync: call ``torch.cuda.synchronize()`` before starting and before stopping each
        timer, so asynchronous GPU work is included; ignored when CUDA is not available.
    """
    if runs < 1 or warmup < 0:
        raise ValueError(f"measure_latency needs runs >= 1 and warmup >= 0 (got runs={runs}, warmup={warmup})")
    sync = cuda_sync and torch.cuda.is_available()
    previous = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1 (got {threads})")
        torch.set_num_threads(threads)
    try:
        for _ in range(warmup):
            fn()
        if sync:
            torch.cuda.synchronize()
        times = []
        for _ in range(runs):
            if sync:
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if sync:
                torch.cuda.synchronize()
            times.append((time.perf_counter() - start) * 1000.0)
    finally:
        torch.set_num_threads(previous)
    return LatencyStats.from_times(times, threads=threads)
