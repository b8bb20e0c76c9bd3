"""The ``prune`` technique: structured pruning with an iterative schedule and fine-tuning.

Recipe::

    stages:
      - type: prune
        importance: lamp            # random, l1, l2, group_norm, lamp, taylor, fpgm, or a plugin's
        ratio: 0.5                  # or target_params / target_macs / target_latency: 0.5
        scope: per_layer            # or global
        overrides: {"body.1?.*": 0.25}
        iterative_steps: 2
        finetune: {steps: 500, lr: 1.0e-4}
        round_to: 8
        pixel_shuffle: group        # or keep
        prune_trunk: false          # true: the trunk width too, coupled through every skip
        ignore: [upsampler]
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from srcompress.measure import count_macs, count_params, measure_latency
from srcompress.training import fit

from .config import PruneConfig
from .prune import PruneResult, prune_model, resolve_importance, search_ratio
from .spec import ImportanceEntry

__all__ = ["apply", "calibration_batches", "model_cost"]


def model_cost(model: nn.Module, kind: str, lr_size: tuple[int, int]) -> float:
    """Parameters, MACs (one LR image of ``lr_size``) or median torch latency (ms) of ``model``."""
    if kind == "params":
        return float(count_params(model)[0])
    if kind == "macs":
        return float(count_macs(model, lr_size))
    param = next(iter(model.parameters()))
    image = torch.rand(1, 3, *lr_size, device=param.device, dtype=param.dtype)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return measure_latency(lambda: model(image), warmup=1, runs=3).median_ms
    finally:
        model.train(was_training)


def calibration_batches(ctx: Any, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``count`` (lr, hr) batches of training patches from the recipe's data (for gradient criteria)."""
    from srcompress.data import PatchDataset

    data = ctx.data
    dataset = PatchDataset(data.train, ctx.scale, data.patch, root=data.root, augment=False, seed=ctx.seed,
                           length=count * data.batch)
    loader = DataLoader(dataset, batch_size=data.batch, shuffle=False)
    return list(_take(iter(loader), count))


def _take(iterator: Iterator[Any], count: int) -> Iterator[Any]:
    for _ in range(count):
        yield next(iterator)


def _si(value: float) -> str:
    for factor, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= factor:
            return f"{value / factor:.3f} {unit}"
    return f"{value:.0f}"


def _quality(metrics: dict[str, Any]) -> str:
    parts = []
    for dataset, values in metrics.items():
        shown = ", ".join(f"{name} {value:.4g}" for name, value in values.items() if isinstance(value, (int, float)))
        parts.append(f"{dataset}: {shown}")
    return "; ".join(parts)


def _ratio(model: nn.Module, config: PruneConfig, ctx: Any, prune_copy: Any) -> float:
    target = config.target
    if target is None:
        return config.channel_ratio
    kind, fraction = target
    ratio, reached = search_ratio(
        model, config, lambda m: model_cost(m, kind, config.latency_size), fraction, prune=prune_copy,
    )
    ctx.note(f"target {kind} {fraction:.3g}x: channel ratio {ratio:.3f} reaches {reached:.3f}x of the {kind} (one-shot, "
             "on a copy)")
    return ratio


def _step_note(step: int, steps: int, ratio: float, result: PruneResult) -> str:
    groups = len(result.widths)
    widths = sorted({after for _before, after in result.widths.values()})
    shown = ", ".join(str(w) for w in widths[:6]) + (" ..." if len(widths) > 6 else "")
    return (f"step {step}/{steps}: channel ratio {ratio:.3f}, {result.removed} channels removed from {groups} groups "
            f"(widths now {shown}); params {result.params[0]:,} -> {result.params[1]:,}")


def apply(model: nn.Module, config: PruneConfig, ctx: Any) -> nn.Module:
    """Prune ``model`` in place (iteratively, fine-tuning after each step when asked) and return it."""
    hints = ctx.hints(model)
    entry = resolve_importance(config.importance, ctx.registry)
    batches = calibration_batches(ctx, config.calibration_batches) if entry.needs_gradients else None

    def prune_copy(candidate: nn.Module, ratio: float) -> PruneResult:
        torch.manual_seed(ctx.seed)
        return prune_model(candidate, config, hints=hints, importance=entry, ratio=ratio, batches=batches)

    params_before, macs_before = count_params(model)[0], count_macs(model, config.latency_size)
    ratio = _ratio(model, config, ctx, prune_copy)
    original: dict[str, int] | None = None
    steps = config.iterative_steps
    for step in range(1, steps + 1):
        torch.manual_seed(ctx.seed + step)
        step_ratio = ratio * step / steps
        if entry.needs_gradients and step > 1:
            batches = calibration_batches(ctx, config.calibration_batches)
        result = prune_model(model, config, hints=hints, importance=entry, ratio=step_ratio, original=original,
                             batches=batches)
        original = original or {name: before for name, (before, _after) in result.widths.items()}
        ctx.note(_step_note(step, steps, step_ratio, result))
        if config.finetune is not None:
            model = _finetune(model, config, ctx, entry, step)
    if result.limited:
        ctx.note("pruned less than asked: " + "; ".join(f"{name}: {why}" for name, why in result.limited.items()))
    if result.skipped:
        reasons = "; ".join(f"{name}: {why}" for name, why in list(result.skipped.items())[:8])
        ctx.note(f"left unpruned: {reasons}" + (" ..." if len(result.skipped) > 8 else ""))
    params_after, macs_after = count_params(model)[0], count_macs(model, config.latency_size)
    size = f"{config.latency_size[0]}x{config.latency_size[1]}"
    ctx.note(f"params {params_before:,} -> {params_after:,} ({params_after / params_before:.3f}x); MACs at {size} LR "
             f"{_si(macs_before)} -> {_si(macs_after)} ({macs_after / max(macs_before, 1):.3f}x)")
    return model


def _finetune(model: nn.Module, config: PruneConfig, ctx: Any, entry: ImportanceEntry, step: int) -> nn.Module:
    last = step == config.iterative_steps
    if last and config.report_quality:
        ctx.note(f"quality right after pruning ({entry.name}): {_quality(ctx.evaluate(model))}")
    result = fit(
        model, config.finetune, ctx.data, ctx.scale, work_dir=ctx.work_dir / f"finetune_{step}",
        stage_name=f"{ctx.stage_name} fine-tune {step}/{config.iterative_steps}", registry=ctx.registry,
        device=ctx.device, seed=ctx.seed + step, progress=not ctx.quiet,
    )
    model = result.model
    if last and config.report_quality:
        ctx.note(f"quality after fine-tuning ({result.steps} steps x {config.iterative_steps}): "
                 f"{_quality(ctx.evaluate(model))}")
    return model
