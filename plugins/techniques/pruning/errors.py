"""The pruning plugin's error: one line naming the layer or group and the fix."""

from __future__ import annotations

from srcompress.errors import SrcompressError

__all__ = ["PruningError"]


class PruningError(SrcompressError):
    """A model, config or layer the pruner cannot handle; the message names it and the fix
    (usually ``ignore: [NAME]`` in the prune stage)."""
