"""Distillation plugin: the ``distill`` technique and its loss terms.

Registers the technique ``distill`` (:class:`DistillConfig`) and the losses ``output``, ``frequency``,
``feature``, ``at``, ``at_grad``, ``afd`` and ``kl`` (usable only inside a distill stage, beside the training
core's ``l1``, ``vgg``, ``gan``, ``tv``). A third-party distillation loss subclasses
:class:`DistillationLoss`, reads :class:`DistillBatch` from ``inputs.extras["distill"]`` and is
registered with a :class:`srcompress.LossEntry` from its own plugin's ``srcompress_losses``.
"""

from __future__ import annotations

from srcompress.entries import LossEntry, TechniqueEntry
from srcompress.hookspecs import hookimpl

from .config import DistillConfig
from .hook import DistillHook, tap_channels
from .losses import (
    DISTILL_KEY,
    AFDConfig,
    AFDLoss,
    ATConfig,
    ATLoss,
    DistillationLoss,
    DistillBatch,
    FeatureConfig,
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
    distill_batch,
)
from .taps import FeatureTaps, resolve_taps, spaced
from .technique import apply, build_terms, split_anchor

__all__ = [
    "DISTILL_KEY",
    "AFDConfig",
    "AFDLoss",
    "ATConfig",
    "ATLoss",
    "DistillBatch",
    "DistillConfig",
    "DistillHook",
    "DistillationLoss",
    "FeatureConfig",
    "FeatureLoss",
    "FeatureTaps",
    "FrequencyConfig",
    "FrequencyLoss",
    "GradATConfig",
    "GradATLoss",
    "KLConfig",
    "KLLoss",
    "OutputConfig",
    "OutputLoss",
    "apply",
    "attention_map",
    "build_terms",
    "distill_batch",
    "resolve_taps",
    "spaced",
    "split_anchor",
    "srcompress_losses",
    "srcompress_techniques",
    "tap_channels",
]


@hookimpl
def srcompress_techniques() -> list[TechniqueEntry]:
    return [
        TechniqueEntry(
            name="distill", config_cls=DistillConfig, apply=apply,
            description="Knowledge distillation from a teacher (output, hint, attention transfer, AFD, KL; GAN-aware).",
        ),
    ]


@hookimpl
def srcompress_losses() -> list[LossEntry]:
    return [
        LossEntry(name="output", config_cls=OutputConfig, build=OutputLoss,
                  description="Distillation: L1/MSE to the teacher's output (optionally mixed with HR)."),
        LossEntry(name="frequency", config_cls=FrequencyConfig, build=FrequencyLoss,
                  description="Distillation: the output's spectrum to the teacher's (focal frequency loss or amplitude L1)."),
        LossEntry(name="feature", config_cls=FeatureConfig, build=FeatureLoss,
                  description="Distillation: hint loss on paired feature taps with learned 1x1 adapters."),
        LossEntry(name="at", config_cls=ATConfig, build=ATLoss,
                  description="Distillation: activation attention transfer (Zagoruyko & Komodakis)."),
        LossEntry(name="at_grad", config_cls=GradATConfig, build=GradATLoss,
                  description="Distillation: gradient-based attention transfer (input gradients, double backward)."),
        LossEntry(name="afd", config_cls=AFDConfig, build=AFDLoss,
                  description="Distillation: attention-based feature distillation (Ji, Heo & Park, AAAI 2021)."),
        LossEntry(name="kl", config_cls=KLConfig, build=KLLoss,
                  description="Distillation: softened-output KL over RGB, as in the Light F2SRGAN release."),
    ]
