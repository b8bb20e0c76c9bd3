"""Precision of ONNX graphs: fp16 conversion and what a Q/DQ (INT8) graph contains.

FP16 uses ONNX Runtime's own converter (``onnxruntime.transformers.float16``, shipped in the
``onnxruntime`` wheel, so no extra dependency): weights and activations become float16, the
graph's input and output stay float32, and ops without fp16 kernels stay in float32 behind casts.
"""

from __future__ import annotations

import numpy as np
import onnx
from attrs import define

from srcompress.backends.onnx.graph import GraphIndex, attribute, topological_sort
from srcompress.errors import DeployError

__all__ = ["FP16_BLOCKED_OPS", "QdqSummary", "is_fp16", "qdq_summary", "to_fp16"]

#: Ops kept in float32 on top of ONNX Runtime's default list (DFT has no fp16 kernel).
FP16_BLOCKED_OPS = ("DFT", "STFT")


def is_fp16(model: onnx.ModelProto) -> bool:
    """True when the graph already holds float16 weights (converted before)."""
    return any(init.data_type == onnx.TensorProto.FLOAT16 for init in model.graph.initializer)


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """A float16 copy of ``model`` with float32 input/output (casts at the boundary).

    A graph that already holds float16 weights is returned unchanged (converting twice would
    duplicate the boundary casts).
    """
    if is_fp16(model):
        return model
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    try:
        out = convert_float_to_float16(
            model, keep_io_types=True, op_block_list=list(DEFAULT_OP_BLOCK_LIST) + list(FP16_BLOCKED_OPS)
        )
    except Exception as exc:
        raise DeployError(f"fp16 conversion failed: {type(exc).__name__}: {exc}".splitlines()[0]) from exc
    topological_sort(out.graph)  # the converter appends its boundary casts at the end
    return out


@define(frozen=True, kw_only=True)
class QdqSummary:
    """The explicit-quantization content of a graph."""

    quantize: int
    dequantize: int
    by_dtype: dict[str, tuple[str, ...]]  # quantized element type ("int8", "uint8", ...) -> Q/DQ node names
    nonzero_zero_points: tuple[str, ...]  # Q/DQ nodes whose zero point is not all zeros

    @property
    def dtypes(self) -> tuple[str, ...]:
        return tuple(sorted(self.by_dtype))

    @property
    def quantized(self) -> bool:
        return self.dequantize > 0


def qdq_summary(model: onnx.ModelProto) -> QdqSummary:
    """Count QuantizeLinear/DequantizeLinear nodes by quantized type; find asymmetric ones (zero point != 0)."""
    index = GraphIndex(model.graph)
    q = dq = 0
    by_dtype: dict[str, list[str]] = {}
    nonzero: list[str] = []
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        q += node.op_type == "QuantizeLinear"
        dq += node.op_type == "DequantizeLinear"
        by_dtype.setdefault(_quantized_dtype(index, node), []).append(node.name or node.output[0])
        zero = index.constant(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if zero is not None and np.any(zero.astype(np.int64) != 0):
            nonzero.append(node.name or node.output[0])
    return QdqSummary(
        quantize=q,
        dequantize=dq,
        by_dtype={k: tuple(v) for k, v in sorted(by_dtype.items())},
        nonzero_zero_points=tuple(nonzero),
    )


def _quantized_dtype(index: GraphIndex, node: onnx.NodeProto) -> str:
    """Element type on the quantized side: the zero point's type, DQ's constant input, or Q's output_dtype."""
    candidates = []
    if len(node.input) > 2 and node.input[2]:
        candidates.append(node.input[2])
    if node.op_type == "DequantizeLinear":
        candidates.append(node.input[0])
    for name in candidates:
        if name in index.initializers:
            return onnx.helper.tensor_dtype_to_np_dtype(index.initializers[name].data_type).name
        value = index.constant(name)
        if value is not None:
            return value.dtype.name
    out_dtype = attribute(node, "output_dtype", 0)
    if out_dtype:
        return onnx.helper.tensor_dtype_to_np_dtype(int(out_dtype)).name  # type: ignore[arg-type]
    return "uint8"  # ONNX default when QuantizeLinear has no zero point
