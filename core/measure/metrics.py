"""Full-reference quality metrics: PSNR and SSIM, on Y (BT.601) or RGB, as the SR field computes them.

They reproduce BasicSR's ``calculate_psnr`` / ``calculate_ssim`` (``basicsr/metrics/psnr_ssim.py``,
``test_y_channel=True``, ``crop_border=scale``), the community's reference for SR tables:

- images are brought to the 0..255 range and, by default, rounded to integers (``round_uint8``), as
  BasicSR receives them (an SR output is saved as, or converted to, uint8 before it is scored);
- ``crop`` pixels are removed from each border ("shave", usually the scale);
- Y is MATLAB ``rgb2ycbcr``'s luma: ``Y = 16 + 65.481 R + 128.553 G + 24.966 B`` with R, G, B in
  [0, 1], i.e. 16..235; BasicSR keeps it unrounded (float);
- PSNR is ``10 log10(255^2 / MSE)`` in float64; SSIM is Wang et al.'s, with an 11x11 Gaussian window
  (sigma 1.5), "valid" filtering (no padding), C1 = (0.01 * 255)^2, C2 = (0.03 * 255)^2, averaged over
  the map and, for RGB, over channels.

``matlab_round_y=True`` rounds Y to integers first, as MATLAB's ``rgb2ycbcr`` does on uint8 images
and hence as the tables published from MATLAB scripts (SRCNN, VDSR, EDSR, ...) do. It matters for
SSIM. Set5 x4 bicubic (measured here): BasicSR's float Y gives 28.4314 dB / 0.81127; rounded Y gives
28.4189 dB / 0.81025; the published MATLAB tables say 28.42 / 0.8104 (the last 0.0002 of SSIM comes
from the particular MATLAB SSIM script those tables used, which this option does not emulate).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.ndimage import correlate1d
from torch import Tensor

__all__ = ["gaussian_kernel_1d", "gaussian_window", "psnr", "rgb_to_y", "ssim"]

_Y_WEIGHTS = (65.481, 128.553, 24.966)
_Y_OFFSET = 16.0
_SSIM_C1 = (0.01 * 255.0) ** 2
_SSIM_C2 = (0.03 * 255.0) ** 2


def rgb_to_y(img: Tensor) -> Tensor:
    """Luma Y of BT.601 ("studio swing"), like MATLAB ``rgb2ycbcr`` on a double image.

    :param img: RGB image(s) in [0, 1], shape (3, H, W) or (N, 3, H, W).
    :return: Y in [16/255, 235/255], shape (1, H, W) or (N, 1, H, W), same dtype as ``img``
        (no rounding).
    """
    if img.dim() not in (3, 4) or img.shape[-3] != 3:
        raise ValueError(f"rgb_to_y expects (3, H, W) or (N, 3, H, W) RGB in [0, 1] (got shape {tuple(img.shape)})")
    weights = torch.tensor(_Y_WEIGHTS, dtype=img.dtype, device=img.device).view(3, 1, 1)
    y = (img * weights).sum(dim=-3, keepdim=True) + _Y_OFFSET
    return y / 255.0


def gaussian_kernel_1d(size: int = 11, sigma: float = 1.5, *, dtype: torch.dtype = torch.float64) -> Tensor:
    """The normalised 1-D Gaussian of SSIM (OpenCV ``getGaussianKernel(size, sigma)``), (size,)."""
    coords = torch.arange(size, dtype=dtype) - (size - 1) / 2
    kernel = torch.exp(-(coords**2) / (2 * sigma**2))
    return kernel / kernel.sum()


def gaussian_window(size: int = 11, sigma: float = 1.5, *, dtype: torch.dtype = torch.float64) -> Tensor:
    """The normalised 2-D Gaussian window of SSIM (outer product of :func:`gaussian_kernel_1d`), (size, size)."""
    kernel = gaussian_kernel_1d(size, sigma, dtype=dtype)
    return torch.outer(kernel, kernel)


def _prepare(sr: Tensor, hr: Tensor, crop: int, y_channel: bool, round_uint8: bool, matlab_round_y: bool) -> tuple[Tensor, Tensor]:
    """Both images as float64 (C, H, W) in the 0..255 range, cropped, on Y when asked."""
    pair = []
    for label, img in (("sr", sr), ("hr", hr)):
        if img.dim() == 4:
            if img.shape[0] != 1:
                raise ValueError(f"{label}: one image at a time, (3, H, W) or (1, 3, H, W) (got batch of {img.shape[0]})")
            img = img[0]
        if img.dim() != 3 or img.shape[0] != 3:
            raise ValueError(f"{label}: expected RGB (3, H, W) or (1, 3, H, W) in [0, 1] (got shape {tuple(img.shape)})")
        pair.append(img.detach().to(torch.float64))
    sr64, hr64 = pair
    if sr64.shape != hr64.shape:
        raise ValueError(f"sr and hr differ in shape: {tuple(sr64.shape)} vs {tuple(hr64.shape)}")
    if crop < 0 or 2 * crop >= min(sr64.shape[-2:]):
        raise ValueError(f"crop={crop} leaves nothing of a {sr64.shape[-2]}x{sr64.shape[-1]} image")
    out = []
    for img in (sr64, hr64):
        img = img.clamp(0.0, 1.0) * 255.0
        if round_uint8:
            img = torch.round(img)  # half to even, like numpy's round used by BasicSR's tensor2img
        if crop:
            img = img[:, crop:-crop, crop:-crop]
        if y_channel:
            img = rgb_to_y(img / 255.0) * 255.0
            if matlab_round_y:
                img = torch.floor(img + 0.5)  # MATLAB round (half away from zero; Y > 0)
        out.append(img)
    return out[0], out[1]


def psnr(
    sr: Tensor,
    hr: Tensor,
    *,
    crop: int = 0,
    y_channel: bool = True,
    round_uint8: bool = True,
    matlab_round_y: bool = False,
) -> float:
    """Peak signal-to-noise ratio in dB (peak 255), BasicSR's ``calculate_psnr``.

    :param sr: restored image, float RGB (3, H, W) or (1, 3, H, W) in [0, 1] (clamped here).
    :param hr: ground truth, same layout and size.
    :param crop: pixels removed from each border before scoring (the SR convention: the scale).
    :param y_channel: score Y (BT.601, 16..235) instead of the three RGB channels.
    :param round_uint8: round both images to integer grey levels first (as saved 8-bit images).
    :param matlab_round_y: round Y to integers like MATLAB ``rgb2ycbcr`` on uint8 (published tables).
    :return: PSNR in dB; ``inf`` for identical images.
    """
    a, b = _prepare(sr, hr, crop, y_channel, round_uint8, matlab_round_y)
    mse = float(torch.mean((a - b) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(255.0 * 255.0 / mse)


def _valid_blur(maps: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Separable "valid" Gaussian filtering of (M, H, W) float64 maps: (M, H - 10, W - 10)."""
    half = len(kernel) // 2
    rows = correlate1d(maps, kernel, axis=-2, mode="constant")[:, half:-half]
    return correlate1d(rows, kernel, axis=-1, mode="constant")[:, :, half:-half]


def _ssim_channels(a: Tensor, b: Tensor) -> Tensor:
    """SSIM of each channel of two float64 (C, H, W) images in 0..255; returns (C,).

    The 11x11 window is separable: filtering rows then columns (scipy, float64) equals the 2-D
    "valid" filtering of the reference up to float64 rounding (~1e-11 on the 0..255 scale), at 22
    instead of 121 taps per pixel.
    """
    x, y = a.cpu().numpy(), b.cpu().numpy()
    kernel = gaussian_kernel_1d().numpy()
    channels = x.shape[0]
    blurred = _valid_blur(np.concatenate([x, y, x * x, y * y, x * y]), kernel)  # five maps at once
    mu_a, mu_b, e_aa, e_bb, e_ab = np.split(blurred, 5)
    mu_aa, mu_bb, mu_ab = mu_a * mu_a, mu_b * mu_b, mu_a * mu_b
    var_a, var_b, cov_ab = e_aa - mu_aa, e_bb - mu_bb, e_ab - mu_ab
    ssim_map = ((2 * mu_ab + _SSIM_C1) * (2 * cov_ab + _SSIM_C2)) / (
        (mu_aa + mu_bb + _SSIM_C1) * (var_a + var_b + _SSIM_C2)
    )
    return torch.from_numpy(ssim_map.reshape(channels, -1).mean(axis=1))


def ssim(
    sr: Tensor,
    hr: Tensor,
    *,
    crop: int = 0,
    y_channel: bool = True,
    round_uint8: bool = True,
    matlab_round_y: bool = False,
) -> float:
    """Structural similarity (Wang et al. 2004), BasicSR's ``calculate_ssim``.

    Same arguments as :func:`psnr`. After cropping, both sides must be at least 11 pixels (the window).

    :return: mean SSIM over the "valid" map (and over channels for RGB), at most 1.
    """
    a, b = _prepare(sr, hr, crop, y_channel, round_uint8, matlab_round_y)
    if min(a.shape[-2:]) < 11:
        raise ValueError(f"SSIM needs at least 11x11 pixels after cropping (got {a.shape[-2]}x{a.shape[-1]})")
    return float(_ssim_channels(a, b).mean())
