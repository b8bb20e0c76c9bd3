"""MATLAB-compatible bicubic ``imresize`` in torch (CPU and GPU, single images and batches).

The maths follows MATLAB's ``imresize(..., 'bicubic')`` as ported to Python by the SR community
(BasicSR ``basicsr/utils/matlab_functions.py``), which produced the published bicubic baselines:

- cubic convolution kernel with ``a = -0.5`` (Keys), support 4 input pixels;
- when downscaling with ``antialias=True`` the kernel is stretched by ``1/scale`` (support
  ``4/scale``) and scaled by ``scale``: it interpolates and low-pass filters at once;
- output pixel ``k`` (1-based) samples input coordinate ``u = k/scale + 0.5 (1 - 1/scale)``;
- each row of weights is normalised to sum to 1;
- outside the image, pixels are mirrored including the edge pixel ("symmetric" padding,
  index ``-1`` reads pixel ``0``);
- the output size is ``ceil(in * scale)``; height is resized first, then width.

The resize is separable; each axis is one product with a (mostly zero) resampling matrix, or, for
very long axes, one gather of input rows and one multiply-add per kernel tap. Everything is
computed in float64 and cast back to the input dtype. The result is NOT clamped and NOT rounded
(bicubic overshoots slightly outside [0, 1]).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

__all__ = ["imresize"]

_KERNEL_WIDTH = 4.0
# Axes up to this many (out x in) matrix entries (32 MiB in float64) are resized by one matrix
# product, which beats per-tap gathers by far; longer axes use the gathers (memory linear in size).
_DENSE_LIMIT = 1 << 22
# Output sizes are ceil(in * scale); 1/3 * 96 is 32.00000000000001 in binary floating point.
_SIZE_EPS = 1e-9


def _cubic(x: torch.Tensor) -> torch.Tensor:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's ``cubic``)."""
    ax = x.abs()
    ax2 = ax * ax
    ax3 = ax2 * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return near + far


def _mirror(index: torch.Tensor, length: int) -> torch.Tensor:
    """Map any integer index into ``[0, length)`` by symmetric reflection (edge repeated)."""
    period = 2 * length
    index = torch.remainder(index, period)
    return torch.where(index < length, index, period - 1 - index)


@lru_cache(maxsize=64)
def _weights_indices(in_len: int, out_len: int, scale: float, antialias: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights (out_len, taps) float64 and input indices (out_len, taps) int64 for one axis (CPU)."""
    stretch = scale < 1 and antialias
    width = _KERNEL_WIDTH / scale if stretch else _KERNEL_WIDTH
    out_pos = torch.arange(1, out_len + 1, dtype=torch.float64)
    center = out_pos / scale + 0.5 * (1.0 - 1.0 / scale)
    left = torch.floor(center - width / 2.0)
    # ceil(width) + 2 taps always cover the support; the first and last tap carry weight 0 at most
    # positions, which keeps the result identical to MATLAB's (it drops all-zero columns).
    taps = math.ceil(width) + 2
    index = left[:, None] + torch.arange(taps, dtype=torch.float64)[None, :]
    distance = center[:, None] - index
    weights = scale * _cubic(distance * scale) if stretch else _cubic(distance)
    weights = weights / weights.sum(dim=1, keepdim=True)
    keep = weights.abs().sum(dim=0) > 0  # drop taps that are zero for every output position
    weights, index = weights[:, keep], index[:, keep]
    return weights.contiguous(), _mirror(index.long() - 1, in_len).contiguous()


def _axis_weights(in_len: int, out_len: int, scale: float, antialias: bool, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    weights, index = _weights_indices(in_len, out_len, float(scale), antialias)
    return weights.to(device), index.to(device)


def _dense(weights: torch.Tensor, index: torch.Tensor, in_len: int) -> torch.Tensor:
    """The (out, in) resampling matrix; mirrored taps that land on the same pixel add up."""
    matrix = torch.zeros(index.shape[0], in_len, dtype=torch.float64, device=index.device)
    return matrix.scatter_add_(1, index, weights)


def _gather_rows(x: torch.Tensor, weights: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Resize (..., H, W) along H with one row gather + multiply-add per kernel tap."""
    out = x.index_select(-2, index[:, 0]) * weights[:, 0, None]
    for tap in range(1, index.shape[1]):
        out.addcmul_(x.index_select(-2, index[:, tap]), weights[:, tap, None])
    return out


def _resize_height(x: torch.Tensor, out_len: int, scale: float, antialias: bool) -> torch.Tensor:
    weights, index = _axis_weights(x.shape[-2], out_len, scale, antialias, x.device)
    if out_len * x.shape[-2] <= _DENSE_LIMIT:
        return torch.matmul(_dense(weights, index, x.shape[-2]), x)
    return _gather_rows(x, weights, index)


def _resize_width(x: torch.Tensor, out_len: int, scale: float, antialias: bool) -> torch.Tensor:
    weights, index = _axis_weights(x.shape[-1], out_len, scale, antialias, x.device)
    if out_len * x.shape[-1] <= _DENSE_LIMIT:
        return torch.matmul(x, _dense(weights, index, x.shape[-1]).T)
    # Gathering whole rows is much faster than gathering strided columns: resize W as rows.
    return _gather_rows(x.transpose(-2, -1).contiguous(), weights, index).transpose(-2, -1)


def _out_size(in_len: int, scale: float) -> int:
    return max(1, math.ceil(in_len * scale - _SIZE_EPS))


def imresize(
    x: torch.Tensor,
    scale: float | None = None,
    *,
    size: tuple[int, int] | None = None,
    antialias: bool = True,
) -> torch.Tensor:
    """Resize images like MATLAB ``imresize(img, scale, 'bicubic')``.

    :param x: floating-point images, (C, H, W) or (N, C, H, W), any range (usually [0, 1]), on
        any device. Integer tensors are refused: convert to float first.
    :param scale: the same factor for height and width (``0.25`` downscales by 4). Output size is
        ``ceil(H * scale) x ceil(W * scale)``.
    :param size: ``(out_h, out_w)`` instead of ``scale``; each axis then uses the factor
        ``out / in`` (as MATLAB does with an output size).
    :param antialias: low-pass filter when downscaling (MATLAB's default, True).
    :returns: the resized images, same layout, dtype and device as ``x``; not clamped, not rounded.
    """
    if not torch.is_floating_point(x):
        raise TypeError(f"imresize needs a floating-point tensor (got {x.dtype}); use x.float() / 255 for uint8")
    if x.dim() not in (3, 4):
        raise ValueError(f"imresize takes (C, H, W) or (N, C, H, W) tensors (got shape {tuple(x.shape)})")
    if (scale is None) == (size is None):
        raise ValueError("imresize needs exactly one of scale or size")
    in_h, in_w = x.shape[-2:]
    if scale is not None:
        if not scale > 0:
            raise ValueError(f"imresize scale must be > 0 (got {scale})")
        out_h, out_w = _out_size(in_h, scale), _out_size(in_w, scale)
        scale_h = scale_w = float(scale)
    else:
        out_h, out_w = (int(v) for v in size)  # type: ignore[union-attr]
        if out_h < 1 or out_w < 1:
            raise ValueError(f"imresize size must be positive (got {size})")
        scale_h, scale_w = out_h / in_h, out_w / in_w
    y = x.to(torch.float64)
    if (out_h, scale_h) != (in_h, 1.0):
        y = _resize_height(y, out_h, scale_h, antialias)
    if (out_w, scale_w) != (in_w, 1.0):
        y = _resize_width(y, out_w, scale_w, antialias)
    return y.to(x.dtype).contiguous()
