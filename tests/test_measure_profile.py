"""Parameters, MACs (with FFT formulas), file size and the latency harness."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from srcompress.measure import count_macs, count_params, file_size, measure_latency


class _Tiny(nn.Module):
    """conv 3->8 (3x3) -> PReLU -> conv 8->12 (3x3) -> PixelShuffle(2): x2 SR."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, 8, 3, padding=1)
        self.act = nn.PReLU(8)
        self.tail = nn.Conv2d(8, 12, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.tail(self.act(self.head(x))))


class _Fourier(nn.Module):
    """rfft2 -> 1x1 conv on (real, imag) -> irfft2, like a Fourier unit; plus one full complex FFT."""

    def __init__(self, channels: int = 4) -> None:
        super().__init__()
        self.mix = nn.Conv2d(2 * channels, 2 * channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spec = torch.fft.rfft2(x, norm="ortho")
        mixed = self.mix(torch.cat([spec.real, spec.imag], dim=1))
        re, im = mixed.chunk(2, dim=1)
        y = torch.fft.irfft2(torch.complex(re, im), s=x.shape[-2:], norm="ortho")
        return y + torch.fft.ifft2(torch.fft.fft2(x)).real


def test_count_params_total_trainable_and_shared() -> None:
    model = _Tiny()
    expected = (3 * 8 * 9 + 8) + 8 + (8 * 12 * 9 + 12)
    assert count_params(model) == (expected, expected)
    model.head.requires_grad_(False)
    assert count_params(model) == (expected, expected - (3 * 8 * 9 + 8))
    shared = nn.Sequential(model.tail, model.tail)  # the same module twice counts once
    assert count_params(shared) == (8 * 12 * 9 + 12, 8 * 12 * 9 + 12)


def test_count_macs_convs_exact() -> None:
    h, w = 10, 14
    expected = h * w * (3 * 8 * 9 + 8 * 12 * 9)  # PReLU, bias and PixelShuffle are not counted
    model = _Tiny().train()
    assert count_macs(model, (h, w), scale=2) == expected
    assert model.training  # restored


def test_count_macs_fft_formula() -> None:
    c, h, w = 4, 16, 32
    model = _Fourier(c)
    n = h * w
    half = h * (w // 2 + 1)
    real_fft = c * n * math.log2(n) / 2  # r2c and c2r: B N log2 N / 2
    complex_fft = c * n * math.log2(n)  # c2c (fft2 and ifft2): B N log2 N
    conv = half * (2 * c) ** 2
    expected = conv + 2 * real_fft + 2 * complex_fft
    assert count_macs(model, (h, w), channels=c) == pytest.approx(expected, abs=3)


def test_count_macs_scale_mismatch() -> None:
    with pytest.raises(ValueError, match=r"model output \(1, 3, 20, 28\) is not x4 of the input \(1, 3, 10, 14\)"):
        count_macs(_Tiny(), (10, 14), scale=4)


def test_file_size(tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(b"x" * 100)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "b.bin").write_bytes(b"y" * 23)
    assert file_size(tmp_path / "a.bin") == 100
    assert file_size(tmp_path) == 123
    with pytest.raises(FileNotFoundError, match="missing.pt: no such file"):
        file_size(tmp_path / "missing.pt")


def test_latency_harness_counts_and_orders() -> None:
    calls = []
    delays = iter([0.0] * 2 + [0.002, 0.004, 0.006, 0.008, 0.010])

    def fn() -> None:
        calls.append(1)
        time.sleep(next(delays))

    stats = measure_latency(fn, warmup=2, runs=5)
    assert len(calls) == 7 and stats.runs == 5 and len(stats.times_ms) == 5
    assert stats.min_ms <= stats.median_ms <= stats.p90_ms
    assert 5.5 < stats.median_ms < 12  # the 6 ms call, with scheduler slack
    assert stats.p90_ms >= stats.times_ms[3]
    assert stats.to_dict()["runs"] == 5


def test_latency_threads_fixed_and_restored() -> None:
    before = torch.get_num_threads()
    seen = []
    measure_latency(lambda: seen.append(torch.get_num_threads()), warmup=1, runs=2, threads=1)
    assert seen == [1, 1, 1]
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="runs >= 1"):
        measure_latency(lambda: None, runs=0)


def test_latency_cuda_sync_is_harmless_without_cuda() -> None:
    model = _Tiny().eval()
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        stats = measure_latency(lambda: model(x), warmup=1, runs=3, cuda_sync=True)
    assert stats.runs == 3 and stats.median_ms > 0
