"""Converted PT2E model -> QuantizeLinear/DequantizeLinear ONNX, and what ONNX Runtime runs in INT8.

The export is ``torch.onnx.export(..., dynamo=True, opset_version=18)`` (opset 18: ONNX Runtime
fails on opset 20's DFT with dynamic shapes) with dynamic batch, height and width. ONNX Runtime
fuses ``DQ -> Conv -> Q`` into ``QLinearConv`` (and other Q/DQ-wrapped ops into their
``com.microsoft`` QLinear* kernels) at load time; :func:`int8_ops` reads the optimized graph to
report which ops actually run in integer arithmetic and which stay float.
"""

from __future__ import annotations

import collections
import contextlib
import io
import os
import tempfile
from pathlib import Path

import onnx
import torch
from attrs import define

from srcompress.deploy import module_device
from srcompress.errors import DeployError

__all__ = ["INT8_KERNELS", "Int8Report", "export_qdq_onnx", "int8_ops", "quantizer_zero_points", "save_onnx"]

#: ONNX Runtime kernels that compute in 8-bit integers.
INT8_KERNELS = frozenset({
    "QLinearConv", "ConvInteger", "MatMulInteger", "QLinearMatMul", "QLinearAdd", "QLinearMul", "QLinearConcat",
    "QLinearSigmoid", "QLinearLeakyRelu", "QLinearAveragePool", "QLinearGlobalAveragePool", "QGemm",
    "DynamicQuantizeConv", "NhwcQLinearConv", "QLinearSoftmax", "QLinearWhere",
})  # fmt: skip
_FLOAT_COMPUTE = ("Conv", "FusedConv", "MatMul", "Gemm", "PRelu", "DepthToSpace", "Add", "Mul", "NchwcConv", "FusedMatMul")


def export_qdq_onnx(model: torch.nn.Module, example: torch.Tensor, *, opset: int = 18, dynamic: bool = True) -> onnx.ModelProto:
    """ONNX Q/DQ graph of a converted PT2E model (input ``lr``, output ``sr``), checked by ``onnx.checker``.

    :param example: (N, 3, H, W) float32 in [0, 1] (moved to the model's device).
    :raises DeployError: when the exporter fails (first line of its message).
    """
    example = example.to(module_device(model))
    dims = {0: torch.export.Dim.DYNAMIC, 2: torch.export.Dim.DYNAMIC, 3: torch.export.Dim.DYNAMIC}
    if dynamic and example.shape[0] < 2:
        example = example.expand(2, -1, -1, -1).contiguous()
    try:
        with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
            program = torch.onnx.export(
                model, (example,), dynamo=True, opset_version=opset, dynamic_shapes=(dims,) if dynamic else None,
                input_names=["lr"], output_names=["sr"], external_data=False, verbose=False,
            )  # fmt: skip
    except Exception as exc:
        first = next((line for line in str(exc).splitlines() if line.strip()), "")
        raise DeployError(f"Q/DQ ONNX export of {type(model).__name__} failed: {type(exc).__name__}: {first}") from exc
    proto = program.model_proto
    onnx.checker.check_model(proto)
    return proto


def quantizer_zero_points(proto: onnx.ModelProto) -> list[tuple[str, str, int]]:
    """(node name, quantized element type, max |zero point|) of every QuantizeLinear/DequantizeLinear."""
    import numpy as np
    from onnx import numpy_helper

    consts = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    consts[node.output[0]] = numpy_helper.to_array(attr.t)
    out = []
    for node in proto.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        zp = consts.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if zp is None and node.op_type == "DequantizeLinear" and node.input[0] in consts:
            dtype = consts[node.input[0]].dtype.name
            out.append((node.name, dtype, 0))
            continue
        dtype = "uint8" if zp is None else zp.dtype.name
        out.append((node.name, dtype, 0 if zp is None else int(np.abs(zp.astype(np.int64)).max())))
    return out


@define(frozen=True, kw_only=True)
class Int8Report:
    """Op counts of the graph ONNX Runtime actually runs (after its Q/DQ fusions and layout passes)."""

    ops: dict[str, int]
    int8: dict[str, int]
    float_compute: dict[str, int]
    reorders: int

    def summary(self) -> str:
        i8 = ", ".join(f"{k} {v}" for k, v in sorted(self.int8.items())) or "none"
        fl = ", ".join(f"{k} {v}" for k, v in sorted(self.float_compute.items())) or "none"
        return f"int8: {i8}; float: {fl}; layout reorders/transposes: {self.reorders}"


def int8_ops(proto: onnx.ModelProto, *, threads: int = 1) -> Int8Report:
    """Which ops ONNX Runtime (CPU, all optimizations) runs in INT8: counts from its optimized graph."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "optimized.onnx")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath = path
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        try:
            ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise DeployError(f"ONNX Runtime cannot load the Q/DQ graph: {exc}".splitlines()[0]) from exc
        optimized = onnx.load(path)
    ops = collections.Counter(node.op_type for node in optimized.graph.node)
    int8 = {k: v for k, v in ops.items() if k in INT8_KERNELS}
    floats = {k: v for k, v in ops.items() if k in _FLOAT_COMPUTE}
    reorders = sum(v for k, v in ops.items() if k in ("ReorderInput", "ReorderOutput", "Transpose"))
    return Int8Report(ops=dict(ops), int8=int8, float_compute=floats, reorders=reorders)


def save_onnx(proto: onnx.ModelProto, path: str | os.PathLike[str]) -> Path:
    """Write ``proto`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(proto.SerializeToString())
    tmp.replace(path)
    return path


