"""Which channels to remove: per-group or global ranking, per-pattern overrides, round_to, floors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase

import torch

from .graph import ChannelGroup

__all__ = ["keep_count", "matches", "override_for", "select_channels"]


def matches(name: str, pattern: str) -> bool:
    """fnmatch on a qualified module name; a pattern also covers the submodules of what it names."""
    return fnmatchcase(name, pattern) or fnmatchcase(name, pattern + ".*")


def override_for(group: ChannelGroup, overrides: Mapping[str, float]) -> float | None:
    """The ratio of the first pattern matching the group's name, else None.

    A group's name is the first layer producing its channels (or the residual_inner hint naming
    it), as the stage report lists them; coupled layers (the trunk touches every block) do not match,
    so ``body.3.*`` means the groups that start in block 3, not the trunk.
    """
    for pattern, ratio in overrides.items():
        if matches(group.name, pattern):
            return float(ratio)
    return None


def _floor(size: int, round_to: int | None, min_channels: int) -> int:
    return min(size, max(min_channels, round_to or 1))


def _rounded(keep: int, size: int, round_to: int | None, min_channels: int) -> int:
    if round_to and round_to > 1:
        keep = int(round(keep / round_to)) * round_to
    return min(size, max(keep, _floor(size, round_to, min_channels)))


def keep_count(original: int, ratio: float, current: int, *, round_to: int | None = None, min_channels: int = 1) -> int:
    """Channels a group keeps: ``original * (1 - ratio)`` rounded to the nearest channel (and to a
    multiple of ``round_to``), at least ``min_channels``, never more than it has now."""
    keep = int(round(original * (1.0 - ratio)))
    return min(current, _rounded(keep, original, round_to, min_channels))


def _lowest(scores: torch.Tensor, count: int) -> list[int]:
    if count <= 0:
        return []
    order = torch.argsort(scores, stable=True)
    return sorted(int(i) for i in order[:count])


def select_channels(
    groups: Sequence[ChannelGroup],
    scores: Mapping[ChannelGroup, torch.Tensor],
    *,
    ratio: float,
    overrides: Mapping[str, float],
    scope: str,
    original: Mapping[str, int],
    round_to: int | None = None,
    min_channels: int = 1,
) -> dict[ChannelGroup, list[int]]:
    """Root-space channel indices to remove from each group (lowest scores first).

    ``ratio`` is the cumulative fraction of each group's ``original`` width (by group name) to be
    gone after this step. ``per_layer``: every group on its own; ``global``: the groups without an
    override share one ranking of their scores, and together lose ``ratio`` of their channels.
    """
    chosen: dict[ChannelGroup, list[int]] = {}
    pooled: list[ChannelGroup] = []
    for group in groups:
        own = override_for(group, overrides)
        if own is None and scope == "global":
            pooled.append(group)
            continue
        target = ratio if own is None else own
        keep = keep_count(original.get(group.name, group.size), target, group.size, round_to=round_to, min_channels=min_channels)
        chosen[group] = _lowest(scores[group], group.size - keep)
    if pooled:
        chosen.update(_select_global(pooled, scores, ratio, original, round_to, min_channels))
    return chosen


def _select_global(
    groups: Sequence[ChannelGroup], scores: Mapping[ChannelGroup, torch.Tensor], ratio: float,
    original: Mapping[str, int], round_to: int | None, min_channels: int,
) -> dict[ChannelGroup, list[int]]:
    total_original = sum(original.get(g.name, g.size) for g in groups)
    to_remove = sum(g.size for g in groups) - int(round(total_original * (1.0 - ratio)))
    counts = {g: 0 for g in groups}
    if to_remove > 0:
        pool = torch.cat([scores[g] for g in groups])
        owner = [g for g in groups for _ in range(g.size)]
        for index in torch.argsort(pool, stable=True).tolist():
            group = owner[index]
            if counts[group] < group.size - _floor(group.size, round_to, min_channels):
                counts[group] += 1
                to_remove -= 1
                if to_remove == 0:
                    break
    chosen = {}
    for group in groups:
        keep = _rounded(group.size - counts[group], group.size, round_to, min_channels)
        chosen[group] = _lowest(scores[group], group.size - keep)
    return chosen
