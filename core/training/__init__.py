"""srcompress.training: the one fine-tuning loop shared by the train stage and every technique.

- :func:`fit` trains a model on a recipe's data with a :class:`TrainConfig` (optimizer, schedule,
  losses, EMA, AMP, validation, resumable checkpoints, torchrun/DDP) and returns a
  :class:`TrainResult`.
- Loss terms are registered by plugins (:class:`srcompress.entries.LossEntry`); a recipe names them
  as ``losses: [{kind: l1, weight: 1.0}]`` (:class:`LossTerm`, :func:`structure_loss_term`), and
  :func:`build_criterion` sums them. Built-in losses: :class:`L1Loss`, :class:`MSELoss`,
  :class:`CharbonnierLoss`, :class:`TotalVariationLoss`, :class:`VGGPerceptualLoss`,
  :class:`AdversarialLoss`.
- Techniques extend the loop through :class:`TrainingHook` (extra terms, teacher outputs, adapters).
"""

from srcompress.training.adversarial import DISC_FAKE, DISC_REAL, AdversarialLoss, GANConfig
from srcompress.training.config import TrainConfig, lr_factor
from srcompress.training.hooks import TrainingHook
from srcompress.training.losses import (
    CharbonnierConfig,
    CharbonnierLoss,
    Criterion,
    L1Loss,
    LossInputs,
    LossTerm,
    MSELoss,
    TotalVariationLoss,
    TVConfig,
    build_criterion,
    structure_loss_term,
    unstructure_loss_term,
)
from srcompress.training.perceptual import VGG19_FILENAME, VGGConfig, VGGPerceptualLoss
from srcompress.training.trainer import TrainHistory, TrainingDivergedError, TrainResult, Trainer, fit

__all__ = [
    "DISC_FAKE",
    "DISC_REAL",
    "VGG19_FILENAME",
    "AdversarialLoss",
    "CharbonnierConfig",
    "CharbonnierLoss",
    "Criterion",
    "GANConfig",
    "L1Loss",
    "LossInputs",
    "LossTerm",
    "MSELoss",
    "TVConfig",
    "TotalVariationLoss",
    "TrainConfig",
    "TrainHistory",
    "TrainResult",
    "Trainer",
    "TrainingDivergedError",
    "TrainingHook",
    "VGGConfig",
    "VGGPerceptualLoss",
    "build_criterion",
    "fit",
    "lr_factor",
    "structure_loss_term",
    "unstructure_loss_term",
]
