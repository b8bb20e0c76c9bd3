"""F2SRGAN family model plugin: ``f2srgan``, ``f2srgan_student``, ``light_f2srgan``.

Registered models (all map float32 RGB in [0, 1] to float32 RGB in [0, 1], x2 or x4):

- ``f2srgan``: the F2SRGAN generator (16 blocks, FFC in the even blocks). ``weights: official``
  loads the authors' x2 / x4 files (F2SRGAN_2x.pt: one upsampling stage; F2SRGAN_4x.pt).
- ``f2srgan_student``: the same class with the KD student's defaults (8 plain blocks, no FFC).
  ``weights: official`` (x4) is the released student, run with ``released_forward`` (blocks
  1, 2, 3, 4, 3, 4, 3, 4) as released; a new student uses the sequential forward by default.
- ``light_f2srgan``: the released Light F2SRGAN: the student with its executed blocks pruned to
  inner width 1 (read from the file's tensor shapes), released forward, float32.

Also public: the discriminator (:class:`F2SRGANDiscriminator`), the FFT-free Fourier unit forms
(:func:`to_export_form`), and the checkpoint converters.
"""

from __future__ import annotations

from torch import nn

from srcompress.entries import ModelEntry, ModelHints
from srcompress.hookspecs import hookimpl
from srcompress.plugins.models.f2srgan.discriminator import DiscriminatorOptions, F2SRGANDiscriminator
from srcompress.plugins.models.f2srgan.ffc import FFC, SpectralTransform
from srcompress.plugins.models.f2srgan.fourier import (
    DFTBasisFourierUnit,
    FourierUnit,
    RowHilbertFourierUnit,
    complex_weight_to_real_layout,
    row_hilbert_matrix,
    to_export_form,
)
from srcompress.plugins.models.f2srgan.generator import (
    F2SRGAN,
    F2SRGANOptions,
    F2SRGANStudentOptions,
    LightF2SRGANOptions,
    ResidualBlock,
    untie_released_forward,
)
from srcompress.plugins.models.f2srgan.layers import MeanShift, SeparableConv2d, UpsampleStage
from srcompress.plugins.models.f2srgan.published import (
    F2SRGAN_WEIGHTS,
    LIGHT_F2SRGAN_WEIGHTS,
    STUDENT_WEIGHTS,
    convert_published_state,
    load_published,
    options_from_state_dict,
)

__all__ = [
    "DFTBasisFourierUnit",
    "DiscriminatorOptions",
    "F2SRGAN",
    "F2SRGANDiscriminator",
    "F2SRGANOptions",
    "F2SRGANStudentOptions",
    "F2SRGAN_WEIGHTS",
    "FFC",
    "FourierUnit",
    "LIGHT_F2SRGAN_WEIGHTS",
    "LightF2SRGANOptions",
    "MeanShift",
    "ResidualBlock",
    "RowHilbertFourierUnit",
    "STUDENT_WEIGHTS",
    "SeparableConv2d",
    "SpectralTransform",
    "UpsampleStage",
    "build_f2srgan",
    "complex_weight_to_real_layout",
    "convert_published_state",
    "f2srgan_hints",
    "load_published",
    "options_from_state_dict",
    "row_hilbert_matrix",
    "srcompress_models",
    "to_export_form",
    "untie_released_forward",
]


def build_f2srgan(scale: int, options: F2SRGANOptions) -> F2SRGAN:
    """``ModelEntry.build`` of the three models: the options class sets the variant."""
    return F2SRGAN(scale, options)


def f2srgan_hints(model: nn.Module) -> ModelHints:
    """Structural hints for an :class:`F2SRGAN` (names from ``model.named_modules()``).

    - never_prune: the mean shifts, the RGB depthwise head conv, the last conv (3 outputs), and in
      every FFC the conv feeding the local Fourier unit's quadrant split (``x[:, :c // 4]`` cannot
      be pruned consistently; FACTS.md).
    - pixel_shuffle_convs: each upsampler stage's pointwise conv (r = 2: prune in groups of 4).
    - feature_taps: each residual block's output; keep_float: every Fourier unit;
      residual_inner: each block's first conv (the pointwise conv, or the FFC module itself).
    """
    never = ["sub_mean", "add_mean", "head.depthwise", "tail.pointwise"]
    taps, keep, inner = [], [], []
    shuffle: dict[str, int] = {}
    for name, module in model.named_modules():
        if isinstance(module, SpectralTransform) and module.lfu is not None:
            never.append(f"{name}.conv1.pointwise")
        elif isinstance(module, FourierUnit):
            keep.append(name)
        elif isinstance(module, UpsampleStage):
            shuffle[f"{name}.conv.pointwise"] = module.shuffle.upscale_factor
        elif isinstance(module, ResidualBlock):
            taps.append(name)
            inner.append(f"{name}.conv1" if isinstance(module.conv1, FFC) else f"{name}.conv1.pointwise")
    return ModelHints(never_prune=tuple(never), pixel_shuffle_convs=shuffle, feature_taps=tuple(taps),
                      keep_float=tuple(keep), residual_inner=tuple(inner))


@hookimpl
def srcompress_models() -> list[ModelEntry]:
    common = {"build": build_f2srgan, "scales": (2, 4), "hints": f2srgan_hints, "load_weights": load_published}
    return [
        ModelEntry(
            name="f2srgan", options_cls=F2SRGANOptions, weights=F2SRGAN_WEIGHTS,
            description="F2SRGAN generator (Fourier-feature GAN SR, 16 blocks with FFC; 202,233 params at x4)",
            **common,
        ),
        ModelEntry(
            name="f2srgan_student", options_cls=F2SRGANStudentOptions, weights=STUDENT_WEIGHTS,
            description="F2SRGAN KD student (8 plain blocks, no FFC); official: the released student",
            **common,
        ),
        ModelEntry(
            name="light_f2srgan", options_cls=LightF2SRGANOptions, weights=LIGHT_F2SRGAN_WEIGHTS,
            description="Light F2SRGAN as released (student pruned to inner width 1, released forward)",
            **common,
        ),
        ModelEntry(
            name="f2srgan_discriminator", role="discriminator", scales=(2, 3, 4),
            build=lambda scale, options: F2SRGANDiscriminator(options), options_cls=DiscriminatorOptions,
            description="F2SRGAN's SRGAN-style discriminator (separable convs; GAN loss terms)",
        ),
    ]
