"""Distillation losses: output KD, frequency (spectrum) KD, hint (feature) loss, attention transfer (activation and gradient),
attention-based feature distillation (AFD) and the softened-output KL of the released Light F2SRGAN.

Each loss maps :class:`srcompress.training.LossInputs` to a scalar like every loss of the training
core, and reads what the teacher contributes from ``inputs.extras["distill"]``, a
:class:`DistillBatch` that the ``distill`` stage fills every step (teacher output, features of the
paired taps, both models). A third-party distillation loss does the same: subclass
:class:`DistillationLoss`, register it as a :class:`srcompress.LossEntry`, and name it in a distill
stage's ``losses``. Images are float32 RGB NCHW in [0, 1]; features are (N, C, H, W).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from attrs import define, field
from torch import nn

from srcompress.config import in_range, one_of, option, positive
from srcompress.errors import SrcompressError
from srcompress.training import LossInputs

__all__ = [
    "DISTILL_KEY",
    "AFDConfig",
    "AFDLoss",
    "ATConfig",
    "ATLoss",
    "DistillBatch",
    "DistillationLoss",
    "FeatureConfig",
    "FeatureLoss",
    "FrequencyConfig",
    "FrequencyLoss",
    "GradATConfig",
    "GradATLoss",
    "KLConfig",
    "KLLoss",
    "OutputConfig",
    "OutputLoss",
    "amplitude_distance",
    "attention_map",
    "distill_batch",
    "focal_frequency_distance",
]

DISTILL_KEY = "distill"
"""Key of the :class:`DistillBatch` in ``LossInputs.extras``."""


@define(kw_only=True, eq=False)
class DistillBatch:
    """What the teacher contributes to one training step (``inputs.extras["distill"]``).

    - ``teacher_sr``: the teacher's output on ``inputs.lr``, (N, 3, sH, sW), no gradient.
    - ``student_features`` / ``teacher_features``: outputs of the student's and the teacher's feature
      taps, shallow to deep (student's with gradient, teacher's without).
    - ``student`` / ``teacher``: the two models (for losses that run them again, e.g. ``at_grad``);
      the teacher is frozen and in eval mode.
    """

    teacher_sr: torch.Tensor
    student_features: list[torch.Tensor] = field(factory=list)
    teacher_features: list[torch.Tensor] = field(factory=list)
    student: nn.Module | None = None
    teacher: nn.Module | None = None


def distill_batch(inputs: LossInputs, loss: str) -> DistillBatch:
    """The step's :class:`DistillBatch`; a clear error when ``loss`` is used outside a distill stage."""
    batch = inputs.extras.get(DISTILL_KEY)
    if not isinstance(batch, DistillBatch):
        raise SrcompressError(
            f"loss '{loss}' needs a teacher: use it in the losses of a 'distill' stage, not of a train stage"
        )
    return batch


class DistillationLoss(nn.Module):
    """Base class of losses that read a :class:`DistillBatch`.

    ``uses_features``: the stage must capture the feature taps of both models for this loss.
    :meth:`bind` is called once before training with the channel counts of the student's and the
    teacher's taps: build adapters there (their parameters are trained with the student).
    """

    uses_features: ClassVar[bool] = False
    name: ClassVar[str] = "distillation"

    def bind(self, student_channels: Sequence[int], teacher_channels: Sequence[int]) -> None:
        """Set up for taps of these widths (default: nothing to set up)."""

    def _pairs(self, batch: DistillBatch) -> list[tuple[torch.Tensor, torch.Tensor]]:
        s, t = batch.student_features, batch.teacher_features
        if len(s) != len(t) or not s:
            raise SrcompressError(
                f"loss '{self.name}' pairs taps one to one: {len(s)} student vs {len(t)} teacher taps; "
                "give student_taps and teacher_taps of equal length"
            )
        return list(zip(s, t, strict=True))


def _check_pairs(name: str, student: Sequence[int], teacher: Sequence[int]) -> None:
    if len(student) != len(teacher) or not student:
        raise SrcompressError(
            f"loss '{name}' pairs taps one to one: {len(student)} student vs {len(teacher)} teacher taps; "
            "give student_taps and teacher_taps of equal length (or num_taps)"
        )


def _distance(kind: str, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).abs().mean() if kind == "l1" else (a - b).pow(2).mean()


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


# -------------------------------------------------------------------------------------------------
# output: the student's image to the teacher's (and optionally the HR) image
# -------------------------------------------------------------------------------------------------


@define(frozen=True, kw_only=True)
class OutputConfig:
    """Options of the output distillation loss."""

    distance: str = option("l1", help="l1 or mse between the images.", validator=one_of(("l1", "mse")))
    hr_weight: float = option(
        0.0, help="Mix with the HR target: (1 - hr_weight) * d(sr, teacher) + hr_weight * d(sr, hr).",
        validator=in_range(0.0, 1.0),
    )


class OutputLoss(DistillationLoss):
    """``(1 - a) * d(sr, teacher_sr) + a * d(sr, hr)`` with ``d`` the mean L1 or squared error."""

    name = "output"

    def __init__(self, config: OutputConfig | None = None) -> None:
        super().__init__()
        config = config or OutputConfig()
        self.distance, self.hr_weight = config.distance, config.hr_weight

    def forward(self, inputs: LossInputs) -> torch.Tensor:
        batch = distill_batch(inputs, self.name)
        loss = _distance(self.distance, inputs.sr, batch.teacher_sr)
        if self.hr_weight:
            loss = (1.0 - self.hr_weight) * loss + self.hr_weight * _distance(self.distance, inputs.sr, inputs.hr)
        return loss


# -------------------------------------------------------------------------------------------------
# frequency: the student's spectrum to the teacher's (focal frequency loss, or amplitude only)
# -------------------------------------------------------------------------------------------------


@define(frozen=True, kw_only=True)
class FrequencyConfig:
    """Options of the frequency-domain distillation loss."""

    mode: str = option(
        "focal",
        help="focal: focal frequency loss (Jiang et al., ICCV 2021) on the complex spectra; amplitude: "
        "L1 between the amplitude spectra (phase-free: rewards the teacher's high-frequency energy, "
        "not its exact pixels).",
        validator=one_of(("focal", "amplitude")),
    )
    alpha: float = option(1.0, help="focal only: spectrum weight |F_s - F_t|^alpha, scaled to [0, 1] per "
                          "image and channel (0: plain squared spectrum distance).", validator=in_range(0.0, 4.0))
    hr_weight: float = option(
        0.0, help="Mix with the HR spectrum: (1 - hr_weight) * d(sr, teacher) + hr_weight * d(sr, hr).",
        validator=in_range(0.0, 1.0),
    )


def focal_frequency_distance(a: torch.Tensor, b: torch.Tensor, alpha: float) -> torch.Tensor:
    """Focal frequency loss: ``mean(w * |F(a) - F(b)|^2)``, ``F`` the orthonormal 2-D FFT per channel.

    ``w = |F(a) - F(b)|^alpha / max`` per image and channel, without gradient (the paper's
    "spectrum weight matrix"): frequencies the student gets most wrong weigh most. With
    ``alpha = 0`` it equals the pixel MSE (Parseval). (N, C, H, W) -> scalar.
    """
    diff = torch.fft.fft2(a, norm="ortho") - torch.fft.fft2(b, norm="ortho")
    power = diff.real.square() + diff.imag.square()
    if alpha == 0:
        return power.mean()
    weight = power.detach().sqrt().pow(alpha)
    weight = weight / weight.flatten(2).amax(dim=2).clamp_min(1e-12)[..., None, None]
    return (weight * power).mean()


def amplitude_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of the orthonormal 2-D amplitude spectra, per channel. -> scalar."""
    return (torch.fft.fft2(a, norm="ortho").abs() - torch.fft.fft2(b, norm="ortho").abs()).abs().mean()


class FrequencyLoss(DistillationLoss):
    """The student's image spectrum to the teacher's: focal frequency loss or amplitude L1.

    Pixel losses average away the teacher's textures (small, high-frequency, hard to place exactly);
    in the spectrum every frequency counts on its own, and the amplitude mode does not ask for the
    exact phase at all.
    """

    name = "frequency"

    def __init__(self, config: FrequencyConfig | None = None) -> None:
        super().__init__()
        config = config or FrequencyConfig()
        self.mode, self.alpha, self.hr_weight = config.mode, config.alpha, config.hr_weight

    def _distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if self.mode == "amplitude":
            return amplitude_distance(a, b)
        return focal_frequency_distance(a, b, self.alpha)

    def forward(self, inputs: LossInputs) -> torch.Tensor:
        batch = distill_batch(inputs, self.name)
        sr = _fft_ready(inputs.sr)
        loss = self._distance(sr, _fft_ready(batch.teacher_sr))
        if self.hr_weight:
            loss = (1.0 - self.hr_weight) * loss + self.hr_weight * self._distance(sr, _fft_ready(inputs.hr))
        return loss


def _fft_ready(x: torch.Tensor) -> torch.Tensor:
    """float32 or float64 as given; half precision (no CPU FFT kernel, poor accuracy) to float32."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


# -------------------------------------------------------------------------------------------------
# feature: hint loss with 1x1 adapters (FitNets)
# -------------------------------------------------------------------------------------------------


@define(frozen=True, kw_only=True)
class FeatureConfig:
    """Options of the hint (feature) loss."""

    distance: str = option("mse", help="mse or l1 between the (adapted) student feature and the teacher's.",
                           validator=one_of(("mse", "l1")))


class FeatureLoss(DistillationLoss):
    """Hint loss: sum over tap pairs of ``d(adapter(f_s), f_t)``.

    ``adapter`` is a learned 1x1 conv from the student's width to the teacher's where they differ
    (identity where equal); the student feature is resized bilinearly when the sizes differ.
    """

    uses_features = True
    name = "feature"

    def __init__(self, config: FeatureConfig | None = None) -> None:
        super().__init__()
        self.distance = (config or FeatureConfig()).distance
        self.adapters = nn.ModuleList()

    def bind(self, student_channels: Sequence[int], teacher_channels: Sequence[int]) -> None:
        _check_pairs(self.name, student_channels, teacher_channels)
        self.adapters = nn.ModuleList(
            nn.Identity() if s == t else nn.Conv2d(s, t, kernel_size=1)
            for s, t in zip(student_channels, teacher_channels, strict=True)
        )

    def forward(self, inputs: LossInputs) -> torch.Tensor:
        pairs = self._pairs(distill_batch(inputs, self.name))
        if len(self.adapters) != len(pairs):
            raise SrcompressError("loss 'feature' was not bound to the taps (the distill stage calls bind)")
        total = inputs.sr.new_zeros(())
        for adapter, (fs, ft) in zip(self.adapters, pairs, strict=True):
            total = total + _distance(self.distance, _resize(adapter(fs), ft.shape[-2:]), ft)
        return total


# -------------------------------------------------------------------------------------------------
# at: activation-based attention transfer (Zagoruyko & Komodakis, ICLR 2017)
# -------------------------------------------------------------------------------------------------


def attention_map(feature: torch.Tensor, p: float, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Spatial attention of a feature: ``mean_c |F|^p``, resized to ``size``, flattened, L2-normalised.

    (N, C, H, W) -> (N, H*W) (or (N, h*w) for ``size=(h, w)``).
    """
    amap = feature.abs().pow(p).mean(dim=1, keepdim=True)
    if size is not None:
        amap = _resize(amap, size)
    return F.normalize(amap.flatten(1), dim=1)


@define(frozen=True, kw_only=True)
class ATConfig:
    """Options of activation-based attention transfer."""

    p: float = option(2.0, help="Exponent of the attention map mean_c |F|^p (the paper uses 2).", validator=positive)


class ATLoss(DistillationLoss):
    """Sum over tap pairs of ``mean((Q_s - Q_t)^2)`` with ``Q`` = :func:`attention_map`.

    The student's map is resized (bilinear, before normalising) to the teacher's size when they differ.
    """

    uses_features = True
    name = "at"

    def __init__(self, config: ATConfig | None = None) -> None:
        super().__init__()
        self.p = (config or ATConfig()).p

    def bind(self, student_channels: Sequence[int], teacher_channels: Sequence[int]) -> None:
        _check_pairs(self.name, student_channels, teacher_channels)

    def forward(self, inputs: LossInputs) -> torch.Tensor:
        total = inputs.sr.new_zeros(())
        for fs, ft in self._pairs(distill_batch(inputs, self.name)):
            size = tuple(ft.shape[-2:])
            total = total + (attention_map(fs, self.p, size) - attention_map(ft, self.p)).pow(2).mean()
        return total


# -------------------------------------------------------------------------------------------------
# at_grad: gradient-based attention transfer (double backward)
# -------------------------------------------------------------------------------------------------


@define(frozen=True, kw_only=True)
class GradATConfig:
    """Options of gradient-based attention transfer."""

    criterion: str = option(
        "mse", help="Pixel loss of each network to HR whose input gradient is the attention: mse or l1 "
        "(summed over pixels).", validator=one_of(("mse", "l1")),
    )
    normalize: bool = option(
        False, help="L2-normalise each image's input gradient before comparing (scale-free); false: as the paper.",
    )


class GradATLoss(DistillationLoss):
    """``0.5 * mean_n || J_s[n] - J_t[n] ||_2`` with ``J = d L(net(x), hr) / dx`` (Zagoruyko & Komodakis).

    ``L`` is the pixel loss of each network's output to HR, summed over pixels; ``J`` has the
    shape of the LR input. The student's gradient keeps its graph (``create_graph``), so
    minimising this loss back-propagates through a gradient: a double backward, and one extra
    forward of each network per step.
    """

    name = "at_grad"

    def __init__(self, config: GradATConfig | None = None) -> None:
        super().__init__()
        config = config or GradATConfig()
        self.criterion, self.normalize = config.criterion, config.normalize

    def _pixel_loss(self, out: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        diff = out - hr
        return diff.abs().sum() if self.criterion == "l1" else diff.pow(2).sum()

    def input_gradient(self, net: nn.Module, lr: torch.Tensor, hr: torch.Tensor, *, create_graph: bool) -> torch.Tensor:
        """``d L(net(lr), hr) / d lr``, (N, 3, H, W)."""
        x = lr.detach().requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(self._pixel_loss(net(x), hr), x, create_graph=create_graph)
        return grad

    def forward(self, inputs: LossInputs) -> torch.Tensor:
        batch = distill_batch(inputs, self.name)
        if batch.student is None or batch.teacher is None:
            raise SrcompressError("loss 'at_grad' needs both models in the distill batch")
        j_t = self.input_gradient(batch.teacher, inputs.lr, inputs.hr, create_graph=False)
        j_s = self.input_gradient(batch.student, inputs.lr, inputs.hr, create_graph=True)
        if self.normalize:
            j_t, j_s = F.normalize(j_t.flatten(1), dim=1), F.normalize(j_s.flatten(1), dim=1)
        return 0.5 * (j_s - j_t).flatten(1).norm(dim=1).mean()


# -------------------------------------------------------------------------------------------------
# afd: attention-based feature distillation (Ji, Heo & Park, AAAI 2021)
# -------------------------------------------------------------------------------------------------


@define(frozen=True, kw_only=True)
class AFDConfig:
    """Options of attention-based feature distillation."""

    qk_dim: int = option(128, help="Width of the query/key embeddings (128 in the paper and in Light F2SRGAN).",
                         validator=in_range(1, 4096))


def _linear_bn(width_in: int, width_out: int, relu: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(width_in, width_out), nn.BatchNorm1d(width_out)]
    if relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class AFDLoss(DistillationLoss):
    """Attention-based feature distillation: every teacher tap attends over every student tap.

    For teacher tap ``t`` and student tap ``s`` (features pooled over space to channel vectors):
    the teacher's query ``q_t = BN(W_t mean_hw f_t)``, the student's key ``k_s = BN(W_s mean_hw f_s)``
    with ReLU, mapped by a bilinear layer to one key per teacher tap ``k_{s,t}``; the logit
    ``(k_{s,t} . q_t + p_t . p_s) / sqrt(d)`` with learned positional embeddings ``p``; the attention
    ``a_{t,s}`` is its softmax over ``s``. The loss is ``sum_t mean_n sum_s a_{t,s} mean_hw (v_s -
    v_t)^2`` where ``v`` is the L2-normalised spatial map ``mean_c f^2`` (the student's
    average-pooled to the teacher's size). Written after the authors' code
    (clovaai/attention-feature-distillation); all its layers are trained with the student.
    Training needs batches of at least 2 (BatchNorm).
    """

    uses_features = True
    name = "afd"

    def __init__(self, config: AFDConfig | None = None) -> None:
        super().__init__()
        self.qk_dim = (config or AFDConfig()).qk_dim
        self.queries = nn.ModuleList()
        self.keys = nn.ModuleList()
        self.bilinear: nn.Module | None = None
        self.p_t: nn.Parameter | None = None
        self.p_s: nn.Parameter | None = None

    def bind(self, student_channels: Sequence[int], teacher_channels: Sequence[int]) -> None:
        if not student_channels or not teacher_channels:
            raise SrcompressError("loss 'afd' needs at least one student and one teacher tap")
        d, n_t, n_s = self.qk_dim, len(teacher_channels), len(student_channels)
        self.queries = nn.ModuleList(_linear_bn(c, d, relu=False) for c in teacher_channels)
        self.keys = nn.ModuleList(_linear_bn(c, d, relu=True) for c in student_channels)
        self.bilinear = _linear_bn(d, d * n_t, relu=False)
        self.p_t = nn.Parameter(nn.init.xavier_normal_(torch.empty(n_t, d)))
        self.p_s = nn.Parameter(nn.init.xavier_normal_(torch.empty(n_s, d)))

    def attention(self, student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor]) -> torch.Tensor:
        """Attention weights (N, T, S) of each teacher tap over the student taps (rows sum to 1)."""
        if self.bilinear is None or self.p_t is None or self.p_s is None:
            raise SrcompressError("loss 'afd' was not bound to the taps (the distill stage calls bind)")
        n, n_t, n_s = student[0].shape[0], len(teacher), len(student)
        query = torch.stack([layer(f.mean(dim=(2, 3))) for layer, f in zip(self.queries, teacher, strict=True)], dim=1)
        key = torch.stack([layer(f.mean(dim=(2, 3))) for layer, f in zip(self.keys, student, strict=True)], dim=1)
        key = self.bilinear(key.reshape(n * n_s, -1)).view(n, n_s, n_t, -1)
        logit = torch.einsum("nstd,ntd->nts", key, query) + self.p_t @ self.p_s.t()
        return F.softmax(logit / math.sqrt(self.qk_dim), dim=2)

    def forward(self, inputs: LossInputs) -> torch.Tensor:
        batch = distill_batch(inputs, self.name)
        student, teacher = batch.student_features, batch.teacher_features
        if len(student) != len(self.keys) or len(teacher) != len(self.queries):
            raise SrcompressError(
                f"loss 'afd' was bound to {len(self.keys)} student / {len(self.queries)} teacher taps, "
                f"got {len(student)} / {len(teacher)}"
            )
        att = self.attention(student, teacher)
        total = inputs.sr.new_zeros(())
        for i, ft in enumerate(teacher):
            size = tuple(ft.shape[-2:])
            v_t = F.normalize(ft.pow(2).mean(dim=1).flatten(1), dim=1)
            v_s = torch.stack([
                F.normalize(F.adaptive_avg_pool2d(fs.pow(2).mean(dim=1, keepdim=True), size).flatten(1), dim=1)
                for fs in student
            ], dim=1)
            diff = (v_s - v_t.unsqueeze(1)).pow(2).mean(dim=2)  # (N, S)
            total = total + (diff * att[:, i]).sum(dim=1).mean()
        return total


# -------------------------------------------------------------------------------------------------
# kl: softened-output KL of the released Light F2SRGAN
# -------------------------------------------------------------------------------------------------


@define(frozen=True, kw_only=True)
class KLConfig:
    """Options of the softened-output KL (as in the Light F2SRGAN release)."""

    temperature: float = option(4.0, help="Softmax temperature T (4 in Light F2SRGAN).", validator=positive)
    rgb_range: float = option(
        255.0, help="Images are multiplied by this before the softmax (Light F2SRGAN works on 0-255 values).",
        validator=positive,
    )


class KLLoss(DistillationLoss):
    """``T^2 / N * sum KL(softmax_c(t / T) || softmax_c(s / T))`` over pixels, the softmax over RGB.

    ``s``, ``t`` are the student's and teacher's images times ``rgb_range``. This reproduces
    ``DistillKL(4)`` of khanhhungvu1508/Light-F2SRGAN (``KD/model.py``) applied to the output images
    (weight 0.9 there); the sum over pixels makes its scale grow with the patch size.
    """

    name = "kl"

    def __init__(self, config: KLConfig | None = None) -> None:
        super().__init__()
        config = config or KLConfig()
        self.temperature, self.rgb_range = config.temperature, config.rgb_range

    def forward(self, inputs: LossInputs) -> torch.Tensor:
        batch = distill_batch(inputs, self.name)
        t = self.temperature
        log_p_s = F.log_softmax(inputs.sr * self.rgb_range / t, dim=1)
        p_t = F.softmax(batch.teacher_sr * self.rgb_range / t, dim=1)
        return F.kl_div(log_p_s, p_t, reduction="sum") * (t * t) / inputs.sr.shape[0]
