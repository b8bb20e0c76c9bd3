"""Structured pruning on torch-pruning: every hinted model, exactness, PixelShuffle, errors, plugins.

Exactness checks compare a pruned model with the unpruned one in which the removed channels are
silenced by hand (their consumers' input weights zeroed, or their producers zeroed): the two must
compute the same function.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from srcompress import Registry, hookimpl
from srcompress.checkpoint import load_checkpoint, save_checkpoint
from srcompress.entries import ModelEntry, ModelHints
from srcompress.errors import UnknownNameError
from srcompress.models import build_model, model_ref_of, ref_from_mapping, ref_to_mapping
from srcompress.plugins.models.f2srgan import F2SRGANOptions
from srcompress.plugins.techniques.pruning import (
    ImportanceEntry,
    PruneConfig,
    PruningError,
    get_importance,
    keep_count,
    list_importances,
    prune_model,
    search_ratio,
    select_channels,
)
from srcompress.plugins.techniques.pruning.graph import ChannelGroup
from srcompress.recipe_types import ModelRef

# Small options for the registered models (the published sizes cost seconds per forward here).
SMALL_OPTIONS: dict[str, dict[str, Any]] = {
    "carn": {"width": 16},
    "edsr": {"blocks": 2, "width": 32},
    "edsr_baseline": {"blocks": 2, "width": 16},
    "espcn": {"n1": 16, "n2": 8},
    "f2srgan": {"blocks": 2, "width": 16},
    "f2srgan_student": {"blocks": 2, "width": 16},
    "fsrcnn": {"d": 16, "s": 8, "m": 2},
    "imdn": {"modules": 2, "width": 16},
    "light_f2srgan": {"width": 16},
    "rcan": {"groups": 2, "blocks": 2, "width": 32},
    "rrdbnet": {"blocks": 1, "width": 16, "growth": 8},
    "srcnn": {"n1": 16, "n2": 8},
    "srfbn": {"width": 16, "steps": 2, "groups": 2},
    "srresnet": {"blocks": 2, "width": 16},
    "swiftsrgan": {"blocks": 2, "width": 16},
    "swinir_light": {"embed_dim": 12, "depths": (2,), "num_heads": (2,), "window_size": 4},
    "vdsr": {"depth": 4, "width": 16},
}
LR = 12


def _prunable_entries() -> list[Any]:
    cases = []
    for entry in Registry().list_models():
        if getattr(entry, "role", "sr") != "sr":
            continue  # e.g. the F2SRGAN discriminator: not an upscaler
        model = entry.build(max(entry.scales), entry.options_cls(**SMALL_OPTIONS.get(entry.name, {})))
        if not any(p.requires_grad for p in model.parameters()):
            continue  # bicubic: nothing to prune
        cases.append(pytest.param(entry, id=entry.name))
    return cases


def _build(entry: ModelEntry, scale: int) -> nn.Module:
    torch.manual_seed(0)
    return entry.build(scale, entry.options_cls(**SMALL_OPTIONS.get(entry.name, {})))


def _f2srgan(**options: Any) -> nn.Module:
    torch.manual_seed(0)
    model = build_model(ModelRef(name="f2srgan", scale=4, options=F2SRGANOptions(**options)))
    with torch.no_grad():  # published-like magnitudes: random init leaves the Fourier units near zero
        for param in model.parameters():
            if param.requires_grad:
                param.add_(0.05 * torch.randn_like(param))
    return model


def _hints(model: nn.Module) -> ModelHints:
    return Registry().get_model(model_ref_of(model).name).hints(model)


def _image(size: int = LR, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(3), dtype=dtype)


# ------------------------------------------------------------------------------ every model


@pytest.mark.parametrize("entry", _prunable_entries())
def test_every_hinted_model_prunes_at_half_and_trains(entry: ModelEntry) -> None:
    """Ratio 0.5 of the residual inner widths (or, where the hints leave nothing, every group)."""
    scale = 4 if 4 in entry.scales else max(entry.scales)
    model = _build(entry, scale)
    hints = entry.hints(model)
    params = sum(p.numel() for p in model.parameters())
    result = prune_model(model, PruneConfig(importance="l1", ratio=0.5), hints=hints)
    for name, (before, after) in result.widths.items():
        assert after == max(1, round(before * 0.5)), f"{entry.name}: group {name} kept {after} of {before}"
    if result.removed == 0:  # e.g. IMDN (fixed distillation splits), Light F2SRGAN (inner widths already 1)
        assert result.skipped or all(after == 1 for _b, after in result.widths.values())
        result = prune_model(model, PruneConfig(importance="l1", ratio=0.5, prune_trunk=True), hints=hints)
    assert result.removed > 0, f"{entry.name}: nothing pruned ({result.skipped})"
    assert sum(p.numel() for p in model.parameters()) == result.params[1] < params
    model.train()
    lr = _image()
    sr = model(lr)
    assert sr.shape == (1, 3, scale * LR, scale * LR)
    sr.square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None for g in grads)
    assert all(torch.isfinite(g).all() for g in grads if g is not None)


# ------------------------------------------------------------------------------ F2SRGAN


def test_f2srgan_inner_width_prunes_ffc_exactly() -> None:
    """Inner widths: FFC blocks split into local and global halves; pruned == original with the
    removed channels' consumer (conv2.pointwise) columns zeroed, to 1e-5."""
    model = _f2srgan(blocks=2, width=16)
    original = copy.deepcopy(model)
    result = prune_model(model, PruneConfig(importance="l2", ratio=0.5), hints=_hints(model))
    assert result.widths == {
        "body.0.conv1.convl2l.pointwise": (8, 4),
        "body.0.conv1.convl2g.pointwise": (8, 4),
        "body.1.conv1.pointwise": (16, 8),
    }
    ffc = model.body[0].conv1
    assert ffc.out_channels == 8 and model.body[0].act.num_parameters == 8
    assert model.body[0].conv2.pointwise.in_channels == 8 and model.body[1].conv2.depthwise.groups == 8
    # The channels removed from the cat([local, global]) output: local ones as they are, global ones + 8.
    removed = {0: [], 1: []}
    for name, (root, indices) in result.channels.items():
        block = int(name.split(".")[1])
        offset = 8 if "convl2g" in root else 0
        removed[block] += [offset + i for i in indices]
    reference = copy.deepcopy(original)
    with torch.no_grad():
        for block, channels in removed.items():
            reference.body[block].conv2.pointwise.weight[:, channels] = 0
        assert (model(_image()) - reference(_image())).abs().max() <= 1e-5
        assert (model(_image()) - original(_image())).abs().max() > 1e-4  # the channels did matter


def test_fourier_unit_hidden_width_prunes_exactly() -> None:
    """The spectral transform's hidden width (conv1 -> ReLU -> Fourier unit -> conv2). The unit's
    real-layout conv maps cat([re, im]) and cat([im, -re]) (C -> 2C inputs): hidden channel k is its
    input columns k and k + C and its output row k. Pruned == original with conv1's row k and conv2's
    column k zeroed, to 1e-5."""
    model = _f2srgan(blocks=1, width=16, local_fourier_unit=False)
    original = copy.deepcopy(model)
    config = PruneConfig(importance="l1", ratio=0.5, prune_trunk=True,
                         overrides={"body.0.conv1.convg2g.*": 0.5, "*": 0.0})
    result = prune_model(model, config, hints=_hints(model))
    changed = {name: widths for name, widths in result.widths.items() if widths[0] != widths[1]}
    assert changed == {"body.0.conv1.convg2g.conv1.pointwise": (4, 2)}
    spectral = model.body[0].conv1.convg2g
    assert spectral.fu.conv.weight.shape == (2, 4, 1, 1)  # 2 kept channels; inputs: their re and im
    _root, removed = result.channels["body.0.conv1.convg2g.conv1.pointwise"]
    reference = copy.deepcopy(original)
    with torch.no_grad():
        ref_spectral = reference.body[0].conv1.convg2g
        ref_spectral.conv1.pointwise.weight[removed] = 0
        ref_spectral.conv1.pointwise.bias[removed] = 0
        ref_spectral.conv2.pointwise.weight[:, removed] = 0
        assert (model(_image()) - reference(_image())).abs().max() <= 1e-5
        assert (model(_image()) - original(_image())).abs().max() > 1e-6


def test_f2srgan_trunk_pruning_keeps_rgb_ends_and_quadrant_split() -> None:
    model = _f2srgan(blocks=2, width=16)
    result = prune_model(model, PruneConfig(importance="lamp", ratio=0.5, prune_trunk=True), hints=_hints(model))
    assert result.widths["head.pointwise"] == (16, 8)  # the trunk, coupled through every skip
    assert model.head.pointwise.out_channels == 8 and model.tail.depthwise.in_channels == 8
    assert model.body[0].conv1.convl2l.depthwise.in_channels == 4  # the FFC's split follows
    assert "never_prune" in result.skipped["body.0.conv1.convg2g.conv1.pointwise"]  # quadrant split kept
    assert model.tail.pointwise.out_channels == 3 and model(_image()).shape == (1, 3, 48, 48)


# --------------------------------------------------------------------------- PixelShuffle


def _edsr() -> nn.Module:
    torch.manual_seed(0)
    return build_model(ModelRef(name="edsr_baseline", scale=4, options=Registry().get_model("edsr_baseline")
                                .options_cls(blocks=1, width=8)))


def test_pixel_shuffle_conv_loses_whole_blocks_exactly() -> None:
    model = _edsr()
    original = copy.deepcopy(model)
    config = PruneConfig(importance="l1", ratio=0.5, prune_trunk=True, overrides={"tail.0.2": 0.5, "*": 0.0})
    result = prune_model(model, config, hints=_hints(model))
    assert result.widths["tail.0.2"] == (8, 4)  # channels after the shuffle
    root, removed = result.channels["tail.0.2"]
    assert root == "tail.0.2" and len(removed) == 16
    blocks = sorted({i // 4 for i in removed})
    assert sorted(removed) == [4 * b + k for b in blocks for k in range(4)]  # whole r*r blocks
    conv, last = model.tail[0][2], model.tail[1]
    assert conv.out_channels == 16 and last.in_channels == 4 and conv.out_channels == 4 * last.in_channels
    reference = copy.deepcopy(original)
    with torch.no_grad():
        reference.tail[1].weight[:, blocks] = 0
        assert (model(_image()) - reference(_image())).abs().max() <= 1e-5
        assert (model(_image()) - original(_image())).abs().max() > 1e-4


def test_pixel_shuffle_keep_leaves_the_upsampler() -> None:
    model = _edsr()
    result = prune_model(model, PruneConfig(ratio=0.5, prune_trunk=True, pixel_shuffle="keep"), hints=_hints(model))
    assert "pixel_shuffle: keep" in result.skipped["tail.0.2"]
    assert model.tail[0][2].out_channels == 32 and model.tail[0][0].out_channels == 32
    assert result.widths["head.0"] == (8, 4)


def test_round_to_and_global_scope() -> None:
    model = _f2srgan(blocks=2, width=16)
    result = prune_model(model, PruneConfig(ratio=0.3, round_to=4, prune_trunk=True, scope="global", importance="lamp"),
                         hints=_hints(model))
    assert all(after % 4 == 0 for _b, after in result.widths.values())
    kept = sum(after for _b, after in result.widths.values())
    total = sum(before for before, _a in result.widths.values())
    assert abs(kept - 0.7 * total) <= 4 * len(result.widths)
    assert len({after / before for before, after in result.widths.values()}) > 1  # not uniform


# ------------------------------------------------------------------------------ selection


def _group(name: str, size: int) -> ChannelGroup:
    return ChannelGroup(name=name, root=nn.Identity(), root_fn=None, size=size, group=None, layers=(name,), touched=(name,))


def test_keep_count_rounding() -> None:
    assert keep_count(64, 0.25, 64) == 48 and keep_count(64, 0.75, 64) == 16
    assert keep_count(64, 63 / 64, 64) == 1  # Light F2SRGAN's 64 -> 1
    assert keep_count(64, 0.3, 64, round_to=8) == 48 and keep_count(64, 0.97, 64, round_to=8) == 8
    assert keep_count(64, 0.9, 64, min_channels=10) == 10
    assert keep_count(64, 0.5, 40) == 32 and keep_count(64, 0.25, 40) == 40  # never grows back


def test_select_overrides_and_global_ranking() -> None:
    a, b, c = _group("body.0.conv", 4), _group("body.1.conv", 4), _group("upsampler.0", 4)
    scores = {a: torch.tensor([1.0, 2.0, 3.0, 4.0]), b: torch.tensor([10.0, 20.0, 30.0, 0.5]), c: torch.tensor([4.0, 3.0, 2.0, 1.0])}
    per_layer = select_channels([a, b, c], scores, ratio=0.5, overrides={"upsampler*": 0.0}, scope="per_layer", original={})
    assert per_layer == {a: [0, 1], b: [0, 3], c: []}
    pooled = select_channels([a, b, c], scores, ratio=0.5, overrides={"upsampler*": 0.25}, scope="global", original={})
    assert pooled[c] == [3]  # its own ratio
    assert pooled[a] == [0, 1, 2] and pooled[b] == [3]  # the 4 lowest of a and b together
    # Iterative steps: ratios are relative to the original width (8 here), the group has 4 left.
    step2 = select_channels([a], scores, ratio=0.75, overrides={}, scope="per_layer", original={"body.0.conv": 8})
    assert step2[a] == [0, 1]  # keep 8 * 0.25 = 2
    done = select_channels([a], scores, ratio=0.5, overrides={}, scope="per_layer", original={"body.0.conv": 8})
    assert done[a] == []  # already at 8 * 0.5


# ------------------------------------------------------------------------------ errors


class _Mix(nn.Module):
    """A channel mix with a raw parameter: not a layer torch-pruning knows."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.eye(channels) + 0.01 * torch.randn(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("oc,nchw->nohw", self.weight, x)


class _UserNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, 8, 3, padding=1)
        self.mix = _Mix(8)
        self.body = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.tail = nn.Conv2d(8, 12, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.tail(self.body(self.mix(self.head(x)))))


def test_unsupported_layer_is_named_with_ignore_fix() -> None:
    torch.manual_seed(0)
    net = _UserNet()
    with pytest.raises(PruningError, match=r"layer 'mix' has a parameter 'mix.weight' \(8, 8\).*add `ignore: \[mix\]`"):
        prune_model(copy.deepcopy(net), PruneConfig(ratio=0.5, prune_trunk=True))
    result = prune_model(net, PruneConfig(ratio=0.5, prune_trunk=True, ignore=("mix",)))
    assert result.widths == {"body.0": (8, 4)}
    assert "ignore: mix" in result.skipped["head"] and "model's output" in result.skipped["tail"]
    assert net(_image(8)).shape == (1, 3, 16, 16)


def test_user_module_without_hints_needs_prune_trunk() -> None:
    with pytest.raises(PruningError, match="no residual_inner hints.*prune_trunk: true"):
        prune_model(_UserNet(), PruneConfig(ratio=0.5))


def test_unknown_importance_lists_registered() -> None:
    with pytest.raises(UnknownNameError, match=r"unknown pruning importance 'lmap'; did you mean 'lamp'\?.*random"):
        prune_model(_edsr(), PruneConfig(importance="lmap"), hints=_hints(_edsr()))


# ------------------------------------------------------------------------------ plugins


class _IndexOrder:
    """Scores = channel index: removes the first channels of every group."""

    def __call__(self, group: Any) -> torch.Tensor:
        return torch.arange(len(group[0].idxs), dtype=torch.float32)


class _ThirdParty:
    @hookimpl
    def srcompress_pruning_importances(self) -> list[ImportanceEntry]:
        return [ImportanceEntry(name="index_order", build=lambda _config: _IndexOrder(), description="test")]


def test_third_party_importance_by_name() -> None:
    registry = Registry()
    assert {"random", "l1", "l2", "group_norm", "lamp", "taylor", "fpgm"} <= {e.name for e in list_importances(registry)}
    registry.register(_ThirdParty(), "x")
    registry.pm.hook.srcompress_addhooks.call_historic(kwargs={"pluginmanager": registry.pm})  # idempotent
    entry = get_importance(registry, "index_order")
    assert entry.plugin == "x" and get_importance(registry, "lamp").plugin == "prune"
    model = _edsr()
    result = prune_model(model, PruneConfig(importance="index_order", ratio=0.5), hints=_hints(model), registry=registry)
    assert result.channels == {"body.0.body.0": ("body.0.body.0", [0, 1, 2, 3])}


def test_duplicate_importance_name_names_both_plugins() -> None:
    registry = Registry()

    class Clash:
        @hookimpl
        def srcompress_pruning_importances(self) -> list[ImportanceEntry]:
            return [ImportanceEntry(name="lamp", build=lambda _c: _IndexOrder())]

    registry.register(Clash(), "clash")
    with pytest.raises(Exception, match="'lamp' is registered by two plugins: \"prune\" and \"clash\""):
        list_importances(registry)


def test_callable_importance_and_gradient_criterion() -> None:
    model = _edsr()
    result = prune_model(model, PruneConfig(ratio=0.5), hints=_hints(model), importance=_IndexOrder())
    assert result.channels["body.0.body.0"][1] == [0, 1, 2, 3]
    model = _edsr()
    with pytest.raises(PruningError, match="needs gradients"):
        prune_model(model, PruneConfig(importance="taylor"), hints=_hints(model))
    batches = [(_image(8), torch.rand(1, 3, 32, 32))]
    result = prune_model(model, PruneConfig(importance="taylor"), hints=_hints(model), batches=batches)
    assert result.widths == {"body.0.body.0": (8, 4)}
    assert all(p.grad is None for p in model.parameters())


# ---------------------------------------------------------------------------- targets, checkpoints


def test_params_target_search() -> None:
    model = _edsr()
    config = PruneConfig(target_params=0.5, prune_trunk=True)
    before = sum(p.numel() for p in model.parameters())

    def params(m: nn.Module) -> float:
        return float(sum(p.numel() for p in m.parameters()))

    ratio, reached = search_ratio(model, config, params, 0.5,
                                  prune=lambda m, r: prune_model(m, config, ratio=r, hints=_hints(model)))
    assert 0.2 < ratio < 0.6 and reached <= 0.5
    prune_model(model, config, ratio=ratio, hints=_hints(model))
    assert 0.35 <= params(model) / before <= 0.5
    with pytest.raises(PruningError, match="cannot reach"):
        search_ratio(_edsr(), config, params, 0.001, prune=lambda m, r: prune_model(m, config, ratio=r, hints=_hints(m)))


@pytest.mark.parametrize("trunk", [False, True], ids=["inner", "trunk"])
@pytest.mark.parametrize("name", ["f2srgan", "edsr_baseline"])
def test_pruned_checkpoint_reloads_into_fresh_model(tmp_path: Path, name: str, trunk: bool) -> None:
    model = _f2srgan(blocks=2, width=16) if name == "f2srgan" else _edsr()
    prune_model(model, PruneConfig(importance="group_norm", ratio=0.5, prune_trunk=trunk), hints=_hints(model))
    ref = model_ref_of(model)
    path = save_checkpoint(model, tmp_path / f"{ref.name}.pt", model_ref=ref_to_mapping(ref))
    payload = torch.load(path, weights_only=True)
    fresh = build_model(ref_from_mapping(payload["model"]), load_weights=False)
    assert sum(p.numel() for p in fresh.parameters()) > sum(p.numel() for p in model.parameters())
    load_checkpoint(path, fresh)
    with torch.no_grad():
        assert torch.equal(fresh(_image()), model(_image()))
