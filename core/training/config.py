"""The typed configuration of a fine-tuning run (a ``train`` stage, or a technique's ``finetune:``)."""

from __future__ import annotations

import math

from attrs import define

from srcompress.config import FieldValueError, in_range, one_of, option, positive

from .losses import LossTerm

__all__ = ["DEFAULT_STEPS", "TrainConfig", "lr_factor"]

DEFAULT_STEPS = 1000


def _probability(_inst: object, _attribute: object, value: float | None) -> None:
    if value is not None and not 0.0 < value < 1.0:
        raise ValueError(f"must be > 0 and < 1 (got {value})")


def _betas(_inst: object, _attribute: object, value: tuple[float, float]) -> None:
    if len(value) != 2 or not all(0.0 <= b < 1.0 for b in value):
        raise ValueError(f"must be two numbers in [0, 1) (got {value!r})")


def _increasing(_inst: object, _attribute: object, value: tuple[int, ...]) -> None:
    if any(m <= 0 for m in value) or list(value) != sorted(set(value)):
        raise ValueError(f"must be strictly increasing positive step numbers (got {list(value)})")


def _terms(_inst: object, _attribute: object, value: tuple[LossTerm, ...]) -> None:
    if not value or not all(isinstance(term, LossTerm) for term in value):
        raise ValueError("must be a non-empty list of loss terms like [{kind: l1, weight: 1.0}]")


@define(frozen=True, kw_only=True)
class TrainConfig:
    """How a model is trained or fine-tuned: length, optimizer, schedule, losses, robustness.

    Length is ``steps`` optimizer steps, or ``epochs`` passes over the training patches (one patch
    per training image and epoch); with neither, 1000 steps.
    """

    steps: int | None = option(None, help=f"Optimizer steps (default {DEFAULT_STEPS} when epochs is not set either).",
                               validator=in_range(1, None))
    epochs: int | None = option(None, help="Passes over the training set, instead of steps.", validator=in_range(1, None))
    optimizer: str = option("adamw", help="adamw, adam or sgd.", validator=one_of(("adamw", "adam", "sgd")))
    lr: float = option(1e-4, help="Peak learning rate.", validator=positive)
    weight_decay: float = option(0.0, help="Weight decay (decoupled for adamw).", validator=in_range(0.0, None))
    betas: tuple[float, float] = option((0.9, 0.999), help="Adam/AdamW betas.", validator=_betas)
    momentum: float = option(0.9, help="SGD momentum.", validator=in_range(0.0, 1.0, hi_open=True))
    schedule: str = option(
        "constant", help="LR schedule after warm-up: constant, step, multistep or cosine.",
        validator=one_of(("constant", "step", "multistep", "cosine")),
    )
    warmup_steps: int = option(0, help="Linear warm-up from lr/warmup_steps to lr over these steps.", validator=in_range(0, None))
    step_size: int = option(1000, help="schedule step: multiply the LR by gamma every step_size steps.", validator=in_range(1, None))
    milestones: tuple[int, ...] = option((), help="schedule multistep: steps at which the LR is multiplied by gamma.",
                                         validator=_increasing)
    gamma: float = option(0.5, help="LR factor of the step and multistep schedules.", validator=in_range(0.0, 1.0, lo_open=True))
    min_lr_ratio: float = option(0.0, help="schedule cosine: final LR as a fraction of lr.", validator=in_range(0.0, 1.0))
    grad_clip: float | None = option(None, help="Clip the global gradient norm to this value (None: off).", validator=positive)
    ema: float | None = option(None, help="Decay of an exponential moving average of the weights, e.g. 0.999; "
                               "validation and the result use the average (None: off).", validator=_probability)
    amp: str = option("none", help="Mixed precision on CUDA: none, fp16 or bf16 (ignored on CPU, with a warning).",
                      validator=one_of(("none", "fp16", "bf16")))
    channels_last: bool = option(False, help="Train in channels_last memory format (faster convs on recent GPUs).")
    val_every: int | None = option(None, help="Validate (val_metric on val_sets) every this many steps and at the end "
                                   "(None: no validation during training).", validator=in_range(1, None))
    val_sets: tuple[str, ...] | None = option(None, help="Eval sets for validation (None: the recipe's data.eval). "
                                              "Selecting weights on the sets a report scores makes that score optimistic.")
    val_metric: str = option("psnr", help="Metric of the validation: any registered metric (psnr, ssim, niqe, ...); "
                             "the mean over val_sets is the score, better as the metric says (niqe: lower).")
    val_limit: int | None = option(None, help="Validate on the first N images of each val set (None: all, or "
                                   "data.eval_limit).", validator=in_range(1, None))
    keep_best: bool = option(False, help="Return the weights of the best validation score (needs val_every).")
    checkpoint_every: int | None = option(500, help="Write a resumable checkpoint every this many steps (None: only "
                                          "at the end).", validator=in_range(1, None))
    on_nan: str = option("stop", help="On a NaN/inf loss or gradient: stop (raise, keeping the last good state) "
                         "or skip (drop the step and halve the LR).", validator=one_of(("stop", "skip")))
    max_skips: int = option(20, help="on_nan skip: stop anyway after this many skipped steps.", validator=in_range(1, None))
    losses: tuple[LossTerm, ...] = option((LossTerm(kind="l1", weight=1.0),), help="Weighted loss terms, e.g. "
                                          "[{kind: l1, weight: 1.0}, {kind: vgg, weight: 1.0}].", validator=_terms)
    disc_lr: float | None = option(None, help="Discriminator learning rate (None: lr).", validator=positive)
    seed: int | None = option(None, help="Seed of initialisation-free randomness (data order, crops); None: the run's seed.",
                              validator=in_range(0, None))
    log_every: int = option(10, help="Record the mean loss every this many steps.", validator=in_range(1, None))

    def __attrs_post_init__(self) -> None:
        if self.steps is not None and self.epochs is not None:
            raise FieldValueError("epochs", "give steps or epochs, not both")
        if self.keep_best and self.val_every is None:
            raise FieldValueError("keep_best", "needs val_every (how often to validate)")
        if self.warmup_steps and self.steps is not None and self.warmup_steps >= self.steps:
            raise FieldValueError("warmup_steps", f"must be < steps ({self.steps}) (got {self.warmup_steps})")

    def total_steps(self, steps_per_epoch: int) -> int:
        """Optimizer steps of the whole run, given how many global batches make an epoch."""
        if self.steps is not None:
            return self.steps
        if self.epochs is not None:
            return self.epochs * steps_per_epoch
        return DEFAULT_STEPS


def lr_factor(config: TrainConfig, step: int, total: int) -> float:
    """LR multiplier (of ``config.lr``) for 0-based optimizer step ``step`` of ``total``."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.schedule == "step":
        return config.gamma ** (step // config.step_size)
    if config.schedule == "multistep":
        return config.gamma ** sum(1 for m in config.milestones if m <= step)
    if config.schedule == "cosine":
        span = max(1, total - config.warmup_steps)
        progress = min(1.0, (step - config.warmup_steps) / span)
        low = config.min_lr_ratio
        return low + (1.0 - low) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0
