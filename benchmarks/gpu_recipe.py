"""Time ``recipes/light_f2srgan_gpu.yaml`` on a GPU at two short budgets and extrapolate its full run.

The GPU recipe trains on DIV2K with a VGG19 perceptual term and deploys to TensorRT. Where those are
missing (no DIV2K, no VGG19 ImageNet weights in the torch hub cache, no TensorRT), this script runs
the same stages with what is there, and says what it changed:

- ``--train`` replaces the recipe's training sets (default T91; any folder under ``SRCOMPRESS_DATA``);
  the crops have a fixed size, so the time per step does not depend on the set;
- the evaluation after each stage is cut to Set5 PSNR/SSIM (a fixed cost per stage);
- a ``vgg`` loss term is dropped when its weights file is missing; a deploy target whose backend
  cannot run here (TensorRT not installed) is dropped.

The recipe runs twice from scratch: every training stage (and the QAT fine-tuning) at
``--probe-steps`` steps, then at ``--fraction`` of its steps (checkpoint/validation intervals and the
StepLR step size scaled with them). Each stage's wall time is read through the engine's own
``srcompress_stage_start`` / ``srcompress_stage_end`` hooks (a plugin registered like any other);
the two runs give each stage a line, fixed cost + time per step, which is extrapolated to the
recipe's step count.

Usage (repository root; data and weights in ../shared or SRCOMPRESS_DATA / SRCOMPRESS_WEIGHTS)::

    .venv/bin/python benchmarks/gpu_recipe.py --probe-steps 10 --fraction 0.05 \\
        --run-dir runs/gpu_recipe_timing --out docs/benchmarks_gpu_recipe.md
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from srcompress.paths import use_local_copies

ROOT = Path(__file__).resolve().parents[1]
use_local_copies(ROOT.parent / "shared")

from srcompress.engine import run  # noqa: E402
from srcompress.hookspecs import hookimpl  # noqa: E402
from srcompress.measure import write_section  # noqa: E402
from srcompress.registry import default_registry  # noqa: E402
from srcompress.training.perceptual import VGG19_FILENAME  # noqa: E402

INTERVAL_KEYS = ("checkpoint_every", "val_every", "step_size")
PAGE_MARKER = "gpu-recipe-bench"


class StageClock:
    """Plugin: wall time of the baseline evaluation and of each stage (training + evaluation)."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.baseline_s: float | None = None
        self.stage_s: dict[int, float] = {}
        self.total_s = 0.0
        self.error: str | None = None  # what ended the run early, if anything
        self._t0: float | None = None

    @hookimpl
    def srcompress_stage_start(self, index: int, stage: Any, resumed: bool) -> None:
        if self.baseline_s is None:
            self.baseline_s = time.perf_counter() - self.started  # model build + baseline evaluation
        self._t0 = time.perf_counter()

    @hookimpl
    def srcompress_stage_end(self, index: int, stage: Any, metrics: dict[str, Any]) -> None:
        if self._t0 is not None:
            self.stage_s[index] = time.perf_counter() - self._t0
            print(f"stage {index} done in {self.stage_s[index]:.1f} s", flush=True)  # progress, should the run be cut off


def _scale_training(block: dict[str, Any], steps_of: Any) -> tuple[int, int] | None:
    """Set ``steps`` (and the intervals, in proportion) of one training block in place; (full, set) steps."""
    if "steps" not in block:
        return None
    full = int(block["steps"])
    block["steps"] = min(full, max(1, steps_of(full)))
    for key in INTERVAL_KEYS:
        if key in block:
            block[key] = max(1, min(block["steps"], round(int(block[key]) * block["steps"] / full)))
    return full, int(block["steps"])


def vgg_weights_present(term: dict[str, Any]) -> bool:
    """Whether a ``vgg`` loss term finds its weights: its ``weights`` file, else the torch hub cache's."""
    path = Path(term["weights"]).expanduser() if term.get("weights") else Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILENAME
    return path.is_file()


def derive(recipe: dict[str, Any], *, train: list[str], steps_of: Any) -> tuple[dict[str, Any], list[str], dict[int, tuple[int, int]]]:
    """The shortened recipe, the list of changes made, and {stage index: (full steps, steps set)}."""
    out = copy.deepcopy(recipe)
    changes = [f"data.train: {recipe['data']['train']} -> {train}",
               f"eval: Set5 PSNR/SSIM only, 2 latency runs (was {recipe['data']['eval']} {recipe['eval'].get('metrics')}): "
               "the evaluation is a fixed cost per stage that the two-point fit separates anyway"]
    out["data"]["train"] = list(train)
    out["data"]["eval"] = ["Set5"]
    out["eval"] = {**out.get("eval", {}), "metrics": ["psnr", "ssim"], "latency_runs": 2}
    steps: dict[int, tuple[int, int]] = {}
    for index, stage in enumerate(out["stages"]):
        block = stage.get("finetune") if stage.get("type") in ("quantize", "prune") else stage
        pair = _scale_training(block, steps_of) if isinstance(block, dict) else None
        if pair is not None:
            steps[index] = pair
        losses = stage.get("losses", [])
        missing = [term for term in losses if term.get("kind") == "vgg" and not vgg_weights_present(term)]
        if missing:
            stage["losses"] = [term for term in losses if not any(term is m for m in missing)]
            changes.append(f"stage {index} ({stage.get('name')}): vgg term dropped (its weights file, {VGG19_FILENAME}, is missing)")
    if importlib.util.find_spec("tensorrt") is None:
        kept = [d for d in out.get("deploy", []) if d.get("backend") != "tensorrt"]
        if len(kept) != len(out.get("deploy", [])):
            changes.append("deploy: tensorrt target dropped (TensorRT is not installed)")
        out["deploy"] = kept
    return out, changes, steps


def attrs_of(clock: StageClock) -> dict[str, Any]:
    return {"baseline_s": clock.baseline_s, "stage_s": clock.stage_s, "total_s": clock.total_s, "error": clock.error}


def timed_run(recipe: dict[str, Any], run_dir: Path) -> StageClock:
    """Run ``recipe`` from scratch in ``run_dir`` with a :class:`StageClock` registered.

    An error in the run (a stage, or the deployment after the last one) ends it: the clock keeps the
    stages timed before it and the error's text (``clock.error``), which the page reports.
    """
    if run_dir.exists():
        shutil.rmtree(run_dir)  # a resumed stage would take no time
    registry = default_registry()  # the process's shared registry: the clock leaves it afterwards
    clock = StageClock()
    registry.register(clock, "gpu-recipe-clock")
    try:
        run(recipe, run_dir=run_dir, registry=registry, quiet=True)
    except Exception as err:  # noqa: BLE001 - reported on the page with the stages timed before it
        clock.error = f"{type(err).__name__}: {err}"
        print(f"run {run_dir.name} ended with {clock.error}", flush=True)
    finally:
        registry.unregister("gpu-recipe-clock")
    clock.total_s = time.perf_counter() - clock.started
    return clock


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "light_f2srgan_gpu.yaml")
    parser.add_argument("--train", nargs="+", default=["T91"], help="training sets (replace the recipe's)")
    parser.add_argument("--probe-steps", type=int, default=10, help="steps per stage of the short run")
    parser.add_argument("--fraction", type=float, default=0.05, help="share of every stage's steps in the long run (0, 1]")
    parser.add_argument("--device", default=None, help="override the recipe's device (e.g. cpu, to try the script)")
    parser.add_argument("--run-dir", type=Path, default=Path("runs/gpu_recipe_timing"))
    parser.add_argument("--out", type=Path, default=None, help="write the Markdown page here")
    args = parser.parse_args(argv)
    if not 0 < args.fraction <= 1 or args.probe_steps < 1:
        raise SystemExit(f"--fraction must be in (0, 1] and --probe-steps >= 1 (got {args.fraction}, {args.probe_steps})")
    recipe = yaml.safe_load(args.recipe.read_text())
    if args.device is not None:
        recipe["device"] = args.device
    if str(recipe.get("device", "cpu")).startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"{args.recipe} runs on device {recipe['device']!r} but torch sees no CUDA GPU; run this on a GPU machine")
    short, changes, short_steps = derive(recipe, train=args.train, steps_of=lambda full: args.probe_steps)
    long, _, long_steps = derive(recipe, train=args.train, steps_of=lambda full: max(args.probe_steps + 1, round(full * args.fraction)))
    print("\n".join(changes), flush=True)
    clocks = []
    for label, derived in (("short", short), ("long", long)):
        print(f"{label} run: steps {', '.join(str(s['steps']) for s in derived['stages'] if 'steps' in s)}", flush=True)
        clocks.append(timed_run(derived, args.run_dir / label))
    timings = {"steps": [short_steps, long_steps], "clocks": [attrs_of(c) for c in clocks]}
    print(json.dumps(timings), flush=True)  # the raw numbers, should the page need redoing
    page = render(args, recipe, changes, [short_steps, long_steps], clocks, device_line(recipe))
    print(page)
    if args.out is not None:  # the section between the markers; readings written around it stay
        recipe_path = shown_path(args.recipe)
        write_section(args.out, page, marker=PAGE_MARKER, title=page_title(recipe_path))
    return 1 if any(clock.error for clock in clocks) else 0  # the page is written either way


def stage_fit(index: int, steps: list[dict[int, tuple[int, int]]], clocks: list[StageClock]) -> tuple[float, float, int] | None:
    """(fixed s, s per step, full steps) of one stage from its two timed runs; None for a stage without steps."""
    if index not in steps[0] or index not in clocks[0].stage_s or index not in clocks[1].stage_s:
        return None
    (full, n_short), (_, n_long) = steps[0][index], steps[1][index]
    if n_long == n_short:  # a stage of at most --probe-steps steps ran in full both times: no slope
        return None
    t_short, t_long = clocks[0].stage_s[index], clocks[1].stage_s[index]
    per_step = (t_long - t_short) / (n_long - n_short)
    return t_short - per_step * n_short, per_step, full


def shown_path(path: Path) -> Path:
    """``path`` relative to the repository root when it is absolute (as the page shows it)."""
    return path.relative_to(ROOT) if path.is_absolute() else path


def page_title(recipe_path: Path) -> str:
    return f"# {recipe_path} on a GPU: timed at two short budgets, extrapolated to the recipe's"


def device_line(recipe: dict[str, Any]) -> str:
    """The device the recipe ran on here and the torch version, for the page."""
    on_cuda = torch.cuda.is_available() and str(recipe.get("device")).startswith("cuda")
    return f"{torch.cuda.get_device_name() if on_cuda else 'CPU'}; torch {torch.__version__}"


def render(args: argparse.Namespace, recipe: dict[str, Any], changes: list[str], steps: list[dict[int, tuple[int, int]]],
           clocks: list[StageClock], device: str) -> str:
    """The page's generated section (Markdown, without the title): command, device, changes, per-stage fit."""
    lines = ["| stage | steps (short / long / recipe) | wall s (short / long) | fixed s | ms per step | recipe's budget |",
             "|---|---:|---:|---:|---:|---:|"]
    full_total, unresolved = 0.0, False
    for index, stage in enumerate(recipe["stages"]):
        name = f"{index} {stage.get('name', stage['type'])} ({stage['type']})"
        walls = [c.stage_s.get(index) for c in clocks]
        if None in walls:
            continue
        fit = stage_fit(index, steps, clocks)
        if fit is None:
            lines.append(f"| {name} | - | {walls[0]:.1f} / {walls[1]:.1f} | {walls[1]:.1f} | - | {walls[1] / 60:.1f} min |")
            full_total += walls[1]
            continue
        fixed, per_step, full = fit
        counts = f"{steps[0][index][1]} / {steps[1][index][1]} / {full}"
        if per_step <= 0:  # the longer run was not slower: the steps cost less than the fixed cost's noise
            unresolved = True
            full_total += max(walls)
            lines.append(f"| {name} | {counts} | {walls[0]:.1f} / {walls[1]:.1f} | {max(walls):.1f} | unresolved "
                         f"(the longer run was not slower) | >= {max(walls) / 60:.1f} min |")
            continue
        budget = fixed + per_step * full
        full_total += budget
        lines.append(f"| {name} | {counts} | {walls[0]:.1f} / {walls[1]:.1f} | {fixed:.1f} | {per_step * 1e3:.0f} | {budget / 60:.1f} min |")
    recipe_path = shown_path(args.recipe)
    partial = " over the stages timed in both runs only" if any(c.error for c in clocks) else ""
    at_least = "at least " if unresolved else ""
    return "\n".join([
        "Command (repository root):",
        "",
        "```",
        f".venv/bin/python benchmarks/gpu_recipe.py --recipe {recipe_path} --train {' '.join(args.train)} "
        f"--probe-steps {args.probe_steps} --fraction {args.fraction:g} --run-dir {args.run_dir} --out {args.out}",
        "```",
        "",
        f"Device: {device}. Two runs from scratch, {clocks[0].total_s / 60:.1f} and "
        f"{clocks[1].total_s / 60:.1f} min; baseline evaluation and model build {clocks[1].baseline_s or 0:.1f} s. "
        "Each stage is timed through the engine's `srcompress_stage_start` / `srcompress_stage_end` hooks; the short "
        "and the long run give a line per stage: fixed cost (set-up, calibration, export, evaluation) and time per step. "
        "Changes from the recipe:",
        "",
        *[f"- {c}" for c in changes],
        "",
        *lines,
        "",
        *[f"**The {label} run ended with an error** (the stages above it were timed): `{clock.error}`\n"
          for label, clock in zip(("short", "long"), clocks) if clock.error],
        f"Recipe's full budget, extrapolated{partial}: {at_least}**{full_total / 60:.0f} min** on this device (time per step x the "
        "recipe's steps plus each stage's fixed cost at the reduced evaluation; data loading included as it ran here).",
        "",
    ])


if __name__ == "__main__":
    sys.exit(main())
