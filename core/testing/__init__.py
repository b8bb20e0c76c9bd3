"""``srcompress.testing``: the conformance suite a plugin's own tests run, and its pytest plugin.

Plain functions (no pytest needed)::

    from srcompress.testing import check_backend, check_model, check_technique, reference_model

    check_model("my_model", registry=registry)                      # every declared scale
    check_technique("my_technique", registry=registry, overrides={"steps": 1})
    check_backend("my_backend", registry=registry)

Each returns a :class:`CheckReport` (``passed`` / ``skipped`` lines) or raises
:class:`ConformanceError` naming the entry, the broken contract and the fix.

As a pytest plugin (registered through the ``pytest11`` entry point, so it is active wherever
srcompress is installed) it adds, and collects nothing by itself:

- fixtures ``srcompress_registry`` (a :class:`~srcompress.registry.Registry` with every installed
  plugin, one per session) and ``srcompress_check`` (``.model(name, **kw)``, ``.technique(...)``,
  ``.backend(...)``: the checks above, with their skips turned into ``pytest.skip``);
- parametrized arguments ``srcompress_model``, ``srcompress_technique`` and ``srcompress_backend``: a
  test that takes one runs once per entry (its name) registered by the plugins named with the marker
  ``@pytest.mark.srcompress_plugin("entry_point_name", ...)`` or the option
  ``--srcompress-plugin NAME`` (repeatable).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from srcompress.registry import Registry
    from srcompress.testing.checks import (
        CheckReport,
        ConformanceError,
        check_backend,
        check_config_roundtrip,
        check_model,
        check_technique,
    )
    from srcompress.testing.reference import ReferenceSR, reference_model

__all__ = [
    "CheckReport",
    "Checker",
    "ConformanceError",
    "ReferenceSR",
    "check_backend",
    "check_config_roundtrip",
    "check_model",
    "check_technique",
    "reference_model",
]

_LAZY = {
    "CheckReport": "checks",
    "ConformanceError": "checks",
    "check_backend": "checks",
    "check_config_roundtrip": "checks",
    "check_model": "checks",
    "check_technique": "checks",
    "ReferenceSR": "reference",
    "reference_model": "reference",
}
_PARAMS = {"srcompress_model": "list_models", "srcompress_technique": "list_techniques", "srcompress_backend": "list_backends"}
_MARKER = "srcompress_plugin"


def __getattr__(name: str) -> Any:
    # Imported on first use: the pytest plugin is loaded in every pytest run, torch is not needed for it.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"srcompress.testing.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'srcompress.testing' has no attribute {name!r}")


class Checker:
    """The checks bound to a registry; a report's skips become ``pytest.skip`` (with what passed)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def model(self, entry: Any, **kwargs: Any) -> CheckReport:
        from srcompress.testing.checks import check_model

        return self._finish(check_model(entry, registry=self.registry, **kwargs))

    def technique(self, entry: Any, **kwargs: Any) -> CheckReport:
        from srcompress.testing.checks import check_technique

        return self._finish(check_technique(entry, registry=self.registry, **kwargs))

    def backend(self, entry: Any, **kwargs: Any) -> CheckReport:
        from srcompress.testing.checks import check_backend

        return self._finish(check_backend(entry, registry=self.registry, **kwargs))

    @staticmethod
    def _finish(report: CheckReport) -> CheckReport:
        if report.skipped:
            pytest.skip(f"{report.kind} '{report.name}': {len(report.passed)} checks passed; skipped: " + "; ".join(report.skipped))
        return report


# ------------------------------------------------------------------------------------ pytest hooks


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("srcompress", "srcompress plugin conformance")
    group.addoption(
        "--srcompress-plugin",
        action="append",
        default=[],
        metavar="NAME",
        help="entry-point name of an srcompress plugin whose models/techniques/backends the "
        "srcompress_model/srcompress_technique/srcompress_backend arguments run over (repeatable)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{_MARKER}(*names): run this test's srcompress_model/srcompress_technique/srcompress_backend "
        "argument over the entries of these srcompress plugins (entry-point names)",
    )


def _selected_plugins(metafunc: pytest.Metafunc) -> list[str]:
    names: list[str] = list(metafunc.config.getoption("srcompress_plugin", default=[]) or [])
    for mark in metafunc.definition.iter_markers(_MARKER):
        names.extend(mark.args)
    return names


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    wanted = [name for name in _PARAMS if name in metafunc.fixturenames]
    if not wanted:
        return
    plugins = _selected_plugins(metafunc)
    registry = _session_registry(metafunc.config)
    for argname in wanted:
        if not plugins:
            reason = f"{argname}: name the plugin with @pytest.mark.{_MARKER}('NAME') or --srcompress-plugin NAME"
            metafunc.parametrize(argname, [pytest.param(None, marks=pytest.mark.skip(reason=reason))], ids=["no-plugin"])
            continue
        missing = [p for p in plugins if p not in registry.plugin_names()]
        if missing:
            raise pytest.UsageError(
                f"srcompress plugin {missing[0]!r} is not installed (installed: {', '.join(registry.plugin_names())})"
            )
        entries = [e.name for e in getattr(registry, _PARAMS[argname])() if e.plugin in plugins]
        if not entries:
            reason = f"{argname}: plugin(s) {', '.join(plugins)} register none"
            metafunc.parametrize(argname, [pytest.param(None, marks=pytest.mark.skip(reason=reason))], ids=["none"])
        else:
            metafunc.parametrize(argname, entries, ids=entries)


_REGISTRY_KEY = pytest.StashKey["Registry"]()


def _session_registry(config: pytest.Config) -> Registry:
    if _REGISTRY_KEY not in config.stash:
        from srcompress.registry import Registry

        config.stash[_REGISTRY_KEY] = Registry()
    return config.stash[_REGISTRY_KEY]


@pytest.fixture(scope="session")
def srcompress_registry(pytestconfig: pytest.Config) -> Registry:
    """A :class:`~srcompress.registry.Registry` with every installed plugin (one per test session)."""
    return _session_registry(pytestconfig)


@pytest.fixture
def srcompress_check(srcompress_registry: Registry) -> Checker:
    """:class:`Checker`: ``srcompress_check.model(name)``, ``.technique(name, overrides=...)``, ``.backend(name)``."""
    return Checker(srcompress_registry)
