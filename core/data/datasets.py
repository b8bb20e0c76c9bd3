"""HR image folders and named datasets.

``resolve_dataset("Set5")`` looks for the folder ``Set5/`` in the data root: the ``root`` argument
(recipe ``data.root``), else ``$SRCOMPRESS_DATA``; then in the cache (``$SRCOMPRESS_CACHE/data``);
then, for the datasets whose checksums are known (Set5, Set14, T91, BSD200), downloads and
verifies it into the cache. ``samples`` is built offline from scikit-image's bundled photos.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import overload

import numpy as np
import torch
from PIL import Image

from srcompress.data.catalog import DATASETS, DatasetInfo
from srcompress.data.fetch import install_dataset
from srcompress.data.images import IMAGE_SUFFIXES, image_size, read_image
from srcompress.errors import DataError, UnknownNameError, suggest
from srcompress.paths import cache_dir, data_root

__all__ = ["SAMPLE_IMAGES", "HRFolder", "dataset_info", "list_datasets", "resolve_dataset"]

# scikit-image photos shipped inside its wheel (no network needed), all 8-bit RGB.
SAMPLE_IMAGES = ("astronaut", "chelsea", "coffee", "hubble_deep_field", "immunohistochemistry", "retina", "rocket")
_SAMPLES = "samples"


class HRFolder(Sequence[tuple[str, torch.Tensor]]):
    """The images of one folder as ``(name, image)`` pairs, sorted by file name.

    ``name`` is the file name without suffix; ``image`` a float32 RGB tensor (3, H, W) in [0, 1]
    read by :func:`srcompress.data.read_image` on access (not cached). Files with suffixes
    .png .jpg .jpeg .bmp .tif .tiff (any case) are used; hidden files and sub-folders are ignored.

    :raises DataError: the folder is missing, holds no images, or two files share a name.
    """

    def __init__(self, path: str | os.PathLike[str], *, name: str | None = None) -> None:
        self.root = Path(path)
        self.name = name or self.root.name
        if not self.root.is_dir():
            raise DataError(f"image folder not found: {self.root}; check the path or SRCOMPRESS_DATA / recipe data.root")
        files = sorted(
            (p for p in self.root.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES),
            key=lambda p: p.name,
        )
        if not files:
            raise DataError(f"no PNG/JPEG/BMP/TIFF images in {self.root}; put the dataset's HR images in that folder")
        by_stem: dict[str, Path] = {}
        for file in files:
            if file.stem in by_stem:
                raise DataError(f"{by_stem[file.stem].name} and {file.name} in {self.root} share the name {file.stem!r}; keep one")
            by_stem[file.stem] = file
        self.paths: tuple[Path, ...] = tuple(files)
        self.names: tuple[str, ...] = tuple(p.stem for p in files)

    def __len__(self) -> int:
        return len(self.paths)

    @overload
    def __getitem__(self, index: int) -> tuple[str, torch.Tensor]: ...
    @overload
    def __getitem__(self, index: slice) -> list[tuple[str, torch.Tensor]]: ...
    def __getitem__(self, index: int | slice) -> tuple[str, torch.Tensor] | list[tuple[str, torch.Tensor]]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return self.names[index], read_image(self.paths[index])

    def size(self, index: int) -> tuple[int, int]:
        """(height, width) of image ``index`` from its file header (no decoding)."""
        return image_size(self.paths[index])

    def __repr__(self) -> str:
        return f"HRFolder({self.name!r}, {len(self)} images, root={str(self.root)!r})"


def list_datasets() -> list[str]:
    """Names :func:`resolve_dataset` knows: the catalog (Set5, Set14, ...) and ``samples``."""
    return [*DATASETS, _SAMPLES]


def dataset_info(name: str) -> DatasetInfo:
    """The catalog entry of a named dataset (case-insensitive).

    :raises UnknownNameError: listing the known names and the closest match.
    """
    for known, info in DATASETS.items():
        if known.lower() == name.lower():
            return info
    raise UnknownNameError(suggest(name, list_datasets(), "dataset"))


def _build_samples(target: Path) -> Path:
    """Write the scikit-image sample photos as PNGs into ``target`` (atomically)."""
    import skimage.data

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent))
    try:
        images = staging / "images"  # mkdtemp's own folder is private (0700): rename a normal one
        images.mkdir()
        for name in SAMPLE_IMAGES:
            pixels = np.asarray(getattr(skimage.data, name)(), dtype=np.uint8)
            Image.fromarray(pixels[..., :3]).save(images / f"{name}.png", compress_level=1)
        try:
            os.rename(images, target)
        except OSError:
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _samples() -> HRFolder:
    target = cache_dir("data") / _SAMPLES
    if not target.is_dir():
        try:
            _build_samples(target)
        except OSError as exc:
            raise DataError(f"cannot write the sample images to {target} ({exc}); set SRCOMPRESS_CACHE to a writable folder") from exc
    return HRFolder(target, name=_SAMPLES)


def _missing(info: DatasetInfo, base: Path | None) -> str:
    where = f"{base / info.name}/" if base is not None else f"<data root>/{info.name}/ (set SRCOMPRESS_DATA or recipe data.root)"
    return f"get {info.name} from {info.source} and put its HR images in {where}"


def resolve_dataset(name: str, root: str | os.PathLike[str] | None = None, *, download: bool = True) -> HRFolder:
    """The HR images of a named dataset as an :class:`HRFolder`.

    :param name: a name from :func:`list_datasets` (case-insensitive), e.g. ``"Set5"``.
    :param root: the data root (recipe ``data.root``); default ``$SRCOMPRESS_DATA``.
    :param download: allow a verified download into the cache when the folder is nowhere.
    :raises UnknownNameError: unknown name (lists the known ones and the closest match).
    :raises DataError: the data root does not exist, or the dataset is not there and cannot be
        downloaded (the message says where to get it and where to put it).
    :raises srcompress.download.DownloadError: the download failed or did not verify.
    """
    if name.lower() == _SAMPLES:
        return _samples()
    info = dataset_info(name)
    base = data_root(root)
    if base is not None:
        if not base.is_dir():
            raise DataError(
                f"data root {base} does not exist; set SRCOMPRESS_DATA (or the recipe's data.root) to the folder holding {info.name}/"
            )
        if (base / info.name).is_dir():
            return HRFolder(base / info.name, name=info.name)
    cached = cache_dir("data") / info.name
    if cached.is_dir():
        return HRFolder(cached, name=info.name)
    searched = f"{base / info.name} nor {cached}" if base is not None else f"{cached} (no data root set)"
    if not info.downloadable:
        raise DataError(f"dataset {info.name} not found in {searched}; srcompress cannot download it with a verified checksum: {_missing(info, base)}")
    if not download:
        raise DataError(f"dataset {info.name} not found in {searched} and downloads are off: {_missing(info, base)}")
    install_dataset(cached, files=info.files, archive=info.archive, offline_hint=f"Offline? {_missing(info, base)}.")
    return HRFolder(cached, name=info.name)
