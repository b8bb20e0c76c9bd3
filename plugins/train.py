"""The ``train`` stage: train or fine-tune the model with the shared training loop.

Recipe::

    stages:
      - type: train
        steps: 2000
        lr: 1.0e-4
        losses: [{kind: vgg, weight: 1.0}, {kind: gan, weight: 0.6, flavor: relativistic}]
        discriminator: {name: f2srgan_discriminator}
"""

from __future__ import annotations

from typing import Any

from attrs import define
from torch import nn

from srcompress.config import option
from srcompress.entries import TechniqueEntry
from srcompress.hookspecs import hookimpl
from srcompress.recipe_types import ModelRef
from srcompress.training import TrainConfig, fit

__all__ = ["TrainStageConfig", "apply", "srcompress_techniques"]


@define(frozen=True, kw_only=True)
class TrainStageConfig(TrainConfig):
    """Every :class:`srcompress.training.TrainConfig` option, plus the discriminator of GAN losses."""

    discriminator: ModelRef | None = option(
        None, help="Discriminator for 'gan' loss terms: a registered model, e.g. {name: f2srgan_discriminator}."
    )


def apply(model: nn.Module, config: TrainStageConfig, ctx: Any) -> nn.Module:
    """Train ``model`` in place on the recipe's data and return it (best or EMA weights when asked)."""
    discriminator = ctx.build_model(config.discriminator) if config.discriminator is not None else None
    result = fit(
        model, config, ctx.data, ctx.scale, work_dir=ctx.work_dir, stage_name=ctx.stage_name,
        registry=ctx.registry, discriminator=discriminator, device=ctx.device, seed=ctx.seed,
        progress=not ctx.quiet,
    )
    history = result.history
    summary = f"trained {result.steps} steps"
    if history.loss:
        summary += f"; loss {history.loss[0]:.4g} -> {history.loss[-1]:.4g}"
    if result.best_score is not None:
        summary += f"; {result.best_text()}"
    if result.skipped_steps:
        summary += f"; {result.skipped_steps} step(s) skipped on NaN/inf"
    if result.resumed_from:
        summary += f"; resumed at step {result.resumed_from}"
    ctx.note(summary)
    return result.model


@hookimpl
def srcompress_techniques() -> list[TechniqueEntry]:
    return [
        TechniqueEntry(name="train", config_cls=TrainStageConfig, apply=apply,
                       description="Train or fine-tune the model (losses, optimizer, schedule, EMA, GAN)."),
    ]
