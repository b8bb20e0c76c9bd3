"""Distillation losses against hand-computed values on small tensors; gradient AT with gradcheck."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from srcompress.errors import SrcompressError
from srcompress.plugins.techniques.distill import (
    DISTILL_KEY,
    AFDConfig,
    AFDLoss,
    ATConfig,
    ATLoss,
    DistillBatch,
    FeatureLoss,
    FrequencyConfig,
    FrequencyLoss,
    GradATConfig,
    GradATLoss,
    KLConfig,
    KLLoss,
    OutputConfig,
    OutputLoss,
    attention_map,
    spaced,
)
from srcompress.training import LossInputs


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> object:
    """One torch thread: on the shared 2-core machine it is several times faster than two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _inputs(sr: torch.Tensor, hr: torch.Tensor | None = None, lr: torch.Tensor | None = None, **batch: object) -> LossInputs:
    hr = torch.zeros_like(sr) if hr is None else hr
    lr = torch.zeros_like(sr) if lr is None else lr
    teacher_sr = batch.pop("teacher_sr", torch.zeros_like(sr))
    return LossInputs(sr=sr, hr=hr, lr=lr, extras={DISTILL_KEY: DistillBatch(teacher_sr=teacher_sr, **batch)})  # type: ignore[arg-type]


def _img(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64).view(1, 1, 1, len(values))


# F_s: 2 channels over 1x2 pixels: channel 0 = [1, 2], channel 1 = [3, 0]; mean_c F^2 = [5, 2].
F_S = torch.tensor([[[[1.0, 2.0]], [[3.0, 0.0]]]], dtype=torch.float64)
# F_t: 1 channel [1, 1]; mean_c F^2 = [1, 1].
F_T = torch.tensor([[[[1.0, 1.0]]]], dtype=torch.float64)
R29, R2 = math.sqrt(29.0), math.sqrt(2.0)
AT_ST = ((5 / R29 - 1 / R2) ** 2 + (2 / R29 - 1 / R2) ** 2) / 2  # mean squared difference of the maps


# ---------------------------------------------------------------------------------------- output
def test_output_l1_to_teacher_and_mixed_with_hr() -> None:
    sr, teacher, hr = _img(0.0, 0.0), _img(0.5, -0.1), _img(1.0, 1.0)
    assert OutputLoss()(_inputs(sr, hr, teacher_sr=teacher)).item() == pytest.approx(0.3)
    mixed = OutputLoss(OutputConfig(hr_weight=0.25))(_inputs(sr, hr, teacher_sr=teacher))
    assert mixed.item() == pytest.approx(0.75 * 0.3 + 0.25 * 1.0)
    mse = OutputLoss(OutputConfig(distance="mse"))(_inputs(sr, hr, teacher_sr=teacher))
    assert mse.item() == pytest.approx((0.25 + 0.01) / 2)


# ------------------------------------------------------------------------------------- frequency
def test_focal_frequency_loss_by_hand() -> None:
    # Orthonormal DFT of [1, 2] over 1x2 pixels: [3, -1] / sqrt(2); power [4.5, 0.5].
    sr, teacher = _img(1.0, 2.0), _img(0.0, 0.0)
    plain = FrequencyLoss(FrequencyConfig(alpha=0.0))(_inputs(sr, teacher_sr=teacher))
    assert plain.item() == pytest.approx((1.0 + 4.0) / 2)  # Parseval: alpha 0 is the pixel MSE
    # alpha 1: weights |diff| / max = [1, 1/3]
    focal = FrequencyLoss(FrequencyConfig(alpha=1.0))(_inputs(sr, teacher_sr=teacher))
    assert focal.item() == pytest.approx((4.5 + 0.5 / 3) / 2)


def test_amplitude_loss_ignores_phase_and_mixes_hr() -> None:
    sr, mirrored, hr = _img(1.0, 2.0), _img(2.0, 1.0), _img(0.0, 0.0)
    loss = FrequencyLoss(FrequencyConfig(mode="amplitude"))
    assert loss(_inputs(sr, teacher_sr=mirrored)).item() == pytest.approx(0.0, abs=1e-12)
    mixed = FrequencyLoss(FrequencyConfig(mode="amplitude", hr_weight=0.5))(_inputs(sr, hr, teacher_sr=mirrored))
    # to HR (all zero): amplitudes [3, 1] / sqrt(2), mean 2 / sqrt(2)
    assert mixed.item() == pytest.approx(0.5 * 2 / math.sqrt(2.0))


def test_frequency_loss_gradient_reaches_the_student() -> None:
    sr = torch.rand(1, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    FrequencyLoss()(_inputs(sr, teacher_sr=torch.rand(1, 3, 4, 4, dtype=torch.float64))).backward()
    assert sr.grad is not None and sr.grad.abs().sum().item() > 0


def test_distillation_loss_outside_a_distill_stage_says_so() -> None:
    sr = _img(0.0)
    with pytest.raises(SrcompressError, match=r"loss 'output' needs a teacher: use it in the losses of a 'distill' stage"):
        OutputLoss()(LossInputs(sr=sr, hr=sr, lr=sr))


# ---------------------------------------------------------------------------------------- at
def test_attention_map_is_normalised_channel_mean_of_power() -> None:
    amap = attention_map(F_S, p=2.0)
    assert amap.shape == (1, 2)
    assert amap[0].tolist() == pytest.approx([5 / R29, 2 / R29])
    assert attention_map(F_S, p=1.0)[0].tolist() == pytest.approx([2 / math.sqrt(5), 1 / math.sqrt(5)])


def test_at_loss_hand_computed_and_summed_over_pairs() -> None:
    one = ATLoss()(_inputs(_img(0.0), student_features=[F_S], teacher_features=[F_T]))
    assert one.item() == pytest.approx(AT_ST)
    two = ATLoss()(_inputs(_img(0.0), student_features=[F_S, F_T], teacher_features=[F_T, F_T]))
    assert two.item() == pytest.approx(AT_ST + 0.0)


def test_at_resizes_student_map_to_teacher_size() -> None:
    student = torch.full((1, 4, 1, 1), 2.0, dtype=torch.float64)  # 1x1 map, upsampled to a constant 1x2 map
    loss = ATLoss(ATConfig(p=2.0))(_inputs(_img(0.0), student_features=[student], teacher_features=[F_T]))
    assert loss.item() == pytest.approx(0.0, abs=1e-12)


def test_at_rejects_unpaired_taps() -> None:
    with pytest.raises(SrcompressError, match=r"loss 'at' pairs taps one to one: 2 student vs 1 teacher"):
        ATLoss().bind([4, 4], [8])


# ---------------------------------------------------------------------------------------- feature
def test_feature_loss_identity_where_widths_match() -> None:
    loss = FeatureLoss()
    loss.bind([1], [1])
    assert isinstance(loss.adapters[0], nn.Identity)
    value = loss(_inputs(_img(0.0), student_features=[_img(1.0, 2.0)], teacher_features=[_img(0.0, 0.0)]))
    assert value.item() == pytest.approx(2.5)


def test_feature_loss_adapter_where_widths_differ_is_trained() -> None:
    loss = FeatureLoss().double()
    loss.bind([2], [1])
    adapter = loss.adapters[0]
    assert isinstance(adapter, nn.Conv2d) and adapter.weight.shape == (1, 2, 1, 1)
    loss = loss.double()
    with torch.no_grad():
        adapter.weight.copy_(torch.tensor([0.5, -1.0]).view(1, 2, 1, 1))
        adapter.bias.fill_(0.1)
    # adapted = 0.5 * [1, 2] - [3, 0] + 0.1 = [-2.4, 1.1]; target [0, 1]
    value = loss(_inputs(_img(0.0), student_features=[F_S], teacher_features=[_img(0.0, 1.0)]))
    assert value.item() == pytest.approx((2.4**2 + 0.1**2) / 2)
    value.backward()
    assert adapter.weight.grad is not None and adapter.weight.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------- kl
def test_kl_hand_computed() -> None:
    # teacher / T = [0, 0, ln 2] -> p_t = [1/4, 1/4, 1/2]; student uniform; KL = 0.5 ln(1.125) per pixel.
    config = KLConfig(temperature=2.0, rgb_range=1.0)
    student = torch.zeros(2, 3, 1, 1, dtype=torch.float64)
    teacher = torch.tensor([0.0, 0.0, 2 * math.log(2.0)], dtype=torch.float64).view(1, 3, 1, 1).repeat(2, 1, 1, 1)
    value = KLLoss(config)(_inputs(student, teacher_sr=teacher))
    assert value.item() == pytest.approx(2 * 0.5 * math.log(1.125) * 4 / 2)


def test_kl_scales_images_by_rgb_range() -> None:
    student = torch.zeros(1, 3, 1, 1, dtype=torch.float64)
    teacher = torch.tensor([0.0, 0.0, 4 * math.log(2.0) / 255], dtype=torch.float64).view(1, 3, 1, 1)
    value = KLLoss()(_inputs(student, teacher_sr=teacher))  # T = 4, rgb_range = 255
    assert value.item() == pytest.approx(0.5 * math.log(1.125) * 16)


# ---------------------------------------------------------------------------------------- afd
def _afd(student_channels: list[int], teacher_channels: list[int], qk_dim: int = 1) -> AFDLoss:
    loss = AFDLoss(AFDConfig(qk_dim=qk_dim))
    loss.bind(student_channels, teacher_channels)
    with torch.no_grad():
        for param in loss.parameters():
            param.zero_()
        for module in loss.modules():
            if isinstance(module, nn.BatchNorm1d):
                module.weight.fill_(1.0)
    return loss.double()


def _two(x: torch.Tensor) -> torch.Tensor:
    return x.repeat(2, 1, 1, 1)  # BatchNorm needs a batch of 2 in training


DIFF_1 = (2 - math.sqrt(2)) / 2  # student map [1, 0] vs teacher [1, 1]/sqrt(2)


def test_afd_uniform_attention_hand_computed() -> None:
    loss = _afd([1, 2], [1])
    batch = {"student_features": [_two(_img(1.0, 0.0)), _two(F_S)], "teacher_features": [_two(F_T)]}
    att = loss.attention(batch["student_features"], batch["teacher_features"])
    assert att.shape == (2, 1, 2) and att.flatten().tolist() == pytest.approx([0.5] * 4)
    value = loss(_inputs(_two(_img(0.0)), **batch))
    assert value.item() == pytest.approx(0.5 * DIFF_1 + 0.5 * AT_ST)


def test_afd_positional_logits_weight_the_pairs() -> None:
    loss = _afd([1, 2], [1])
    with torch.no_grad():
        loss.p_t.fill_(1.0)  # logits = p_t . p_s / sqrt(1) = [0, ln 3] -> attention [1/4, 3/4]
        loss.p_s.copy_(torch.tensor([[0.0], [math.log(3.0)]]))
    batch = {"student_features": [_two(_img(1.0, 0.0)), _two(F_S)], "teacher_features": [_two(F_T)]}
    value = loss(_inputs(_two(_img(0.0)), **batch))
    assert value.item() == pytest.approx(0.25 * DIFF_1 + 0.75 * AT_ST)


def test_afd_sums_over_teacher_taps_and_pools_student_to_teacher_size() -> None:
    loss = _afd([2], [1, 1])
    teacher_small = torch.ones(1, 1, 1, 1, dtype=torch.float64)  # 1x1: the student's map pooled to one value
    batch = {"student_features": [_two(F_S)], "teacher_features": [_two(F_T), _two(teacher_small)]}
    value = loss(_inputs(_two(_img(0.0)), **batch))
    assert value.item() == pytest.approx(AT_ST + 0.0)


def test_afd_layers_receive_gradients() -> None:
    torch.manual_seed(0)
    loss = AFDLoss(AFDConfig(qk_dim=4))
    loss.bind([2, 2], [3])
    student = [torch.randn(2, 2, 3, 3, requires_grad=True), torch.randn(2, 2, 3, 3)]
    loss(_inputs(torch.zeros(2, 1, 1, 1), student_features=student, teacher_features=[torch.randn(2, 3, 3, 3)])).backward()
    # A Linear's bias right before BatchNorm has zero gradient in exact arithmetic (BN removes the mean).
    names = [n for n, p in loss.named_parameters()
             if not n.endswith(".0.bias") and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert student[0].grad is not None and student[0].grad.abs().sum() > 0
    assert names == [], f"no gradient reached {names}"


# ---------------------------------------------------------------------------------------- at_grad
class _Scale(nn.Module):
    def __init__(self, w: float) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w * x


def test_at_grad_hand_computed() -> None:
    # L = sum (w x - h)^2, J = 2 w (w x - h). x = [1, 2], h = 0: J_s (w=1) = [2, 4], J_t (w=2) = [8, 16].
    x, h = _img(1.0, 2.0), _img(0.0, 0.0)
    student, teacher = _Scale(1.0), _Scale(2.0).requires_grad_(False)
    inputs = _inputs(_img(0.0, 0.0), h, x, student=student, teacher=teacher)
    value = GradATLoss()(inputs)
    assert value.item() == pytest.approx(0.5 * math.sqrt(36 + 144))
    value.backward()  # d/dw of 0.5 ||2 w^2 x - 8 x|| at w = 1: 0.5 * 4 w * sign(...) * ||x|| = -2 sqrt(5)
    assert student.w.grad.item() == pytest.approx(-2 * math.sqrt(5))
    normalized = GradATLoss(GradATConfig(normalize=True))(inputs)
    assert normalized.item() == pytest.approx(0.0, abs=1e-12)


class _TinyNet(nn.Module):
    """conv3x3 -> tanh -> conv3x3 with weights assigned from outside (so gradcheck can vary them)."""

    def __init__(self, w1: torch.Tensor, w2: torch.Tensor) -> None:
        super().__init__()
        self.w1, self.w2 = w1, w2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(torch.tanh(F.conv2d(x, self.w1, padding=1)), self.w2, padding=1)


def test_at_grad_gradcheck_double_backward() -> None:
    gen = torch.Generator().manual_seed(0)
    lr = torch.rand(2, 1, 3, 3, generator=gen, dtype=torch.float64)
    hr = torch.rand(2, 1, 3, 3, generator=gen, dtype=torch.float64)
    teacher = _TinyNet(torch.randn(2, 1, 3, 3, generator=gen, dtype=torch.float64),
                       torch.randn(1, 2, 3, 3, generator=gen, dtype=torch.float64))
    w1 = (0.5 * torch.randn(2, 1, 3, 3, generator=gen, dtype=torch.float64)).requires_grad_(True)
    w2 = (0.5 * torch.randn(1, 2, 3, 3, generator=gen, dtype=torch.float64)).requires_grad_(True)

    def loss_of(config: GradATConfig) -> object:
        def f(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return GradATLoss(config)(_inputs(torch.zeros_like(hr), hr, lr, student=_TinyNet(a, b), teacher=teacher))
        return f

    assert torch.autograd.gradcheck(loss_of(GradATConfig()), (w1, w2), eps=1e-6, atol=1e-5, rtol=1e-4)
    assert torch.autograd.gradcheck(loss_of(GradATConfig(normalize=True, criterion="mse")), (w1, w2),
                                    eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=True)


# ---------------------------------------------------------------------------------------- taps
def test_spaced_taps() -> None:
    assert spaced([f"b{i}" for i in range(16)], 4) == ("b3", "b7", "b11", "b15")
    assert spaced([f"b{i}" for i in range(8)], 4) == ("b1", "b3", "b5", "b7")
    assert spaced(["a", "b"], 4) == ("a", "b")
