"""RCAN (Zhang et al., "Image Super-Resolution Using Very Deep Residual Channel Attention Networks",
ECCV 2018).

MeanShift (DIV2K mean) -> 3x3 head conv -> G residual groups -> 3x3 conv -> global skip ->
EDSR upsampler -> 3x3 conv to RGB -> MeanShift back. A residual group is B residual channel
attention blocks (RCAB: conv, ReLU, conv, channel attention) and a 3x3 conv, plus a group skip;
channel attention is global average pooling -> 1x1 conv to F/r -> ReLU -> 1x1 conv to F -> sigmoid,
multiplied onto the features. The standard configuration (yulunzhang/RCAN, EDSR-PyTorch's rcan.py):
G=10, B=20, F=64, r=16; x4 has 15,592,379 parameters as the official code counts them (its MeanShift
sets ``module.requires_grad = False``, which freezes nothing); here both MeanShift convs are frozen as
in EDSR-PyTorch: 15,592,355 trainable + 24 frozen.
Module names equal the official ones so the official state dicts map 1:1.

Boundary: RGB in [0, 1] -> RGB; the network works in [0, 255] like the original (rgb_range 255).
"""

from __future__ import annotations

from attrs import define
from torch import Tensor, nn

from srcompress.config import in_range, option
from srcompress.entries import ModelHints

from .common import MeanShift, Upsampler, check_scale, pixel_shuffle_convs

__all__ = ["CALayer", "RCAB", "RCAN", "RCANOptions", "ResidualGroup", "SCALES", "build", "hints"]

SCALES = (2, 3, 4)
RGB_RANGE = 255.0


@define(frozen=True, kw_only=True)
class RCANOptions:
    """RCAN options (defaults: the published 10 groups x 20 blocks, 64 maps, reduction 16)."""

    groups: int = option(10, help="Number of residual groups (n_resgroups).", validator=in_range(1, None))
    blocks: int = option(
        20, help="Residual channel attention blocks per group (n_resblocks).", validator=in_range(0, None)
    )
    width: int = option(64, help="Feature maps of the body (n_feats).", validator=in_range(1, None))
    reduction: int = option(
        16, help="Channel reduction ratio of the attention's squeeze conv.", validator=in_range(1, None)
    )


class CALayer(nn.Module):
    """Channel attention: x * sigmoid(conv(relu(conv(avgpool(x)))))."""

    def __init__(self, width: int, reduction: int) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_du = nn.Sequential(
            nn.Conv2d(width, width // reduction, 1),
            nn.ReLU(),
            nn.Conv2d(width // reduction, width, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x * self.conv_du(self.avg_pool(x))


class RCAB(nn.Module):
    """Residual channel attention block: x + CA(conv(relu(conv(x)))) (``body.0`` is the inner conv)."""

    def __init__(self, width: int, reduction: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            CALayer(width, reduction),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ResidualGroup(nn.Module):
    """B RCABs and a 3x3 conv, plus the group's skip connection."""

    def __init__(self, width: int, reduction: int, blocks: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *[RCAB(width, reduction) for _ in range(blocks)], nn.Conv2d(width, width, 3, padding=1)
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class RCAN(nn.Module):
    """RCAN. Input RGB (N, 3, H, W) in [0, 1] -> (N, 3, sH, sW)."""

    def __init__(self, scale: int, options: RCANOptions) -> None:
        super().__init__()
        width = options.width
        if width // options.reduction < 1:
            raise ValueError(f"rcan: width {width} / reduction {options.reduction} leaves no attention channels")
        self.sub_mean = MeanShift(RGB_RANGE, sign=-1)
        self.head = nn.Sequential(nn.Conv2d(3, width, 3, padding=1))
        groups = [ResidualGroup(width, options.reduction, options.blocks) for _ in range(options.groups)]
        self.body = nn.Sequential(*groups, nn.Conv2d(width, width, 3, padding=1))
        self.tail = nn.Sequential(Upsampler(scale, width), nn.Conv2d(width, 3, 3, padding=1))
        self.add_mean = MeanShift(RGB_RANGE, sign=1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.head(self.sub_mean(x * RGB_RANGE))
        x = x + self.body(x)
        return self.add_mean(self.tail(x)) / RGB_RANGE


def build(scale: int, options: RCANOptions) -> RCAN:
    check_scale("rcan", scale, SCALES)
    return RCAN(scale, options)


def hints(model: nn.Module) -> ModelHints:
    groups = [f"body.{i}" for i, m in enumerate(model.body) if isinstance(m, ResidualGroup)]
    inner = [
        f"{group}.body.{j}.body.0"
        for group in groups
        for j, block in enumerate(model.get_submodule(group).body)
        if isinstance(block, RCAB)
    ]
    return ModelHints(
        never_prune=("sub_mean", "add_mean", "tail.1"),
        pixel_shuffle_convs=pixel_shuffle_convs(model.tail[0], "tail.0"),
        feature_taps=tuple(groups),
        residual_inner=tuple(inner),
    )
