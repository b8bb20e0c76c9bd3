"""Building blocks of the F2SRGAN family: separable convs, the frozen mean shift, an x2 upsampler stage."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["DIV2K_RGB_MEAN", "MeanShift", "SeparableConv2d", "UpsampleStage"]

DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)
"""Mean RGB of DIV2K in [0, 1]; F2SRGAN subtracts it (times 255) from its 0-255 input."""


class SeparableConv2d(nn.Module):
    """Depthwise k x k conv (``same`` padding, optional stride) followed by a pointwise 1x1 conv.

    As in the F2SRGAN code, ``bias`` applies to the depthwise conv only; the pointwise conv always
    has a bias. ``padding_mode`` is ``"zeros"`` or ``"reflect"`` (the FFC's convs).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        *,
        stride: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
    ) -> None:
        super().__init__()
        padding: str | int = "same" if stride == 1 else (kernel_size - 1) // 2
        self.depthwise = nn.Conv2d(
            in_channels, in_channels, kernel_size, stride=stride, padding=padding,
            groups=in_channels, bias=bias, padding_mode=padding_mode,
        )
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class MeanShift(nn.Conv2d):
    """Adds (``sign=+1``) or subtracts (``sign=-1``) ``rgb_range * rgb_mean``; frozen 1x1 conv.

    Kept as a conv (identity weight, 12 parameters) so published state dicts load unchanged; its
    parameters have ``requires_grad=False``.
    """

    def __init__(self, sign: int, rgb_mean: tuple[float, float, float] = DIV2K_RGB_MEAN, rgb_range: float = 255.0) -> None:
        super().__init__(3, 3, kernel_size=1)
        with torch.no_grad():
            self.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.bias.copy_(sign * rgb_range * torch.tensor(rgb_mean))
        for p in self.parameters():
            p.requires_grad_(False)


class UpsampleStage(nn.Module):
    """One x2 stage: separable 3x3 conv ``in -> 4*out``, PixelShuffle(2), PReLU(out) (PReLU(1) when
    ``shared_slope``: one slope for every channel)."""

    def __init__(self, in_channels: int, out_channels: int, *, shared_slope: bool = False) -> None:
        super().__init__()
        self.conv = SeparableConv2d(in_channels, out_channels * 4, 3)
        self.shuffle = nn.PixelShuffle(2)
        self.act = nn.PReLU(1 if shared_slope else out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.shuffle(self.conv(x)))
