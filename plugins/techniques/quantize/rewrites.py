"""Exact rewrites of an exported (aten) SR graph that let more of it run in integer kernels.

:func:`split_prelu`: ONNX Runtime has no integer PRelu, so a quantized ``conv -> PRelu`` runs the
PRelu in float between DequantizeLinear and QuantizeLinear, at full resolution in an upsampler
(the largest single cost of the quantized KD student). The rewrite uses
``prelu(z) = relu(z) - a * relu(-z)``::

    conv(x, W, b) [-> pixel_shuffle(r)] -> prelu(a)
    ==> conv(x, [W; -W], [b; -b]) -> relu -> conv1x1(groups=C, weights [1, -a]) [-> pixel_shuffle(r)]

(a pixel shuffle in between is crossed by repeating each slope r*r times). The conv + relu fuse
into one ``QLinearConv`` (the relu is absorbed by the uint8 output's zero point): PRelu disappears
from the float part of the graph. ONNX Runtime's grouped ``QLinearConv`` with 2 channels per group
is slow, though, so where every consumer of the PRelu is a conv (dense, or depthwise as in
separable convs) the mix is folded into the consumers instead and no grouped conv is left::

    ==> conv(x, [W; -W], [b; -b]) -> relu [-> pixel_shuffle(r)] -> z2 = [relu(z); relu(-z)]
        consumer conv(z2, [K, -a * K]) (dense: along the input channels; depthwise: 2C groups,
        bias [c; 0])

Zero padding of the consumer commutes (prelu(0) = relu(0) = 0). The folded form doubles the
channels between the two convs: it pays off where PRelu costs more in float than the extra
integer MACs (the KD student and Light F2SRGAN on ONNX Runtime CPU; docs/benchmarks_quantize.md).
"""

from __future__ import annotations

from collections.abc import Callable

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


def _fresh_name(gm: GraphModule, base: str) -> str:
    """``base`` (dots as underscores), with the first number suffix that ``gm`` has no attribute of."""
    name, index = base.replace(".", "_"), 0
    while hasattr(gm, name + (str(index) if index else "")):
        index += 1
    return name + (str(index) if index else "")


def _new_attr(gm: GraphModule, base: str, value: torch.Tensor) -> str:
    name = _fresh_name(gm, base + "_split")
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


def split_prelu(gm: GraphModule, in_float: Callable[[Node], bool] | None = None) -> int:
    """Apply the rewrite of the module doc to every matching PRelu of ``gm`` (in place); returns the count.

    :param in_float: tells the nodes of modules left in float; a PRelu after a float conv is kept
        (its conv runs in float anyway, and the fold would only double the float work around it),
        and so is a PRelu itself left in float (``keep_float: [upsampler.0.act]``: the float layers
        after it then read C channels, not the 2C of the split).
    """
    count = 0
    for prelu in list(gm.graph.nodes):
        if prelu.target != _aten.prelu.default:
            continue
        found = _match(gm, prelu)
        if found is None or (in_float is not None and (in_float(found[0]) or in_float(prelu))):
            continue
        conv, shuffle, slopes = found
        consumers = _foldable_consumers(gm, prelu)
        if consumers is not None:
            _rewrite_folded(gm, prelu, conv, shuffle, consumers)
        else:
            _rewrite(gm, prelu, conv, shuffle, slopes)
        count += 1
    return _finish(gm, count)


def _finish(gm: GraphModule, count: int) -> int:
    """After ``count`` rewrites of ``gm`` (none: nothing to do): drop dead nodes, check, recompile."""
    if count:
        gm.graph.eliminate_dead_code()
        gm.graph.lint()
        gm.recompile()
    return count


def _rewrite(gm: GraphModule, prelu: Node, conv: Node, shuffle: Node | None, slopes: torch.Tensor) -> None:
    weight = _attr(gm, conv.args[1])
    bias = _bias(gm, conv)
    channels = weight.shape[0]
    w2 = torch.stack([weight, -weight], 1).reshape(2 * channels, *weight.shape[1:])
    b2 = torch.stack([bias, -bias], 1).reshape(-1) if bias is not None else None
    mix = torch.stack([torch.ones_like(slopes), -slopes], 1).reshape(channels, 2, 1, 1).to(weight.dtype)
    graph = gm.graph
    (stride, padding, dilation), _ = _conv_params(conv)
    with graph.inserting_before(conv):
        w_node = _attr_node(gm, conv, conv.args[1].target, w2)
        b_node = _attr_node(gm, conv, conv.args[2].target, b2) if b2 is not None else None
        m_node = _attr_node(gm, conv, prelu.args[1].target, mix)
    x = conv.args[0]
    with graph.inserting_after(conv):
        doubled = graph.call_function(_aten.conv2d.default, (x, w_node, b_node, stride, padding, dilation, 1))
    with graph.inserting_after(doubled):
        relu = graph.call_function(_aten.relu.default, (doubled,))
    with graph.inserting_after(relu):
        mixed = graph.call_function(_aten.conv2d.default, (relu, m_node, None, [1, 1], [0, 0], [1, 1], channels))
    for node, meta_from in ((doubled, conv), (relu, prelu), (mixed, prelu)):
        _copy_origin(node, meta_from)
    doubled.meta["val"] = _fake(gm, conv, _aten.conv2d.default, x, w2, b2, stride, padding, dilation, 1)
    relu.meta["val"] = _fake(gm, conv, _aten.relu.default, doubled)
    mixed.meta["val"] = _fake(gm, conv, _aten.conv2d.default, relu, mix, None, [1, 1], [0, 0], [1, 1], channels)
    conv.replace_all_uses_with(mixed)
    # the shuffle (if any) now reads the mixed conv; the PRelu's users read its input instead
    prelu.replace_all_uses_with(prelu.args[0])
    graph.erase_node(prelu)
    graph.erase_node(conv)


#: The node metadata that says which module a node came from: the quantizer's module-name filters
#: (keep_float) read nn_module_stack, so a replacement node must carry its original's.
_ORIGIN_KEYS = ("nn_module_stack", "stack_trace", "source_fn_stack")


def _copy_origin(node: Node, original: Node) -> None:
    node.meta.update({k: v for k, v in original.meta.items() if k in _ORIGIN_KEYS})


def _has_bias(node: Node) -> bool:
    return len(node.args) > 2 and node.args[2] is not None


def _bias(gm: GraphModule, conv: Node) -> torch.Tensor | None:
    """The conv's bias tensor (None without one, or when it is not a graph attribute)."""
    return _attr(gm, conv.args[2]) if _has_bias(conv) else None


def _conv_params(node: Node) -> tuple[tuple[object, object, object], int]:
    defaults = ([1, 1], [0, 0], [1, 1])
    given = tuple(node.args[3:6])
    stride_padding_dilation = (given + defaults[len(given):])[:3]
    groups = int(node.args[6]) if len(node.args) > 6 else 1
    return stride_padding_dilation, groups  # type: ignore[return-value]


def _foldable_consumers(gm: GraphModule, prelu: Node) -> list[Node] | None:
    """The PRelu's users when every one is a dense or depthwise conv reading it as input (else None)."""
    channels = prelu.meta["val"].shape[1]
    users = list(prelu.users)
    for user in users:
        weight = _own_weight_if_conv_of(gm, user, prelu)
        if weight is None:
            return None
        if _has_bias(user) and _bias(gm, user) is None:
            return None
        _, groups = _conv_params(user)
        depthwise = groups == channels and weight.shape[0] == channels and weight.shape[1] == 1
        if groups != 1 and not (depthwise and _dense_reader(gm, user) is not None):
            return None
    return users or None


def _dense_reader(gm: GraphModule, depthwise: Node) -> Node | None:
    """The single dense conv reading ``depthwise`` (a separable conv's pointwise half), else None."""
    users = list(depthwise.users)
    if len(users) != 1:
        return None
    reader = users[0]
    if _own_weight_if_conv_of(gm, reader, depthwise) is None or _conv_params(reader)[1] != 1:
        return None
    return reader


def _own_weight_if_conv_of(gm: GraphModule, node: Node, source: Node) -> torch.Tensor | None:
    """The weight of ``node`` when it is a conv reading ``source`` as its input (only there) with a
    constant weight no other node uses (so it can be rewritten in place); else None."""
    if node.target != _aten.conv2d.default or node.args[0] is not source or source in node.args[1:]:
        return None
    weight = _attr(gm, node.args[1])
    return weight if weight is not None and len(node.args[1].users) == 1 else None


def _slopes(gm: GraphModule, prelu: Node) -> torch.Tensor:
    slope = _attr(gm, prelu.args[1])
    assert slope is not None
    return slope.detach().reshape(-1).expand(prelu.meta["val"].shape[1])


def _attr_node(gm: GraphModule, like: Node, base: str, value: torch.Tensor) -> Node:
    node = gm.graph.get_attr(_new_attr(gm, base, value))
    node.meta["val"] = like.meta["val"].fake_mode.from_tensor(value)
    return node


def _rewrite_folded(gm: GraphModule, prelu: Node, conv: Node, shuffle: Node | None, consumers: list[Node]) -> None:
    """The folded form of the module doc: [W; -W] producer + relu, the slopes moved into the consumers."""
    graph, slopes = gm.graph, _slopes(gm, prelu)
    weight = _attr(gm, conv.args[1])
    bias = _bias(gm, conv)
    (stride, padding, dilation), _ = _conv_params(conv)
    x = conv.args[0]
    w2 = torch.cat([weight, -weight])
    b2 = torch.cat([bias, -bias]) if bias is not None else None
    with graph.inserting_before(conv):
        w_node = _attr_node(gm, conv, conv.args[1].target, w2)
        b_node = _attr_node(gm, conv, conv.args[2].target, b2) if b2 is not None else None
        doubled = graph.call_function(_aten.conv2d.default, (x, w_node, b_node, stride, padding, dilation, 1))
        relu = graph.call_function(_aten.relu.default, (doubled,))
        out = graph.call_function(_aten.pixel_shuffle.default, (relu, shuffle.args[1])) if shuffle is not None else relu
    for node, meta_from in ((doubled, conv), (relu, prelu), (out, shuffle or prelu)):
        _copy_origin(node, meta_from)
    doubled.meta["val"] = _fake(gm, conv, _aten.conv2d.default, x, w2, b2, stride, padding, dilation, 1)
    relu.meta["val"] = _fake(gm, conv, _aten.relu.default, doubled)
    if shuffle is not None:
        out.meta["val"] = _fake(gm, conv, _aten.pixel_shuffle.default, relu, shuffle.args[1])
    for consumer in consumers:
        _fold_into_consumer(gm, consumer, out, slopes)
    graph.erase_node(prelu)
    if shuffle is not None:
        graph.erase_node(shuffle)
    graph.erase_node(conv)


def _fold_into_consumer(gm: GraphModule, consumer: Node, source: Node, slopes: torch.Tensor) -> None:
    """Replace ``consumer`` (a conv of the PRelu) by one reading ``[relu(z); relu(-z)]``."""
    weight = _attr(gm, consumer.args[1])
    bias = _bias(gm, consumer)
    (stride, padding, dilation), groups = _conv_params(consumer)
    a = slopes.to(weight.dtype)
    reader = None
    if groups == 1:  # dense: the negative half's input channels get -a * K
        new_weight, new_bias, new_groups = torch.cat([weight, -a[None, :, None, None] * weight], 1), bias, 1
    else:  # depthwise: 2C groups, the negative half scaled by -a and without bias; its reader sums the halves
        new_weight = torch.cat([weight, -a[:, None, None, None] * weight])
        new_bias = torch.cat([bias, torch.zeros_like(bias)]) if bias is not None else None
        new_groups, reader = 2 * groups, _dense_reader(gm, consumer)
    folded = _replace_conv(gm, consumer, source, new_weight, new_bias, new_groups)
    if reader is not None:
        pointwise = _attr(gm, reader.args[1])
        pointwise_bias = _bias(gm, reader)
        _replace_conv(gm, reader, folded, torch.cat([pointwise, pointwise], 1), pointwise_bias, 1)


def _replace_conv(gm: GraphModule, consumer: Node, source: Node, new_weight: torch.Tensor,
                  new_bias: torch.Tensor | None, new_groups: int) -> Node:
    """A conv like ``consumer`` (stride, padding, dilation) on ``source`` with new parameters, in its place."""
    graph = gm.graph
    (stride, padding, dilation), _ = _conv_params(consumer)
    with graph.inserting_before(consumer):
        w_node = _attr_node(gm, consumer, consumer.args[1].target, new_weight)
        b_node = _attr_node(gm, consumer, consumer.args[2].target, new_bias) if new_bias is not None else None
        folded = graph.call_function(_aten.conv2d.default, (source, w_node, b_node, stride, padding, dilation, new_groups))
    _copy_origin(folded, consumer)
    folded.meta["val"] = _fake(gm, consumer, _aten.conv2d.default, source, new_weight, new_bias,
                               stride, padding, dilation, new_groups)
    consumer.replace_all_uses_with(folded)
    graph.erase_node(consumer)
    return folded
