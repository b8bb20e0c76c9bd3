"""One pruning step: trace, find the channel groups, score, select, remove, check.

:func:`prune_model` removes channels in place (smaller tensors, not masks) with torch-pruning's
dependency graph; :func:`search_ratio` turns a cost target into a channel ratio by bisection on
copies of the model.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
import torch_pruning as tp
from attrs import define, field
from torch import nn

from srcompress.entries import ModelHints
from srcompress.measure import count_params

from .config import PruneConfig
from .errors import PruningError
from .graph import ChannelGroup, PruningGraph, build_graph
from .select import matches, select_channels
from .spec import ImportanceEntry, get_importance

__all__ = ["TRACE_SIZE", "PruneResult", "prune_model", "resolve_importance", "search_ratio"]

TRACE_SIZE = 16
"""Side (LR pixels) of the random image the graph is traced and the pruned model checked with."""

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


@define(kw_only=True)
class PruneResult:
    """What one pruning step did.

    ``widths``: group name -> (channels before, after), counted after any PixelShuffle;
    ``channels``: group name -> (root layer, its removed output channel indices); ``skipped``: group
    name -> why it was left alone; ``limited``: group name -> why it lost fewer channels than asked;
    ``params``: (before, after).
    """

    widths: dict[str, tuple[int, int]] = field(factory=dict)
    channels: dict[str, tuple[str, list[int]]] = field(factory=dict)
    skipped: dict[str, str] = field(factory=dict)
    limited: dict[str, str] = field(factory=dict)
    params: tuple[int, int] = (0, 0)

    @property
    def removed(self) -> int:
        """Channels removed over all groups."""
        return sum(before - after for before, after in self.widths.values())


def resolve_importance(importance: str | ImportanceEntry | Callable[[Any], Any], registry: Any = None) -> ImportanceEntry:
    """A registered name, an :class:`ImportanceEntry`, or a bare ``group -> scores`` callable."""
    if isinstance(importance, ImportanceEntry):
        return importance
    if isinstance(importance, str):
        if registry is None:
            from srcompress.registry import default_registry

            registry = default_registry()
        return get_importance(registry, importance)
    if callable(importance):
        return ImportanceEntry(name="custom", build=lambda _config: importance)
    raise TypeError(f"importance must be a name, an ImportanceEntry or a callable (got {type(importance).__name__})")


# ------------------------------------------------------------------------------------ the step


def prune_model(
    model: nn.Module,
    config: PruneConfig,
    *,
    hints: ModelHints | None = None,
    importance: str | ImportanceEntry | Callable[[Any], Any] | None = None,
    registry: Any = None,
    ratio: float | None = None,
    original: Mapping[str, int] | None = None,
    batches: Batches | None = None,
    example: torch.Tensor | None = None,
) -> PruneResult:
    """Remove channels from ``model`` in place, as ``config`` says; returns what changed.

    :param hints: the model's structural hints (``never_prune``, ``pixel_shuffle_convs``,
        ``residual_inner``); a user's own module has none (then ``prune_trunk`` must be true).
    :param importance: overrides ``config.importance`` (a name, an entry, or a callable).
    :param ratio: cumulative channel ratio of this step (default ``config.channel_ratio``).
    :param original: group name -> width before the first of several iterative steps, so ratios
        stay relative to the unpruned model (default: the current widths).
    :param batches: (lr, hr) training batches, float32 NCHW in [0, 1]; needed by gradient criteria.
    :param example: LR input for tracing and the final check (default: a seeded random (1, 3,
        TRACE_SIZE, TRACE_SIZE) image in [0, 1]).
    """
    hints = hints or ModelHints()
    entry = resolve_importance(importance if importance is not None else config.importance, registry)
    ratio = config.channel_ratio if ratio is None else ratio
    example = _example(model) if example is None else example
    taps = () if config.prune_trunk else tuple(hints.residual_inner)
    if not config.prune_trunk and not taps:
        raise PruningError("the model has no residual_inner hints (a user's own module?): set prune_trunk: true to prune "
                           "every prunable channel group, or prune a registered model")
    graph = build_graph(model, example, taps)
    found = graph.all_groups() if config.prune_trunk else graph.groups_of_outputs(taps)
    result = PruneResult(params=(count_params(model)[0], 0))
    groups = _prunable(graph, list(_unique(found, result)), config, hints, result)
    original = dict(original or {})
    for group in groups:
        original.setdefault(group.name, group.size)
    scores = _scores(model, graph, groups, entry, config, batches, result)
    groups = [g for g in groups if g in scores]
    chosen = select_channels(
        groups, scores, ratio=ratio, overrides=config.overrides, scope=config.scope, original=original,
        round_to=config.round_to, min_channels=config.min_channels,
    )
    for group in groups:
        indices = chosen.get(group, [])
        removed = _remove(graph, group, indices, scores[group]) if indices else 0
        if removed < len(indices):
            result.limited[group.name] = f"kept {len(indices) - removed} more channels: removing them would empty a coupled layer"
            indices = sorted(indices, key=lambda i: float(scores[group][i]))[:removed]
        if removed:
            result.channels[group.name] = (graph.name_of(group.root) or group.name, group.root_indices(sorted(indices)))
        result.widths[group.name] = (group.size, group.size - removed)
    if result.channels:
        _check_forward(model, example, graph.output_shape)
    result.params = (result.params[0], count_params(model)[0])
    return result


def _example(model: nn.Module) -> torch.Tensor:
    param = next(iter(model.parameters()), None)
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, TRACE_SIZE, TRACE_SIZE, generator=generator)
    return image if param is None else image.to(device=param.device, dtype=param.dtype)


def _unique(found: Iterable[ChannelGroup | tuple[str, str]], result: PruneResult) -> Iterable[ChannelGroup]:
    """Each group once; the unprunable ones go to ``result.skipped`` with their reason."""
    seen: set[frozenset[str]] = set()
    for group in found:
        if isinstance(group, tuple):
            result.skipped[group[0]] = group[1]
            continue
        key = frozenset(group.layers)
        if key not in seen:
            seen.add(key)
            yield group


# ---------------------------------------------------------------------------- which groups


def _prunable(graph: PruningGraph, groups: list[ChannelGroup], config: PruneConfig, hints: ModelHints,
              result: PruneResult) -> list[ChannelGroup]:
    """Drop the groups that must keep their width (recording why); raise on layers we cannot prune."""
    never = tuple(hints.never_prune)
    shuffle_convs = tuple(hints.pixel_shuffle_convs) if config.pixel_shuffle == "keep" else ()
    kept = []
    for group in groups:
        reason = _blocked(group, never, shuffle_convs, config)
        if reason is not None:
            result.skipped[group.name] = reason
            continue
        _check_supported(graph, group)
        kept.append(group)
    return kept


def _blocked(group: ChannelGroup, never: tuple[str, ...], shuffle_convs: tuple[str, ...], config: PruneConfig) -> str | None:
    if any(item.dep.target.type == tp.ops.OPTYPE.OUTPUT for item in group.group.items):
        return "would change the channels of the model's output"
    for layer in group.touched:
        hit = next((p for p in config.ignore if matches(layer, p)), None)
        if hit is not None:
            return f"touches '{layer}' (ignore: {hit})"
    for layer in group.layers:
        if any(layer == name or layer.startswith(name + ".") for name in never):
            return f"would change the output width of '{layer}' (the model's never_prune hint)"
        if any(layer == name for name in shuffle_convs):
            return f"would change '{layer}', which feeds a PixelShuffle (pixel_shuffle: keep)"
    if config.pixel_shuffle == "keep" and group.blocks is not None:
        return "passes through a PixelShuffle (pixel_shuffle: keep)"
    return None


def _check_supported(graph: PruningGraph, group: ChannelGroup) -> None:
    for item in group.group.items:
        target = item.dep.target
        module = target.module
        name = graph.describe(item)
        if isinstance(module, nn.Parameter):
            dim = target.pruning_dim % module.dim() if module.dim() else 0
            if any(size != 1 for d, size in enumerate(module.shape) if d != dim):
                owner = name.rpartition(".")[0] or name
                raise PruningError(
                    f"layer '{owner}' has a parameter '{name}' {tuple(module.shape)} that torch-pruning cannot prune "
                    f"consistently (not inside a conv/linear/norm layer); add `ignore: [{owner}]` to the prune stage"
                )
        elif isinstance(module, nn.modules.conv._ConvNd) and 1 < module.groups < module.in_channels:
            raise PruningError(
                f"layer '{name}' is a grouped convolution (groups={module.groups}), which this pruner does not "
                f"support; add `ignore: [{name}]` to the prune stage"
            )
        elif isinstance(module, (nn.MultiheadAttention, nn.LSTM, nn.GRU, nn.RNN)):
            raise PruningError(
                f"layer '{name}' ({type(module).__name__}) is not supported by this pruner; add `ignore: [{name}]` "
                "to the prune stage"
            )


# ---------------------------------------------------------------------------------- scores


def _scores(model: nn.Module, graph: PruningGraph, groups: list[ChannelGroup], entry: ImportanceEntry,
            config: PruneConfig, batches: Batches | None, result: PruneResult) -> dict[ChannelGroup, torch.Tensor]:
    criterion = entry.build(config)
    if entry.needs_gradients:
        if batches is None:
            raise PruningError(f"importance '{entry.name}' needs gradients: pass training batches (a prune stage "
                               "takes calibration_batches from the recipe's data.train)")
        _accumulate_gradients(model, batches)
    scores: dict[ChannelGroup, torch.Tensor] = {}
    try:
        for group in groups:
            value = criterion(group.group)
            if value is None:
                result.skipped[group.name] = f"importance '{entry.name}' cannot score it (no weighted layer)"
                continue
            value = torch.as_tensor(value).detach().flatten().float().cpu()
            width = graph.dg.get_out_channels(group.root)
            if value.numel() != width:
                raise PruningError(
                    f"importance '{entry.name}' returned {value.numel()} scores for group '{group.name}' of "
                    f"{width} channels; an Importance must return one score per output channel of the group's root"
                )
            value = torch.nan_to_num(value, nan=0.0, posinf=torch.finfo(value.dtype).max, neginf=torch.finfo(value.dtype).min)
            scores[group] = group.reduce_scores(value)
    finally:
        if entry.needs_gradients:
            model.zero_grad(set_to_none=True)
    return scores


def _accumulate_gradients(model: nn.Module, batches: Batches) -> None:
    """Sum the gradients of an L1 loss over ``batches`` into the weights' ``.grad``."""
    param = next(iter(model.parameters()))
    model.zero_grad(set_to_none=True)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            for lr, hr in batches:
                F.l1_loss(model(lr.to(param.device)), hr.to(param.device)).backward()
    finally:
        model.train(was_training)


# --------------------------------------------------------------------------------- removal


def _remove(graph: PruningGraph, group: ChannelGroup, indices: list[int], scores: torch.Tensor) -> int:
    """Remove the selected channels; if that would empty a coupled layer (an FFC needs both halves
    of its input), remove only as many of the lowest-scored as it allows. Returns how many went."""
    order = sorted(indices, key=lambda i: float(scores[i]))

    def pruning(count: int) -> Any:
        return graph.dg.get_pruning_group(group.root, group.root_fn, group.root_indices(order[:count]))

    count = len(order)
    if not graph.dg.check_pruning_group(pruning(count)):
        low, high = 0, count  # low passes, high fails
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if graph.dg.check_pruning_group(pruning(middle)) else (low, middle)
        count = low
    if count:
        pruning(count).prune()
    return count


def _check_forward(model: nn.Module, example: torch.Tensor, expected: tuple[int, ...]) -> None:
    """Run the pruned model; on failure name the innermost layer that raised and suggest ``ignore``."""
    names = {module: name for name, module in model.named_modules()}
    stack: list[str] = []
    failed: list[str] = []

    def enter(module: nn.Module, _inputs: Any) -> None:
        stack.append(names.get(module, ""))

    def leave(module: nn.Module, _inputs: Any, _output: Any) -> None:
        if stack:
            stack.pop()

    handles = [m.register_forward_pre_hook(enter) for m in names] + [m.register_forward_hook(leave) for m in names]
    try:
        with torch.no_grad():
            output = model(example)
    except Exception as exc:  # any failure of the pruned model is reported with the layer it came from
        culprit = next((name for name in reversed(stack) if name), "")
        if not culprit:
            raise PruningError(f"the pruned model fails ({type(exc).__name__}: {str(exc).splitlines()[0]}); prune fewer "
                               "groups (ignore: [...]) or set prune_trunk: false") from exc
        raise PruningError(
            f"pruning broke layer '{culprit}' ({type(exc).__name__}: {str(exc).splitlines()[0]}): torch-pruning cannot "
            f"follow its channels; add `ignore: [{culprit}]` to the prune stage"
        ) from exc
    finally:
        for handle in handles:
            handle.remove()
    if tuple(output.shape) != tuple(expected):
        raise PruningError(f"pruning changed the model's output shape from {tuple(expected)} to {tuple(output.shape)}; "
                           "a layer torch-pruning cannot follow is pruned: name it in ignore: [...]")


# ------------------------------------------------------------------------------ cost targets


def search_ratio(
    model: nn.Module,
    config: PruneConfig,
    cost: Callable[[nn.Module], float],
    fraction: float,
    *,
    prune: Callable[[nn.Module, float], Any] | None = None,
    iterations: int = 10,
) -> tuple[float, float]:
    """The smallest channel ratio whose pruned copy costs at most ``fraction`` of ``model``'s cost.

    ``cost(model)`` measures (parameters, MACs, latency, ...); ``prune(copy, ratio)`` prunes a
    deep copy (default: :func:`prune_model` with ``config``). Bisection over [0, 0.99], assuming the
    cost falls as the ratio grows. Returns ``(ratio, achieved fraction)``.
    """
    prune = prune or (lambda m, r: prune_model(m, config, ratio=r))
    base = cost(model)
    if base <= 0:
        raise PruningError("the model's cost is zero; a cost target needs a model with parameters and MACs")

    def fraction_at(ratio: float) -> float:
        candidate = copy.deepcopy(model)
        prune(candidate, ratio)
        return cost(candidate) / base

    low, high = 0.0, 0.99
    reached = fraction_at(high)
    if reached > fraction:
        raise PruningError(f"cannot reach {fraction:.3g} of the cost: pruning 99% of the prunable channels keeps "
                           f"{reached:.3g}; allow more groups (prune_trunk: true) or raise the target")
    for _ in range(iterations):
        middle = (low + high) / 2
        achieved = fraction_at(middle)
        if achieved <= fraction:
            high, reached = middle, achieved
        else:
            low = middle
        if math.isclose(low, high, abs_tol=1e-3):
            break
    return high, reached
