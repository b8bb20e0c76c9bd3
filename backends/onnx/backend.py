"""The ``onnx`` backend: export (or read) an ONNX graph, rewrite it, and run it in ONNX Runtime."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import onnx
import torch
from attrs import define
from torch import nn

from srcompress.backends.onnx.export import export_onnx, load_onnx, simplify
from srcompress.backends.onnx.graph import opset_version
from srcompress.backends.onnx.precision import is_fp16, qdq_summary, to_fp16
from srcompress.backends.onnx.preflight import dynamic_inputs, preflight
from srcompress.backends.onnx.rewrites import REWRITES, apply_rewrites
from srcompress.backends.onnx.runtime import OnnxDeployed, make_session, read_metadata, resolve_provider
from srcompress.config import in_range, names, one_of, option
from srcompress.deploy import apply_export_forms, find_export_forms, module_device, package_versions, raise_for_issues
from srcompress.errors import DeployError

__all__ = ["DEFAULT_REWRITES", "TOLERANCE", "OnnxConfig", "compile_onnx", "load_onnx_deployed", "prepare_graph"]

#: Max abs difference from the torch model on [0, 1] images, per precision; int8: the MEAN abs
#: difference from the fake-quantized torch model the graph was exported from (see
#: srcompress.deploy.GATE_STATISTIC: integer rounding flips travel; 0.03 is ~8 levels of 255).
#: fp32: a quarter of one 8-bit level; ONNX Runtime's DFT kernel is 2.5e-4 off on F2SRGAN at
#: 180x320 (the FFT-free graph 2e-6).
TOLERANCE = {"fp32": 1e-3, "fp16": 2e-2, "int8": 3e-2}
DEFAULT_REWRITES = (
    "prelu_scalar_to_leaky_relu", "activation_before_d2s", "prelu_flip_steep", "prelu_split_depthwise", "prelu_two_convs",
    "prelu_to_max", "subpixel_tail", "subpixel_compact", "linear_branch_fold", "d2s_conv_transpose", "d2s_int8_channels_last",
    "int8_pad_narrow_convs", "scalar_mul_into_conv",
)
_TARGET = {"cpu": "onnxruntime-cpu", "cuda": "onnxruntime-cuda", "tensorrt": "onnxruntime-tensorrt"}

Source = nn.Module | onnx.ModelProto | str | os.PathLike



def _known_rewrites(_inst: Any, _attr: Any, value: tuple[str, ...]) -> None:
    unknown = [v for v in value if v not in REWRITES]
    if unknown:
        raise ValueError(f"unknown rewrite(s) {unknown} (available: {', '.join(REWRITES)})")


@define(frozen=True, kw_only=True)
class OnnxConfig:
    """Options of the ``onnx`` backend (ONNX Runtime)."""

    precision: str = option(
        "fp32",
        help="fp32; fp16 (converted graph, float32 input/output); int8 (the graph must already hold "
        "QuantizeLinear/DequantizeLinear nodes: a PT2E-quantized model or its .onnx).",
        validator=one_of(("fp32", "fp16", "int8")),
    )
    opset: int = option(18, help="ONNX opset of the export (18: opset 20's DFT fails with dynamic shapes in ORT).", validator=in_range(17, 21))
    fft: str = option(
        "auto",
        help="Fourier units: 'dft_op' exports torch.fft as ONNX DFT; 'fft_free' exports each module's "
        "export_form(); 'auto' = fft_free when the model has export forms (faster on every ORT provider).",
        validator=one_of(("auto", "dft_op", "fft_free")),
    )
    dynamic: bool = option(True, help="Dynamic batch, height and width (else the example's shape only).")
    simplify: bool = option(True, help="Constant folding and dead-node removal (onnxscript optimizer) after export.")
    rewrites: tuple[str, ...] = option(
        DEFAULT_REWRITES,
        help="Exact SR graph rewrites applied in order, each verified: " + ", ".join(REWRITES) + ".",
        converter=names,
        validator=_known_rewrites,
    )
    provider: str = option(
        "auto", help="ONNX Runtime provider: auto (CUDA when present, else CPU), cpu, cuda, tensorrt.",
        validator=one_of(("auto", "cpu", "cuda", "tensorrt")),
    )  # fmt: skip
    threads: int = option(0, help="Intra-op threads (0: ONNX Runtime's default, one per physical core).", validator=in_range(0, 1024))
    optimization: str = option(
        "all", help="ONNX Runtime graph optimization level.", validator=one_of(("disabled", "basic", "extended", "all"))
    )
    device_id: int = option(0, help="GPU index for the CUDA / TensorRT providers.", validator=in_range(0, 64))
    spin: bool = option(
        True, help="Intra-op threads spin-wait between ops (ONNX Runtime's default: lowest latency on an idle CPU); "
        "false: they sleep (several sessions or processes sharing the cores).",
    )  # fmt: skip


def prepare_graph(
    source: Source, example: torch.Tensor, config: OnnxConfig, *, target: str | None = None
) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """Export or read the graph, simplify, rewrite, convert precision; returns (graph, metadata).

    Shared with the TensorRT backend (which parses the same graph). ``target`` names the
    pre-flight target whose errors abort (None: no pre-flight here).
    """
    feeds = np.ascontiguousarray(example.detach().float().cpu().numpy())
    proto, meta = _source_graph(source, example, config)
    if config.simplify:
        proto = simplify(proto)
    proto, reports = apply_rewrites(proto, config.rewrites, feeds)
    meta["rewrites"] = [attrs.asdict(r) for r in reports]
    summary = qdq_summary(proto)
    if summary.quantized and config.precision != "int8":
        raise DeployError(
            f"the graph holds {summary.dequantize} DequantizeLinear nodes (a quantized model); set precision: int8"
        )
    if config.precision == "int8" and not summary.quantized:
        raise DeployError(
            "precision int8 needs a graph with QuantizeLinear/DequantizeLinear nodes; quantize the model first "
            "(a quantize stage), or pass that stage's model or .onnx"
        )
    if is_fp16(proto) and config.precision != "fp16":
        raise DeployError("the graph already holds float16 weights; set precision: fp16")
    if config.precision == "fp16":
        proto = to_fp16(proto)
    meta.update(
        precision=config.precision,
        opset=opset_version(proto),
        dynamic_inputs=dynamic_inputs(proto),
        qdq={"quantize": summary.quantize, "dequantize": summary.dequantize, "types": list(summary.dtypes)},
        versions=package_versions(),
    )
    if target is not None:
        issues = preflight(proto, target)
        raise_for_issues(issues, f"{target} pre-flight")
        meta["preflight"] = [str(i) for i in issues]
    return proto, meta


def _source_graph(source: Source, example: torch.Tensor, config: OnnxConfig) -> tuple[onnx.ModelProto, dict[str, Any]]:
    if isinstance(source, nn.Module):
        forms = find_export_forms(source) if config.fft != "dft_op" else []
        model = apply_export_forms(source, enabled=bool(forms))
        if any(p.is_floating_point() and p.dtype != torch.float32 for p in model.parameters()):
            # a half/bf16 torch model (e.g. a cast stage): export in float32, precision comes from the config
            model = (copy.deepcopy(model) if model is source else model).float()
        lr = example.detach().float().to(module_device(model))
        proto = export_onnx(model, lr, opset=config.opset, dynamic=config.dynamic)
        return proto, {"source": type(source).__name__, "fft": "fft_free" if forms else "dft_op", "export_forms": forms}
    proto = load_onnx(source)
    previous = read_metadata(proto)
    origin = str(source) if not isinstance(source, onnx.ModelProto) else "ModelProto"
    return proto, {"source": origin, "fft": previous.get("fft", "as given"), "export_forms": previous.get("export_forms", [])}


def compile_onnx(model: Source, example: torch.Tensor, config: OnnxConfig) -> OnnxDeployed:
    """Deploy ``model`` (nn.Module, PT2E GraphModule, ``onnx.ModelProto`` or .onnx path) on ONNX Runtime.

    :param example: (N, 3, H, W) float32 in [0, 1]: traces the export and checks each rewrite.
    """
    provider = resolve_provider(config.provider)
    proto, meta = prepare_graph(model, example, config, target=_TARGET[provider])
    session = _session(proto, provider, config)
    meta.update(backend="onnx", input_shape=list(example.shape), **_placement(session, config))
    deployed = OnnxDeployed(proto, session, meta)
    out = deployed(example.detach().float().cpu())
    deployed.metadata.update(scale=out.shape[-1] // example.shape[-1], output_channels=out.shape[1], output_shape=list(out.shape))
    return deployed


def _session(proto: onnx.ModelProto, provider: str, config: OnnxConfig) -> Any:
    return make_session(
        proto, provider=provider, threads=config.threads, optimization=config.optimization, device_id=config.device_id,
        spin=config.spin,
    )  # fmt: skip


def _placement(session: Any, config: OnnxConfig) -> dict[str, Any]:
    providers = list(session.get_providers())
    on_gpu = providers and providers[0] in ("CUDAExecutionProvider", "TensorrtExecutionProvider")
    return {"providers": providers, "device": f"cuda:{config.device_id}" if on_gpu else "cpu", "threads": config.threads}


def load_onnx_deployed(path: str | os.PathLike[str], config: OnnxConfig) -> OnnxDeployed:
    """Reopen a graph saved by :meth:`OnnxDeployed.save` (or any .onnx) with ``config``'s provider/threads."""
    path = Path(path)
    proto = load_onnx(path)
    meta = read_metadata(proto) or {"backend": "onnx", "precision": config.precision, "source": str(path)}
    provider = resolve_provider(config.provider)
    session = _session(proto, provider, config)
    meta.update(_placement(session, config))
    meta.setdefault("versions", package_versions())
    return OnnxDeployed(proto, session, meta)
