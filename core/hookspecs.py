"""Hook specifications: the contract between the srcompress core and its plugins.

A plugin is a module (or object) with functions decorated by :data:`hookimpl` and named like the
specs below. It is found through the entry-point group ``srcompress.plugins``::

    [project.entry-points."srcompress.plugins"]
    my_plugin = "my_package.plugin_module"

Registration hooks return lists of entries (:mod:`srcompress.entries`); every plugin's list is
collected (no ``firstresult``), and the core rejects a name registered twice, naming both plugins.
Observer hooks return nothing; they let a plugin follow a run (logging, tracking) without touching
the core.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from srcompress.entries import BackendEntry, LossEntry, MetricEntry, ModelEntry, TechniqueEntry

__all__ = [
    "BackendSpec",
    "MeasureSpec",
    "ModelSpec",
    "OptimizerSpec",
    "RunObserverSpec",
    "SetupSpec",
    "hookimpl",
    "hookspec",
]

PROJECT = "srcompress"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# -------------------------------------------------------------------------------------------------
# Set-up
# -------------------------------------------------------------------------------------------------


class SetupSpec:
    @hookspec(historic=True)
    def srcompress_addhooks(self, pluginmanager: pluggy.PluginManager) -> None:
        """Add new hook specifications (``pluginmanager.add_hookspecs(...)``).

        Historic: a plugin registered later still receives this call. A technique that wants its
        own extension point (e.g. pruning importance criteria) declares it here.

        :param pluginmanager: the pluggy plugin manager of this session.
        """


# -------------------------------------------------------------------------------------------------
# ModelSpec: SR architectures, their published weights and structural hints
# -------------------------------------------------------------------------------------------------


class ModelSpec:
    @hookspec
    def srcompress_models(self) -> list[ModelEntry]:
        """Return the SR architectures this plugin provides.

        Each :class:`~srcompress.entries.ModelEntry` names the architecture, its scales, its option
        class, its published weights and its structural hints (layers never to prune, feature taps
        for distillation, layers to keep in float).

        :return: a list of model entries (may be empty). All plugins' lists are collected; a name
            returned by two plugins is an error naming both.
        """
        raise NotImplementedError


# -------------------------------------------------------------------------------------------------
# OptimizerSpec: compression techniques (pruning, distillation, quantization, ...)
# -------------------------------------------------------------------------------------------------


class OptimizerSpec:
    @hookspec
    def srcompress_techniques(self) -> list[TechniqueEntry]:
        """Return the compression techniques this plugin provides.

        Each :class:`~srcompress.entries.TechniqueEntry` has a typed config class (structured from a
        recipe stage ``{type: NAME, ...}``) and an ``apply(model, config, ctx)`` function.

        :return: a list of technique entries. All plugins' lists are collected; duplicate names are
            an error naming both plugins.
        """
        raise NotImplementedError

    @hookspec
    def srcompress_losses(self) -> list[LossEntry]:
        """Return training loss terms (pixel, perceptual, adversarial, distillation, ...).

        Techniques and the ``train`` stage name them in ``losses: [{kind: NAME, weight: W}]``.

        :return: a list of loss entries; duplicates are an error naming both plugins.
        """
        raise NotImplementedError


# -------------------------------------------------------------------------------------------------
# BackendSpec: deployment targets
# -------------------------------------------------------------------------------------------------


class BackendSpec:
    @hookspec
    def srcompress_backends(self) -> list[BackendEntry]:
        """Return the deployment backends this plugin provides.

        Each :class:`~srcompress.entries.BackendEntry` compiles an ``nn.Module`` for an example
        input into a :class:`~srcompress.entries.Deployed` (callable, savable, with metadata), and
        reloads saved artifacts.

        :return: a list of backend entries; duplicates are an error naming both plugins.
        """
        raise NotImplementedError


# -------------------------------------------------------------------------------------------------
# Measurement: quality metrics
# -------------------------------------------------------------------------------------------------


class MeasureSpec:
    @hookspec
    def srcompress_metrics(self) -> list[MetricEntry]:
        """Return image-quality metrics (full-reference or no-reference).

        :return: a list of metric entries; duplicates are an error naming both plugins.
        """
        raise NotImplementedError


# -------------------------------------------------------------------------------------------------
# Run observers: follow a run without touching the core
# -------------------------------------------------------------------------------------------------


class RunObserverSpec:
    @hookspec
    def srcompress_run_start(self, recipe: Any, run_dir: Any) -> None:
        """Called once a run has its recipe resolved and its run directory open.

        :param recipe: the structured :class:`srcompress.recipe.Recipe`.
        :param run_dir: the :class:`srcompress.rundir.RunDir`.
        """

    @hookspec
    def srcompress_stage_start(self, index: int, stage: Any, resumed: bool) -> None:
        """Called before a stage runs (or is restored from the run directory, ``resumed=True``).

        :param index: 0-based stage index in the recipe.
        :param stage: the stage's config instance (its class is the technique's ``config_cls``).
        """

    @hookspec
    def srcompress_stage_end(self, index: int, stage: Any, metrics: dict[str, Any]) -> None:
        """Called after a stage's model is evaluated and checkpointed.

        :param metrics: the stage's measurements (quality per dataset, params, MACs, ...).
        """

    @hookspec
    def srcompress_run_end(self, run_dir: Any, report: dict[str, Any] | None, error: BaseException | None) -> None:
        """Called when a run finishes (``error`` is None) or fails (``error`` is the exception)."""


ALL_SPECS = (SetupSpec, ModelSpec, OptimizerSpec, BackendSpec, MeasureSpec, RunObserverSpec)
