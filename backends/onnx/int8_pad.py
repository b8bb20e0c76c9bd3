"""The ``int8_pad_narrow_convs`` rewrite: a quantized conv with fewer than 16 outputs padded to 16.

ONNX Runtime's ``QLinearConv`` (x86, uint8 x int8) is several times slower with fewer than 16
output channels than with 16, though it then computes more (2 threads, 640x360 input; ms):

=====================  ========  ===============
conv (in -> out, k)    as is     padded to 16
=====================  ========  ===============
128 -> 12, 2x2         75.0      10.5
64 -> 12, 2x2          32.7      6.5
64 -> 4, 3x3           95.8      13.9
16 -> 3, 3x3           24.2      6.5
64 -> 12, 1x1          5.2       2.0
32 -> 24, 3x3          12.3      12.9 (padded to 32: no gain above 16)
=====================  ========  ===============

(an image tail folded before its pixel shuffle ends in such a conv: 12 = 3 colours x 4 sub-pixels).
So a group-1 conv with int8 per-channel weights between ``DequantizeLinear`` and ``QuantizeLinear``
gets zero-weight output channels up to 16 (scale 1, bias 0), and a ``Slice`` after its
``QuantizeLinear`` keeps the real ones::

    DQ(x) -> Conv(DQ(W), b) -> Q  ==>  DQ(x) -> Conv(DQ([W; 0]), [b; 0]) -> Q -> Slice(channels 0..O)

The real channels' integer sums are untouched, so the rewrite is exact.
"""

from __future__ import annotations

import numpy as np
import onnx

from srcompress.backends.onnx.graph import GraphIndex, attribute, replace_nodes, rewrite_each

__all__ = ["NARROW_CHANNELS", "int8_pad_narrow_convs"]

#: Quantized convs with fewer output channels than this are padded to it.
NARROW_CHANNELS = 16


def int8_pad_narrow_convs(model: onnx.ModelProto) -> int:
    """Pad each narrow quantized conv of the module doc. Returns the count."""
    return rewrite_each(model, "Conv", _pad_one)


def _pad_one(index: GraphIndex, conv: onnx.NodeProto) -> bool:
    quantize = index.only_consumer(conv.output[0])
    weight_dq = index.producer.get(conv.input[1])
    if quantize is None or quantize.op_type != "QuantizeLinear" or weight_dq is None or weight_dq.op_type != "DequantizeLinear":
        return False
    weights = _per_channel_int8(index, weight_dq)
    if weights is None or int(attribute(conv, "group", 1)) != 1 or index.use_count(conv.input[1]) != 1:  # type: ignore[call-overload]
        return False
    weight, scale, zero = weights
    channels = weight.shape[0]
    bias = index.constant(conv.input[2]) if len(conv.input) > 2 and conv.input[2] else np.zeros(channels, np.float32)
    if channels >= NARROW_CHANNELS or bias is None or bias.shape != (channels,):
        return False
    new = _padded(index, weight_dq, conv, quantize, weight, scale, zero, bias)
    replace_nodes(index.graph, index, [weight_dq, conv, quantize], new)
    return True


def _per_channel_int8(index: GraphIndex, node: onnx.NodeProto) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(int8 weight, per-channel scale, zero point) of a weight ``DequantizeLinear`` on axis 0, else None."""
    weight = index.constant(node.input[0])
    scale = index.constant(node.input[1])
    zero = index.constant(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros(1, np.int8)
    if weight is None or weight.dtype != np.int8 or weight.ndim != 4 or scale is None or zero is None:
        return None
    channels = weight.shape[0]
    axis = int(attribute(node, "axis", 1))  # type: ignore[call-overload]
    if axis != 0 or scale.size not in (1, channels) or zero.size not in (1, channels):
        return None
    return weight, np.broadcast_to(scale.reshape(-1), (channels,)), np.broadcast_to(zero.reshape(-1), (channels,))


def _padded(
    index: GraphIndex, weight_dq: onnx.NodeProto, conv: onnx.NodeProto, quantize: onnx.NodeProto,
    weight: np.ndarray, scale: np.ndarray, zero: np.ndarray, bias: np.ndarray,
) -> list[onnx.NodeProto]:  # fmt: skip
    """The padded weight DQ, conv and Q, and the Slice that writes the Q's old output; adds constants."""
    extra = NARROW_CHANNELS - weight.shape[0]
    base = conv.name or conv.output[0]
    name = {k: index.fresh_name(f"{base}_pad{NARROW_CHANNELS}_{k}")
            for k in ("w", "ws", "wz", "b", "wdq", "out", "q", "start", "end", "axes")}  # fmt: skip
    constants = {
        "w": np.concatenate([weight, np.zeros((extra, *weight.shape[1:]), weight.dtype)]),
        "ws": np.concatenate([scale, np.ones(extra, scale.dtype)]),
        "wz": np.concatenate([zero, np.zeros(extra, zero.dtype)]),
        "b": np.concatenate([bias, np.zeros(extra, bias.dtype)]),
        "start": np.array([0], np.int64), "end": np.array([weight.shape[0]], np.int64), "axes": np.array([1], np.int64),
    }  # fmt: skip
    index.graph.initializer.extend(onnx.numpy_helper.from_array(np.ascontiguousarray(v), name[k]) for k, v in constants.items())
    padded_conv = onnx.NodeProto()
    padded_conv.CopyFrom(conv)
    padded_conv.name = f"{base}_pad{NARROW_CHANNELS}"
    padded_conv.input[:] = [conv.input[0], name["wdq"], name["b"]]
    padded_conv.output[:] = [name["out"]]
    dq = onnx.NodeProto()
    dq.CopyFrom(weight_dq)
    dq.name, dq.input[:], dq.output[:] = f"{base}_pad{NARROW_CHANNELS}_wdq", [name["w"], name["ws"], name["wz"]], [name["wdq"]]
    q = onnx.NodeProto()
    q.CopyFrom(quantize)
    q.name, q.input[0], q.output[:] = f"{base}_pad{NARROW_CHANNELS}_q", name["out"], [name["q"]]
    keep = onnx.helper.make_node("Slice", [name["q"], name["start"], name["end"], name["axes"]], list(quantize.output),
                                 name=f"{base}_pad{NARROW_CHANNELS}_slice")
    return [dq, padded_conv, q, keep]
