"""IMDN (Hui et al., "Lightweight Image Super-Resolution with Information Multi-distillation
Network", ACM MM 2019).

3x3 conv -> M information multi-distillation blocks (IMDB) -> concat of all block outputs -> 1x1 conv
+ LeakyReLU(0.05) -> 3x3 conv -> global skip -> 3x3 conv to 3 r^2 maps -> PixelShuffle(r). An IMDB runs
three 3x3 convs + LeakyReLU(0.05) that each keep a quarter of their maps (distilled) and pass the rest
on, a fourth 3x3 conv to a quarter, concatenates the four distilled parts, applies contrast-aware
channel attention (CCA: per-channel std + mean -> 1x1 squeeze/excite, reduction 16) and a 1x1 conv,
plus the block's skip. Standard configuration (Zheng222/IMDN ``model/architecture.py``): nf=64,
6 modules, distillation rate 0.25; x4 has 715,176 parameters (paper Table: 715K). No mean shift:
the network works on [0, 1] RGB (``rgb_range`` 1 in the official training script).

The channel split of each IMDB is written as positive slices (not ``torch.split``) so that
dependency-graph pruning can follow it; the split points are fixed, so c1, c2 and c3 are never pruned.
"""

from __future__ import annotations

import torch
from attrs import define
from torch import Tensor, nn

from srcompress.config import in_range, option
from srcompress.entries import ModelHints

from .common import check_scale

__all__ = ["CCALayer", "IMDN", "IMDNOptions", "IMDModule", "SCALES", "build", "hints"]

SCALES = (2, 3, 4)


@define(frozen=True, kw_only=True)
class IMDNOptions:
    """IMDN options (defaults: the published nf=64, 6 IMDBs, distillation rate 1/4)."""

    width: int = option(64, help="Feature maps of the trunk (nf).", validator=in_range(4, None))
    modules: int = option(6, help="Number of IMDB blocks (num_modules).", validator=in_range(1, None))
    distillation_rate: float = option(
        0.25,
        help="Fraction of each conv's maps kept as distilled features.",
        validator=in_range(0.0, 1.0, lo_open=True, hi_open=True),
    )


def _mean_channels(x: Tensor) -> Tensor:
    return x.mean(dim=(2, 3), keepdim=True)


def _std_channels(x: Tensor) -> Tensor:
    return (x - _mean_channels(x)).pow(2).mean(dim=(2, 3), keepdim=True).pow(0.5)


class CCALayer(nn.Module):
    """Contrast-aware channel attention: x * sigmoid(conv(relu(conv(std(x) + mean(x)))))."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, max(1, channels // reduction), 1),
            nn.ReLU(),
            nn.Conv2d(max(1, channels // reduction), channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x * self.conv_du(_std_channels(x) + self.avg_pool(x))


class IMDModule(nn.Module):
    """Information multi-distillation block (IMDB) with CCA and a 1x1 fusion conv, plus skip."""

    def __init__(self, channels: int, distillation_rate: float = 0.25) -> None:
        super().__init__()
        self.distilled = int(channels * distillation_rate)
        remaining = channels - self.distilled
        if self.distilled < 1 or remaining < 1:
            raise ValueError(f"imdn: width {channels} x distillation rate {distillation_rate} leaves an empty split")
        self.c1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.c2 = nn.Conv2d(remaining, channels, 3, padding=1)
        self.c3 = nn.Conv2d(remaining, channels, 3, padding=1)
        self.c4 = nn.Conv2d(remaining, self.distilled, 3, padding=1)
        self.act = nn.LeakyReLU(0.05)
        self.c5 = nn.Conv2d(self.distilled * 4, channels, 1)
        self.cca = CCALayer(self.distilled * 4)

    def forward(self, x: Tensor) -> Tensor:
        d = self.distilled
        out1 = self.act(self.c1(x))
        out2 = self.act(self.c2(out1[:, d:]))
        out3 = self.act(self.c3(out2[:, d:]))
        out4 = self.c4(out3[:, d:])
        out = torch.cat([out1[:, :d], out2[:, :d], out3[:, :d], out4], dim=1)
        return self.c5(self.cca(out)) + x


class IMDN(nn.Module):
    """IMDN. Input RGB (N, 3, H, W) in [0, 1] -> (N, 3, sH, sW). Blocks are named IMDB1..IMDBm."""

    def __init__(self, scale: int, options: IMDNOptions) -> None:
        super().__init__()
        nf = options.width
        self.fea_conv = nn.Conv2d(3, nf, 3, padding=1)
        self.block_names = [f"IMDB{i + 1}" for i in range(options.modules)]
        for name in self.block_names:
            self.add_module(name, IMDModule(nf, options.distillation_rate))
        self.c = nn.Sequential(nn.Conv2d(nf * options.modules, nf, 1), nn.LeakyReLU(0.05))
        self.LR_conv = nn.Conv2d(nf, nf, 3, padding=1)
        self.upsampler = nn.Sequential(nn.Conv2d(nf, 3 * scale**2, 3, padding=1), nn.PixelShuffle(scale))

    def forward(self, x: Tensor) -> Tensor:
        fea = self.fea_conv(x)
        outs = []
        out = fea
        for name in self.block_names:
            out = getattr(self, name)(out)
            outs.append(out)
        out_lr = self.LR_conv(self.c(torch.cat(outs, dim=1))) + fea
        return self.upsampler(out_lr)


def build(scale: int, options: IMDNOptions) -> IMDN:
    check_scale("imdn", scale, SCALES)
    return IMDN(scale, options)


def hints(model: nn.Module) -> ModelHints:
    blocks = model.block_names
    fixed_splits = [f"{b}.{c}" for b in blocks for c in ("c1", "c2", "c3")]
    return ModelHints(
        never_prune=("upsampler.0", *fixed_splits),
        pixel_shuffle_convs={"upsampler.0": model.upsampler[1].upscale_factor},
        feature_taps=tuple(blocks),
        residual_inner=tuple(f"{b}.c4" for b in blocks),
    )
