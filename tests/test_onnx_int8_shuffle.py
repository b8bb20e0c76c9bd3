"""``d2s_int8_channels_last``: an int8 pixel shuffle between equal quantizers as channels-last byte moves."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, numpy_helper
from onnx import helper as oh

from srcompress.backends.onnx import DEFAULT_REWRITES, OnnxConfig, apply_rewrites, compile_onnx, depth_to_space_modes
from srcompress.backends.onnx.rewrites import PERMUTED_KEY
from test_backends import IR_VERSION, run_cpu

SCALE, ZERO = 0.05, 128


def int8_shuffle_graph(*, block: int = 2, mode: str = "CRD", out_scale: float = SCALE, shared: bool = False) -> onnx.ModelProto:
    """x -> Q/DQ -> Conv (int8 per-channel weights) -> Q -> DQ -> DepthToSpace -> Q -> DQ -> Mul(2) -> y.

    The Q/DQ pair after the shuffle uses ``out_scale`` (equal to the one before: the shuffle moves
    bytes). ``shared``: the conv's quantized output is also a second graph output.
    """
    rng = np.random.default_rng(block)
    channels = 3 * block * block
    inits = [
        numpy_helper.from_array(np.array(1 / 255, np.float32), "x_scale"),
        numpy_helper.from_array(np.array(0, np.uint8), "x_zero"),
        numpy_helper.from_array(rng.integers(-100, 100, (channels, 3, 3, 3)).astype(np.int8), "w_q"),
        numpy_helper.from_array((rng.random(channels) * 0.01 + 0.001).astype(np.float32), "w_scale"),
        numpy_helper.from_array(np.zeros(channels, np.int8), "w_zero"),
        numpy_helper.from_array(rng.standard_normal(channels).astype(np.float32) * 0.5, "b"),
        numpy_helper.from_array(np.array(SCALE, np.float32), "s"),
        numpy_helper.from_array(np.array(out_scale, np.float32), "s_out"),
        numpy_helper.from_array(np.array(ZERO, np.uint8), "z"),
        numpy_helper.from_array(np.array(2.0, np.float32), "two"),
    ]
    nodes = [
        oh.make_node("QuantizeLinear", ["x", "x_scale", "x_zero"], ["xq"]),
        oh.make_node("DequantizeLinear", ["xq", "x_scale", "x_zero"], ["xd"]),
        oh.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w"], axis=0),
        oh.make_node("Conv", ["xd", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        oh.make_node("QuantizeLinear", ["c", "s", "z"], ["cq"]),
        oh.make_node("DequantizeLinear", ["cq", "s", "z"], ["cd"]),
        oh.make_node("DepthToSpace", ["cd"], ["p"], blocksize=block, mode=mode, name="shuffle"),
        oh.make_node("QuantizeLinear", ["p", "s_out", "z"], ["pq"]),
        oh.make_node("DequantizeLinear", ["pq", "s_out", "z"], ["pd"]),
        oh.make_node("Mul", ["pd", "two"], ["y"]),
    ]
    outputs = [oh.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if shared:
        outputs.append(oh.make_tensor_value_info("cq", TensorProto.UINT8, None))
    graph = oh.make_graph(nodes, "int8_shuffle", [oh.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, "h", "w"])], outputs, inits)
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 18)], ir_version=IR_VERSION)



@pytest.mark.parametrize(("block", "mode"), [(2, "CRD"), (2, "DCR"), (3, "CRD")])
def test_int8_shuffle_becomes_channels_last_transposes_with_the_same_output(block: int, mode: str) -> None:
    model = int8_shuffle_graph(block=block, mode=mode)
    out, (report,) = apply_rewrites(model, ["d2s_int8_channels_last"], np.random.default_rng(0).random((1, 3, 5, 6), dtype=np.float32))
    assert (report.applied, report.max_abs_diff) == (1, 0.0)
    assert depth_to_space_modes(out) == []
    ops = [n.op_type for n in out.graph.node]
    assert ops.count("Transpose") == 3 and ops.count("QuantizeLinear") == 2 and ops.count("DequantizeLinear") == 3
    (conv,) = [n for n in out.graph.node if n.op_type == "Conv"]
    marks = [p.value for p in conv.metadata_props if p.key == PERMUTED_KEY]
    assert marks == ([str(block)] if mode == "CRD" else []), "a CRD shuffle's conv is permuted to DCR order and marked"
    # dynamic batch and size; ONNX Runtime's int8 kernels (QLinearConv) give the same integers as before
    x = np.random.default_rng(1).random((2, 3, 7, 4), dtype=np.float32)
    for optimized in (False, True):
        assert np.array_equal(run_cpu(out, x, optimized=optimized), run_cpu(model, x, optimized=optimized))


def test_int8_shuffle_that_requantizes_is_left_to_onnx_runtime() -> None:
    model = int8_shuffle_graph(out_scale=2 * SCALE)  # the Q after the shuffle changes the integers
    out, (report,) = apply_rewrites(model, ["d2s_int8_channels_last"], None)
    assert report.applied == 0 and depth_to_space_modes(out) == ["CRD"]


def test_int8_crd_shuffle_whose_conv_output_is_read_elsewhere_is_left_alone() -> None:
    model = int8_shuffle_graph(shared=True)  # permuting the conv would reorder the second output
    out, (report,) = apply_rewrites(model, ["d2s_int8_channels_last"], None)
    assert report.applied == 0 and depth_to_space_modes(out) == ["CRD"]
    (conv,) = [n for n in out.graph.node if n.op_type == "Conv"]
    assert not conv.metadata_props, "nothing was permuted"


def test_int8_deployment_applies_it_by_default() -> None:
    # after d2s_conv_transpose (which would take a float shuffle) and before the padding of narrow convs
    # (whose Slice would stand between the conv it permutes and the shuffle)
    order = DEFAULT_REWRITES.index
    assert order("d2s_conv_transpose") < order("d2s_int8_channels_last") < order("int8_pad_narrow_convs")
    model = int8_shuffle_graph()
    deployed = compile_onnx(model, torch.rand(1, 3, 6, 5), OnnxConfig(provider="cpu", precision="int8"))
    applied = {r["name"]: r["applied"] for r in deployed.metadata["rewrites"]}
    assert applied["d2s_int8_channels_last"] == 1 and applied["d2s_conv_transpose"] == 0
    assert applied["int8_pad_narrow_convs"] == 1, "its 12-channel conv is padded to 16"
    plain = compile_onnx(model, torch.rand(1, 3, 6, 5), OnnxConfig(provider="cpu", precision="int8", rewrites=[]))
    x = torch.rand(1, 3, 9, 4)
    assert torch.equal(deployed(x), plain(x))
