"""MATLAB-compatible bicubic imresize: reference LR files, shapes, batches, an independent check."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from srcompress.data import imresize


def _load(path: Path) -> torch.Tensor:
    """uint8 PNG -> float64 (C, H, W) in [0, 1], channels as stored (no grayscale replication)."""
    array = np.asarray(Image.open(path), dtype=np.float64) / 255.0
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array).permute(2, 0, 1)


def test_matches_matlab_reference_lr(data_root: Path) -> None:
    ref_root = data_root / "matlab_bicubic"
    if not ref_root.is_dir():
        pytest.skip(f"needs the MATLAB-bicubic reference LR images in {ref_root}")
    total = exact = worst = 0
    files = 0
    for name in ("Set5", "Set14"):
        for scale in (2, 3, 4):
            for ref_path in sorted((ref_root / name / f"x{scale}").glob("*.png")):
                hr = _load(data_root / name / ref_path.name)
                h, w = hr.shape[-2] // scale * scale, hr.shape[-1] // scale * scale
                lr = imresize(hr[:, :h, :w], 1 / scale)
                ours = (lr * 255).round().clamp(0, 255)
                ref = _load(ref_path) * 255
                assert ours.shape == ref.shape, ref_path
                diff = (ours - ref).abs()
                total += diff.numel()
                exact += int((diff == 0).sum())
                worst = max(worst, int(diff.max()))
                files += 1
    share = exact / total
    print(f"MATLAB bicubic LR: {share:.6%} of {total} pixel values equal, max diff {worst} ({files} files)")
    assert files == 3 * (5 + 14)
    assert share >= 0.999
    assert worst <= 1


def _naive_resize(img: np.ndarray, out_h: int, out_w: int, scale: float) -> np.ndarray:
    """Per-pixel MATLAB bicubic (no antialias needed for upscaling), written from the formulas."""

    def cubic(d: float) -> float:
        d = abs(d)
        if d <= 1:
            return 1.5 * d**3 - 2.5 * d**2 + 1
        if d <= 2:
            return -0.5 * d**3 + 2.5 * d**2 - 4 * d + 2
        return 0.0

    def mirror(i: int, n: int) -> int:
        while i < 0 or i >= n:
            i = -i - 1 if i < 0 else 2 * n - 1 - i
        return i

    def axis(values: np.ndarray, out_len: int) -> np.ndarray:
        n = values.shape[0]
        out = np.zeros((out_len,) + values.shape[1:])
        for k in range(1, out_len + 1):
            u = k / scale + 0.5 * (1 - 1 / scale)  # 1-based input coordinate
            taps = range(math.floor(u - 2), math.floor(u - 2) + 6)
            weights = np.array([cubic(u - j) for j in taps])
            weights /= weights.sum()
            for j, wgt in zip(taps, weights):
                out[k - 1] += wgt * values[mirror(j - 1, n)]
        return out

    rows = axis(img, out_h)
    return axis(rows.T, out_w).T


def test_upscale_matches_naive_formula() -> None:
    gen = torch.Generator().manual_seed(0)
    img = torch.rand(1, 5, 7, generator=gen, dtype=torch.float64)
    ours = imresize(img, 3)
    assert ours.shape == (1, 15, 21)
    expected = _naive_resize(img[0].numpy(), 15, 21, 3.0)
    assert np.abs(ours[0].numpy() - expected).max() < 1e-12


def test_shapes_dtype_batch_and_size() -> None:
    gen = torch.Generator().manual_seed(1)
    batch = torch.rand(4, 3, 30, 22, generator=gen)
    out = imresize(batch, 1 / 3)
    assert out.shape == (4, 3, 10, 8) and out.dtype == torch.float32  # ceil(22/3) = 8
    for i in range(4):
        assert torch.equal(out[i], imresize(batch[i], 1 / 3))
    assert imresize(batch, size=(12, 5)).shape == (4, 3, 12, 5)
    assert imresize(batch[0], 2).shape == (3, 60, 44)
    # 96 * (1/3) is 32.000000000000004 in floating point: still 32, not 33.
    assert imresize(torch.rand(1, 96, 96), 1 / 3).shape == (1, 32, 32)


def test_gather_path_equals_matrix_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Long axes use per-tap gathers instead of a dense matrix: same numbers."""
    module = sys.modules["srcompress.data.imresize"]  # the package attribute is the function

    gen = torch.Generator().manual_seed(3)
    img = torch.rand(2, 3, 26, 33, generator=gen, dtype=torch.float64)
    dense = [imresize(img, s) for s in (0.25, 1 / 3, 0.5, 2, 3)]
    monkeypatch.setattr(module, "_DENSE_LIMIT", 0)
    for s, expected in zip((0.25, 1 / 3, 0.5, 2, 3), dense):
        assert torch.allclose(imresize(img, s), expected, rtol=0, atol=1e-13)


def test_constant_image_and_identity() -> None:
    const = torch.full((3, 17, 13), 0.3, dtype=torch.float64)
    for scale in (0.25, 1 / 3, 0.5, 2, 3):
        assert torch.allclose(imresize(const, scale), torch.full_like(imresize(const, scale), 0.3), atol=1e-14)
    img = torch.rand(3, 9, 9)
    assert torch.equal(imresize(img, 1.0), img)


def test_antialias_flag_changes_downscale_only() -> None:
    gen = torch.Generator().manual_seed(2)
    img = torch.rand(1, 32, 32, generator=gen, dtype=torch.float64)
    assert not torch.allclose(imresize(img, 0.5), imresize(img, 0.5, antialias=False))
    assert torch.equal(imresize(img, 2), imresize(img, 2, antialias=False))
    # Antialiasing low-pass filters: white noise (std 0.288) keeps std ~0.12 instead of ~0.185.
    noise = torch.rand(1, 64, 64, generator=gen, dtype=torch.float64)
    assert float(imresize(noise, 0.5).std()) < 0.14 < 0.17 < float(imresize(noise, 0.5, antialias=False).std())


def test_bad_arguments() -> None:
    img = torch.rand(3, 8, 8)
    with pytest.raises(ValueError, match="exactly one of scale or size"):
        imresize(img)
    with pytest.raises(ValueError, match="exactly one of scale or size"):
        imresize(img, 0.5, size=(4, 4))
    with pytest.raises(TypeError, match="floating-point"):
        imresize(torch.zeros(3, 8, 8, dtype=torch.uint8), 0.5)
    with pytest.raises(ValueError, match=r"\(C, H, W\) or \(N, C, H, W\)"):
        imresize(torch.rand(8, 8), 0.5)


def _best_of(runs: int, fn) -> float:  # noqa: ANN001
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def test_speed_512_cpu() -> None:
    img = torch.rand(3, 512, 512)
    down = _best_of(3, lambda: imresize(img, 0.25))
    up = _best_of(3, lambda: imresize(img[:, :128, :128], 4))
    print(f"imresize 512x512 -> 128x128: {down * 1e3:.1f} ms; 128x128 -> 512x512: {up * 1e3:.1f} ms")
    assert down < 1.0 and up < 1.0  # ~10 ms each on an idle 2-core CPU; generous for shared machines


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu() -> None:
    img = torch.rand(2, 3, 40, 36)
    assert torch.allclose(imresize(img.cuda(), 0.25).cpu(), imresize(img, 0.25), atol=1e-6)
    assert torch.allclose(imresize(img.cuda(), 3).cpu(), imresize(img, 3), atol=1e-6)
