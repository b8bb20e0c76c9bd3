"""The pruning plugin's own extension point: importance criteria from any plugin.

A criterion follows torch-pruning's ``Importance`` contract: a callable taking a dependency group
(``torch_pruning.dependency.Group``: the coupled layers of one prunable channel dimension, all
channels) and returning a 1-D tensor with one score per channel of the group's root (higher means
keep), or None when the group holds nothing it can score. A plugin registers it with::

    from srcompress.hookspecs import hookimpl
    from srcompress.plugins.techniques.pruning import ImportanceEntry

    @hookimpl
    def srcompress_pruning_importances():
        return [ImportanceEntry(name="my_crit", build=lambda config: MyImportance())]

and a recipe names it: ``{type: prune, importance: my_crit, ratio: 0.5}``. The hook spec is added to
the plugin manager through the historic ``srcompress_addhooks`` hook, so a plugin registered before
or after this one is seen either way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import pluggy
from attrs import define, field

from srcompress.errors import PluginError, UnknownNameError, suggest
from srcompress.hookspecs import hookspec

__all__ = [
    "ImportanceEntry",
    "PruningSpec",
    "ensure_pruning_spec",
    "get_importance",
    "list_importances",
]

HOOK_NAME = "srcompress_pruning_importances"


def _nonempty_name(_inst: object, attribute: attrs.Attribute, value: str) -> None:
    if not isinstance(value, str) or not value or not value.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"{attribute.name} must be a non-empty name of letters, digits, '_' or '-' (got {value!r})")


@define(frozen=True, kw_only=True)
class ImportanceEntry:
    """A channel importance criterion usable as ``importance: NAME`` in a prune stage.

    ``build(config)`` returns the criterion for one pruning step: a callable ``group -> scores``
    (a 1-D tensor, one score per channel of the group's root; higher is kept) or None for a group
    it cannot score. ``config`` is the stage's :class:`PruneConfig`. ``needs_gradients``: the
    criterion reads ``.grad`` of the weights (Taylor-style); the pruner then runs a few training
    batches through the model and back-propagates an L1 loss before scoring.
    """

    name: str = field(validator=_nonempty_name)
    build: Callable[[Any], Callable[[Any], Any]]
    needs_gradients: bool = False
    description: str = ""
    plugin: str = ""


class PruningSpec:
    @hookspec
    def srcompress_pruning_importances(self) -> list[ImportanceEntry]:
        """Return channel importance criteria for the ``prune`` technique.

        :return: a list of :class:`ImportanceEntry`. All plugins' lists are collected; a name
            returned by two plugins is an error naming both.
        """
        raise NotImplementedError


def ensure_pruning_spec(pluginmanager: pluggy.PluginManager) -> None:
    """Add :class:`PruningSpec` to ``pluginmanager`` unless it is there already (idempotent)."""
    caller = getattr(pluginmanager.hook, HOOK_NAME, None)
    if caller is None or caller.spec is None:
        pluginmanager.add_hookspecs(PruningSpec)


def _table(registry: Any) -> dict[str, ImportanceEntry]:
    pm = registry.pm
    ensure_pruning_spec(pm)
    table: dict[str, ImportanceEntry] = {}
    for impl in getattr(pm.hook, HOOK_NAME).get_hookimpls():  # registration order (pluggy calls them reversed)
        try:
            results = impl.function() or []
        except Exception as exc:  # third-party code
            raise PluginError(f'plugin "{impl.plugin_name}" failed in {HOOK_NAME}: {type(exc).__name__}: {exc}') from exc
        for entry in results:
            if not isinstance(entry, ImportanceEntry):
                raise PluginError(
                    f'plugin "{impl.plugin_name}" returned {type(entry).__name__} from {HOOK_NAME}; expected ImportanceEntry'
                )
            if entry.name in table:
                raise PluginError(
                    f"pruning importance '{entry.name}' is registered by two plugins: \"{table[entry.name].plugin}\" "
                    f'and "{impl.plugin_name}"; disable one with --disable-plugin'
                )
            table[entry.name] = attrs.evolve(entry, plugin=impl.plugin_name)
    return table


def list_importances(registry: Any) -> list[ImportanceEntry]:
    """Every importance criterion registered on ``registry`` (a :class:`srcompress.registry.Registry`), by name."""
    return sorted(_table(registry).values(), key=lambda entry: entry.name)


def get_importance(registry: Any, name: str) -> ImportanceEntry:
    """The criterion registered as ``name``; unknown names list the registered ones."""
    table = _table(registry)
    if name not in table:
        raise UnknownNameError(suggest(name, table, "pruning importance"))
    return table[name]
