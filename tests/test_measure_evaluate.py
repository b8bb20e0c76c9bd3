"""evaluate(): the classic bicubic baselines, metrics through the plugin registry, notes and errors."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import pytest
import torch
from torch import nn

import srcompress.plugins.metrics as builtin_metrics
from srcompress.data import imresize, save_image
from srcompress.entries import MetricEntry
from srcompress.errors import UnknownNameError
from srcompress.hookspecs import hookimpl
from srcompress.measure import MetricSkippedWarning, evaluate, ssim
from srcompress.registry import Registry

# PSNR-Y / SSIM-Y of MATLAB-bicubic upscaling of MATLAB-bicubic LR, shave = scale (BasicSR values).
BICUBIC_REFERENCE = {
    ("Set5", 2): (33.6818, 0.93052),
    ("Set5", 3): (30.4047, 0.86897),
    ("Set5", 4): (28.4314, 0.81127),
    ("Set14", 2): (30.3301, 0.87003),
    ("Set14", 3): (27.6341, 0.77598),
    ("Set14", 4): (26.0918, 0.70496),
}


def _bicubic(scale: int):
    return lambda lr: imresize(lr, scale)


@pytest.fixture
def registry() -> Registry:
    """Only the built-in metrics plugin (no other entry points), registered as a third party would."""
    reg = Registry(autoload=False)
    reg.register(builtin_metrics, "metrics")
    return reg


@pytest.fixture
def tiny_root(tmp_path: Path) -> Path:
    """A data root whose Set5 folder holds three small images (42x38, 40x40, 37x45)."""
    g = torch.Generator().manual_seed(0)
    for name, (h, w) in {"a": (42, 38), "b": (40, 40), "c": (37, 45)}.items():
        smooth = torch.nn.functional.avg_pool2d(torch.rand(1, 3, h + 2, w + 2, generator=g), 3, stride=1)[0]
        save_image(smooth, tmp_path / "Set5" / f"{name}.png")
    return tmp_path


class _ThirdParty:
    """A plugin as a third party writes it: MATLAB-rounded SSIM, and a metric that is skipped."""

    @hookimpl
    def srcompress_metrics(self) -> list[MetricEntry]:
        def ssim_matlab(sr: torch.Tensor, hr: torch.Tensor, scale: int) -> float:
            return ssim(sr, hr, crop=scale, matlab_round_y=True)

        def needs_gpu(sr: torch.Tensor, hr: torch.Tensor, scale: int) -> float | None:
            import warnings

            warnings.warn("needs_gpu skipped: no GPU here", MetricSkippedWarning, stacklevel=2)
            return None

        return [
            MetricEntry(name="ssim_matlab", compute=ssim_matlab, higher_is_better=True),
            MetricEntry(name="needs_gpu", compute=needs_gpu, higher_is_better=False),
            MetricEntry(name="silent", compute=lambda sr, hr, scale: None, higher_is_better=True),
        ]


# Set14 x2 and x3 (the largest images) run with -m slow; the other four keep the default suite fast.
_SLOW = {("Set14", 2), ("Set14", 3)}


@pytest.mark.parametrize(
    ("dataset", "scale"),
    [pytest.param(*key, marks=[pytest.mark.slow] if key in _SLOW else []) for key in BICUBIC_REFERENCE],
)
def test_bicubic_baseline_matches_reference(data_root: Path, registry: Registry, dataset: str, scale: int) -> None:
    result = evaluate(_bicubic(scale), [dataset], scale, metrics=("psnr", "ssim"), registry=registry)
    psnr_ref, ssim_ref = BICUBIC_REFERENCE[(dataset, scale)]
    assert len(result.per_image[dataset]) == {"Set5": 5, "Set14": 14}[dataset]
    assert result.mean(dataset, "psnr") == pytest.approx(psnr_ref, abs=1e-3)
    assert result.mean(dataset, "ssim") == pytest.approx(ssim_ref, abs=1e-4)


def test_matlab_rounded_y_through_a_third_party_metric(data_root: Path, registry: Registry) -> None:
    """Published tables (MATLAB, integer Y) say 0.8104 for Set5 x4 bicubic; BasicSR's float Y gives 0.81127."""
    registry.register(_ThirdParty(), "thirdparty")
    result = evaluate(_bicubic(4), "Set5", 4, metrics=("ssim", "ssim_matlab"), registry=registry)
    assert result.mean("Set5", "ssim") == pytest.approx(0.81127, abs=1e-4)
    assert result.mean("Set5", "ssim_matlab") == pytest.approx(0.81025, abs=1e-4)  # 0.0002 below the tables' 0.8104


def test_builtin_metrics_are_an_entry_point_plugin() -> None:
    points = {ep.name: ep.value for ep in metadata.entry_points(group="srcompress.plugins")}
    assert points.get("metrics") == "srcompress.plugins.metrics"
    reg = Registry(autoload=False)
    reg.register(builtin_metrics, "metrics")
    table = {m.name: (m.higher_is_better, m.plugin) for m in reg.list_metrics()}
    assert table == {
        "lpips": (False, "metrics"),
        "niqe": (False, "metrics"),
        "psnr": (True, "metrics"),
        "psnr_rgb": (True, "metrics"),
        "ssim": (True, "metrics"),
    }


def test_per_image_means_kept_limit_and_table(tiny_root: Path, registry: Registry) -> None:
    result = evaluate(_bicubic(2), ["Set5"], 2, root=tiny_root, metrics=("psnr", "ssim", "psnr_rgb"),
                      keep_outputs=2, registry=registry)
    images = result.per_image["Set5"]
    assert list(images) == ["a", "b", "c"]
    mean = sum(v["psnr"] for v in images.values()) / 3
    assert result.mean("Set5", "psnr") == pytest.approx(mean, abs=1e-12)
    assert result.means()["Set5"]["ssim"] == result.mean("Set5", "ssim")
    assert list(result.kept["Set5"]) == ["a", "b"]
    kept = result.kept["Set5"]["a"]
    assert kept.hr.shape == (3, 42, 38) and kept.lr.shape == (3, 21, 19) and kept.sr.shape == (3, 42, 38)
    assert float(kept.sr.min()) >= 0.0 and float(kept.sr.max()) <= 1.0
    table = result.table()
    assert table.splitlines()[0] == "| Dataset (x2) | PSNR-Y ↑ | SSIM-Y ↑ | PSNR-RGB ↑ |"
    assert f"| Set5 (3) | {result.mean('Set5', 'psnr'):.4f} | {result.mean('Set5', 'ssim'):.5f} |" in table
    data = json.loads(json.dumps(result.to_dict()))
    assert data["means"]["Set5"]["psnr"] == pytest.approx(result.mean("Set5", "psnr"))
    limited = evaluate(_bicubic(2), ["Set5"], 2, root=tiny_root, metrics=("psnr",), limit=2, registry=registry)
    assert list(limited.per_image["Set5"]) == ["a", "b"]


def test_skipped_metrics_become_notes(tiny_root: Path, registry: Registry) -> None:
    registry.register(_ThirdParty(), "thirdparty")
    result = evaluate(_bicubic(2), ["Set5"], 2, root=tiny_root, metrics=("psnr", "needs_gpu", "niqe", "silent"), registry=registry)
    assert result.mean("Set5", "needs_gpu") is None and result.mean("Set5", "niqe") is None
    assert "needs_gpu: needs_gpu skipped: no GPU here" in result.notes
    assert "silent: no value on any image of Set5 (the metric returned None without a reason)" in result.notes
    assert any(n.startswith("niqe: NIQE skipped: NIQE needs at least two whole 96x96 blocks") for n in result.notes)
    assert "| - |" in result.table() and "- note: needs_gpu: needs_gpu skipped" in result.table()


def test_crop_is_passed_to_metrics_that_take_it(tiny_root: Path, registry: Registry) -> None:
    wide = evaluate(_bicubic(2), ["Set5"], 2, root=tiny_root, metrics=("psnr",), crop=6, registry=registry)
    default = evaluate(_bicubic(2), ["Set5"], 2, root=tiny_root, metrics=("psnr",), registry=registry)
    assert wide.mean("Set5", "psnr") != pytest.approx(default.mean("Set5", "psnr"), abs=1e-6)
    registry.register(_ThirdParty(), "thirdparty")
    with pytest.raises(ValueError, match="metric 'ssim_matlab' \\(plugin thirdparty\\) takes no crop argument"):
        evaluate(_bicubic(2), ["Set5"], 2, root=tiny_root, metrics=("ssim_matlab",), crop=3, registry=registry)


def test_module_mode_restored_and_wrong_scale_named(tiny_root: Path, registry: Registry) -> None:
    class Up(nn.Module):
        def __init__(self, scale: int) -> None:
            super().__init__()
            self.scale = scale
            self.modes: list[bool] = []

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.modes.append(self.training)
            return imresize(x, self.scale)

    model = Up(2).train()
    evaluate(model, ["Set5"], 2, root=tiny_root, registry=registry)
    assert model.modes == [False, False, False] and model.training
    with pytest.raises(ValueError, match=r"Set5/a: model output \(1, 3, 63, 57\) is not x2 of the LR input"):
        evaluate(Up(3), ["Set5"], 2, root=tiny_root, registry=registry)


def test_unknown_metric_lists_the_registered_ones(registry: Registry) -> None:
    with pytest.raises(UnknownNameError, match="unknown metric 'pnsr'; did you mean 'psnr'\\?"):
        evaluate(_bicubic(2), ["Set5"], 2, metrics=("pnsr",), registry=registry)
