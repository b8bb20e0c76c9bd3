"""Loss terms: values against hand computations, recipe validation, VGG weights, GAN flavors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from srcompress.errors import CheckpointError, RecipeError, SrcompressError
from srcompress.recipe import parse_recipe
from srcompress.registry import Registry
from srcompress.training import (
    DISC_FAKE,
    DISC_REAL,
    AdversarialLoss,
    CharbonnierConfig,
    CharbonnierLoss,
    GANConfig,
    LossInputs,
    LossTerm,
    TrainConfig,
    TVConfig,
    TotalVariationLoss,
    VGGConfig,
    VGGPerceptualLoss,
    build_criterion,
    lr_factor,
    structure_loss_term,
    unstructure_loss_term,
)
from srcompress.training.perceptual import VGG19_LAYERS


@pytest.fixture(scope="module")
def registry() -> Registry:
    """Only the built-in losses, the train stage and the bicubic model: listings are predictable."""
    import srcompress.plugins.losses
    import srcompress.plugins.models.bicubic
    import srcompress.plugins.train

    registry = Registry(autoload=False)
    registry.register(srcompress.plugins.losses, "losses")
    registry.register(srcompress.plugins.train, "train")
    registry.register(srcompress.plugins.models.bicubic, "bicubic")
    return registry


def _inputs(sr: torch.Tensor, hr: torch.Tensor) -> LossInputs:
    return LossInputs(sr=sr, hr=hr, lr=hr[..., ::2, ::2])


SR = torch.tensor([[[[0.0, 0.5], [1.0, 0.25]]]]).expand(1, 3, 2, 2).contiguous()
HR = torch.tensor([[[[0.5, 0.5], [0.0, 0.25]]]]).expand(1, 3, 2, 2).contiguous()


def test_pixel_losses_match_hand_values(registry: Registry) -> None:
    inputs = _inputs(SR, HR)  # differences per channel: 0.5, 0, 1, 0
    assert registry.get_loss("l1").build(None)(inputs).item() == pytest.approx(0.375)
    assert registry.get_loss("mse").build(None)(inputs).item() == pytest.approx(0.3125)
    charbonnier = CharbonnierLoss(CharbonnierConfig(eps=0.1))(inputs).item()
    expected = (0.5**2 + 0.01) ** 0.5 + 0.1 + (1 + 0.01) ** 0.5 + 0.1
    assert charbonnier == pytest.approx(expected / 4)


def test_total_variation_power_and_reduction() -> None:
    inputs = _inputs(SR, HR)  # vertical diffs 1, -0.25; horizontal 0.5, -0.75 (each x3 channels)
    assert TotalVariationLoss(TVConfig(power=1))(inputs).item() == pytest.approx((1 + 0.25) / 2 + (0.5 + 0.75) / 2)
    assert TotalVariationLoss(TVConfig(power=2))(inputs).item() == pytest.approx((1 + 0.0625) / 2 + (0.25 + 0.5625) / 2)
    assert TotalVariationLoss(TVConfig(power=1, reduction="sum"))(inputs).item() == pytest.approx(3 * (1.25 + 1.25))


def test_criterion_weights_terms_and_reports_each(registry: Registry) -> None:
    terms = (LossTerm(kind="l1", weight=2.0), LossTerm(kind="mse", weight=0.5), LossTerm(kind="l1", weight=1.0))
    criterion = build_criterion(terms, registry, {"extra": (3.0, registry.get_loss("mse").build(None))})
    total, values = criterion(_inputs(SR, HR))
    assert list(values) == ["l1", "mse", "l12", "extra"]
    assert total.item() == pytest.approx(2 * 0.375 + 0.5 * 0.3125 + 0.375 + 3 * 0.3125)
    with pytest.raises(ValueError, match="extra loss term 'mse' clashes"):
        build_criterion(terms, registry, {"mse": (1.0, registry.get_loss("mse").build(None))})


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"kind": "l2"}, r"^stages\[0\]\.losses\[1\]\.kind: unknown loss 'l2'; did you mean 'l1'\? \(available: charbonnier, gan, l1, mse, tv, vgg\)$"),
        ({"weight": 1.0}, r"^stages\[0\]\.losses\[1\]: missing 'kind'"),
        ({"kind": "charbonnier", "epss": 0.1}, r"\.epss: unknown key for loss 'charbonnier'; did you mean 'eps'\? \(allowed: kind, weight, eps\)"),
        ({"kind": "l1", "layer": "conv5_4"}, r"\.layer: unknown key for loss 'l1' \(allowed: kind, weight\)"),
        ({"kind": "charbonnier", "eps": -1}, r"\.eps: must be > 0 \(got -1"),
        ({"kind": "charbonnier", "eps": "big"}, r"\.eps: must be a number \(got 'big'\)"),
        ({"kind": "vgg", "layer": "conv6_1"}, r"\.layer: must be a VGG19 layer name"),
        ({"kind": "gan", "flavor": "relativstic"}, r"\.flavor: must be one of 'vanilla', 'relativistic'"),
        ({"kind": "l1", "weight": -1}, r"\.weight: must be a number >= 0 \(got -1\)"),
        ({"kind": "l1", "weight": "1e-06"}, r"\.weight: must be a number >= 0 \(got '1e-06': YAML 1\.1 reads 1e-06 as a "
         r"string \(a float needs a decimal point and a signed exponent\); write 1\.0e-06\)$"),
        ({"kind": "charbonnier", "eps": "1e-6"}, r"\.eps: must be a number \(got '1e-6': YAML 1\.1 .*; write 1\.0e-06\)$"),
        ("l1", r"a loss term must be a mapping"),
    ],
)
def test_structure_loss_term_errors_name_path_and_fix(registry: Registry, mapping: object, message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        structure_loss_term(mapping, registry, "stages[0].losses[1]")


def test_structure_loss_term_round_trip(registry: Registry) -> None:
    term = structure_loss_term({"kind": "vgg", "weight": 2, "layer": "relu2_2"}, registry, "losses[0]")
    assert term == LossTerm(kind="vgg", weight=2.0, options=VGGConfig(layer="relu2_2"))
    assert unstructure_loss_term(term) == {"kind": "vgg", "weight": 2.0, "layer": "relu2_2", "weights": None, "download": False}
    assert structure_loss_term(unstructure_loss_term(term), registry, "") == term


def test_train_stage_in_a_recipe(registry: Registry) -> None:
    recipe = {
        "version": 1,
        "model": {"name": "bicubic", "scale": 2},
        "stages": [{"type": "train", "steps": 30, "schedule": "cosine", "warmup_steps": 5,
                    "losses": [{"kind": "charbonnier", "eps": 0.01}, {"kind": "tv", "weight": 2e-8, "reduction": "sum"}]}],
    }
    config = parse_recipe(recipe, registry=registry).stages[0].config
    assert isinstance(config, TrainConfig)
    assert config.losses == (
        LossTerm(kind="charbonnier", weight=1.0, options=CharbonnierConfig(eps=0.01)),
        LossTerm(kind="tv", weight=2e-8, options=TVConfig(reduction="sum")),
    )
    recipe["stages"][0]["losses"] = [{"kind": "l1"}, {"kind": "charbonier"}]
    with pytest.raises(RecipeError, match=r"^stages\[0\]\.losses\[1\]\.kind: unknown loss 'charbonier'; did you mean 'charbonnier'"):
        parse_recipe(recipe, registry=registry)
    recipe["stages"][0].update(losses=[{"kind": "l1"}], epochs=3)
    with pytest.raises(RecipeError, match=r"^stages\[0\]\.epochs: give steps or epochs, not both"):
        parse_recipe(recipe, registry=registry)


def test_lr_schedules() -> None:
    cosine = TrainConfig(steps=110, schedule="cosine", warmup_steps=10, min_lr_ratio=0.1)
    assert [lr_factor(cosine, s, 110) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert lr_factor(cosine, 60, 110) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_factor(cosine, 109, 110) == pytest.approx(0.1, abs=1e-3)
    step = TrainConfig(steps=100, schedule="step", step_size=25, gamma=0.5)
    assert [lr_factor(step, s, 100) for s in (0, 24, 25, 50, 99)] == [1, 1, 0.5, 0.25, 0.125]
    multistep = TrainConfig(steps=100, schedule="multistep", milestones=(10, 30), gamma=0.1)
    assert [lr_factor(multistep, s, 100) for s in (9, 10, 29, 30)] == pytest.approx([1, 0.1, 0.1, 0.01])
    with pytest.raises(ValueError, match="milestones: must be strictly increasing"):
        TrainConfig(milestones=(30, 10))
    with pytest.raises(ValueError, match="keep_best: needs val_every"):
        TrainConfig(keep_best=True)
    with pytest.raises(ValueError, match=r"warmup_steps: must be < steps \(10\) \(got 10\)"):
        TrainConfig(steps=10, warmup_steps=10)
    assert TrainConfig(epochs=3).total_steps(steps_per_epoch=11) == 33 and TrainConfig().total_steps(11) == 1000


# -------------------------------------------------------------------------------------------- VGG


def test_vgg_weights_missing_offline_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    expected = str(tmp_path / "torch" / "hub" / "checkpoints")
    with pytest.raises(CheckpointError) as error:
        VGGPerceptualLoss(VGGConfig())
    message = str(error.value)
    assert "vgg19-dcbb9e9d.pth" in message and expected in message and "download: true" in message
    with pytest.raises(CheckpointError, match=r"nowhere\.pth does not exist"):
        VGGPerceptualLoss(VGGConfig(weights=str(tmp_path / "nowhere.pth")))


@pytest.fixture(scope="module")
def random_vgg() -> torch.nn.Module:
    from torchvision.models import vgg19

    torch.manual_seed(0)
    with torch.device("meta"):
        net = vgg19()
    features = net.features.to_empty(device="cpu")
    for module in features:
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            torch.nn.init.zeros_(module.bias)
    return features


def test_vgg_loss_on_a_random_vgg19(random_vgg: torch.nn.Module) -> None:
    loss = VGGPerceptualLoss(VGGConfig(layer="relu2_2"), network=random_vgg)
    assert len(loss.features) == VGG19_LAYERS.index("relu2_2") + 1 == 9
    assert len(VGGPerceptualLoss(VGGConfig(), network=random_vgg).features) == 35  # conv5_4, as F2SRGAN
    hr = torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(1))
    sr = (hr + 0.1 * torch.randn(hr.shape, generator=torch.Generator().manual_seed(2))).requires_grad_(True)
    assert loss(_inputs(hr, hr)).item() == 0.0
    value = loss(_inputs(sr, hr))
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    expected = F.mse_loss(random_vgg[:9]((sr - mean) / std), random_vgg[:9]((hr - mean) / std))
    assert value.item() == pytest.approx(expected.item(), rel=1e-5) and value.item() > 0
    value.backward()
    assert sr.grad is not None and sr.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in loss.parameters())
    loss.train()
    assert not loss.features.training


def test_vgg_loads_a_torchvision_state_dict_file(tmp_path: Path, random_vgg: torch.nn.Module) -> None:
    path = tmp_path / "vgg19.pth"
    torch.save({f"features.{k}": v for k, v in random_vgg.state_dict().items()} | {"classifier.0.bias": torch.zeros(4096)}, path)
    loaded = VGGPerceptualLoss(VGGConfig(layer="conv3_1", weights=str(path)))
    given = VGGPerceptualLoss(VGGConfig(layer="conv3_1"), network=random_vgg)
    x, y = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    assert torch.equal(loaded(_inputs(x, y)), given(_inputs(x, y)))
    torch.save({"something": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match="not torchvision's VGG19 ImageNet weights"):
        VGGPerceptualLoss(VGGConfig(weights=str(path)))


# -------------------------------------------------------------------------------------------- GAN


def _bce(x: torch.Tensor, target: float) -> float:
    return F.binary_cross_entropy_with_logits(x, torch.full_like(x, target)).item()


@pytest.mark.parametrize("flavor", ["vanilla", "relativistic", "relativistic_paired", "hinge"])
def test_gan_flavors_match_their_formulas(flavor: str) -> None:
    real, fake = torch.tensor([[2.0], [0.5]]), torch.tensor([[-1.0], [0.25]])
    gan = AdversarialLoss(GANConfig(flavor=flavor))
    expected = {
        "vanilla": (_bce(fake, 1), _bce(real, 1) + _bce(fake, 0)),
        "relativistic": ((_bce(real - fake.mean(), 0) + _bce(fake - real.mean(), 1)) / 2,
                         (_bce(real - fake.mean(), 1) + _bce(fake - real.mean(), 0)) / 2),
        "relativistic_paired": (_bce(fake - real, 1), _bce(real - fake, 1)),
        "hinge": (-fake.mean().item(), (F.relu(1 - real).mean() + F.relu(1 + fake).mean()).item()),
    }[flavor]
    inputs = LossInputs(sr=torch.zeros(2, 3, 4, 4), hr=torch.zeros(2, 3, 4, 4), lr=torch.zeros(2, 3, 2, 2),
                        extras={DISC_REAL: real, DISC_FAKE: fake})
    assert gan(inputs).item() == pytest.approx(expected[0])
    assert gan.discriminator_loss(real, fake).item() == pytest.approx(expected[1])


def test_gan_without_discriminator_is_a_clear_error() -> None:
    with pytest.raises(SrcompressError, match=r"loss 'gan' needs a discriminator: give the stage 'discriminator: \{name: \.\.\.\}'"):
        AdversarialLoss()(_inputs(SR, HR))
