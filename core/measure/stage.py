"""Measuring one step of a run (baseline or stage) and writing the run's report.

Every step is measured the same way: parameters, MACs and torch latency at the recipe's LR size,
quality on the recipe's eval sets with its metrics, and a few kept outputs for side-by-side crops.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from srcompress.checkpoint import atomic_torch_save, needs_export
from srcompress.measure.evaluate import EvalResult, KeptImage, evaluate
from srcompress.measure.profile import count_macs, count_params, measure_latency
from srcompress.measure.report import StageRecord, crops_from_results, write_report
from srcompress.modes import eval_mode

if TYPE_CHECKING:
    from srcompress.recipe import Recipe
    from srcompress.registry import Registry

__all__ = ["measure_stage", "write_run_report"]

KEPT_FILE = "kept.pt"


def _latency(model: nn.Module, recipe: Recipe) -> float | None:
    if recipe.eval.latency_runs == 0:
        return None
    h, w = recipe.eval.lr_size
    x = torch.rand(1, 3, h, w, device=recipe.device)
    with eval_mode(model), torch.inference_mode():
        stats = measure_latency(
            lambda: model(x), warmup=1, runs=recipe.eval.latency_runs, threads=recipe.eval.threads,
            cuda_sync=recipe.device.startswith("cuda"),
        )
    return stats.median_ms


def measure_stage(
    model: nn.Module, label: str, recipe: Recipe, *, registry: Registry, out_dir: Path, quiet: bool = False
) -> dict[str, Any]:
    """Measure ``model`` as the step ``label`` of ``recipe``; keep a few outputs in ``out_dir``.

    Returns the JSON-able record (:meth:`StageRecord.to_dict` plus the evaluation notes).
    """
    if not needs_export(model):
        model = model.to(recipe.device)
    total, _trainable = count_params(model)
    macs = count_macs(model, recipe.eval.lr_size, recipe.model.scale)
    result = evaluate(
        model,
        recipe.data.eval,
        recipe.model.scale,
        root=recipe.data.root,
        metrics=recipe.eval.metrics,
        device=recipe.device,
        keep_outputs=recipe.eval.crops,
        limit=recipe.data.eval_limit,
        registry=registry,
        progress=not quiet,
    )
    latency = _latency(model, recipe)
    record = StageRecord.from_eval(label, result, params=total, macs=macs, latency_ms={"torch": latency} if latency else {})
    record.extras["lr_size"] = list(recipe.eval.lr_size)
    _save_kept(result, out_dir / KEPT_FILE)
    data = record.to_dict()
    data["notes"] = list(result.notes)
    return data


def _save_kept(result: EvalResult, path: Path) -> None:
    kept = {
        f"{dataset}/{name}": {"lr": image.lr, "sr": image.sr, "hr": image.hr}
        for dataset, images in result.kept.items()
        for name, image in images.items()
    }
    atomic_torch_save({"scale": result.scale, "kept": kept}, path)


def _load_kept(path: Path, metrics: Sequence[str]) -> EvalResult | None:
    if not path.is_file():
        return None
    payload = torch.load(path, map_location="cpu", weights_only=True)
    result = EvalResult(scale=payload["scale"], metrics=tuple(metrics), higher_is_better={})
    for key, images in payload["kept"].items():
        dataset, name = key.split("/", 1)
        result.kept.setdefault(dataset, {})[name] = KeptImage(lr=images["lr"], sr=images["sr"], hr=images["hr"])
    return result


def write_run_report(
    out_dir: Path,
    recipe: Recipe,
    records: Sequence[Mapping[str, Any]],
    kept_dirs: Sequence[Path],
    deployments: Mapping[str, Any] | None = None,
) -> Path:
    """The run's report (Markdown + JSON + PNG) from each step's record and kept outputs."""
    stage_records = [_record(r) for r in records]
    for name, info in (deployments or {}).items():
        latency = info.get("latency_ms")
        if latency is not None:
            stage_records[-1].latency_ms[name] = latency
    kept = {}
    for record, folder in zip(stage_records, kept_dirs, strict=True):
        result = _load_kept(folder / KEPT_FILE, recipe.eval.metrics)
        if result is not None and result.kept:
            kept[record.stage] = result
    crops = crops_from_results(kept) if kept else None
    notes = list(dict.fromkeys(note for r in records for note in r.get("notes", [])))  # stage order, no repeats
    notes += _deploy_notes(deployments or {})
    title = f"{recipe.name}: {recipe.model.name} x{recipe.model.scale}"
    return write_report(out_dir, stage_records, title=title, crops=crops, notes=notes)


def _record(data: Mapping[str, Any]) -> StageRecord:
    return StageRecord(
        stage=data["stage"],
        params=data.get("params"),
        macs=data.get("macs"),
        latency_ms=dict(data.get("latency_ms") or {}),
        quality={k: dict(v) for k, v in (data.get("quality") or {}).items()},
        extras=dict(data.get("extras") or {}),
    )


def _deploy_notes(deployments: Mapping[str, Any]) -> list[str]:
    notes = []
    for name, info in deployments.items():
        check = info.get("verify")
        if check is not None:
            notes.append(f"deploy {name}: max |output - torch| = {getattr(check, 'max_abs', float('nan')):.2e}")
    return notes
