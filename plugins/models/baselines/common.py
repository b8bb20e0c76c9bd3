"""Building blocks shared by the baseline architectures.

- :class:`MeanShift`: the frozen 1x1 conv of EDSR/RCAN/SRFBN/CARN that subtracts (or adds back)
  the DIV2K RGB mean; it keeps the originals' parameter names so their checkpoints map 1:1.
- :func:`rgb_to_ycbcr` / :func:`ycbcr_to_rgb`: ITU-R BT.601 "studio swing" conversion, as MATLAB's
  ``rgb2ycbcr`` (Y in [16, 235] / 255), used by the Y-channel models (SRCNN, FSRCNN, ESPCN, VDSR).
- :func:`bicubic`: ``torch.nn.functional.interpolate(mode="bicubic")`` (differentiable and
  exportable; not MATLAB's ``imresize``, whose cubic kernel has a = -0.5 instead of -0.75).
- :func:`luma_split` / :func:`luma_merge`: run a network on Y and upscale Cb/Cr by bicubic,
  the classic Y-channel SR pipeline.
- :func:`check_scale`: a clear error for a scale an architecture does not support.

Activations here are never in-place: a forward hook (feature taps for distillation) must see the
tensor a module returned, not one overwritten by the next layer.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from srcompress.config import one_of, option

__all__ = [
    "DIV2K_RGB_MEAN",
    "MeanShift",
    "Upsampler",
    "bicubic",
    "check_scale",
    "color_option",
    "conv_names",
    "luma_merge",
    "luma_split",
    "pixel_shuffle_convs",
    "rgb_to_ycbcr",
    "ycbcr_to_rgb",
]

DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)
"""Mean of the DIV2K training images (RGB, in [0, 1]), as used by EDSR, RCAN, SRFBN, CARN, SwinIR."""

# MATLAB rgb2ycbcr for RGB in [0, 1], output in [0, 1] (Y in [16, 235]/255, Cb/Cr in [16, 240]/255).
_RGB_TO_YCBCR = (
    torch.tensor(
        [
            [65.481, 128.553, 24.966],
            [-37.797, -74.203, 112.0],
            [112.0, -93.786, -18.214],
        ],
        dtype=torch.float64,
    )
    / 255.0
)
_YCBCR_OFFSET = torch.tensor([16.0, 128.0, 128.0], dtype=torch.float64) / 255.0
_YCBCR_TO_RGB = torch.linalg.inv(_RGB_TO_YCBCR)


class MeanShift(nn.Conv2d):
    """Frozen 1x1 conv: ``y = x + sign * rgb_range * mean`` (identity weight, no gradient).

    :param rgb_range: value range of the images the network sees (255 for EDSR/RCAN/SRFBN, 1 for CARN).
    :param sign: -1 subtracts the mean (input side), +1 adds it back (output side).
    """

    def __init__(self, rgb_range: float, sign: int = -1, rgb_mean: tuple[float, float, float] = DIV2K_RGB_MEAN) -> None:
        super().__init__(3, 3, kernel_size=1)
        with torch.no_grad():
            self.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.bias.copy_(sign * rgb_range * torch.tensor(rgb_mean))
        for p in self.parameters():
            p.requires_grad = False


class Upsampler(nn.Sequential):
    """EDSR's upsampler: [3x3 conv width -> 4 width, PixelShuffle(2)] per x2 step, or one
    [3x3 conv width -> 9 width, PixelShuffle(3)] for x3 (EDSR-PyTorch ``common.Upsampler``, no activation)."""

    def __init__(self, scale: int, width: int) -> None:
        layers: list[nn.Module] = []
        if scale in (2, 4, 8):
            for _ in range(scale.bit_length() - 1):
                layers += [nn.Conv2d(width, 4 * width, 3, padding=1), nn.PixelShuffle(2)]
        elif scale == 3:
            layers += [nn.Conv2d(width, 9 * width, 3, padding=1), nn.PixelShuffle(3)]
        else:
            raise ValueError(f"Upsampler supports scales x2, x3, x4, x8 (got x{scale})")
        super().__init__(*layers)


def pixel_shuffle_convs(module: nn.Sequential, prefix: str) -> dict[str, int]:
    """{qualified conv name: r} for every conv of ``module`` whose output reaches a PixelShuffle(r)
    directly or through element-wise activations only (children of one ``nn.Sequential``)."""
    found: dict[str, int] = {}
    last_conv: str | None = None
    for name, child in module.named_children():
        if isinstance(child, nn.Conv2d):
            last_conv = f"{prefix}.{name}"
        elif isinstance(child, nn.PixelShuffle) and last_conv is not None:
            found[last_conv] = int(child.upscale_factor)
            last_conv = None
        elif not isinstance(child, (nn.ReLU, nn.LeakyReLU, nn.PReLU)):
            last_conv = None
    return found


def _apply_matrix(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,njhw->nihw", matrix.to(dtype=x.dtype, device=x.device), x)


def rgb_to_ycbcr(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB in [0, 1] -> YCbCr (BT.601 studio swing, MATLAB ``rgb2ycbcr``), in [0, 1]."""
    return _apply_matrix(x, _RGB_TO_YCBCR) + _YCBCR_OFFSET.to(dtype=x.dtype, device=x.device).view(1, 3, 1, 1)


def ycbcr_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_ycbcr` (not clamped)."""
    return _apply_matrix(x - _YCBCR_OFFSET.to(dtype=x.dtype, device=x.device).view(1, 3, 1, 1), _YCBCR_TO_RGB)


def bicubic(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Upscale (N, C, H, W) by an integer factor with torch's bicubic (a = -0.75, not clamped)."""
    return F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)


def luma_split(x: torch.Tensor, scale: int) -> tuple[torch.Tensor, torch.Tensor]:
    """RGB (N, 3, H, W) in [0, 1] -> (Y (N, 1, H, W), bicubic-upscaled CbCr (N, 2, sH, sW))."""
    ycc = rgb_to_ycbcr(x)
    return ycc[:, :1], bicubic(ycc[:, 1:], scale)


def luma_merge(y: torch.Tensor, cbcr: torch.Tensor) -> torch.Tensor:
    """Super-resolved Y (N, 1, sH, sW) + upscaled CbCr (N, 2, sH, sW) -> RGB in [0, 1] (not clamped)."""
    return ycbcr_to_rgb(torch.cat([y, cbcr], dim=1))


def check_scale(name: str, scale: int, supported: Iterable[int]) -> None:
    """Raise ``ValueError`` naming the architecture and its scales when ``scale`` is not one of them."""
    supported = tuple(supported)
    if scale not in supported:
        listing = ", ".join(f"x{s}" for s in supported)
        raise ValueError(f"{name} supports scales {listing} (got x{scale}); pick one of these")


def color_option() -> str:
    """The ``color`` option of the Y-channel models: ``"y"`` (as published) or ``"rgb"``."""
    return option(
        "y",
        help="Channels the network sees: 'y' (luma only, as published; Cb/Cr are upscaled by bicubic) or 'rgb'.",
        validator=one_of(("y", "rgb")),
    )


def conv_names(model: nn.Module, prefix: str = "") -> list[str]:
    """Qualified names of the ``nn.Conv2d``/``nn.ConvTranspose2d`` modules under ``prefix``, in order."""
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)) and name.startswith(prefix)
    ]
