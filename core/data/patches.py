"""Training pairs: random HR patches and their bicubic LR, deterministic under a seed.

Rules:

- Item ``i`` uses image ``i % n_images`` (the images of all sources, in order); ``length``
  defaults to ``n_images`` (one patch per image per epoch).
- The HR patch (``patch`` x ``patch``) starts at a random multiple of ``scale``, so it lines up
  with the LR grid of the whole image; the LR patch is exactly the corresponding region of
  ``bicubic_downscale(modcrop(image))`` (computed on the fly from the patch plus a margin, or from
  the cached whole LR image: both give the same values).
- Augmentation (the same for LR and HR): horizontal flip, vertical flip and transpose, each with
  probability 1/2, i.e. all 8 flips/90-degree rotations equally likely.
- Randomness comes from a generator seeded by ``(seed, epoch, i)`` only, so DataLoader workers,
  their number and the order in which items are fetched do not change a batch. Call
  :meth:`PatchDataset.set_epoch` every epoch for new patches.
- Images smaller than ``patch`` on either side are skipped, with one warning naming them; if none
  is left, :class:`~srcompress.errors.DataError`.
- Decoded images are kept in memory on first use (per process; 8-bit images as uint8).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from srcompress.data.datasets import HRFolder, list_datasets, resolve_dataset
from srcompress.data.degrade import bicubic_downscale, modcrop
from srcompress.data.images import read_image
from srcompress.errors import DataError

__all__ = ["PatchDataset"]

_MAX_LISTED = 10


def _open_source(source: str | os.PathLike[str], root: str | os.PathLike[str] | None) -> HRFolder:
    """A dataset name (``"T91"``, resolved like :func:`resolve_dataset`) or a folder path.

    A string that names a dataset is a dataset even if a folder of that name exists in the
    working directory; write ``./T91`` for the folder.
    """
    if isinstance(source, os.PathLike) or os.sep in source:
        return HRFolder(source)
    if source.lower() in (name.lower() for name in list_datasets()) or not Path(source).is_dir():
        return resolve_dataset(source, root)
    return HRFolder(source)


def _compact(image: torch.Tensor) -> torch.Tensor:
    """uint8 if the image is exactly on 8-bit levels (4x less memory), else float32."""
    levels = (image * 255).round()
    return levels.to(torch.uint8) if torch.equal(levels / 255, image) else image


def _expand(image: torch.Tensor) -> torch.Tensor:
    return image.float() / 255 if image.dtype == torch.uint8 else image


class PatchDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Random (LR, HR) training patches from HR image folders; see the module documentation.

    :param sources: dataset names (resolved with ``root``, like ``resolve_dataset``) or folders
        (a ``Path``, a string with a ``/``, or an existing folder that is not a dataset name).
    :param scale: integer SR factor.
    :param patch: HR patch size in pixels; must be a multiple of ``scale``.
    :param root: data root for named sources (recipe ``data.root``).
    :param augment: random flips and 90-degree rotations.
    :param seed: base seed of the per-item generators.
    :param length: items per epoch (default: the number of usable images).
    :param cache_lr: keep each image's whole LR in memory instead of recomputing patches' LR.
    :param quantize_lr: round the LR to 8-bit levels like saved benchmark LR files.

    ``__getitem__(i)`` returns ``(lr, hr)``: float32 (3, patch/scale, patch/scale) and
    (3, patch, patch) in [0, 1].
    """

    def __init__(
        self,
        sources: Sequence[str | os.PathLike[str]],
        scale: int,
        patch: int,
        *,
        root: str | os.PathLike[str] | None = None,
        augment: bool = True,
        seed: int = 0,
        length: int | None = None,
        cache_lr: bool = False,
        quantize_lr: bool = True,
    ) -> None:
        if isinstance(sources, (str, os.PathLike)):
            sources = [sources]
        if int(scale) != scale or scale < 1:
            raise DataError(f"scale must be a positive integer (got {scale!r})")
        if patch < scale or patch % scale:
            raise DataError(f"patch {patch} is not a positive multiple of scale {scale}; use e.g. {max(1, patch // scale) * scale}")
        if length is not None and length < 1:
            raise DataError(f"length must be >= 1 (got {length})")
        self.scale, self.patch = int(scale), int(patch)
        self.augment, self.seed, self.cache_lr, self.quantize_lr = augment, int(seed), cache_lr, quantize_lr
        self.epoch = 0
        self.paths: list[Path] = []
        self.names: list[str] = []
        self.sizes: list[tuple[int, int]] = []
        self._select_images([_open_source(source, root) for source in sources])
        self.length = int(length) if length is not None else len(self.paths)
        self._hr: dict[int, torch.Tensor] = {}
        self._lr: dict[int, torch.Tensor] = {}

    def _select_images(self, folders: list[HRFolder]) -> None:
        skipped = []
        for folder in folders:
            for index, path in enumerate(folder.paths):
                height, width = folder.size(index)
                if height < self.patch or width < self.patch:
                    skipped.append(f"{folder.name}/{path.name} ({height}x{width})")
                    continue
                self.paths.append(path)
                self.names.append(f"{folder.name}/{folder.names[index]}")
                self.sizes.append((height, width))
        where = ", ".join(str(folder.root) for folder in folders)
        if not self.paths:
            raise DataError(f"no image in {where} is at least {self.patch}x{self.patch} pixels; use a smaller patch size")
        if skipped:
            listed = ", ".join(skipped[:_MAX_LISTED]) + (f" and {len(skipped) - _MAX_LISTED} more" if len(skipped) > _MAX_LISTED else "")
            warnings.warn(f"skipping {len(skipped)} image(s) smaller than the {self.patch}px patch: {listed}", stacklevel=3)

    def set_epoch(self, epoch: int) -> None:
        """Draw new patches: the generator of item ``i`` is seeded by ``(seed, epoch, i)``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def _image(self, index: int) -> torch.Tensor:
        if index not in self._hr:
            self._hr[index] = _compact(modcrop(read_image(self.paths[index]), self.scale))
        return _expand(self._hr[index])

    def _lr_patch(self, index: int, hr: torch.Tensor, top: int, left: int) -> torch.Tensor:
        """LR of the HR region at (top, left): the matching window of the whole image's LR."""
        s, p = self.scale, self.patch
        if self.cache_lr:
            if index not in self._lr:
                self._lr[index] = _compact(bicubic_downscale(hr, s, quantize=self.quantize_lr))
            return _expand(self._lr[index])[:, top // s : (top + p) // s, left // s : (left + p) // s]
        # The bicubic kernel of a 1/s downscale reaches 2s + 1 HR pixels beyond an LR pixel's
        # footprint: a margin of 3s HR pixels (clipped at the image border, where the symmetric
        # padding is the same as for the whole image) gives exactly the whole-image LR values.
        margin = 3 * s
        y0, x0 = max(0, top - margin), max(0, left - margin)
        y1, x1 = min(hr.shape[1], top + p + margin), min(hr.shape[2], left + p + margin)
        lr = bicubic_downscale(hr[:, y0:y1, x0:x1], s, quantize=self.quantize_lr)
        return lr[:, (top - y0) // s : (top - y0 + p) // s, (left - x0) // s : (left - x0 + p) // s]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= i < self.length:
            raise IndexError(f"PatchDataset index {i} out of range (length {self.length})")
        rng = np.random.default_rng([self.seed, self.epoch, i])
        index = i % len(self.paths)
        hr = self._image(index)
        s, p = self.scale, self.patch
        top = int(rng.integers(0, (hr.shape[1] - p) // s + 1)) * s
        left = int(rng.integers(0, (hr.shape[2] - p) // s + 1)) * s
        lr = self._lr_patch(index, hr, top, left)
        hr = hr[:, top : top + p, left : left + p]
        if self.augment:
            hflip, vflip, transpose = (bool(v) for v in rng.integers(0, 2, size=3))
            lr, hr = (_dihedral(t, hflip, vflip, transpose) for t in (lr, hr))
        return lr.contiguous(), hr.contiguous()


def _dihedral(t: torch.Tensor, hflip: bool, vflip: bool, transpose: bool) -> torch.Tensor:
    if hflip:
        t = t.flip(-1)
    if vflip:
        t = t.flip(-2)
    if transpose:
        t = t.transpose(-2, -1)
    return t
