"""The ``prune`` stage's typed configuration."""

from __future__ import annotations

from typing import Any

from attrs import define

from srcompress.config import FieldValueError, in_range, one_of, option
from srcompress.training import TrainConfig

__all__ = ["DEFAULT_RATIO", "PruneConfig"]

DEFAULT_RATIO = 0.5
"""Channel ratio used when a stage names neither ``ratio`` nor a target."""


def _name(_inst: object, _attribute: object, value: str) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"must name a registered importance criterion (got {value!r})")


def _patterns(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    return tuple(value)


def _overrides(value: Any) -> dict[str, float]:
    return dict(value)


def _override_ratios(_inst: object, _attribute: object, value: dict[str, float]) -> None:
    for pattern, ratio in value.items():
        if not isinstance(pattern, str) or not pattern:
            raise ValueError(f"keys must be module name patterns (got {pattern!r})")
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 <= ratio < 1.0:
            raise ValueError(f"'{pattern}': ratio must be >= 0 and < 1 (got {ratio!r})")


def _fraction(_inst: object, _attribute: object, value: float | None) -> None:
    if value is not None and not 0.0 < value < 1.0:
        raise ValueError(f"must be > 0 and < 1 (got {value})")


@define(frozen=True, kw_only=True)
class PruneConfig:
    """A structured pruning stage: which channels to remove, how many, and how to recover.

    How many: ``ratio`` (the fraction of each prunable channel group removed), or one target
    (``target_params``, ``target_macs``, ``target_latency``: the pruned model's cost as a fraction
    of the incoming model's), which is turned into a ratio by bisection on copies of the model.
    Neither: ratio 0.5. Which groups: the residual blocks' inner widths (the model's
    ``residual_inner`` hints), or every prunable group with ``prune_trunk: true``.
    """

    importance: str = option(
        "l1", help="Channel importance criterion: random, l1, l2, group_norm, lamp, taylor, fpgm, or one a "
        "plugin registers (srcompress_pruning_importances).", validator=_name,
    )
    ratio: float | None = option(
        None, help="Fraction of the channels of each prunable group to remove (per_layer), or of all of them "
        f"together (global); null: {DEFAULT_RATIO} unless a target is given.",
        validator=in_range(0.0, 1.0, hi_open=True),
    )
    target_params: float | None = option(
        None, help="Instead of ratio: reach this fraction of the incoming model's parameter count.", validator=_fraction,
    )
    target_macs: float | None = option(
        None, help="Instead of ratio: reach this fraction of the incoming model's MACs (at latency_size).",
        validator=_fraction,
    )
    target_latency: float | None = option(
        None, help="Instead of ratio: reach this fraction of the incoming model's torch CPU latency at "
        "latency_size (measured on each candidate; noisy on a loaded machine).", validator=_fraction,
    )
    scope: str = option(
        "per_layer", help="per_layer: every group loses the same fraction; global: channels are ranked across "
        "groups by their (normalised) scores, so some groups lose more than others.",
        validator=one_of(("per_layer", "global")),
    )
    overrides: dict[str, float] = option(
        factory=dict, help="Per-group ratios by name pattern (fnmatch), e.g. {'body.1?.*': 0.25}; a group is named by "
        "the first layer producing its channels (the report lists them); the first matching pattern wins; 0 keeps it.",
        converter=_overrides, validator=_override_ratios,
    )
    iterative_steps: int = option(
        1, help="Prune in this many equal steps (linear schedule up to the ratio), fine-tuning after each step.",
        validator=in_range(1, 100),
    )
    finetune: TrainConfig | None = option(
        None, help="Fine-tuning after each pruning step (so iterative_steps times in all), e.g. {steps: 500, lr: "
        "1.0e-4}; null: none.",
    )
    round_to: int | None = option(
        None, help="Keep a multiple of this many channels in every group (e.g. 8 for tensor-core friendly widths).",
        validator=in_range(1, 1024),
    )
    min_channels: int = option(1, help="Keep at least this many channels in every group.", validator=in_range(1, None))
    pixel_shuffle: str = option(
        "group", help="Convs feeding a PixelShuffle(r): group (remove their output channels r*r at a time, one "
        "channel after the shuffle each) or keep (never prune them).", validator=one_of(("group", "keep")),
    )
    prune_trunk: bool = option(
        False, help="false: prune only the residual blocks' inner widths (the model's residual_inner hints, as "
        "Light F2SRGAN did); true: every prunable group, the trunk width coupled through all skips included.",
    )
    ignore: tuple[str, ...] = option(
        (), help="Module name patterns (fnmatch; a name also covers its submodules) whose channels stay as they "
        "are: every group touching them is left unpruned.", converter=_patterns,
    )
    calibration_batches: int = option(
        4, help="Training batches back-propagated before scoring, for gradient criteria (taylor).",
        validator=in_range(1, 1000),
    )
    latency_size: tuple[int, int] = option(
        (180, 320), help="LR (height, width) at which target_macs / target_latency and the report's MACs are measured.",
    )
    report_quality: bool = option(
        True, help="With finetune: evaluate the pruned model before fine-tuning too, so the report shows what "
        "fine-tuning recovered.",
    )

    def __attrs_post_init__(self) -> None:
        targets = [name for name in ("target_params", "target_macs", "target_latency") if getattr(self, name) is not None]
        if len(targets) > 1:
            raise FieldValueError(targets[1], f"give one target, not {' and '.join(targets)}")
        if targets and self.ratio is not None:
            raise FieldValueError(targets[0], "give ratio or a target, not both")
        if len(self.latency_size) != 2 or min(self.latency_size) < 1:
            raise FieldValueError("latency_size", f"must be [height, width] (got {list(self.latency_size)})")

    @property
    def target(self) -> tuple[str, float] | None:
        """``(kind, fraction)`` of the cost target (kind: params, macs or latency), or None."""
        for kind in ("params", "macs", "latency"):
            value = getattr(self, f"target_{kind}")
            if value is not None:
                return kind, value
        return None

    @property
    def channel_ratio(self) -> float:
        """The channel ratio to prune to when no target is given."""
        return DEFAULT_RATIO if self.ratio is None else self.ratio
