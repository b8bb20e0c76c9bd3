"""``linear_branch_fold``: the linear half of a two-conv PReLU folded into the conv that reads the sum."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from onnx import TensorProto, numpy_helper
from onnx import helper as oh
from torch import nn

from srcompress.backends.onnx import DEFAULT_REWRITES, OnnxConfig, apply_rewrites, compile_onnx
from srcompress.backends.onnx.rewrites import max_output_difference
from test_backends import IR_VERSION


def branch_sum_graph(
    *, size: int = 3, pads: tuple[int, int, int, int] = (1, 1, 1, 1), outputs: int = 2, wide: int = 32,
    bias: bool = True, group: int = 1, shared: bool = False, quantized: bool = False, broadcast: bool = False,
    depthwise: bool = False, opset: int = 18,
) -> onnx.ModelProto:  # fmt: skip
    """x (4 ch) -> [Relu(Conv1x1 -> wide)] + Conv1x1(x -> wide, bias) -> Conv size x size (wide -> outputs, pads) -> y.

    ``shared``: the linear branch is also a graph output; ``quantized``: y goes through Q/DQ;
    ``broadcast``: the Add's other input is a (1, wide, 1, 1) constant instead of the relu branch;
    ``depthwise``: x comes from a depthwise 3 x 3 conv of the graph input ``z``.
    """
    rng = np.random.default_rng(size)
    inits = [
        numpy_helper.from_array(rng.standard_normal((wide, 4, 1, 1)).astype(np.float32), "w_relu"),
        numpy_helper.from_array(rng.standard_normal((wide, 4, 1, 1)).astype(np.float32), "w_lin"),
        numpy_helper.from_array((rng.standard_normal(wide) * bias).astype(np.float32), "b_lin"),
        numpy_helper.from_array(rng.standard_normal((outputs, wide // group, size, size)).astype(np.float32) * 0.2, "k"),
        numpy_helper.from_array(rng.standard_normal(outputs).astype(np.float32), "k_b"),
        numpy_helper.from_array(rng.standard_normal((1, wide, 1, 1)).astype(np.float32), "const"),
        numpy_helper.from_array(rng.standard_normal((4, 1, 3, 3)).astype(np.float32), "dw"),
    ]
    nodes = [oh.make_node("Conv", ["z", "dw"], ["x"], name="depthwise", kernel_shape=[3, 3], pads=[1] * 4, group=4)] if depthwise else []
    nodes += [
        oh.make_node("Conv", ["x", "w_relu"], ["r"], name="relu_conv"),
        oh.make_node("Relu", ["r"], ["u"]),
        oh.make_node("Conv", ["x", "w_lin", "b_lin"], ["v"], name="linear_conv"),
        oh.make_node("Add", ["const" if broadcast else "u", "v"], ["s"], name="sum"),
        oh.make_node("Conv", ["s", "k", "k_b"], ["y"], name="tail", pads=list(pads), group=group),
    ]
    outs = [oh.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if quantized:
        inits += [numpy_helper.from_array(np.array(0.01, np.float32), "q_s"), numpy_helper.from_array(np.array(128, np.uint8), "q_z")]
        nodes += [oh.make_node("QuantizeLinear", ["y", "q_s", "q_z"], ["yq"]), oh.make_node("DequantizeLinear", ["yq", "q_s", "q_z"], ["yd"])]
        outs = [oh.make_tensor_value_info("yd", TensorProto.FLOAT, None)]
    if shared:
        outs.append(oh.make_tensor_value_info("v", TensorProto.FLOAT, None))
    source = oh.make_tensor_value_info("z" if depthwise else "x", TensorProto.FLOAT, ["n", 4, "h", "w"])
    graph = oh.make_graph(nodes, "branch_sum", [source], outs, inits)
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", opset)], ir_version=IR_VERSION)


def _feeds(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize(
    ("size", "pads", "bias", "ones_map"),
    [
        (3, (1, 1, 1, 1), True, True),  # the bias seen through zero padding: a conv of a ones map
        (2, (1, 1, 1, 1), True, True),  # subpixel_compact's tail shape: the output is one pixel larger
        (1, (0, 0, 0, 0), True, False),  # no padding: the bias term is a constant, added to K's bias
        (3, (1, 1, 1, 1), False, False),  # no bias: nothing to add
    ],
)
def test_fold_is_exact_on_the_border_too(size: int, pads: tuple[int, int, int, int], bias: bool, ones_map: bool) -> None:
    model = branch_sum_graph(size=size, pads=pads, bias=bias)
    out, (report,) = apply_rewrites(model, ["linear_branch_fold"], _feeds(1, 4, 6, 7))
    assert report.applied == 1 and report.max_abs_diff <= 1e-5
    ops = [n.op_type for n in out.graph.node]
    assert ops.count("Conv") == 3 + ones_map and ("ConstantOfShape" in ops) == ones_map
    assert "linear_conv" not in {n.name for n in out.graph.node}, "the wide linear map is no longer computed"
    diff, peak = max_output_difference(model, out, _feeds(2, 4, 9, 13, seed=1))  # other batch and size
    assert peak > 1 and diff <= 2e-6 * peak


@pytest.mark.parametrize(("pads", "applied"), [((1, 1, 1, 1), 0), ((0, 0, 0, 0), 1)])
def test_fold_needs_opset_15_for_the_border_term(pads: tuple[int, int, int, int], applied: int) -> None:
    # the ones map takes Shape(start, end) (opset 15); a constant bias would be wrong on the border
    model = branch_sum_graph(size=3 if any(pads) else 1, pads=pads, opset=14)
    out, (report,) = apply_rewrites(model, ["linear_branch_fold"], _feeds(1, 4, 6, 7))
    assert report.applied == applied and report.max_abs_diff <= 1e-5


def test_the_ones_map_takes_its_shape_from_before_same_size_convs() -> None:
    # ONNX Runtime keeps conv outputs in its blocked layout: a Shape of one would reorder the map
    model = branch_sum_graph(depthwise=True)
    out, (report,) = apply_rewrites(model, ["linear_branch_fold"], _feeds(1, 4, 6, 7))
    assert report.applied == 1
    assert [list(n.input) for n in out.graph.node if n.op_type == "Shape"] == [["z"], ["z"]]
    diff, peak = max_output_difference(model, out, _feeds(2, 4, 11, 5, seed=2))
    assert diff <= 2e-6 * peak


def test_fold_weights_are_the_composed_kernel() -> None:
    model = branch_sum_graph(size=1, pads=(0, 0, 0, 0))
    out, _ = apply_rewrites(model, ["linear_branch_fold"], None)
    weights = {i.name: numpy_helper.to_array(i) for i in out.graph.initializer}
    source = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    composed = next(v for k, v in weights.items() if k.endswith("_kl"))
    expected = np.einsum("om,mc->oc", source["k"][:, :, 0, 0], source["w_lin"][:, :, 0, 0])
    np.testing.assert_allclose(composed[:, :, 0, 0], expected, rtol=1e-5)
    bias = next(v for k, v in weights.items() if k.endswith("_fold_b"))
    np.testing.assert_allclose(bias, source["k_b"] + source["k"][:, :, 0, 0] @ source["b_lin"], rtol=1e-5)


@pytest.mark.parametrize(
    ("options", "why"),
    [
        ({"group": 2}, "a grouped reader"),
        ({"shared": True}, "the linear map is read elsewhere"),
        ({"outputs": 4}, "not cheaper: 4 outputs x 3 x 3 taps >= 32 channels"),
        ({"quantized": True}, "a quantizer reads the result"),
        ({"broadcast": True}, "the other addend is a broadcast constant"),
    ],
)
def test_fold_leaves_other_sites(options: dict[str, object], why: str) -> None:
    model = branch_sum_graph(**options)  # type: ignore[arg-type]
    _, (report,) = apply_rewrites(model, ["linear_branch_fold"], _feeds(1, 4, 6, 7))
    assert report.applied == 0, why


def _optimized(model: onnx.ModelProto, path: str) -> onnx.ModelProto:
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    options.optimized_model_filepath = path
    onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return onnx.load(path)


def test_onnx_runtime_adds_the_folded_branch_inside_the_conv(tmp_path) -> None:
    # Both sums are of maps one pixel larger than x (2 x 2 conv, pads 1): without the declared
    # symbolic shapes ONNX Runtime cannot prove them equal and runs each Add as its own pass.
    model = branch_sum_graph(size=2, wide=64)
    out, _ = apply_rewrites(model, ["linear_branch_fold"], None)
    optimized = _optimized(out, str(tmp_path / "opt.onnx"))
    nchwc = [n for n in optimized.graph.node if n.domain == "com.microsoft.nchwc" and n.op_type == "Conv"]
    if not nchwc:
        pytest.skip("ONNX Runtime's blocked (NCHWc) conv layout is not used on this CPU")
    assert [n.op_type for n in optimized.graph.node if n.op_type == "Add"] == []
    assert sum(len(n.input) == 4 for n in nchwc) == 2, "two convs take a sum input"


class LastStage(nn.Module):
    """An F2SRGAN-like last x2 stage and RGB tail: depthwise 3x3 -> 1x1 (16 -> 64) -> PixelShuffle -> PReLU(16) -> 3x3 tail."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.depthwise = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.pointwise = nn.Conv2d(16, 64, 1)
        self.shuffle = nn.PixelShuffle(2)
        self.act = nn.PReLU(16)
        self.tail = nn.Conv2d(16, 3, 3, padding=1)
        with torch.no_grad():
            self.act.weight.uniform_(0.05, 0.5)
            self.pointwise.bias.uniform_(-0.5, 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.act(self.shuffle(self.pointwise(self.depthwise(x)))))


def test_default_rewrites_fold_an_sr_last_stage_exactly() -> None:
    stage = LastStage().eval()
    deployed = compile_onnx(stage, torch.rand(1, 16, 10, 12), OnnxConfig(provider="cpu", threads=1))
    applied = {r["name"]: r["applied"] for r in deployed.metadata["rewrites"]}
    assert applied["prelu_two_convs"] == 1 and applied["subpixel_compact"] == 1 and applied["linear_branch_fold"] == 1
    assert list(DEFAULT_REWRITES).index("linear_branch_fold") == list(DEFAULT_REWRITES).index("subpixel_compact") + 1
    x = torch.rand(2, 16, 7, 11)
    with torch.no_grad():
        assert float((deployed(x) - stage(x)).abs().max()) < 1e-5
