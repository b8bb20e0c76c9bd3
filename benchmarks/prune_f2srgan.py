"""Benchmark: structured pruning of published F2SRGAN x4, importance x ratio of the residual inner width.

For every importance criterion (default random, l1, lamp, group_norm) and ratio (default 0.25, 0.5,
0.75) the published F2SRGAN x4 is pruned with the ``prune`` technique (``scope: per_layer``, only
the residual blocks' inner widths, as Light F2SRGAN did: 64 -> 48 / 32 / 16; FFC blocks lose the
same share of their local and global halves), then fine-tuned for a fixed short budget on T91+BSD200
(L1, AdamW, cosine LR, HR patches 48, batch 16; the same data order for every run). Reported:
parameters, MACs and ONNX Runtime CPU latency at 320x180 LR (relative to the unpruned model,
measured in the same run, interleaved), and Set5/Set14 PSNR-Y right after pruning and after the
fine-tune. A control row fine-tunes the unpruned model with the same budget: the published weights
come from GAN training, so L1 fine-tuning alone moves PSNR.

With ``scope: per_layer`` every criterion gives the same widths at a ratio, so params, MACs and
latency are measured once per distinct architecture.

Command (see docs/benchmarks_prune.md for the budget and the time it took)::

    .venv/bin/python benchmarks/prune_f2srgan.py --steps 50 --out docs/benchmarks_prune.md
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from srcompress.paths import use_local_copies  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
use_local_copies(ROOT.parent / "shared")

from srcompress.backends.onnx import OnnxConfig, compile_onnx  # noqa: E402
from srcompress.data import PatchDataset  # noqa: E402
from srcompress.measure import count_macs, count_params, evaluate, measure_latency  # noqa: E402
from srcompress.models import build_model  # noqa: E402
from srcompress.plugins.techniques.pruning import PruneConfig, prune_model  # noqa: E402
from srcompress.recipe_types import DataConfig, ModelRef  # noqa: E402
from srcompress.registry import default_registry  # noqa: E402
from srcompress.training import TrainConfig, fit  # noqa: E402

SCALE = 4
LR_SIZE = (180, 320)  # (H, W): 320x180 LR -> 1280x720 SR
EVAL_SETS = ("Set5", "Set14")
TRAIN_SETS = ("T91", "BSD200")
MODEL = ModelRef(name="f2srgan", scale=SCALE, weights="official")


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--importances", nargs="+", default=["random", "l1", "lamp", "group_norm"])
    parser.add_argument("--ratios", nargs="+", type=float, default=[0.25, 0.5, 0.75])
    parser.add_argument("--steps", type=int, default=50, help="fine-tuning steps per pruned model")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--patch", type=int, default=48, help="HR patch size")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--threads", type=int, default=2, help="torch and ONNX Runtime intra-op threads")
    parser.add_argument("--runs", type=int, default=5, help="timed ONNX Runtime runs per model and round")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved latency rounds over all models")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N images per set (smoke tests)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks_prune.md")
    parser.add_argument("--render", action="store_true", help="only redraw --out from its .json (no measuring)")
    return parser.parse_args()


# ------------------------------------------------------------------------------------ measures


def quality(model: nn.Module, limit: int | None) -> dict[str, float]:
    means = evaluate(model, EVAL_SETS, SCALE, metrics=("psnr",), limit=limit).means()
    return {name: float(means[name]["psnr"]) for name in EVAL_SETS}


def signature(model: nn.Module) -> tuple[tuple[str, tuple[int, ...]], ...]:
    return tuple((name, tuple(p.shape)) for name, p in model.state_dict().items())


def inner_width(model: nn.Module) -> int:
    """Width of the first residual block's inner activation (its PReLU)."""
    return int(model.body[0].act.num_parameters)


def latencies(models: dict[str, nn.Module], threads: int, runs: int, rounds: int) -> dict[str, dict[str, Any]]:
    """ONNX Runtime CPU latency at LR_SIZE of each model, measured round-robin ``rounds`` times."""
    example = torch.rand(1, 3, 36, 64, generator=torch.Generator().manual_seed(0))  # export/verify cheaply
    image = torch.rand(1, 3, *LR_SIZE, generator=torch.Generator().manual_seed(1))
    deployed = {}
    for key, model in models.items():
        start = time.perf_counter()
        deployed[key] = compile_onnx(model.eval(), example, OnnxConfig(provider="cpu", threads=threads))
        print(f"  compiled {key} in {time.perf_counter() - start:.0f} s", flush=True)
    times: dict[str, list[float]] = {key: [] for key in models}
    for _ in range(rounds):
        for key, run in deployed.items():
            stats = measure_latency(lambda run=run: run(image), warmup=1, runs=runs)
            times[key].extend(stats.times_ms)
    return {key: {"median_ms": statistics.median(t), "min_ms": min(t), "runs": len(t)} for key, t in times.items()}


def finetune(model: nn.Module, args: argparse.Namespace, work: Path, patches: PatchDataset) -> nn.Module:
    """``args.steps`` L1 steps on ``patches`` (one dataset for every run: images decoded once, and the
    same patches in the same order, since a patch depends only on (seed, epoch, index))."""
    config = TrainConfig(steps=args.steps, lr=args.lr, schedule="cosine", checkpoint_every=None, seed=args.seed,
                         log_every=max(1, args.steps // 10))
    data = DataConfig(train=TRAIN_SETS, eval=EVAL_SETS, patch=args.patch, batch=args.batch)
    shutil.rmtree(work, ignore_errors=True)
    return fit(model, config, data, SCALE, work_dir=work, stage_name="prune benchmark fine-tune", progress=False,
               resume=False, seed=args.seed, dataset=patches).model


# ------------------------------------------------------------------------------------ the runs


def prune_copy(base: nn.Module, hints: Any, importance: str, ratio: float, seed: int) -> tuple[nn.Module, float]:
    model = copy.deepcopy(base)
    torch.manual_seed(seed)
    start = time.perf_counter()
    result = prune_model(model, PruneConfig(importance=importance, ratio=ratio), hints=hints)
    if result.skipped or result.limited:
        raise RuntimeError(f"{importance} {ratio}: groups skipped or limited: {result.skipped} {result.limited}")
    return model, time.perf_counter() - start


def main() -> None:
    args = arguments()
    if args.render:
        render_only(args.out)
        return
    torch.set_num_threads(args.threads)
    started = time.time()
    load_start = os.getloadavg()
    registry = default_registry()
    base = build_model(MODEL, registry=registry).eval()
    hints = registry.get_model("f2srgan").hints(base)
    work = Path(tempfile.mkdtemp(prefix="prune_bench_"))

    print("architectures and costs", flush=True)
    archs: dict[str, nn.Module] = {"unpruned": base}
    by_signature = {signature(base): "unpruned"}
    for ratio in args.ratios:
        model, _seconds = prune_copy(base, hints, args.importances[0], ratio, args.seed)
        key = f"inner x{1 - ratio:g}"
        archs[key] = model
        by_signature[signature(model)] = key
    costs = {key: {"params": count_params(m)[0], "macs": count_macs(m, LR_SIZE), "inner": inner_width(m)}
             for key, m in archs.items()}
    print("latency", flush=True)
    timing = latencies(archs, args.threads, args.runs, args.rounds)
    for key in archs:
        costs[key].update(timing[key])

    rows: list[dict[str, Any]] = []
    patches = PatchDataset(TRAIN_SETS, SCALE, args.patch, seed=args.seed)
    print("unpruned", flush=True)
    before = quality(base, args.limit)
    control = finetune(copy.deepcopy(base), args, work / "control", patches)
    rows.append({"importance": "-", "ratio": 0.0, "arch": "unpruned", "pruned": before,
                 "finetuned": quality(control, args.limit), "prune_s": 0.0})
    for ratio in args.ratios:
        for importance in args.importances:
            print(f"{importance} ratio {ratio}", flush=True)
            model, seconds = prune_copy(base, hints, importance, ratio, args.seed)
            arch = by_signature.get(signature(model))
            if arch is None:
                raise RuntimeError(f"{importance} {ratio}: widths differ from the per-ratio architecture")
            pruned = quality(model, args.limit)
            tuned = finetune(model, args, work / f"{importance}_{ratio}", patches)
            rows.append({"importance": importance, "ratio": ratio, "arch": arch, "pruned": pruned,
                         "finetuned": quality(tuned, args.limit), "prune_s": seconds})
            print(f"  {pruned} -> {rows[-1]['finetuned']}", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    elapsed = time.time() - started
    write(args, costs, rows, elapsed, load_start, os.getloadavg())


# ------------------------------------------------------------------------------------ report


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


_SETTINGS = ("importances", "ratios", "steps", "batch", "patch", "lr", "threads", "runs", "rounds", "limit", "seed")


def write(args: argparse.Namespace, costs: dict[str, dict[str, Any]], rows: list[dict[str, Any]], elapsed: float,
          load_start: tuple[float, ...], load_end: tuple[float, ...]) -> None:
    """Write the Markdown report and, beside it, the raw numbers as JSON (``--render`` redraws from it)."""
    import onnxruntime

    raw = {
        "settings": {name: getattr(args, name) for name in _SETTINGS},
        "costs": costs, "rows": rows, "elapsed_s": elapsed, "load": [load_start[0], load_end[0]],
        "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__}, "cpu": _cpu(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(raw, indent=1))
    text = render(raw, args.out)
    args.out.write_text(text)
    print(text)


def _best(rows: list[dict[str, Any]], ratio: float, stage: str) -> str:
    scored = [(sum(r[stage].values()) / len(r[stage]), r["importance"]) for r in rows if r["ratio"] == ratio]
    top = max(score for score, _name in scored)
    return "/".join(name for score, name in scored if score >= top - 0.005)


def render(raw: dict[str, Any], out: Path) -> str:
    """The Markdown report of one run's raw numbers."""
    settings, costs, rows = raw["settings"], raw["costs"], raw["rows"]
    base = costs["unpruned"]
    lines = [
        "| importance | ratio | inner width | params | GMACs | ORT latency ms (x unpruned) | Set5 pruned | "
        "Set14 pruned | Set5 fine-tuned | Set14 fine-tuned |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        cost = costs[row["arch"]]
        label = "unpruned (control: same fine-tune)" if row["arch"] == "unpruned" else row["importance"]
        lines.append(
            f"| {label} | {row['ratio']:g} | {cost['inner']} | {cost['params']:,} | {cost['macs'] / 1e9:.2f} | "
            f"{cost['median_ms']:.0f} ({cost['median_ms'] / base['median_ms']:.2f}x) | "
            f"{row['pruned']['Set5']:.2f} | {row['pruned']['Set14']:.2f} | "
            f"{row['finetuned']['Set5']:.2f} | {row['finetuned']['Set14']:.2f} |"
        )
    ratios = sorted({r["ratio"] for r in rows if r["arch"] != "unpruned"})
    best = "; ".join(f"{r:g}: {_best(rows, r, 'pruned')} -> {_best(rows, r, 'finetuned')}" for r in ratios)
    speed = "; ".join(
        f"{1 - c['inner'] / base['inner']:g}: {c['macs'] / base['macs']:.2f} -> {c['median_ms'] / base['median_ms']:.2f}"
        for key, c in costs.items() if key != "unpruned"
    )
    out_name = out.relative_to(ROOT) if out.is_relative_to(ROOT) else out
    command = (
        ".venv/bin/python benchmarks/prune_f2srgan.py"
        f" --importances {' '.join(settings['importances'])} --ratios {' '.join(f'{r:g}' for r in settings['ratios'])}"
        f" --steps {settings['steps']} --batch {settings['batch']} --patch {settings['patch']} --lr {settings['lr']:g}"
        f" --threads {settings['threads']} --runs {settings['runs']} --rounds {settings['rounds']}"
        + (f" --limit {settings['limit']}" if settings["limit"] else "") + f" --out {out_name}"
    )
    load_start, load_end = raw["load"]
    return f"""## Pruning F2SRGAN x4: importance x ratio of the residual inner width

Published F2SRGAN x4 (`F2SRGAN_4x.pt`), `prune` stage with `scope: per_layer`, `prune_trunk: false`:
each residual block's inner width 64 loses the ratio (FFC blocks: the same share of their local and
global halves); trunk, upsampler and Fourier-unit widths are unchanged. Quality: PSNR-Y on Set5 /
Set14 x4 (`srcompress.measure.evaluate`: MATLAB-bicubic 8-bit LR, shave 4), right after pruning and
after a fixed fine-tune of **{settings['steps']} steps** (batch {settings['batch']}, HR patches {settings['patch']}, T91+BSD200, L1,
AdamW lr {settings['lr']:g} with cosine decay, seed {settings['seed']}; the same patches in the same order for every
row). Latency: ONNX Runtime {raw['versions']['onnxruntime']} CPU provider, {settings['threads']} threads, one 320x180 LR image
(1280x720 SR), the `onnx` backend's graph (FFT-free Fourier units, exact SR rewrites); median of
{settings['rounds']} interleaved rounds x {settings['runs']} runs per model. MACs at 320x180 LR (`count_macs`: convolutions,
matmuls, FFTs).

{chr(10).join(lines)}

Reading it:
- With `scope: per_layer` the widths (so params, MACs, latency) depend only on the ratio; the
  criteria differ in which channels go, i.e. in the quality columns.
- `lamp` and `group_norm` rows are identical by construction: LAMP's normalisation is monotone
  within a group, so ranking each group on its own (`per_layer`) removes the same channels as the
  group L2 norm; LAMP only changes the result with `scope: global`.
- Best criterion per ratio (mean of Set5 and Set14 PSNR, right after pruning -> after fine-tuning):
  {best}.
- MACs -> ORT latency, x unpruned: {speed}. Inner-width pruning leaves the trunk and the
  upsampler (PixelShuffle and PReLU at high resolution, a large share of ONNX Runtime's time per
  FACTS.md) as they are.
- The published weights are GAN-trained (perceptual); an L1 fine-tune raises PSNR by itself, which
  the control row (the unpruned model fine-tuned with the same budget) measures. Compare pruned rows
  with the control, and remember PSNR is not perceptual quality (FACTS.md: L1 training makes
  F2SRGAN-like nets blurry; recover textures with the distill/GAN losses of the training core).
- Timings come from a shared 2-core machine (load average {load_start:.1f} at the start, {load_end:.1f} at the
  end); compare the ratios within this run, not absolute milliseconds across runs.

Made with: `{command}`
({raw['cpu']}, torch {raw['versions']['torch']}, {settings['threads']} threads, wall time {raw['elapsed_s'] / 60:.1f} min;
raw numbers in `{Path(str(out_name)).with_suffix('.json')}`, redraw with `--render`).
"""


def render_only(path: Path) -> None:
    raw = json.loads(path.with_suffix(".json").read_text())
    text = render(raw, path)
    path.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
