"""The F2SRGAN generator family: F2SRGAN, its KD student and Light F2SRGAN, from one configurable class.

Architecture (Nguyen et al., F2SRGAN; authors' code bibom108/F2SRGAN ``model.py``):
``x * 255 -> sub_mean -> head (separable 3x3, 3 -> width) -> body: residual blocks
[conv1 (separable 3x3, or an FFC in the chosen blocks) -> PReLU -> conv2 (separable 3x3)] * 0.1 + x
-> + head output -> upsampler: log2(scale) x [separable 3x3 -> PixelShuffle(2) -> PReLU] ->
tail (separable 3x3 -> 3) -> add_mean -> / 255``. Images are float32 RGB in [0, 1] in and out.
"""

from __future__ import annotations

import copy
import math

import attrs
import torch
from attrs import define
from torch import nn

from srcompress.config import in_range, one_of, option, positive
from srcompress.plugins.models.f2srgan.ffc import FFC
from srcompress.plugins.models.f2srgan.layers import MeanShift, SeparableConv2d, UpsampleStage

__all__ = [
    "F2SRGAN",
    "F2SRGANOptions",
    "F2SRGANStudentOptions",
    "LightF2SRGANOptions",
    "ResidualBlock",
    "untie_released_forward",
]


def _int_tuple(value: object) -> tuple[int, ...]:
    if value is None:
        return ()
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(f"expected a list of integers (got {value!r})")
    items = tuple(value)  # type: ignore[arg-type]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
        raise TypeError(f"expected a list of integers (got {list(items)!r})")
    return items


def _optional_int_tuple(value: object) -> tuple[int, ...] | None:
    return None if value is None else _int_tuple(value)


def _nonnegative_items(_inst: object, attribute: attrs.Attribute, value: tuple[int, ...] | None) -> None:
    if value and any(v < 0 for v in value):
        raise ValueError(f"must hold block indices >= 0 (got {list(value)})")


def _positive_items(_inst: object, attribute: attrs.Attribute, value: tuple[int, ...]) -> None:
    if any(v < 1 for v in value):
        raise ValueError(f"must hold widths >= 1 (got {list(value)})")


@define(frozen=True, kw_only=True)
class F2SRGANOptions:
    """Architecture options of the F2SRGAN generator (defaults: the published F2SRGAN)."""

    blocks: int = option(16, help="Number of residual blocks.", validator=in_range(1, 256))
    width: int = option(64, help="Trunk channels (head output, residual block input/output).", validator=in_range(2, 4096))
    ffc_blocks: tuple[int, ...] | None = option(
        None,
        help="Indices of the residual blocks whose first conv is an FFC; null: the even blocks (0, 2, ...) "
        "as published; []: none (the KD student).",
        converter=_optional_int_tuple,
        validator=_nonnegative_items,
    )
    ffc_ratio: float = option(
        0.5, help="Fraction of an FFC's input and output channels on its global (Fourier) path.",
        validator=in_range(0.0, 1.0, lo_open=True, hi_open=True),
    )
    local_fourier_unit: bool = option(True, help="Give each FFC the local Fourier unit (2x2 quadrants) beside the global one.")
    inner_widths: tuple[int, ...] = option(
        (), help="Per-block inner width (output of each block's first conv); []: width for every block. "
        "Pruned models (e.g. Light F2SRGAN) have narrower blocks.",
        converter=_int_tuple, validator=_positive_items,
    )
    upsampler_widths: tuple[int, ...] = option(
        (), help="Channels after each x2 PixelShuffle stage; []: width for every stage.",
        converter=_int_tuple, validator=_positive_items,
    )
    upsampler_slopes: str = option(
        "per_channel",
        help="PReLU slopes of the x2 upsampler stages: per_channel (as published) or shared (one learned "
        "slope per stage: ONNX Runtime then fuses the activation into the conv before it, where a "
        "per-channel PReLU costs a second conv or extra passes over the stage's largest map).",
        validator=one_of(("per_channel", "shared")),
    )
    res_scale: float = option(0.1, help="Scale of each residual branch before the skip addition.", validator=positive)
    released_forward: bool = option(
        False,
        help="Run the body as the released KD student / Light F2SRGAN do: blocks split into 4 equal groups, "
        "executed as group1, group2, group2, group2 (groups 3 and 4 never run). Only to reproduce "
        "the released numbers; new students use the corrected, sequential forward.",
    )

    def __attrs_post_init__(self) -> None:
        if self.ffc_blocks and max(self.ffc_blocks) >= self.blocks:
            raise ValueError(f"ffc_blocks {list(self.ffc_blocks)} name a block >= blocks ({self.blocks})")
        if self.inner_widths and len(self.inner_widths) != self.blocks:
            raise ValueError(f"inner_widths has {len(self.inner_widths)} entries for {self.blocks} blocks")
        if self.released_forward and self.blocks % 4:
            raise ValueError(f"released_forward needs blocks divisible by 4 (got {self.blocks})")

    def ffc_indices(self) -> tuple[int, ...]:
        """The blocks carrying an FFC (resolves ``None`` to the even blocks)."""
        if self.ffc_blocks is None:
            return tuple(range(0, self.blocks, 2))
        return tuple(sorted(set(self.ffc_blocks)))

    def inner_width(self, index: int) -> int:
        return self.inner_widths[index] if self.inner_widths else self.width

    def stage_widths(self, scale: int) -> tuple[int, ...]:
        stages = _stages(scale)
        if self.upsampler_widths and len(self.upsampler_widths) != stages:
            raise ValueError(f"upsampler_widths has {len(self.upsampler_widths)} entries; x{scale} has {stages} stages")
        return self.upsampler_widths or (self.width,) * stages

    def block_order(self) -> tuple[int, ...]:
        """The order in which forward runs the body's blocks."""
        if not self.released_forward:
            return tuple(range(self.blocks))
        group = self.blocks // 4
        first, second = list(range(group)), list(range(group, 2 * group))
        return tuple(first + second * 3)


@define(frozen=True, kw_only=True)
class F2SRGANStudentOptions(F2SRGANOptions):
    """Options of the KD student (defaults: the released student: 8 plain blocks, no FFC)."""

    blocks: int = option(8, help="Number of residual blocks.", validator=in_range(1, 256))
    ffc_blocks: tuple[int, ...] | None = option(
        (), help="Indices of the residual blocks whose first conv is an FFC; []: none (the student); "
        "null: the even blocks.", converter=_optional_int_tuple, validator=_nonnegative_items,
    )


LIGHT_INNER_WIDTHS = (1, 1, 1, 1, 64, 64, 64, 64)
"""Inner widths of the released Light F2SRGAN, read from the tensor shapes of LightF2SRGAN_x4.pt:
the four executed blocks were pruned to 1 channel; blocks 5-8 (never executed) kept 64."""


@define(frozen=True, kw_only=True)
class LightF2SRGANOptions(F2SRGANStudentOptions):
    """Options of Light F2SRGAN (defaults: the released model, with its released forward)."""

    inner_widths: tuple[int, ...] = option(
        LIGHT_INNER_WIDTHS,
        help="Per-block inner width; the released file's shapes give (1, 1, 1, 1, 64, 64, 64, 64).",
        converter=_int_tuple, validator=_positive_items,
    )
    released_forward: bool = option(
        True,
        help="Run blocks as released: group1, group2, group2, group2 (groups 3 and 4 never run). "
        "Set false to run all 8 blocks in order.",
    )


def _stages(scale: int) -> int:
    if scale < 2 or scale & (scale - 1):
        raise ValueError(f"F2SRGAN upsamples by powers of 2 (x2, x4, x8); got x{scale}")
    return int(math.log2(scale))


class ResidualBlock(nn.Module):
    """``x + res_scale * conv2(PReLU(conv1(x)))``; ``conv1`` is an FFC or a separable 3x3 conv."""

    def __init__(self, width: int, inner: int, *, ffc: bool, ffc_ratio: float = 0.5, local_unit: bool = True, res_scale: float = 0.1) -> None:
        super().__init__()
        self.conv1: nn.Module = (
            FFC(width, inner, ratio=ffc_ratio, local_unit=local_unit) if ffc else SeparableConv2d(width, inner, 3)
        )
        self.act = nn.PReLU(inner)
        self.conv2 = SeparableConv2d(inner, width, 3)
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.act(self.conv1(x))).mul(self.res_scale) + x


class F2SRGAN(nn.Module):
    """F2SRGAN-family generator: float32 RGB (N, 3, H, W) in [0, 1] -> (N, 3, s*H, s*W), not clamped.

    The network itself works on 0-255 values (as published); the scaling happens inside forward.
    ``options`` is an :class:`F2SRGANOptions` (or a subclass); ``scale`` a power of 2.
    """

    def __init__(self, scale: int = 4, options: F2SRGANOptions | None = None) -> None:
        super().__init__()
        opts = options if options is not None else F2SRGANOptions()
        self.scale = scale
        self.options = opts
        self.block_order = list(opts.block_order())
        ffc = set(opts.ffc_indices())
        self.sub_mean = MeanShift(-1)
        self.head = SeparableConv2d(3, opts.width, 3)
        self.body = nn.Sequential(*[
            ResidualBlock(
                opts.width, opts.inner_width(i), ffc=i in ffc, ffc_ratio=opts.ffc_ratio,
                local_unit=opts.local_fourier_unit, res_scale=opts.res_scale,
            )
            for i in range(opts.blocks)
        ])
        stages, channels = [], opts.width
        for out in opts.stage_widths(scale):
            stages.append(UpsampleStage(channels, out, shared_slope=opts.upsampler_slopes == "shared"))
            channels = out
        self.upsampler = nn.Sequential(*stages)
        self.tail = SeparableConv2d(channels, 3, 3)
        self.add_mean = MeanShift(+1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        head = self.head(self.sub_mean(x * 255.0))
        feat = head
        for index in self.block_order:
            feat = self.body[index](feat)
        out = self.tail(self.upsampler(feat + head))
        return self.add_mean(out) / 255.0


def untie_released_forward(model: F2SRGAN) -> F2SRGAN:
    """An equivalent copy whose body runs its blocks once each, in order (no dead or shared blocks).

    The released forward runs blocks (for 8) 0, 1, 2, 3, 2, 3, 2, 3 and never 4-7. The copy's
    body holds copies of the executed blocks in execution order, so pruning, quantization
    (``prepare_pt2e`` rejects a module called twice) and export see a plain sequential network.
    Its options say ``released_forward=False`` with the matching ``inner_widths``.
    """
    clone = copy.deepcopy(model)
    blocks = [copy.deepcopy(model.body[i]) for i in model.block_order]
    widths = tuple(model.options.inner_width(i) for i in model.block_order)
    ffc = tuple(k for k, i in enumerate(model.block_order) if isinstance(model.body[i].conv1, FFC))
    clone.body = nn.Sequential(*blocks)
    clone.block_order = list(range(len(blocks)))
    clone.options = attrs.evolve(
        model.options, blocks=len(blocks), ffc_blocks=ffc, released_forward=False,
        inner_widths=widths if len(set(widths)) > 1 or widths[0] != model.options.width else (),
    )
    return clone
