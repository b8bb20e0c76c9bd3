"""srcompress.testing catches broken contracts with messages that name the entry and the fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest
import torch
from attrs import define
from torch import nn

from plugin_dists import THIRD_PARTY_PLUGIN, make_dist
from srcompress import ModelEntry, ModelHints, TechniqueEntry
from srcompress.config import option
from srcompress.registry import Registry
from srcompress.testing import ConformanceError, ReferenceSR, check_backend, check_model, check_technique, reference_model

pytest_plugins = ["pytester"]


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry()


def test_reference_model_shape_and_size() -> None:
    model = reference_model(2)
    assert isinstance(model, ReferenceSR)
    assert sum(p.numel() for p in model.parameters()) == 2268
    assert sum(p.numel() for p in reference_model(4).parameters()) == 4896
    out = model(torch.rand(2, 3, 8, 12))
    assert out.shape == (2, 3, 16, 24)
    assert torch.equal(reference_model(2).head.weight, reference_model(2).head.weight)


def test_check_model_passes_a_correct_entry(registry: Registry) -> None:
    report = check_model("espcn", registry=registry, options={"n1": 8, "n2": 8})
    assert report.passed[0] == "ESPCNOptions: every field has help text"
    assert [line.split(":")[0] for line in report.passed[1:]] == ["x2", "x2", "x3", "x3", "x4", "x4"]
    assert "x4: forward (1, 3, 16, 16) -> (1, 3, 64, 64), backward reaches" in report.passed[5]


def test_check_model_wrong_scale_is_named(registry: Registry) -> None:
    entry = ModelEntry(name="off", build=lambda scale, o: ReferenceSR(2), scales=(2, 4))
    with pytest.raises(ConformanceError, match=r"model 'off': x4: output \(1, 3, 32, 32\) for input \(1, 3, 16, 16\)"):
        check_model(entry, registry=registry)


def test_check_model_hint_naming_no_module(registry: Registry) -> None:
    entry = ModelEntry(name="badhint", build=lambda s, o: ReferenceSR(s), scales=(2,), hints=lambda m: ModelHints(feature_taps=("head", "body9")))
    with pytest.raises(ConformanceError, match=r"model 'badhint': x2: hints.feature_taps names 'body9', which is not in model.named_modules\(\)"):
        check_model(entry, registry=registry)


def test_check_model_weights_missing_offline_is_a_skip(registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SRCOMPRESS_WEIGHTS", str(tmp_path))
    entry = registry.get_model("light_f2srgan")
    report = check_model(entry, registry=registry, scales=(4,))
    assert report.skipped == [
        f"weights 'official' x4 ({entry.weights[0].filename}): unavailable offline (not in $SRCOMPRESS_WEIGHTS or the cache); not downloaded"
    ]


@define(frozen=True, kw_only=True)
class _NoHelp:
    factor: float = attrs.field(default=1.0)


@define(frozen=True, kw_only=True)
class _Scale:
    factor: float = option(0.5, help="Weight multiplier.")
    names: tuple[str, ...] = option(("tail",), help="Modules scaled.")


def _scale(model: nn.Module, config: _Scale, ctx: Any) -> nn.Module:
    with torch.no_grad():
        for name in config.names:
            model.get_submodule(name).weight.mul_(config.factor)
    return model


def test_check_technique_passes_and_reports(registry: Registry) -> None:
    entry = TechniqueEntry(name="scale", config_cls=_Scale, apply=_scale)
    report = check_technique(entry, registry=registry, overrides={"factor": 0.25, "names": ["head", "tail"]})
    assert report.passed[:2] == ["_Scale: every field has help text", "config round-trips through YAML (2 keys)"]
    assert report.passed[2] == "applies to ReferenceSR x2; forward still gives (1, 3, 32, 32)"
    assert report.passed[3].startswith("checkpoint saves and reloads (max |diff| 0.0e+00")


def test_check_technique_field_without_help(registry: Registry) -> None:
    entry = TechniqueEntry(name="nohelp", config_cls=_NoHelp, apply=lambda m, c, x: m)
    with pytest.raises(ConformanceError, match=r"technique 'nohelp': _NoHelp.factor has no help text; declare it with srcompress.config.option"):
        check_technique(entry, registry=registry)


def test_check_technique_broken_forward(registry: Registry) -> None:
    def halve(model: nn.Module, config: Any, ctx: Any) -> nn.Module:
        return nn.Sequential(model, nn.AvgPool2d(2))

    entry = TechniqueEntry(name="halve", config_cls=_Scale, apply=halve)
    with pytest.raises(ConformanceError, match=r"technique 'halve': after apply, forward gives \(1, 3, 16, 16\) .*expected finite \(1, 3, 32, 32\)"):
        check_technique(entry, registry=registry)


def test_check_technique_unstructurable_result(registry: Registry) -> None:
    class Doubled(nn.Module):  # a new parameter shape the checkpoint cannot rebuild into ReferenceSR
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner
            self.gain = nn.Parameter(torch.full((1,), 2.0))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x) * self.gain

    entry = TechniqueEntry(name="gain", config_cls=_Scale, apply=lambda m, c, x: Doubled(m))
    with pytest.raises(ConformanceError, match=r"technique 'gain': its result does not reload from an srcompress checkpoint \(.*checkpoint structure names module 'inner.head'"):
        check_technique(entry, registry=registry)


def test_check_backend_tolerance_is_enforced(registry: Registry) -> None:
    torch_entry = registry.get_backend("torch")

    class Noisy:
        def __init__(self, inner: Any) -> None:
            self.inner, self.metadata = inner, {"precision": "fp32"}

        def __call__(self, lr: torch.Tensor) -> torch.Tensor:
            return self.inner(lr) + 1e-3

        def save(self, path: Path) -> Path:
            return self.inner.save(path)

    noisy = attrs.evolve(torch_entry, name="noisy", compile=lambda m, e, c: Noisy(torch_entry.compile(m, e, c)))
    with pytest.raises(ConformanceError, match=r"backend 'noisy': fp32 output differs from torch by 0.001 > stated tolerance 1e-05"):
        check_backend(noisy, registry=registry)
    unstated = attrs.evolve(torch_entry, name="unstated", tolerance={})
    with pytest.raises(ConformanceError, match=r"backend 'unstated': states no tolerance for precision 'fp32'"):
        check_backend(unstated, registry=registry)


def test_pytest_plugin_is_loaded_through_pytest11(pytestconfig: pytest.Config) -> None:
    import srcompress.testing as plugin

    assert pytestconfig.pluginmanager.is_registered(plugin)


def test_pytest_plugin_collects_nothing_by_itself(tmp_path: Path) -> None:
    (tmp_path / "test_empty.py").write_text("def test_one():\n    pass\n")
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)], capture_output=True, text=True, cwd=tmp_path)
    assert "1 passed" in out.stdout, out.stdout + out.stderr


@pytest.fixture
def tinytp_on_path(registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The third-party dist ``srcompress-tinytp`` installed on sys.path for pytester's in-process runs.

    ``registry`` imports the built-in plugins here first: pytester's in-process runs drop modules
    they imported, and some extension modules cannot be imported twice in one process.
    """
    root = make_dist(tmp_path / "site", "srcompress-tinytp", {"tinytp": "tinytp_plugin"}, {"tinytp_plugin": THIRD_PARTY_PLUGIN})
    monkeypatch.syspath_prepend(str(root))
    return root


def test_pytest_plugin_parametrizes_over_a_plugins_entries(pytester: pytest.Pytester, tinytp_on_path: Path) -> None:
    pytester.makepyfile(
        """
        import pytest

        pytestmark = pytest.mark.srcompress_plugin("tinytp")

        def test_models(srcompress_check, srcompress_model):
            report = srcompress_check.model(srcompress_model)
            assert report.name == "tiny_tp"

        def test_techniques(srcompress_check, srcompress_technique):
            if srcompress_technique == "count":
                pytest.skip("count needs a log file")
            srcompress_check.technique(srcompress_technique)

        def test_backends(srcompress_backend):
            pass
        """
    )
    result = pytester.runpytest_inprocess("-v", "-p", "no:cacheprovider", "-rs")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0 and outcomes.get("errors", 0) == 0, result.stdout.str()
    result.stdout.fnmatch_lines_random(
        [
            "*::test_models[[]tiny_tp[]] PASSED*",
            "*::test_techniques[[]scale_tail[]] PASSED*",
            "*::test_techniques[[]count[]] SKIPPED*",
            "*srcompress_backend: plugin(s) tinytp register none*",
        ]
    )


def test_pytest_option_selects_plugins_and_rejects_unknown(pytester: pytest.Pytester, tinytp_on_path: Path) -> None:
    pytester.makepyfile(
        """
        def test_models(srcompress_model):
            assert srcompress_model == "tiny_tp"
        """
    )
    pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider").assert_outcomes(skipped=1)  # nothing named: skipped, with the hint
    pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider", "--srcompress-plugin", "tinytp").assert_outcomes(passed=1)
    result = pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider", "--srcompress-plugin", "nope")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*UsageError: srcompress plugin 'nope' is not installed (installed: *tinytp*"])


@define(frozen=True, kw_only=True)
class _Doubling:
    gain: float = option(1.0, help="Doubled on every read (a broken converter).", converter=lambda v: 2 * v)


def test_check_technique_yaml_roundtrip_is_enforced(registry: Registry) -> None:
    entry = TechniqueEntry(name="doubling", config_cls=_Doubling, apply=lambda m, c, x: m)
    with pytest.raises(ConformanceError, match=r"_Doubling: the YAML round trip changes field 'gain' from 2.0 to 4.0"):
        check_technique(entry, registry=registry)
    report = check_technique(entry, registry=registry, roundtrip=False)
    assert report.skipped == ["YAML round trip not checked (roundtrip=False)"]
