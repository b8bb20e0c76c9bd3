"""SwiftSRGAN generator (Krishnan & Krishnan, "SwiftSRGAN - Rethinking Super-Resolution for Efficient and
Real-time Inference", 2021), as in the official Koushik0901/Swift-SRGAN ``swift-srgan/models.py``.

SRGAN's generator with every convolution depthwise-separable (depthwise k x k + pointwise 1x1):
9x9 separable conv + PReLU(64) -> B residual blocks (sep. conv, BN, PReLU(64), sep. conv, BN, plus
identity; convs before BN have no bias) -> sep. conv + BN, plus the first features -> [sep. 3x3 conv to
4F, PixelShuffle(2), PReLU(F)] per x2 step -> 9x9 separable conv to RGB -> (tanh + 1) / 2.
Standard configuration F=64, B=16: 200,121 parameters at x4 (BN running statistics not counted).
The official module also builds a PReLU(64) in each conv block that never applies it (16 residual
blocks' second conv and the post-body conv): 17 x 64 = 1,088 dead slopes, so ``sum(p.numel())``
over the official x4 generator gives 201,209. They are left out here (no output depends on them).

Boundary: RGB in [0, 1] -> RGB in [0, 1] (the official data pipeline feeds ``ToTensor`` images).
"""

from __future__ import annotations

import torch
from attrs import define
from torch import Tensor, nn

from srcompress.config import in_range, option
from srcompress.entries import ModelHints

from .common import check_scale

__all__ = ["SCALES", "SeparableConv2d", "SwiftSRGANGenerator", "SwiftSRGANOptions", "build", "hints"]

SCALES = (2, 4)


@define(frozen=True, kw_only=True)
class SwiftSRGANOptions:
    """SwiftSRGAN generator options (defaults: the published 16 blocks of 64 maps)."""

    width: int = option(64, help="Feature maps of the body (num_channels).", validator=in_range(1, None))
    blocks: int = option(16, help="Number of residual blocks (num_blocks).", validator=in_range(0, None))


class SeparableConv2d(nn.Module):
    """Depthwise k x k conv (groups = in channels) followed by a pointwise 1x1 conv."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.depthwise = nn.Conv2d(in_channels, in_channels, kernel_size, padding=pad, groups=in_channels, bias=bias)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise(self.depthwise(x))


class ConvBlock(nn.Module):
    """Separable conv (+ BN) (+ PReLU per channel)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, use_act: bool = True, use_bn: bool = True
    ):
        super().__init__()
        self.cnn = SeparableConv2d(in_channels, out_channels, kernel_size, bias=not use_bn)
        self.bn = nn.BatchNorm2d(out_channels) if use_bn else nn.Identity()
        self.act = nn.PReLU(out_channels) if use_act else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.cnn(x)))


class ResidualBlock(nn.Module):
    """x + block2(block1(x))."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.block1 = ConvBlock(width, width, 3)
        self.block2 = ConvBlock(width, width, 3, use_act=False)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.block2(self.block1(x))


class UpsampleBlock(nn.Module):
    """Separable 3x3 conv to 4F -> PixelShuffle(2) -> PReLU(F)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv = SeparableConv2d(width, width * 4, 3)
        self.ps = nn.PixelShuffle(2)
        self.act = nn.PReLU(width)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.ps(self.conv(x)))


class SwiftSRGANGenerator(nn.Module):
    """SwiftSRGAN generator. Input RGB (N, 3, H, W) in [0, 1] -> (N, 3, sH, sW) in [0, 1]."""

    def __init__(self, scale: int, options: SwiftSRGANOptions) -> None:
        super().__init__()
        width = options.width
        self.initial = ConvBlock(3, width, 9, use_bn=False)
        self.residual = nn.Sequential(*[ResidualBlock(width) for _ in range(options.blocks)])
        self.convblock = ConvBlock(width, width, 3, use_act=False)
        self.upsampler = nn.Sequential(*[UpsampleBlock(width) for _ in range(scale // 2)])
        self.final_conv = SeparableConv2d(width, 3, 9)

    def forward(self, x: Tensor) -> Tensor:
        initial = self.initial(x)
        x = self.convblock(self.residual(initial)) + initial
        return (torch.tanh(self.final_conv(self.upsampler(x))) + 1) / 2


def build(scale: int, options: SwiftSRGANOptions) -> SwiftSRGANGenerator:
    check_scale("swiftsrgan", scale, SCALES)
    return SwiftSRGANGenerator(scale, options)


def hints(model: nn.Module) -> ModelHints:
    blocks = [f"residual.{i}" for i in range(len(model.residual))]
    return ModelHints(
        never_prune=("final_conv.pointwise",),
        pixel_shuffle_convs={f"upsampler.{i}.conv.pointwise": 2 for i in range(len(model.upsampler))},
        feature_taps=tuple(blocks),
        residual_inner=tuple(f"{b}.block1.cnn.pointwise" for b in blocks),
    )
