"""Verified downloads: SHA-256 checked, written atomically, with an offline-friendly error."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from srcompress.errors import CheckpointError, SrcompressError

__all__ = ["DownloadError", "download", "sha256_of"]


class DownloadError(SrcompressError):
    """A download failed or its SHA-256 does not match."""


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, dest: Path, sha256: str, *, offline_hint: str, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` and verify its SHA-256; return ``dest``.

    The file is written to a temporary file beside ``dest`` and renamed only once its checksum
    matches, so a failed or interrupted download leaves nothing behind. ``offline_hint`` tells the
    user how to provide the file without network (e.g. "put F2SRGAN_4x.pt in $SRCOMPRESS_WEIGHTS").
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (https URLs from our tables)
                shutil.copyfileobj(response, out)
        actual = sha256_of(tmp)
        if actual != sha256.lower():
            raise DownloadError(
                f"SHA-256 mismatch for {url}: expected {sha256}, got {actual}; the file was discarded. "
                f"{offline_hint}"
            )
        os.replace(tmp, dest)
        return dest
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise DownloadError(f"cannot download {url} ({exc}). {offline_hint}") from exc
    finally:
        tmp.unlink(missing_ok=True)


def verify(path: Path, sha256: str) -> None:
    """Raise :class:`CheckpointError` naming ``path`` if its SHA-256 is not ``sha256``."""
    actual = sha256_of(path)
    if actual != sha256.lower():
        raise CheckpointError(f"{path}: SHA-256 mismatch (expected {sha256}, got {actual}); the file is corrupted or not the published one")
