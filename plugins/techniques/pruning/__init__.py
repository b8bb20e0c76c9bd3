"""Structured pruning plugin: the ``prune`` technique on torch-pruning's dependency graph.

Channels are removed for real (smaller tensors, faster engines), never masked. What is pruned comes
from the model's hints: by default each residual block's inner width (``residual_inner``, what the
released Light F2SRGAN did), or with ``prune_trunk: true`` every coupled group of channels, the trunk
width through all skips included; ``never_prune`` layers keep their output width. A conv feeding a
``PixelShuffle(r)`` loses its output channels ``r*r`` at a time (exact; or never, with
``pixel_shuffle: keep``), and F2SRGAN's FFC / Fourier units prune in their ``cat([real, imag])``
layout. Importance criteria (``random``, ``l1``, ``l2``, ``group_norm``, ``lamp``, ``taylor``,
``fpgm``) are registered through this plugin's own hook, ``srcompress_pruning_importances``
(:class:`PruningSpec`), exactly as a third party registers one.

Python API: :func:`prune_model` (one step, in place), :func:`search_ratio` (cost target -> ratio),
:func:`apply` (the stage: schedule, fine-tuning, report notes).
"""

from __future__ import annotations

import pluggy

from srcompress.entries import TechniqueEntry
from srcompress.hookspecs import hookimpl

from .config import DEFAULT_RATIO, PruneConfig
from .errors import PruningError
from .graph import ChannelGroup, PruningGraph, build_graph, shuffle_factor
from .importances import FilterMagnitudeImportance, GradientFilteredImportance, builtin_importances, group_view
from .prune import TRACE_SIZE, PruneResult, prune_model, resolve_importance, search_ratio
from .select import keep_count, matches, override_for, select_channels
from .spec import ImportanceEntry, PruningSpec, ensure_pruning_spec, get_importance, list_importances
from .stage import apply, calibration_batches, model_cost

__all__ = [
    "DEFAULT_RATIO",
    "TRACE_SIZE",
    "ChannelGroup",
    "FilterMagnitudeImportance",
    "GradientFilteredImportance",
    "ImportanceEntry",
    "PruneConfig",
    "PruneResult",
    "PruningError",
    "PruningGraph",
    "PruningSpec",
    "apply",
    "build_graph",
    "builtin_importances",
    "calibration_batches",
    "ensure_pruning_spec",
    "get_importance",
    "group_view",
    "keep_count",
    "list_importances",
    "matches",
    "model_cost",
    "override_for",
    "prune_model",
    "resolve_importance",
    "search_ratio",
    "select_channels",
    "shuffle_factor",
    "srcompress_addhooks",
    "srcompress_pruning_importances",
    "srcompress_techniques",
]


@hookimpl
def srcompress_addhooks(pluginmanager: pluggy.PluginManager) -> None:
    """Declare the importance-criteria extension point (:class:`PruningSpec`)."""
    ensure_pruning_spec(pluginmanager)


@hookimpl
def srcompress_pruning_importances() -> list[ImportanceEntry]:
    """The built-in criteria: random, l1, l2, group_norm, lamp, taylor, fpgm."""
    return builtin_importances()


@hookimpl
def srcompress_techniques() -> list[TechniqueEntry]:
    return [
        TechniqueEntry(
            name="prune", config_cls=PruneConfig, apply=apply,
            description="Structured channel pruning on torch-pruning's dependency graph (SR-aware groups, "
            "iterative schedule, fine-tuning)",
        ),
    ]
