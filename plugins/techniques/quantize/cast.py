"""fp16 / bf16 "quantization": a cast of the weights and activations, float32 at the boundary.

This is a deployment precision, not integer quantization: no calibration, no integer kernels.
Modules listed as float (the model's ``keep_float`` hints: Fourier units, whose FFTs have no half
kernels on CPU) run in float32 between casts.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["CastModel", "FloatIsland", "cast_model"]

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


class FloatIsland(nn.Module):
    """Runs ``module`` in float32: casts its input up and its output back to the input's dtype."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module.float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x.float()).to(x.dtype)


class CastModel(nn.Module):
    """``model`` in ``dtype``: (N, 3, H, W) float32 in [0, 1] in, float32 out."""

    def __init__(self, model: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.model = model
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.to(self.dtype)).float()


def cast_model(model: nn.Module, dtype: str, keep_float: Sequence[str] = ()) -> CastModel:
    """A copy of ``model`` cast to ``dtype`` ("fp16" / "bf16") with ``keep_float`` modules in float32."""
    clone = copy.deepcopy(model)
    for name in sorted(keep_float, key=lambda n: n.count(".")):
        try:
            module = clone.get_submodule(name)
        except AttributeError:
            continue  # inside an island already replaced
        if isinstance(module, FloatIsland):
            continue
        parent_name, _, child = name.rpartition(".")
        parent = clone.get_submodule(parent_name) if parent_name else clone
        setattr(parent, child, FloatIsland(module))
    for module in clone.modules():
        if isinstance(module, FloatIsland):
            continue
        for key, param in module.named_parameters(recurse=False):
            if not _inside_island(clone, module):
                param.data = param.data.to(DTYPES[dtype])
        for key, buf in module.named_buffers(recurse=False):
            if buf.is_floating_point() and not _inside_island(clone, module):
                module._buffers[key] = buf.to(DTYPES[dtype])
    return CastModel(clone, DTYPES[dtype])


def _inside_island(root: nn.Module, target: nn.Module) -> bool:
    for module in root.modules():
        if isinstance(module, FloatIsland) and any(m is target for m in module.modules()):
            return True
    return False
