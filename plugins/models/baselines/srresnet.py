"""SRResNet, the SRGAN generator (Ledig et al., "Photo-Realistic Single Image Super-Resolution Using a
Generative Adversarial Network", CVPR 2017), in two variants.

- ``variant="msrresnet"`` (default): BasicSR's ``MSRResNet`` (XPixelGroup/BasicSR
  ``basicsr/archs/srresnet_arch.py``, by the ESRGAN authors), the SRResNet used as the ESRGAN/BasicSR
  baseline: 3x3 conv + LeakyReLU(0.1) -> B residual blocks without batch norm (conv, ReLU, conv, plus
  identity) -> [3x3 conv to 4F, PixelShuffle(2), LeakyReLU(0.1)] x2 for x4 (one [conv to r^2 F,
  PixelShuffle(r), LeakyReLU] for x2/x3) -> 3x3 conv + LeakyReLU(0.1) -> 3x3 conv to RGB, plus the
  bilinear-upscaled input. Standard configuration F=64, B=16: 1,517,571 parameters at x4.
- ``variant="srgan"``: the network of the paper's Fig. 4 (no official code was released): 9x9 conv +
  PReLU -> B blocks (conv, BN, PReLU, conv, BN, plus identity) -> 3x3 conv + BN, plus the first
  features -> [3x3 conv to 4F, PixelShuffle(2), PReLU] per x2 step (one PixelShuffle(3) stage for
  x3, our extension) -> 9x9 conv to RGB. PReLUs have one slope (the paper does not say; as
  torch's default). F=64, B=16: 1,549,462 parameters at x4 (BN running statistics not counted).
  The paper maps LR [0, 1] to HR [-1, 1]; here the output is in [0, 1] like every model of the SDK.

Boundary: RGB in [0, 1] -> RGB in [0, 1] (not clamped).
"""

from __future__ import annotations

import torch.nn.functional as F
from attrs import define
from torch import Tensor, nn

from srcompress.config import in_range, one_of, option
from srcompress.entries import ModelHints

from .common import check_scale, pixel_shuffle_convs

__all__ = ["MSRResNet", "SCALES", "SRGANGenerator", "SRResNetOptions", "build", "hints"]

SCALES = (2, 3, 4)


@define(frozen=True, kw_only=True)
class SRResNetOptions:
    """SRResNet options (defaults: BasicSR's MSRResNet, 16 blocks of 64 maps)."""

    variant: str = option(
        "msrresnet",
        help="'msrresnet' (BasicSR's SRResNet without batch norm) or 'srgan' (the paper's Fig. 4, with batch norm).",
        validator=one_of(("msrresnet", "srgan")),
    )
    width: int = option(64, help="Feature maps of the body (num_feat).", validator=in_range(1, None))
    blocks: int = option(16, help="Number of residual blocks (num_block).", validator=in_range(0, None))


class ResidualBlockNoBN(nn.Module):
    """x + conv2(relu(conv1(x))) (BasicSR ``ResidualBlockNoBN``)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(self.relu(self.conv1(x)))


class MSRResNet(nn.Module):
    """BasicSR's modified SRResNet. Input RGB (N, 3, H, W) in [0, 1] -> (N, 3, sH, sW)."""

    def __init__(self, scale: int, width: int = 64, blocks: int = 16) -> None:
        super().__init__()
        self.scale = scale
        self.conv_first = nn.Conv2d(3, width, 3, padding=1)
        self.body = nn.Sequential(*[ResidualBlockNoBN(width) for _ in range(blocks)])
        if scale == 4:
            self.upconv1 = nn.Conv2d(width, 4 * width, 3, padding=1)
            self.upconv2 = nn.Conv2d(width, 4 * width, 3, padding=1)
            self.pixel_shuffle = nn.PixelShuffle(2)
        else:
            self.upconv1 = nn.Conv2d(width, scale * scale * width, 3, padding=1)
            self.pixel_shuffle = nn.PixelShuffle(scale)
        self.conv_hr = nn.Conv2d(width, width, 3, padding=1)
        self.conv_last = nn.Conv2d(width, 3, 3, padding=1)
        self.lrelu = nn.LeakyReLU(0.1)

    def forward(self, x: Tensor) -> Tensor:
        out = self.body(self.lrelu(self.conv_first(x)))
        out = self.lrelu(self.pixel_shuffle(self.upconv1(out)))
        if self.scale == 4:
            out = self.lrelu(self.pixel_shuffle(self.upconv2(out)))
        out = self.conv_last(self.lrelu(self.conv_hr(out)))
        return out + F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)


class SRGANBlock(nn.Module):
    """x + bn2(conv2(prelu(bn1(conv1(x))))) (SRGAN Fig. 4)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(width)
        self.prelu = nn.PReLU()
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(width)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.bn2(self.conv2(self.prelu(self.bn1(self.conv1(x)))))


class SRGANGenerator(nn.Module):
    """SRResNet as drawn in the SRGAN paper. Input RGB (N, 3, H, W) in [0, 1] -> (N, 3, sH, sW)."""

    def __init__(self, scale: int, width: int = 64, blocks: int = 16) -> None:
        super().__init__()
        self.conv_first = nn.Conv2d(3, width, 9, padding=4)
        self.prelu_first = nn.PReLU()
        self.body = nn.Sequential(*[SRGANBlock(width) for _ in range(blocks)])
        self.conv_body = nn.Conv2d(width, width, 3, padding=1)
        self.bn_body = nn.BatchNorm2d(width)
        steps = [3] if scale == 3 else [2] * (scale.bit_length() - 1)
        layers: list[nn.Module] = []
        for r in steps:
            layers += [nn.Conv2d(width, r * r * width, 3, padding=1), nn.PixelShuffle(r), nn.PReLU()]
        self.upsample = nn.Sequential(*layers)
        self.conv_last = nn.Conv2d(width, 3, 9, padding=4)

    def forward(self, x: Tensor) -> Tensor:
        feat = self.prelu_first(self.conv_first(x))
        out = feat + self.bn_body(self.conv_body(self.body(feat)))
        return self.conv_last(self.upsample(out))


def build(scale: int, options: SRResNetOptions) -> MSRResNet | SRGANGenerator:
    check_scale("srresnet", scale, SCALES)
    cls = MSRResNet if options.variant == "msrresnet" else SRGANGenerator
    return cls(scale, options.width, options.blocks)


def hints(model: nn.Module) -> ModelHints:
    blocks = [f"body.{i}" for i in range(len(model.body))]
    if isinstance(model, SRGANGenerator):
        shuffles = pixel_shuffle_convs(model.upsample, "upsample")
    else:
        r = model.pixel_shuffle.upscale_factor
        shuffles = {"upconv1": r, "upconv2": r} if model.scale == 4 else {"upconv1": r}
    return ModelHints(
        never_prune=("conv_last",),
        pixel_shuffle_convs=shuffles,
        feature_taps=tuple(blocks),
        residual_inner=tuple(f"{b}.conv1" for b in blocks),
    )
