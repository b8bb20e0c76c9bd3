"""Train/eval mode switching that also works on exported graphs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from torch import nn

__all__ = ["eval_mode"]


@contextmanager
def eval_mode(model: Any) -> Iterator[None]:
    """Run a block with ``model`` in eval mode, restoring its training flag afterwards.

    Non-modules pass through. Exported GraphModules (``torch.export`` / PT2E) refuse ``eval()``:
    their mode is baked into the graph, so they run as they are.
    """
    if not isinstance(model, nn.Module):
        yield
        return
    was_training = model.training
    try:
        model.eval()
    except NotImplementedError:
        was_training = False
    try:
        yield
    finally:
        if was_training:
            model.train()
