"""The distill stage's extension of the shared training loop (:class:`srcompress.training.TrainingHook`).

Per step, after the student's forward: the frozen teacher runs on the same LR batch, and the
captured features of both models' taps go, with the teacher's output, into
``inputs.extras["distill"]`` (a :class:`~.losses.DistillBatch`) for the loss terms to read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import nn

from srcompress.training import LossInputs, TrainingHook

from .losses import DISTILL_KEY, DistillationLoss, DistillBatch
from .taps import FeatureTaps

__all__ = ["DistillHook", "tap_channels"]

_PROBE_SIZE = 16


def tap_channels(model: nn.Module, names: Sequence[str], device: torch.device) -> list[int]:
    """Channel counts of the named taps, read from one forward of a (1, 3, 16, 16) probe in eval mode."""
    was_training = model.training
    model.eval()
    try:
        with FeatureTaps(model, names) as taps, torch.no_grad():
            model(torch.rand(1, 3, _PROBE_SIZE, _PROBE_SIZE, device=device))
            return [int(f.shape[1]) for f in taps.collect()]
    finally:
        model.train(was_training)


class DistillHook(TrainingHook):
    """Runs the teacher (frozen while training), captures taps, binds adapters; undoes all at teardown.

    :param teacher: the teacher (frozen here: eval mode, no gradients).
    :param terms: named ``(weight, module)`` loss terms; :class:`DistillationLoss` modules that use
        features are bound to the taps' widths in :meth:`setup`.
    :param student_taps / teacher_taps: module names whose outputs are captured (empty when no
        term uses features).
    """

    def __init__(
        self, teacher: nn.Module, terms: Mapping[str, tuple[float, nn.Module]],
        student_taps: Sequence[str] = (), teacher_taps: Sequence[str] = (),
    ) -> None:
        self.teacher = teacher
        self._terms = dict(terms)
        self.student_taps, self.teacher_taps = tuple(student_taps), tuple(teacher_taps)
        self.student: nn.Module | None = None
        self._student_hooks: FeatureTaps | None = None
        self._teacher_hooks: FeatureTaps | None = None
        self._teacher_flags: tuple[bool, list[bool]] | None = None

    @property
    def uses_features(self) -> bool:
        return any(isinstance(m, DistillationLoss) and m.uses_features for _, m in self._terms.values())

    def setup(self, model: nn.Module, device: torch.device) -> None:
        self.student = model
        self._teacher_flags = (self.teacher.training, [p.requires_grad for p in self.teacher.parameters()])
        self.teacher.to(device).eval().requires_grad_(False)
        if not self.uses_features:
            return
        s_channels = tap_channels(model, self.student_taps, device)
        t_channels = tap_channels(self.teacher, self.teacher_taps, device)
        for _, module in self._terms.values():
            if isinstance(module, DistillationLoss) and module.uses_features:
                module.bind(s_channels, t_channels)
                module.to(device)
        self._student_hooks = FeatureTaps(model, self.student_taps, only_training=True)
        self._teacher_hooks = FeatureTaps(self.teacher, self.teacher_taps)

    def terms(self) -> Mapping[str, tuple[float, nn.Module]]:
        return dict(self._terms)

    def parameters(self) -> Iterable[nn.Parameter]:
        seen: set[int] = set()
        params = []
        for _, module in self._terms.values():
            for param in module.parameters():
                if param.requires_grad and id(param) not in seen:
                    seen.add(id(param))
                    params.append(param)
        return params

    def before_loss(self, inputs: LossInputs) -> None:
        with torch.no_grad():
            teacher_sr = self.teacher(inputs.lr)
        student_features: list[torch.Tensor] = []
        teacher_features: list[torch.Tensor] = []
        if self._student_hooks is not None and self._teacher_hooks is not None:
            student_features = self._student_hooks.collect()
            teacher_features = self._teacher_hooks.collect()
        inputs.extras[DISTILL_KEY] = DistillBatch(
            teacher_sr=teacher_sr, student_features=student_features, teacher_features=teacher_features,
            student=self.student, teacher=self.teacher,
        )

    def teardown(self) -> None:
        """Remove the forward hooks; give the teacher back its training mode and requires_grad flags."""
        for taps in (self._student_hooks, self._teacher_hooks):
            if taps is not None:
                taps.remove()
        self._student_hooks = self._teacher_hooks = None
        if self._teacher_flags is not None:
            training, flags = self._teacher_flags
            self.teacher.train(training)
            for param, flag in zip(self.teacher.parameters(), flags, strict=True):
                param.requires_grad_(flag)
            self._teacher_flags = None
