"""What a technique receives besides its config: the :class:`StageContext`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from attrs import define, field
from torch import nn

from srcompress.entries import ModelHints
from srcompress.recipe_types import DataConfig, ModelRef
from srcompress.registry import Registry

__all__ = ["StageContext"]


@define(kw_only=True)
class StageContext:
    """The run's services, as a technique's ``apply(model, config, ctx)`` sees them.

    - ``index`` / ``stage_name``: position and label of the stage (``stage_name`` names it in errors).
    - ``scale``: the upscaling factor of the model being compressed.
    - ``data``: training/evaluation data of the recipe.
    - ``work_dir``: a folder private to this stage: mid-stage checkpoints go here, so an
      interrupted stage resumes (it survives a crash, and is removed when the recipe changes).
    - ``device``, ``seed``, ``quiet``, ``registry``.
    - ``model_ref``: the registered architecture of the incoming model (None for a user's module).
    """

    index: int
    stage_name: str
    scale: int
    data: DataConfig
    work_dir: Path
    registry: Registry
    device: str = "cpu"
    seed: int = 0
    quiet: bool = False
    model_ref: ModelRef | None = None
    eval_metrics: tuple[str, ...] = ("psnr", "ssim")
    notes: list[str] = field(factory=list)

    def build_model(self, ref: ModelRef) -> nn.Module:
        """Build a registered model (with its weights) by reference, e.g. a distillation student."""
        from srcompress.models import build_model

        return build_model(ref, registry=self.registry)

    def hints(self, model: nn.Module) -> ModelHints:
        """The structural hints of ``model``'s architecture (empty for a user's own module)."""
        from srcompress.models import model_ref_of

        ref = model_ref_of(model)
        if ref is None:
            return ModelHints()
        return self.registry.get_model(ref.name).hints(model)

    def evaluate(self, model: nn.Module, datasets: tuple[str, ...] | None = None) -> dict[str, Any]:
        """Quality of ``model`` on the recipe's eval sets (or ``datasets``): {set: {metric: value}}."""
        from srcompress.measure.evaluate import evaluate

        result = evaluate(
            model,
            datasets or self.data.eval,
            self.scale,
            root=self.data.root,
            metrics=self.eval_metrics,
            device=self.device,
            limit=self.data.eval_limit,
            registry=self.registry,
        )
        return result.means()

    def note(self, text: str) -> None:
        """Add a line to this stage's section of the report (what the technique did and why)."""
        self.notes.append(text)
