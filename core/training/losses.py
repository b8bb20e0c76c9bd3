"""Loss terms: what a loss module sees, the pixel losses, and the weighted sum of a recipe's terms.

A recipe declares ``losses: [{kind: l1, weight: 1.0}, {kind: vgg, weight: 1.0, layer: conv5_4}]``.
Each ``kind`` is a :class:`srcompress.entries.LossEntry` registered by a plugin; its extra keys are
structured into the entry's ``config_cls``. A built loss module maps :class:`LossInputs` to a scalar.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import cattrs
import torch
from attrs import define, field
from torch import nn

from srcompress.config import FieldValueError, in_range, one_of, option, positive, strict_scalar
from srcompress.errors import RecipeError, number_hint, suggest

__all__ = [
    "CharbonnierConfig",
    "CharbonnierLoss",
    "Criterion",
    "L1Loss",
    "LossInputs",
    "LossTerm",
    "MSELoss",
    "TVConfig",
    "TotalVariationLoss",
    "build_criterion",
    "structure_loss_term",
    "unstructure_loss_term",
]


@define(kw_only=True)
class LossInputs:
    """What every loss module receives for one batch.

    - ``sr``: the model's output, float32 (N, 3, sH, sW), nominally [0, 1] (not clamped).
    - ``hr``: the ground truth, float32 (N, 3, sH, sW) in [0, 1].
    - ``lr``: the model's input, float32 (N, 3, H, W) in [0, 1].
    - ``extras``: anything a technique or the trainer adds: teacher outputs and features
      (distillation hooks), discriminator logits (``disc_fake``, ``disc_real``; see
      :mod:`srcompress.training.adversarial`).
    """

    sr: torch.Tensor
    hr: torch.Tensor
    lr: torch.Tensor
    extras: dict[str, Any] = field(factory=dict)


# -------------------------------------------------------------------------------------------------
# Built-in pixel losses
# -------------------------------------------------------------------------------------------------


class L1Loss(nn.Module):
    """Mean absolute error between ``sr`` and ``hr``."""

    def forward(self, inputs: LossInputs) -> torch.Tensor:
        return (inputs.sr - inputs.hr).abs().mean()


class MSELoss(nn.Module):
    """Mean squared error between ``sr`` and ``hr``."""

    def forward(self, inputs: LossInputs) -> torch.Tensor:
        return (inputs.sr - inputs.hr).pow(2).mean()


@define(frozen=True, kw_only=True)
class CharbonnierConfig:
    """Options of the Charbonnier loss."""

    eps: float = option(1e-3, help="Smoothing constant: mean(sqrt((sr - hr)^2 + eps^2)).", validator=positive)


class CharbonnierLoss(nn.Module):
    """Charbonnier (smooth L1): ``mean(sqrt((sr - hr)^2 + eps^2))``, as in LapSRN / BasicSR."""

    def __init__(self, config: CharbonnierConfig | None = None) -> None:
        super().__init__()
        self.eps = (config or CharbonnierConfig()).eps

    def forward(self, inputs: LossInputs) -> torch.Tensor:
        return torch.sqrt((inputs.sr - inputs.hr).pow(2) + self.eps**2).mean()


@define(frozen=True, kw_only=True)
class TVConfig:
    """Options of the total-variation loss."""

    power: int = option(1, help="1: absolute differences (F2SRGAN); 2: squared differences.", validator=one_of((1, 2)))
    reduction: str = option(
        "mean", help="mean: average over pixel pairs; sum: their sum (F2SRGAN, with weight 2e-8).",
        validator=one_of(("mean", "sum")),
    )


class TotalVariationLoss(nn.Module):
    """Total variation of ``sr``: ``|dx|^p`` plus ``|dy|^p`` over neighbouring pixels, averaged or summed.

    Independent of ``hr``. F2SRGAN's TV term is ``power=1, reduction=sum`` with weight 2e-8.
    """

    def __init__(self, config: TVConfig | None = None) -> None:
        super().__init__()
        config = config or TVConfig()
        self.power = config.power
        self.reduce = torch.sum if config.reduction == "sum" else torch.mean

    def forward(self, inputs: LossInputs) -> torch.Tensor:
        sr = inputs.sr
        dy = (sr[..., 1:, :] - sr[..., :-1, :]).abs().pow(self.power)
        dx = (sr[..., :, 1:] - sr[..., :, :-1]).abs().pow(self.power)
        return self.reduce(dx) + self.reduce(dy)


# -------------------------------------------------------------------------------------------------
# Terms and the criterion
# -------------------------------------------------------------------------------------------------


@define(frozen=True, kw_only=True)
class LossTerm:
    """One weighted term of a recipe's ``losses`` list.

    ``options`` is an instance of the loss entry's ``config_cls`` (``None`` means its defaults).
    """

    kind: str = option(help="Registered loss name (see `srcompress list losses`).")
    weight: float = option(1.0, help="Weight of this term in the sum.", validator=in_range(0.0, None))
    options: Any = option(None, help="The loss's options (an instance of its config class).")


class Criterion(nn.Module):
    """The weighted sum of named loss modules.

    ``forward(inputs)`` returns ``(total, values)``: the scalar to minimise and each term's
    unweighted value, keyed by term name, so that a NaN can be traced to the term that produced it.
    """

    def __init__(self, terms: Sequence[tuple[str, float, nn.Module]]) -> None:
        super().__init__()
        names = [name for name, _, _ in terms]
        if len(set(names)) != len(names):
            raise ValueError(f"loss term names must be unique (got {names})")
        self.names: list[str] = names
        self.weights: list[float] = [float(weight) for _, weight, _ in terms]
        self.terms = nn.ModuleList(module for _, _, module in terms)

    def __len__(self) -> int:
        return len(self.names)

    def named_terms(self) -> list[tuple[str, float, nn.Module]]:
        return list(zip(self.names, self.weights, self.terms, strict=True))

    def forward(self, inputs: LossInputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        values: dict[str, torch.Tensor] = {}
        total: torch.Tensor | None = None
        for name, weight, module in self.named_terms():
            value = module(inputs)
            values[name] = value
            total = value * weight if total is None else total + value * weight
        if total is None:
            raise ValueError("the criterion has no loss terms")
        return total, values


def _unique_name(kind: str, taken: set[str]) -> str:
    if kind not in taken:
        return kind
    index = 2
    while f"{kind}{index}" in taken:
        index += 1
    return f"{kind}{index}"


def build_criterion(
    terms: Sequence[LossTerm],
    registry: Any,
    extra: Mapping[str, tuple[float, nn.Module]] | None = None,
) -> Criterion:
    """Build each term's module through ``registry.get_loss(kind)`` and sum them with weights.

    Terms are named by their kind (a repeated kind gets a number: ``l1``, ``l12``). ``extra`` adds
    named ``(weight, module)`` terms (from techniques' training hooks); a name already taken is an
    error.
    """
    built: list[tuple[str, float, nn.Module]] = []
    taken: set[str] = set()
    for term in terms:
        entry = registry.get_loss(term.kind)
        options = term.options if term.options is not None else entry.config_cls()
        name = _unique_name(term.kind, taken)
        taken.add(name)
        built.append((name, term.weight, entry.build(options)))
    for name, (weight, module) in (extra or {}).items():
        if name in taken:
            raise ValueError(f"extra loss term '{name}' clashes with a recipe loss term of the same name")
        taken.add(name)
        built.append((name, float(weight), module))
    return Criterion(built)


# -------------------------------------------------------------------------------------------------
# Structuring a recipe's loss mapping
# -------------------------------------------------------------------------------------------------


def _default_converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True)
    for kind in (int, float, bool, str):
        converter.register_structure_hook(kind, strict_scalar(kind))
    return converter


_CONVERTER = _default_converter()


def _join(path: str, sub: str) -> str:
    return f"{path}.{sub}" if path and sub else path or sub


def _first_problem(exc: BaseException, where: str = "") -> tuple[str, str]:
    """(sub-path, problem) of the first leaf error of a cattrs error tree."""
    if isinstance(exc, FieldValueError):
        return _join(where, exc.field), exc.problem
    if isinstance(exc, RecipeError):
        return _join(where, exc.path), exc.problem
    if isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        sub = exc.exceptions[0]
        names = [getattr(note, "name", None) for note in getattr(sub, "__notes__", [])]
        name = next((n for n in names if isinstance(n, str)), "")
        return _first_problem(sub, _join(where, name))
    return where, str(exc)


def structure_loss_term(mapping: Any, registry: Any, context: str | cattrs.Converter = "") -> LossTerm:
    """Validate one entry of a ``losses`` list into a :class:`LossTerm`.

    ``mapping`` is ``{kind: NAME, weight: W, **options}``; the options are structured into the loss
    entry's ``config_cls`` (no option key: ``options=None``, the loss's defaults). ``context`` is either the path that names this entry in errors
    (``"stages[0].losses[1]"``) or the recipe loader's cattrs converter (then paths are relative
    and the loader prefixes them). Raises :class:`srcompress.errors.RecipeError` for a missing or
    unknown ``kind`` (listing the registered ones and the closest match), a bad weight, an unknown
    option key (naming it and listing the allowed ones), or an option value out of range.
    """
    path = context if isinstance(context, str) else ""
    converter = context if isinstance(context, cattrs.Converter) else _CONVERTER
    if not isinstance(mapping, Mapping):
        raise RecipeError(path, f"a loss term must be a mapping like {{kind: l1, weight: 1.0}} (got {mapping!r})")
    data = dict(mapping)
    kind = data.pop("kind", None)
    known = sorted(loss.name for loss in registry.list_losses())
    if kind is None:
        raise RecipeError(path, f"missing 'kind' (the loss name; one of: {', '.join(known)})")
    if not isinstance(kind, str) or kind not in known:
        raise RecipeError(_join(path, "kind"), suggest(str(kind), known, "loss"))
    entry = registry.get_loss(kind)
    weight = data.pop("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight >= 0:
        raise RecipeError(_join(path, "weight"), f"must be a number >= 0 (got {weight!r}{number_hint(weight)})")
    allowed = sorted(a.name for a in attrs.fields(entry.config_cls))
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), allowed, n=1, cutoff=0.5)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        listing = ", ".join(["kind", "weight", *allowed])
        raise RecipeError(_join(path, str(unknown[0])), f"unknown key for loss '{kind}'{hint} (allowed: {listing})")
    if not data:  # no option named: the loss's defaults (None), so that terms round-trip unchanged
        return LossTerm(kind=kind, weight=float(weight))
    try:
        options = converter.structure(data, entry.config_cls)
    except Exception as exc:  # cattrs error groups, FieldValueError, TypeError from strict hooks
        where, problem = _first_problem(exc)
        raise RecipeError(_join(path, where), problem) from None
    return LossTerm(kind=kind, weight=float(weight), options=options)


def unstructure_loss_term(term: LossTerm, converter: cattrs.Converter | None = None) -> dict[str, Any]:
    """``{kind, weight, **options}``: the plain mapping :func:`structure_loss_term` reads back."""
    out: dict[str, Any] = {"kind": term.kind, "weight": term.weight}
    if term.options is not None and attrs.has(type(term.options)):
        out.update((converter or _CONVERTER).unstructure(term.options))
    return out
