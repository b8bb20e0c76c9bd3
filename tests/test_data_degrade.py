"""modcrop + MATLAB bicubic degradation: reference LR files reproduced through read_image."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from srcompress.data import bicubic_downscale, bicubic_upscale, modcrop, read_image


def test_modcrop_keeps_top_left() -> None:
    img = torch.arange(2 * 3 * 7 * 10, dtype=torch.float32).reshape(2, 3, 7, 10)
    out = modcrop(img, 3)
    assert out.shape == (2, 3, 6, 9)
    assert torch.equal(out, img[..., :6, :9])
    assert modcrop(img[0, 0], 2).shape == (6, 10)
    with pytest.raises(ValueError, match="positive integer"):
        modcrop(img, 0)
    with pytest.raises(ValueError, match="smaller than the scale 8"):
        modcrop(img, 8)


def test_downscale_shapes_range_and_quantization() -> None:
    gen = torch.Generator().manual_seed(0)
    hr = torch.rand(2, 3, 50, 37, generator=gen)
    lr = bicubic_downscale(hr, 4)
    assert lr.shape == (2, 3, 12, 9) and lr.dtype == torch.float32
    assert float(lr.min()) >= 0 and float(lr.max()) <= 1
    assert torch.equal(lr * 255, (lr * 255).round())  # on the 256 levels
    raw = bicubic_downscale(hr, 4, quantize=False)
    assert (raw - lr).abs().max() <= 0.5 / 255 + 1e-6
    assert not torch.equal(raw * 255, (raw * 255).round())
    up = bicubic_upscale(lr, 4)
    assert up.shape == (2, 3, 48, 36) and float(up.min()) >= 0 and float(up.max()) <= 1


def test_reference_lr_files_through_read_image(data_root: Path) -> None:
    ref_root = data_root / "matlab_bicubic"
    if not ref_root.is_dir():
        pytest.skip(f"needs the MATLAB-bicubic reference LR images in {ref_root}")
    total = exact = worst = 0
    for name in ("Set5",):  # all of Set5 and Set14 are checked in test_data_imresize.py
        for scale in (2, 3, 4):
            for ref_path in sorted((ref_root / name / f"x{scale}").glob("*.png")):
                lr = bicubic_downscale(read_image(data_root / name / ref_path.name), scale)
                ref = read_image(ref_path)  # grayscale reference replicated like the HR
                diff = ((lr - ref) * 255).round().abs()
                total, exact, worst = total + diff.numel(), exact + int((diff == 0).sum()), max(worst, int(diff.max()))
    print(f"bicubic_downscale vs MATLAB reference: {exact / total:.6%} exact of {total} values, max diff {worst}")
    assert exact / total >= 0.999 and worst <= 1


def _psnr_y(sr: torch.Tensor, hr: torch.Tensor, shave: int) -> float:
    """PSNR on BT.601 Y (16-235) of images in [0, 1], borders shaved (the published convention)."""
    weights = torch.tensor([65.481, 128.553, 24.966], dtype=torch.float64)[:, None, None]
    y_sr = 16 + (sr.double() * weights).sum(0)
    y_hr = 16 + (hr.double() * weights).sum(0)
    mse = ((y_sr - y_hr)[shave:-shave, shave:-shave] ** 2).mean()
    return 10 * math.log10(255**2 / float(mse))


def test_bicubic_baseline_set5_x4(data_root: Path) -> None:
    values = []
    for path in sorted((data_root / "Set5").glob("*.png")):
        hr = modcrop(read_image(path), 4)
        sr = (bicubic_upscale(bicubic_downscale(hr, 4), 4) * 255).round() / 255
        values.append(_psnr_y(sr, hr, 4))
    mean = sum(values) / len(values)
    print(f"Set5 x4 bicubic PSNR-Y {mean:.4f} dB")
    assert len(values) == 5 and abs(mean - 28.4314) < 1e-3
