"""srcompress.data: images, MATLAB-compatible bicubic resizing, degradation, datasets, patches.

Images at every public boundary are float32 RGB tensors in [0, 1], (3, H, W) or (N, 3, H, W).
"""

from srcompress.data.degrade import bicubic_downscale, bicubic_upscale, modcrop
from srcompress.data.images import read_image, save_image
from srcompress.data.imresize import imresize

__all__ = [
    "bicubic_downscale",
    "bicubic_upscale",
    "imresize",
    "modcrop",
    "read_image",
    "save_image",
]
