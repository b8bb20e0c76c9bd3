"""SRCNN (Dong et al., "Image Super-Resolution Using Deep Convolutional Networks", TPAMI 2016).

Three convolutions on the bicubic-upscaled image: f1 x f1 conv (n1 maps) + ReLU, f2 x f2 conv
(n2 maps) + ReLU, f3 x f3 conv to the output. The standard configuration is 9-5-5 with
n1 = 64, n2 = 32 on the Y channel (TPAMI Sec. 4.3.2: 57,184 weights; the ECCV'14 9-1-5 net has 8,032).
Layer names follow yjn870/SRCNN-pytorch (``conv1``, ``conv2``, ``conv3``; "same" zero padding).

Boundary: RGB in [0, 1] -> RGB. With ``color="y"`` (default, as published) the image is converted
to YCbCr (BT.601, MATLAB ``rgb2ycbcr``), Y is upscaled with torch bicubic and refined by the net,
Cb/Cr are upscaled with bicubic only, and the result is converted back to RGB. With
``color="rgb"`` the net has 3 input/output channels and refines the bicubic RGB image.
"""

from __future__ import annotations

from attrs import define
from torch import Tensor, nn

from srcompress.config import in_range, option
from srcompress.entries import ModelHints

from .common import bicubic, check_scale, color_option, luma_merge, luma_split

__all__ = ["SCALES", "SRCNN", "SRCNNOptions", "build", "hints"]

SCALES = (2, 3, 4)
_odd = in_range(1, 15)


@define(frozen=True, kw_only=True)
class SRCNNOptions:
    """SRCNN architecture options (defaults: the published 9-5-5, 64/32, Y-channel network)."""

    color: str = color_option()
    n1: int = option(64, help="Feature maps of the first (patch extraction) layer.", validator=in_range(1, None))
    n2: int = option(32, help="Feature maps of the second (non-linear mapping) layer.", validator=in_range(1, None))
    f1: int = option(9, help="Kernel size of the first layer (odd).", validator=_odd)
    f2: int = option(5, help="Kernel size of the second layer (odd; 1 gives the ECCV'14 9-1-5 net).", validator=_odd)
    f3: int = option(5, help="Kernel size of the reconstruction layer (odd).", validator=_odd)


class SRCNN(nn.Module):
    """SRCNN on the bicubic-upscaled image. Input RGB (N, 3, H, W) in [0, 1] -> (N, 3, sH, sW)."""

    def __init__(self, scale: int, options: SRCNNOptions) -> None:
        super().__init__()
        for k in (options.f1, options.f2, options.f3):
            if k % 2 == 0:
                raise ValueError(f"SRCNN kernel sizes must be odd (got {options.f1}-{options.f2}-{options.f3})")
        self.scale = scale
        self.color = options.color
        channels = 1 if options.color == "y" else 3
        self.conv1 = nn.Conv2d(channels, options.n1, options.f1, padding=options.f1 // 2)
        self.conv2 = nn.Conv2d(options.n1, options.n2, options.f2, padding=options.f2 // 2)
        self.conv3 = nn.Conv2d(options.n2, channels, options.f3, padding=options.f3 // 2)
        self.relu = nn.ReLU()

    def _net(self, x: Tensor) -> Tensor:
        return self.conv3(self.relu(self.conv2(self.relu(self.conv1(x)))))

    def forward(self, x: Tensor) -> Tensor:
        if self.color == "rgb":
            return self._net(bicubic(x, self.scale))
        y, cbcr = luma_split(x, self.scale)
        return luma_merge(self._net(bicubic(y, self.scale)), cbcr)


def build(scale: int, options: SRCNNOptions) -> SRCNN:
    check_scale("srcnn", scale, SCALES)
    return SRCNN(scale, options)


def hints(model: nn.Module) -> ModelHints:
    return ModelHints(
        never_prune=("conv3",),
        feature_taps=("conv1", "conv2"),
        residual_inner=("conv1", "conv2"),
    )
