"""The classic SR degradation: top-left modcrop, then MATLAB-compatible bicubic downscaling.

This is how the published benchmark LR images are made (HR cropped to a multiple of the scale,
``imresize(hr, 1/s, 'bicubic')`` in MATLAB, saved as 8-bit): with ``quantize=True``
:func:`bicubic_downscale` reproduces those files (see ``tests/test_data_degrade.py``).
"""

from __future__ import annotations

import torch

from srcompress.data.imresize import imresize

__all__ = ["bicubic_downscale", "bicubic_upscale", "modcrop", "quantize_8bit"]


def _check_scale(scale: int) -> int:
    if isinstance(scale, bool) or int(scale) != scale or scale < 1:
        raise ValueError(f"scale must be a positive integer (got {scale!r})")
    return int(scale)


def modcrop(img: torch.Tensor, scale: int) -> torch.Tensor:
    """Crop the bottom/right so height and width are multiples of ``scale`` (keeps the top-left).

    Works on any (..., H, W) tensor; returns a view.
    """
    scale = _check_scale(scale)
    height, width = img.shape[-2:]
    if height < scale or width < scale:
        raise ValueError(f"image of {height}x{width} is smaller than the scale {scale}")
    return img[..., : height - height % scale, : width - width % scale]


def quantize_8bit(img: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1] and round to the 256 levels of an 8-bit image (``round(x * 255) / 255``)."""
    return (img.clamp(0, 1) * 255).round() / 255


def bicubic_downscale(hr: torch.Tensor, scale: int, *, quantize: bool = True) -> torch.Tensor:
    """LR image of an HR image: :func:`modcrop`, MATLAB bicubic ``imresize(1/scale)``, clamp to [0, 1].

    :param hr: float RGB images in [0, 1], (3, H, W) or (N, 3, H, W), any device.
    :param scale: integer downscaling factor.
    :param quantize: round to 8-bit levels like the reference LR files (``round(x*255)/255``);
        False keeps the full-precision result (clamped to [0, 1]).
    :returns: (3, H // scale, W // scale) or (N, 3, H // scale, W // scale), same dtype as ``hr``.
    """
    scale = _check_scale(scale)
    lr = imresize(modcrop(hr, scale), 1.0 / scale)
    return quantize_8bit(lr) if quantize else lr.clamp(0, 1)


def bicubic_upscale(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """Bicubic (MATLAB-compatible) upscaling by an integer ``scale``, clamped to [0, 1].

    :param lr: float RGB images in [0, 1], (3, h, w) or (N, 3, h, w), any device.
    :returns: (..., 3, scale*h, scale*w), same dtype; not rounded.
    """
    scale = _check_scale(scale)
    return imresize(lr, float(scale)).clamp(0, 1)
