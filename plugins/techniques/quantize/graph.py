"""Making a float model ready for ``torch.export`` + PT2E, and choosing the modules left in float.

- :func:`explicit_padding`: ``Conv2d(padding="same")`` exports as ``aten.conv2d.padding``, which the
  x86 quantizer rejects ("is not an aten conv2d operator"); odd kernels get the equal int padding.
- :func:`untie_shared`: a module called more than once per forward (the released KD student runs
  its residual group 2 three times) breaks ``prepare_pt2e`` ("conv partition has more than one
  output node"); each call gets its own copy.
- :func:`float_module_names`: hints' ``keep_float`` + the config's patterns + (option) the first and
  last trainable convs in execution order + frozen convs (normalisation constants such as F2SRGAN's
  mean shifts: quantizing them adds error at the image boundary and saves nothing).
"""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Sequence

import torch
from torch import nn

from srcompress.errors import SrcompressError

__all__ = ["UntiedModule", "call_counts", "conv_call_order", "explicit_padding", "float_module_names", "untie_shared"]


def explicit_padding(model: nn.Module) -> nn.Module:
    """``model`` (changed in place) with every stride-1, odd-kernel ``padding="same"`` conv given int padding."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d) and module.padding == "same":
            k, d = module.kernel_size, module.dilation
            if all((ki - 1) * di % 2 == 0 for ki, di in zip(k, d)):
                module.padding = tuple((ki - 1) * di // 2 for ki, di in zip(k, d))
                module._reversed_padding_repeated_twice = [p for p in reversed(module.padding) for _ in range(2)]
    return model


def call_counts(model: nn.Module, example: torch.Tensor) -> dict[str, int]:
    """How many times each named submodule runs in one forward of ``example``."""
    counts: dict[str, int] = {}
    handles = []
    for name, module in model.named_modules():
        if name:
            handles.append(module.register_forward_hook(lambda *_a, n=name: counts.__setitem__(n, counts.get(n, 0) + 1)))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    return counts


class UntiedModule(nn.Module):
    """Stands in for a module called ``n`` times per forward: call ``i`` runs ``copies[i % n]``."""

    def __init__(self, module: nn.Module, calls: int) -> None:
        super().__init__()
        self.copies = nn.ModuleList([copy.deepcopy(module) for _ in range(calls)])
        self.calls = 0

    def reset(self) -> None:
        self.calls = 0

    def forward(self, *args: object, **kwargs: object) -> object:
        module = self.copies[self.calls % len(self.copies)]
        self.calls += 1
        return module(*args, **kwargs)


def untie_shared(model: nn.Module, example: torch.Tensor) -> tuple[nn.Module, list[str]]:
    """(``model`` changed in place with each outermost repeatedly-called module untied, their names)."""
    counts = call_counts(model, example)
    untied: list[str] = []
    for name in sorted((n for n, c in counts.items() if c > 1), key=lambda n: n.count(".")):
        if any(name.startswith(u + ".") for u in untied):
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, UntiedModule(getattr(parent, child), counts[name]))
        untied.append(name)
    return model, untied


def reset_untied(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, UntiedModule):
            module.reset()


def conv_call_order(model: nn.Module, example: torch.Tensor) -> list[str]:
    """Names of the ``nn.Conv2d`` modules in the order they run (first call of each)."""
    order: list[str] = []
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(lambda *_a, n=name: order.append(n) if n not in order else None))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    reset_untied(model)
    return order


def _trainable(module: nn.Module) -> bool:
    return any(p.requires_grad for p in module.parameters())


def float_module_names(
    model: nn.Module,
    example: torch.Tensor,
    *,
    hinted: Sequence[str] = (),
    patterns: Sequence[str] = (),
    first_last: bool = False,
) -> list[str]:
    """Qualified module names the quantizer must leave in float (see the module doc), sorted."""
    names = set(hinted)
    all_names = [n for n, _ in model.named_modules() if n]
    for pattern in patterns:
        matched = [n for n in all_names if fnmatch.fnmatchcase(n, pattern)]
        if not matched:  # a typo would otherwise quantize the module it meant to keep
            top = ", ".join(sorted({n.split(".")[0] for n in all_names}))
            raise SrcompressError(
                f"keep_float: pattern {pattern!r} matches no module of {type(model).__name__} "
                f"(its top-level modules: {top}; patterns are fnmatch on qualified names, e.g. 'upsampler.*')"
            )
        names.update(matched)
    convs = conv_call_order(model, example)
    frozen = [n for n in convs if not _trainable(model.get_submodule(n))]
    names.update(frozen)
    learned = [n for n in convs if n not in frozen]
    if first_last and learned:
        names.update({learned[0], learned[-1]})
    # a name inside an untied module is matched through each copy
    expanded = set()
    for name in names:
        expanded.add(name)
        expanded.update(n for n in all_names if _untied_alias(n) == name)
    return sorted(expanded)


def _untied_alias(name: str) -> str:
    """``body.1.copies.2.conv`` -> ``body.1.conv`` (the name before untying)."""
    parts = name.split(".")
    out, i = [], 0
    while i < len(parts):
        if parts[i] == "copies" and i + 1 < len(parts) and parts[i + 1].isdigit():
            i += 2
            continue
        out.append(parts[i])
        i += 1
    return ".".join(out)
