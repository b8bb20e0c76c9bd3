"""The ``distill`` stage's typed configuration."""

from __future__ import annotations

from typing import Any

from attrs import define

from srcompress.config import in_range, names, one_of, option
from srcompress.recipe_types import ModelRef
from srcompress.training import LossTerm, TrainConfig

__all__ = ["DistillConfig"]


def _terms(_inst: object, _attribute: object, value: tuple[Any, ...]) -> None:
    if not value or not all(isinstance(term, LossTerm) for term in value):
        raise ValueError("must be a non-empty list of loss terms like [{kind: output, weight: 1.0}]")



@define(frozen=True, kw_only=True)
class DistillConfig(TrainConfig):
    """A distill stage: every :class:`srcompress.training.TrainConfig` option (steps, lr, schedule,
    EMA, ...) plus the teacher, the student, the feature taps and the discriminator.

    ``losses`` mixes distillation terms (``output``, ``feature``, ``at``, ``at_grad``, ``afd``,
    ``kl``, or any plugin's) with the training core's (``l1``, ``vgg``, ``gan``, ``tv``, ...), e.g.
    the seed's student: ``[{kind: afd, weight: 200}, {kind: vgg}, {kind: gan, weight: 0.6}, {kind:
    tv, weight: 2.0e-8, reduction: sum}]``.
    """

    teacher: ModelRef | None = option(
        None, help="Teacher: a registered model with weights, e.g. {name: f2srgan, weights: official}; "
        "null: the model entering the stage.",
    )
    student: ModelRef | None = option(
        None, help="Student: a registered architecture built by name with options, e.g. {name: f2srgan, "
        "blocks: 8, ffc_blocks: []}; null: the model entering the stage.",
    )
    losses: tuple[LossTerm, ...] = option(
        (LossTerm(kind="output", weight=1.0),),
        help="Weighted loss terms: distillation ({kind: output|feature|at|at_grad|afd|kl}) and training "
        "({kind: l1|vgg|gan|tv|...}) terms, e.g. [{kind: output, weight: 1.0}, {kind: afd, weight: 200}].",
        validator=_terms,
    )
    student_taps: tuple[str, ...] = option(
        (), help="Student modules whose outputs are distilled features (shallow to deep); []: num_taps "
        "of the student's hinted feature taps.", converter=names,
    )
    teacher_taps: tuple[str, ...] = option(
        (), help="Teacher modules paired with student_taps; []: num_taps of the teacher's hinted taps.",
        converter=names,
    )
    num_taps: int = option(
        4, help="Taps taken from each model's hints when not named: spread evenly, ending at the deepest "
        "(4 as in Light F2SRGAN).", validator=in_range(1, 256),
    )
    discriminator: ModelRef | None = option(
        None, help="Discriminator for 'gan' terms, e.g. {name: f2srgan_discriminator}.",
    )
    student_init: str = option(
        "none", help="How a student built by name starts: none (its own initialisation) or teacher (copy every "
        "teacher tensor of the same name and shape, after the renames of init_map).",
        validator=one_of(("none", "teacher")),
    )
    init_map: dict[str, str] = option(
        factory=dict, help="For student_init: teacher, student module prefix -> teacher module prefix, e.g. "
        "{body.0: body.1} starts the student's block 0 from the teacher's block 1.",
    )
