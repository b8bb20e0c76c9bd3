"""Where data, weights and caches live.

- ``SRCOMPRESS_DATA``: a folder holding datasets by name (``Set5/``, ``Set14/``, ``T91/``, ...).
- ``SRCOMPRESS_WEIGHTS``: a folder holding published checkpoints under their published file names.
- ``SRCOMPRESS_CACHE``: where downloads go (default ``$XDG_CACHE_HOME/srcompress`` or
  ``~/.cache/srcompress``).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir", "data_root", "use_local_copies", "weights_root"]


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name, "").strip()
    return Path(value).expanduser() if value else None


def cache_dir(sub: str = "") -> Path:
    """The cache folder (not created here), optionally a sub-folder of it."""
    root = _env_path("SRCOMPRESS_CACHE")
    if root is None:
        xdg = _env_path("XDG_CACHE_HOME") or Path.home() / ".cache"
        root = xdg / "srcompress"
    return root / sub if sub else root


def data_root(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """Data root: ``explicit`` (recipe ``data.root``), else ``SRCOMPRESS_DATA``, else None."""
    if explicit:
        return Path(explicit).expanduser()
    return _env_path("SRCOMPRESS_DATA")


def weights_root() -> Path | None:
    """The folder named by ``SRCOMPRESS_WEIGHTS``, or None."""
    return _env_path("SRCOMPRESS_WEIGHTS")


def use_local_copies(root: str | os.PathLike[str]) -> None:
    """Point ``SRCOMPRESS_DATA`` / ``SRCOMPRESS_WEIGHTS`` at ``root/data`` / ``root/weights`` where those
    folders exist and the variable is not set already (the tests and benchmarks use ``../shared``)."""
    for name, sub in (("SRCOMPRESS_DATA", "data"), ("SRCOMPRESS_WEIGHTS", "weights")):
        folder = Path(root) / sub
        if folder.is_dir():
            os.environ.setdefault(name, str(folder))
