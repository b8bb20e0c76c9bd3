"""LPIPS: skipped with a visible reason when AlexNet's weights are not cached; never downloaded here."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from srcompress.measure import MetricSkippedWarning, lpips_available, lpips_distance, lpips_weights_path


@pytest.fixture
def empty_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"


def test_unavailable_without_cached_weights(empty_hub: Path) -> None:
    assert lpips_weights_path("alex") == empty_hub
    ok, reason = lpips_available("alex")
    assert not ok
    assert reason == (
        f"LPIPS skipped: AlexNet weights not in torch hub cache ({empty_hub}); run once online or copy the file there"
    )


def test_metric_returns_none_with_warning(empty_hub: Path) -> None:
    with pytest.warns(MetricSkippedWarning, match="LPIPS skipped: AlexNet weights not in torch hub cache"):
        assert lpips_distance(torch.rand(3, 32, 32), torch.rand(3, 32, 32)) is None
    assert not empty_hub.exists()  # nothing was downloaded


def test_unknown_trunk() -> None:
    with pytest.raises(ValueError, match=r"unknown LPIPS trunk 'resnet' \(available: alex, squeeze, vgg\)"):
        lpips_available("resnet")


def test_real_lpips_when_weights_are_cached() -> None:
    ok, reason = lpips_available("alex")
    if not ok:
        pytest.skip(reason)
    g = torch.Generator().manual_seed(0)
    hr = torch.rand(3, 64, 64, generator=g)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MetricSkippedWarning)
        same = lpips_distance(hr, hr)
        noisy = lpips_distance((hr + 0.2 * torch.randn(hr.shape, generator=g)).clamp(0, 1), hr)
    assert same == pytest.approx(0.0, abs=1e-6)
    assert noisy is not None and noisy > 0.05
