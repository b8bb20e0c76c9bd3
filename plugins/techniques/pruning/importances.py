"""The built-in channel importance criteria, registered through the same hook as a third party's.

All follow torch-pruning's ``Importance`` contract (``group -> 1-D scores``, higher is kept) and are
torch-pruning's own estimators (``torch_pruning.importance``), configured as follows:

- ``random``: uniform random scores (``RandomImportance``): the baseline every criterion must beat.
- ``l1`` / ``l2``: L1 / L2 norm of the output filters that produce each channel (every conv or
  linear layer of the group whose output channels are removed), normalised by the group mean; the
  classic filter-magnitude criterion (Li et al., 2017).
- ``group_norm``: L2 norm over every coupled parameter of the channel (output filters, the next
  layers' input slices, norms), averaged over the group (torch-pruning's ``GroupMagnitudeImportance``,
  the DepGraph criterion; Fang et al., 2023).
- ``lamp``: layer-adaptive magnitude (Lee et al., 2021), torch-pruning's ``LAMPImportance``: scores
  are comparable across layers, which matters for ``scope: global``.
- ``taylor``: first-order Taylor ``|w * dL/dw|`` summed over the group (Molchanov et al., 2019),
  torch-pruning's ``GroupTaylorImportance``; needs gradients (the pruner back-propagates an L1 loss
  over a few training batches first).
- ``fpgm``: distance to the other filters (geometric median; He et al., 2019), ``FPGMImportance``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from .spec import ImportanceEntry

__all__ = ["FilterMagnitudeImportance", "GradientFilteredImportance", "builtin_importances", "group_view"]

_OUT_FNS = (tp.prune_conv_out_channels, tp.prune_linear_out_channels)


def group_view(group: Any, keep: Callable[[Any], bool]) -> Any:
    """A :class:`torch_pruning.dependency.Group` holding only the items ``keep(item)`` accepts.

    The items themselves (with their ``root_idxs``) are shared, so estimators score the view in the
    original group's root index space.
    """
    view = tp.dependency.Group()
    view._group = [item for item in group.items if keep(item)]
    view._DG = group._DG
    return view


def _is_output_filter(item: Any) -> bool:
    layer = item.dep.layer
    if item.dep.pruning_fn not in _OUT_FNS:
        return False
    return not (isinstance(layer, nn.modules.conv._ConvNd) and layer.groups > 1 and layer.groups == layer.out_channels)


class FilterMagnitudeImportance(tp.importance.GroupMagnitudeImportance):
    """Lp norm of the output filters producing each channel, summed over the group's producers."""

    def __init__(self, p: int) -> None:
        super().__init__(p=p, group_reduction="sum", normalizer="mean")

    def __call__(self, group: Any) -> torch.Tensor | None:
        return super().__call__(group_view(group, _is_output_filter))


class GradientFilteredImportance:
    """Wraps a gradient-based estimator so layers without gradients (frozen ones) are skipped."""

    def __init__(self, inner: Callable[[Any], torch.Tensor | None]) -> None:
        self.inner = inner

    def __call__(self, group: Any) -> torch.Tensor | None:
        def has_grad(item: Any) -> bool:
            weight = getattr(item.dep.layer, "weight", None)
            return not isinstance(weight, torch.Tensor) or weight.grad is not None

        return self.inner(group_view(group, has_grad))


def builtin_importances() -> list[ImportanceEntry]:
    """The criteria listed in the module docstring."""
    return [
        ImportanceEntry(name="random", build=lambda _c: tp.importance.RandomImportance(),
                        description="uniform random scores (baseline)"),
        ImportanceEntry(name="l1", build=lambda _c: FilterMagnitudeImportance(p=1),
                        description="L1 norm of the output filters producing each channel"),
        ImportanceEntry(name="l2", build=lambda _c: FilterMagnitudeImportance(p=2),
                        description="L2 norm of the output filters producing each channel"),
        ImportanceEntry(name="group_norm",
                        build=lambda _c: tp.importance.GroupMagnitudeImportance(p=2, group_reduction="mean", normalizer="mean"),
                        description="L2 norm over every coupled parameter of the channel (DepGraph)"),
        ImportanceEntry(name="lamp", build=lambda _c: tp.importance.LAMPImportance(p=2),
                        description="layer-adaptive magnitude (LAMP), comparable across layers"),
        ImportanceEntry(name="taylor", needs_gradients=True,
                        build=lambda _c: GradientFilteredImportance(tp.importance.GroupTaylorImportance()),
                        description="first-order Taylor |w * dL/dw| over the group (needs training batches)"),
        ImportanceEntry(name="fpgm", build=lambda _c: tp.importance.FPGMImportance(p=2),
                        description="filter distance to the geometric median (FPGM)"),
    ]
