"""``scalar_mul_into_conv``: a constant scalar Mul after a Conv / ConvTranspose moved into its weights."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper
from onnx import helper as oh

from srcompress.backends.onnx import DEFAULT_REWRITES, apply_rewrites
from srcompress.backends.onnx.scalar_fold import scalar_mul_into_conv
from test_backends import IR_VERSION, run_cpu


def _model(nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto], channels: int, outputs: list[str]) -> onnx.ModelProto:
    graph = oh.make_graph(
        nodes, "scaled", [oh.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, None, None])],
        [oh.make_tensor_value_info(name, TensorProto.FLOAT, [1, channels, None, None]) for name in outputs], inits,
    )  # fmt: skip
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 18)], ir_version=IR_VERSION)


def conv_then_mul(*, scale: np.ndarray | float = 0.1, scale_first: bool = False, bias: bool = True,
                  shared_weight: bool = False, extra_reader: bool = False) -> onnx.ModelProto:  # fmt: skip
    """x -> Conv 3x3 (4 -> 6) -> Mul(scale) -> y; options add a second conv on the same weight (y2)
    or a second reader of the conv's output (Relu -> r)."""
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(rng.standard_normal((6, 4, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(np.asarray(scale, np.float32), "s")]  # fmt: skip
    conv_inputs = ["x", "w"]
    if bias:
        inits.append(numpy_helper.from_array(rng.standard_normal(6).astype(np.float32), "b"))
        conv_inputs.append("b")
    nodes = [oh.make_node("Conv", conv_inputs, ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             oh.make_node("Mul", ["s", "c"] if scale_first else ["c", "s"], ["y"])]  # fmt: skip
    outputs = ["y"]
    if shared_weight:
        nodes.append(oh.make_node("Conv", ["x", "w"], ["y2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
        outputs.append("y2")
    if extra_reader:
        nodes.append(oh.make_node("Relu", ["c"], ["r"]))
        outputs.append("r")
    return _model(nodes, inits, 6, outputs)


def placement_then_mul() -> onnx.ModelProto:
    """x (4 = 1 x 2 x 2 sub-pixel channels) -> ConvTranspose with 0/1 weights (a pixel shuffle) -> Mul(1/255)."""
    weight = np.zeros((4, 1, 2, 2), np.float32)
    for channel in range(4):
        weight[channel, 0, channel // 2, channel % 2] = 1.0
    inits = [numpy_helper.from_array(weight, "place"), numpy_helper.from_array(np.array(1 / 255, np.float32), "s")]
    nodes = [oh.make_node("ConvTranspose", ["x", "place"], ["up"], kernel_shape=[2, 2], strides=[2, 2]),
             oh.make_node("Mul", ["up", "s"], ["y"])]  # fmt: skip
    return _model(nodes, inits, 1, ["y"])


def _rewritten(proto: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    after = onnx.ModelProto()
    after.CopyFrom(proto)
    return after, scalar_mul_into_conv(after)


X = np.random.default_rng(0).random((1, 4, 7, 9), dtype=np.float32) * 255


def test_is_a_default_and_last() -> None:
    assert DEFAULT_REWRITES[-1] == "scalar_mul_into_conv"


@pytest.mark.parametrize("scale_first", [False, True], ids=["conv-times-s", "s-times-conv"])
def test_folds_the_scale_into_weight_and_bias(scale_first: bool) -> None:
    before = conv_then_mul(scale_first=scale_first)
    after, count = _rewritten(before)
    assert count == 1
    onnx.checker.check_model(after)
    assert [n.op_type for n in after.graph.node] == ["Conv"] and after.graph.node[0].output[0] == "y"
    values = {i.name: numpy_helper.to_array(i) for i in after.graph.initializer}
    original = {i.name: numpy_helper.to_array(i) for i in before.graph.initializer}
    assert set(values) == {"w", "b"}, "the scale's constant is dropped, weight and bias changed in place"
    np.testing.assert_allclose(values["w"], original["w"] * np.float32(0.1), rtol=1e-7)
    np.testing.assert_allclose(values["b"], original["b"] * np.float32(0.1), rtol=1e-7)
    np.testing.assert_allclose(run_cpu(after, X, optimized=False), run_cpu(before, X, optimized=False), rtol=1e-5, atol=1e-4)


def test_conv_without_bias_keeps_none() -> None:
    after, count = _rewritten(conv_then_mul(bias=False))
    assert count == 1 and list(after.graph.node[0].input) == ["x", "w"]


def test_placement_is_bit_exact_and_verified() -> None:
    before = placement_then_mul()
    after, count = _rewritten(before)
    assert count == 1 and [n.op_type for n in after.graph.node] == ["ConvTranspose"]
    place = numpy_helper.to_array(after.graph.initializer[0])
    assert sorted(set(place.ravel().tolist())) == [0.0, np.float32(1 / 255)]
    np.testing.assert_array_equal(run_cpu(after, X, optimized=True), run_cpu(before, X, optimized=True))
    _, reports = apply_rewrites(placement_then_mul(), ["scalar_mul_into_conv"], X)
    assert reports[0].applied == 1 and reports[0].max_abs_diff == 0.0


def test_a_shared_weight_is_copied() -> None:
    before = conv_then_mul(shared_weight=True)
    after, count = _rewritten(before)
    assert count == 1
    convs = [n for n in after.graph.node if n.op_type == "Conv"]
    assert [n.input[1] for n in convs] == ["w_scaled", "w"], "the other conv keeps the original weight"
    np.testing.assert_allclose(run_cpu(after, X, optimized=False), run_cpu(before, X, optimized=False), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(
    "options",
    [{"scale": np.full((1, 6, 1, 1), 0.1)}, {"scale": float("inf")}, {"scale": np.full((1, 1, 1, 1, 1), 0.1)},
     {"extra_reader": True}],
    ids=["per-channel", "not-finite", "rank-5-broadcast", "output-read-twice"],
)
def test_left_alone(options: dict) -> None:
    before = conv_then_mul(**options)
    after, count = _rewritten(before)
    assert count == 0 and after == before
