"""Adversarial loss for GAN fine-tuning (SRGAN, ESRGAN, F2SRGAN).

The trainer owns the discriminator ``D`` (any ``nn.Module`` mapping float32 (N, 3, H, W) images in
[0, 1] to logits of shape (N, ...)). In the generator step it puts ``D(sr)`` (with gradient to the
generator) and ``D(hr)`` (detached) into ``LossInputs.extras`` under :data:`DISC_FAKE` and
:data:`DISC_REAL`, and the ``gan`` term computes the generator's loss from them; in the
discriminator step it calls :meth:`AdversarialLoss.discriminator_loss`.

Flavors (``x_r = D(hr)``, ``x_f = D(sr)``, ``bce(x, t)`` = binary cross-entropy with logits):

- ``vanilla`` (SRGAN, non-saturating): D: ``bce(x_r, 1) + bce(x_f, 0)``; G: ``bce(x_f, 1)``.
- ``relativistic`` (relativistic average GAN, ESRGAN): D: ``(bce(x_r - mean x_f, 1) +
  bce(x_f - mean x_r, 0)) / 2``; G: the same with the targets swapped.
- ``relativistic_paired`` (relativistic standard GAN, as F2SRGAN's training script):
  D: ``bce(x_r - x_f, 1)``; G: ``bce(x_f - x_r, 1)``.
- ``hinge``: D: ``mean relu(1 - x_r) + mean relu(1 + x_f)``; G: ``-mean x_f``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from attrs import define
from torch import nn

from srcompress.config import one_of, option
from srcompress.errors import SrcompressError

from .losses import LossInputs

__all__ = ["DISC_FAKE", "DISC_REAL", "FLAVORS", "AdversarialLoss", "GANConfig"]

DISC_FAKE = "disc_fake"
DISC_REAL = "disc_real"
FLAVORS = ("vanilla", "relativistic", "relativistic_paired", "hinge")


@define(frozen=True, kw_only=True)
class GANConfig:
    """Options of the adversarial loss."""

    flavor: str = option(
        "relativistic",
        help="vanilla (SRGAN), relativistic (average, ESRGAN), relativistic_paired (F2SRGAN's script) or hinge.",
        validator=one_of(FLAVORS),
    )


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


class AdversarialLoss(nn.Module):
    """Generator-side adversarial loss; :meth:`discriminator_loss` is the discriminator's side.

    ``requires_discriminator`` tells the trainer to run the discriminator and fill the extras.
    """

    requires_discriminator = True

    def __init__(self, config: GANConfig | None = None) -> None:
        super().__init__()
        self.flavor = (config or GANConfig()).flavor

    def forward(self, inputs: LossInputs) -> torch.Tensor:
        if DISC_FAKE not in inputs.extras or DISC_REAL not in inputs.extras:
            raise SrcompressError(
                "loss 'gan' needs a discriminator: give the stage 'discriminator: {name: ...}' "
                "(or pass discriminator= to srcompress.training.fit)"
            )
        return self.generator_loss(inputs.extras[DISC_REAL], inputs.extras[DISC_FAKE])

    def generator_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """Loss of the generator given logits ``real = D(hr)`` (detached) and ``fake = D(sr)``."""
        if self.flavor == "vanilla":
            return _bce(fake, 1.0)
        if self.flavor == "relativistic":
            return (_bce(real - fake.mean(), 0.0) + _bce(fake - real.mean(), 1.0)) / 2
        if self.flavor == "relativistic_paired":
            return _bce(fake - real, 1.0)
        return -fake.mean()

    def discriminator_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """Loss of the discriminator given logits ``real = D(hr)`` and ``fake = D(sr.detach())``."""
        if self.flavor == "vanilla":
            return _bce(real, 1.0) + _bce(fake, 0.0)
        if self.flavor == "relativistic":
            return (_bce(real - fake.mean(), 1.0) + _bce(fake - real.mean(), 0.0)) / 2
        if self.flavor == "relativistic_paired":
            return _bce(real - fake, 1.0)
        return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()
