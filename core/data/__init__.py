"""srcompress.data: images, MATLAB-compatible bicubic resizing, degradation, datasets, patches.

Images at every public boundary are float32 RGB tensors in [0, 1], (3, H, W) or (N, 3, H, W).
"""

from srcompress.data.catalog import DatasetInfo
from srcompress.data.datasets import HRFolder, dataset_info, list_datasets, resolve_dataset
from srcompress.data.degrade import bicubic_downscale, bicubic_upscale, modcrop, quantize_8bit
from srcompress.data.images import image_size, read_image, save_image
from srcompress.data.imresize import imresize
from srcompress.data.patches import PatchDataset

__all__ = [
    "DatasetInfo",
    "HRFolder",
    "PatchDataset",
    "bicubic_downscale",
    "bicubic_upscale",
    "dataset_info",
    "image_size",
    "imresize",
    "list_datasets",
    "modcrop",
    "quantize_8bit",
    "read_image",
    "resolve_dataset",
    "save_image",
]
