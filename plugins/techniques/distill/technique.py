"""The ``distill`` technique: train a student against a frozen teacher with the shared training loop.

Recipe::

    stages:
      - type: distill
        teacher: null                                   # the model entering the stage
        student: {name: f2srgan, blocks: 8, ffc_blocks: []}
        losses:
          - {kind: output, weight: 1.0, hr_weight: 0.1}
          - {kind: afd, weight: 200}
          - {kind: gan, weight: 0.006, flavor: relativistic_paired}
        discriminator: {name: f2srgan_discriminator}
        steps: 2000
        lr: 1.0e-4
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import torch
from torch import nn

from srcompress.errors import SrcompressError
from srcompress.training import LossTerm, fit

from .config import DistillConfig
from .hook import DistillHook
from .losses import DistillationLoss
from .taps import resolve_taps

__all__ = ["ANCHOR_KIND", "apply", "build_terms", "split_anchor"]

ANCHOR_KIND = "l1"
"""The trainer needs at least one term of its own: the stage's first ``l1`` term, else L1 to HR at weight 0
(then reported in the history as a monitor only)."""


def split_anchor(terms: Sequence[LossTerm]) -> tuple[LossTerm, list[LossTerm]]:
    """(the term the trainer builds itself, the terms the distill hook builds and binds)."""
    for index, term in enumerate(terms):
        if term.kind == ANCHOR_KIND:
            return term, [t for i, t in enumerate(terms) if i != index]
    return LossTerm(kind=ANCHOR_KIND, weight=0.0), list(terms)


def build_terms(terms: Sequence[LossTerm], registry: Any, taken: Sequence[str] = ()) -> dict[str, tuple[float, nn.Module]]:
    """Build each term's loss module through the registry, named by kind (``at``, ``at2`` if repeated)."""
    names = set(taken)
    built: dict[str, tuple[float, nn.Module]] = {}
    for term in terms:
        entry = registry.get_loss(term.kind)
        name, index = term.kind, 2
        while name in names:
            name, index = f"{term.kind}{index}", index + 1
        names.add(name)
        options = term.options if term.options is not None else entry.config_cls()
        built[name] = (term.weight, entry.build(options))
    return built


def _models(model: nn.Module, config: DistillConfig, ctx: Any) -> tuple[nn.Module, nn.Module]:
    """(teacher, student) for this stage."""
    for role, ref in (("teacher", config.teacher), ("student", config.student)):
        if ref is not None and ref.scale != ctx.scale:
            raise SrcompressError(f"stage '{ctx.stage_name}': {role} {ref.name} is x{ref.scale} but the model is x{ctx.scale}")
    if config.teacher is not None and config.teacher.weights is None:
        raise SrcompressError(
            f"stage '{ctx.stage_name}': teacher {config.teacher.name} has no weights (a random teacher teaches "
            "nothing); add 'weights: official' (a published tag) or a checkpoint path"
        )
    if config.teacher is None and config.student is None:
        return copy.deepcopy(model), model
    teacher = ctx.build_model(config.teacher) if config.teacher is not None else model
    student = ctx.build_model(config.student) if config.student is not None else model
    return teacher, student


def _renamed(key: str, renames: Mapping[str, str]) -> str:
    """``key`` with its longest matching module prefix replaced by ``renames``."""
    for prefix in sorted(renames, key=len, reverse=True):
        if key == prefix or key.startswith(prefix + "."):
            return renames[prefix] + key[len(prefix):]
    return key


def init_from_teacher(student: nn.Module, teacher: nn.Module, renames: Mapping[str, str]) -> tuple[int, int]:
    """Copy teacher tensors into the student where (renamed) names and shapes agree.

    A student PReLU with one shared slope where the teacher has one per channel starts at the mean
    of the teacher's slopes.

    :return: (tensors copied, student tensors in all).
    """
    source = teacher.state_dict()
    state = student.state_dict()
    shared_slopes = {f"{name}.weight" for name, m in student.named_modules() if isinstance(m, nn.PReLU) and m.num_parameters == 1}
    copied = 0
    with torch.no_grad():
        for key, tensor in state.items():
            match = source.get(_renamed(key, renames))
            if match is not None and match.shape == tensor.shape:
                tensor.copy_(match)
                copied += 1
            elif match is not None and key in shared_slopes and match.ndim == 1:
                tensor.fill_(float(match.float().mean()))
                copied += 1
    return copied, len(state)


def _summary(result: Any, terms: Sequence[str]) -> str:
    history = result.history
    text = f"distilled {result.steps} steps with {', '.join(terms)}"
    if history.loss:
        text += f"; loss {history.loss[0]:.4g} -> {history.loss[-1]:.4g}"
    if result.best_score is not None:
        text += f"; {result.best_text()}"
    if result.resumed_from:
        text += f"; resumed at step {result.resumed_from}"
    return text


def apply(model: nn.Module, config: DistillConfig, ctx: Any) -> nn.Module:
    """Distill ``config.teacher`` (default: ``model``) into ``config.student`` (default: ``model``).

    Returns the trained student. Forward hooks are on both models only while training.
    """
    teacher, student = _models(model, config, ctx)
    if config.student_init == "teacher" and student is not teacher:
        copied, total = init_from_teacher(student, teacher, config.init_map)
        ctx.note(f"student initialised from the teacher: {copied} of {total} tensors")
    anchor, rest = split_anchor(config.losses)
    terms = build_terms(rest, ctx.registry, taken=[ANCHOR_KIND])
    needs_taps = any(isinstance(m, DistillationLoss) and m.uses_features for _, m in terms.values())
    student_taps: tuple[str, ...] = ()
    teacher_taps: tuple[str, ...] = ()
    if needs_taps:
        # a side named explicitly sets the number of taps taken from the other side's hints
        count = len(config.student_taps or config.teacher_taps) or config.num_taps
        student_taps = resolve_taps(student, config.student_taps, ctx.hints(student).feature_taps, count, "student")
        teacher_taps = resolve_taps(teacher, config.teacher_taps, ctx.hints(teacher).feature_taps, count, "teacher")
    hook = DistillHook(teacher, terms, student_taps, teacher_taps)
    discriminator = ctx.build_model(config.discriminator) if config.discriminator is not None else None
    result = fit(
        student, attrs.evolve(config, losses=(anchor,)), ctx.data, ctx.scale, work_dir=ctx.work_dir,
        stage_name=ctx.stage_name, registry=ctx.registry, hooks=[hook], discriminator=discriminator,
        device=ctx.device, seed=ctx.seed, progress=not getattr(ctx, "quiet", False),
    )
    if needs_taps:
        ctx.note(f"taps: student {', '.join(student_taps)}; teacher {', '.join(teacher_taps)}")
    named = ([f"{anchor.weight:g} x {ANCHOR_KIND}"] if anchor.weight else []) + [f"{w:g} x {n}" for n, (w, _) in terms.items()]
    ctx.note(_summary(result, named))
    return result.model
