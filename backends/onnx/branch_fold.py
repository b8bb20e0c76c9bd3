"""The ``linear_branch_fold`` rewrite: a 1x1 conv branch of a sum, folded into the conv that reads the sum.

``prelu_two_convs`` writes ``prelu(W x + b)`` as ``relu(...) + Conv1x1(x, a W, a b)``. When the sum
is then read by a conv ``K`` (the sub-pixel tail of an SR net), linearity gives::

    K(u + Conv1x1(x, L, c)) = K(u) + Conv(x, K o L) + K(c on the map, zero padding)

``K o L`` (weights ``sum_m K[o, m] L[m, i]``) reads the narrow ``x`` directly, so the wide map
``Conv1x1(x, L, c)`` is never written, added or read. The last term is the bias ``c`` seen through
``K``'s zero padding: constant inside the image and different on its border, it is computed as
``Conv(ones, K o c)`` on a one-channel map of ones shaped like ``x`` (when ``K`` pads; otherwise it
is a constant added to ``K``'s bias).
"""

from __future__ import annotations

import numpy as np
import onnx
from attrs import define

from srcompress.backends.onnx.channels import UNARY_OPS
from srcompress.backends.onnx.graph import (
    GraphIndex, attribute, conv_bias, conv_weight, dense_steps, feeds_quantizer, opset_version, pointwise_conv,
    replace_nodes, topological_sort,
)  # fmt: skip

__all__ = ["linear_branch_fold"]


def linear_branch_fold(model: onnx.ModelProto) -> int:
    """Fold each 1x1 conv branch of an ``Add`` into the conv that reads the sum (see the module doc). Returns the count.

    ``Conv_K(Add(u, Conv1x1(x)))`` becomes ``Add(Conv_K(u), Conv_{K o L}(x) [+ Conv(ones, K o c)])``.
    Applied where ``K`` is a group-1, stride-1, dilation-1 conv with constant float weights that
    alone reads the sum; the branch is a group-1 1x1 stride-1 unpadded conv with constant float
    weights read only by the Add; ``u`` is a full map of the branch's shape (a 1x1 conv of the same
    ``x``, possibly through elementwise activations: the relu half of ``prelu_two_convs``); and the
    folded conv does fewer multiply-adds per pixel than the branch (``K``'s outputs x kernel area <
    the branch's outputs). Measured: the pruned Light student's last x2 stage (16 -> 64 channels at
    360 x 640, a 2 x 2 tail to 12): see docs/deployment.md. Not applied where a ``QuantizeLinear``
    reads ``K``'s output (the folded weights round differently; see ``prelu_two_convs``).
    """
    ones_map = (opset_version(model) or 0) >= 15  # Shape(start, end), for the bias through the padding
    count = 0
    while True:
        index = GraphIndex(model.graph)
        site = next((s for s in (_fold_site(index, n, ones_map) for n in model.graph.node if n.op_type == "Add") if s), None)
        if site is None:
            break
        _fold(index, site)
        count += 1
    if count:
        topological_sort(model.graph)
    return count


@define(frozen=True)
class _FoldSite:
    add: onnx.NodeProto
    branch: onnx.NodeProto  # the 1x1 conv
    other: str  # the Add's other input
    reader: onnx.NodeProto  # K
    kernel: np.ndarray  # K's weight (O, M, kh, kw)
    kernel_bias: np.ndarray  # (O,)
    mix: np.ndarray  # the branch's weight (M, C)
    mix_bias: np.ndarray  # (M,)


def _fold_site(index: GraphIndex, add: onnx.NodeProto, ones_map: bool) -> _FoldSite | None:
    """The site of ``add`` when it can be folded (``ones_map``: a ones map may be built), else None."""
    reader = index.only_consumer(add.output[0])
    if len(add.input) != 2 or add.input[0] == add.input[1] or reader is None or not _plain_reader(index, reader, add.output[0]):
        return None
    kernel = conv_weight(index, reader)
    kernel_bias = None if kernel is None else conv_bias(index, reader, kernel)
    if kernel is None or kernel_bias is None or feeds_quantizer(index, reader.output[0]):
        return None
    for slot in (0, 1):
        branch = index.producer.get(add.input[slot])
        mix = None if branch is None else pointwise_conv(index, branch, branch.input[0])
        if mix is None or index.only_consumer(add.input[slot]) is not add:
            continue
        weight, bias = mix
        other = add.input[1 - slot]
        cheaper = kernel.shape[0] * kernel.shape[2] * kernel.shape[3] < weight.shape[0]
        border = _padded(reader) and bool(np.any(bias))  # the bias is seen through K's zero padding
        if cheaper and weight.shape[0] == kernel.shape[1] and (ones_map or not border) and _same_map(index, other, branch):  # type: ignore[arg-type]
            return _FoldSite(add, branch, other, reader, kernel, kernel_bias, weight, bias)  # type: ignore[arg-type]
    return None


def _plain_reader(index: GraphIndex, conv: onnx.NodeProto, tensor: str) -> bool:
    """Whether ``conv`` is a 2-D group-1 conv with stride and dilation 1 that reads ``tensor`` only as data."""
    if conv.op_type != "Conv" or conv.input[0] != tensor or tensor in conv.input[1:]:
        return False
    return dense_steps(conv) and attribute(conv, "group", 1) == 1


def _same_map(index: GraphIndex, tensor: str, branch: onnx.NodeProto) -> bool:
    """Whether ``tensor`` is an elementwise activation chain over a 1x1 conv of ``branch``'s input
    with as many outputs: then it has the branch's shape (no broadcasting in the Add)."""
    node = index.producer.get(tensor)
    while node is not None and node.op_type in UNARY_OPS and len(node.input) == 1:
        node = index.producer.get(node.input[0])
    if node is None or node.op_type != "Conv" or node.input[0] != branch.input[0]:
        return False
    weight = conv_weight(index, node)
    if weight is None or weight.shape[2:] != (1, 1) or any(attribute(node, "pads", [0, 0, 0, 0])):  # type: ignore[arg-type]
        return False
    return dense_steps(node) and weight.shape[0] == conv_weight(index, branch).shape[0]  # type: ignore[union-attr]


def _padded(conv: onnx.NodeProto) -> bool:
    return any(attribute(conv, "pads", [0, 0, 0, 0]))  # type: ignore[arg-type]


def _fold(index: GraphIndex, site: _FoldSite) -> None:
    graph, reader, x = index.graph, site.reader, site.branch.input[0]
    dtype = site.kernel.dtype
    kernel = site.kernel.astype(np.float64)
    composed = np.einsum("omhw,mc->ochw", kernel, site.mix.astype(np.float64))
    through_bias = np.einsum("omhw,m->ohw", kernel, site.mix_bias.astype(np.float64))[:, None]  # (O, 1, kh, kw)
    border = _padded(reader) and bool(np.any(site.mix_bias))  # _fold_site checked that a ones map can be built
    bias = site.kernel_bias.astype(np.float64)
    if not border:  # no padding (or no bias): the bias term is one constant per output channel
        bias = bias + through_bias.sum(axis=(1, 2, 3))
    base = reader.name or reader.output[0]
    name = _fresh_names(
        index, f"{base}_fold", reader, "w", "b", "kl", "ones_w", "main", "linear", "raw", "edge", "ones", "n", "hw", "c", "shape"
    )
    constants = {"w": site.kernel, "b": bias, "kl": composed} | ({"ones_w": through_bias} if border else {})
    graph.initializer.extend(onnx.numpy_helper.from_array(np.asarray(v).astype(dtype), name[k]) for k, v in constants.items())
    attrs = list(reader.attribute)
    main = _conv([site.other, name["w"], name["b"]], name["main"], f"{base}_fold", attrs)
    if border:  # K o c through K's zero padding: a conv of a ones map, added to the folded branch
        nodes = [
            *_ones_like(_shape_source(index, x), name, dtype, f"{base}_fold"),
            _conv([name["ones"], name["ones_w"]], name["edge"], f"{base}_fold_edge", attrs),
            _conv([x, name["kl"]], name["raw"], f"{base}_fold_linear", attrs),
            onnx.helper.make_node("Add", [name["edge"], name["raw"]], [name["linear"]], name=f"{base}_fold_edge_sum"),
        ]
    else:
        nodes = [_conv([x, name["kl"]], name["linear"], f"{base}_fold_linear", attrs)]
    nodes += [main, onnx.helper.make_node("Add", [name["main"], name["linear"]], list(reader.output), name=f"{base}_fold_sum")]
    replace_nodes(graph, index, [site.branch, site.add, reader], nodes)
    # The summed maps have one shape, but with symbolic sizes ONNX Runtime cannot infer that through a
    # conv that changes the size (a 2 x 2 conv with pads 1: H + 1), and it then adds them as a separate
    # pass instead of into the second conv's sum input. Declare it: same symbolic sizes for all of them.
    elem = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    dims = [f"{base}_fold_n", int(site.kernel.shape[0]), f"{base}_fold_h", f"{base}_fold_w"]
    summed = ("main", "linear", "raw", "edge") if border else ("main", "linear")
    graph.value_info.extend(onnx.helper.make_tensor_value_info(name[k], elem, dims) for k in summed)


def _fresh_names(index: GraphIndex, base: str, owner: onnx.NodeProto, *keys: str) -> dict[str, str]:
    """Unused tensor names ``{base}_{key}``, reserved in ``index`` as they are made."""
    return {key: index.reserve_name(f"{base}_{key}", owner) for key in keys}


def _conv(inputs: list[str], out: str, name: str, attrs: list[onnx.AttributeProto]) -> onnx.NodeProto:
    node = onnx.helper.make_node("Conv", inputs, [out], name=name)
    node.attribute.extend(attrs)
    return node


def _shape_source(index: GraphIndex, tensor: str) -> str:
    """The earliest tensor with ``tensor``'s batch and spatial sizes reachable back through
    same-size convs (stride 1, dilation 1, pads adding up to the kernel size - 1) and elementwise
    activations. ONNX Runtime keeps conv outputs in its blocked layout, and a ``Shape`` of one costs a
    reorder of the whole map (1.6 ms for 16 x 360 x 640); the input of the conv chain usually is not."""
    node = index.producer.get(tensor)
    while node is not None and (_same_size_conv(node) or (node.op_type in UNARY_OPS and len(node.input) == 1)):
        tensor = node.input[0]
        node = index.producer.get(tensor)
    return tensor


def _same_size_conv(node: onnx.NodeProto) -> bool:
    kernel = attribute(node, "kernel_shape")
    if node.op_type != "Conv" or kernel is None or not dense_steps(node):
        return False
    pads = list(attribute(node, "pads", [0] * 2 * len(kernel)))  # type: ignore[call-overload, arg-type]
    rank = len(kernel)  # type: ignore[arg-type]
    return all(pads[i] + pads[i + rank] == k - 1 for i, k in enumerate(kernel))  # type: ignore[arg-type]


def _ones_like(x: str, name: dict[str, str], dtype: np.dtype, base: str) -> list[onnx.NodeProto]:
    """Nodes computing ``name["ones"]``, a (N, 1, H, W) map of ones, from the shape of the (N, C, H, W) ``x`` (opset >= 15)."""
    batch, space, channel, shape, out = (name[k] for k in ("n", "hw", "c", "shape", "ones"))
    return [
        onnx.helper.make_node("Shape", [x], [batch], name=f"{base}_n", end=1),
        onnx.helper.make_node("Shape", [x], [space], name=f"{base}_hw", start=2),
        onnx.helper.make_node("Constant", [], [channel], name=f"{base}_c", value=onnx.numpy_helper.from_array(np.ones(1, np.int64))),
        onnx.helper.make_node("Concat", [batch, channel, space], [shape], name=f"{base}_shape", axis=0),
        onnx.helper.make_node("ConstantOfShape", [shape], [out], name=f"{base}_ones", value=onnx.numpy_helper.from_array(np.ones(1, dtype))),
    ]
