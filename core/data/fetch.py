"""Verified dataset downloads, installed atomically.

A dataset is installed into a temporary folder beside its target (``.<name>.*.part``) and renamed
into place only once every file has been verified, so an interrupted or failed download leaves
nothing that looks like a dataset. Two kinds of sources:

- :class:`RemoteFile` lists: one URL per image, each checked against the SHA-256 of its bytes, or,
  for sources published in another lossless format (T91's BMPs), against the SHA-256 of its
  decoded RGB pixels (:func:`pixels_sha256`) and then stored as PNG;
- :class:`RemoteArchive`: one zip or tar file checked against its SHA-256, then extracted with
  path checks (no absolute paths, no ``..``, no links outside the folder).

Nothing is ever installed unverified.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from attrs import define
from PIL import Image

from srcompress.data.images import IMAGE_SUFFIXES
from srcompress.download import DownloadError, download
from srcompress.errors import DataError

__all__ = ["RemoteArchive", "RemoteFile", "install_dataset", "pixels_sha256"]

# tarfile's "data" filter raises these (a TarError subclass) for absolute paths, "..", links out.
_TAR_UNSAFE: tuple[type[Exception], ...] = (tarfile.FilterError,) if hasattr(tarfile, "FilterError") else ()


@define(frozen=True, kw_only=True)
class RemoteFile:
    """One image of a dataset: where to get it and how to verify it.

    Exactly one of ``sha256`` (of the downloaded bytes; saved unchanged as ``name``) and
    ``pixels_sha256`` (of the decoded RGB pixels, see :func:`pixels_sha256`; saved as PNG under
    ``name``) is set.
    """

    url: str
    name: str
    sha256: str = ""
    pixels_sha256: str = ""

    def __attrs_post_init__(self) -> None:
        if bool(self.sha256) == bool(self.pixels_sha256):
            raise ValueError(f"RemoteFile {self.name}: give exactly one of sha256 and pixels_sha256")


@define(frozen=True, kw_only=True)
class RemoteArchive:
    """A zip/tar archive of a dataset; ``subdir`` is the folder inside it holding the images."""

    url: str
    sha256: str
    subdir: str = ""


def pixels_sha256(image: Image.Image) -> str:
    """SHA-256 of ``"{H}x{W}x3\\n"`` followed by the image's 8-bit RGB pixels (row-major, RGB)."""
    array = np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))
    height, width, _ = array.shape
    return hashlib.sha256(f"{height}x{width}x3\n".encode() + array.tobytes()).hexdigest()


def _fetch_bytes(url: str, offline_hint: str, timeout: float) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (URLs from our tables)
            return response.read()
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise DownloadError(f"cannot download {url} ({exc}). {offline_hint}") from exc


def _fetch_file(item: RemoteFile, folder: Path, offline_hint: str, timeout: float) -> None:
    dest = folder / item.name
    if item.sha256:
        download(item.url, dest, item.sha256, offline_hint=offline_hint, timeout=timeout)
        return
    data = _fetch_bytes(item.url, offline_hint, timeout)
    try:
        with Image.open(io.BytesIO(data)) as image:
            actual = pixels_sha256(image)
            if actual == item.pixels_sha256.lower():
                image.convert("RGB").save(dest, format="PNG")
                return
    except (OSError, SyntaxError, ValueError) as exc:
        raise DownloadError(f"{item.url} is not a readable image ({exc}); nothing was installed. {offline_hint}") from exc
    raise DownloadError(
        f"pixel SHA-256 mismatch for {item.url}: expected {item.pixels_sha256}, got {actual}; nothing was installed. {offline_hint}"
    )


def _safe_members_zip(archive: zipfile.ZipFile, dest: Path) -> None:
    for member in archive.namelist():
        target = (dest / member).resolve()
        if member.startswith(("/", "\\")) or not target.is_relative_to(dest.resolve()):
            raise DataError(f"archive member {member!r} would be written outside {dest}; refusing to extract it")


def _extract_tar(archive: tarfile.TarFile, dest: Path) -> None:
    if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4: the standard safe filter
        archive.extractall(dest, filter="data")
        return
    for member in archive.getmembers():
        target = (dest / member.name).resolve()
        unsafe = member.issym() or member.islnk() or member.isdev() or member.name.startswith("/")
        if unsafe or not target.is_relative_to(dest.resolve()):
            raise DataError(f"archive member {member.name!r} is a link or lies outside {dest}; refusing to extract it")
    archive.extractall(dest)


def _extract(archive_path: Path, dest: Path, url: str) -> None:
    """Extract a zip or tar (any compression) into ``dest`` with path checks."""
    dest.mkdir(parents=True)
    try:
        if zipfile.is_zipfile(archive_path):
            with zipfile.ZipFile(archive_path) as archive:
                _safe_members_zip(archive, dest)
                archive.extractall(dest)
        else:
            with tarfile.open(archive_path, "r:*") as archive:
                _extract_tar(archive, dest)
    except _TAR_UNSAFE as exc:
        raise DataError(f"archive from {url} has a member outside the folder or a link ({exc}); refusing to extract it") from exc
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        reason = " ".join(str(exc).split())  # tarfile lists one line per compression it tried
        raise DataError(f"archive from {url} is corrupted or not a zip/tar ({reason}); nothing was installed") from exc


def _install_archive(archive: RemoteArchive, staging: Path, offline_hint: str, timeout: float) -> Path:
    archive_path = download(archive.url, staging / "archive", archive.sha256, offline_hint=offline_hint, timeout=timeout)
    extracted = staging / "extracted"
    _extract(archive_path, extracted, archive.url)
    archive_path.unlink()
    images = (extracted / archive.subdir) if archive.subdir else extracted
    if not images.is_dir():
        raise DataError(f"archive from {archive.url} has no folder {archive.subdir!r}; nothing was installed")
    return images


def _count_images(folder: Path) -> int:
    return sum(1 for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def install_dataset(
    target: Path,
    *,
    files: Sequence[RemoteFile] = (),
    archive: RemoteArchive | None = None,
    offline_hint: str,
    timeout: float = 60.0,
) -> Path:
    """Download, verify and install a dataset's images as the folder ``target``; return ``target``.

    Give ``files`` (one verified URL per image) or ``archive``. The images are assembled in a
    temporary folder beside ``target`` and renamed to ``target`` only when all are verified.
    If ``target`` appeared meanwhile (another process), that copy is kept.

    :raises DownloadError: a download failed or a checksum does not match (with ``offline_hint``).
    :raises DataError: the archive is corrupted, unsafe, or holds no images.
    """
    if bool(files) == (archive is not None):
        raise ValueError("install_dataset needs exactly one of files and archive")
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent))
    try:
        if archive is not None:
            images = _install_archive(archive, staging, offline_hint, timeout)
        else:
            images = staging / "files"
            images.mkdir()
            for item in files:
                _fetch_file(item, images, offline_hint, timeout)
        if _count_images(images) == 0:
            raise DataError(f"the download for {target.name} holds no PNG/JPEG/BMP/TIFF images; nothing was installed")
        try:
            os.rename(images, target)
        except OSError:
            if not target.is_dir():
                raise
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)
