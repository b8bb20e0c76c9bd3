"""VDSR (Kim et al., "Accurate Image Super-Resolution Using Very Deep Convolutional Networks", CVPR 2016).

On the bicubic-upscaled image: ``depth`` 3x3 convs of ``width`` maps with ReLU between them (the
first maps the image in, the last maps back out), plus a global residual: out = bicubic + net(bicubic).
The standard configuration is 20 layers of 64 maps on Y. Layer names and the bias-free convolutions
follow twtygqyy/pytorch-vdsr (``input``, ``residual_layer.i.conv``, ``output``): 664,704 parameters
(the paper's tables round it to 665K).

Boundary: RGB in [0, 1] -> RGB. ``color="y"`` (default, as published): Y is upscaled by torch
bicubic and refined; Cb/Cr are upscaled by bicubic only. ``color="rgb"``: 3 input/output channels.
"""

from __future__ import annotations

from attrs import define
from torch import Tensor, nn

from srcompress.config import in_range, option
from srcompress.entries import ModelHints

from .common import bicubic, check_scale, color_option, luma_merge, luma_split

__all__ = ["SCALES", "VDSR", "VDSROptions", "build", "hints"]

SCALES = (2, 3, 4)


@define(frozen=True, kw_only=True)
class VDSROptions:
    """VDSR architecture options (defaults: the published 20-layer, 64-map network on Y)."""

    color: str = color_option()
    width: int = option(64, help="Feature maps of every hidden layer.", validator=in_range(1, None))
    depth: int = option(
        20, help="Number of conv layers, input and output layers included.", validator=in_range(2, None)
    )


class ConvReLU(nn.Module):
    """3x3 conv (no bias) + ReLU: one hidden layer of VDSR."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.conv(x))


class VDSR(nn.Module):
    """VDSR on the bicubic-upscaled image. Input RGB (N, 3, H, W) in [0, 1] -> (N, 3, sH, sW)."""

    def __init__(self, scale: int, options: VDSROptions) -> None:
        super().__init__()
        self.scale = scale
        self.color = options.color
        channels = 1 if options.color == "y" else 3
        self.input = nn.Conv2d(channels, options.width, 3, padding=1, bias=False)
        self.residual_layer = nn.Sequential(*[ConvReLU(options.width) for _ in range(options.depth - 2)])
        self.output = nn.Conv2d(options.width, channels, 3, padding=1, bias=False)
        self.relu = nn.ReLU()

    def _net(self, x: Tensor) -> Tensor:
        return x + self.output(self.residual_layer(self.relu(self.input(x))))

    def forward(self, x: Tensor) -> Tensor:
        if self.color == "rgb":
            return self._net(bicubic(x, self.scale))
        y, cbcr = luma_split(x, self.scale)
        return luma_merge(self._net(bicubic(y, self.scale)), cbcr)


def build(scale: int, options: VDSROptions) -> VDSR:
    check_scale("vdsr", scale, SCALES)
    return VDSR(scale, options)


def hints(model: nn.Module) -> ModelHints:
    layers = [f"residual_layer.{i}" for i in range(len(model.residual_layer))]
    return ModelHints(
        never_prune=("output",),
        feature_taps=tuple(layers),
        residual_inner=("input", *(f"{name}.conv" for name in layers)),
    )
