"""What plugins register: typed entries for models, techniques, backends, losses and metrics.

A plugin's hook returns a list of these entries. The core attaches the name of the plugin that
returned each one (``plugin``) when it collects them, so errors and ``srcompress list`` can say
where a name came from.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs
from attrs import define, field

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "BackendEntry",
    "Deployed",
    "LossEntry",
    "MetricEntry",
    "ModelEntry",
    "ModelHints",
    "NoOptions",
    "TechniqueEntry",
    "WeightsEntry",
]


def _nonempty_name(_inst: object, attribute: attrs.Attribute, value: str) -> None:
    if not isinstance(value, str) or not value or not value.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"{attribute.name} must be a non-empty name of letters, digits, '_' or '-' (got {value!r})")


@define(frozen=True, kw_only=True)
class NoOptions:
    """Config class for an entry that takes no options."""


@define(frozen=True, kw_only=True)
class WeightsEntry:
    """A published checkpoint of a model.

    ``filename`` is the published file name: it is looked up in the folder named by
    ``SRCOMPRESS_WEIGHTS``, then in the cache, then downloaded from ``url`` and checked against
    ``sha256``. ``options`` are the architecture options the checkpoint was trained with (they
    override the recipe's defaults), ``scale`` the upscaling factor it was trained for.
    """

    tag: str = field(validator=_nonempty_name)
    scale: int
    filename: str
    url: str
    sha256: str
    options: Mapping[str, Any] = field(factory=dict)
    description: str = ""


@define(frozen=True, kw_only=True)
class ModelHints:
    """Structural hints a model gives to techniques, as qualified module names (``model.named_modules()``).

    - ``never_prune``: modules whose output channels must keep their count (the last conv, RGB
      input convs, convs whose channel split points are fixed).
    - ``pixel_shuffle_convs``: conv name -> upscale factor r of the PixelShuffle it feeds; such a
      conv may only lose output channels in groups of r*r.
    - ``feature_taps``: modules whose outputs are the features used by distillation, shallow to deep.
    - ``keep_float``: modules that quantization must leave in floating point (e.g. Fourier units).
    - ``residual_inner``: modules whose output width is a residual block's inner width (pruning
      these alone leaves the trunk untouched).
    """

    never_prune: Sequence[str] = ()
    pixel_shuffle_convs: Mapping[str, int] = field(factory=dict)
    feature_taps: Sequence[str] = ()
    keep_float: Sequence[str] = ()
    residual_inner: Sequence[str] = ()


@define(frozen=True, kw_only=True)
class ModelEntry:
    """An SR architecture.

    ``build(scale, options)`` returns an ``nn.Module`` mapping float32 RGB NCHW images in [0, 1]
    of shape (N, 3, H, W) to (N, 3, scale*H, scale*W), also in [0, 1] (not clamped). ``options`` is an
    instance of ``options_cls`` (a frozen attrs class; every field has a default and a docstring).
    ``hints(model)`` returns the model's :class:`ModelHints`. ``load_weights(model, path)`` loads a
    published checkpoint file into a built model (default: a plain state dict).

    ``role`` is ``"sr"`` for an upscaler, or ``"discriminator"`` for a GAN critic mapping float32 RGB
    (N, 3, H, W) images in [0, 1] to logits (N, 1); a discriminator ignores ``scale``.
    """

    name: str = field(validator=_nonempty_name)
    build: Callable[[int, Any], nn.Module]
    scales: tuple[int, ...]
    options_cls: type = NoOptions
    hints: Callable[[nn.Module], ModelHints] = lambda model: ModelHints()
    weights: tuple[WeightsEntry, ...] = ()
    load_weights: Callable[[nn.Module, Path], None] | None = None
    description: str = ""
    role: str = field(default="sr", validator=attrs.validators.in_(("sr", "discriminator")))
    plugin: str = ""


@define(frozen=True, kw_only=True)
class TechniqueEntry:
    """A compression technique ("optimizer" in the product's vocabulary, not ``torch.optim``).

    ``config_cls`` is a frozen attrs class: the stage's YAML keys (besides ``type``) are structured
    into it. ``apply(model, config, ctx)`` returns the compressed model (it may modify ``model`` in
    place and return it, or return a new module); ``ctx`` is a :class:`srcompress.StageContext`.
    """

    name: str = field(validator=_nonempty_name)
    config_cls: type
    apply: Callable[[nn.Module, Any, Any], nn.Module]
    description: str = ""
    plugin: str = ""


@runtime_checkable
class Deployed(Protocol):
    """A compiled model on a backend: callable on float32 NCHW tensors in [0, 1]."""

    metadata: Mapping[str, Any]

    def __call__(self, lr: torch.Tensor) -> torch.Tensor: ...

    def save(self, path: Path) -> Path: ...


@define(frozen=True, kw_only=True)
class BackendEntry:
    """A deployment target.

    ``compile(model, example, config) -> Deployed``; ``load(path, config) -> Deployed`` reopens a
    saved artifact. ``tolerance`` is the max absolute difference (images in [0, 1]) from torch
    fp32 that a deployment at each precision must meet.
    """

    name: str = field(validator=_nonempty_name)
    config_cls: type
    compile: Callable[[nn.Module, torch.Tensor, Any], Deployed]
    load: Callable[[Path, Any], Deployed]
    tolerance: Mapping[str, float] = field(factory=dict)
    description: str = ""
    plugin: str = ""


@define(frozen=True, kw_only=True)
class LossEntry:
    """A training loss term usable in a recipe's ``losses: [{kind: NAME, weight: W, ...}]``.

    ``build(config) -> nn.Module`` whose ``forward(batch)`` returns a scalar tensor; ``batch`` is a
    :class:`srcompress.training.LossInputs` (sr, hr, lr, and extras such as teacher outputs).
    """

    name: str = field(validator=_nonempty_name)
    config_cls: type
    build: Callable[[Any], nn.Module]
    description: str = ""
    plugin: str = ""


@define(frozen=True, kw_only=True)
class MetricEntry:
    """A quality metric: ``compute(sr, hr, scale) -> float`` on one image pair.

    ``sr``/``hr`` are float32 RGB (1, 3, H, W) tensors in [0, 1] of equal size; no-reference
    metrics ignore ``hr``. ``higher_is_better`` tells reports which way is good.
    """

    name: str = field(validator=_nonempty_name)
    compute: Callable[[torch.Tensor, torch.Tensor, int], float]
    higher_is_better: bool
    description: str = ""
    plugin: str = ""
