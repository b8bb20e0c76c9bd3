"""Feature taps: capture the outputs of named modules with forward hooks, and remove the hooks after.

A tap is a module name from ``model.named_modules()`` (e.g. ``body.3``). Its captured feature is the
module's output, a float tensor (N, C, H, W); a module that returns a tuple contributes its first
tensor. A module run more than once per forward (e.g. the released F2SRGAN student's shared blocks)
keeps its last output.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from srcompress.errors import SrcompressError, suggest

__all__ = ["FeatureTaps", "resolve_taps", "spaced"]


def spaced(names: Sequence[str], count: int) -> tuple[str, ...]:
    """``count`` names spread evenly over ``names`` (shallow to deep), always ending with the deepest.

    With 16 block outputs and ``count=4`` this picks blocks 3, 7, 11, 15; with 8, blocks 1, 3, 5, 7.
    """
    if count >= len(names):
        return tuple(names)
    return tuple(names[round((i + 1) * len(names) / count) - 1] for i in range(count))


def resolve_taps(model: nn.Module, explicit: Sequence[str], hinted: Sequence[str], count: int, role: str) -> tuple[str, ...]:
    """The taps of ``model``: ``explicit`` names if given (checked), else ``count`` of the hinted ones.

    :param role: ``student`` or ``teacher``, for error messages.
    :raises SrcompressError: a name that is not a module of ``model``, or no taps at all.
    """
    modules = dict(model.named_modules())
    if explicit:
        for name in explicit:
            if name not in modules or name == "":
                raise SrcompressError(f"distill {role}_taps: {suggest(name, [n for n in modules if n], 'module')}")
        return tuple(explicit)
    if not hinted:
        raise SrcompressError(
            f"distill: the {role} ({type(model).__name__}) gives no feature taps in its model hints; "
            f"name them with '{role}_taps: [module names]'"
        )
    return spaced(list(hinted), count)


def _first_tensor(output: Any) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        for item in output:
            if isinstance(item, torch.Tensor):
                return item
    raise SrcompressError(f"distill: a feature tap returned {type(output).__name__}, not a tensor")


class FeatureTaps:
    """Forward hooks on the named modules of ``model``, capturing their outputs.

    :param only_training: capture only while the hooked module is in training mode (so that
        validation passes of the student keep no features alive).
    Call :meth:`remove` when done (the hooks stay until then).
    """

    def __init__(self, model: nn.Module, names: Sequence[str], *, only_training: bool = False) -> None:
        modules = dict(model.named_modules())
        self.names = tuple(names)
        self.only_training = only_training
        self.features: dict[str, torch.Tensor] = {}
        self._handles = [modules[name].register_forward_hook(self._capture(name)) for name in self.names]

    def _capture(self, name: str) -> Any:
        def hook(module: nn.Module, _inputs: Any, output: Any) -> None:
            if self.only_training and not module.training:
                return
            self.features[name] = _first_tensor(output)

        return hook

    def collect(self) -> list[torch.Tensor]:
        """The captured features in tap order, and forget them. Raises if a tap did not run."""
        missing = [name for name in self.names if name not in self.features]
        if missing:
            raise SrcompressError(f"distill: feature tap(s) {', '.join(missing)} did not run in the forward pass")
        features = [self.features[name] for name in self.names]
        self.features = {}
        return features

    def remove(self) -> None:
        """Remove every hook (idempotent)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.features = {}

    @property
    def active(self) -> bool:
        return bool(self._handles)

    def __enter__(self) -> FeatureTaps:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.remove()
