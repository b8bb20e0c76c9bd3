"""The ``bicubic`` model: MATLAB-compatible bicubic upscaling, the classic SR baseline.

It has no parameters and goes through the same path as every model (eval, reports), so the table
of any run starts from the published bicubic numbers (Set5 x4: 28.43 dB PSNR-Y).
"""

from __future__ import annotations

from torch import Tensor, nn

from srcompress.data import imresize
from srcompress.entries import ModelEntry, ModelHints, NoOptions
from srcompress.hookspecs import hookimpl

__all__ = ["Bicubic", "build", "srcompress_models"]

SCALES = (2, 3, 4)


class Bicubic(nn.Module):
    """Upscale (N, 3, H, W) images in [0, 1] by ``scale`` with MATLAB's bicubic kernel (not clamped)."""

    def __init__(self, scale: int) -> None:
        super().__init__()
        self.scale = int(scale)

    def forward(self, x: Tensor) -> Tensor:
        return imresize(x, float(self.scale))

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


def build(scale: int, options: NoOptions) -> Bicubic:
    """Build the bicubic upscaler for ``scale`` (any positive integer; 2, 3, 4 are advertised)."""
    return Bicubic(scale)


@hookimpl
def srcompress_models() -> list[ModelEntry]:
    return [
        ModelEntry(
            name="bicubic",
            build=build,
            scales=SCALES,
            options_cls=NoOptions,
            hints=lambda model: ModelHints(),
            description="MATLAB-compatible bicubic upscaling (no parameters): the classic baseline",
        )
    ]
