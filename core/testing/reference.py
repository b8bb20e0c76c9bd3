"""The reference model techniques and backends are checked on: a tiny conv + PixelShuffle SR net.

:class:`ReferenceSR` is the smallest network that still has what SR techniques care about: a head
conv, one residual block (two 3x3 convs around a ReLU, added back to the trunk), a tail conv feeding
a ``PixelShuffle(scale)`` (so its output channels come in groups of ``scale**2``) and a bilinear
skip of the input. It maps float32 RGB NCHW images in [0, 1] of shape (N, 3, H, W) to
(N, 3, scale*H, scale*W). With the default width of 8 it has 2,268 parameters at x2 (4,896 at x4).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ReferenceSR", "reference_model"]


class ReferenceSR(nn.Module):
    """head conv -> residual block (conv, ReLU, conv, + trunk) -> tail conv -> PixelShuffle, + bilinear skip.

    :param scale: upscaling factor (2, 3, 4, ...).
    :param width: trunk channels.
    """

    def __init__(self, scale: int = 2, width: int = 8) -> None:
        super().__init__()
        self.scale = scale
        self.head = nn.Conv2d(3, width, 3, padding=1)
        self.body1 = nn.Conv2d(width, width, 3, padding=1)
        self.body2 = nn.Conv2d(width, width, 3, padding=1)
        self.tail = nn.Conv2d(width, 3 * scale * scale, 3, padding=1)
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
        trunk = self.head(x)
        trunk = trunk + self.body2(torch.relu(self.body1(trunk)))
        return skip + self.shuffle(self.tail(trunk))


def reference_model(scale: int = 2, width: int = 8, seed: int = 0) -> ReferenceSR:
    """A :class:`ReferenceSR` with deterministic weights (``torch.manual_seed(seed)`` locally)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ReferenceSR(scale, width)
