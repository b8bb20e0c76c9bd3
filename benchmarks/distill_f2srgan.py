"""Benchmark: distil published F2SRGAN x4 into its 8-block, no-FFC student with several loss mixes.

Variants (same steps, data order, LR and initialisation): ``output`` (L1 to the teacher's image),
``output+at`` (plus activation attention transfer), ``output+afd`` (plus attention-based feature
distillation), and two adversarial ones against an F2SRGAN-style discriminator trained from
scratch: GAN from step 0, and GAN added for the last ``--gan-steps`` steps (a second distill
stage continuing from the first). Reported per variant on Set5 and Set14 (x4, MATLAB-bicubic LR):
PSNR-Y / SSIM-Y to HR, NIQE (Y, shave 4; lower is better) and PSNR-Y to the teacher's output.

The student is initialised from the teacher itself: MeanShift, head, upsampler and tail, and body
block i <- teacher block 2i+1 (the teacher's 8 blocks without FFC), so every variant starts from
the same point (the ``init`` row); the released KD student's weights are not used.

Results are cached in ``--work``/results.json (a variant already there is not rerun; ``--fresh``
starts over). Command of docs/benchmarks_distill.md (about 35 minutes on 2 shared CPU cores)::

    .venv/bin/python benchmarks/distill_f2srgan.py --steps 250 --gan-weight 0.02 --gan-steps 100 --fresh
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from srcompress.paths import use_local_copies  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
use_local_copies(ROOT.parent / "shared")

from srcompress import ModelEntry, default_registry, hookimpl  # noqa: E402
from srcompress.context import StageContext  # noqa: E402
from srcompress.data import bicubic_downscale, modcrop, resolve_dataset  # noqa: E402
from srcompress.measure import psnr, write_section  # noqa: E402
from srcompress.models import build_model  # noqa: E402
from srcompress.plugins.models.f2srgan import DiscriminatorOptions, F2SRGANDiscriminator, F2SRGANOptions  # noqa: E402
from srcompress.plugins.techniques.distill import (  # noqa: E402
    AFDConfig,
    ATConfig,
    DistillConfig,
    FrequencyConfig,
    OutputConfig,
    apply,
)
from srcompress.recipe_types import DataConfig, ModelRef  # noqa: E402
from srcompress.training import GANConfig, LossTerm  # noqa: E402

SCALE = 4
EVAL_SETS = ("Set5", "Set14")
TEACHER = ModelRef(name="f2srgan", scale=SCALE, weights="official")
STUDENT = ModelRef(name="f2srgan", scale=SCALE, options=F2SRGANOptions(blocks=8, ffc_blocks=()))


def init_student(teacher: nn.Module) -> nn.Module:
    """The 8-block student with the teacher's non-FFC blocks (1, 3, ..., 15), head, upsampler, tail."""
    student = build_model(STUDENT)
    state = teacher.state_dict()
    mapped = {}
    for key in student.state_dict():
        if key.startswith("body."):
            _, index, rest = key.split(".", 2)
            mapped[key] = state[f"body.{2 * int(index) + 1}.{rest}"]
        else:
            mapped[key] = state[key]
    student.load_state_dict(mapped)
    return student


Phase = tuple[tuple[LossTerm, ...], int]


def variants(args: argparse.Namespace) -> dict[str, list[Phase]]:
    """Each variant: distill stages run one after the other (the GAN one continues from the first)."""
    output = LossTerm(kind="output", weight=1.0, options=OutputConfig(distance="l1"))
    at = LossTerm(kind="at", weight=args.at_weight, options=ATConfig(p=2.0))
    afd = LossTerm(kind="afd", weight=args.afd_weight, options=AFDConfig(qk_dim=128))

    amplitude = LossTerm(kind="frequency", weight=args.amplitude_weight, options=FrequencyConfig(mode="amplitude"))
    focal = LossTerm(kind="frequency", weight=args.focal_weight, options=FrequencyConfig(mode="focal", alpha=1.0))

    def gan(weight: float) -> LossTerm:
        return LossTerm(kind="gan", weight=weight, options=GANConfig(flavor="relativistic_paired"))

    late = args.steps - args.gan_steps
    return {
        "output": [((output,), args.steps)],
        "output+at": [((output, at), args.steps)],
        "output+afd": [((output, afd), args.steps)],
        f"output+afd+gan ({args.early_gan_weight:g}, from step 0)": [((output, afd, gan(args.early_gan_weight)), args.steps)],
        f"output+afd, then +gan ({args.gan_weight:g}, last {args.gan_steps} steps)": [
            ((output, afd), late), ((output, afd, gan(args.gan_weight)), args.gan_steps)],
        f"output+amplitude ({args.amplitude_weight:g})": [((output, amplitude), args.steps)],
        f"output+at+amplitude ({args.amplitude_weight:g})": [((output, at, amplitude), args.steps)],
        f"output+focal ({args.focal_weight:g})": [((output, focal), args.steps)],
    }


class _DiscriminatorPlugin:
    """Exposes :class:`F2SRGANDiscriminator` as a model while the f2srgan plugin does not register one."""

    def __init__(self, name: str) -> None:
        self.name = name

    @hookimpl
    def srcompress_models(self) -> list[ModelEntry]:
        return [ModelEntry(name=self.name, build=lambda _scale, options: F2SRGANDiscriminator(options),
                           scales=(2, 3, 4, 8), options_cls=DiscriminatorOptions,
                           description="F2SRGAN discriminator (registered by the distill benchmark)")]


def discriminator(args: argparse.Namespace) -> ModelRef:
    """The F2SRGAN discriminator (narrower than published, to fit the CPU budget), trained from scratch."""
    registry = default_registry()
    if args.discriminator not in {m.name for m in registry.list_models()}:
        registry.register(_DiscriminatorPlugin(args.discriminator), "distill-benchmark-discriminator")
    entry = registry.get_model(args.discriminator)
    options = entry.options_cls(features=tuple(args.disc_features), hidden=args.disc_hidden)
    return ModelRef(name=args.discriminator, scale=SCALE, options=options)


class Scorer:
    """PSNR/SSIM to HR, NIQE, and PSNR to the teacher's output, on the eval sets (teacher outputs cached)."""

    def __init__(self, teacher: nn.Module, limit: int | None) -> None:
        registry = default_registry()
        self.metrics = {name: registry.get_metric(name) for name in ("psnr", "ssim", "niqe")}
        self.images: dict[str, list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = {}
        teacher.eval()
        for name in EVAL_SETS:
            dataset = resolve_dataset(name)
            count = len(dataset) if limit is None else min(limit, len(dataset))
            items = []
            for index in range(count):
                hr = modcrop(dataset[index][1], SCALE)
                lr = bicubic_downscale(hr, SCALE)
                with torch.no_grad():
                    teacher_sr = teacher(lr.unsqueeze(0)).clamp(0, 1)
                items.append((lr, hr.unsqueeze(0), teacher_sr))
            self.images[name] = items

    def score(self, model: nn.Module) -> dict[str, dict[str, float]]:
        model.eval()
        out: dict[str, dict[str, float]] = {}
        for name, items in self.images.items():
            sums = {"psnr": 0.0, "ssim": 0.0, "niqe": 0.0, "psnr_teacher": 0.0}
            for lr, hr, teacher_sr in items:
                with torch.no_grad():
                    sr = model(lr.unsqueeze(0)).clamp(0, 1)
                for metric, entry in self.metrics.items():
                    sums[metric] += float(entry.compute(sr, hr, SCALE))
                sums["psnr_teacher"] += psnr(sr, teacher_sr, crop=SCALE)
            out[name] = {k: v / len(items) for k, v in sums.items()}
        return out


def _row(label: str, scores: dict[str, dict[str, float]], extra: str) -> str:
    cells = []
    for name in EVAL_SETS:
        s = scores[name]
        to_teacher = "-" if s["psnr_teacher"] == float("inf") else f"{s['psnr_teacher']:.2f}"
        cells += [f"{s['psnr']:.2f} / {s['ssim']:.4f}", f"{s['niqe']:.3f}", to_teacher]
    return f"| {label} | " + " | ".join(cells) + f" | {extra} |"


PAGE_MARKER = "distill-table"
PAGE_TITLE = "# Distillation benchmark: F2SRGAN x4 -> 8-block student without FFC"


def distill_section(results: dict[str, Any], args: argparse.Namespace, command: str) -> str:
    """The generated part of docs/benchmarks_distill.md: command, settings and one row per variant."""
    head = "| model | " + " | ".join(f"{s} PSNR / SSIM | {s} NIQE | {s} PSNR to teacher" for s in EVAL_SETS) + " | training |"
    rule = "|" + "---|" * (2 + 3 * len(EVAL_SETS))
    rows = [_row(label, entry["scores"], entry.get("note", "")) for label, entry in results.items()]
    return "\n".join([
        f"Command: `{command}`",
        "",
        f"Settings: {args.steps} steps, batch {args.batch}, HR patch {args.patch}, AdamW lr {args.lr:g}, "
        f"train sets T91+BSD200, seed 0, torch threads {args.threads}. Weights: output 1, at {args.at_weight:g}, "
        f"afd {args.afd_weight:g}, gan as labelled (relativistic_paired; discriminator "
        f"{args.discriminator} features {args.disc_features}, hidden {args.disc_hidden}, trained from scratch).",
        "",
        head,
        rule,
        *rows,
    ])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--patch", type=int, default=48)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--at-weight", type=float, default=100.0)
    parser.add_argument("--afd-weight", type=float, default=200.0)
    parser.add_argument("--amplitude-weight", type=float, default=2.0,
                        help="Weight of the amplitude-spectrum term (frequency loss, mode amplitude).")
    parser.add_argument("--focal-weight", type=float, default=50.0,
                        help="Weight of the focal frequency term (frequency loss, mode focal).")
    parser.add_argument("--gan-weight", type=float, default=0.01, help="GAN weight of the late-GAN variant.")
    parser.add_argument("--gan-steps", type=int, default=100, help="Last steps of the late-GAN variant that add the GAN term.")
    parser.add_argument("--early-gan-weight", type=float, default=0.1, help="GAN weight of the GAN-from-step-0 variant.")
    parser.add_argument("--discriminator", default="f2srgan_discriminator")
    parser.add_argument("--disc-features", type=int, nargs="+", default=[32, 32, 64, 64, 128, 128, 256, 256])
    parser.add_argument("--disc-hidden", type=int, default=256)
    parser.add_argument("--only", nargs="*", default=None, help="Run only these variants.")
    parser.add_argument("--eval-limit", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a loaded machine).")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench_distill")
    parser.add_argument("--fresh", action="store_true", help="Delete the work folder first (no resume).")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks_distill.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    command = ".venv/bin/python benchmarks/distill_f2srgan.py " + " ".join(sys.argv[1:])
    if args.fresh and args.work.exists():
        shutil.rmtree(args.work)
    args.work.mkdir(parents=True, exist_ok=True)
    results_file = args.work / "results.json"
    results: dict[str, Any] = json.loads(results_file.read_text()) if results_file.is_file() else {}

    torch.manual_seed(0)
    teacher = build_model(TEACHER)
    scorer = Scorer(teacher, args.eval_limit)
    baselines = {
        "bicubic": (lambda: build_model(ModelRef(name="bicubic", scale=SCALE)), "none"),
        "F2SRGAN x4 (teacher)": (lambda: teacher, "published"),
        "init (student, untrained)": (lambda: init_student(teacher), "teacher's non-FFC blocks"),
    }
    for label, (make, note) in baselines.items():
        if label not in results:
            results[label] = {"scores": scorer.score(make()), "note": note}
            results_file.write_text(json.dumps(results, indent=2))
        print(label, json.dumps(results[label]["scores"]), flush=True)

    data = DataConfig(train=("T91", "BSD200"), eval=EVAL_SETS, patch=args.patch, batch=args.batch)
    for name, phases in variants(args).items():
        if (args.only is not None and name not in args.only) or name in results:
            continue
        start = time.perf_counter()
        student, notes = init_student(teacher), []
        for index, (losses, steps) in enumerate(phases):
            disc = discriminator(args) if any(term.kind == "gan" for term in losses) else None
            config = DistillConfig(teacher=TEACHER, losses=losses, discriminator=disc, steps=steps, lr=args.lr,
                                   num_taps=4, checkpoint_every=25, log_every=10)
            folder = "".join(c if c.isalnum() else "_" for c in name) + f"_{index}"
            ctx = StageContext(index=index, stage_name=f"distill-{folder}", scale=SCALE, data=data,
                               work_dir=args.work / folder, registry=default_registry(), quiet=True)
            student = apply(student, config, ctx)
            notes += ctx.notes
        seconds = time.perf_counter() - start
        scores = scorer.score(student)
        results[name] = {"scores": scores, "note": f"{args.steps} steps, {seconds / 60:.1f} min", "notes": notes}
        results_file.write_text(json.dumps(results, indent=2))
        print(name, f"{seconds:.0f}s", json.dumps(scores), notes, flush=True)
    write_section(args.out, distill_section(results, args, command), marker=PAGE_MARKER, title=PAGE_TITLE)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
