"""SRFBN (Li et al., "Feedback Network for Image Super-Resolution", CVPR 2019).

MeanShift (DIV2K mean, [0, 255]) -> 3x3 conv to 4F + PReLU -> 1x1 conv to F + PReLU (LR features)
-> T feedback steps. Each step runs the feedback block (FB) on [LR features, FB output of the previous
step] (the first step uses the LR features as the previous output): a 1x1 compression, then G
projection groups, each a deconv up-projection (kernel/stride/padding 6/2/2 for x2, 7/3/2 for x3,
8/4/2 for x4) and a strided conv down-projection with dense 1x1 fusions of all earlier groups, then a
1x1 fusion of all group outputs. Each step's image is deconv(FB out) + PReLU -> 3x3 conv, plus the
bilinear upscaled input, plus the mean. Every conv is followed by a one-slope PReLU (init 0.2).
Standard configuration (Paper99/SRFBN_CVPR19 ``networks/srfbn_arch.py`` and its option files):
F=64, T=4, G=6; x4 has 3,631,478 parameters (paper: 3,631K), 24 of them in the frozen MeanShift convs.

Differences from the official code, none changing the maths: the recurrent state is passed as an
argument instead of being stored on the module (no ``.cuda()`` call, safe for batches of different
sizes), and the model returns only the last step's image (the official returns all T; its test
script uses the last). The FB module runs T times per forward, so a hook on ``block`` fires T times.
Boundary: RGB in [0, 1] -> RGB; the network works in [0, 255] like the original.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from attrs import define
from torch import Tensor, nn

from srcompress.config import in_range, option
from srcompress.entries import ModelHints

from .common import MeanShift, check_scale

__all__ = ["SCALES", "SRFBN", "SRFBNOptions", "FeedbackBlock", "build", "hints"]

SCALES = (2, 3, 4)
RGB_RANGE = 255.0
# upscale factor -> (kernel, stride, padding) of the up/down projections (official srfbn_arch.py)
_PROJECTION = {2: (6, 2, 2), 3: (7, 3, 2), 4: (8, 4, 2)}


@define(frozen=True, kw_only=True)
class SRFBNOptions:
    """SRFBN options (defaults: the published SRFBN, F=64, T=4 steps, G=6 groups; SRFBN-S is F=32, T=4, G=3)."""

    width: int = option(64, help="Feature maps of the feedback block (num_features).", validator=in_range(1, None))
    steps: int = option(4, help="Number of feedback time steps (num_steps).", validator=in_range(1, None))
    groups: int = option(6, help="Projection groups in the feedback block (num_groups).", validator=in_range(1, None))


def _conv(
    in_ch: int, out_ch: int, kernel: int, stride: int = 1, padding: int | None = None, act: bool = True
) -> nn.Sequential:
    """Official ``ConvBlock`` without norm: conv (+ PReLU(1, init 0.2))."""
    pad = kernel // 2 if padding is None else padding
    layers: list[nn.Module] = [nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=pad)]
    if act:
        layers.append(nn.PReLU(1, init=0.2))
    return nn.Sequential(*layers)


def _deconv(in_ch: int, out_ch: int, kernel: int, stride: int, padding: int) -> nn.Sequential:
    """Official ``DeconvBlock`` without norm: transposed conv + PReLU(1, init 0.2)."""
    return nn.Sequential(
        nn.ConvTranspose2d(in_ch, out_ch, kernel, stride=stride, padding=padding), nn.PReLU(1, init=0.2)
    )


class FeedbackBlock(nn.Module):
    """The feedback block: ``forward(x, last_hidden)`` returns this step's output (its next hidden state)."""

    def __init__(self, width: int, groups: int, scale: int) -> None:
        super().__init__()
        kernel, stride, padding = _PROJECTION[scale]
        self.compress_in = _conv(2 * width, width, 1)
        self.upBlocks = nn.ModuleList([_deconv(width, width, kernel, stride, padding) for _ in range(groups)])
        self.downBlocks = nn.ModuleList([_conv(width, width, kernel, stride, padding) for _ in range(groups)])
        self.uptranBlocks = nn.ModuleList([_conv(width * (i + 1), width, 1) for i in range(1, groups)])
        self.downtranBlocks = nn.ModuleList([_conv(width * (i + 1), width, 1) for i in range(1, groups)])
        self.compress_out = _conv(groups * width, width, 1)

    def forward(self, x: Tensor, last_hidden: Tensor) -> Tensor:
        lr_features = [self.compress_in(torch.cat([x, last_hidden], dim=1))]
        hr_features: list[Tensor] = []
        for idx, (up, down) in enumerate(zip(self.upBlocks, self.downBlocks, strict=True)):
            ld_l = torch.cat(lr_features, dim=1)
            if idx > 0:
                ld_l = self.uptranBlocks[idx - 1](ld_l)
            hr_features.append(up(ld_l))
            ld_h = torch.cat(hr_features, dim=1)
            if idx > 0:
                ld_h = self.downtranBlocks[idx - 1](ld_h)
            lr_features.append(down(ld_h))
        return self.compress_out(torch.cat(lr_features[1:], dim=1))


class SRFBN(nn.Module):
    """SRFBN. Input RGB (N, 3, H, W) in [0, 1] -> the last step's (N, 3, sH, sW)."""

    def __init__(self, scale: int, options: SRFBNOptions) -> None:
        super().__init__()
        width = options.width
        kernel, stride, padding = _PROJECTION[scale]
        self.scale = scale
        self.steps = options.steps
        self.sub_mean = MeanShift(RGB_RANGE, sign=-1)
        self.conv_in = _conv(3, 4 * width, 3)
        self.feat_in = _conv(4 * width, width, 1)
        self.block = FeedbackBlock(width, options.groups, scale)
        self.out = _deconv(width, width, kernel, stride, padding)
        self.conv_out = _conv(width, 3, 3, act=False)
        self.add_mean = MeanShift(RGB_RANGE, sign=1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.sub_mean(x * RGB_RANGE)
        inter_res = F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
        x = self.feat_in(self.conv_in(x))
        hidden = x
        for _ in range(self.steps):
            hidden = self.block(x, hidden)
        # Only the last step's image is returned, so only it is reconstructed (earlier ones are unused).
        return self.add_mean(inter_res + self.conv_out(self.out(hidden))) / RGB_RANGE


def build(scale: int, options: SRFBNOptions) -> SRFBN:
    check_scale("srfbn", scale, SCALES)
    return SRFBN(scale, options)


def hints(model: nn.Module) -> ModelHints:
    groups = len(model.block.upBlocks)
    inner = (
        ["conv_in.0"]
        + [f"block.upBlocks.{i}.0" for i in range(groups)]
        + [f"block.uptranBlocks.{i}.0" for i in range(groups - 1)]
        + [f"block.downtranBlocks.{i}.0" for i in range(groups - 1)]
    )
    return ModelHints(
        never_prune=("sub_mean", "add_mean", "conv_out.0"),
        feature_taps=("feat_in", "block"),
        residual_inner=tuple(inner),
    )
