"""Plugin manager: entry-point discovery, blocking, and the error cases named in issue 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from plugin_dists import THIRD_PARTY_PLUGIN, make_dist
from srcompress.errors import PluginError, UnknownNameError
from srcompress.registry import Registry

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def third_party(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = make_dist(tmp_path / "site", "srcompress-tinytp", {"tinytp": "tinytp_plugin"}, {"tinytp_plugin": THIRD_PARTY_PLUGIN})
    monkeypatch.syspath_prepend(str(root))
    return root


def test_third_party_distribution_is_discovered(third_party: Path) -> None:
    registry = Registry()
    assert "tinytp" in registry.plugin_names()
    model = registry.get_model("tiny_tp")
    assert model.plugin == "tinytp" and model.scales == (2, 4)
    assert registry.get_technique("scale_tail").plugin == "tinytp"


def test_cli_list_shows_third_party_plugin(third_party: Path) -> None:
    env = {"PYTHONPATH": str(third_party), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-m", "srcompress.cli", "list"], capture_output=True, text=True, env=env, check=True
    ).stdout
    line = next(l for l in out.splitlines() if l.strip().startswith("tiny_tp"))
    # params at x2: head 3*8*9+8 = 224, tail 8*12*9+12 = 876
    assert line.split() == ["tiny_tp", "tinytp", "x2,x4", "1,100", "-"]
    assert "scale_tail" in out


def test_autoload_off_and_explicit_plugins(third_party: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SRCOMPRESS_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert Registry().plugin_names() == []
    monkeypatch.setenv("SRCOMPRESS_PLUGINS", "tinytp")
    assert Registry().plugin_names() == ["tinytp"]


def test_disable_plugin_blocks_it(third_party: Path) -> None:
    registry = Registry(disabled=["tinytp"])
    assert "tinytp" not in registry.plugin_names()
    with pytest.raises(UnknownNameError, match="unknown model 'tiny_tp'"):
        registry.get_model("tiny_tp")


def test_import_failure_names_the_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_dist(tmp_path / "s", "broken-dist", {"broken": "broken_mod"}, {"broken_mod": "import not_a_module_xyz\n"})
    monkeypatch.syspath_prepend(str(root))
    with pytest.raises(PluginError, match=r'Error importing plugin "broken" \(broken_mod, distribution broken-dist\): ModuleNotFoundError'):
        Registry()
    assert "broken" not in Registry(disabled=["broken"]).plugin_names()


def test_bad_hook_signature_names_the_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = """
from srcompress import hookimpl
@hookimpl
def srcompress_stage_end(index, stage, metrics, not_in_the_spec):
    pass
"""
    root = make_dist(tmp_path / "s", "badsig", {"badsig": "badsig_mod"}, {"badsig_mod": source})
    monkeypatch.syspath_prepend(str(root))
    with pytest.raises(PluginError, match=r'plugin "badsig" is invalid: .*srcompress_stage_end.*not_in_the_spec'):
        Registry()


def test_same_model_name_from_two_plugins(third_party: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_dist(tmp_path / "s2", "copycat", {"copycat": "copycat_mod"}, {"copycat_mod": THIRD_PARTY_PLUGIN})
    monkeypatch.syspath_prepend(str(root))
    registry = Registry()
    with pytest.raises(PluginError, match=r"model 'tiny_tp' is registered by two plugins: \"(tinytp|copycat)\" and \"(copycat|tinytp)\""):
        registry.list_models()


def test_entry_point_name_collision(third_party: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_dist(tmp_path / "s3", "other-dist", {"tinytp": "other_mod"}, {"other_mod": "\n"})
    monkeypatch.syspath_prepend(str(root))
    with pytest.raises(PluginError, match=r'plugin name collision: "tinytp" is declared by'):
        Registry()


def test_unknown_names_suggest_closest(third_party: Path) -> None:
    registry = Registry()
    with pytest.raises(UnknownNameError, match=r"unknown technique 'scale_tial'; did you mean 'scale_tail'\? \(available: .*scale_tail"):
        registry.get_technique("scale_tial")
    with pytest.raises(UnknownNameError, match=r"unknown backend 'nope'"):
        registry.get_backend("nope")


def test_observer_hooks_follow_a_plugin(third_party: Path) -> None:
    seen: list[str] = []

    class Logger:
        from srcompress import hookimpl

        @hookimpl
        def srcompress_stage_start(self, index, stage, resumed):
            seen.append(f"start {index} {resumed}")

    registry = Registry()
    registry.register(Logger(), "logger")
    registry.hook.srcompress_stage_start(index=0, stage=None, resumed=False)
    assert seen == ["start 0 False"]


def test_addhooks_is_called_for_every_plugin_registered() -> None:
    import pluggy

    from srcompress import hookimpl, hookspec

    class ExtraSpec:
        @hookspec
        def srcompress_extra_things(self) -> list[str]:
            """A hook a technique plugin declares for its own extension point."""

    class Declares:
        @hookimpl
        def srcompress_addhooks(self, pluginmanager: pluggy.PluginManager) -> None:
            pluginmanager.add_hookspecs(ExtraSpec)

    class Implements:
        @hookimpl
        def srcompress_extra_things(self) -> list[str]:
            return ["thing"]

    registry = Registry(autoload=False)
    registry.register(Declares(), "declares")
    registry.register(Implements(), "implements")
    assert registry.hook.srcompress_extra_things() == [["thing"]]
