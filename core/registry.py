"""The plugin manager and the typed facade over ``pm.hook``.

Plugins come from the entry-point group ``srcompress.plugins`` (the built-in ones too, through
srcompress's own pyproject). Environment:

- ``SRCOMPRESS_DISABLE_PLUGIN_AUTOLOAD=1``: load no entry points except those named in
  ``SRCOMPRESS_PLUGINS`` (comma-separated entry-point names).
- ``SRCOMPRESS_DISABLE_PLUGINS=a,b``: block these entry-point names (the CLI's ``--disable-plugin``).
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import pluggy

from srcompress.entries import BackendEntry, LossEntry, MetricEntry, ModelEntry, TechniqueEntry
from srcompress.errors import PluginError, UnknownNameError, suggest
from srcompress.hookspecs import ALL_SPECS, PROJECT

__all__ = [
    "ENTRY_POINT_GROUP",
    "Registry",
    "default_registry",
    "get_backend",
    "get_loss",
    "get_metric",
    "get_model",
    "get_technique",
    "list_backends",
    "list_losses",
    "list_metrics",
    "list_models",
    "list_techniques",
    "reset_default_registry",
]

ENTRY_POINT_GROUP = "srcompress.plugins"
_E = TypeVar("_E")

# hook name -> (entry class, what a user calls it)
_KINDS: dict[str, tuple[type, str]] = {
    "srcompress_models": (ModelEntry, "model"),
    "srcompress_techniques": (TechniqueEntry, "technique"),
    "srcompress_backends": (BackendEntry, "backend"),
    "srcompress_losses": (LossEntry, "loss"),
    "srcompress_metrics": (MetricEntry, "metric"),
}


def _env_list(name: str) -> list[str]:
    return [part.strip() for part in os.environ.get(name, "").split(",") if part.strip()]


class Registry:
    """A pluggy plugin manager plus the name -> entry tables collected from it.

    :param autoload: load the entry points of group ``srcompress.plugins``; ``None`` reads
        ``SRCOMPRESS_DISABLE_PLUGIN_AUTOLOAD``.
    :param disabled: entry-point names to block, added to ``SRCOMPRESS_DISABLE_PLUGINS``.
    """

    def __init__(self, *, autoload: bool | None = None, disabled: Iterable[str] = ()) -> None:
        self.pm = pluggy.PluginManager(PROJECT)
        for spec in ALL_SPECS:
            self.pm.add_hookspecs(spec)
        self.disabled = set(disabled) | set(_env_list("SRCOMPRESS_DISABLE_PLUGINS"))
        for name in self.disabled:
            self.pm.set_blocked(name)
        # historic: every plugin registered from now on receives this call (pytest_addhooks' contract)
        self.pm.hook.srcompress_addhooks.call_historic(kwargs={"pluginmanager": self.pm})
        self._tables: dict[str, dict[str, Any]] | None = None
        if autoload is None:
            autoload = os.environ.get("SRCOMPRESS_DISABLE_PLUGIN_AUTOLOAD", "") in ("", "0")
        self.load_entry_points(only=None if autoload else set(_env_list("SRCOMPRESS_PLUGINS")))

    # ---------------------------------------------------------------- loading
    def load_entry_points(self, only: set[str] | None = None) -> None:
        """Import and register every entry point of the group (or those named in ``only``)."""
        seen: dict[str, str] = {}
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist is not None else "?"
            if ep.name in seen and seen[ep.name] != ep.value:
                raise PluginError(
                    f'plugin name collision: "{ep.name}" is declared by {seen[ep.name]} and by {ep.value} '
                    f"(distribution {dist}); uninstall one, or block it with --disable-plugin"
                )
            seen[ep.name] = ep.value
            if (only is not None and ep.name not in only) or ep.name in self.disabled:
                continue
            if self.pm.get_plugin(ep.name) is not None:
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # any import failure of third-party code
                raise PluginError(
                    f'Error importing plugin "{ep.name}" ({ep.value}, distribution {dist}): '
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            self.register(plugin, ep.name)

    def register(self, plugin: object, name: str) -> None:
        """Register a plugin object (module or instance) under ``name``; validates its hooks."""
        try:
            self.pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            detail = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
            raise PluginError(f'plugin "{name}" is invalid: {detail}') from exc
        except ValueError as exc:  # pluggy: name or object already registered
            raise PluginError(f'plugin "{name}" cannot be registered: {exc}') from exc
        self._tables = None

    def unregister(self, name: str) -> None:
        self.pm.unregister(name=name)
        self._tables = None

    def plugin_names(self) -> list[str]:
        return sorted(name for name, plugin in self.pm.list_name_plugin() if plugin is not None)

    # ---------------------------------------------------------------- tables
    def _collect(self, hook_name: str) -> dict[str, Any]:
        entry_cls, kind = _KINDS[hook_name]
        table: dict[str, Any] = {}
        caller = getattr(self.pm.hook, hook_name)
        for impl in reversed(caller.get_hookimpls()):  # registration order
            try:
                results = impl.function() or []
            except Exception as exc:
                raise PluginError(
                    f'plugin "{impl.plugin_name}" failed in {hook_name}: {type(exc).__name__}: {exc}'
                ) from exc
            for entry in results:
                if not isinstance(entry, entry_cls):
                    raise PluginError(
                        f'plugin "{impl.plugin_name}" returned {type(entry).__name__} from {hook_name}; '
                        f"expected {entry_cls.__name__}"
                    )
                if entry.name in table:
                    other = table[entry.name].plugin
                    raise PluginError(
                        f"{kind} '{entry.name}' is registered by two plugins: \"{other}\" and "
                        f'"{impl.plugin_name}"; disable one with --disable-plugin'
                    )
                table[entry.name] = _with_plugin(entry, impl.plugin_name)
        return table

    def table(self, hook_name: str) -> dict[str, Any]:
        if self._tables is None:
            self._tables = {}
        if hook_name not in self._tables:
            self._tables[hook_name] = self._collect(hook_name)
        return self._tables[hook_name]

    def _get(self, hook_name: str, name: str) -> Any:
        table = self.table(hook_name)
        if name not in table:
            raise UnknownNameError(suggest(name, table, _KINDS[hook_name][1]))
        return table[name]

    def get_model(self, name: str) -> ModelEntry:
        return self._get("srcompress_models", name)

    def get_technique(self, name: str) -> TechniqueEntry:
        return self._get("srcompress_techniques", name)

    def get_backend(self, name: str) -> BackendEntry:
        return self._get("srcompress_backends", name)

    def get_loss(self, name: str) -> LossEntry:
        return self._get("srcompress_losses", name)

    def get_metric(self, name: str) -> MetricEntry:
        return self._get("srcompress_metrics", name)

    def list_models(self) -> list[ModelEntry]:
        return _sorted(self.table("srcompress_models").values())

    def list_techniques(self) -> list[TechniqueEntry]:
        return _sorted(self.table("srcompress_techniques").values())

    def list_backends(self) -> list[BackendEntry]:
        return _sorted(self.table("srcompress_backends").values())

    def list_losses(self) -> list[LossEntry]:
        return _sorted(self.table("srcompress_losses").values())

    def list_metrics(self) -> list[MetricEntry]:
        return _sorted(self.table("srcompress_metrics").values())

    # ---------------------------------------------------------------- observers
    @property
    def hook(self) -> Any:
        """``pm.hook``: call observer hooks as ``registry.hook.srcompress_stage_end(...)``."""
        return self.pm.hook


def _with_plugin(entry: _E, plugin: str) -> _E:
    import attrs

    return attrs.evolve(entry, plugin=plugin)  # type: ignore[misc]


def _sorted(entries: Iterable[_E]) -> list[_E]:
    return sorted(entries, key=lambda e: e.name)  # type: ignore[attr-defined]


_default: Registry | None = None
_lock = threading.Lock()


def default_registry() -> Registry:
    """The process-wide registry, created (and plugins loaded) on first use."""
    global _default
    with _lock:
        if _default is None:
            _default = Registry()
        return _default


def reset_default_registry(registry: Registry | None = None) -> None:
    """Replace (or drop, with ``None``) the process-wide registry; for tests and the CLI."""
    global _default
    with _lock:
        _default = registry


def _facade(method: str) -> Callable[..., Any]:
    def call(*args: Any) -> Any:
        return getattr(default_registry(), method)(*args)

    call.__name__ = method
    call.__doc__ = f"``default_registry().{method}(...)``: see :class:`Registry`."
    return call


get_model: Callable[[str], ModelEntry] = _facade("get_model")
get_technique: Callable[[str], TechniqueEntry] = _facade("get_technique")
get_backend: Callable[[str], BackendEntry] = _facade("get_backend")
get_loss: Callable[[str], LossEntry] = _facade("get_loss")
get_metric: Callable[[str], MetricEntry] = _facade("get_metric")
list_models: Callable[[], Sequence[ModelEntry]] = _facade("list_models")
list_techniques: Callable[[], Sequence[TechniqueEntry]] = _facade("list_techniques")
list_backends: Callable[[], Sequence[BackendEntry]] = _facade("list_backends")
list_losses: Callable[[], Sequence[LossEntry]] = _facade("list_losses")
list_metrics: Callable[[], Sequence[MetricEntry]] = _facade("list_metrics")
