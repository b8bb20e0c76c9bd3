"""Built-in quality metrics, registered through the ``srcompress_metrics`` hook like any plugin.

Every ``compute(sr, hr, scale, *, crop=None)`` takes float RGB (1, 3, H, W) tensors in [0, 1] and
shaves ``crop`` pixels from each border (``None``: the SR convention, ``scale``). Images are rounded
to integer grey levels first, as saved 8-bit outputs are.

- ``psnr`` / ``ssim``: on Y (BT.601, 16..235), BasicSR's ``calculate_psnr/ssim(test_y_channel=True)``.
- ``psnr_rgb``: PSNR over the three RGB channels.
- ``niqe``: no-reference (``hr`` is ignored), on Y; ``None`` (with a warning) for images with fewer than two
  whole 96x96 blocks after the shave, or too flat to score.
- ``lpips``: AlexNet LPIPS; ``None`` (with a :class:`~srcompress.measure.MetricSkippedWarning`) when
  torchvision's AlexNet weights are not in the torch hub cache.
"""

from __future__ import annotations

import warnings

from torch import Tensor

from srcompress.entries import MetricEntry
from srcompress.hookspecs import hookimpl
from srcompress.measure import MetricSkippedWarning, NiqeUndefinedError, lpips_distance, niqe, psnr, ssim

__all__ = ["srcompress_metrics"]


def _shave(scale: int, crop: int | None) -> int:
    return scale if crop is None else crop


def psnr_y(sr: Tensor, hr: Tensor, scale: int, *, crop: int | None = None) -> float:
    """PSNR-Y in dB, shave = scale."""
    return psnr(sr, hr, crop=_shave(scale, crop), y_channel=True)


def ssim_y(sr: Tensor, hr: Tensor, scale: int, *, crop: int | None = None) -> float:
    """SSIM-Y, shave = scale."""
    return ssim(sr, hr, crop=_shave(scale, crop), y_channel=True)


def psnr_rgb(sr: Tensor, hr: Tensor, scale: int, *, crop: int | None = None) -> float:
    """PSNR over R, G, B in dB, shave = scale."""
    return psnr(sr, hr, crop=_shave(scale, crop), y_channel=False)


def niqe_y(sr: Tensor, hr: Tensor, scale: int, *, crop: int | None = None) -> float | None:
    """NIQE of ``sr`` on Y (``hr`` unused), shave = scale; None when it has no value (see niqe_of_y)."""
    del hr
    try:
        return niqe(sr, crop=_shave(scale, crop))
    except NiqeUndefinedError as exc:  # too small (T91 has 129x142 images) or flat: skipped, noted
        warnings.warn(f"NIQE skipped: {exc}", MetricSkippedWarning, stacklevel=2)
        return None


def lpips_alex(sr: Tensor, hr: Tensor, scale: int, *, crop: int | None = None) -> float | None:
    """LPIPS (AlexNet), shave = scale; None when the trunk weights are not available offline."""
    return lpips_distance(sr, hr, crop=_shave(scale, crop), net="alex")


@hookimpl
def srcompress_metrics() -> list[MetricEntry]:
    return [
        MetricEntry(name="psnr", compute=psnr_y, higher_is_better=True,
                    description="PSNR on Y (BT.601), dB, shave = scale (BasicSR test_y_channel)"),
        MetricEntry(name="ssim", compute=ssim_y, higher_is_better=True,
                    description="SSIM on Y (BT.601), shave = scale (BasicSR test_y_channel)"),
        MetricEntry(name="psnr_rgb", compute=psnr_rgb, higher_is_better=True,
                    description="PSNR over RGB, dB, shave = scale"),
        MetricEntry(name="niqe", compute=niqe_y, higher_is_better=False,
                    description="NIQE on Y, no-reference (MATLAB-faithful), shave = scale"),
        MetricEntry(name="lpips", compute=lpips_alex, higher_is_better=False,
                    description="LPIPS v0.1 AlexNet, shave = scale; skipped without the AlexNet weights"),
    ]
