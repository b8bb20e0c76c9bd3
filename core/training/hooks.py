"""How a technique extends the shared training loop (distillation, quantization regularisers).

A technique passes :class:`TrainingHook` objects to :func:`srcompress.training.fit`. For each hook
the trainer calls, in this order:

1. ``setup(model, device)`` once, before the first step: move a teacher to ``device``, register
   forward hooks on the student's feature taps, build adapters.
2. ``terms()`` once: named ``(weight, module)`` loss terms added to the recipe's terms; each module
   maps :class:`~srcompress.training.LossInputs` to a scalar like any loss.
3. ``parameters()`` once: extra trainable parameters (adapters), optimised with the model (same
   optimizer and LR schedule), averaged across processes, and saved in mid-stage checkpoints.
4. ``before_loss(inputs)`` every step, after the student's forward (``inputs.sr`` is set) and before
   the loss: fill ``inputs.extras`` (teacher outputs, captured features).
5. ``teardown()`` once, after the last step (also on errors): remove forward hooks.

Every method has a no-op default: subclass and override what you need.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn

from .losses import LossInputs

__all__ = ["TrainingHook"]


class TrainingHook:
    """Base class of the trainer's extension point (see the module documentation)."""

    def setup(self, model: nn.Module, device: torch.device) -> None:
        """Called once before training with the (unwrapped) student and the training device."""

    def terms(self) -> Mapping[str, tuple[float, nn.Module]]:
        """Named ``(weight, module)`` loss terms to add; names must differ from the recipe's terms."""
        return {}

    def parameters(self) -> Iterable[nn.Parameter]:
        """Extra trainable parameters (e.g. distillation adapters)."""
        return ()

    def before_loss(self, inputs: LossInputs) -> None:
        """Fill ``inputs.extras`` for this step (``inputs.sr`` is the student's output)."""

    def teardown(self) -> None:
        """Called once after training (also when it fails)."""
