"""Fast Fourier Convolution (FFC) as used in F2SRGAN's residual blocks.

The input's first ``in_local`` channels are the local part, the rest the global part. Split points
are read from the layers at run time and taken with positive slices, so a pruned FFC keeps working
and torch-pruning can follow the split (negative slices and ``torch.split`` break its graph; FACTS.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from srcompress.plugins.models.f2srgan.fourier import FourierUnit
from srcompress.plugins.models.f2srgan.layers import SeparableConv2d

__all__ = ["FFC", "SpectralTransform"]


class SpectralTransform(nn.Module):
    """The FFC's global->global path: 1x1 reduce + ReLU, Fourier unit (+ local Fourier unit), 1x1 expand.

    ``conv1``: separable 1x1 ``in -> out // 2`` (no depthwise bias) + ReLU; ``fu``: global
    :class:`FourierUnit`; ``lfu``: Fourier unit on the first quarter of the channels cut into 2x2
    spatial quadrants stacked as channels (its output is tiled back 2x2, zero-padded on odd sizes);
    ``conv2``: separable 1x1 ``out // 2 -> out``. Output ``conv2(x + fu(x) + lfu(x))``.
    """

    def __init__(self, in_channels: int, out_channels: int, *, local_unit: bool = True) -> None:
        super().__init__()
        hidden = out_channels // 2
        self.conv1 = SeparableConv2d(in_channels, hidden, 1, bias=False)
        self.relu = nn.ReLU()
        self.fu = FourierUnit(hidden, hidden)
        self.lfu = FourierUnit(hidden, hidden) if local_unit else None
        self.conv2 = SeparableConv2d(hidden, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.conv1(x))
        out = x + self.fu(x)
        if self.lfu is not None:
            out = out + self._local(x)
        return self.conv2(out)

    def _local(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2], x.shape[-1]
        half_h, half_w = height // 2, width // 2
        quarter = x[:, : x.shape[1] // 4]
        top, bottom = quarter[:, :, :half_h], quarter[:, :, half_h : 2 * half_h]
        rows = torch.cat([top, bottom], dim=1)
        tiles = torch.cat([rows[..., :half_w], rows[..., half_w : 2 * half_w]], dim=1)
        local = self.lfu(tiles).repeat(1, 1, 2, 2)
        return F.pad(local, (0, width - 2 * half_w, 0, height - 2 * half_h))


class FFC(nn.Module):
    """FFC with local/global paths (``ratio`` of the channels global, in and out), inline tensors.

    ``out = cat([l2l(x_l) + g2l(x_g), l2g(x_l) + g2g(x_g)], dim=1)``; ``l2l``, ``l2g``, ``g2l`` are
    separable 3x3 convs with reflect padding, ``g2g`` a :class:`SpectralTransform`.

    :param in_channels: input channels; the last ``int(in_channels * ratio)`` are global.
    :param out_channels: output channels; the last ``int(out_channels * ratio)`` are global.
    """

    def __init__(self, in_channels: int, out_channels: int, *, ratio: float = 0.5, local_unit: bool = True) -> None:
        super().__init__()
        in_g, out_g = int(in_channels * ratio), int(out_channels * ratio)
        in_l, out_l = in_channels - in_g, out_channels - out_g
        if min(in_g, out_g, in_l, out_l) < 1:
            raise ValueError(f"FFC({in_channels}->{out_channels}, ratio {ratio}) needs >= 1 local and global channel each way")
        self.convl2l = SeparableConv2d(in_l, out_l, 3, padding_mode="reflect")
        self.convl2g = SeparableConv2d(in_l, out_g, 3, padding_mode="reflect")
        self.convg2l = SeparableConv2d(in_g, out_l, 3, padding_mode="reflect")
        self.convg2g = SpectralTransform(in_g, out_g, local_unit=local_unit)

    @property
    def out_channels(self) -> int:
        return self.convl2l.pointwise.out_channels + self.convl2g.pointwise.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        split = self.convl2l.depthwise.in_channels  # read at run time: follows pruning
        x_l, x_g = x[:, :split], x[:, split:]
        out_l = self.convl2l(x_l) + self.convg2l(x_g)
        out_g = self.convl2g(x_l) + self.convg2g(x_g)
        return torch.cat([out_l, out_g], dim=1)
