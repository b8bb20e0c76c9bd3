"""ESPCN (Shi et al., "Real-Time Single Image and Video Super-Resolution Using an Efficient Sub-Pixel
Convolutional Neural Network", CVPR 2016).

On the LR image: 5x5 conv to 64 maps + tanh, 3x3 conv to 32 maps + tanh, 3x3 conv to r^2 x C maps,
PixelShuffle(r). The standard configuration (paper Sec. 3.1: (f1, n1) = (5, 64), (f2, n2) = (3, 32),
f3 = 3) works on Y. Layer names follow yjn870/ESPCN-pytorch (``first_part``, ``last_part``).

Boundary: RGB in [0, 1] -> RGB. ``color="y"`` (default, as published): the net super-resolves Y;
Cb/Cr are upscaled by torch bicubic. ``color="rgb"``: 3 input/output channels.
"""

from __future__ import annotations

from attrs import define
from torch import Tensor, nn

from srcompress.config import in_range, option
from srcompress.entries import ModelHints

from .common import check_scale, color_option, luma_merge, luma_split

__all__ = ["ESPCN", "ESPCNOptions", "SCALES", "build", "hints"]

SCALES = (2, 3, 4)


@define(frozen=True, kw_only=True)
class ESPCNOptions:
    """ESPCN architecture options (defaults: the published (5, 64), (3, 32), 3 network on Y)."""

    color: str = color_option()
    n1: int = option(64, help="Feature maps of the first (5x5) layer.", validator=in_range(1, None))
    n2: int = option(32, help="Feature maps of the second (3x3) layer.", validator=in_range(1, None))


class ESPCN(nn.Module):
    """ESPCN. Input RGB (N, 3, H, W) in [0, 1] -> (N, 3, sH, sW)."""

    def __init__(self, scale: int, options: ESPCNOptions) -> None:
        super().__init__()
        self.scale = scale
        self.color = options.color
        channels = 1 if options.color == "y" else 3
        self.first_part = nn.Sequential(
            nn.Conv2d(channels, options.n1, 5, padding=2),
            nn.Tanh(),
            nn.Conv2d(options.n1, options.n2, 3, padding=1),
            nn.Tanh(),
        )
        self.last_part = nn.Sequential(nn.Conv2d(options.n2, channels * scale**2, 3, padding=1), nn.PixelShuffle(scale))

    def _net(self, x: Tensor) -> Tensor:
        return self.last_part(self.first_part(x))

    def forward(self, x: Tensor) -> Tensor:
        if self.color == "rgb":
            return self._net(x)
        y, cbcr = luma_split(x, self.scale)
        return luma_merge(self._net(y), cbcr)


def build(scale: int, options: ESPCNOptions) -> ESPCN:
    check_scale("espcn", scale, SCALES)
    return ESPCN(scale, options)


def hints(model: nn.Module) -> ModelHints:
    return ModelHints(
        never_prune=("last_part.0",),
        pixel_shuffle_convs={"last_part.0": model.scale},
        feature_taps=("first_part.1", "first_part.3"),
        residual_inner=("first_part.0", "first_part.2"),
    )
