"""Deploy the published F2SRGAN x4 to torch and ONNX Runtime and time every variant side by side.

Usage (from the repository root, weights in ../shared)::

    SRCOMPRESS_WEIGHTS=../shared/weights .venv/bin/python benchmarks/deploy_f2srgan.py \\
        --sizes 128x128 180x320 --runs 3 --threads 2 --out docs/benchmarks_deploy.md

Rows: torch eager (torch.fft, and the FFT-free export forms), ONNX Runtime with the Fourier units
exported as ONNX ``DFT`` ("DFT op") or in their FFT-free form, and each exact graph rewrite on its
own. The two ONNX graphs are exported once; every configuration is compiled from them, verified
against the torch model (example, uniform noise and a real photo; max |diff| on the [0, 1] scale),
then timed in interleaved rounds (``srcompress.deploy.bench_backends``). Sizes are LR H x W.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from srcompress.backends.onnx import DEFAULT_REWRITES, export_onnx
from srcompress.deploy import apply_export_forms, bench_backends, deploy_model, format_table, package_versions, parse_lr_size
from srcompress.measure import write_section
from srcompress.models import build_model
from srcompress.recipe_types import ModelRef
from srcompress.registry import default_registry

ALL = list(DEFAULT_REWRITES)  # the onnx backend's default, in its order


def configurations(dft_graph: object, free_graph: object, threads: int) -> list[tuple]:
    """(backend, options, label[, source]) rows, the first being the baseline of the speed-up column."""
    ort = {"provider": "cpu", "threads": threads, "spin": False}  # sessions share the process (see the page)
    return [
        ("torch", {"device": "cpu"}, "torch eager (torch.fft)"),
        ("torch", {"device": "cpu", "fft": "fft_free"}, "torch eager, FFT-free"),
        ("onnx", {**ort, "rewrites": []}, "ORT, DFT op, no rewrites", dft_graph),
        ("onnx", {**ort, "rewrites": ALL}, "ORT, DFT op + all rewrites", dft_graph),
        ("onnx", {**ort, "rewrites": []}, "ORT, FFT-free, no rewrites", free_graph),
        *[("onnx", {**ort, "rewrites": [name]}, f"ORT, FFT-free + {name}", free_graph) for name in ALL],
        ("onnx", {**ort, "rewrites": ALL}, "ORT, FFT-free + all rewrites (default)", free_graph),
    ]


def ort_qdq(graph: object, *, symmetric: bool, size: tuple[int, int] = (32, 32)) -> object:
    """An INT8 Q/DQ graph made by ONNX Runtime's own quantize_static (per-channel weights, 2 noise calibration inputs).

    Stands in for the quantization plugin's output in the TensorRT pre-flight: the default settings
    (zero points chosen freely, int32 biases) and symmetric int8 with float biases.
    """
    import numpy as np
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            self.batches = iter([{"lr": rng.random((1, 3, *size), dtype=np.float32)} for _ in range(2)])

        def get_next(self) -> dict | None:
            return next(self.batches, None)

    options = {}
    if symmetric:
        options = dict(
            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False},
        )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        onnx.save(graph, f"{tmp}/in.onnx")
        quantize_static(f"{tmp}/in.onnx", f"{tmp}/q.onnx", Reader(), quant_format=QuantFormat.QDQ, per_channel=True, **options)
        return onnx.load(f"{tmp}/q.onnx")


def preflight_lines(graphs: dict[str, object], profile: list[list[int]]) -> list[str]:
    """A Markdown table of pre-flight findings per graph and target, and the error lines."""
    from srcompress.backends.onnx import preflight

    targets = [("tensorrt", "10.13"), ("tensorrt", "11.2"), ("onnxruntime-cuda", None), ("onnxruntime-cpu", None)]
    header = "| graph | " + " | ".join(f"{t}{' ' + v if v else ''}" for t, v in targets) + " |"
    lines, details = [header, "|---|" + "---|" * len(targets)], []
    for label, graph in graphs.items():
        cells = []
        for target, version in targets:
            issues = preflight(graph, target, tensorrt_version=version, profile={"lr": profile})
            errors = sorted({i.op for i in issues if i.severity == "error"})
            warnings = sorted({i.op for i in issues if i.severity == "warning"})
            cells.append("; ".join([f"**error** {', '.join(errors)}"] * bool(errors) + [f"warning {', '.join(warnings)}"] * bool(warnings)) or "ok")
            details += [f"- {label}: {i}" for i in issues if i.severity == "error"]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines + [""] + list(dict.fromkeys(details))


def _machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), platform.processor())
    return f"{cpu}, {os.cpu_count()} logical cores, {platform.system()} {platform.release()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=parse_lr_size, default=[(128, 128), (180, 320)], help="LR sizes HxW")
    parser.add_argument("--runs", type=int, default=3, help="timed rounds per configuration and size")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls per configuration and size")
    parser.add_argument("--threads", type=int, default=2, help="torch and ONNX Runtime intra-op threads")
    parser.add_argument("--verify-size", type=parse_lr_size, default=(64, 64), help="LR size of the verification inputs")
    parser.add_argument("--out", type=Path, default=None, help="write the Markdown report here")
    parser.add_argument(
        "--sequential", action="store_true",
        help="time one configuration at a time (peak memory of one ONNX Runtime session) instead of interleaved rounds",
    )  # fmt: skip
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    registry = default_registry()
    load_before = os.getloadavg()
    start = time.perf_counter()

    model = build_model(ModelRef(name="f2srgan", scale=4, weights="official")).eval().requires_grad_(False)
    example = torch.rand(1, 3, *args.sizes[0], generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    dft_graph = export_onnx(model, example)
    free_graph = export_onnx(apply_export_forms(model), example)
    export_s = time.perf_counter() - t0
    print(f"exported both graphs in {export_s:.0f} s", flush=True)
    configs = configurations(dft_graph, free_graph, args.threads)

    verify_lines = []
    with tempfile.TemporaryDirectory() as tmp:
        small = torch.rand(1, 3, *args.verify_size, generator=torch.Generator().manual_seed(1))
        for i, (backend, options, label, *source) in enumerate(configs):
            _, result = deploy_model(
                model, backend, options, small, Path(tmp), registry, name=f"v{i}", source=source[0] if source else None
            )
            verify_lines.append(f"- {label}: {result.summary()} (inputs: {', '.join(n for n, _ in result.per_input)})")
            print(verify_lines[-1], flush=True)

    graphs = {"DFT op (fp32)": dft_graph, "FFT-free (fp32)": free_graph}
    for label, symmetric in (("FFT-free, ORT quantize_static defaults (INT8 Q/DQ)", False), ("FFT-free, ORT quantize_static symmetric int8, float biases", True)):
        try:
            graphs[label] = ort_qdq(free_graph, symmetric=symmetric)
        except Exception as exc:  # report, don't abort the latency run
            print(f"{label}: quantize_static failed: {exc}", flush=True)
    preflight_table = preflight_lines(graphs, [[1, 3, 32, 32], [1, 3, 180, 320], [1, 3, 720, 1280]])
    print("\n".join(preflight_table), flush=True)

    print(f"verified and pre-flighted after {time.perf_counter() - start:.0f} s; timing", flush=True)
    rows = bench_backends(
        model, configs, args.sizes, threads=args.threads, runs=args.runs, warmup=args.warmup, registry=registry,
        interleave=not args.sequential,
    )  # fmt: skip
    table = format_table(rows)
    print(table, flush=True)
    load_after = os.getloadavg()
    report = _report(args, rows, table, verify_lines, preflight_table, export_s, time.perf_counter() - start, load_before, load_after)
    if args.out is not None:
        write_section(args.out, report, marker=PAGE_MARKER, title=PAGE_TITLE)
        print(f"wrote {args.out}")
    return 0


#: The generated part of the page sits between these markers; what is written by hand outside them stays.
PAGE_MARKER = "deploy-f2srgan-bench"
PAGE_TITLE = "# Deployment benchmark: F2SRGAN x4 (published weights) on torch and ONNX Runtime"


def _ratio_lines(rows: list) -> list[str]:
    lines = []
    for size in dict.fromkeys(r.lr_size for r in rows):
        by_label = {r.label: r.median_ms for r in rows if r.lr_size == size}
        dft = by_label["ORT, DFT op, no rewrites"]
        free = by_label["ORT, FFT-free, no rewrites"]
        best = by_label["ORT, FFT-free + all rewrites (default)"]
        lines.append(
            f"- LR {size[0]} x {size[1]}: FFT-free / DFT op = {free / dft:.3f} (1/{dft / free:.1f}) without rewrites; "
            f"FFT-free + all rewrites / DFT op = {best / dft:.3f} (1/{dft / best:.1f}); "
            f"rewrites alone on the FFT-free graph: {free / best:.2f}x"
        )
    return lines


def _report(args, rows, table, verify_lines, preflight_table, export_s, total_s, load_before, load_after) -> str:
    sizes = " ".join(f"{h}x{w}" for h, w in args.sizes)
    versions = ", ".join(f"{k} {v}" for k, v in package_versions().items())
    return "\n".join(
        [
            "Command (repository root):",
            "",
            "```",
            f"SRCOMPRESS_WEIGHTS=../shared/weights .venv/bin/python benchmarks/deploy_f2srgan.py --sizes {sizes} "
            f"--runs {args.runs} --warmup {args.warmup} --threads {args.threads}{' --sequential' * args.sequential} --out {args.out}",
            "```",
            "",
            f"Machine: {_machine()}; shared with other jobs (load average {load_before[0]:.1f} at the start, "
            f"{load_after[0]:.1f} at the end). {args.threads} threads for torch and ONNX Runtime. Versions: {versions}.",
            f"All rows measured in one process, {'one configuration at a time' if args.sequential else 'interleaved'}: "
            f"{args.runs} timed runs after {args.warmup} warm-up call(s) "
            f"per configuration and size; ONNX Runtime sessions with `spin: false` (a session's spinning threads "
            f"would slow the next one); input (1, 3, H, W) uniform noise. Both ONNX graphs exported once ({export_s:.0f} s); "
            f"whole run {total_s / 60:.1f} min. LR sizes are H x W (320x180 in W x H is the 180 x 320 row).",
            "",
            table,
            "",
            "speed-up: torch eager's median / this row's median at the same size. max abs err: vs the torch "
            "fp32 model (torch.fft) on that input, [0, 1] scale.",
            "",
            "FFT-free vs DFT-op export in ONNX Runtime (target: FFT-free at most 1/6 of DFT op at 180 x 320):",
            "",
            *_ratio_lines(rows),
            "",
            f"Verification of each configuration at LR {args.verify_size[0]} x {args.verify_size[1]} (tolerance from the backend, per precision):",
            "",
            *verify_lines,
            "",
            "Pre-flight of the F2SRGAN graphs (profile 32x32 .. 180x320 .. 720x1280; TensorRT versions as given, "
            "since TensorRT is not installed here). The Q/DQ graphs come from ONNX Runtime's quantize_static on the "
            "FFT-free graph (2 noise calibration inputs; for the pre-flight only, not for quality):",
            "",
            *preflight_table,
            "",
            "Not measured here: TensorRT (it cannot be installed on any machine of this project; the backend is "
            "written against the TensorRT 10/11 API and only its graph preparation and pre-flight run here), "
            "and GPU latencies (see docs/benchmarks_gpu.md: the torch backend on a lent GPU).",
            "",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
