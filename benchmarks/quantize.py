"""Quantization benchmark: our PT2E INT8 vs ONNX Runtime's quantize_static vs fp32, on ONNX Runtime CPU.

Writes its tables into docs/benchmarks_quantize.md, between ``<!-- quantize-<parts>:start/end -->``
comments (the analysis around them is kept). Every latency in one table is measured in the same run, the
sessions interleaved (the machine is shared: compare ratios, not absolute times).

    .venv/bin/python benchmarks/quantize.py              # (a) peer comparison, (b) F2SRGAN PTQ, (c) QAT
    .venv/bin/python benchmarks/quantize.py --parts a    # only (a)

Needs SRCOMPRESS_DATA (Set5, Set14, T91) and SRCOMPRESS_WEIGHTS (the published checkpoints).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import torch

from srcompress.paths import use_local_copies  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
use_local_copies(REPO.parent / "shared")
# a test run elsewhere may leave a half-installed example plugin behind; it is not needed here
os.environ.setdefault("SRCOMPRESS_DISABLE_PLUGINS", "example")

from srcompress.backends.onnx import apply_rewrites, export_onnx  # noqa: E402
from srcompress.deploy import apply_export_forms  # noqa: E402
from srcompress.measure.evaluate import evaluate  # noqa: E402
from srcompress.models import build_model  # noqa: E402
from srcompress.plugins.techniques.quantize import (  # noqa: E402
    QATModule,
    QuantizeConfig,
    export_qdq_onnx,
    int8_ops,
    quantize_model,
)
from srcompress.recipe_types import DataConfig, ModelRef  # noqa: E402
from srcompress.training import TrainConfig, fit  # noqa: E402

LR_SHAPE = (1, 3, 180, 320)
REWRITES = ("activation_before_d2s", "d2s_dcr")
THREADS = 2


def session(proto: onnx.ModelProto):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    options.log_severity_level = 3
    return ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])


class OrtModel:
    """Callable (1, 3, h, w) tensor -> tensor over an ORT session (for evaluate)."""

    def __init__(self, proto: onnx.ModelProto) -> None:
        self.session = session(proto)

    def __call__(self, lr: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {"lr": np.ascontiguousarray(lr.detach().float().cpu().numpy())})[0]
        return torch.from_numpy(out)


def latencies(models: dict[str, OrtModel], runs: int) -> dict[str, float]:
    """Median ms per model at LR_SHAPE; runs interleaved so load changes hit every model alike."""
    lr = {"lr": np.random.default_rng(0).random(LR_SHAPE, dtype=np.float32)}
    for model in models.values():
        model.session.run(None, lr)
    times: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(runs):
        for name, model in models.items():
            start = time.perf_counter()
            model.session.run(None, lr)
            times[name].append(1000 * (time.perf_counter() - start))
    return {k: statistics.median(v) for k, v in times.items()}


def quality(model: OrtModel) -> dict[str, dict[str, float]]:
    return evaluate(model, ["Set5", "Set14"], 4, metrics=("psnr", "ssim")).means()


def calib_batches(count: int, batch: int = 4, patch: int = 128) -> list[torch.Tensor]:
    from srcompress.data import PatchDataset

    data = PatchDataset(["T91"], 4, patch, augment=False, seed=0, length=count * batch)
    items = [data[i][0] for i in range(count * batch)]
    return [torch.stack(items[i : i + batch]) for i in range(0, len(items), batch)]


def peer_quantize(fp32: onnx.ModelProto, batches: list[torch.Tensor]) -> onnx.ModelProto:
    """ONNX Runtime's own static quantization: QDQ, per-channel s8 weights, u8 activations, MinMax."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"lr": b.numpy()} for b in batches])

        def get_next(self):
            return next(self.items, None)

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "peer.onnx"
        onnx.save(fp32, src)
        quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)  # fmt: skip
        return onnx.load(str(dst))


def ours(model: torch.nn.Module, config: QuantizeConfig, batches, keep_float=(), finetune=None) -> onnx.ModelProto:
    quantized, facts = quantize_model(model, config, batches, keep_float=keep_float, finetune=finetune)
    proto = export_qdq_onnx(quantized, torch.rand(1, 3, 24, 24))
    proto, _ = apply_rewrites(proto, REWRITES, np.random.default_rng(1).random((1, 3, 24, 24), dtype=np.float32))
    return proto


def fp32_graph(model: torch.nn.Module, rewrites: bool) -> onnx.ModelProto:
    proto = export_onnx(apply_export_forms(model), torch.rand(1, 3, 24, 24))
    if rewrites:
        proto, _ = apply_rewrites(proto, REWRITES, np.random.default_rng(1).random((1, 3, 24, 24), dtype=np.float32))
    return proto


def fmt_q(q: dict) -> str:
    return f"{q['Set5']['psnr']:.2f} / {q['Set14']['psnr']:.2f}"


def fmt_s(q: dict) -> str:
    return f"{q['Set5']['ssim']:.4f} / {q['Set14']['ssim']:.4f}"


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def part_a(runs: int, batches) -> list[str]:
    lines = ["## (a) Released KD student and Light F2SRGAN: fp32 vs ONNX Runtime quantize_static (peer) vs ours", ""]
    lines += ["ORT CPU, 2 threads, LR 320x180 (x4 -> 1280x720); latency = median of interleaved runs, same process.",
              "PSNR-Y / SSIM-Y on Set5 / Set14 (MATLAB bicubic LR, shave 4), computed on the ONNX Runtime outputs.", ""]
    for name in ("f2srgan_student", "light_f2srgan"):
        model = build_model(ModelRef(name=name, scale=4, weights="official")).eval()
        log(f"(a) {name}: graphs")
        fp32 = fp32_graph(model, rewrites=False)
        graphs = {
            "fp32": fp32,
            "fp32 + DCR rewrite": fp32_graph(model, rewrites=True),
            "peer: ORT quantize_static (MinMax)": peer_quantize(fp32, batches),
            "ours without the PReLU fold (minmax)": ours(model, QuantizeConfig(calibration="minmax", split_prelu=False), batches),
            "ours: PReLU folded (minmax)": ours(model, QuantizeConfig(calibration="minmax"), batches),
            "ours: PReLU folded (percentile 99.99)": ours(model, QuantizeConfig(calibration="percentile"), batches),
        }
        models = {k: OrtModel(v) for k, v in graphs.items()}
        log(f"(a) {name}: latency")
        lat = latencies(models, runs)
        lines += [f"### {name} (official weights)", "",
                  "| variant | latency ms | vs fp32 | vs peer | PSNR-Y Set5 / Set14 | SSIM-Y Set5 / Set14 | ops ORT runs in INT8 | float compute ops |",
                  "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        peer_key = "peer: ORT quantize_static (MinMax)"
        for key, model_ort in models.items():
            log(f"(a) {name}: quality {key}")
            q = quality(model_ort)
            report = int8_ops(graphs[key])
            i8 = ", ".join(f"{k} {v}" for k, v in sorted(report.int8.items())) or "-"
            fl = ", ".join(f"{k} {v}" for k, v in sorted(report.float_compute.items())) or "-"
            lines.append(f"| {key} | {lat[key]:.0f} | {lat['fp32'] / lat[key]:.2f}x | {lat[peer_key] / lat[key]:.2f}x | "
                         f"{fmt_q(q)} | {fmt_s(q)} | {i8} | {fl} |")  # fmt: skip
        lines.append("")
    return lines


def part_b(runs: int, batches) -> list[str]:
    lines = ["## (b) F2SRGAN x4 (published weights): PTQ INT8 per calibration method", "",
             "Fourier units stay float (model hints), exported in their exact FFT-free form (no DFT op); "
             "ORT CPU, 2 threads, LR 320x180, latency relative to the float ONNX model of the same run.", "",
             "| variant | latency ms | speed-up vs float | PSNR-Y Set5 / Set14 | SSIM-Y Set5 / Set14 | INT8 ops in ORT |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    from srcompress.plugins.models.f2srgan import f2srgan_hints

    model = build_model(ModelRef(name="f2srgan", scale=4, weights="official")).eval()
    keep = tuple(f2srgan_hints(model).keep_float)
    graphs = {"float (FFT-free export)": fp32_graph(model, rewrites=True)}
    for method in ("minmax", "percentile", "mse", "entropy"):
        log(f"(b) {method}")
        graphs[f"PTQ int8 {method}"] = ours(model, QuantizeConfig(calibration=method), batches, keep_float=keep)
    models = {k: OrtModel(v) for k, v in graphs.items()}
    lat = latencies(models, runs)
    base = "float (FFT-free export)"
    for key, m in models.items():
        log(f"(b) quality {key}")
        q = quality(m)
        report = int8_ops(graphs[key])
        i8 = ", ".join(f"{k} {v}" for k, v in sorted(report.int8.items())) or "-"
        lines.append(f"| {key} | {lat[key]:.0f} | {lat[base] / lat[key]:.2f}x | {fmt_q(q)} | {fmt_s(q)} | {i8} |")
    return lines + [""]


def part_c(runs: int, batches, steps: int) -> list[str]:
    from srcompress.plugins.models.f2srgan import f2srgan_hints

    model = build_model(ModelRef(name="f2srgan", scale=4, weights="official")).eval()
    keep = tuple(f2srgan_hints(model).keep_float)
    data = DataConfig(train=("T91",), eval=("Set5",), patch=96, batch=8)
    train = TrainConfig(steps=steps, lr=1e-5, checkpoint_every=None, seed=0)

    def finetune(wrapper: QATModule) -> QATModule:
        with tempfile.TemporaryDirectory() as tmp:
            return fit(wrapper, train, data, 4, work_dir=Path(tmp), progress=False).model

    log("(c) QAT")
    config = QuantizeConfig(mode="qat", calibration="minmax", freeze_observers_after=steps // 2)
    start = time.perf_counter()
    graphs = {"float (FFT-free export)": fp32_graph(model, rewrites=True),
              "QAT int8": ours(model, config, batches[:4], keep_float=keep, finetune=finetune)}  # fmt: skip
    took = time.perf_counter() - start
    models = {k: OrtModel(v) for k, v in graphs.items()}
    lat = latencies(models, runs)
    lines = ["## (c) F2SRGAN x4 QAT INT8 after a fixed short fine-tune", "",
             f"QAT: {steps} steps, batch 8, HR patch 96 from T91, AdamW lr 1e-5, L1 loss, observers frozen after "
             f"{steps // 2} steps; minmax ranges calibrated on 4 batches first; {took / 60:.1f} min in all.", "",
             "| variant | latency ms | speed-up vs float | PSNR-Y Set5 / Set14 | SSIM-Y Set5 / Set14 |", "|---|---|---|---|---|"]  # fmt: skip
    base = "float (FFT-free export)"
    for key, m in models.items():
        q = quality(m)
        lines.append(f"| {key} | {lat[key]:.0f} | {lat[base] / lat[key]:.2f}x | {fmt_q(q)} | {fmt_s(q)} |")
    return lines + [""]


def machine() -> str:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import onnxruntime
    import torchao

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{platform.machine()}, {os.cpu_count()} cores ({cpu}), load average {load:.1f} at the start (shared machine); "
            f"torch {torch.__version__}, torchao {torchao.__version__}, onnxruntime {onnxruntime.__version__}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="abc")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--calib", type=int, default=8, help="calibration batches (4 LR patches of 32x32 each)")
    parser.add_argument("--qat-steps", type=int, default=40)
    parser.add_argument("--out", default=str(REPO / "docs" / "benchmarks_quantize.md"))
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    header = ["# Quantization benchmark (ONNX Runtime CPU)", "",
              f"Command: `.venv/bin/python benchmarks/quantize.py {' '.join(sys.argv[1:])}`".rstrip() + "  ",
              f"Machine: {machine()}  ", f"Date: {time.strftime('%Y-%m-%d %H:%M')}", "",
              f"Calibration (peer and ours): the same {args.calib} batches of 4 T91 LR patches (32x32).", ""]  # fmt: skip
    batches = calib_batches(args.calib)
    lines = list(header[2:])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for part in args.parts:
        lines += {"a": lambda: part_a(args.runs, batches), "b": lambda: part_b(args.runs, batches),
                  "c": lambda: part_c(args.runs, batches, args.qat_steps)}[part]()  # fmt: skip
        write_tables(out, header[:2], lines, f"quantize-{args.parts}")
        log(f"wrote {out}")
    return 0


def write_tables(out: Path, title: list[str], lines: list[str], marker: str) -> None:
    """Put ``lines`` between the ``<!-- marker:start/end -->`` comments of ``out``, keeping the prose around
    them (the analysis written from earlier runs); a new file, or one without the markers, gets them appended."""
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    block = "\n".join([start, *lines, end])
    text = out.read_text() if out.exists() else "\n".join(title) + "\n"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    out.write_text(text)


if __name__ == "__main__":
    raise SystemExit(main())
