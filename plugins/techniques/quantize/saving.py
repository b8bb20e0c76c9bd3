"""Saving a quantized model: a ``torch.export`` ExportedProgram (``.pt2``), no pickled code.

A converted PT2E model is a ``torch.fx.GraphModule`` whose structure cannot be rebuilt from a state
dict, so it is stored as an exported program with dynamic batch, height and width. The engine does
the same for any stage whose result holds a graph (:func:`srcompress.checkpoint.save_stage_model`);
these are the same functions under the names this plugin documents.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from srcompress.checkpoint import EXPORTED_SUFFIX, load_exported, save_exported

__all__ = ["PT2_SUFFIX", "load_quantized", "save_quantized"]

PT2_SUFFIX = EXPORTED_SUFFIX


def save_quantized(model: nn.Module, path: str | os.PathLike[str], example: torch.Tensor) -> Path:
    """Write ``model`` (a converted GraphModule or any exportable module) as an ExportedProgram.

    :param example: (N, 3, H, W) float32 in [0, 1]; H, W >= 2. ``.pt2`` is appended when missing.
    """
    path = Path(path)
    if path.suffix != PT2_SUFFIX:
        path = path.with_name(path.name + PT2_SUFFIX)
    return save_exported(model, path, example)


def load_quantized(path: str | os.PathLike[str]) -> nn.Module:
    """The module saved by :func:`save_quantized` (same forward: float32 NCHW [0, 1] in and out)."""
    return load_exported(Path(path))
