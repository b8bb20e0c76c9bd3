"""The ``subpixel_tail`` rewrite (run an SR net's RGB tail before its last pixel shuffle) and
``subpixel_compact`` (drop the taps of that low-resolution conv that no sub-pixel reads).

Split from :mod:`srcompress.backends.onnx.rewrites` (which lists them in ``REWRITES``); see
:func:`subpixel_tail` and :func:`subpixel_compact` for the identities and when they apply.
"""

from __future__ import annotations

import numpy as np
import onnx
from attrs import define

from srcompress.backends.onnx.graph import (
    GraphIndex, attribute, conv_bias, conv_weight, dense_steps, feeds_quantizer, per_channel, plain_conv, pointwise_conv,
    replace_nodes, rewrite_each_shuffle, topological_sort,
)  # fmt: skip

__all__ = [
    "CompactAxis", "compact_arrays", "compact_axis", "compact_windows", "crd_values", "subpixel_compact", "subpixel_kernel", "subpixel_order",
    "subpixel_tail",
]


def subpixel_tail(model: onnx.ModelProto) -> int:
    """Move each narrow conv that reads a ``DepthToSpace`` to the low-resolution side. Returns the count.

    ``DepthToSpace(z, r) -> Conv k x k (C -> O)`` (or a depthwise k x k conv plus its 1x1 reader, the
    separable tail of F2SRGAN-like models) equals ``Conv' (C r^2 -> O r^2) on z -> DepthToSpace(r)``:
    output pixel ``(r i + a, r j + b)`` of the conv reads the shuffled pixels ``r i + a + dy``, which are
    sub-pixel ``(a + dy) mod r`` of low-resolution pixel ``i + floor((a + dy) / r)``; zero padding maps to
    zero padding. 1x1 convs and per-channel Add/Sub/Mul/Div by constants after the tail (a mean
    shift, a /255) are folded into the new conv's weights and bias. Applied where the tail narrows
    the channels, ``O < C`` (an image tail: O = 3): the high-resolution C-channel map is then never
    written, shuffled or read again, and the new output holds O/C of its values. The new conv is
    dense on the low-resolution grid (for r = 2, k = 3: 3 x 3 taps, a quarter of them nonzero), so it
    does more multiply-adds than the tail (9x for C = 8, O = 3), on a small output: ONNX Runtime CPU
    is memory-bound there (a pruned Light student with C = 8: 110 vs 145 ms, LR 320x180, 2 threads).
    Not applied where a ``QuantizeLinear`` reads the tail's output (see ``prelu_two_convs``).
    """
    count = 0
    while True:
        index = GraphIndex(model.graph)
        site = next((s for s in (_tail_site(index, n) for n in index.graph.node if n.op_type == "DepthToSpace") if s), None)
        if site is None:
            break
        _move_tail(model.graph, index, *site)
        count += 1
    if count:
        topological_sort(model.graph)
    return count


_TailSite = tuple[onnx.NodeProto, list[onnx.NodeProto], np.ndarray, np.ndarray]


def _tail_site(index: GraphIndex, d2s: onnx.NodeProto) -> _TailSite | None:
    """(DepthToSpace, convs to remove, composed dense kernel (O, C, k, k), bias (O,)) or None."""
    first = index.only_consumer(d2s.output[0])
    if first is None or first.op_type != "Conv" or first.input[0] != d2s.output[0]:
        return None
    params = plain_conv(index, first)
    if params is None:
        return None
    kernel, bias, group = params
    channels = kernel.shape[0] if group > 1 else kernel.shape[1]
    convs = [first]
    if group > 1:  # depthwise: compose with the 1x1 conv that reads it
        if group != channels or kernel.shape[1] != 1:
            return None
        second = index.only_consumer(first.output[0])
        pointwise = pointwise_conv(index, second, first.output[0])
        if pointwise is None:
            return None
        mix = pointwise[0]
        kernel = mix[:, :, None, None] * kernel[None, :, 0]
        bias = mix @ bias + pointwise[1]
        convs.append(second)  # type: ignore[arg-type]
    block = int(attribute(d2s, "blocksize"))  # type: ignore[arg-type]
    affine, mix, shift = _trailing_affine(index, convs[-1].output[0], kernel.shape[0])
    kernel, bias = np.einsum("po,ocij->pcij", mix, kernel), mix @ bias + shift
    if kernel.shape[0] >= channels or feeds_quantizer(index, (convs + affine)[-1].output[0]):
        return None
    return d2s, convs + affine, kernel, bias


def _trailing_affine(index: GraphIndex, tensor: str, channels: int) -> tuple[list[onnx.NodeProto], np.ndarray, np.ndarray]:
    """The chain of 1x1 convs and Add/Sub/Mul/Div by scalar or per-channel constants reading
    ``tensor`` (a mean shift as a 1x1 conv or an Add, a /255), as ``(nodes, mix, shift)`` with
    ``chain(x) = mix @ x + shift`` per pixel (``mix``: (channels out, ``channels``))."""
    mix, shift = np.eye(channels), np.zeros(channels)
    nodes: list[onnx.NodeProto] = []
    while True:
        node = index.only_consumer(tensor)
        pointwise = pointwise_conv(index, node, tensor)
        if pointwise is not None:
            weight, offset = pointwise
            mix, shift = weight @ mix, weight @ shift + offset
            channels = weight.shape[0]
            nodes.append(node)  # type: ignore[arg-type]
            tensor = node.output[0]  # type: ignore[union-attr]
            continue
        if node is None or node.op_type not in ("Add", "Sub", "Mul", "Div") or tensor not in node.input[:2]:
            break
        slot = 1 if node.input[0] == tensor else 0
        value = index.constant(node.input[slot])
        if value is None or value.dtype.kind != "f" or value.ndim > 4 or per_channel(value, channels) is None:
            break
        v = np.broadcast_to(value.reshape(-1).astype(np.float64), (channels,))
        if not np.all(np.isfinite(v)) or (node.op_type == "Div" and (slot == 0 or np.any(v == 0))):
            break
        if node.op_type == "Add":
            shift = shift + v
        elif node.op_type == "Mul":
            mix, shift = mix * v[:, None], shift * v
        elif node.op_type == "Div":
            mix, shift = mix / v[:, None], shift / v
        else:  # Sub: x - v, or v - x
            mix, shift = (mix, shift - v) if slot == 1 else (-mix, v - shift)
        nodes.append(node)
        tensor = node.output[0]
    return nodes, mix, shift


def subpixel_kernel(kernel: np.ndarray, block: int, mode: str) -> tuple[np.ndarray, tuple[int, int]]:
    """The low-resolution kernel of ``Conv(kernel) o DepthToSpace(block, mode)`` and its pads (begin, end).

    :param kernel: (O, C, k, k), k odd, ``same`` padding. Input channels are read in ``mode`` (CRD or
        DCR) order of ``C * block**2`` channels; output channels come out in DCR order of ``O * block**2``.
    """
    out_c, in_c, size, _ = kernel.shape
    half, r = size // 2, block
    low, high = -((half + r - 1) // r), (r - 1 + half) // r
    wide = np.zeros((out_c * r * r, in_c * r * r, high - low + 1, high - low + 1), kernel.dtype)
    channels = np.arange(in_c)
    for a in range(r):
        for b in range(r):
            rows = (a * r + b) * out_c + np.arange(out_c)
            for dy in range(-half, half + 1):
                for dx in range(-half, half + 1):
                    t, u = a + dy, b + dx
                    sub = (t % r) * r + (u % r)
                    cols = channels * r * r + sub if mode == "CRD" else sub * in_c + channels
                    wide[rows[:, None], cols[None, :], t // r - low, u // r - low] += kernel[:, :, dy + half, dx + half]
    return wide, (-low, high)


def _move_tail(
    graph: onnx.GraphProto, index: GraphIndex, d2s: onnx.NodeProto, convs: list[onnx.NodeProto],
    kernel: np.ndarray, bias: np.ndarray,
) -> None:  # fmt: skip
    """Replace ``d2s`` and ``convs`` (the tail and any folded affine ops) by Conv' -> DepthToSpace(DCR)."""
    block = int(attribute(d2s, "blocksize"))  # type: ignore[arg-type]
    wide, (begin, end) = subpixel_kernel(kernel, block, str(attribute(d2s, "mode", "DCR")))
    dtype = index.constant(convs[0].input[1]).dtype  # type: ignore[union-attr]  # plain_conv checked it
    weight_name = index.fresh_name(f"{convs[-1].name or convs[-1].output[0]}_subpixel_w")
    bias_name = index.fresh_name(f"{weight_name}_b")
    graph.initializer.extend([
        onnx.numpy_helper.from_array(wide.astype(dtype), weight_name),
        onnx.numpy_helper.from_array(np.tile(bias, block * block).astype(dtype), bias_name),
    ])
    low_res = index.fresh_name(f"{convs[-1].output[0]}_before_d2s")
    conv = onnx.helper.make_node(
        "Conv", [d2s.input[0], weight_name, bias_name], [low_res], name=f"{convs[-1].name or 'tail'}_subpixel",
        kernel_shape=list(wide.shape[2:]), pads=[begin, begin, end, end],
    )
    shuffle = onnx.helper.make_node(
        "DepthToSpace", [low_res], [convs[-1].output[0]], name=f"{d2s.name or 'd2s'}_subpixel", blocksize=block, mode="DCR"
    )
    replace_nodes(graph, index, [d2s, *convs], [conv, shuffle])


# ------------------------------------------------------------------------------ subpixel_compact


def subpixel_compact(model: onnx.ModelProto) -> int:
    """Shrink each ``Conv -> DepthToSpace`` whose sub-pixels read narrower windows than its kernel. Returns the count.

    The conv that :func:`subpixel_tail` builds (k x k at r x the resolution -> k' x k' on the low grid)
    is mostly zeros: for r = 2, k = 3 each output sub-pixel ``(a, b)`` reads a 2 x 2 window of the
    3 x 3 taps, shifted by ``(a, b)``. So the conv becomes a dense conv with the window size (2 x 2:
    4/9 of the multiply-adds; sub-pixel ``(a, b)`` of LR pixel ``(i, j)`` lands at ``(i + a, j + b)`` of
    its output, one pixel larger per side) followed by a grouped ``ConvTranspose`` (stride r, 0/1
    weights) that puts every value in its high-resolution place, as ``d2s_conv_transpose`` does for a
    plain shuffle. Every output value is the same sum of products as before (zero taps dropped) times 1,
    plus zeros. Applies to a group-1 conv with constant float weights, stride and dilation 1, read only
    by a ``DepthToSpace`` (either mode), when the windows have fewer taps than the kernel.
    """
    return rewrite_each_shuffle(model, _compact_one)


def _compact_one(index: GraphIndex, d2s: onnx.NodeProto) -> bool:
    plan = _compact_plan(index, d2s)
    if plan is not None:
        _compact(index.graph, index, d2s, *plan)
    return plan is not None


@define(frozen=True)
class CompactAxis:
    """The compact form along one spatial axis.

    ``starts[s]``: first kernel tap sub-pixel s reads; ``width``: taps of the new kernel;
    ``offsets[s]``: sub-pixel s of LR pixel i is output i + offsets[s] of the new conv; ``pads``: the
    new conv's; ``kernel``/``crop``: the ConvTranspose's kernel size and pads.
    """

    starts: tuple[int, ...]
    width: int
    offsets: tuple[int, ...]
    pads: tuple[int, int]
    kernel: int
    crop: tuple[int, int]

    def position(self, sub: int, block: int) -> int:
        """Where sub-pixel ``sub``'s 1 sits in the ConvTranspose kernel along this axis."""
        return sub - block * self.offsets[sub] + self.crop[0]


def compact_axis(reads: np.ndarray, old_pads: tuple[int, int], block: int) -> CompactAxis | None:
    """The compact form along one axis; ``reads[s, t]``: sub-pixel s has a nonzero weight at tap t."""
    hits = [np.flatnonzero(row) for row in reads]
    starts = [int(h[0]) if h.size else 0 for h in hits]
    width = max(int(h[-1]) - int(h[0]) + 1 if h.size else 1 for h in hits)
    begin = max(0, *(old_pads[0] - s for s in starts))
    offsets = [s - old_pads[0] + begin for s in starts]
    end = max(0, max(offsets) + width - 1 - begin)
    crop_begin = max(block * o - s for s, o in enumerate(offsets))
    kernel = max(s - block * o for s, o in enumerate(offsets)) + crop_begin + 1
    longer = begin + end - width + 1  # the new conv's output is this much longer than its input
    crop_end = block * (longer - 1) + kernel - crop_begin
    if crop_end < 0:
        return None
    return CompactAxis(tuple(starts), width, tuple(offsets), (begin, end), kernel, (crop_begin, crop_end))


def subpixel_order(out_channels: int, block: int, mode: str) -> np.ndarray:
    """(r, r, O) array: the conv output channel that becomes sub-pixel (a, b) of shuffled channel o."""
    o, a, b = np.meshgrid(np.arange(out_channels), np.arange(block), np.arange(block), indexing="ij")
    channel = o * block * block + a * block + b if mode == "CRD" else (a * block + b) * out_channels + o
    return channel.transpose(1, 2, 0)


_CompactPlan = tuple[onnx.NodeProto, np.ndarray, np.ndarray, CompactAxis, CompactAxis]


def _compact_plan(index: GraphIndex, d2s: onnx.NodeProto) -> _CompactPlan | None:
    """(conv, weight (r, r, O, C, kH, kW), bias (r, r, O), rows, cols) for a conv worth compacting."""
    conv = index.producer.get(d2s.input[0])
    if conv is None or conv.op_type != "Conv" or index.only_consumer(conv.output[0]) is not d2s:
        return None
    weight = conv_weight(index, conv)
    if weight is None or not dense_steps(conv) or int(attribute(conv, "group", 1)) != 1:  # type: ignore[call-overload]
        return None
    bias = conv_bias(index, conv, weight)
    block = int(attribute(d2s, "blocksize"))  # type: ignore[arg-type]
    if bias is None or weight.shape[0] % (block * block):
        return None
    order = subpixel_order(weight.shape[0] // (block * block), block, str(attribute(d2s, "mode", "DCR")))
    grid = weight[order]
    pads = list(attribute(conv, "pads", [0, 0, 0, 0]))  # type: ignore[call-overload]
    windows = compact_windows(grid, (pads[0], pads[2]), (pads[1], pads[3]))
    if windows is None or windows[0].width * windows[1].width >= weight.shape[2] * weight.shape[3]:
        return None
    return conv, grid, bias[order], *windows


def compact_windows(
    grid: np.ndarray, row_pads: tuple[int, int], col_pads: tuple[int, int],
) -> tuple[CompactAxis, CompactAxis] | None:  # fmt: skip
    """(rows, cols) of the compact form of a weight grid (r, r, O, C, kH, kW) (see :func:`subpixel_order`)
    padded by ``row_pads`` / ``col_pads`` (begin, end): the windows of taps each sub-pixel reads."""
    block, nonzero = grid.shape[0], grid != 0
    rows = compact_axis(nonzero.any(axis=(1, 2, 3, 5)), row_pads, block)
    cols = compact_axis(nonzero.any(axis=(0, 2, 3, 4)), col_pads, block)
    return None if rows is None or cols is None else (rows, cols)


def compact_arrays(grid: np.ndarray, rows: CompactAxis, cols: CompactAxis) -> tuple[np.ndarray, np.ndarray]:
    """(compact weight (O r^2, C, rows.width, cols.width), ConvTranspose kernel (O r^2, 1, kH', kW')) of a
    weight grid (r, r, O, C, kH, kW); the compact conv's output channels are in CRD order (o, a, b)."""
    block, _, out_c, in_c = grid.shape[:4]
    weight = np.zeros((out_c, block, block, in_c, rows.width, cols.width), grid.dtype)
    place = np.zeros((out_c, block, block, 1, rows.kernel, cols.kernel), np.float32)
    for a in range(block):
        for b in range(block):
            taps = grid[a, b, :, :, rows.starts[a]:rows.starts[a] + rows.width, cols.starts[b]:cols.starts[b] + cols.width]
            weight[:, a, b, :, :taps.shape[2], :taps.shape[3]] = taps
            place[:, a, b, 0, rows.position(a, block), cols.position(b, block)] = 1
    n = out_c * block * block
    return weight.reshape(n, in_c, rows.width, cols.width), place.reshape(n, 1, rows.kernel, cols.kernel)


def crd_values(per_channel_grid: np.ndarray) -> np.ndarray:
    """A per-channel array in grid order (r, r, O) (bias, scales) as the compact conv's CRD order."""
    return per_channel_grid.transpose(2, 0, 1).reshape(-1)


def _compact(
    graph: onnx.GraphProto, index: GraphIndex, d2s: onnx.NodeProto, conv: onnx.NodeProto,
    grid: np.ndarray, bias: np.ndarray, rows: CompactAxis, cols: CompactAxis,
) -> None:  # fmt: skip
    """Replace ``conv`` and ``d2s`` by the compact conv (output channels in CRD order) and a ConvTranspose."""
    block, _, out_c = grid.shape[:3]
    weight, place = compact_arrays(grid, rows, cols)
    base = conv.name or conv.output[0]
    names = [index.fresh_name(f"{base}_compact_{suffix}") for suffix in ("w", "b", "out", "place")]
    graph.initializer.extend([
        onnx.numpy_helper.from_array(weight, names[0]),
        onnx.numpy_helper.from_array(crd_values(bias).astype(grid.dtype), names[1]),
        onnx.numpy_helper.from_array(place.astype(grid.dtype), names[3]),
    ])
    compact = onnx.helper.make_node(
        "Conv", [conv.input[0], names[0], names[1]], [names[2]], name=f"{base}_compact",
        kernel_shape=[rows.width, cols.width], pads=[rows.pads[0], cols.pads[0], rows.pads[1], cols.pads[1]],
    )
    spread = onnx.helper.make_node(
        "ConvTranspose", [names[2], names[3]], list(d2s.output), name=f"{d2s.name or 'd2s'}_compact",
        kernel_shape=[rows.kernel, cols.kernel], strides=[block, block], group=out_c,
        pads=[rows.crop[0], cols.crop[0], rows.crop[1], cols.crop[1]],
    )
    replace_nodes(graph, index, [conv, d2s], [compact, spread])
