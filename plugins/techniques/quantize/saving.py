"""Saving a quantized model: a ``torch.export`` ExportedProgram (``.pt2``), no pickled code.

A converted PT2E model is a ``torch.fx.GraphModule`` whose structure cannot be rebuilt from a state
dict (the engine's checkpoints hold state + module structure), so it is stored as an exported
program with dynamic batch, height and width and reloaded with ``torch.export.load``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from srcompress.errors import CheckpointError

__all__ = ["PT2_SUFFIX", "load_quantized", "save_quantized"]

PT2_SUFFIX = ".pt2"


def save_quantized(model: nn.Module, path: str | os.PathLike[str], example: torch.Tensor) -> Path:
    """Write ``model`` (a converted GraphModule or any exportable module) as an ExportedProgram.

    :param example: (N, 3, H, W) float32 in [0, 1]; H, W >= 2.
    """
    path = Path(path)
    if path.suffix != PT2_SUFFIX:
        path = path.with_name(path.name + PT2_SUFFIX)
    if example.shape[0] < 2:
        example = example.expand(2, -1, -1, -1).contiguous()
    dims = {0: torch.export.Dim.DYNAMIC, 2: torch.export.Dim.DYNAMIC, 3: torch.export.Dim.DYNAMIC}
    program = torch.export.export(model, (example,), dynamic_shapes=(dims,))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.export.save(program, tmp)
    tmp.replace(path)
    return path


def load_quantized(path: str | os.PathLike[str]) -> nn.Module:
    """The module saved by :func:`save_quantized` (same forward: float32 NCHW [0, 1] in and out)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no quantized model at {path}; run the quantize stage again")
    try:
        return torch.export.load(path).module()
    except Exception as exc:
        raise CheckpointError(f"cannot load quantized model {path}: {type(exc).__name__}: {exc}".splitlines()[0]) from exc
