"""Exact rewrites of an exported (aten) SR graph that let more of it run in integer kernels.

:func:`split_prelu`: ONNX Runtime has no integer PRelu, so a quantized ``conv -> PRelu`` runs the
PRelu in float between DequantizeLinear and QuantizeLinear, at full resolution in an upsampler
(the largest single cost of the quantized KD student). The rewrite uses
``prelu(z) = relu(z) - a * relu(-z)``::

    conv(x, W, b) [-> pixel_shuffle(r)] -> prelu(a)
    ==> conv(x, [W; -W], [b; -b]) -> relu -> conv1x1(groups=C, weights [1, -a]) [-> pixel_shuffle(r)]

(a pixel shuffle in between is crossed by repeating each slope r*r times). The conv + relu fuse
into one ``QLinearConv`` (the relu is absorbed by the uint8 output's zero point) and the grouped
1x1 conv is a cheap ``QLinearConv``: PRelu disappears from the float part of the graph.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.fx import GraphModule, Node

__all__ = ["split_prelu"]

_aten = torch.ops.aten


def _attr(gm: GraphModule, node: object) -> torch.Tensor | None:
    if not isinstance(node, Node) or node.op != "get_attr":
        return None
    value: object = gm
    for part in node.target.split("."):
        value = getattr(value, part, None)
    return value if isinstance(value, torch.Tensor) else None


def _new_attr(gm: GraphModule, base: str, value: torch.Tensor) -> str:
    name, index = base.replace(".", "_") + "_split", 0
    while hasattr(gm, name + (str(index) if index else "")):
        index += 1
    name += str(index) if index else ""
    gm.register_parameter(name, nn.Parameter(value.detach().clone(), requires_grad=True))
    return name


def _fake(gm: GraphModule, like: Node, target: object, *args: object) -> object:
    """meta['val'] of a new node, computed with the graph's fake tensor mode."""
    mode = like.meta["val"].fake_mode
    fake_args = [
        mode.from_tensor(a) if isinstance(a, torch.Tensor) else (a.meta["val"] if isinstance(a, Node) else a) for a in args
    ]
    with mode:
        return target(*fake_args)


def _match(gm: GraphModule, prelu: Node) -> tuple[Node, Node | None, torch.Tensor] | None:
    """(conv, pixel_shuffle or None, per-conv-channel slopes) when ``prelu`` can be split."""
    source, slope_node = prelu.args[0], prelu.args[1]
    slope = _attr(gm, slope_node)
    if slope is None or not isinstance(source, Node):
        return None
    shuffle = None
    if source.target == _aten.pixel_shuffle.default and len(source.users) == 1:
        shuffle, source = source, source.args[0]
    if not isinstance(source, Node) or source.target != _aten.conv2d.default or len(source.users) != 1:
        return None
    groups = source.args[6] if len(source.args) > 6 else 1
    weight = _attr(gm, source.args[1])
    if weight is None or groups != 1 or len(source.args[1].users) != 1:
        return None
    slopes = slope.detach().reshape(-1)
    if shuffle is not None:
        slopes = slopes.repeat_interleave(int(shuffle.args[1]) ** 2)
    if slopes.numel() == 1:
        slopes = slopes.expand(weight.shape[0])
    return (source, shuffle, slopes) if slopes.numel() == weight.shape[0] else None


def split_prelu(gm: GraphModule) -> int:
    """Apply the rewrite of the module doc to every matching PRelu of ``gm`` (in place); returns the count."""
    count = 0
    for prelu in list(gm.graph.nodes):
        if prelu.target != _aten.prelu.default:
            continue
        found = _match(gm, prelu)
        if found is None:
            continue
        conv, shuffle, slopes = found
        _rewrite(gm, prelu, conv, shuffle, slopes)
        count += 1
    if count:
        gm.graph.eliminate_dead_code()
        gm.graph.lint()
        gm.recompile()
    return count


def _rewrite(gm: GraphModule, prelu: Node, conv: Node, shuffle: Node | None, slopes: torch.Tensor) -> None:
    weight = _attr(gm, conv.args[1])
    bias = _attr(gm, conv.args[2]) if len(conv.args) > 2 and conv.args[2] is not None else None
    channels = weight.shape[0]
    w2 = torch.stack([weight, -weight], 1).reshape(2 * channels, *weight.shape[1:])
    b2 = torch.stack([bias, -bias], 1).reshape(-1) if bias is not None else None
    mix = torch.stack([torch.ones_like(slopes), -slopes], 1).reshape(channels, 2, 1, 1).to(weight.dtype)
    graph = gm.graph
    defaults = ([1, 1], [0, 0], [1, 1])
    stride, padding, dilation = (tuple(conv.args[3:6]) + defaults[len(conv.args[3:6]):])[:3]
    with graph.inserting_before(conv):
        w_node = graph.get_attr(_new_attr(gm, conv.args[1].target, w2))
        b_node = graph.get_attr(_new_attr(gm, conv.args[2].target, b2)) if b2 is not None else None
        m_node = graph.get_attr(_new_attr(gm, prelu.args[1].target, mix))
    for node, value in ((w_node, w2), (b_node, b2), (m_node, mix)):
        if node is not None:
            node.meta["val"] = conv.meta["val"].fake_mode.from_tensor(value)
    x = conv.args[0]
    with graph.inserting_after(conv):
        doubled = graph.call_function(_aten.conv2d.default, (x, w_node, b_node, stride, padding, dilation, 1))
    with graph.inserting_after(doubled):
        relu = graph.call_function(_aten.relu.default, (doubled,))
    with graph.inserting_after(relu):
        mixed = graph.call_function(_aten.conv2d.default, (relu, m_node, None, [1, 1], [0, 0], [1, 1], channels))
    for node, meta_from in ((doubled, conv), (relu, prelu), (mixed, prelu)):
        node.meta.update({k: v for k, v in meta_from.meta.items() if k in ("nn_module_stack", "stack_trace", "source_fn_stack")})
    doubled.meta["val"] = _fake(gm, conv, _aten.conv2d.default, x, w2, b2, stride, padding, dilation, 1)
    relu.meta["val"] = _fake(gm, conv, _aten.relu.default, doubled)
    mixed.meta["val"] = _fake(gm, conv, _aten.conv2d.default, relu, mix, None, [1, 1], [0, 0], [1, 1], channels)
    conv.replace_all_uses_with(mixed)
    # the shuffle (if any) now reads the mixed conv; the PRelu's users read its input instead
    prelu.replace_all_uses_with(prelu.args[0])
    graph.erase_node(prelu)
    graph.erase_node(conv)
