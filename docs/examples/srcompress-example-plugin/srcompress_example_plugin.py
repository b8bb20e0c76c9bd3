"""An example srcompress plugin: one model, one technique and one pruning importance criterion.

Registered through the entry point ``example = "srcompress_example_plugin"`` in the group
``srcompress.plugins`` (see pyproject.toml). Every hook below is a plain function decorated with
``srcompress.hookimpl`` and named like its hook spec.
"""

from __future__ import annotations

import fnmatch
from typing import Any

import torch
import torch.nn.functional as F
import torch_pruning as tp
from attrs import define
from torch import nn

from srcompress import ModelEntry, ModelHints, TechniqueEntry, hookimpl
from srcompress.config import in_range, option

__all__ = [
    "ClipConfig",
    "ExampleOptions",
    "ExampleSR",
    "MaxAbsImportance",
    "clip_weights",
    "srcompress_models",
    "srcompress_pruning_importances",
    "srcompress_techniques",
]


# ------------------------------------------------------------------------------------------- model


@define(frozen=True, kw_only=True)
class ExampleOptions:
    """Architecture options of ``example_sr`` (recipe keys beside ``name`` and ``scale``)."""

    width: int = option(16, help="Feature channels of the trunk.", validator=in_range(4, 256))
    blocks: int = option(2, help="Residual blocks (conv, ReLU, conv, + skip).", validator=in_range(1, 32))


class _Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(torch.relu(self.conv1(x)))


class ExampleSR(nn.Module):
    """float32 RGB NCHW in [0, 1], (N, 3, H, W) -> (N, 3, scale*H, scale*W), plus a bilinear skip."""

    def __init__(self, scale: int, options: ExampleOptions) -> None:
        super().__init__()
        self.scale = scale
        self.head = nn.Conv2d(3, options.width, 3, padding=1)
        self.body = nn.Sequential(*(_Block(options.width) for _ in range(options.blocks)))
        self.tail = nn.Conv2d(options.width, 3 * scale * scale, 3, padding=1)
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
        return skip + self.shuffle(self.tail(self.body(self.head(x))))


def _hints(model: nn.Module) -> ModelHints:
    blocks = [f"body.{i}" for i in range(len(model.body))]
    return ModelHints(
        never_prune=("tail",),                                   # its width is fixed by 3 * scale**2
        pixel_shuffle_convs={"tail": model.scale},
        feature_taps=tuple(blocks),                              # distillation taps, shallow to deep
        residual_inner=tuple(f"{b}.conv1" for b in blocks),      # pruning these keeps the trunk width
    )


@hookimpl
def srcompress_models() -> list[ModelEntry]:
    return [
        ModelEntry(
            name="example_sr",
            build=lambda scale, options: ExampleSR(scale, options),
            scales=(2, 3, 4),
            options_cls=ExampleOptions,
            hints=_hints,
            description="tiny residual SR net (example plugin)",
        )
    ]


# --------------------------------------------------------------------------------------- technique


@define(frozen=True, kw_only=True)
class ClipConfig:
    """Config of the ``clip_weights`` stage (its YAML keys besides ``type``)."""

    sigma: float = option(3.0, help="Clip each conv's weights to mean +- sigma * std of that conv.", validator=in_range(0.5, 100.0))
    layers: tuple[str, ...] = option(("*",), help="Module name patterns (fnmatch) of the convs to clip.")


def clip_weights(model: nn.Module, config: ClipConfig, ctx: Any) -> nn.Module:
    """Clip outlier conv weights in place; returns the same model (its module tree is unchanged)."""
    clipped = total = 0
    with torch.no_grad():
        for name, module in model.named_modules():
            if not isinstance(module, nn.Conv2d) or not any(fnmatch.fnmatch(name, p) for p in config.layers):
                continue
            w = module.weight
            lo, hi = (w.mean() - config.sigma * w.std()).item(), (w.mean() + config.sigma * w.std()).item()
            clipped += int(((w < lo) | (w > hi)).sum())
            total += w.numel()
            w.clamp_(lo, hi)
    ctx.note(f"clipped {clipped} of {total} conv weights beyond {config.sigma} std")
    return model


@hookimpl
def srcompress_techniques() -> list[TechniqueEntry]:
    return [
        TechniqueEntry(
            name="clip_weights",
            config_cls=ClipConfig,
            apply=clip_weights,
            description="clip outlier conv weights to mean +- sigma*std (example plugin)",
        )
    ]


# ------------------------------------------------------------------------------ pruning importance


class MaxAbsImportance:
    """torch-pruning ``Importance``: per channel of the group's root, the largest |w| of its output filters."""

    def __call__(self, group: Any) -> torch.Tensor | None:
        scores: torch.Tensor | None = None
        for i, (dep, idxs) in enumerate(group):
            layer = dep.layer
            if dep.pruning_fn != tp.prune_conv_out_channels or getattr(layer, "transposed", False):
                continue
            root_idxs = group[i].root_idxs
            if any(r is None for r in root_idxs):
                continue
            local = layer.weight.data[idxs].flatten(1).abs().amax(1)
            if scores is None:
                scores = torch.zeros(len(group[0].idxs), device=local.device)
            scores.scatter_reduce_(0, torch.tensor(root_idxs, device=local.device), local, reduce="amax")
        return scores


@hookimpl
def srcompress_pruning_importances() -> list[Any]:
    # Imported here: the hook spec belongs to the prune plugin, which declares it (srcompress_addhooks).
    from srcompress.plugins.techniques.pruning import ImportanceEntry

    return [ImportanceEntry(name="max_abs", build=lambda config: MaxAbsImportance(), description="largest |w| of the output filters")]
