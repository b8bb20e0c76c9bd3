"""PSNR / SSIM against an independent numpy/scipy transcription of BasicSR's formulas.

The reference below follows ``basicsr/metrics/psnr_ssim.py`` (``calculate_psnr``, ``calculate_ssim``,
``_ssim``) and ``basicsr/utils/color_util.py`` (``rgb2ycbcr`` via ``to_y_channel``, float32 like
BasicSR) on uint8 HWC images with ``crop_border`` and ``test_y_channel``; cv2's ``filter2D`` +
``[5:-5, 5:-5]`` is scipy's correlate on the valid part.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import correlate

from srcompress.measure import gaussian_window, psnr, rgb_to_y, ssim


# ------------------------------------------------------------------ BasicSR, transcribed in numpy
def _bsr_y(img_uint8: np.ndarray) -> np.ndarray:
    """BasicSR to_y_channel on an RGB uint8 HWC image: float32 [0, 1] -> Y (float32) * 255."""
    img = img_uint8.astype(np.float32) / 255.0  # float32 input passes _convert_input_type_range as is
    y = np.dot(img, [65.481, 128.553, 24.966]) + 16.0  # 16..235
    y = (y / 255.0).astype(np.float32)  # _convert_output_type_range(float32)
    return (y * 255.0)[..., None]


def _bsr_prepare(a: np.ndarray, b: np.ndarray, crop: int, y: bool) -> tuple[np.ndarray, np.ndarray]:
    if crop:
        a, b = a[crop:-crop, crop:-crop], b[crop:-crop, crop:-crop]
    if y:
        a, b = _bsr_y(a), _bsr_y(b)
    return a.astype(np.float64), b.astype(np.float64)


def bsr_psnr(a: np.ndarray, b: np.ndarray, crop: int, y: bool) -> float:
    a, b = _bsr_prepare(a, b, crop, y)
    mse = np.mean((a - b) ** 2)
    return float("inf") if mse == 0 else float(10.0 * np.log10(255.0 * 255.0 / mse))


def _bsr_ssim_channel(a: np.ndarray, b: np.ndarray) -> float:
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    k = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    k = k / k.sum()
    window = np.outer(k, k)

    def f(x: np.ndarray) -> np.ndarray:
        return correlate(x, window, mode="reflect")[5:-5, 5:-5]

    mu1, mu2 = f(a), f(b)
    s1, s2, s12 = f(a * a) - mu1**2, f(b * b) - mu2**2, f(a * b) - mu1 * mu2
    m = ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1**2 + mu2**2 + c1) * (s1 + s2 + c2))
    return float(m.mean())


def bsr_ssim(a: np.ndarray, b: np.ndarray, crop: int, y: bool) -> float:
    a, b = _bsr_prepare(a, b, crop, y)
    return float(np.mean([_bsr_ssim_channel(a[..., i], b[..., i]) for i in range(a.shape[2])]))


# ------------------------------------------------------------------ helpers
def _pair(seed: int, h: int = 48, w: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    """A smooth-ish HR (uint8 levels) and a float SR near it (not on integer levels)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.nn.functional.avg_pool2d(torch.rand(1, 3, h + 4, w + 4, generator=g), 5, stride=1)[0]
    hr = torch.round(base * 255) / 255
    sr = (hr + 0.04 * torch.randn(hr.shape, generator=g)).clamp(-0.05, 1.05)
    return sr, hr


def _uint8_hwc(img: torch.Tensor) -> np.ndarray:
    """What BasicSR sees: tensor2img (clamp, *255, round) as uint8 HWC."""
    return np.round(img.clamp(0, 1).numpy() * 255.0).astype(np.uint8).transpose(1, 2, 0)


# ------------------------------------------------------------------ tests
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("crop", [0, 2, 4])
@pytest.mark.parametrize("y_channel", [True, False])
def test_psnr_ssim_equal_basicsr(seed: int, crop: int, y_channel: bool) -> None:
    sr, hr = _pair(seed)
    a, b = _uint8_hwc(sr), _uint8_hwc(hr)
    assert psnr(sr, hr, crop=crop, y_channel=y_channel) == pytest.approx(bsr_psnr(a, b, crop, y_channel), abs=1e-3)
    assert ssim(sr, hr, crop=crop, y_channel=y_channel) == pytest.approx(bsr_ssim(a, b, crop, y_channel), abs=1e-5)


def test_batch_and_chw_layouts_agree() -> None:
    sr, hr = _pair(3)
    assert psnr(sr[None], hr[None], crop=3) == psnr(sr, hr, crop=3)
    assert ssim(sr[None], hr, crop=3) == ssim(sr, hr, crop=3)


def test_rgb_to_y_is_bt601_studio_swing() -> None:
    colours = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    y = rgb_to_y(colours.T.reshape(3, 1, 5))[0, 0] * 255
    expected = torch.tensor([16.0, 235.0, 16 + 65.481, 16 + 128.553, 16 + 24.966])
    assert torch.allclose(y, expected, atol=1e-4)
    assert rgb_to_y(torch.rand(2, 3, 4, 5)).shape == (2, 1, 4, 5)


def test_gaussian_window_is_normalised_and_symmetric() -> None:
    w = gaussian_window()
    assert w.shape == (11, 11)
    assert float(w.sum()) == pytest.approx(1.0, abs=1e-12)
    assert torch.equal(w, w.T) and torch.equal(w, w.flip(0))
    assert float(w[5, 5] / w[5, 6]) == pytest.approx(math.exp(1 / (2 * 1.5**2)), rel=1e-12)


def test_identical_images() -> None:
    _, hr = _pair(4)
    assert psnr(hr, hr) == math.inf
    assert ssim(hr, hr) == pytest.approx(1.0, abs=1e-12)


def test_rounding_options() -> None:
    sr, hr = _pair(5)
    # unrounded SR differs from the uint8 convention
    assert psnr(sr, hr, round_uint8=False) != pytest.approx(psnr(sr, hr), abs=1e-6)
    # MATLAB-style integer Y: recompute by hand
    a = torch.floor(rgb_to_y(torch.round(sr.clamp(0, 1) * 255) / 255) * 255 + 0.5)
    b = torch.floor(rgb_to_y(hr) * 255 + 0.5)
    expected = 10 * math.log10(255**2 / float(((a.double() - b.double()) ** 2).mean()))
    assert psnr(sr, hr, matlab_round_y=True) == pytest.approx(expected, abs=1e-4)
    assert ssim(sr, hr, matlab_round_y=True) != pytest.approx(ssim(sr, hr), abs=1e-7)


def test_errors_name_the_problem() -> None:
    sr, hr = _pair(6)
    with pytest.raises(ValueError, match=r"differ in shape: \(3, 48, 40\) vs \(3, 46, 40\)"):
        psnr(sr, hr[:, :46])
    with pytest.raises(ValueError, match="one image at a time"):
        psnr(torch.stack([sr, sr]), torch.stack([hr, hr]))
    with pytest.raises(ValueError, match="expected RGB"):
        psnr(sr[:1], hr[:1])
    with pytest.raises(ValueError, match="crop=20 leaves nothing"):
        psnr(sr, hr, crop=20)
    with pytest.raises(ValueError, match="SSIM needs at least 11x11 pixels after cropping \\(got 8x8\\)"):
        ssim(sr[:, :16, :16], hr[:, :16, :16], crop=4)
