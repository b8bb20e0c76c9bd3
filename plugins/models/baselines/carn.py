"""CARN (Ahn et al., "Fast, Accurate, and Lightweight Super-Resolution with Cascading Residual
Network", ECCV 2018).

MeanShift (DIV2K mean, on [0, 1]) -> 3x3 entry conv -> three cascading blocks, each followed by a
1x1 conv + ReLU over the concatenation of all earlier outputs (global cascade) -> upsampler ([3x3
conv to 4F, ReLU, PixelShuffle(2)] per x2 step, or [3x3 conv to 9F, ReLU, PixelShuffle(3)]) -> 3x3
exit conv -> MeanShift back. A cascading block is the same pattern one level down: three residual
blocks (conv, ReLU, conv, plus identity, then ReLU) with a 1x1 conv + ReLU after each (local cascade).
Module names follow nmhkahn/CARN-pytorch (``carn/model/carn.py``, ``ops.py``).

The released CARN is one multi-scale network holding x2, x3 and x4 upsamplers (1,591,939 trainable
parameters, paper: 1,592K); ``multi_scale=True`` builds that layout (only the requested scale's
upsampler runs). The default single-scale x4 network has 1,111,875 parameters.
Boundary: RGB in [0, 1] -> RGB; CARN itself works on [0, 1] (its mean shift is not scaled to 255).
"""

from __future__ import annotations

import torch
from attrs import define
from torch import Tensor, nn

from srcompress.config import in_range, option
from srcompress.entries import ModelHints

from .common import MeanShift, check_scale, pixel_shuffle_convs

__all__ = ["CARN", "CARNOptions", "CascadingBlock", "SCALES", "build", "hints"]

SCALES = (2, 3, 4)


@define(frozen=True, kw_only=True)
class CARNOptions:
    """CARN options (defaults: the published 64-map network with a single-scale upsampler)."""

    width: int = option(64, help="Feature maps of every layer of the body.", validator=in_range(1, None))
    multi_scale: bool = option(
        False, help="Build the x2, x3 and x4 upsamplers of the released multi-scale model (only `scale`'s runs)."
    )


class _Shifter(nn.Module):
    """CARN's mean shift wraps the frozen conv as ``.shifter`` (official checkpoint names)."""

    def __init__(self, sign: int) -> None:
        super().__init__()
        self.shifter = MeanShift(1.0, sign=sign)

    def forward(self, x: Tensor) -> Tensor:
        return self.shifter(x)


class BasicBlock(nn.Module):
    """1x1 conv + ReLU (the cascade's fusion layer)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1), nn.ReLU())

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class ResidualBlock(nn.Module):
    """relu(x + conv(relu(conv(x)))) (``body.0`` is the inner conv)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1)
        )
        self.act = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.body(x) + x)


def _cascade(x: Tensor, units: list[nn.Module], fusions: list[nn.Module]) -> Tensor:
    concat = out = x
    for unit, fusion in zip(units, fusions, strict=True):
        concat = torch.cat([concat, unit(out)], dim=1)
        out = fusion(concat)
    return out


class CascadingBlock(nn.Module):
    """Three residual blocks, each followed by a 1x1 fusion of everything before it."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.b1, self.b2, self.b3 = ResidualBlock(width), ResidualBlock(width), ResidualBlock(width)
        self.c1, self.c2, self.c3 = (
            BasicBlock(2 * width, width),
            BasicBlock(3 * width, width),
            BasicBlock(4 * width, width),
        )

    def forward(self, x: Tensor) -> Tensor:
        return _cascade(x, [self.b1, self.b2, self.b3], [self.c1, self.c2, self.c3])


def _upsample_body(scale: int, width: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    if scale == 3:
        layers += [nn.Conv2d(width, 9 * width, 3, padding=1), nn.ReLU(), nn.PixelShuffle(3)]
    else:
        for _ in range(scale.bit_length() - 1):
            layers += [nn.Conv2d(width, 4 * width, 3, padding=1), nn.ReLU(), nn.PixelShuffle(2)]
    return nn.Sequential(*layers)


class _UpsampleBlock(nn.Module):
    def __init__(self, scale: int, width: int) -> None:
        super().__init__()
        self.body = _upsample_body(scale, width)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class UpsampleBlock(nn.Module):
    """One upsampler (``up``) or, multi-scale, ``up2``/``up3``/``up4`` of which ``scale``'s runs."""

    def __init__(self, scale: int, width: int, multi_scale: bool) -> None:
        super().__init__()
        self.scale = scale
        self.multi_scale = multi_scale
        if multi_scale:
            self.up2, self.up3, self.up4 = _UpsampleBlock(2, width), _UpsampleBlock(3, width), _UpsampleBlock(4, width)
        else:
            self.up = _UpsampleBlock(scale, width)

    @property
    def active(self) -> str:
        """Name of the upsampler that runs."""
        return f"up{self.scale}" if self.multi_scale else "up"

    def forward(self, x: Tensor) -> Tensor:
        return getattr(self, self.active)(x)


class CARN(nn.Module):
    """CARN. Input RGB (N, 3, H, W) in [0, 1] -> (N, 3, sH, sW)."""

    def __init__(self, scale: int, options: CARNOptions) -> None:
        super().__init__()
        width = options.width
        self.sub_mean = _Shifter(sign=-1)
        self.add_mean = _Shifter(sign=1)
        self.entry = nn.Conv2d(3, width, 3, padding=1)
        self.b1, self.b2, self.b3 = CascadingBlock(width), CascadingBlock(width), CascadingBlock(width)
        self.c1, self.c2, self.c3 = (
            BasicBlock(2 * width, width),
            BasicBlock(3 * width, width),
            BasicBlock(4 * width, width),
        )
        self.upsample = UpsampleBlock(scale, width, options.multi_scale)
        self.exit = nn.Conv2d(width, 3, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.entry(self.sub_mean(x))
        out = _cascade(x, [self.b1, self.b2, self.b3], [self.c1, self.c2, self.c3])
        return self.add_mean(self.exit(self.upsample(out)))


def build(scale: int, options: CARNOptions) -> CARN:
    check_scale("carn", scale, SCALES)
    return CARN(scale, options)


def hints(model: nn.Module) -> ModelHints:
    shuffles: dict[str, int] = {}
    for name in ("up", "up2", "up3", "up4"):
        if hasattr(model.upsample, name):
            prefix = f"upsample.{name}.body"
            shuffles.update(pixel_shuffle_convs(model.get_submodule(prefix), prefix))
    inner = [f"b{i}.b{j}.body.0" for i in (1, 2, 3) for j in (1, 2, 3)]
    return ModelHints(
        never_prune=("sub_mean.shifter", "add_mean.shifter", "exit"),
        pixel_shuffle_convs=shuffles,
        feature_taps=("c1", "c2", "c3"),
        residual_inner=tuple(inner),
    )
