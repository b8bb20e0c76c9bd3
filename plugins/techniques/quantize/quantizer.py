"""The PT2E quantizer for SR networks (both deployment targets), and its specs.

:class:`SRQuantizer` is our own :class:`torchao...Quantizer`: it quantizes every tensor the compute
ops of an SR graph exchange, so that ONNX Runtime fuses each op into an integer kernel and keeps
the graph in one layout. torchao's ``X86InductorQuantizer`` (tried first) quantizes only conv
inputs: on the released KD student ONNX Runtime then fused 20 of 42 convs into ``QLinearConv`` and
inserted 42 layout transposes, slower than fp32 (docs/benchmarks_quantize.md).

Annotated ops (nodes inside ``float_modules`` are skipped):

- ``conv2d``: input and output activations, per-channel weights (bias left float: ONNX Runtime
  quantizes it to int32 itself) -> ``QLinearConv``;
- ``relu`` after a conv: only its output (``DQ -> Conv -> Relu -> Q`` fuses into one ``QLinearConv``);
- ``add`` / ``mul`` of two tensors: both inputs and the output -> ``QLinearAdd`` / ``QLinearMul``;
- ``prelu``: its output (ONNX Runtime has no integer PRelu: it runs in float between DQ and Q);
- ``pixel_shuffle``: input; the output shares the input's scale and zero point, so ONNX Runtime
  drops the Q/DQ pair and moves bytes, not floats.

A ``mul`` by a Python scalar right after a conv (F2SRGAN's 0.1 residual scale) is folded into
the conv's weight and bias before annotation (:func:`fold_scalar_muls`).

============  =====================================  =======================================
target        activations (per tensor)               weights (per output channel)
============  =====================================  =======================================
onnxruntime   uint8 [0, 255], asymmetric             int8 [-128, 127], symmetric (zp 0)
tensorrt      int8 [-128, 127], symmetric (zp 0)     int8 [-127, 127], symmetric (zp 0)
int16 dtype   int16 [-32768, 32767], symmetric       int16 [-32767, 32767], symmetric
============  =====================================  =======================================

uint8 activations are ONNX Runtime's fast path on x86 (VNNI u8s8); TensorRT's explicit
quantization accepts only symmetric int8 (zero point 0).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchao.quantization.pt2e import (
    FakeQuantize,
    FusedMovingAvgObsFakeQuantize,
    MovingAveragePerChannelMinMaxObserver,
    PerChannelMinMaxObserver,
)
from torch.fx import GraphModule, Node
from torchao.quantization.pt2e.quantizer import (
    QuantizationAnnotation,
    QuantizationSpec,
    Quantizer,
    SharedQuantizationSpec,
    get_module_name_filter,
)

from .config import QuantizeConfig
from .observers import activation_observer

__all__ = ["SRQuantizer", "activation_spec", "build_quantizer", "fold_scalar_muls", "weight_spec"]

#: Floor of an activation's quantization scale.
_EPS = 2**-12
#: Floor of a weight channel's scale: only (near-)zero channels should reach it. At 2**-12 every
#: channel with max |w| < 127 * 2**-12 = 0.031 lost resolution: an early form of ``subpixel_tail``
#: that folded the /255 output scaling into the tail (max |w| ~0.025) got ~100 levels, mean output
#: error 0.036 against 0.0073 with this floor (PTQ of the Light F2SRGAN recipe's polished student,
#: Set5 crops). The fold keeps the /255 out now, and both floors give 0.0073 there. Bias
#: quantization (int32 at s_in * s_w) stays far from overflow at this floor.
_WEIGHT_EPS = 2**-20


def activation_spec(config: QuantizeConfig, *, qat: bool) -> QuantizationSpec:
    """Per-tensor activation spec of ``config`` (dtype, symmetry from the target, observer from calibration)."""
    if config.dtype == "int16":
        dtype, lo, hi, scheme = torch.int16, -32768, 32767, torch.per_tensor_symmetric
    elif config.target == "tensorrt":
        dtype, lo, hi, scheme = torch.int8, -128, 127, torch.per_tensor_symmetric
    else:
        dtype, lo, hi, scheme = torch.uint8, 0, 255, torch.per_tensor_affine
    observer = activation_observer(config.calibration, percentile=config.percentile, bins=config.bins)
    if qat:
        ctr = (
            FusedMovingAvgObsFakeQuantize.with_args(eps=_EPS)
            if config.calibration == "minmax"
            else FakeQuantize.with_args(observer=observer)
        )
    else:
        ctr = observer
    return QuantizationSpec(dtype=dtype, quant_min=lo, quant_max=hi, qscheme=scheme, is_dynamic=False,
                            observer_or_fake_quant_ctr=ctr)


def weight_spec(config: QuantizeConfig, *, qat: bool) -> QuantizationSpec:
    """Per-output-channel symmetric weight spec (zero point 0 on every target)."""
    if config.dtype == "int16":
        dtype, lo, hi = torch.int16, -32767, 32767
    else:
        dtype, lo, hi = torch.int8, (-127 if config.target == "tensorrt" else -128), 127
    if qat:
        ctr = FusedMovingAvgObsFakeQuantize.with_args(observer=MovingAveragePerChannelMinMaxObserver, eps=_WEIGHT_EPS)
    else:
        ctr = PerChannelMinMaxObserver.with_args(eps=_WEIGHT_EPS)
    return QuantizationSpec(dtype=dtype, quant_min=lo, quant_max=hi, qscheme=torch.per_channel_symmetric, ch_axis=0,
                            is_dynamic=False, observer_or_fake_quant_ctr=ctr)


_ANNOTATION = "quantization_annotation"
_aten = torch.ops.aten


class SRQuantizer(Quantizer):
    """Annotates conv / add / mul / prelu / pixel_shuffle nodes of an exported SR graph (see the module doc)."""

    def __init__(self, activation: QuantizationSpec, weight: QuantizationSpec, float_modules: Sequence[str] = ()) -> None:
        super().__init__()
        self.activation, self.weight = activation, weight
        self.float_modules = tuple(float_modules)
        self._float_filters = [get_module_name_filter(name) for name in self.float_modules]

    def in_float(self, node: Node) -> bool:
        """Whether ``node`` belongs to a module left in float (it is not annotated)."""
        return any(f(node) for f in self._float_filters)

    def annotate(self, model: GraphModule) -> GraphModule:
        act = self.activation
        for node in model.graph.nodes:
            if node.op != "call_function" or _ANNOTATION in node.meta or self.in_float(node):
                continue
            target, args = node.target, node.args
            if target == _aten.conv2d.default:
                inputs = {args[0]: act, args[1]: self.weight}
                # conv -> relu: quantize after the relu only (ONNX Runtime then fuses both into QLinearConv)
                into_relu = bool(node.users) and all(u.target == _aten.relu.default for u in node.users)
                output = None if into_relu else act
                node.meta[_ANNOTATION] = QuantizationAnnotation(input_qspec_map=inputs, output_qspec=output, _annotated=True)
            elif target == _aten.relu.default:
                node.meta[_ANNOTATION] = QuantizationAnnotation(output_qspec=act, _annotated=True)
            elif target in (_aten.add.Tensor, _aten.mul.Tensor) and all(_is_tensor(a) for a in args[:2]):
                inputs = {a: act for a in args[:2]}
                node.meta[_ANNOTATION] = QuantizationAnnotation(input_qspec_map=inputs, output_qspec=act, _annotated=True)
            elif target == _aten.prelu.default:
                # input: the producer's quantized output as it is (a second spec here would re-quantize)
                node.meta[_ANNOTATION] = QuantizationAnnotation(output_qspec=act, _annotated=True)
            elif target == _aten.pixel_shuffle.default:
                shared = SharedQuantizationSpec((args[0], node))
                node.meta[_ANNOTATION] = QuantizationAnnotation(input_qspec_map={args[0]: act}, output_qspec=shared, _annotated=True)
        return model

    def validate(self, model: GraphModule) -> None:
        return None


def _is_tensor(arg: object) -> bool:
    """A graph node carrying a tensor (not a symbolic size or a Python number)."""
    return isinstance(arg, Node) and isinstance(arg.meta.get("val"), torch.Tensor)


def _attr_owner(gm: GraphModule, target: str) -> tuple[torch.nn.Module, str]:
    parent, _, name = target.rpartition(".")
    return (gm.get_submodule(parent) if parent else gm), name


def fold_scalar_muls(gm: GraphModule) -> int:
    """Fold ``conv2d(x, w, b) * s`` (``s`` a Python number, the conv used only there, its weight and
    bias not shared) into ``conv2d(x, s w, s b)``. Changes ``gm`` in place; returns the count."""
    count = 0
    for node in list(gm.graph.nodes):
        if node.target != _aten.mul.Tensor or not isinstance(node.args[0], Node) or not isinstance(node.args[1], (int, float)):
            continue
        conv = node.args[0]
        if conv.target != _aten.conv2d.default or len(conv.users) != 1:
            continue
        params = [a for a in conv.args[1:3] if a is not None]
        if not all(isinstance(a, Node) and a.op == "get_attr" and len(a.users) == 1 for a in params):
            continue
        with torch.no_grad():
            for attr in params:  # new tensors: the exported graph shares its parameters with the eager model
                owner, name = _attr_owner(gm, attr.target)
                value = getattr(owner, name)
                scaled = value.detach() * float(node.args[1])
                if isinstance(value, torch.nn.Parameter):
                    setattr(owner, name, torch.nn.Parameter(scaled, requires_grad=value.requires_grad))
                else:
                    owner.register_buffer(name, scaled)
        node.replace_all_uses_with(conv)
        gm.graph.erase_node(node)
        count += 1
    if count:
        gm.graph.lint()
        gm.recompile()
    return count


def build_quantizer(config: QuantizeConfig, float_modules: Sequence[str] = (), *, qat: bool = False) -> SRQuantizer:
    """The :class:`SRQuantizer` of ``config`` (target, dtype, calibration) leaving ``float_modules`` in float."""
    return SRQuantizer(activation_spec(config, qat=qat), weight_spec(config, qat=qat), float_modules)
