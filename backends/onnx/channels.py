"""Permuting a conv's output channels through the channel-wise ops after it (sub-pixel orders).

Used by the rewrites that change a ``DepthToSpace``'s channel order (``d2s_dcr``,
``d2s_conv_transpose``, ``d2s_int8_channels_last``): the conv that feeds the shuffle, and every
per-channel constant and Q/DQ parameter on the way, are permuted so the values reaching the shuffle
are the same numbers in another channel order.
"""

from __future__ import annotations

import numpy as np
import onnx

from srcompress.backends.onnx.graph import GraphIndex, attribute, per_channel

__all__ = ["PERMUTED_KEY", "QDQ_OPS", "UNARY_OPS", "crd_to_dcr_permutation", "reorder_channels"]

#: Node metadata that d2s_dcr and d2s_int8_channels_last write on each conv they permute (value: the
#: DepthToSpace block size), so diagnostics can restore the conv's original channel order.
PERMUTED_KEY = "srcompress.dcr_block"
UNARY_OPS = {"Relu", "LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid", "Elu", "Selu", "Softplus", "Identity", "Celu", "HardSwish"}
_BINARY = {"Add", "Sub", "Mul", "Div", "PRelu"}
QDQ_OPS = {"QuantizeLinear", "DequantizeLinear"}


def crd_to_dcr_permutation(channels: int, block: int) -> np.ndarray:
    """``perm`` with ``DCR(x[:, perm]) == CRD(x)`` for an input of ``channels * block**2`` channels.

    CRD reads output channel c, offset (i, j) from input channel ``c*r*r + i*r + j``; DCR from
    ``(i*r + j)*C + c``. So DCR position ``(i*r + j)*C + c`` must hold CRD channel ``c*r*r + i*r + j``.
    """
    crd = np.arange(channels * block * block).reshape(channels, block * block)
    return crd.T.reshape(-1)


_Edit = tuple[onnx.NodeProto, int, np.ndarray]


def reorder_channels(index: GraphIndex, tensor: str, block: int, *, to_mode: str) -> onnx.NodeProto | None:
    """Permute the channels reaching ``tensor`` into ``to_mode`` order (see :func:`_plan_permutation`);
    returns the conv whose weights changed, or None (nothing changed) when that is not exact."""
    plan = _plan_permutation(index, tensor, block, to_mode=to_mode)
    if plan is None:
        return None
    conv, edits = plan
    for target, slot, value in edits:
        index.replace_initializer(target, slot, value, to_mode.lower())
    return conv


def _plan_permutation(index: GraphIndex, tensor: str, block: int, *, to_mode: str) -> tuple[onnx.NodeProto, list[_Edit]] | None:
    """(conv, edits) permuting the channels that reach ``tensor`` from the nearest Conv from CRD to
    ``to_mode`` = DCR order (or from DCR to ``to_mode`` = CRD); None if not exact."""
    chain: list[tuple[onnx.NodeProto, str]] = []
    while True:
        node = index.producer.get(tensor)
        if node is None or index.use_count(tensor) != 1:
            return None
        if node.op_type == "Conv":
            break
        tensor = _data_input(index, node)
        if not tensor:
            return None
        chain.append((node, tensor))
    weight = _conv_weight(index, node)
    if weight is None or int(attribute(node, "group", 1)) != 1:  # type: ignore[arg-type]
        return None
    out_channels = weight.shape[0]
    if out_channels % (block * block):
        return None
    perm = crd_to_dcr_permutation(out_channels // (block * block), block)
    if to_mode == "CRD":
        perm = np.argsort(perm)
    edits = _permute_conv(index, node, perm)
    for op, data in chain:
        more = _permute_channelwise(index, op, data, perm)
        if edits is None or more is None:
            return None
        edits += more
    return None if edits is None else (node, edits)


def _data_input(index: GraphIndex, node: onnx.NodeProto) -> str:
    """The non-constant input of a channel-wise op ('' when there is not exactly one)."""
    if node.op_type in UNARY_OPS or node.op_type in QDQ_OPS or node.op_type == "Clip":
        return node.input[0]
    if node.op_type in _BINARY:
        variable = [i for i in node.input[:2] if index.constant(i) is None]
        return variable[0] if len(variable) == 1 else ""
    return ""


def _permute_channelwise(index: GraphIndex, node: onnx.NodeProto, data: str, perm: np.ndarray) -> list[_Edit] | None:
    op = node.op_type
    if op in UNARY_OPS:
        return []
    if op == "Clip":
        bounds = [index.constant(i) for i in node.input[1:] if i]
        return [] if all(b is not None and b.size == 1 for b in bounds) else None
    if op in _BINARY:
        slot = 1 if node.input[0] == data else 0
        value = index.constant(node.input[slot])
        kind = None if value is None else per_channel(value, len(perm))
        if kind is None:
            return None
        return [(node, slot, value.reshape(-1)[perm].reshape(value.shape))] if kind else []
    if op in QDQ_OPS:
        return _permute_qdq_params(index, node, perm, channel_axis=1)
    return None


def _permute_qdq_params(index: GraphIndex, node: onnx.NodeProto, perm: np.ndarray, channel_axis: int) -> list[_Edit] | None:
    """Scale/zero point of a (De)QuantizeLinear: kept when per-tensor, permuted when per-channel on the axis."""
    edits: list[_Edit] = []
    for slot in (1, 2):
        if slot >= len(node.input) or not node.input[slot]:
            continue
        value = index.constant(node.input[slot])
        if value is None:
            return None
        if value.size == 1:
            continue
        if value.size != len(perm) or int(attribute(node, "axis", 1)) != channel_axis:  # type: ignore[arg-type]
            return None
        edits.append((node, slot, value.reshape(-1)[perm].reshape(value.shape)))
    return edits


def _conv_weight(index: GraphIndex, conv: onnx.NodeProto) -> np.ndarray | None:
    """The conv's weight as stored (any dtype): a constant, or the integer constant behind a DequantizeLinear."""
    value = index.constant(conv.input[1])
    if value is not None:
        return value
    dq = index.producer.get(conv.input[1])
    if dq is not None and dq.op_type == "DequantizeLinear":
        return index.constant(dq.input[0])
    return None


def _permute_conv(index: GraphIndex, conv: onnx.NodeProto, perm: np.ndarray) -> list[_Edit] | None:
    """Edits permuting a Conv's output channels: weight and bias, directly or behind a DequantizeLinear."""
    edits: list[_Edit] = []
    for slot in (1, 2):
        if slot >= len(conv.input) or not conv.input[slot]:
            continue
        value = index.constant(conv.input[slot])
        if value is not None:
            edits.append((conv, slot, value[perm]))
            continue
        dq = index.producer.get(conv.input[slot])
        if dq is None or dq.op_type != "DequantizeLinear" or index.use_count(conv.input[slot]) != 1:
            return None
        data = index.constant(dq.input[0])
        params = _permute_qdq_params(index, dq, perm, channel_axis=0)
        if data is None or params is None:
            return None
        edits.append((dq, 0, data[perm]))
        edits += params
    return edits
