"""Resumable training state: RNG states, the EMA of weights, and atomic checkpoint files.

A training checkpoint is a ``torch.save`` of plain data only (tensors, numbers, strings, lists,
dicts), so :func:`read_state` loads it with ``torch.load(weights_only=True)``. It is written to a
temporary file beside the target and renamed (``os.replace``): a kill never leaves half a file.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from srcompress.checkpoint import atomic_torch_save
from srcompress.errors import CheckpointError

__all__ = ["STATE_FORMAT", "EMA", "capture_rng", "read_state", "restore_rng", "write_state"]

STATE_FORMAT = "srcompress.trainstate/1"


def capture_rng() -> dict[str, Any]:
    """This process's RNG states (torch CPU and CUDA, numpy, python) as plain data."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    np.random.set_state((
        numpy_state["kind"], numpy_state["keys"].numpy().astype(np.uint32), numpy_state["pos"],
        numpy_state["has_gauss"], numpy_state["gauss"],
    ))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class EMA:
    """Exponential moving average of a model's floating-point state (``shadow = d*shadow + (1-d)*w``).

    Integer buffers (e.g. BatchNorm's ``num_batches_tracked``) are copied, not averaged.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for key, value in model.state_dict().items():
            shadow = self.shadow[key]
            if shadow.dtype.is_floating_point:
                shadow.lerp_(value.detach(), 1.0 - self.decay)
            else:
                shadow.copy_(value)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().clone() for k, v in self.shadow.items()}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        for key, value in state.items():
            self.shadow[key].copy_(value)


def cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of ``module.state_dict()``."""
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def write_state(payload: Mapping[str, Any], path: Path) -> Path:
    """Atomically write a training checkpoint (plain data)."""
    return atomic_torch_save({"format": STATE_FORMAT, **payload}, Path(path))


def read_state(path: Path) -> dict[str, Any]:
    """Read a training checkpoint with ``weights_only=True``; a bad file is a :class:`CheckpointError`."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated or foreign files
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable training checkpoint ({first}); delete it to start the stage afresh") from None
    if not isinstance(payload, dict) or payload.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path}: not an srcompress training checkpoint (expected {STATE_FORMAT}); delete it")
    return payload
