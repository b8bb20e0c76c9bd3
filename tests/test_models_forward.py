"""Every registered model, at every scale it declares: forward + backward on a small input.

The cases are collected from the default registry (``Registry().list_models()``), so a model a plugin
registers is tested the moment it is installed. Each case checks the output shape (N, 3, s*H, s*W),
finite outputs and gradients, and that the model's structural hints name modules that exist.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from srcompress import ModelEntry, Registry

LR_SIZE = 8
# Full-size EDSR / RCAN / RRDBNet / SRFBN cost seconds per backward on 2 shared cores; their standard
# configurations are built and run once (no backward) in tests/test_baselines.py. SRFBN runs as the
# published SRFBN-S (F=32, G=3).
SMALL_OPTIONS: dict[str, dict[str, Any]] = {
    "edsr": {"blocks": 2},
    "rcan": {"groups": 2, "blocks": 2},
    "rrdbnet": {"blocks": 2},
    "srfbn": {"width": 32, "groups": 3},
}


def _cases() -> list[Any]:
    return [
        pytest.param(entry, scale, id=f"{entry.name}-x{scale}")
        for entry in Registry().list_models()
        if entry.role == "sr"
        for scale in entry.scales
    ]


def _discriminators() -> list[Any]:
    return [pytest.param(e, id=e.name) for e in Registry().list_models() if e.role == "discriminator"]


@pytest.mark.parametrize("entry", _discriminators())
def test_discriminator_gives_one_logit_per_image(entry: ModelEntry) -> None:
    model = entry.build(4, entry.options_cls())
    images = torch.rand(2, 3, 48, 48, requires_grad=True)
    logits = model(images)
    assert logits.shape == (2, 1)
    logits.sum().backward()
    assert images.grad is not None and torch.isfinite(images.grad).all()


def _build(entry: ModelEntry, scale: int) -> nn.Module:
    return entry.build(scale, entry.options_cls(**SMALL_OPTIONS.get(entry.name, {})))


def _hint_names(entry: ModelEntry, model: nn.Module) -> dict[str, list[str]]:
    hints = entry.hints(model)
    return {
        "never_prune": list(hints.never_prune),
        "pixel_shuffle_convs": list(hints.pixel_shuffle_convs),
        "feature_taps": list(hints.feature_taps),
        "keep_float": list(hints.keep_float),
        "residual_inner": list(hints.residual_inner),
    }


@pytest.mark.parametrize(("entry", "scale"), _cases())
def test_forward_backward(entry: ModelEntry, scale: int) -> None:
    torch.manual_seed(0)
    model = _build(entry, scale)
    model.train()
    lr = torch.rand(1, 3, LR_SIZE, LR_SIZE)
    sr = model(lr)
    assert sr.shape == (1, 3, LR_SIZE * scale, LR_SIZE * scale)
    assert sr.dtype == torch.float32
    assert torch.isfinite(sr).all()
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if not trainable:  # e.g. bicubic: nothing to train
        return
    (sr - lr.mean()).square().mean().backward()
    with_grad = [(name, p.grad) for name, p in trainable if p.grad is not None]
    assert with_grad, f"{entry.name}: no parameter received a gradient"
    bad = [name for name, grad in with_grad if not torch.isfinite(grad).all()]
    assert not bad, f"{entry.name} x{scale}: non-finite gradients in {bad[:5]}"


@pytest.mark.parametrize(("entry", "scale"), _cases())
def test_hints_name_real_modules(entry: ModelEntry, scale: int) -> None:
    model = _build(entry, scale)
    modules = dict(model.named_modules())
    for field, names in _hint_names(entry, model).items():
        missing = [name for name in names if name not in modules]
        assert not missing, f"{entry.name} x{scale}: hints.{field} names no module: {missing[:5]}"
    for name, r in entry.hints(model).pixel_shuffle_convs.items():
        conv = modules[name]
        assert isinstance(conv, nn.Conv2d), f"{entry.name}: pixel_shuffle_convs[{name!r}] is {type(conv).__name__}"
        assert r >= 2 and conv.out_channels % (r * r) == 0, f"{entry.name}: {name} has {conv.out_channels} maps, r={r}"
