"""Built-in loss terms, registered through the plugin system like any third-party loss.

The loss classes live in the core (:mod:`srcompress.training`); this plugin only names them.
"""

from __future__ import annotations

from srcompress.entries import LossEntry, NoOptions
from srcompress.hookspecs import hookimpl
from srcompress.training import (
    AdversarialLoss,
    CharbonnierConfig,
    CharbonnierLoss,
    GANConfig,
    L1Loss,
    MSELoss,
    TotalVariationLoss,
    TVConfig,
    VGGConfig,
    VGGPerceptualLoss,
)

__all__ = ["srcompress_losses"]


@hookimpl
def srcompress_losses() -> list[LossEntry]:
    return [
        LossEntry(name="l1", config_cls=NoOptions, build=lambda _c: L1Loss(),
                  description="Mean absolute error to the HR image."),
        LossEntry(name="mse", config_cls=NoOptions, build=lambda _c: MSELoss(),
                  description="Mean squared error to the HR image."),
        LossEntry(name="charbonnier", config_cls=CharbonnierConfig, build=CharbonnierLoss,
                  description="Charbonnier (smooth L1) distance to the HR image."),
        LossEntry(name="tv", config_cls=TVConfig, build=TotalVariationLoss,
                  description="Total variation of the output (smoothness prior)."),
        LossEntry(name="vgg", config_cls=VGGConfig, build=VGGPerceptualLoss,
                  description="VGG19 perceptual loss: MSE of ImageNet VGG19 features (needs torchvision's weights)."),
        LossEntry(name="gan", config_cls=GANConfig, build=AdversarialLoss,
                  description="Adversarial loss against the stage's discriminator (vanilla, relativistic, hinge)."),
    ]
