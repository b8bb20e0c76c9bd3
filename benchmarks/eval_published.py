"""Evaluate the published F2SRGAN-family checkpoints and compare with the reference numbers.

Usage (from the repository root, data and weights in ../shared)::

    SRCOMPRESS_DATA=../shared/data SRCOMPRESS_WEIGHTS=../shared/weights \\
        .venv/bin/python benchmarks/eval_published.py --out docs/benchmarks_models.md

Protocol: ``srcompress.measure.evaluate`` (HR modcropped, MATLAB-bicubic 8-bit LR, SR clamped and
rounded to 8 bits, PSNR/SSIM on Y, shave = scale). The reference column is the independent
implementation quoted in issue 4; a row fails when PSNR is off by more than 0.02 dB.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

import srcompress.plugins.models.f2srgan as f2
from srcompress.measure.evaluate import evaluate
from srcompress.weights import build_pretrained

ROWS = [  # (model, scale, label)
    ("f2srgan", 4, "F2SRGAN x4 (F2SRGAN_4x.pt)"),
    ("f2srgan", 2, "F2SRGAN x2 (F2SRGAN_2x.pt)"),
    ("f2srgan_student", 4, "KD student, released forward (F2SRGAN_4x_student.pt)"),
    ("light_f2srgan", 4, "Light F2SRGAN, released forward, fp32 (LightF2SRGAN_x4.pt)"),
]
REFERENCE = {
    ("f2srgan", 4): {"Set5": (28.0640, 0.79959), "Set14": (25.8922, 0.70374)},
    ("f2srgan", 2): {"Set5": (34.7302, 0.93997), "Set14": (31.2297, 0.89027)},
    ("f2srgan_student", 4): {"Set5": (27.5872, 0.78804), "Set14": (25.5688, 0.70050)},
    ("light_f2srgan", 4): {"Set5": (26.6852, 0.75904), "Set14": (24.7362, 0.67109)},
}
TOLERANCE_DB = 0.02


def _params(model: torch.nn.Module) -> tuple[int, int]:
    """(parameters in the module, parameters the forward pass uses minus the 24 frozen mean-shift ones)."""
    total = sum(p.numel() for p in model.parameters())
    used_blocks = set(getattr(model, "block_order", range(len(model.body))))
    dead = sum(p.numel() for i, block in enumerate(model.body) if i not in used_blocks for p in block.parameters())
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    return total, total - dead - frozen


def run(datasets: list[str]) -> tuple[list[str], bool]:
    entries = {e.name: e for e in f2.srcompress_models()}
    header = "| model | params (file) | params used | " + " | ".join(f"{d} PSNR / SSIM (ref.) | Δ dB" for d in datasets) + " |"
    lines = [header, "|" + "---|" * (3 + 2 * len(datasets))]
    ok = True
    for name, scale, label in ROWS:
        model = build_pretrained(entries[name], scale, "official")
        total, used = _params(model)
        start = time.perf_counter()
        result = evaluate(model, datasets, scale)
        cells = [f"`{name}` x{scale}: {label}", f"{total:,}", f"{used:,}"]
        for dataset in datasets:
            psnr, ssim = result.mean(dataset, "psnr"), result.mean(dataset, "ssim")
            ref_psnr, ref_ssim = REFERENCE[(name, scale)][dataset]
            delta = psnr - ref_psnr
            ok &= abs(delta) <= TOLERANCE_DB
            cells += [f"{psnr:.4f} / {ssim:.5f} ({ref_psnr:.4f} / {ref_ssim:.5f})", f"{delta:+.4f}"]
        lines.append("| " + " | ".join(cells) + " |")
        print(lines[-1], f"[{time.perf_counter() - start:.0f} s]", flush=True)
    return lines, ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["Set5", "Set14"], choices=["Set5", "Set14"])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--out", type=Path, help="write the Markdown section here (e.g. docs/benchmarks_models.md)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    lines, ok = run(args.datasets)
    section = [
        "## Published F2SRGAN-family checkpoints",
        "",
        "Evaluated with `srcompress.measure.evaluate` (HR modcropped to the scale, MATLAB-bicubic 8-bit LR,",
        "SR clamped and rounded to 8 bits, PSNR/SSIM on Y (BT.601), shave = scale). Reference: the independent",
        f"implementation quoted in issue 4; every PSNR must be within {TOLERANCE_DB} dB of it. \"params used\"",
        "leaves out the 24 frozen mean-shift parameters and the blocks the released students never run.",
        "",
        *lines,
        "",
        f"Made with: `SRCOMPRESS_DATA=../shared/data SRCOMPRESS_WEIGHTS=../shared/weights .venv/bin/python "
        f"benchmarks/eval_published.py --threads {args.threads} --out docs/benchmarks_models.md` "
        f"(torch {torch.__version__}, {platform.machine()}, CPU, {args.threads} threads, "
        f"{time.perf_counter() - start:.0f} s; the tests in `tests/test_f2srgan_published.py` assert the same numbers).",
        "",
    ]
    text = "\n".join(section)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print("all within tolerance" if ok else f"MISMATCH: some PSNR differs by more than {TOLERANCE_DB} dB")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
