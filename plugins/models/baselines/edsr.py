"""EDSR and EDSR-baseline (Lim et al., "Enhanced Deep Residual Networks for Single Image
Super-Resolution", CVPRW 2017).

MeanShift (DIV2K mean) -> 3x3 head conv -> B residual blocks (conv, ReLU, conv, times res_scale,
plus identity; no batch norm) -> 3x3 conv -> global skip -> upsampler ([conv, PixelShuffle(2)] per
x2 step, or [conv, PixelShuffle(3)]) -> 3x3 conv to RGB -> MeanShift back. Standard configurations
(sanghyun-son/EDSR-PyTorch): EDSR-baseline B=16, F=64, res_scale 1 (x4: 1,517,571 trainable
parameters); EDSR B=32, F=256, res_scale 0.1 (x4: 43,089,923). Both MeanShift convs are frozen and
add 24 parameters that the published counts leave out. Module names equal the official ones
(``sub_mean``, ``head``, ``body``, ``tail``, ``add_mean``) so the official state dicts map 1:1.

Boundary: RGB in [0, 1] -> RGB. The network works in [0, 255] (``rgb_range`` 255, like the
originals): the input is multiplied by 255 inside the model and the output divided by 255.
"""

from __future__ import annotations

from attrs import define
from torch import Tensor, nn

from srcompress.config import in_range, option
from srcompress.entries import ModelHints

from .common import MeanShift, Upsampler, check_scale, pixel_shuffle_convs

__all__ = ["EDSR", "EDSRBaselineOptions", "EDSROptions", "ResBlock", "SCALES", "build", "hints"]

SCALES = (2, 3, 4)
RGB_RANGE = 255.0


@define(frozen=True, kw_only=True)
class EDSROptions:
    """EDSR options (defaults: the published EDSR, 32 blocks of 256 maps, residual scaling 0.1)."""

    blocks: int = option(32, help="Number of residual blocks in the body.", validator=in_range(0, None))
    width: int = option(256, help="Feature maps of the body (n_feats).", validator=in_range(1, None))
    res_scale: float = option(
        0.1, help="Residual scaling of each block's branch.", validator=in_range(0.0, None, lo_open=True)
    )


@define(frozen=True, kw_only=True)
class EDSRBaselineOptions:
    """EDSR-baseline options (defaults: the published baseline, 16 blocks of 64 maps, no scaling)."""

    blocks: int = option(16, help="Number of residual blocks in the body.", validator=in_range(0, None))
    width: int = option(64, help="Feature maps of the body (n_feats).", validator=in_range(1, None))
    res_scale: float = option(
        1.0, help="Residual scaling of each block's branch.", validator=in_range(0.0, None, lo_open=True)
    )


class ResBlock(nn.Module):
    """conv3x3 -> ReLU -> conv3x3, times ``res_scale``, plus identity (``body.0`` is the inner conv)."""

    def __init__(self, width: int, res_scale: float = 1.0) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1)
        )
        self.res_scale = res_scale

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x) * self.res_scale


class EDSR(nn.Module):
    """EDSR / EDSR-baseline. Input RGB (N, 3, H, W) in [0, 1] -> (N, 3, sH, sW)."""

    def __init__(self, scale: int, options: EDSROptions | EDSRBaselineOptions) -> None:
        super().__init__()
        width = options.width
        self.sub_mean = MeanShift(RGB_RANGE, sign=-1)
        self.head = nn.Sequential(nn.Conv2d(3, width, 3, padding=1))
        blocks: list[nn.Module] = [ResBlock(width, options.res_scale) for _ in range(options.blocks)]
        self.body = nn.Sequential(*blocks, nn.Conv2d(width, width, 3, padding=1))
        self.tail = nn.Sequential(Upsampler(scale, width), nn.Conv2d(width, 3, 3, padding=1))
        self.add_mean = MeanShift(RGB_RANGE, sign=1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.head(self.sub_mean(x * RGB_RANGE))
        x = x + self.body(x)
        return self.add_mean(self.tail(x)) / RGB_RANGE


def build(scale: int, options: EDSROptions | EDSRBaselineOptions) -> EDSR:
    check_scale("edsr", scale, SCALES)
    return EDSR(scale, options)


def hints(model: nn.Module) -> ModelHints:
    blocks = [f"body.{i}" for i, m in enumerate(model.body) if isinstance(m, ResBlock)]
    return ModelHints(
        never_prune=("sub_mean", "add_mean", "tail.1"),
        pixel_shuffle_convs=pixel_shuffle_convs(model.tail[0], "tail.0"),
        feature_taps=tuple(blocks),
        residual_inner=tuple(f"{name}.body.0" for name in blocks),
    )
