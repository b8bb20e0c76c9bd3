"""The ``d2s_int8_channels_last`` rewrite: an int8 pixel shuffle moved as channels-last byte runs.

In a Q/DQ graph a ``PixelShuffle`` between two quantizers with the same scale and zero point
(``Q -> DQ -> DepthToSpace -> Q -> DQ``, what a PT2E-quantized model exports) only moves integers:
ONNX Runtime drops the inner DQ/Q pair and runs its ``DepthToSpace`` kernel on uint8, which is
slow (5.5 ms for 1x64x180x320 on 2 threads, a float ``DepthToSpace`` 9.2 ms). The same bytes, read
channels-last with the sub-pixel index outermost (DCR channel order), move as contiguous runs of
``C / r^2`` bytes::

    Transpose(NCHW -> NHWC) -> Reshape(N, H, W, r, r, c) -> Transpose(0, 1, 3, 2, 4, 5)
    -> Reshape(N, r H, r W, c) -> Transpose(NHWC -> NCHW)

(1.6 ms for the same tensor), and ONNX Runtime cancels the first Transpose against the one it puts
after its channels-last ``QLinearConv``. The conv feeding a CRD shuffle (torch's order) is permuted
to DCR order as in ``d2s_dcr``; a CRD shuffle without such a conv is left alone (CRD read
channels-last is a strided gather, no faster). The integers are the same, so the rewrite is exact.
"""

from __future__ import annotations

import numpy as np
import onnx
from attrs import define

from srcompress.backends.onnx.channels import PERMUTED_KEY, reorder_channels
from srcompress.backends.onnx.graph import GraphIndex, attribute, replace_nodes, rewrite_each_shuffle

__all__ = ["d2s_int8_channels_last"]

_BYTE_TYPES = (np.dtype(np.uint8), np.dtype(np.int8))


def d2s_int8_channels_last(model: onnx.ModelProto) -> int:
    """Replace each ``DQ -> DepthToSpace -> Q`` that keeps its quantization by channels-last byte moves. Returns the count."""
    return rewrite_each_shuffle(model, _rewrite_one)


def _rewrite_one(index: GraphIndex, shuffle: onnx.NodeProto) -> bool:
    site = _claim(index, shuffle)
    if site is not None:
        replace_nodes(index.graph, index, [site.dequantize, site.shuffle, site.quantize], _channels_last_shuffle(index.graph, index, site))
    return site is not None


@define(frozen=True)
class _Site:
    dequantize: onnx.NodeProto
    shuffle: onnx.NodeProto
    quantize: onnx.NodeProto
    block: int


def _claim(index: GraphIndex, shuffle: onnx.NodeProto) -> _Site | None:
    """The site around ``shuffle`` when it moves 8-bit integers in DCR order, else None.

    A CRD shuffle qualifies once the conv feeding it is permuted to DCR order: that permutation is
    the last check and the only edit made here (the conv is marked with ``PERMUTED_KEY``).
    """
    dequantize = index.producer.get(shuffle.input[0])
    quantize = index.only_consumer(shuffle.output[0])
    if dequantize is None or dequantize.op_type != "DequantizeLinear" or index.use_count(shuffle.input[0]) != 1:
        return None
    if quantize is None or quantize.op_type != "QuantizeLinear" or not _same_byte_quantization(index, dequantize, quantize):
        return None
    block = int(attribute(shuffle, "blocksize"))  # type: ignore[arg-type]
    if attribute(shuffle, "mode", "DCR") == "CRD":
        conv = reorder_channels(index, shuffle.input[0], block, to_mode="DCR")
        if conv is None:
            return None
        conv.metadata_props.add(key=PERMUTED_KEY, value=str(block))
    return _Site(dequantize=dequantize, shuffle=shuffle, quantize=quantize, block=block)


def _same_byte_quantization(index: GraphIndex, dequantize: onnx.NodeProto, quantize: onnx.NodeProto) -> bool:
    """Whether both nodes use one constant per-tensor scale and 8-bit zero point (Q then returns the DQ's input)."""
    if any(a.name not in ("axis", "saturate") for a in quantize.attribute) or len(dequantize.input) != len(quantize.input):
        return False
    params = [(index.constant(dequantize.input[slot]), index.constant(quantize.input[slot])) for slot in range(1, len(quantize.input))]
    if len(params) != 2 or any(a is None or b is None or a.size != 1 or a.dtype != b.dtype or a.item() != b.item() for a, b in params):
        return False
    return params[1][0].dtype in _BYTE_TYPES  # type: ignore[union-attr]


def _channels_last_shuffle(graph: onnx.GraphProto, index: GraphIndex, site: _Site) -> list[onnx.NodeProto]:
    """The Transpose/Reshape chain equal to ``site``'s DCR shuffle on its integer input; adds its constants."""
    r, base = site.block, site.shuffle.name or site.shuffle.output[0]
    constants = {
        "blocks": np.array([0, 0, 0, r, r, -1], np.int64),  # 0: keep N, H, W
        "grow": np.array([1, r, r, 1], np.int64),
        "shrink": np.array([1, 1, 1, r * r], np.int64),
    }
    tensors = (*constants, "nhwc", "split", "moved", "dims", "scaled", "target", "wide")
    name = {key: index.fresh_name(f"{base}_nhwc_{key}") for key in tensors}
    graph.initializer.extend(onnx.numpy_helper.from_array(value, name[key]) for key, value in constants.items())
    node = onnx.helper.make_node
    return [
        node("Transpose", [site.dequantize.input[0]], [name["nhwc"]], name=f"{base}_to_nhwc", perm=[0, 2, 3, 1]),
        node("Reshape", [name["nhwc"], name["blocks"]], [name["split"]], name=f"{base}_split"),
        node("Transpose", [name["split"]], [name["moved"]], name=f"{base}_interleave", perm=[0, 1, 3, 2, 4, 5]),
        node("Shape", [name["nhwc"]], [name["dims"]], name=f"{base}_dims"),
        node("Mul", [name["dims"], name["grow"]], [name["scaled"]], name=f"{base}_grow"),
        node("Div", [name["scaled"], name["shrink"]], [name["target"]], name=f"{base}_shrink"),
        node("Reshape", [name["moved"], name["target"]], [name["wide"]], name=f"{base}_merge"),
        node("Transpose", [name["wide"]], list(site.quantize.output), name=f"{base}_to_nchw", perm=[0, 3, 1, 2]),
    ]
