"""Run an SR graph's RGB tail before its last pixel shuffle, in the exported (aten) graph, so it quantizes.

The onnx backend's ``subpixel_tail`` + ``subpixel_compact`` rewrites do this on a float ONNX graph.
A quantized graph needs it before quantization: the new conv's weights are new tensors, and
quantizing them (and fine-tuning them in QAT) is only right on the form that is deployed.
:func:`fold_subpixel_tail`::

    pixel_shuffle(z, r) [-> prelu(a)] -> tail conv k x k (C -> O) [-> 1x1 conv] [-> affine ops]
    ==> [prelu(z, a repeated r*r times) ->] compact conv (C r^2 -> O r^2, on the LR grid)
        -> conv_transpose2d (stride r, 0/1 weights, O groups) [-> * g]

The tail is a dense conv, or a depthwise conv and the 1x1 conv that reads it (a separable conv).
Output pixel ``(r i + a, r j + b)`` of the tail reads shuffled pixel ``r i + a + dy``, which is
sub-pixel ``(a + dy) mod r`` of LR pixel ``i + floor((a + dy) / r)``; zero padding maps to zero
padding, and a per-channel PReLU commutes with the shuffle. Each output sub-pixel reads a narrower
window than the k' x k' LR kernel (2 x 2 of 3 x 3 for k = 3, r = 2): the compact conv holds only
those taps, its output one pixel larger per side, and the transposed conv puts every value in its
high-resolution place (the onnx backend's ``subpixel_compact`` form). The compact conv has no zero
taps, so QAT may train all of its weights and the graph keeps its shape.

The affine ops after the tail (a mean shift as a 1x1 conv, ``+ s``, ``- s``, ``* s``, ``/ s`` by
numbers) are folded into the compact conv, except their overall gain ``g`` (the product of the
``*`` and ``/`` factors, e.g. F2SRGAN's ``/ 255``), which stays as one ``* g`` at the end: folding
``1 / 255`` would make the weights 255x smaller, and Adam's steps (a fixed size per weight) would
then move them 255x more, relative to their size, than the float model's (300 QAT steps at lr 1e-6
took the Light F2SRGAN recipe's student from Set5 PSNR-Y 28.1 to 26.0 dB with a dense 3x3 fold
holding the /255, and to 28.4 dB with this form). The result is exact (float rounding
aside). The high-resolution C-channel map is never written: the int8 conv's output is the image's
O r^2 sub-pixel channels. Tails whose compact form needs asymmetric padding or cropping (e.g.
k = 3, r = 3) are left alone.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from attrs import define
from torch.fx import GraphModule, Node

from srcompress.backends.onnx.subpixel import CompactAxis, compact_arrays, compact_windows, crd_values, subpixel_kernel, subpixel_order

from .rewrites import (
    _attr, _attr_node, _bias, _conv_params, _copy_origin, _fake, _finish, _fresh_name, _has_bias, _own_weight_if_conv_of,
)  # fmt: skip

__all__ = ["fold_subpixel_tail"]

_aten = torch.ops.aten
_AFFINE = (_aten.mul.Tensor, _aten.div.Tensor, _aten.add.Tensor, _aten.sub.Tensor)


@define
class _Tail:
    """A foldable tail: its nodes (shuffle first), the affine ops after it, and its composed conv."""

    shuffle: Node
    prelu: Node | None
    nodes: list[Node]
    affine: list[Node]
    kernel: torch.Tensor  # (O, C, k, k), float64, without the gain
    bias: torch.Tensor  # (O,), float64, without the gain
    gain: float


def fold_subpixel_tail(gm: GraphModule, in_float: Callable[[Node], bool] | None = None) -> int:
    """Apply the rewrite of the module doc to each foldable tail of ``gm`` (in place); returns the count.

    :param in_float: tells the nodes of modules left in float; a tail whose shuffle, PReLU or convs
        are left in float is not folded (the onnx backend's float ``subpixel_tail`` rewrite then runs
        it before the shuffle). The affine ops after it may be float (a frozen mean shift): they are
        folded into the new conv, which is quantized like the tail's convs.
    """
    count = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target != _aten.pixel_shuffle.default:
            continue
        tail = _match(gm, node)
        if tail is None or (in_float is not None and any(in_float(n) for n in tail.nodes)):
            continue
        form = _compact_form(tail, int(node.args[1]))
        if form is None:
            continue
        _fold(gm, tail, form)
        count += 1
    return _finish(gm, count)


def _only_user(node: Node) -> Node | None:
    users = list(node.users)
    return users[0] if len(users) == 1 else None


def _match(gm: GraphModule, shuffle: Node) -> _Tail | None:
    nodes, current = [shuffle], _only_user(shuffle)
    prelu = None
    if current is not None and current.target == _aten.prelu.default and _attr(gm, current.args[1]) is not None:
        prelu, nodes = current, nodes + [current]
        current = _only_user(current)
    channels = shuffle.meta["val"].shape[1]
    found = _tail_conv(gm, current, nodes[-1], channels)
    if found is None:
        return None
    convs, kernel, bias = found
    nodes += convs
    mix, shift, gain, affine = _trailing_affine(gm, nodes[-1], kernel.shape[0])
    kernel, bias = torch.einsum("po,ocij->pcij", mix, kernel) / gain, (mix @ bias + shift) / gain
    if kernel.shape[0] >= channels:  # only a narrowing tail (an image tail) pays off
        return None
    return _Tail(shuffle, prelu, nodes, affine, kernel, bias, gain)


def _plain(
    gm: GraphModule, conv: Node | None, source: Node, kernel_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, int] | None:  # fmt: skip
    """(weight, bias, groups) of a stride-1, 'same'-padded conv reading ``source`` (only as its input)."""
    weight = _own_weight_if_conv_of(gm, conv, source) if conv is not None else None
    if weight is None or (_has_bias(conv) and _bias(gm, conv) is None):
        return None
    (stride, padding, dilation), groups = _conv_params(conv)
    size = weight.shape[-1]
    if weight.shape[-2] != size or size % 2 == 0 or (kernel_size is not None and size != kernel_size):
        return None
    if list(stride) != [1, 1] or list(dilation) != [1, 1] or list(padding) != [size // 2] * 2:
        return None
    bias = _bias(gm, conv)
    bias = torch.zeros(weight.shape[0], dtype=weight.dtype) if bias is None else bias
    return weight.detach().double(), bias.detach().double(), groups


def _tail_conv(
    gm: GraphModule, conv: Node | None, source: Node, channels: int,
) -> tuple[list[Node], torch.Tensor, torch.Tensor] | None:  # fmt: skip
    """(conv nodes, kernel (O, C, k, k), bias (O,)) of a dense or a separable tail reading ``source``."""
    first = _plain(gm, conv, source)
    if first is None or conv is None:
        return None
    kernel, bias, groups = first
    if groups == 1:
        return [conv], kernel, bias
    if groups != channels or kernel.shape[:2] != (channels, 1):
        return None
    reader = _only_user(conv)
    second = _plain(gm, reader, conv, kernel_size=1)
    if second is None or reader is None or second[2] != 1:
        return None
    mix, offset = second[0][:, :, 0, 0], second[1]
    return [conv, reader], mix[:, :, None, None] * kernel[None, :, 0], mix @ bias + offset


def _trailing_affine(gm: GraphModule, node: Node, channels: int) -> tuple[torch.Tensor, torch.Tensor, float, list[Node]]:
    """``(mix, shift, gain, nodes)``: the 1x1 convs and scalar arithmetic after ``node``, as
    ``mix @ x + shift``; ``gain``: the product of the scalar ``*`` and ``/`` factors among them."""
    mix, shift = torch.eye(channels, dtype=torch.float64), torch.zeros(channels, dtype=torch.float64)
    gain = 1.0
    nodes: list[Node] = []
    while True:
        user = _only_user(node)
        pointwise = _plain(gm, user, node, kernel_size=1)
        if user is not None and pointwise is not None and pointwise[2] == 1:
            weight = pointwise[0][:, :, 0, 0]
            mix, shift = weight @ mix, weight @ shift + pointwise[1]
        elif user is not None and user.target in _AFFINE and user.args[0] is node and isinstance(user.args[1], (int, float)):
            value = float(user.args[1])
            if user.target == _aten.mul.Tensor and value != 0:
                mix, shift, gain = mix * value, shift * value, gain * value
            elif user.target == _aten.div.Tensor and value != 0:
                mix, shift, gain = mix / value, shift / value, gain / value
            elif user.target in (_aten.add.Tensor, _aten.sub.Tensor) and len(user.args) == 2 and not user.kwargs:
                shift = shift + (value if user.target == _aten.add.Tensor else -value)
            else:
                break
        else:
            break
        nodes.append(user)
        node = user
    return mix, shift, gain, nodes


def _compact_form(tail: _Tail, block: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, CompactAxis, CompactAxis] | None:
    """(compact weight (O r^2, C r^2, h, w), bias (O r^2,), placement kernel (O r^2, 1, r', r'), rows,
    cols), or None when the compact conv or the placement would need asymmetric padding."""
    wide, (begin, end) = subpixel_kernel(tail.kernel.numpy(), block, "CRD")
    out_c = tail.kernel.shape[0]
    order = subpixel_order(out_c, block, "DCR")  # subpixel_kernel's rows: (a r + b) O + o
    grid = wide[order]
    windows = compact_windows(grid, (begin, end), (begin, end))
    if windows is None or any(a.pads[0] != a.pads[1] or a.crop[0] != a.crop[1] for a in windows):
        return None
    rows, cols = windows
    weight, place = compact_arrays(grid, rows, cols)
    bias = crd_values(np.tile(tail.bias.numpy(), block * block)[order])
    return torch.from_numpy(weight).float(), torch.from_numpy(bias).float(), torch.from_numpy(place).float(), rows, cols


def _fold(gm: GraphModule, tail: _Tail, form: tuple[torch.Tensor, torch.Tensor, torch.Tensor, CompactAxis, CompactAxis]) -> None:
    graph, shuffle = gm.graph, tail.shuffle
    z, block = shuffle.args[0], int(shuffle.args[1])
    weight, bias, place, rows, cols = form
    last = like = (tail.nodes + tail.affine)[-1]
    conv_origin = tail.nodes[-1]  # the tail's (last) conv: the new conv is quantized or kept float like it
    conv_args = ([1, 1], [rows.pads[0], cols.pads[0]], [1, 1], 1)
    place_args = ([block, block], [rows.crop[0], cols.crop[0]], [0, 0], weight.shape[0] // (block * block), [1, 1])
    with graph.inserting_before(shuffle):
        source = z
        if tail.prelu is not None:
            slopes = _attr(gm, tail.prelu.args[1]).detach().reshape(-1)
            slopes = slopes.expand(shuffle.meta["val"].shape[1]).repeat_interleave(block * block).contiguous()
            s_node = _attr_node(gm, like, tail.prelu.args[1].target, slopes)
            source = graph.call_function(_aten.prelu.default, (z, s_node))
            _copy_origin(source, tail.prelu)
            source.meta["val"] = _fake(gm, like, _aten.prelu.default, z, slopes)
        w_node = _attr_node(gm, like, conv_origin.args[1].target, weight)
        b_node = _attr_node(gm, like, f"{conv_origin.args[1].target}_bias", bias)
        conv = graph.call_function(_aten.conv2d.default, (source, w_node, b_node, *conv_args))
        _copy_origin(conv, conv_origin)
        conv.meta["val"] = _fake(gm, like, _aten.conv2d.default, source, weight, bias, *conv_args)
        p_node = _buffer_node(gm, like, f"{conv_origin.args[1].target}_place", place)
        out = graph.call_function(_aten.conv_transpose2d.input, (conv, p_node, None, *place_args))
        _copy_origin(out, shuffle)
        out.meta["val"] = _fake(gm, like, _aten.conv_transpose2d.input, conv, place, None, *place_args)
        if tail.gain != 1.0:
            scaled = graph.call_function(_aten.mul.Tensor, (out, tail.gain))
            _copy_origin(scaled, tail.affine[-1] if tail.affine else shuffle)
            scaled.meta["val"] = _fake(gm, like, _aten.mul.Tensor, out, tail.gain)
            out = scaled
    last.replace_all_uses_with(out)


def _buffer_node(gm: GraphModule, like: Node, base: str, value: torch.Tensor) -> Node:
    """A get_attr node of a new constant buffer (not trained) named after ``base``."""
    name = _fresh_name(gm, base)
    gm.register_buffer(name, value)
    node = gm.graph.get_attr(name)
    node.meta["val"] = like.meta["val"].fake_mode.from_tensor(value)
    return node
