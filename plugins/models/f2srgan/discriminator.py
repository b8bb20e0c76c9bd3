"""The F2SRGAN discriminator (SRGAN-style, separable convs), with the published stride bug as an option."""

from __future__ import annotations

import torch
from attrs import define
from torch import nn

from srcompress.config import option, positive
from srcompress.plugins.models.f2srgan.layers import SeparableConv2d

__all__ = ["DiscriminatorOptions", "F2SRGANDiscriminator"]


def _features(value: object) -> tuple[int, ...]:
    items = tuple(value)  # type: ignore[arg-type]
    if not items or not all(isinstance(v, int) and v > 0 for v in items):
        raise ValueError(f"features must be a non-empty list of positive ints (got {value!r})")
    return items


@define(frozen=True, kw_only=True)
class DiscriminatorOptions:
    """Options of :class:`F2SRGANDiscriminator` (defaults: the authors' configuration)."""

    features: tuple[int, ...] = option(
        (64, 64, 128, 128, 256, 256, 512, 512), help="Output channels of each conv block.", converter=_features
    )
    hidden: int = option(1024, help="Width of the hidden linear layer.", validator=positive)
    pool: int = option(6, help="Side of the adaptive average pool before the classifier.", validator=positive)
    published_stride_bug: bool = option(
        False,
        help="Reproduce the published code, whose separable conv drops the stride (every block keeps "
        "full resolution). False: odd blocks downsample by 2 as the authors intended.",
    )
    sigmoid_output: bool = option(
        False,
        help="Return sigmoid probabilities as the published forward does (its training then applied "
        "BCEWithLogits on them); False returns logits, for BCEWithLogits / relativistic losses.",
    )
    rgb_range: float = option(255.0, help="Inputs in [0, 1] are multiplied by this (the authors trained on 0-255 images).", validator=positive)


class F2SRGANDiscriminator(nn.Module):
    """Images (N, 3, H, W) float32 RGB in [0, 1] -> (N, 1) realness logits (or probabilities).

    Blocks: separable 3x3 conv (stride 1 + i % 2 unless ``published_stride_bug``), BatchNorm from
    the second block on, LeakyReLU(0.2); then AdaptiveAvgPool(6) -> Linear(512*36, 1024) ->
    LeakyReLU(0.2) -> Linear(1024, 1).
    """

    def __init__(self, options: DiscriminatorOptions | None = None) -> None:
        super().__init__()
        opts = options if options is not None else DiscriminatorOptions()
        self.options = opts
        layers: list[nn.Module] = []
        channels = 3
        for index, feat in enumerate(opts.features):
            stride = 1 if opts.published_stride_bug else 1 + index % 2
            block: list[nn.Module] = [SeparableConv2d(channels, feat, 3, stride=stride)]
            if index > 0:
                block.append(nn.BatchNorm2d(feat))
            block.append(nn.LeakyReLU(0.2))
            layers.append(nn.Sequential(*block))
            channels = feat
        self.blocks = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(opts.pool),
            nn.Flatten(),
            nn.Linear(channels * opts.pool * opts.pool, opts.hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(opts.hidden, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.classifier(self.blocks(x * self.options.rgb_range))
        return torch.sigmoid(logits) if self.options.sigmoid_output else logits
