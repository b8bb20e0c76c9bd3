"""A small index over an ONNX graph: producers, consumers, initializers, attribute reads.

Only what the rewrites and the pre-flight need; the graph itself stays a plain ``onnx.GraphProto``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import numpy as np
import onnx
from onnx import numpy_helper

__all__ = [
    "GraphIndex", "attribute", "conv_bias", "conv_weight", "dense_steps", "feeds_quantizer", "opset_version", "per_channel",
    "plain_conv", "pointwise_conv", "replace_nodes", "rewrite_each", "rewrite_each_shuffle", "topological_sort",
]  # fmt: skip


def attribute(node: onnx.NodeProto, name: str, default: object = None) -> object:
    """The value of attribute ``name`` of ``node`` (strings decoded), or ``default``."""
    for attr in node.attribute:
        if attr.name == name:
            value = onnx.helper.get_attribute_value(attr)
            return value.decode() if isinstance(value, bytes) else value
    return default


def opset_version(model: onnx.ModelProto, domain: str = "") -> int | None:
    """The model's opset version for ``domain`` ("" is the default ONNX domain)."""
    for entry in model.opset_import:
        if entry.domain in (domain, "ai.onnx" if domain == "" else domain):
            return int(entry.version)
    return None


class GraphIndex:
    """Producers, consumers and initializers of ``graph`` (rebuild after structural edits)."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.graph = graph
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for node in graph.node:
            for out in node.output:
                self.producer[out] = node
            for inp in node.input:
                if inp:
                    self.consumers[inp].append(node)
        self.initializers = {init.name: init for init in graph.initializer}
        self.outputs = {out.name for out in graph.output}

    def only_consumer(self, tensor: str) -> onnx.NodeProto | None:
        """The single node reading ``tensor`` when nothing else (no other node, no graph output) does."""
        users = self.consumers.get(tensor, [])
        return users[0] if len(users) == 1 and tensor not in self.outputs else None

    def constant(self, name: str) -> np.ndarray | None:
        """The value of an initializer or of a ``Constant`` node's output; None when not constant."""
        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant":
            value = attribute(node, "value")
            if isinstance(value, onnx.TensorProto):
                return numpy_helper.to_array(value)
        return None

    def use_count(self, tensor: str) -> int:
        return len(self.consumers.get(tensor, [])) + (1 if tensor in self.outputs else 0)

    def replace_initializer(self, node: onnx.NodeProto, slot: int, value: np.ndarray, suffix: str) -> None:
        """Give ``node.input[slot]`` the array ``value``: in place when only it uses the old one, else a copy."""
        old = node.input[slot]
        if old in self.initializers and self.use_count(old) == 1:
            self.initializers[old].CopyFrom(numpy_helper.from_array(value.astype(_dtype_of(self.initializers[old])), old))
            for stale in [v for v in self.graph.value_info if v.name == old]:  # its shape may have changed
                self.graph.value_info.remove(stale)
            return
        name = self.fresh_name(f"{old}_{suffix}")
        dtype = _dtype_of(self.initializers[old]) if old in self.initializers else value.dtype
        tensor = numpy_helper.from_array(value.astype(dtype), name)
        self.graph.initializer.append(tensor)
        self.initializers[name] = tensor
        node.input[slot] = name
        self.consumers[name].append(node)

    def fresh_name(self, base: str) -> str:
        """A tensor name not used in the graph yet, derived from ``base``."""
        taken = set(self.initializers) | set(self.producer) | set(self.consumers) | {i.name for i in self.graph.input}
        name, k = base, 1
        while name in taken:
            name, k = f"{base}_{k}", k + 1
        return name

    def reserve_name(self, base: str, owner: onnx.NodeProto) -> str:
        """:meth:`fresh_name`, recorded as read by ``owner`` so that later calls do not hand it out again.

        For a rewrite that names several new tensors before it adds the nodes that make them.
        """
        name = self.fresh_name(base)
        self.consumers[name].append(owner)
        return name


def _dtype_of(tensor: onnx.TensorProto) -> np.dtype:
    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type))


def topological_sort(graph: onnx.GraphProto) -> None:
    """Reorder ``graph.node`` so every node follows the producers of its inputs (stable otherwise)."""
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending = list(graph.node)
    ordered: list[onnx.NodeProto] = []
    while pending:
        progressed = False
        rest = []
        for node in pending:
            if all(i in available for i in node.input):
                ordered.append(node)
                available.update(node.output)
                progressed = True
            else:
                rest.append(node)
        if not progressed:  # a cycle or a dangling input: leave the remainder as it was
            ordered.extend(rest)
            break
        pending = rest
    copies = [onnx.NodeProto() for _ in ordered]
    for copy, node in zip(copies, ordered):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(copies)


def per_channel(value: np.ndarray, channels: int) -> bool | None:
    """True: one value per channel (axis -3 of NCHW); False: a scalar; None: anything else."""
    if value.size == 1:
        return False
    if value.ndim >= 3 and value.shape[-3] == channels and value.size == channels:
        return True
    return None


def conv_weight(index: GraphIndex, conv: onnx.NodeProto) -> np.ndarray | None:
    """The 2-D conv's constant float weight (O, I/group, kH, kW), or None."""
    weight = index.constant(conv.input[1])
    return weight if weight is not None and weight.dtype.kind == "f" and weight.ndim == 4 else None


def conv_bias(index: GraphIndex, conv: onnx.NodeProto, weight: np.ndarray) -> np.ndarray | None:
    """The conv's constant bias, zeros when it has none, None when the bias is not a constant."""
    if len(conv.input) > 2 and conv.input[2]:
        return index.constant(conv.input[2])
    return np.zeros(weight.shape[0], weight.dtype)


def pointwise_conv(index: GraphIndex, node: onnx.NodeProto | None, tensor: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(weight (O, C), bias (O,)) of ``node`` when it is a plain 1x1 conv (group 1) reading ``tensor``."""
    if node is None or node.op_type != "Conv" or node.input[0] != tensor:
        return None
    params = plain_conv(index, node)
    if params is None or params[2] != 1 or params[0].shape[2:] != (1, 1):
        return None
    return params[0][:, :, 0, 0], params[1]


def plain_conv(index: GraphIndex, conv: onnx.NodeProto) -> tuple[np.ndarray, np.ndarray, int] | None:
    """(float weight, bias, group) of a stride-1 conv with an odd square kernel and ``same`` padding."""
    weight = conv_weight(index, conv)
    if weight is None or weight.shape[2] != weight.shape[3]:
        return None
    size = weight.shape[2]
    pads = attribute(conv, "pads", [0, 0, 0, 0])
    same = size % 2 == 1 and list(pads) == [size // 2] * 4  # type: ignore[arg-type]
    if not same or not dense_steps(conv):
        return None
    bias = conv_bias(index, conv, weight)
    if bias is None:
        return None
    return weight.astype(np.float64), bias.astype(np.float64), int(attribute(conv, "group", 1))  # type: ignore[arg-type]


def dense_steps(conv: onnx.NodeProto) -> bool:
    """Whether ``conv`` has stride 1, dilation 1 and explicit pads (no ``auto_pad``)."""
    flat = all(v == 1 for v in attribute(conv, "strides", [1, 1]) + attribute(conv, "dilations", [1, 1]))  # type: ignore[operator]
    return flat and attribute(conv, "auto_pad", "NOTSET") == "NOTSET"


def replace_nodes(graph: onnx.GraphProto, index: GraphIndex, old: list[onnx.NodeProto], new: list[onnx.NodeProto]) -> None:
    """Put ``new`` where the first of ``old`` stood; drop the initializers only ``old`` read (and ``new``
    does not) and the recorded shapes of tensors that no node produces any more (``index``: the graph
    before the edit)."""
    position = min(list(graph.node).index(node) for node in old)
    gone = {out for node in old for out in node.output} - {out for node in new for out in node.output}
    constants = {name for node in old for name in node.input if name} - {name for node in new for name in node.input}
    for node in old:
        graph.node.remove(node)
    for offset, node in enumerate(new):
        graph.node.insert(position + offset, node)
    for name in constants:
        if index.use_count(name) == 1 and name in index.initializers:
            graph.initializer.remove(index.initializers[name])
    for info in [v for v in graph.value_info if v.name in gone]:
        graph.value_info.remove(info)


def rewrite_each(model: onnx.ModelProto, op_type: str, rewrite: Callable[[GraphIndex, onnx.NodeProto], bool]) -> int:
    """Call ``rewrite(index, node)`` on each ``op_type`` node (a fresh index each time, so one rewrite
    sees the edits of the ones before it); returns how many it rewrote (it returns True for those),
    and sorts the graph once if any."""
    count = 0
    for node in [n for n in model.graph.node if n.op_type == op_type]:
        count += bool(rewrite(GraphIndex(model.graph), node))
    if count:
        topological_sort(model.graph)
    return count


def rewrite_each_shuffle(model: onnx.ModelProto, rewrite: Callable[[GraphIndex, onnx.NodeProto], bool]) -> int:
    """:func:`rewrite_each` over the ``DepthToSpace`` nodes."""
    return rewrite_each(model, "DepthToSpace", rewrite)


#: Ops that only move or copy values: a quantizer behind them sees the same numbers.
_DATA_MOVES = {"DepthToSpace", "SpaceToDepth", "Reshape", "Transpose", "Identity", "Squeeze", "Unsqueeze", "Flatten"}


def feeds_quantizer(index: GraphIndex, tensor: str) -> bool:
    """Whether a ``QuantizeLinear`` reads ``tensor``, directly or through ops that only move values.

    A rewrite exact up to float rounding (~1e-7 relative) is not exact there: a value on a rounding
    boundary of the quantizer moves a whole integer step.
    """
    pending, seen = [tensor], set()
    while pending:
        name = pending.pop()
        seen.add(name)
        for reader in index.consumers.get(name, []):
            if reader.op_type == "QuantizeLinear":
                return True
            if reader.op_type in _DATA_MOVES and reader.input[0] == name:
                pending.extend(out for out in reader.output if out not in seen)
    return False
