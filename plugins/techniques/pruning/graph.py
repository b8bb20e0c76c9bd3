"""torch-pruning's dependency graph, made SR-aware: PixelShuffle index mapping and named channel groups.

torch-pruning traces ``PixelShuffle`` as an element-wise op (channel ``j`` in, channel ``j`` out),
but a shuffle by ``r`` turns input channels ``r*r*c .. r*r*c + r*r - 1`` into output channel ``c``
(``PixelUnshuffle`` the reverse). :func:`build_graph` replaces the index mapping on the edges of
every (un)shuffle node, so a channel removed after the shuffle removes its whole block of ``r*r``
channels before it. A group through a shuffle is rooted at the conv feeding it and selected in
blocks of ``r*r`` root channels (one channel after the shuffle each), so every removal is exact.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
import torch_pruning as tp
from attrs import define, field
from torch import nn
from torch.overrides import TorchFunctionMode
from torch_pruning._helpers import _HybridIndex

from .errors import PruningError

__all__ = [
    "ChannelGroup",
    "PruningGraph",
    "build_graph",
    "shuffle_factor",
]

_ROOT_TYPES = (nn.modules.conv._ConvNd, nn.Linear)


class _BlockIndexMapping:
    """Index mapping across a (un)shuffle edge: ``expand`` c -> r*r*c .. r*r*c + r*r - 1, else j -> j // (r*r).

    Collapsing keeps each channel once (torch-pruning's group merge does not de-duplicate a
    dependency's first index list), tagged with the root index of its block's first member.
    """

    def __init__(self, block: int, expand: bool) -> None:
        self.block = block
        self.expand = expand

    def __call__(self, idxs: Sequence[_HybridIndex]) -> list[_HybridIndex]:
        if self.expand:
            return [_HybridIndex(idx=i.idx * self.block + k, root_idx=i.root_idx) for i in idxs for k in range(self.block)]
        collapsed: dict[int, _HybridIndex] = {}
        for i in idxs:  # one entry per channel, tagged with its block's first root index
            collapsed.setdefault(i.idx // self.block, _HybridIndex(idx=i.idx // self.block, root_idx=i.root_idx))
        return list(collapsed.values())


def shuffle_factor(node: Any) -> tuple[int, bool] | None:
    """``(r, True)`` for a PixelShuffle(r) node, ``(r, False)`` for PixelUnshuffle(r), else None."""
    grad_fn = node.grad_fn
    name = grad_fn.name() if grad_fn is not None and hasattr(grad_fn, "name") else ""
    if name.startswith("PixelShuffleBackward"):
        return int(grad_fn._saved_upscale_factor), True
    if name.startswith("PixelUnshuffleBackward"):
        return int(grad_fn._saved_downscale_factor), False
    return None


def _map_pixel_shuffles(graph: tp.DependencyGraph) -> None:
    for node in graph.module2node.values():
        found = shuffle_factor(node)
        if found is None:
            continue
        factor, is_shuffle = found
        block = factor * factor
        wide_side = node.inputs if is_shuffle else node.outputs  # the r*r-times-more-channels side
        for other in wide_side:
            for dep in node.dependencies:
                if dep.target is other:
                    dep.index_mapping[0] = _BlockIndexMapping(block, expand=True)
            for dep in other.dependencies:
                if dep.target is node:
                    dep.index_mapping[0] = _BlockIndexMapping(block, expand=False)


@define(eq=False)
class ChannelGroup:
    """One prunable channel dimension: every layer it couples, with all its channels.

    The root is always a conv or linear layer (torch-pruning's estimators score a group in its
    root's output channels). ``name``: the group's first layer producing the channels (or the
    residual_inner hint naming that layer); ``root``/``root_fn``: root layer and its pruning
    function; ``group``: the full ``torch_pruning`` group (all channels, with ``root_idxs``);
    ``layers``: names of the layers whose output channels it removes; ``touched``: every layer it
    changes. ``blocks``: for a group through a PixelShuffle(r), the root channels that form one
    channel after the shuffle (r*r each); channels are selected and removed a block at a time, and
    ``size`` counts blocks. Without a shuffle, ``blocks`` is None and ``size`` counts root channels.
    """

    name: str
    root: nn.Module
    root_fn: Any
    size: int
    group: Any
    layers: tuple[str, ...]
    touched: tuple[str, ...]
    blocks: list[list[int]] | None = None

    def root_indices(self, selected: Sequence[int]) -> list[int]:
        """Root channel indices of the selected channels (or blocks)."""
        if self.blocks is None:
            return sorted(int(i) for i in selected)
        return sorted(j for i in selected for j in self.blocks[int(i)])

    def reduce_scores(self, scores: torch.Tensor) -> torch.Tensor:
        """Scores per root channel -> per selectable unit (blocks are summed)."""
        if self.blocks is None:
            return scores
        return torch.stack([scores[block].sum() for block in self.blocks])


@define(eq=False)
class PruningGraph:
    """A model's dependency graph plus the nodes of tapped modules' outputs."""

    model: nn.Module
    dg: tp.DependencyGraph
    outputs: dict[str, Any] = field(factory=dict)
    output_channels: dict[str, int] = field(factory=dict)
    output_shape: tuple[int, ...] = ()
    unreached: dict[str, str] = field(factory=dict)

    # ------------------------------------------------------------------------------- names
    def name_of(self, module: Any) -> str | None:
        """Qualified name of a module of the model (None for torch-pruning's ops and raw parameters)."""
        if isinstance(module, nn.Parameter):
            return None
        return self.dg._module2name.get(module)

    def describe(self, item: Any) -> str:
        """A layer's name, a raw parameter's name (``mix.weight``), or an op's description."""
        if item.dep.target.type == tp.ops.OPTYPE.PARAMETER:
            return self.dg._param_to_name.get(item.dep.target.module, "parameter")
        name = self.name_of(item.dep.target.module)
        return name if name is not None else str(item.dep.target.name)

    def removes_outputs(self, item: Any) -> bool:
        return self.dg.is_out_channel_pruning_fn(item.dep.handler)

    def _producers(self, group: Any) -> list[nn.Module]:
        """Non-depthwise conv/linear layers whose output channels ``group`` removes, in group order."""
        found = []
        for item in group.items:
            module = item.dep.target.module
            if _is_producer(module) and self.removes_outputs(item) and module not in found:
                found.append(module)
        return found

    def _full_group(self, root: Any, size: int) -> Any:
        return self.dg.get_pruning_group(root, self.dg.get_pruner_of_module(root).prune_out_channels, list(range(size)))

    # ------------------------------------------------------------------------------- groups
    def group_at(self, root: nn.Module, name: str | None = None) -> ChannelGroup | str:
        """The full group of ``root``'s output channels, or why it cannot be pruned (a string).

        A group through a PixelShuffle is re-rooted at the conv feeding the narrowest shuffle and
        gets ``blocks``.
        """
        size = self.dg.get_out_channels(root)
        group = self._full_group(root, size)
        blocks = None
        shuffle = self._narrowest_shuffle(group)
        if shuffle is not None:
            found = self._shuffle_blocks(*shuffle)
            if isinstance(found, str):
                return found
            root, blocks = found
            group = self._full_group(root, self.dg.get_out_channels(root))
            size = len(blocks)
        layers = tuple(dict.fromkeys(
            self.name_of(item.dep.target.module) for item in group.items
            if self.removes_outputs(item) and self.name_of(item.dep.target.module) is not None
        ))
        touched = tuple(dict.fromkeys(self.describe(item) for item in group.items if self._is_layer(item)))
        label = name if name is not None and _is_producer(_module_named(self.model, name)) and name in layers \
            else _first_producer(self.model, layers)
        return ChannelGroup(name=label, root=root, root_fn=self.dg.get_pruner_of_module(root).prune_out_channels,
                            size=size, group=group, layers=layers, touched=touched, blocks=blocks)

    def _is_layer(self, item: Any) -> bool:
        target = item.dep.target
        return self.name_of(target.module) is not None or target.type == tp.ops.OPTYPE.PARAMETER

    def _narrowest_shuffle(self, group: Any) -> tuple[Any, int] | None:
        best: tuple[Any, int] | None = None
        for item in group.items:
            if shuffle_factor(item.dep.target) is None:
                continue
            count = len({int(i) for i in item.idxs})
            if best is None or count < best[1]:
                best = (item.dep.target.module, count)
        return best

    def _shuffle_blocks(self, shuffle: Any, channels: int) -> tuple[nn.Module, list[list[int]]] | str:
        """The conv feeding ``shuffle`` and, per channel after the shuffle, its output channels."""
        narrow = self._full_group(shuffle, channels)
        for item in narrow.items:
            module = item.dep.target.module
            if not (_is_producer(module) and self.removes_outputs(item)):
                continue
            width = self.dg.get_out_channels(module)
            if len(item.idxs) <= channels or width is None:
                continue  # a layer after the shuffle
            blocks: list[list[int]] = [[] for _ in range(channels)]
            for idx, root in zip(item.idxs, item.root_idxs):
                blocks[int(root)].append(int(idx))
            sizes = {len(b) for b in blocks}
            covered = sorted(i for b in blocks for i in b)
            if len(sizes) != 1 or covered != list(range(width)):
                return f"'{self.name_of(module)}' does not feed the PixelShuffle alone (its channels do not form r*r blocks)"
            return module, [sorted(b) for b in blocks]
        return "no conv or linear layer feeds the PixelShuffle directly"

    def _split(self, group: Any, name: str | None) -> Iterator[ChannelGroup | tuple[str, str]]:
        """``group`` as groups rooted at the layers producing its channels (one, unless a concat
        joins several producers: an FFC's local and global outputs give two)."""
        covered: set[Any] = set()
        producers = self._producers(group)
        if not producers:
            label = name or (self.describe(group.items[0]) if group.items else "?")
            yield label, "no conv or linear layer produces these channels (e.g. the input image's)"
        for producer in producers:
            if producer in covered:
                continue
            found = self.group_at(producer, name=name)
            if isinstance(found, str):
                covered.add(producer)
                yield self.name_of(producer) or str(producer), found
                continue
            covered.update(item.dep.target.module for item in found.group.items if self.removes_outputs(item))
            yield found

    def groups_of_outputs(self, names: Iterable[str]) -> Iterator[ChannelGroup | tuple[str, str]]:
        """The groups of each tapped module's output channels (e.g. residual blocks' inner widths).

        Unprunable ones come as (name, reason).
        """
        for name in names:
            if name in self.unreached:
                yield name, self.unreached[name]
                continue
            module = self.outputs[name].module
            yield from self._split(self._full_group(module, self.output_channels[name]), name)

    def all_groups(self) -> Iterator[ChannelGroup | tuple[str, str]]:
        """Every group of coupled output channels of the model's conv and linear layers, each once."""
        seen: set[Any] = set()
        for module in list(self.dg.module2node):
            if not isinstance(module, _ROOT_TYPES) or module in seen or not self.dg.get_out_channels(module):
                continue
            group = self._full_group(module, self.dg.get_out_channels(module))
            seen.update(item.dep.target.module for item in group.items if self.removes_outputs(item))
            seen.add(module)
            yield from self._split(group, None)


def _module_named(model: nn.Module, name: str) -> Any:
    try:
        return model.get_submodule(name)
    except AttributeError:
        return None


def _is_producer(module: Any) -> bool:
    if isinstance(module, nn.modules.conv._ConvNd):
        return not (module.groups > 1 and module.groups == module.out_channels)
    return isinstance(module, nn.Linear)


def _first_producer(model: nn.Module, layers: Sequence[str]) -> str:
    """The first of ``layers`` in the model's definition order, preferring non-depthwise layers."""
    order = {name: i for i, (name, _m) in enumerate(model.named_modules())}
    modules = dict(model.named_modules())

    def key(name: str) -> tuple[int, int]:
        module = modules.get(name)
        depthwise = isinstance(module, nn.modules.conv._ConvNd) and module.groups > 1 and module.groups == module.out_channels
        return (1 if depthwise else 0, order.get(name, len(order)))

    return min(layers, key=key)


def _forward_in(mode: TorchFunctionMode) -> Any:
    def forward(model: nn.Module, inputs: Any) -> Any:
        with mode:
            return model(*inputs)
    return forward


def _first_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)):
        for item in value:
            found = _first_tensor(item)
            if found is not None:
                return found
    return None


class _ConcatSizes(TorchFunctionMode):
    """Records the channel sizes of every ``torch.cat`` along dim 1 while the graph is traced.

    torch-pruning infers them by walking the graph, which fails (``None``) on feedback loops such as
    SRFBN's; the traced sizes are exact.
    """

    _CATS = (torch.cat, torch.concat, torch.concatenate)

    def __init__(self) -> None:
        super().__init__()
        self.sizes: dict[Any, list[int]] = {}

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func in self._CATS and isinstance(out, torch.Tensor) and out.grad_fn is not None and out.dim() > 1:
            tensors = args[0] if args else kwargs.get("tensors", ())
            dim = args[1] if len(args) > 1 else kwargs.get("dim", kwargs.get("axis", 0))
            if dim % out.dim() == 1:
                self.sizes[out.grad_fn] = [int(t.shape[1]) for t in tensors]
        return out


class _TracedGraph(tp.DependencyGraph):
    """torch-pruning's graph with the concat sizes measured while tracing (see :class:`_ConcatSizes`)."""

    def __init__(self, sizes: dict[Any, list[int]]) -> None:
        super().__init__()
        self._traced_sizes = sizes

    def _build_dependency(self, module2node: dict[Any, Any]) -> None:
        super()._build_dependency(module2node)
        for node in module2node.values():
            sizes = self._traced_sizes.get(node.grad_fn) if node.type == tp.ops.OPTYPE.CONCAT else None
            if sizes is not None and len(sizes) == len(node.inputs):
                node.module.concat_sizes = list(sizes)


def build_graph(model: nn.Module, example: torch.Tensor, taps: Sequence[str] = ()) -> PruningGraph:
    """Trace ``model`` on ``example`` into torch-pruning's dependency graph, shuffles mapped.

    :param taps: module names whose output nodes to record (``PruningGraph.outputs``; the ones
        that never run or are not traced go to ``unreached`` with the reason); a name the model
        lacks raises :class:`PruningError`.
    """
    modules = dict(model.named_modules())
    missing = [name for name in taps if name not in modules]
    if missing:
        raise PruningError(f"the model has no module '{missing[0]}' (named by its hints or the config); check the names "
                           "with model.named_modules()")
    captured: dict[str, Any] = {}

    def tap(name: str) -> Any:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            tensor = _first_tensor(output)
            if tensor is not None:
                captured[name] = (tensor.grad_fn, tuple(tensor.shape))
        return hook

    handles = [modules[name].register_forward_hook(tap(name)) for name in taps]
    handles.append(model.register_forward_hook(tap("")))
    was_training = model.training
    sizes = _ConcatSizes()
    try:
        with torch.enable_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dg = _TracedGraph(sizes.sizes)
            dg.build_dependency(model, example_inputs=(example,), verbose=False, forward_fn=_forward_in(sizes))
    except PruningError:
        raise
    except Exception as exc:  # torch-pruning's tracer fails on some graphs with assorted errors
        raise PruningError(
            f"torch-pruning cannot trace this model ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            "prune another model, or report the layer that causes it"
        ) from exc
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    _map_pixel_shuffles(dg)
    graph = PruningGraph(model=model, dg=dg, output_shape=captured.get("", (None, ()))[1])
    by_grad_fn = {node.grad_fn: node for node in dg.module2node.values() if node.grad_fn is not None}
    for name in taps:
        grad_fn, shape = captured.get(name, (None, ()))
        node = dg.module2node.get(modules[name]) or by_grad_fn.get(grad_fn)  # a module called twice keeps one node
        if grad_fn is None and not shape:
            graph.unreached[name] = "never runs in the model's forward"
        elif node is None or len(shape) < 2:
            graph.unreached[name] = "its output is not traced by torch-pruning (name a conv or linear layer instead)"
        else:
            graph.outputs[name] = node
            graph.output_channels[name] = int(shape[1])
    return graph
