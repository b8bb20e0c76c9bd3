"""``int8_pad_narrow_convs``: a quantized conv with fewer than 16 output channels padded to 16."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper
from onnx import helper as oh

from srcompress.backends.onnx import apply_rewrites
from srcompress.backends.onnx.int8_pad import NARROW_CHANNELS, int8_pad_narrow_convs
from test_backends import IR_VERSION, run_cpu

X_SCALE, OUT_SCALE, OUT_ZERO = 1 / 255, 0.01, 40


def quantized_conv_graph(*, outputs: int = 12, inputs: int = 8, group: int = 1, int8_weights: bool = True) -> onnx.ModelProto:
    """x -> Q/DQ -> Conv 3x3 (int8 per-channel weights) -> Q -> DQ -> Mul(2) -> y.

    ``int8_weights=False``: a float weight initializer instead (a conv left in float).
    """
    rng = np.random.default_rng(outputs)
    shape = (outputs, inputs // group, 3, 3)
    weight = rng.integers(-127, 128, shape).astype(np.int8)
    scale = (rng.random(outputs) * 0.01 + 0.001).astype(np.float32)
    inits = [
        numpy_helper.from_array(np.array(X_SCALE, np.float32), "x_scale"),
        numpy_helper.from_array(np.array(0, np.uint8), "x_zero"),
        numpy_helper.from_array(rng.standard_normal(outputs).astype(np.float32) * 0.1, "b"),
        numpy_helper.from_array(np.array(OUT_SCALE, np.float32), "s"),
        numpy_helper.from_array(np.array(OUT_ZERO, np.uint8), "z"),
        numpy_helper.from_array(np.array(2.0, np.float32), "two"),
    ]
    nodes = [
        oh.make_node("QuantizeLinear", ["x", "x_scale", "x_zero"], ["xq"]),
        oh.make_node("DequantizeLinear", ["xq", "x_scale", "x_zero"], ["xd"]),
    ]
    if int8_weights:
        inits += [numpy_helper.from_array(weight, "w_q"), numpy_helper.from_array(scale, "w_scale"),
                  numpy_helper.from_array(np.zeros(outputs, np.int8), "w_zero")]  # fmt: skip
        nodes.append(oh.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w"], axis=0))
    else:
        inits.append(numpy_helper.from_array(weight.astype(np.float32) * scale[:, None, None, None], "w"))
    nodes += [
        oh.make_node("Conv", ["xd", "w", "b"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=group),
        oh.make_node("QuantizeLinear", ["c", "s", "z"], ["cq"]),
        oh.make_node("DequantizeLinear", ["cq", "s", "z"], ["cd"]),
        oh.make_node("Mul", ["cd", "two"], ["y"]),
    ]
    graph = oh.make_graph(nodes, "quantized_conv", [oh.make_tensor_value_info("x", TensorProto.FLOAT, [1, inputs, None, None])],
                          [oh.make_tensor_value_info("y", TensorProto.FLOAT, [1, outputs, None, None])], inits)  # fmt: skip
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 18)], ir_version=IR_VERSION)



def _rewritten(proto: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    after = onnx.ModelProto()
    after.CopyFrom(proto)
    return after, int8_pad_narrow_convs(after)


@pytest.mark.parametrize("outputs", [3, 12])
def test_pads_to_16_channels_and_slices_them_off_after_the_quantizer(outputs: int) -> None:
    before = quantized_conv_graph(outputs=outputs)
    after, count = _rewritten(before)
    assert count == 1
    onnx.checker.check_model(after)
    ops = [n.op_type for n in after.graph.node]
    assert ops[-6:] == ["DequantizeLinear", "Conv", "QuantizeLinear", "Slice", "DequantizeLinear", "Mul"]
    padded = numpy_helper.to_array(next(i for i in after.graph.initializer if i.name.endswith("_pad16_w")))
    assert padded.shape == (NARROW_CHANNELS, 8, 3, 3) and padded.dtype == np.int8 and not padded[outputs:].any()
    assert {i.name for i in after.graph.initializer} >= {"s", "z"}, "the quantizer's constants stay"
    assert "w_q" not in {i.name for i in after.graph.initializer}, "the old weights are dropped"
    x = np.random.default_rng(0).random((1, 8, 9, 11), dtype=np.float32)
    for optimized in (True, False):
        np.testing.assert_array_equal(run_cpu(after, x, optimized=optimized), run_cpu(before, x, optimized=optimized))


def test_apply_rewrites_verifies_it() -> None:
    x = np.random.default_rng(1).random((1, 8, 7, 9), dtype=np.float32)
    _, reports = apply_rewrites(quantized_conv_graph(), ["int8_pad_narrow_convs"], x)
    assert reports[0].applied == 1 and reports[0].max_abs_diff == 0.0


@pytest.mark.parametrize(
    "options",
    [{"outputs": 16}, {"outputs": 24}, {"outputs": 8, "group": 2}, {"int8_weights": False}],
    ids=["sixteen", "wider", "grouped", "float-weights"],
)
def test_left_alone(options: dict) -> None:
    before = quantized_conv_graph(**options)
    after, count = _rewritten(before)
    assert count == 0 and after == before
