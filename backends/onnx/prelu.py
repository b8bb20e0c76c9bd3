"""The PRelu rewrites: ONNX Runtime's PRelu kernel is slow, these compute the same values faster.

Split from :mod:`srcompress.backends.onnx.rewrites` (which lists them in ``REWRITES``):

- ``prelu_scalar_to_leaky_relu``: a PRelu with one slope as ``LeakyRelu`` (fused into the conv before it);
- ``prelu_flip_steep``: slopes > 1 become slopes < 1 by negating those channels around the PRelu,
  so that the two below apply to PReLUs whose trained slopes are mixed;
- ``prelu_split_depthwise``: ``PRelu -> depthwise Conv`` as ``Relu`` and two copies of the conv;
- ``prelu_two_convs``: ``Conv -> PRelu`` as two convs ONNX Runtime fuses (slopes <= 1);
- ``prelu_to_max``: ``PRelu`` as ``Mul + Max`` (slopes all <= 1) or ``Mul + Min`` (all >= 1).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import numpy as np
import onnx
from attrs import define

from srcompress.backends.onnx.graph import (
    GraphIndex, attribute, conv_bias, conv_weight, feeds_quantizer, per_channel, replace_nodes, rewrite_each,
    topological_sort,
)  # fmt: skip

__all__ = [
    "SPLIT_MAX_FAN_IN", "SPLIT_PRODUCERS", "TWO_CONVS_MAX_FAN_IN", "prelu_flip_steep", "prelu_scalar_to_leaky_relu", "prelu_split_depthwise",
    "prelu_to_max", "prelu_two_convs",
]


# -------------------------------------------------------------------------------- prelu_flip_steep


def prelu_flip_steep(model: onnx.ModelProto) -> int:
    """Make every slope of ``Conv -> PRelu(a) -> Conv(s)`` at most 1 by negating the steep channels. Returns the count.

    For a > 0, ``prelu_a(y) = -a * prelu_{1/a}(-y)``. So for each channel with a > 1 the producing
    conv's weights and bias are negated (it computes -y), the slope becomes 1/a, and the factor -a
    goes into the weights of every conv that reads the PRelu (input channel c scaled by -a_c). The
    PRelu then has slopes all <= 1, where ``prelu_two_convs`` and ``prelu_to_max`` apply instead of
    ONNX Runtime's PRelu kernel (~3.6x slower than Mul + Max; the pruned Light student's three
    mixed-slope PReLUs took 14 of its 171 ms kernel time at LR 320x180). Applied where the producer
    is a conv read only by the PRelu, with constant float weights and bias, the slopes are per
    channel or a scalar, and only convs with constant weights read the PRelu's output.
    """
    return _rewrite_each(model, _steep_site, _flip)


_Site = TypeVar("_Site")


def _rewrite_each(
    model: onnx.ModelProto,
    find: Callable[[GraphIndex, onnx.NodeProto], _Site | None],
    rewrite: Callable[[GraphIndex, onnx.NodeProto, _Site], None],
) -> int:
    """Call ``rewrite`` on each PRelu for which ``find`` returns a site; returns the count."""
    index = GraphIndex(model.graph)
    count = 0
    for prelu in [n for n in model.graph.node if n.op_type == "PRelu"]:
        site = find(index, prelu)
        if site is not None:
            rewrite(index, prelu, site)
            count += 1
    return count


@define(frozen=True)
class _ConvPRelu:
    """``Conv -> PRelu`` with constant float weights, bias and slopes, the conv read only by the PRelu."""

    conv: onnx.NodeProto
    weight: np.ndarray  # (O, C/g, kh, kw)
    bias: np.ndarray  # (O,), zeros when the conv has none
    slopes: np.ndarray  # (O,), in the weight's dtype
    slope_shape: tuple[int, ...]  # the PRelu's per-channel slope shape ((O, 1, 1) for a scalar slope)


def _conv_prelu(index: GraphIndex, prelu: onnx.NodeProto) -> _ConvPRelu | None:
    """The conv feeding ``prelu`` with its constants, when both are plain enough to rewrite; else None."""
    conv, slope = index.producer.get(prelu.input[0]), index.constant(prelu.input[1])
    if conv is None or conv.op_type != "Conv" or slope is None or index.only_consumer(conv.output[0]) is not prelu:
        return None
    weight = conv_weight(index, conv)
    bias = None if weight is None else conv_bias(index, conv, weight)
    if weight is None or bias is None:
        return None
    channels = weight.shape[0]
    if slope.size != 1 and per_channel(slope, channels) is not True:
        return None
    slopes = np.broadcast_to(slope.reshape(-1), (channels,)).astype(weight.dtype)
    shape = slope.shape if slope.size == channels else (channels, 1, 1)
    return _ConvPRelu(conv, weight, bias, slopes, tuple(shape))


_SteepSite = tuple[_ConvPRelu, list[onnx.NodeProto]]  # and the convs reading the PRelu's output


def _steep_site(index: GraphIndex, prelu: onnx.NodeProto) -> _SteepSite | None:
    """The site around ``prelu`` when it has slopes > 1 that can be flipped, else None."""
    found = _conv_prelu(index, prelu)
    if found is None or not np.any(found.slopes > 1):
        return None
    readers = index.consumers.get(prelu.output[0], [])
    if prelu.output[0] in index.outputs or not readers:
        return None
    if not all(_reads_as_data(index, r, prelu.output[0], len(found.slopes)) for r in readers):
        return None
    return found, readers


def _reads_as_data(index: GraphIndex, node: onnx.NodeProto, tensor: str, channels: int) -> bool:
    """Whether ``node`` is a 2-D conv reading ``tensor`` only as its data input, with constant float weights."""
    if node.op_type != "Conv" or node.input[0] != tensor or tensor in node.input[1:]:
        return False
    weight = conv_weight(index, node)
    return weight is not None and weight.shape[1] * int(attribute(node, "group", 1)) == channels  # type: ignore[call-overload]


def _flip(index: GraphIndex, prelu: onnx.NodeProto, found: _SteepSite) -> None:
    site, readers = found
    steep = site.slopes > 1
    sign = np.where(steep, -1, 1).astype(site.weight.dtype)
    index.replace_initializer(site.conv, 1, site.weight * sign[:, None, None, None], "flipped")
    if len(site.conv.input) > 2 and site.conv.input[2]:
        index.replace_initializer(site.conv, 2, site.bias * sign, "flipped")
    flipped = np.where(steep, 1 / np.where(steep, site.slopes, 1), site.slopes).astype(site.slopes.dtype)
    index.replace_initializer(prelu, 1, flipped.reshape(site.slope_shape), "flipped")
    factor = np.where(steep, -site.slopes, 1).astype(site.slopes.dtype)
    for reader in readers:
        kernel = conv_weight(index, reader)
        assert kernel is not None  # checked by _reads_as_data
        groups = int(attribute(reader, "group", 1))  # type: ignore[call-overload]
        grouped = kernel.reshape(groups, kernel.shape[0] // groups, *kernel.shape[1:])
        scaled = grouped * factor.reshape(groups, 1, -1, 1, 1)  # input channel c = group * (C / g) + j
        index.replace_initializer(reader, 1, scaled.reshape(kernel.shape), "flipped")


# ------------------------------------------------------------------------- prelu_scalar_to_leaky_relu


def prelu_scalar_to_leaky_relu(model: onnx.ModelProto) -> int:
    """Replace each PRelu whose slope is one constant by ``LeakyRelu(alpha=slope)``. Returns the count.

    The same function (``x`` for x >= 0, ``slope * x`` below; ``torch.nn.PReLU()``'s default single
    slope exports this way), but ONNX Runtime fuses a LeakyRelu into the conv before it (its CPU conv
    kernels apply it to their output tile), where a PRelu runs as its own pass over the map, or as
    two convs after ``prelu_two_convs``. Runs before the other PRelu rewrites.
    """
    index = GraphIndex(model.graph)
    count = 0
    for node in model.graph.node:
        slope = index.constant(node.input[1]) if node.op_type == "PRelu" else None
        if slope is None or slope.size != 1 or slope.dtype.kind != "f" or not np.isfinite(slope).all():
            continue
        alpha = float(slope.reshape(-1)[0])
        name = node.input[1]
        del node.input[1:]
        del node.attribute[:]
        node.op_type = "LeakyRelu"
        node.attribute.append(onnx.helper.make_attribute("alpha", alpha))
        index.consumers[name].remove(node)
        if name in index.initializers and index.use_count(name) == 0:  # no other node reads the slope
            model.graph.initializer.remove(index.initializers.pop(name))
        count += 1
    return count


# ------------------------------------------------------------------------------------ prelu_to_max


def prelu_to_max(model: onnx.ModelProto) -> int:
    """Replace each PRelu with constant slopes all <= 1 (or all >= 1) by Mul + Max (Min). Returns the count."""
    index = GraphIndex(model.graph)
    nodes: list[onnx.NodeProto] = []
    count = 0
    for node in model.graph.node:
        slope = index.constant(node.input[1]) if node.op_type == "PRelu" else None
        pick = None if slope is None else ("Max" if np.all(slope <= 1) else "Min" if np.all(slope >= 1) else None)
        if pick is None:  # not a PRelu, a variable slope, mixed slopes (or NaN): kept
            nodes.append(node)
            continue
        x, out, name = node.input[0], node.output[0], node.name or node.output[0]
        scaled = index.reserve_name(f"{out}_scaled", node)
        nodes.append(onnx.helper.make_node("Mul", [x, node.input[1]], [scaled], name=f"{name}_mul"))
        nodes.append(onnx.helper.make_node(pick, [x, scaled], [out], name=f"{name}_{pick.lower()}"))
        count += 1
    if count:
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    return count


# ---------------------------------------------------------------------------------- prelu_two_convs

#: prelu_two_convs applies where the conv before the PRelu reads at most this many inputs per output
#: (input channels per group x kernel area): there, computing the conv twice costs less than the
#: PRelu's elementwise passes and layout reorders in ONNX Runtime's blocked (NCHWc) CPU kernels.
#: Measured (ORT CPU, 2 threads, 320x180): at 64 (every 1x1 conv of the F2SRGAN family) F2SRGAN runs
#: 0.89x, Light F2SRGAN 0.82x, the pruned Light student 0.84x the time of prelu_to_max alone.
TWO_CONVS_MAX_FAN_IN = 64


def prelu_two_convs(model: onnx.ModelProto) -> int:
    """Replace ``Conv(x, W, b) -> PRelu(a)`` (all a <= 1) by two convs that ONNX Runtime fuses. Returns the count.

    ``prelu(y) = a * y + relu((1 - a) * y)`` for ``1 - a >= 0``, and both terms are convs of ``x``:
    ``Conv(x, a W, a b) + Relu(Conv(x, (1 - a) W, (1 - a) b))``. ONNX Runtime fuses the Relu into
    its conv and the Add into the other conv's sum input, so no elementwise pass is left. Applied
    only where the conv is narrow (fan-in <= :data:`TWO_CONVS_MAX_FAN_IN`: the 1x1 convs of separable
    convs with up to 64 channels); elsewhere ``prelu_to_max`` handles the PRelu. Not applied where a
    ``QuantizeLinear`` reads the PRelu (directly or after a shuffle): the two convs round differently
    from one (1e-7 relative), and a value on a rounding boundary of the quantizer then moves a whole
    integer step (0.145 on the released KD student's PTQ graph, whose body convs stay float);
    ``prelu_to_max`` is bit-exact there.
    """
    count = _rewrite_each(model, _two_conv_site, _split_into_two_convs)
    if count:
        topological_sort(model.graph)
    return count


def _two_conv_site(index: GraphIndex, prelu: onnx.NodeProto) -> _ConvPRelu | None:
    """The conv and PRelu when the conv is narrow and every slope is at most 1, else None."""
    found = _conv_prelu(index, prelu)
    if found is None or int(np.prod(found.weight.shape[1:])) > TWO_CONVS_MAX_FAN_IN or not np.all(found.slopes <= 1):
        return None
    if feeds_quantizer(index, prelu.output[0]):
        return None
    return found


def _split_into_two_convs(index: GraphIndex, prelu: onnx.NodeProto, site: _ConvPRelu) -> None:
    conv, weight, bias, slope = site.conv, site.weight, site.bias, site.slopes
    graph = index.graph
    keep = (1 - slope).astype(weight.dtype)
    names = {}
    for tag, factor in (("linear", slope), ("relu", keep)):
        w = index.reserve_name(f"{conv.input[1]}_{tag}", conv)
        b = index.reserve_name(f"{w}_b", conv)
        graph.initializer.extend([
            onnx.numpy_helper.from_array((weight * factor[:, None, None, None]).astype(weight.dtype), w),
            onnx.numpy_helper.from_array((bias * factor).astype(weight.dtype), b),
        ])
        names[tag] = (w, b, index.reserve_name(f"{prelu.output[0]}_{tag}", conv))
    convs = {}
    for tag in ("linear", "relu"):
        w, b, out = names[tag]
        convs[tag] = onnx.helper.make_node("Conv", [conv.input[0], w, b], [out], name=f"{conv.name or conv.output[0]}_{tag}")
        convs[tag].attribute.extend(conv.attribute)
    relu_out = index.reserve_name(f"{prelu.output[0]}_relu_act", conv)
    # relu branch first and as the Add's first input: ORT then fuses the Add into the linear conv's
    # sum input (measured 62.5 vs 68 ms for the other order on a 16 -> 64 conv at 360 x 640)
    nodes = [
        convs["relu"],
        onnx.helper.make_node("Relu", [names["relu"][2]], [relu_out], name=f"{prelu.name or prelu.output[0]}_relu"),
        convs["linear"],
        onnx.helper.make_node("Add", [relu_out, names["linear"][2]], [prelu.output[0]], name=f"{prelu.name or prelu.output[0]}_sum"),
    ]
    replace_nodes(graph, index, [conv, prelu], nodes)


# ---------------------------------------------------------------------------- prelu_split_depthwise

#: prelu_split_depthwise applies where every conv reading the PRelu reads at most this many inputs
#: per output (input channels per group x kernel area): depthwise convs up to 5x5. There, running
#: the reader twice costs less than the PRelu's own passes (or a second copy of a wide conv before it).
SPLIT_MAX_FAN_IN = 25

#: Producers of the PRelu's input for which prelu_split_depthwise applies (see its docstring); an Add
#: is what the split leaves after a reader (ORT fuses it into the second copy's sum input).
SPLIT_PRODUCERS = frozenset({"Conv", "Concat", "Add"})


def prelu_split_depthwise(model: onnx.ModelProto) -> int:
    """Replace ``PRelu(x, a) -> Conv_i`` (every reader a narrow conv) by ``Relu`` and two convs per reader. Returns the count.

    ``prelu(x) = (1 - a) relu(x) + a x`` for any slope, and a conv is linear in its input, so each
    reader ``C(prelu(x)) = C_r(relu(x)) + C_l(x)``, where ``C_r`` and ``C_l`` are ``C`` with input
    channel ``c`` of their weights scaled by ``1 - a_c`` and ``a_c`` (the bias goes to ``C_r``; zero
    padding pads ``prelu(x)``, ``relu(x)`` and ``x`` alike). ONNX Runtime runs the Relu in its
    blocked (NCHWc) layout and fuses the Add into the second conv's sum input, so the PRelu's
    ``Mul + Max`` passes and their layout reorders go, for one more pass of a narrow conv (ORT's
    depthwise kernel with a sum input runs ~2x slower than without: 3.4 vs 1.5 ms on 64 x 180 x 320).

    Applied where the slopes are constant (per channel or one), every reader is a conv taking the
    PRelu's output as its data input with constant float weights and a fan-in of at most
    :data:`SPLIT_MAX_FAN_IN`, no reader's output feeds a ``QuantizeLinear`` (two convs round
    differently from one; see ``prelu_two_convs``), the PRelu's output is not a graph output, and
    its input comes from a ``Conv``, ``Concat`` or ``Add`` (:data:`SPLIT_PRODUCERS`: ops ONNX Runtime
    keeps in its blocked layout after convs). After a ``DequantizeLinear`` the split is slower: ONNX Runtime gives each
    reader its own dequantizer and runs the Relu before the layout change (an INT8 student's
    float tail: 82.7 against 79.1 ms with ``prelu_to_max``, 2 threads).

    Runs before ``prelu_two_convs``: for a PRelu between a wide conv (a 1x1 over 64 channels) and a
    depthwise one, the second pass of the depthwise conv is the cheaper copy. Measured (ORT CPU,
    2 threads, LR 320x180, interleaved): F2SRGAN 577 against 596 ms (its FFC blocks' PReLUs, after
    a Concat, had no conv to split into), the pruned Light student 88.7 against 91.5 ms.
    """
    return rewrite_each(model, "PRelu", _split_one)  # a fresh index: a split reader may be the next PRelu's producer


@define(frozen=True)
class _SplitSite:
    slopes: np.ndarray  # (C,), in the readers' weight dtype
    readers: list[onnx.NodeProto]


def _split_site(index: GraphIndex, prelu: onnx.NodeProto) -> _SplitSite | None:
    """The PRelu's slopes and its conv readers when all of them can be split, else None."""
    slope = index.constant(prelu.input[1])
    readers = index.consumers.get(prelu.output[0], [])
    producer = index.producer.get(prelu.input[0])
    if slope is None or slope.dtype.kind != "f" or prelu.output[0] in index.outputs or not readers:
        return None
    if producer is None or producer.op_type not in SPLIT_PRODUCERS:
        return None
    weight = conv_weight(index, readers[0]) if readers[0].op_type == "Conv" else None
    if weight is None:
        return None
    channels = weight.shape[1] * int(attribute(readers[0], "group", 1))  # type: ignore[call-overload]
    if slope.size != 1 and per_channel(slope, channels) is not True:
        return None
    for reader in readers:
        if not _reads_as_data(index, reader, prelu.output[0], channels):
            return None
        kernel = conv_weight(index, reader)
        assert kernel is not None  # checked by _reads_as_data
        if conv_bias(index, reader, kernel) is None or int(np.prod(kernel.shape[1:])) > SPLIT_MAX_FAN_IN:
            return None
        if feeds_quantizer(index, reader.output[0]):
            return None
    return _SplitSite(np.broadcast_to(slope.reshape(-1), (channels,)).astype(weight.dtype), readers)


def _split_one(index: GraphIndex, prelu: onnx.NodeProto) -> bool:
    site = _split_site(index, prelu)
    if site is not None:
        _split_readers(index, prelu, site)
    return site is not None


def _split_readers(index: GraphIndex, prelu: onnx.NodeProto, site: _SplitSite) -> None:
    graph = index.graph
    name = prelu.name or prelu.output[0]
    relu_out = index.reserve_name(f"{prelu.output[0]}_relu", prelu)
    nodes = [onnx.helper.make_node("Relu", [prelu.input[0]], [relu_out], name=f"{name}_relu")]
    for reader in site.readers:
        nodes.extend(_split_conv(index, reader, relu_out, prelu.input[0], site.slopes))
    replace_nodes(graph, index, [prelu, *site.readers], nodes)


def _split_conv(index: GraphIndex, conv: onnx.NodeProto, relu: str, raw: str, slopes: np.ndarray) -> list[onnx.NodeProto]:
    """``conv`` as ``Conv_r(relu) + Conv_l(raw)`` (input channels scaled by ``1 - a`` and ``a``)."""
    weight = conv_weight(index, conv)
    assert weight is not None  # checked by _split_site
    bias = conv_bias(index, conv, weight)
    assert bias is not None  # checked by _split_site
    groups = int(attribute(conv, "group", 1))  # type: ignore[call-overload]
    grouped = weight.reshape(groups, weight.shape[0] // groups, *weight.shape[1:])
    base = conv.name or conv.output[0]
    convs = []
    for tag, factor, data in (("relu", 1 - slopes, relu), ("linear", slopes, raw)):
        scaled = (grouped * factor.reshape(groups, 1, -1, 1, 1)).reshape(weight.shape).astype(weight.dtype)
        w = index.reserve_name(f"{conv.input[1]}_{tag}", conv)
        graph_inputs = [data, w]
        index.graph.initializer.append(onnx.numpy_helper.from_array(scaled, w))
        if tag == "relu" and len(conv.input) > 2 and conv.input[2]:
            b = index.reserve_name(f"{w}_b", conv)
            index.graph.initializer.append(onnx.numpy_helper.from_array(bias.astype(weight.dtype), b))
            graph_inputs.append(b)
        out = index.reserve_name(f"{conv.output[0]}_{tag}", conv)
        node = onnx.helper.make_node("Conv", graph_inputs, [out], name=f"{base}_{tag}")
        node.attribute.extend(conv.attribute)
        convs.append(node)
    # the relu branch first and as the Add's first input, as in prelu_two_convs (ORT fuses the Add
    # into the second conv's sum input)
    add = onnx.helper.make_node("Add", [convs[0].output[0], convs[1].output[0]], [conv.output[0]], name=f"{base}_sum")
    return [*convs, add]
