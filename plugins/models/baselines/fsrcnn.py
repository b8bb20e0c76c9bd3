"""FSRCNN (Dong et al., "Accelerating the Super-Resolution Convolutional Neural Network", ECCV 2016).

On the LR image: 5x5 conv to d maps + PReLU (feature extraction), 1x1 conv to s maps + PReLU
(shrinking), m 3x3 convs s->s + PReLU (mapping), 1x1 conv back to d maps + PReLU (expanding), and a
9x9 transposed conv with stride = scale (deconvolution). The standard configuration is
FSRCNN(d=56, s=12, m=4) on Y; the paper counts 12,464 weights (biases and PReLU slopes not counted).
Layer names and PReLU-per-channel follow yjn870/FSRCNN-pytorch (``first_part``, ``mid_part``,
``last_part``); the deconvolution pads 4 with ``output_padding = scale - 1`` so the output is exactly
scale x the input.

Boundary: RGB in [0, 1] -> RGB. ``color="y"`` (default, as published): the net super-resolves Y;
Cb/Cr are upscaled by torch bicubic. ``color="rgb"``: 3 input/output channels.
"""

from __future__ import annotations

from attrs import define
from torch import Tensor, nn

from srcompress.config import in_range, option
from srcompress.entries import ModelHints

from .common import check_scale, color_option, luma_merge, luma_split

__all__ = ["FSRCNN", "FSRCNNOptions", "SCALES", "build", "hints"]

SCALES = (2, 3, 4)


@define(frozen=True, kw_only=True)
class FSRCNNOptions:
    """FSRCNN architecture options (defaults: the published FSRCNN(56, 12, 4) on Y)."""

    color: str = color_option()
    d: int = option(
        56, help="Feature maps of the extraction and expanding layers (LR feature width).", validator=in_range(1, None)
    )
    s: int = option(12, help="Feature maps of the shrunk mapping layers.", validator=in_range(1, None))
    m: int = option(4, help="Number of 3x3 mapping layers.", validator=in_range(0, None))


class FSRCNN(nn.Module):
    """FSRCNN. Input RGB (N, 3, H, W) in [0, 1] -> (N, 3, sH, sW)."""

    def __init__(self, scale: int, options: FSRCNNOptions) -> None:
        super().__init__()
        d, s = options.d, options.s
        self.scale = scale
        self.color = options.color
        channels = 1 if options.color == "y" else 3
        self.first_part = nn.Sequential(nn.Conv2d(channels, d, 5, padding=2), nn.PReLU(d))
        mid: list[nn.Module] = [nn.Conv2d(d, s, 1), nn.PReLU(s)]
        for _ in range(options.m):
            mid += [nn.Conv2d(s, s, 3, padding=1), nn.PReLU(s)]
        mid += [nn.Conv2d(s, d, 1), nn.PReLU(d)]
        self.mid_part = nn.Sequential(*mid)
        self.last_part = nn.ConvTranspose2d(d, channels, 9, stride=scale, padding=4, output_padding=scale - 1)

    def _net(self, x: Tensor) -> Tensor:
        return self.last_part(self.mid_part(self.first_part(x)))

    def forward(self, x: Tensor) -> Tensor:
        if self.color == "rgb":
            return self._net(x)
        y, cbcr = luma_split(x, self.scale)
        return luma_merge(self._net(y), cbcr)


def build(scale: int, options: FSRCNNOptions) -> FSRCNN:
    check_scale("fsrcnn", scale, SCALES)
    return FSRCNN(scale, options)


def hints(model: nn.Module) -> ModelHints:
    mid = [f"mid_part.{i}" for i, m in enumerate(model.mid_part) if isinstance(m, nn.Conv2d)]
    return ModelHints(
        never_prune=("last_part",),
        feature_taps=("first_part", "mid_part"),
        residual_inner=("first_part.0", *mid),
    )
