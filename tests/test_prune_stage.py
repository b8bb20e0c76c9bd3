"""The prune stage end to end: schedule, fine-tuning, report notes, targets, recipes, the engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from srcompress import Registry, default_registry, hookimpl
from srcompress.context import StageContext
from srcompress.data import save_image
from srcompress.engine import run
from srcompress.errors import UnknownNameError
from srcompress.measure import count_macs
from srcompress.models import build_model
from srcompress.plugins.models.f2srgan import F2SRGANOptions
from srcompress.plugins.techniques.pruning import ImportanceEntry, PruneConfig, apply
from srcompress.recipe import parse_recipe
from srcompress.recipe_types import DataConfig, ModelRef
from srcompress.training import TrainConfig

SCALE = 2


@pytest.fixture(scope="module")
def hr_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root whose ``Set5`` holds four smooth-plus-noise 32x32 HR images (real files, read by
    the real patch and evaluation pipelines)."""
    folder = tmp_path_factory.mktemp("data") / "Set5"
    folder.mkdir()
    gen = torch.Generator().manual_seed(1)
    ramp = torch.linspace(0, 1, 32)
    for i in range(4):
        base = 0.5 * (ramp.view(1, 1, 32) + ramp.view(1, 32, 1)) * torch.rand(3, 1, 1, generator=gen)
        save_image((base + 0.2 * torch.rand(3, 32, 32, generator=gen)).clamp(0, 1), folder / f"img{i}.png")
    return folder


def _ctx(tmp_path: Path, hr_folder: Path, registry: Registry | None = None) -> StageContext:
    data = DataConfig(root=str(hr_folder.parent), train=("Set5",), eval=("Set5",), patch=16, batch=2, eval_limit=2)
    return StageContext(index=0, stage_name="prune", scale=SCALE, data=data, work_dir=tmp_path / "work",
                        registry=registry or default_registry(), quiet=True)


def _f2srgan() -> nn.Module:
    torch.manual_seed(0)
    return build_model(ModelRef(name="f2srgan", scale=SCALE, options=F2SRGANOptions(blocks=2, width=16)))


def test_iterative_pruning_with_finetune_and_notes(tmp_path: Path, hr_folder: Path) -> None:
    ctx = _ctx(tmp_path, hr_folder)
    model = _f2srgan()
    config = PruneConfig(importance="lamp", ratio=0.5, iterative_steps=2, latency_size=(16, 16),
                         finetune=TrainConfig(steps=2, lr=1e-4, checkpoint_every=None))
    pruned = apply(model, config, ctx)
    assert pruned.body[1].conv1.pointwise.out_channels == 8  # 16 -> 12 -> 8
    assert pruned.body[0].conv1.out_channels == 8  # FFC: (8 local + 8 global) -> 4 + 4
    notes = "\n".join(ctx.notes)
    assert "step 1/2: channel ratio 0.250" in notes and "step 2/2: channel ratio 0.500" in notes
    assert "quality right after pruning (lamp)" in notes and "quality after fine-tuning" in notes
    assert "psnr" in notes
    assert "params 3,529 -> 2,833 (0.803x); MACs at 16x16 LR" in notes
    assert (tmp_path / "work" / "finetune_1").is_dir() and (tmp_path / "work" / "finetune_2").is_dir()
    assert pruned(torch.rand(1, 3, 8, 8)).shape == (1, 3, 16, 16)


def test_macs_target_and_taylor(tmp_path: Path, hr_folder: Path) -> None:
    ctx = _ctx(tmp_path, hr_folder)
    model = _f2srgan()
    before = count_macs(model, (16, 16))
    config = PruneConfig(importance="taylor", target_macs=0.6, prune_trunk=True, latency_size=(16, 16),
                         calibration_batches=1)
    pruned = apply(model, config, ctx)
    fraction = count_macs(pruned, (16, 16)) / before
    assert 0.4 <= fraction <= 0.6
    assert any(note.startswith("target macs 0.6x: channel ratio") for note in ctx.notes)


class _IndexOrder:
    def __call__(self, group: Any) -> torch.Tensor:
        return torch.arange(len(group[0].idxs), dtype=torch.float32)


class _ThirdParty:
    @hookimpl
    def srcompress_pruning_importances(self) -> list[ImportanceEntry]:
        return [ImportanceEntry(name="index_order", build=lambda _config: _IndexOrder())]


def test_third_party_importance_named_in_a_recipe(tmp_path: Path, hr_folder: Path) -> None:
    registry = Registry()
    registry.register(_ThirdParty(), "third_party")
    recipe = parse_recipe({
        "version": 1,
        "model": {"name": "f2srgan", "scale": SCALE, "blocks": 2, "width": 16},
        "stages": [{"type": "prune", "importance": "index_order", "ratio": 0.5, "latency_size": [16, 16]}],
    }, registry=registry)
    config = recipe.stages[0].config
    assert isinstance(config, PruneConfig) and config.importance == "index_order"
    model = _f2srgan()
    kept = model.body[1].conv1.pointwise.weight[8:].clone()
    apply(model, config, _ctx(tmp_path, hr_folder, registry))
    assert torch.equal(model.body[1].conv1.pointwise.weight, kept)  # the criterion removed channels 0-7
    with pytest.raises(UnknownNameError, match="unknown pruning importance 'index_order'"):
        apply(_f2srgan(), config, _ctx(tmp_path, hr_folder, Registry()))


def test_engine_runs_prune_and_resumes_from_the_pruned_checkpoint(tmp_path: Path, hr_folder: Path) -> None:
    recipe = {
        "version": 1,
        "name": "prune_test",
        "model": {"name": "edsr_baseline", "scale": SCALE, "blocks": 1, "width": 8},
        "data": {"root": str(hr_folder.parent), "train": ["Set5"], "eval": ["Set5"], "patch": 16, "batch": 2,
                 "eval_limit": 1},
        "eval": {"lr_size": [16, 16], "latency_runs": 0, "crops": 0},
        "stages": [{"type": "prune", "importance": "l1", "ratio": 0.5, "prune_trunk": True, "latency_size": [16, 16]}],
    }
    first = run(recipe, run_dir=tmp_path / "run", quiet=True)
    assert first.model.head[0].out_channels == 4 and first.model.tail[0][0].out_channels == 16
    notes = [note for record in first.records for note in record.get("notes", [])]
    assert any("params" in note and "MACs" in note for note in notes), notes
    again = run(recipe, run_dir=tmp_path / "run", quiet=True)
    assert again.resumed_stages == [0]
    image = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(again.model(image), first.model(image))


def test_pruned_f2srgan_exports_to_onnx_runtime() -> None:
    from srcompress.backends.onnx import TOLERANCE, OnnxConfig, compile_onnx
    from srcompress.plugins.techniques.pruning import prune_model

    model = _f2srgan()
    hints = Registry().get_model("f2srgan").hints(model)
    prune_model(model, PruneConfig(importance="l1", ratio=0.5, prune_trunk=True), hints=hints)
    model.eval()
    image = torch.rand(1, 3, 12, 16, generator=torch.Generator().manual_seed(0))
    deployed = compile_onnx(model, image, OnnxConfig(provider="cpu", threads=1))
    other = torch.rand(1, 3, 10, 14)  # dynamic height and width
    with torch.no_grad():
        for lr in (image, other):
            assert (deployed(lr) - model(lr)).abs().max() <= TOLERANCE["fp32"]
    assert deployed.metadata["fft"] == "fft_free"
