"""Where data, weights and caches live.

- ``SRCOMPRESS_DATA``: a folder holding datasets by name (``Set5/``, ``Set14/``, ``T91/``, ...).
- ``SRCOMPRESS_WEIGHTS``: a folder holding published checkpoints under their published file names.
- ``SRCOMPRESS_CACHE``: where downloads go (default ``$XDG_CACHE_HOME/srcompress`` or
  ``~/.cache/srcompress``).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir", "data_root", "weights_root"]


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
