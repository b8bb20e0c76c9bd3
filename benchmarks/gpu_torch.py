"""GPU latency of the issue-10 models on the ``torch`` backend: fp32, fp16, bf16, channels_last, torch.compile.

TensorRT is not installable on this project's machines, so this is the GPU deployment that can be
measured here: the torch backend on a CUDA device (eager, or ``torch.compile`` with Inductor). Each
model is timed side by side over all its configurations in interleaved rounds
(``srcompress.deploy.bench_backends``, CUDA-synchronised), and every configuration is checked
against the model in fp32 on the CPU (max |diff| on the [0, 1] scale).

Models: the published F2SRGAN x4, the released KD student, the released Light F2SRGAN and, with
``--run``, the last float stage of a ``recipes/light_f2srgan.yaml`` run (our Light F2SRGAN).

Usage (repository root; weights in ../shared or ``SRCOMPRESS_WEIGHTS``)::

    .venv/bin/python benchmarks/gpu_torch.py --run runs/light_f2srgan --sizes 180x320 540x960 \\
        --runs 30 --compile --out docs/benchmarks_gpu.md
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch
from torch import nn

from srcompress.paths import use_local_copies

ROOT = Path(__file__).resolve().parents[1]
use_local_copies(ROOT.parent / "shared")

from srcompress.checkpoint import load_stage_model  # noqa: E402
from srcompress.deploy import BenchRow, bench_backends, find_export_forms, format_table, package_versions, parse_lr_size  # noqa: E402
from srcompress.measure import count_macs, write_section  # noqa: E402
from srcompress.models import build_model  # noqa: E402
from srcompress.recipe_types import ModelRef  # noqa: E402
from srcompress.registry import default_registry  # noqa: E402
from srcompress.rundir import stage_folders  # noqa: E402

ANCHORS = (("f2srgan", "F2SRGAN x4"), ("f2srgan_student", "released KD student"), ("light_f2srgan", "released Light F2SRGAN"))


def configurations(model: nn.Module, device: str, *, compile_mode: str | None) -> list[tuple]:
    """(backend, options, label) rows for one model; the first (fp32 eager) is the speed-up baseline."""
    base = {"device": device}
    rows = [("torch", {**base, "precision": "fp32"}, "fp32")]
    if find_export_forms(model):  # Fourier units: torch.fft (cuFFT) vs the FFT-free matmul form
        rows.append(("torch", {**base, "precision": "fp32", "fft": "fft_free"}, "fp32, FFT-free"))
    rows += [
        ("torch", {**base, "precision": "fp16"}, "fp16"),
        ("torch", {**base, "precision": "bf16"}, "bf16"),
        ("torch", {**base, "precision": "fp16", "channels_last": True}, "fp16, channels_last"),
    ]
    if compile_mode is not None:
        compiled = {**base, "precision": "fp16", "channels_last": True, "compile": True, "compile_mode": compile_mode}
        rows.append(("torch", compiled, f"fp16, channels_last, torch.compile ({compile_mode})"))
    return rows


def last_float_stage(run_dir: Path) -> Path:
    """The last ``stage-XX-*`` folder of a run with a float ``model.pt`` (the INT8 stage is a .pt2 graph)."""
    folders = stage_folders(run_dir, ("model.pt",))
    if not folders:
        raise SystemExit(f"{run_dir}: no finished float stage (stage-XX-<type>/model.pt); run the recipe first")
    return folders[-1]


def models(run_dir: Path | None, registry: object) -> list[tuple[str, nn.Module]]:
    """Released Light F2SRGAN, ours (with ``run_dir``), the released student, F2SRGAN: cheapest first."""
    anchors = [(label, build_model(ModelRef(name=name, scale=4, weights="official"), registry=registry)) for name, label in ANCHORS]
    ours = []
    if run_dir is not None:
        stage = last_float_stage(run_dir)
        ours = [(f"ours ({stage.name})", load_stage_model(stage, registry=registry))]
    found = [anchors[2], *ours, anchors[1], anchors[0]]
    return [(label, model.eval().requires_grad_(False)) for label, model in found]


def _device_line(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(torch.device(device))
        return f"{props.name} ({props.total_memory / 2**30:.0f} GiB, {props.multi_processor_count} SMs), CUDA {torch.version.cuda}"
    return f"CPU: {platform.processor() or platform.machine()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=None, help="a light_f2srgan run directory (adds its last float stage)")
    parser.add_argument("--sizes", nargs="+", type=parse_lr_size, default=[(180, 320)], help="LR sizes HxW (the first compiles)")
    parser.add_argument("--runs", type=int, default=50, help="timed rounds per configuration and size")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls per configuration and size")
    parser.add_argument("--device", default="cuda", help="'cuda', 'cuda:N' (or 'cpu' to try the script without a GPU)")
    parser.add_argument("--compile", nargs="?", const="reduce-overhead", default=None, metavar="MODE",
                        help="add a torch.compile row (mode reduce-overhead when none is given: Inductor kernels replayed as CUDA graphs)")
    parser.add_argument("--skip-compile", nargs="+", default=[], metavar="LABEL",
                        help="models (labels as in the page, e.g. 'F2SRGAN x4') to time without the torch.compile row")
    parser.add_argument("--out", type=Path, default=None, help="write the Markdown page here")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: torch sees no CUDA GPU; run this on a machine with one (or --device cpu)")
    registry = default_registry()
    start = time.perf_counter()
    sections = []
    found = models(args.run, registry)
    for label, model in found:
        t0 = time.perf_counter()
        configs = configurations(model, args.device, compile_mode=None if label in args.skip_compile else args.compile)
        rows = bench_backends(model, configs, args.sizes, runs=args.runs, warmup=args.warmup, registry=registry)
        gmacs = count_macs(model, args.sizes[0], 4) / 1e9
        sections.append((label, gmacs, rows))
        print(f"## {label} ({gmacs:.2f} GMACs at {args.sizes[0][0]}x{args.sizes[0][1]}; {time.perf_counter() - t0:.0f} s)\n{format_table(rows)}\n", flush=True)
        if args.out is not None:  # after each model, so a run cut short still leaves its page
            page = render(args, sections, time.perf_counter() - start, expected=len(found))
            write_section(args.out, page, marker=PAGE_MARKER, title=PAGE_TITLE)
    print(f"wrote {args.out}" if args.out else "done")
    return 0


def summary_lines(sections: list[tuple[str, float, list[BenchRow]]]) -> list[str]:
    """Best configuration per model and size, and its speed against the released Light F2SRGAN's best."""
    lines = ["| model | GMACs | LR (H x W) | best configuration | median ms | vs released Light F2SRGAN (best vs best) |",
             "|---|---:|---|---|---:|---:|"]
    best = []  # (label, GMACs, fastest row) per model and size, in the sections' order
    for label, gmacs, rows in sections:
        for size in dict.fromkeys(r.lr_size for r in rows):
            best.append((label, gmacs, min((r for r in rows if r.lr_size == size), key=lambda r: r.median_ms)))
    light = {row.lr_size: row.median_ms for label, _, row in best if label == ANCHORS[2][1]}
    for label, gmacs, row in best:
        (h, w), ratio = row.lr_size, f"{row.median_ms / light[row.lr_size]:.2f}x" if row.lr_size in light else "-"
        lines.append(f"| {label} | {gmacs:.2f} | {h} x {w} | {row.label} | {row.median_ms:.2f} | {ratio} |")
    return lines


#: The generated part of the page sits between these markers; what is written by hand outside them stays.
PAGE_MARKER = "gpu-torch-bench"
PAGE_TITLE = "# GPU latency on the torch backend (issue 10's models)"


def render(args: argparse.Namespace, sections: list[tuple[str, float, list[BenchRow]]], total_s: float, *, expected: int) -> str:
    """The page's generated section; until all ``expected`` models are measured it says it is partial."""
    sizes = " ".join(f"{h}x{w}" for h, w in args.sizes)
    compile_flag = f" --compile {args.compile}" if args.compile else ""
    compile_flag += "".join(f" --skip-compile '{label}'" for label in args.skip_compile)
    run_flag = f" --run {args.run}" if args.run else ""
    versions = ", ".join(f"{k} {v}" for k, v in package_versions().items())
    body = []
    for label, gmacs, rows in sections:
        body += [f"### {label} ({gmacs:.2f} GMACs per {args.sizes[0][0]} x {args.sizes[0][1]} LR image)", "", format_table(rows), ""]
    return "\n".join([
        "Command (repository root):",
        "",
        "```",
        f".venv/bin/python benchmarks/gpu_torch.py{run_flag} --sizes {sizes} --runs {args.runs} --warmup {args.warmup}{compile_flag} --out {args.out}",
        "```",
        "",
        f"Device: {_device_line(args.device)}. Versions: {versions}. Whole run {total_s / 60:.1f} min."
        + (f" **Partial: {len(sections)} of {expected} models measured (the run did not finish).**" if len(sections) < expected else ""),
        f"Per model, all configurations timed in the same interleaved rounds ({args.runs} timed calls each after "
        f"{args.warmup} warm-up calls, CUDA-synchronised around each call, input (1, 3, H, W) uniform noise placed "
        "on the GPU before timing, the SR image left there: no host copies in the time). "
        "speed-up: the model's fp32 eager median over this row's; max abs err: against the same model in fp32 on "
        "the CPU ([0, 1] scale). Not measured: TensorRT (not installable on this project's machines) and ONNX "
        "Runtime's CUDA provider (the GPU machine has the CPU build of onnxruntime only).",
        "",
        "Best configuration per model:",
        "",
        *summary_lines(sections),
        "",
        *body,
    ])


if __name__ == "__main__":
    sys.exit(main())
