"""Pre-flight checks: what in an ONNX graph a target cannot build or run, and the fix.

Targets: ``onnxruntime-cpu``, ``onnxruntime-cuda`` (ONNX Runtime's CUDA execution provider),
``onnxruntime-tensorrt`` (its TensorRT execution provider, which hands TensorRT what it can parse)
and ``tensorrt`` (the TensorRT builder via its ONNX parser). Facts behind each finding are in
docs/deployment.md; the TensorRT operator list follows onnx-tensorrt's ``docs/operators.md``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import onnx

from srcompress.backends.onnx.graph import opset_version
from srcompress.backends.onnx.precision import qdq_summary
from srcompress.deploy import Issue
from srcompress.errors import DeployError

__all__ = ["TARGETS", "TENSORRT_DFT_VERSION", "TENSORRT_UNSUPPORTED_OPS", "dynamic_inputs", "parse_version", "preflight"]

TARGETS = ("onnxruntime-cpu", "onnxruntime-cuda", "onnxruntime-tensorrt", "tensorrt")
#: First TensorRT release whose ONNX parser handles ``DFT`` (through its cuFFT ``FFTPlugin``).
TENSORRT_DFT_VERSION = (11, 2)
#: ONNX ops the TensorRT 10.x/11.x ONNX parser does not support (onnx-tensorrt docs/operators.md).
TENSORRT_UNSUPPORTED_OPS = frozenset(
    {
        "AffineGrid", "Bernoulli", "BitShift", "BitwiseAnd", "BitwiseNot", "BitwiseOr", "BitwiseXor", "CenterCropPad",
        "Col2Im", "Compress", "ConcatFromSequence", "ConvInteger", "Det", "DynamicQuantizeLinear", "ImageDecoder",
        "MatMulInteger", "MaxRoiPool", "MaxUnpool", "MelWeightMatrix", "Multinomial", "NegativeLogLikelihoodLoss",
        "Optional", "OptionalGetElement", "OptionalHasElement", "QLinearConv", "QLinearMatMul", "RegexFullMatch",
        "SequenceAt", "SequenceConstruct", "SequenceEmpty", "SequenceErase", "SequenceInsert", "SequenceLength",
        "SequenceMap", "SoftmaxCrossEntropyLoss", "SplitToSequence", "StringConcat", "StringNormalizer", "StringSplit",
        "TfIdfVectorizer", "Unique",
    }
)  # fmt: skip
#: Quantized element types TensorRT accepts in Q/DQ (UINT8 only as a network input/output type).
TENSORRT_QDQ_TYPES = frozenset({"int8", "float8_e4m3fn", "int4", "float4_e2m1"})
_FFT_FIX = "deploy with fft: fft_free (the export form of the Fourier units has no DFT)"

Profile = Mapping[str, tuple[Sequence[int], Sequence[int], Sequence[int]]]


def parse_version(text: str | None) -> tuple[int, ...] | None:
    """``"10.13.0.35"`` -> ``(10, 13, 0, 35)``; None stays None."""
    if not text:
        return None
    parts = []
    for piece in str(text).split("."):
        match = re.match(r"\d+", piece)
        if not match:
            break
        parts.append(int(match.group()))
        if match.end() < len(piece):  # "1rc2", "0+cu12": the rest is not a version number
            break
    return tuple(parts) or None


def dynamic_inputs(model: onnx.ModelProto) -> dict[str, list[int | str]]:
    """Graph inputs (not initializers) that have symbolic or unknown dims: name -> dims."""
    initializers = {i.name for i in model.graph.initializer}
    found = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in value.type.tensor_type.shape.dim]
        if any(isinstance(d, str) for d in dims):
            found[value.name] = dims
    return found


def preflight(
    model: onnx.ModelProto,
    target: str,
    *,
    tensorrt_version: str | None = None,
    profile: Profile | None = None,
) -> list[Issue]:
    """Findings for running ``model`` on ``target`` (errors block a build, warnings cost speed).

    :param tensorrt_version: the TensorRT version the graph is meant for (``tensorrt`` and
        ``onnxruntime-tensorrt`` targets); None: the installed one, else assumed older than 11.2.
    :param profile: input name -> (min, opt, max) shapes of the TensorRT optimization profile.
    """
    if target not in TARGETS:
        raise DeployError(f"unknown pre-flight target '{target}' (available: {', '.join(TARGETS)})")
    nodes = _nodes_by_op(model)
    issues: list[Issue] = []
    issues += _dft_issues(model, target, nodes.get("DFT", []), tensorrt_version)
    if target in ("tensorrt", "onnxruntime-tensorrt"):
        issues += _tensorrt_issues(model, target, nodes, profile)
    return issues


def _nodes_by_op(model: onnx.ModelProto) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for i, node in enumerate(model.graph.node):
        key = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"
        found.setdefault(key, []).append(node.name or f"#{i}")
    return found


def _installed_tensorrt() -> str | None:
    from importlib import metadata

    for name in ("tensorrt", "tensorrt-cu12", "tensorrt-cu13"):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def _dft_issues(model: onnx.ModelProto, target: str, dft: list[str], trt_version: str | None) -> list[Issue]:
    if not dft:
        return []
    nodes = tuple(dft)
    if target == "onnxruntime-cpu":
        issues = [
            Issue(
                severity="warning", target=target, op="DFT", nodes=nodes,
                message="runs, but the DFT op is ~6x slower than the FFT-free form in ONNX Runtime (F2SRGAN x4, 180x320)",
                fix=_FFT_FIX,
            )
        ]  # fmt: skip
        opset = opset_version(model) or 0
        if opset >= 20 and dynamic_inputs(model):
            issues.append(
                Issue(
                    severity="error", target=target, op="DFT", nodes=nodes,
                    message=f"opset {opset} DFT with dynamic shapes fails in ONNX Runtime (buffer re-use shape mismatch)",
                    fix="export with opset: 18",
                )
            )  # fmt: skip
        return issues
    if target == "onnxruntime-cuda":
        return [
            Issue(
                severity="warning", target=target, op="DFT", nodes=nodes,
                message="no CUDA kernel: ONNX Runtime runs DFT on the CPU and copies tensors between devices",
                fix=_FFT_FIX,
            )
        ]  # fmt: skip
    version = parse_version(trt_version or _installed_tensorrt())
    if version is not None and version[:2] >= TENSORRT_DFT_VERSION:
        return [
            Issue(
                severity="warning", target=target, op="DFT", nodes=nodes,
                message=f"TensorRT {trt_version or '.'.join(map(str, version))} parses DFT through its cuFFT FFTPlugin "
                "(needs the plugin library loaded)",
                fix=_FFT_FIX + " to build without plugins",
            )
        ]  # fmt: skip
    shown = ".".join(map(str, version)) if version else "unknown (assumed < 11.2)"
    severity = "error" if target == "tensorrt" else "warning"
    effect = "cannot parse" if target == "tensorrt" else "cannot take (ONNX Runtime falls back to CPU for)"
    return [
        Issue(
            severity=severity, target=target, op="DFT", nodes=nodes,
            message=f"TensorRT {shown} {effect} ONNX DFT; TensorRT >= 11.2 has an FFT plugin",
            fix=_FFT_FIX,
        )
    ]  # fmt: skip


def _tensorrt_issues(model: onnx.ModelProto, target: str, nodes: dict[str, list[str]], profile: Profile | None) -> list[Issue]:
    severity = "error" if target == "tensorrt" else "warning"
    issues = []
    for op, names in sorted(nodes.items()):
        if "::" in op:
            issues.append(
                Issue(
                    severity=severity, target=target, op=op, nodes=tuple(names),
                    message="custom-domain op that TensorRT's ONNX parser does not know",
                    fix="export with the standard ONNX domain only (no ONNX Runtime-optimized graphs)",
                )
            )  # fmt: skip
        elif op in TENSORRT_UNSUPPORTED_OPS:
            issues.append(
                Issue(
                    severity=severity, target=target, op=op, nodes=tuple(names),
                    message="not supported by TensorRT's ONNX parser",
                    fix="replace the module producing it, or deploy with onnx (ONNX Runtime)",
                )
            )  # fmt: skip
    issues += _qdq_issues(model, target, severity)
    if target == "tensorrt":
        issues += _profile_issues(model, profile)
    return issues


def _qdq_issues(model: onnx.ModelProto, target: str, severity: str) -> list[Issue]:
    summary = qdq_summary(model)
    issues = []
    if summary.nonzero_zero_points:
        issues.append(
            Issue(
                severity=severity, target=target, op="QuantizeLinear/DequantizeLinear", nodes=summary.nonzero_zero_points,
                message="asymmetric quantization (non-zero zero points); TensorRT supports symmetric Q/DQ only",
                fix="quantize with symmetric int8 activations and per-channel symmetric weights (all zero points 0)",
            )
        )  # fmt: skip
    for dtype, names in summary.by_dtype.items():
        if dtype in TENSORRT_QDQ_TYPES:
            continue
        fix = (
            "keep biases in float (ONNX Runtime's quantize_static: extra_options={'QuantizeBias': False})"
            if dtype == "int32"
            else "quantize to signed int8 (symmetric)"
        )
        issues.append(
            Issue(
                severity=severity, target=target, op="QuantizeLinear/DequantizeLinear", nodes=names,
                message=f"quantized type {dtype}; TensorRT Q/DQ takes int8, fp8, int4 or fp4 only",
                fix=fix,
            )
        )  # fmt: skip
    return issues


def _profile_issues(model: onnx.ModelProto, profile: Profile | None) -> list[Issue]:
    issues = []
    for name, dims in dynamic_inputs(model).items():
        shapes = (profile or {}).get(name)
        if shapes is None:
            issues.append(
                Issue(
                    severity="error", target="tensorrt", op="input", nodes=(name,),
                    message=f"input '{name}' has dynamic dims {dims} and no optimization profile",
                    fix="set min_lr / opt_lr / max_lr (and max_batch) in the tensorrt options",
                )
            )  # fmt: skip
            continue
        for which, shape in zip(("min", "opt", "max"), shapes):
            bad = len(shape) != len(dims) or any(isinstance(d, int) and d > 0 and d != s for d, s in zip(dims, shape))
            if bad:
                issues.append(
                    Issue(
                        severity="error", target="tensorrt", op="input", nodes=(name,),
                        message=f"profile {which} shape {list(shape)} does not fit input '{name}' dims {dims}",
                        fix="give (N, C, H, W) shapes whose fixed dims match the graph",
                    )
                )  # fmt: skip
    return issues
