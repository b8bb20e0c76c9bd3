"""RRDBNet, the ESRGAN generator (Wang et al., "ESRGAN: Enhanced Super-Resolution Generative Adversarial
Networks", ECCVW 2018), as in XPixelGroup/BasicSR ``basicsr/archs/rrdbnet_arch.py`` (xinntao/ESRGAN).

3x3 conv -> B residual-in-residual dense blocks (RRDB: three residual dense blocks of five 3x3 convs
with dense concatenation, growth G, LeakyReLU(0.2), residual scaling 0.2, and an outer 0.2-scaled
skip) -> 3x3 conv -> global skip -> [nearest x2, 3x3 conv, LeakyReLU(0.2)] x2 -> 3x3 conv + LeakyReLU
-> 3x3 conv to RGB. x2 (BasicSR/Real-ESRGAN extension) pixel-unshuffles the input by 2 first (12 input
channels); an odd-sized input is padded by reflection to even and the output cropped back.
Standard configuration F=64, B=23, G=32: 16,697,987 parameters at x4. Initialisation as BasicSR:
Kaiming normal scaled by 0.1 in every dense block. Module names equal BasicSR's.

Boundary: RGB in [0, 1] -> RGB (ESRGAN works on [0, 1]; no mean shift).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from attrs import define
from torch import Tensor, nn

from srcompress.config import in_range, option
from srcompress.entries import ModelHints

from .common import check_scale

__all__ = ["RRDB", "RRDBNet", "RRDBNetOptions", "ResidualDenseBlock", "SCALES", "build", "hints"]

SCALES = (2, 4)


@define(frozen=True, kw_only=True)
class RRDBNetOptions:
    """RRDBNet options (defaults: ESRGAN's 23 RRDBs of 64 maps, growth 32)."""

    width: int = option(64, help="Feature maps of the trunk (num_feat).", validator=in_range(1, None))
    blocks: int = option(23, help="Number of RRDB blocks (num_block).", validator=in_range(0, None))
    growth: int = option(32, help="Growth channels of each dense conv (num_grow_ch).", validator=in_range(1, None))


def _init_scaled(modules: list[nn.Conv2d], scale: float) -> None:
    """BasicSR ``default_init_weights``: Kaiming normal, times ``scale``, zero bias."""
    for conv in modules:
        nn.init.kaiming_normal_(conv.weight)
        with torch.no_grad():
            conv.weight.mul_(scale)
        nn.init.zeros_(conv.bias)


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convs; output x + 0.2 * conv5(...)."""

    def __init__(self, width: int, growth: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, growth, 3, padding=1)
        self.conv2 = nn.Conv2d(width + growth, growth, 3, padding=1)
        self.conv3 = nn.Conv2d(width + 2 * growth, growth, 3, padding=1)
        self.conv4 = nn.Conv2d(width + 3 * growth, growth, 3, padding=1)
        self.conv5 = nn.Conv2d(width + 4 * growth, width, 3, padding=1)
        self.lrelu = nn.LeakyReLU(0.2)
        _init_scaled([self.conv1, self.conv2, self.conv3, self.conv4, self.conv5], 0.1)

    def forward(self, x: Tensor) -> Tensor:
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * 0.2 + x


class RRDB(nn.Module):
    """Three residual dense blocks with an outer 0.2-scaled skip."""

    def __init__(self, width: int, growth: int) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(width, growth)
        self.rdb2 = ResidualDenseBlock(width, growth)
        self.rdb3 = ResidualDenseBlock(width, growth)

    def forward(self, x: Tensor) -> Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    """RRDBNet. Input RGB (N, 3, H, W) in [0, 1] -> (N, 3, sH, sW)."""

    def __init__(self, scale: int, options: RRDBNetOptions) -> None:
        super().__init__()
        width = options.width
        self.scale = scale
        in_channels = 3 * 4 if scale == 2 else 3
        self.conv_first = nn.Conv2d(in_channels, width, 3, padding=1)
        self.body = nn.Sequential(*[RRDB(width, options.growth) for _ in range(options.blocks)])
        self.conv_body = nn.Conv2d(width, width, 3, padding=1)
        self.conv_up1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv_up2 = nn.Conv2d(width, width, 3, padding=1)
        self.conv_hr = nn.Conv2d(width, width, 3, padding=1)
        self.conv_last = nn.Conv2d(width, 3, 3, padding=1)
        self.lrelu = nn.LeakyReLU(0.2)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        if self.scale == 2:
            x = F.pad(x, (0, w % 2, 0, h % 2), mode="reflect") if (h % 2 or w % 2) else x
            x = F.pixel_unshuffle(x, 2)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        feat = self.lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
        feat = self.lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
        out = self.conv_last(self.lrelu(self.conv_hr(feat)))
        return out[..., : h * self.scale, : w * self.scale]


def build(scale: int, options: RRDBNetOptions) -> RRDBNet:
    check_scale("rrdbnet", scale, SCALES)
    return RRDBNet(scale, options)


def hints(model: nn.Module) -> ModelHints:
    blocks = [f"body.{i}" for i in range(len(model.body))]
    inner = [f"{b}.rdb{j}.conv{k}" for b in blocks for j in (1, 2, 3) for k in (1, 2, 3, 4)]
    return ModelHints(
        never_prune=("conv_last",),
        feature_taps=tuple(blocks),
        residual_inner=tuple(inner),
    )
