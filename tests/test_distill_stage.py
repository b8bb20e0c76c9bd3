"""The distill stage end to end on tiny F2SRGAN-family models: training, hooks, recipes, plugins."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from attrs import define
from torch import nn

from srcompress import LossEntry, ModelEntry, Registry, default_registry, hookimpl
from srcompress.config import option, positive
from srcompress.context import StageContext
from srcompress.data import save_image
from srcompress.errors import RecipeError, SrcompressError
from srcompress.models import build_model
from srcompress.plugins.models.f2srgan import DiscriminatorOptions, F2SRGANDiscriminator, F2SRGANOptions
from srcompress.plugins.techniques.distill import (
    AFDLoss,
    DistillationLoss,
    DistillConfig,
    FeatureLoss,
    FeatureTaps,
    apply,
    distill_batch,
    split_anchor,
)
from srcompress.recipe import parse_recipe
from srcompress.recipe_types import DataConfig, ModelRef
from srcompress.training import LossInputs, LossTerm

SCALE = 2


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> object:
    """One torch thread: on the shared 2-core machine it is several times faster than two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def hr_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four smooth-plus-noise 32x32 HR images (real files read by the real patch pipeline)."""
    folder = tmp_path_factory.mktemp("hr")
    gen = torch.Generator().manual_seed(1)
    ramp = torch.linspace(0, 1, 32)
    for i in range(4):
        base = 0.5 * (ramp.view(1, 1, 32) + ramp.view(1, 32, 1)) * torch.rand(3, 1, 1, generator=gen)
        save_image((base + 0.2 * torch.rand(3, 32, 32, generator=gen)).clamp(0, 1), folder / f"img{i}.png")
    return folder


def _ctx(tmp_path: Path, hr_folder: Path, registry: Registry | None = None) -> StageContext:
    data = DataConfig(train=(str(hr_folder),), eval=(str(hr_folder),), patch=16, batch=2)
    return StageContext(index=0, stage_name="distill", scale=SCALE, data=data, work_dir=tmp_path / "work",
                        registry=registry or default_registry(), quiet=True)


def _teacher() -> nn.Module:
    """A 4-block, 16-wide F2SRGAN with FFC in blocks 0 and 2 (random weights)."""
    torch.manual_seed(0)
    return build_model(ModelRef(name="f2srgan", scale=SCALE, options=F2SRGANOptions(blocks=4, width=16)))


STUDENT = ModelRef(name="f2srgan", scale=SCALE, options=F2SRGANOptions(blocks=2, width=8, ffc_blocks=()))


def _no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def _params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[nn.Module]:
    """Every loss module the distill stage builds (to inspect adapters after training)."""
    from srcompress.plugins.techniques.distill import technique

    modules: list[nn.Module] = []
    original = technique.build_terms

    def spy(*args: object, **kwargs: object) -> dict[str, tuple[float, nn.Module]]:
        terms = original(*args, **kwargs)  # type: ignore[arg-type]
        modules.extend(m for _, m in terms.values())
        return terms

    monkeypatch.setattr(technique, "build_terms", spy)
    return modules


def test_distill_trains_student_binds_adapters_and_removes_hooks(tmp_path: Path, hr_folder: Path, built: list[nn.Module]) -> None:
    teacher = _teacher()
    teacher_before = _params(teacher)
    losses = tuple(LossTerm(kind=k, weight=w) for k, w in
                   [("output", 1.0), ("feature", 0.1), ("at", 10.0), ("afd", 5.0), ("kl", 1e-6), ("at_grad", 1e-3)])
    config = DistillConfig(student=STUDENT, losses=losses, steps=3, lr=1e-3, num_taps=2, checkpoint_every=None,
                           log_every=1)
    ctx = _ctx(tmp_path, hr_folder)
    torch.manual_seed(0)
    initial = _params(build_model(STUDENT))
    torch.manual_seed(0)
    student = apply(teacher, config, ctx)

    assert student is not teacher and len(student.body) == 2
    changed = [k for k, v in _params(student).items() if not torch.equal(v, initial[k])]
    assert "head.pointwise.weight" in changed and "tail.pointwise.weight" in changed and "body.1.conv2.pointwise.weight" in changed
    assert all(torch.equal(v, teacher_before[k]) for k, v in _params(teacher).items()), "the teacher must stay frozen"
    assert _no_hooks(student) and _no_hooks(teacher)
    # taps: student blocks 0 and 1 (8 channels), teacher blocks 1 and 3 (16): adapters 8 -> 16, trained.
    assert ctx.notes[0] == "taps: student body.0, body.1; teacher body.1, body.3"
    feature = next(m for m in built if isinstance(m, FeatureLoss))
    assert [tuple(a.weight.shape) for a in feature.adapters] == [(16, 8, 1, 1)] * 2
    afd = next(m for m in built if isinstance(m, AFDLoss))
    assert afd.p_t is not None and afd.p_t.shape == (2, 128)
    assert feature.adapters[0].weight.grad is not None and afd.keys[0][0].weight.grad is not None
    assert "distilled 3 steps with 1 x output, 0.1 x feature, 10 x at, 5 x afd, 1e-06 x kl, 0.001 x at_grad" in ctx.notes[1]


def test_adapters_change_during_training(tmp_path: Path, hr_folder: Path, built: list[nn.Module],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    start: dict[str, torch.Tensor] = {}
    original_bind = FeatureLoss.bind

    def bind(self: FeatureLoss, s: list[int], t: list[int]) -> None:
        original_bind(self, s, t)
        start.update({k: v.detach().clone() for k, v in self.state_dict().items()})

    monkeypatch.setattr(FeatureLoss, "bind", bind)
    config = DistillConfig(student=STUDENT, losses=(LossTerm(kind="output"), LossTerm(kind="feature")), steps=2,
                           lr=1e-2, num_taps=1, checkpoint_every=None)
    apply(_teacher(), config, _ctx(tmp_path, hr_folder))
    feature = next(m for m in built if isinstance(m, FeatureLoss))
    after = feature.state_dict()
    assert start.keys() == after.keys() and any(not torch.equal(start[k], after[k].cpu()) for k in start)


def test_student_none_distills_into_the_incoming_model_from_a_named_teacher(tmp_path: Path, hr_folder: Path) -> None:
    torch.manual_seed(0)
    student = build_model(STUDENT)
    before = _params(student)
    options = F2SRGANOptions(blocks=2, width=16)
    weights = tmp_path / "teacher.pt"
    torch.save(build_model(ModelRef(name="f2srgan", scale=SCALE, options=options)).state_dict(), weights)
    teacher_ref = ModelRef(name="f2srgan", scale=SCALE, options=options, weights=str(weights))
    config = DistillConfig(teacher=teacher_ref, losses=(LossTerm(kind="output"), LossTerm(kind="at")),
                           teacher_taps=("body.0",), steps=2, lr=1e-3, checkpoint_every=None)
    ctx = _ctx(tmp_path, hr_folder)
    result = apply(student, config, ctx)
    assert result is student and _no_hooks(student)
    assert any(not torch.equal(v, before[k]) for k, v in _params(student).items())
    assert ctx.notes[0] == "taps: student body.1; teacher body.0"  # one explicit teacher tap -> one hinted student tap


def test_teacher_without_weights_is_refused(tmp_path: Path, hr_folder: Path) -> None:
    config = DistillConfig(teacher=ModelRef(name="f2srgan", scale=SCALE), steps=1)
    with pytest.raises(SrcompressError, match=r"teacher f2srgan has no weights .*add 'weights: official'"):
        apply(build_model(STUDENT), config, _ctx(tmp_path, hr_folder))


def test_incoming_teacher_gets_its_flags_back(tmp_path: Path, hr_folder: Path) -> None:
    teacher = _teacher().train()
    flags = [p.requires_grad for p in teacher.parameters()]
    assert True in flags and False in flags  # the mean shifts are frozen by the model itself
    config = DistillConfig(student=STUDENT, losses=(LossTerm(kind="output"),), steps=1, checkpoint_every=None)
    apply(teacher, config, _ctx(tmp_path, hr_folder))
    assert teacher.training and [p.requires_grad for p in teacher.parameters()] == flags


def test_split_anchor_keeps_the_first_l1_for_the_trainer() -> None:
    anchor, rest = split_anchor((LossTerm(kind="output"), LossTerm(kind="tv", weight=0.5)))
    assert anchor == LossTerm(kind="l1", weight=0.0) and [t.kind for t in rest] == ["output", "tv"]
    anchor, rest = split_anchor((LossTerm(kind="output"), LossTerm(kind="l1", weight=0.1)))
    assert anchor == LossTerm(kind="l1", weight=0.1) and [t.kind for t in rest] == ["output"]


def test_unknown_tap_names_the_module_and_suggests(tmp_path: Path, hr_folder: Path) -> None:
    config = DistillConfig(student=STUDENT, losses=(LossTerm(kind="at"),), student_taps=("body.7",),
                           teacher_taps=("body.3",), steps=1)
    with pytest.raises(SrcompressError, match=r"distill student_taps: unknown module 'body.7'; did you mean 'body.1'"):
        apply(_teacher(), config, _ctx(tmp_path, hr_folder))


def test_feature_taps_capture_and_remove() -> None:
    model = _teacher()
    with FeatureTaps(model, ["body.0", "upsampler.0"]) as taps:
        model(torch.rand(1, 3, 8, 8))
        first, second = taps.collect()
        assert first.shape == (1, 16, 8, 8) and second.shape == (1, 16, 16, 16)
        with pytest.raises(SrcompressError, match="did not run"):
            taps.collect()
    assert _no_hooks(model)


# ---------------------------------------------------------------------------------------- plugins and YAML
@define(frozen=True, kw_only=True)
class GramConfig:
    """Options of a third-party Gram-matrix distillation loss."""

    scale: float = option(1.0, help="Multiplier of the loss.", validator=positive)


class GramLoss(DistillationLoss):
    """Style-like distillation: MSE between Gram matrices of the student's and the teacher's images."""

    name = "gram"

    def __init__(self, config: GramConfig) -> None:
        super().__init__()
        self.scale = config.scale
        self.calls = 0

    @staticmethod
    def _gram(x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(2)
        return flat @ flat.transpose(1, 2) / flat.shape[-1]

    def forward(self, inputs: LossInputs) -> torch.Tensor:
        self.calls += 1
        batch = distill_batch(inputs, self.name)
        return self.scale * (self._gram(inputs.sr) - self._gram(batch.teacher_sr)).pow(2).mean()


class GramPlugin:
    built: list[GramLoss] = []

    @hookimpl
    def srcompress_losses(self) -> list[LossEntry]:
        def build(config: GramConfig) -> GramLoss:
            loss = GramLoss(config)
            GramPlugin.built.append(loss)
            return loss

        return [LossEntry(name="gram", config_cls=GramConfig, build=build, description="Gram-matrix distillation.")]


RECIPE = {
    "version": 1,
    "model": {"name": "f2srgan", "scale": 2, "blocks": 4, "width": 16},
    "stages": [{
        "type": "distill",
        "student": {"name": "f2srgan", "scale": 2, "blocks": 2, "width": 8, "ffc_blocks": []},
        "losses": [{"kind": "output", "weight": 1.0, "hr_weight": 0.1}, {"kind": "gram", "weight": 2.0, "scale": 3.0},
                   {"kind": "afd", "weight": 10, "qk_dim": 16}],
        "steps": 2, "lr": 1.0e-3, "num_taps": 2, "checkpoint_every": None,
    }],
}


def test_third_party_loss_named_in_yaml_runs_in_a_distill_stage(tmp_path: Path, hr_folder: Path) -> None:
    registry = Registry()
    registry.register(GramPlugin(), "gram-plugin")
    recipe = parse_recipe(RECIPE, registry=registry)
    config = recipe.stages[0].config
    assert isinstance(config, DistillConfig)
    assert [(t.kind, t.weight) for t in config.losses] == [("output", 1.0), ("gram", 2.0), ("afd", 10.0)]
    assert config.losses[1].options == GramConfig(scale=3.0) and config.student is not None
    assert config.student.options.blocks == 2 and config.student.options.ffc_blocks == ()
    GramPlugin.built.clear()
    student = apply(_teacher(), config, _ctx(tmp_path, hr_folder, registry))
    assert len(student.body) == 2
    assert len(GramPlugin.built) == 1 and GramPlugin.built[0].calls == 2


def test_yaml_errors_name_the_loss_key_and_the_kind() -> None:
    registry = Registry()
    registry.register(GramPlugin(), "gram-plugin")
    bad = {**RECIPE, "stages": [{**RECIPE["stages"][0], "losses": [{"kind": "gram", "scael": 2.0}]}]}
    with pytest.raises(RecipeError, match=r"stages\[0\]\.losses\[0\]\.scael: unknown key for loss 'gram'; did you mean 'scale'"):
        parse_recipe(bad, registry=registry)
    bad = {**RECIPE, "stages": [{**RECIPE["stages"][0], "losses": [{"kind": "afdd"}]}]}
    with pytest.raises(RecipeError, match=r"unknown loss 'afdd'; did you mean 'afd'"):
        parse_recipe(bad, registry=registry)


def test_distillation_loss_in_a_train_stage_is_a_clear_error(tmp_path: Path, hr_folder: Path) -> None:
    from srcompress.training import TrainConfig, fit

    config = TrainConfig(steps=1, losses=(LossTerm(kind="output"),), checkpoint_every=None)
    data = DataConfig(train=(str(hr_folder),), patch=16, batch=2)
    with pytest.raises(SrcompressError, match=r"loss 'output' needs a teacher: use it in the losses of a 'distill' stage"):
        fit(build_model(STUDENT), config, data, SCALE, work_dir=tmp_path, progress=False)


# ---------------------------------------------------------------------------------------- GAN-aware
class DiscriminatorPlugin:
    """Registers the F2SRGAN discriminator as a model where the f2srgan plugin does not (yet)."""

    @hookimpl
    def srcompress_models(self) -> list[ModelEntry]:
        return [ModelEntry(name="f2srgan_discriminator", build=lambda _s, options: F2SRGANDiscriminator(options),
                           scales=(2, 4), options_cls=DiscriminatorOptions)]


def test_gan_aware_distillation_trains_student_and_discriminator(tmp_path: Path, hr_folder: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    registry = Registry()
    if "f2srgan_discriminator" not in {m.name for m in registry.list_models()}:
        registry.register(DiscriminatorPlugin(), "test-discriminator")
    from srcompress.training import trainer as trainer_module

    discriminators: list[tuple[nn.Module, dict[str, torch.Tensor]]] = []
    original_init = trainer_module.Trainer.__init__

    def init(self: object, *args: object, **kwargs: object) -> None:
        original_init(self, *args, **kwargs)  # type: ignore[arg-type]
        disc = self.disc  # type: ignore[attr-defined]
        discriminators.append((disc, _params(disc)))

    monkeypatch.setattr(trainer_module.Trainer, "__init__", init)
    recipe = {**RECIPE, "stages": [{
        **RECIPE["stages"][0],
        "losses": [{"kind": "output"}, {"kind": "at", "weight": 10}, {"kind": "gan", "weight": 0.1, "flavor": "relativistic_paired"},
                   {"kind": "tv", "weight": 2.0e-8, "reduction": "sum"}],
        "discriminator": {"name": "f2srgan_discriminator", "scale": 2, "features": [8, 8, 16, 16], "hidden": 16, "pool": 2},
    }]}
    config = parse_recipe(recipe, registry=registry).stages[0].config
    torch.manual_seed(0)
    ctx = _ctx(tmp_path, hr_folder, registry)
    student = apply(_teacher(), config, ctx)
    disc, before = discriminators[0]
    assert isinstance(disc, F2SRGANDiscriminator) and disc.options.features == (8, 8, 16, 16)
    assert not torch.equal(before["classifier.4.weight"], disc.state_dict()["classifier.4.weight"])
    assert "1 x output, 10 x at, 0.1 x gan, 2e-08 x tv" in ctx.notes[-1] and _no_hooks(student)


def test_student_init_from_teacher_renames_blocks() -> None:
    from srcompress.plugins.techniques.distill.technique import init_from_teacher

    teacher = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Conv2d(4, 4, 3), torch.nn.Conv2d(4, 4, 1))
    student = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Conv2d(4, 4, 1))
    copied, total = init_from_teacher(student, teacher, {"1": "2"})
    assert (copied, total) == (4, 4)
    assert torch.equal(student[0].weight, teacher[0].weight) and torch.equal(student[1].weight, teacher[2].weight)
    other = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Conv2d(4, 4, 1))
    # '1.weight' is 3x3 in the teacher and 1x1 here: kept; '1.bias' has the same shape: copied
    assert init_from_teacher(other, teacher, {}) == (3, 4)


def test_student_with_a_shared_prelu_slope_starts_at_the_mean_of_the_teachers() -> None:
    from srcompress.plugins.techniques.distill.technique import init_from_teacher

    teacher = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.PReLU(4))
    with torch.no_grad():
        teacher[1].weight.copy_(torch.tensor([0.1, 0.2, 0.3, -0.2]))
    student = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.PReLU(1))
    assert init_from_teacher(student, teacher, {}) == (3, 3)
    assert student[1].weight.item() == pytest.approx(0.1)
