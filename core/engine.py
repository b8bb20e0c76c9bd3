"""The engine: one run of a recipe.

``load recipe -> load plugins -> build model (+ weights) -> evaluate baseline -> for each stage:
apply -> evaluate -> checkpoint -> deploy to each backend -> verify against torch -> benchmark ->
report``. Finished stages are reused when the recipe up to them is unchanged; an interrupted run
resumes from the first unfinished stage.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from attrs import define, field
from torch import nn

from srcompress.checkpoint import load_stage_model, save_stage_model
from srcompress.context import StageContext
from srcompress.errors import SrcompressError, StageError
from srcompress.models import build_model, model_ref_of, ref_to_mapping, set_model_ref
from srcompress.recipe import Recipe, StageSpec, dump_recipe, load_recipe, parse_recipe, recipe_to_mapping
from srcompress.recipe_types import ModelRef
from srcompress.registry import Registry, default_registry
from srcompress.rundir import RunDir, atomic_write_text, fingerprint

__all__ = ["RunResult", "compress", "run"]



@define(kw_only=True)
class RunResult:
    """What a run produced: the final model, per-step measurements, artifacts and the report."""

    model: nn.Module
    run_dir: Path
    records: list[dict[str, Any]] = field(factory=list)
    deployments: dict[str, Any] = field(factory=dict)
    report: Path | None = None
    resumed_stages: list[int] = field(factory=list)


def run(
    recipe: Recipe | str | Path | Mapping[str, Any],
    *,
    run_dir: str | Path | None = None,
    registry: Registry | None = None,
    quiet: bool = False,
) -> RunResult:
    """Run a recipe (a :class:`Recipe`, a YAML path or a mapping). Resumes an interrupted run."""
    registry = registry or default_registry()
    recipe = _as_recipe(recipe, registry)
    model = build_model(recipe.model, registry=registry)
    return _Engine(recipe, registry, _run_path(recipe, run_dir), quiet).execute(model)


def compress(
    model: nn.Module,
    stages: Sequence[Mapping[str, Any]],
    *,
    scale: int,
    data: Mapping[str, Any] | None = None,
    deploy: Sequence[Mapping[str, Any]] = (),
    eval: Mapping[str, Any] | None = None,
    name: str = "compress",
    run_dir: str | Path | None = None,
    registry: Registry | None = None,
    quiet: bool = False,
) -> RunResult:
    """Compress a user's own ``nn.Module`` with recipe stages (same engine as :func:`run`).

    ``model`` maps float32 RGB NCHW [0, 1] images to ``scale`` times larger ones. ``stages``,
    ``data``, ``deploy`` and ``eval`` take the same keys as in a recipe.
    """
    registry = registry or default_registry()
    mapping = {
        "version": 1,
        "name": name,
        "model": {"name": _USER_MODEL, "scale": scale},
        "data": dict(data or {}),
        "eval": dict(eval or {}),
        "stages": [dict(s) for s in stages],
        "deploy": [dict(d) for d in deploy],
    }
    recipe = _parse_user_recipe(mapping, registry)
    return _Engine(recipe, registry, _run_path(recipe, run_dir), quiet, user_model=model).execute(copy.deepcopy(model))


_USER_MODEL = "__user_model__"


def _parse_user_recipe(mapping: dict[str, Any], registry: Registry) -> Recipe:
    """A recipe whose model is the caller's module: every section but ``model`` is validated."""
    user_ref = mapping.pop("model")
    recipe = parse_recipe(mapping, registry=registry, default_name=mapping["name"], model=ModelRef(name=_USER_MODEL, scale=user_ref["scale"]))
    return recipe


def _as_recipe(recipe: Recipe | str | Path | Mapping[str, Any], registry: Registry) -> Recipe:
    if isinstance(recipe, Recipe):
        return recipe
    if isinstance(recipe, (str, Path)):
        return load_recipe(recipe, registry=registry)
    return parse_recipe(recipe, registry=registry)


def _run_path(recipe: Recipe, run_dir: str | Path | None) -> Path:
    if run_dir is not None:
        return Path(run_dir)
    if recipe.run_dir is not None:
        return Path(recipe.run_dir)
    return Path("runs") / recipe.name


class _Engine:
    def __init__(self, recipe: Recipe, registry: Registry, path: Path, quiet: bool, user_model: nn.Module | None = None) -> None:
        self.recipe = recipe
        self.registry = registry
        self.rundir = RunDir(path)
        self.quiet = quiet
        self.user_model = user_model
        self.result: RunResult | None = None
        self.kept_dirs: list[Path] = []  # one folder per measured step, in report order

    # ---------------------------------------------------------------- flow
    def execute(self, model: nn.Module) -> RunResult:
        hook = self.registry.hook
        self._write_resolved_recipe()
        hook.srcompress_run_start(recipe=self.recipe, run_dir=self.rundir)
        torch.manual_seed(self.recipe.seed)
        self.result = RunResult(model=model, run_dir=self.rundir.path)
        try:
            self._baseline(model)
            for index, stage in enumerate(self.recipe.stages):
                model = self._stage(index, stage, model)
            self.result.model = model
            self._deploy(model)
            self.result.report = self._report()
        except BaseException as exc:
            hook.srcompress_run_end(run_dir=self.rundir, report=None, error=exc)
            raise
        hook.srcompress_run_end(run_dir=self.rundir, report=self._report_data(), error=None)
        return self.result

    def _write_resolved_recipe(self) -> None:
        atomic_write_text(self.rundir.path / "recipe.yaml", dump_recipe(self.recipe, registry=self.registry))

    # ---------------------------------------------------------------- fingerprints
    def _stage_fingerprint(self, index: int) -> str:
        """Identity of the model after stage ``index`` (-1: the baseline)."""
        mapping = recipe_to_mapping(self.recipe, registry=self.registry)
        if self.user_model is not None:
            mapping["model"]["structure"] = _module_signature(self.user_model)
        data = mapping["data"]
        return fingerprint(
            mapping["model"],
            {k: data[k] for k in ("root", "train", "patch", "batch")},
            mapping["seed"],
            mapping["stages"][: index + 1],
        )

    def _eval_fingerprint(self, step_fp: str) -> str:
        mapping = recipe_to_mapping(self.recipe, registry=self.registry)
        return fingerprint(step_fp, mapping["eval"], mapping["data"]["eval"], mapping["data"]["eval_limit"])

    # ---------------------------------------------------------------- baseline
    def _baseline(self, model: nn.Module) -> None:
        fp = self._eval_fingerprint(self._stage_fingerprint(-1))
        record = self.rundir.finished("baseline", fp)
        metrics = self.rundir.read_json("baseline/metrics.json") if record is not None else None
        if metrics is None:
            metrics = self._measure(model, "baseline", self.rundir.path / "baseline")
            self.rundir.write_json("baseline/metrics.json", metrics)
            self.rundir.mark_finished("baseline", fp)
        else:
            self.kept_dirs.append(self.rundir.path / "baseline")
        assert self.result is not None
        self.result.records.append(metrics)

    # ---------------------------------------------------------------- stages
    def _stage(self, index: int, stage: StageSpec, model: nn.Module) -> nn.Module:
        assert self.result is not None
        key = f"stage-{index:02d}"
        fp = self._stage_fingerprint(index)
        folder = self.rundir.stage_dir(index, stage.type)
        done = self.rundir.finished(key, fp)
        metrics_fp = self._eval_fingerprint(fp)
        hook = self.registry.hook
        if done is not None:
            hook.srcompress_stage_start(index=index, stage=stage.config, resumed=True)
            model = self._load_stage_model(folder)
            metrics = self.rundir.read_json(f"{folder.name}/metrics.json")
            if done.get("metrics_fingerprint") != metrics_fp or metrics is None:
                metrics = self._measure(model, self._label(index, stage), folder)
                self.rundir.write_json(f"{folder.name}/metrics.json", metrics)
                self.rundir.mark_finished(key, fp, metrics_fingerprint=metrics_fp)
            else:
                self.kept_dirs.append(folder)
            self.result.resumed_stages.append(index)
        else:
            self._forget_changed(index, folder, fp)
            hook.srcompress_stage_start(index=index, stage=stage.config, resumed=False)
            model, notes = self._apply(index, stage, model, folder)
            self._save_stage_model(model, folder)
            metrics = self._measure(model, self._label(index, stage), folder)
            metrics["notes"] = [*(f"{stage.label}: {n}" for n in notes), *metrics.get("notes", [])]
            self.rundir.write_json(f"{folder.name}/metrics.json", metrics)
            self.rundir.mark_finished(key, fp, metrics_fingerprint=metrics_fp)
        self.result.records.append(metrics)
        hook.srcompress_stage_end(index=index, stage=stage.config, metrics=metrics)
        return model

    def _forget_changed(self, index: int, folder: Path, fp: str) -> None:
        """Drop stage ``index`` onward if the recipe changed there; keep mid-stage work otherwise."""
        marker = folder / "fingerprint"
        if marker.is_file() and marker.read_text().strip() == fp:
            self.rundir.invalidate_from(index + 1)
            return
        self.rundir.invalidate_from(index)
        atomic_write_text(marker, fp)

    def _label(self, index: int, stage: StageSpec) -> str:
        return f"{index + 1}:{stage.label}"

    def _apply(self, index: int, stage: StageSpec, model: nn.Module, folder: Path) -> tuple[nn.Module, list[str]]:
        entry = self.registry.get_technique(stage.type)
        ctx = StageContext(
            index=index,
            stage_name=stage.label,
            scale=self.recipe.model.scale,
            data=self.recipe.data,
            work_dir=folder / "work",
            registry=self.registry,
            device=self.recipe.device,
            seed=self.recipe.seed + index,
            quiet=self.quiet,
            model_ref=model_ref_of(model),
            eval_metrics=self.recipe.eval.metrics,
        )
        ctx.work_dir.mkdir(parents=True, exist_ok=True)
        incoming_ref = model_ref_of(model)
        try:
            out = entry.apply(model, stage.config, ctx)
        except SrcompressError as exc:
            raise StageError(f"stage {index + 1} ({stage.label}, plugin \"{entry.plugin}\") failed: {exc}") from exc
        except Exception as exc:
            raise StageError(
                f"stage {index + 1} ({stage.label}, plugin \"{entry.plugin}\") failed: {type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(out, nn.Module):
            raise StageError(f"stage {index + 1} ({stage.label}, plugin \"{entry.plugin}\") returned {type(out).__name__}, not an nn.Module")
        if model_ref_of(out) is None and incoming_ref is not None:
            set_model_ref(out, incoming_ref)
        return out, list(ctx.notes)

    # ---------------------------------------------------------------- checkpoints
    def _ref_mapping(self, model: nn.Module) -> dict[str, Any] | None:
        ref = model_ref_of(model)
        return ref_to_mapping(ref) if ref is not None else None

    def _save_stage_model(self, model: nn.Module, folder: Path) -> None:
        h, w = self.recipe.eval.lr_size
        example = torch.rand(2, 3, min(h, 32), min(w, 32), device=self.recipe.device)
        save_stage_model(model, folder, model_ref=self._ref_mapping(model), example=example)

    def _load_stage_model(self, folder: Path) -> nn.Module:
        return load_stage_model(folder, registry=self.registry, user_model=self.user_model)

    # ---------------------------------------------------------------- measure
    def _measure(self, model: nn.Module, label: str, folder: Path) -> dict[str, Any]:
        from srcompress.measure.stage import measure_stage

        self.kept_dirs.append(folder)
        return measure_stage(model, label, self.recipe, registry=self.registry, out_dir=folder, quiet=self.quiet)

    # ---------------------------------------------------------------- deploy
    def _deploy(self, model: nn.Module) -> None:
        """Compile the final model on each backend, verify it against torch, time it at eval.lr_size."""
        if not self.recipe.deploy:
            return
        from srcompress.deploy import deploy_model, measure_deployed

        assert self.result is not None
        h, w = self.recipe.eval.lr_size
        example = torch.rand(1, 3, min(h, 64), min(w, 64))
        timed = torch.rand(1, 3, h, w)
        for index, spec in enumerate(self.recipe.deploy):
            out_dir = self.rundir.path / "deploy" / f"{index:02d}-{spec.backend}"
            deployed, check = deploy_model(model, spec.backend, spec.config, example, out_dir, registry=self.registry)
            info: dict[str, Any] = {"deployed": deployed, "verify": check, "latency_ms": None}
            if self.recipe.eval.latency_runs:
                stats = measure_deployed(deployed, timed, warmup=1, runs=self.recipe.eval.latency_runs, threads=self.recipe.eval.threads)
                info["latency_ms"] = stats.median_ms
            label = f"{spec.backend} {deployed.metadata.get('precision', '')}".strip()
            self.result.deployments[label] = info

    # ---------------------------------------------------------------- report
    def _report_data(self) -> dict[str, Any]:
        assert self.result is not None
        return {"name": self.recipe.name, "records": self.result.records}

    def _report(self) -> Path | None:
        from srcompress.measure.stage import write_run_report

        assert self.result is not None
        return write_run_report(
            self.rundir.path / "report", self.recipe, self.result.records, self.kept_dirs, self.result.deployments
        )


def _module_signature(model: nn.Module | None) -> list[Any]:
    if model is None:
        return []
    return [(k, list(v.shape)) for k, v in model.state_dict().items()]

