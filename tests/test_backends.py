"""The torch and onnx backends: outputs within tolerance, save/load, exact SR rewrites, fp16, Q/DQ, FFT forms."""

from __future__ import annotations

import attrs
import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from onnx import TensorProto, numpy_helper
from onnx import helper as oh
from torch import nn

from srcompress.backends.onnx import (
    OnnxConfig,
    apply_rewrites,
    compile_onnx,
    crd_to_dcr_permutation,
    depth_to_space_modes,
    export_onnx,
    load_onnx_deployed,
    qdq_summary,
)
from srcompress.backends.onnx.graph import GraphIndex, replace_nodes
from srcompress.backends.onnx.rewrites import PERMUTED_KEY, max_output_difference, subpixel_kernel
from srcompress.backends.torch_backend import TorchConfig, compile_torch, load_torch
from srcompress.config import field_help
from srcompress.errors import DeployError
from srcompress.registry import Registry
from test_deploy import TinySR, WithFourier

#: ONNX IR version of the hand-built test graphs: onnx >= 1.23 writes IR 14 by default, which
#: ONNX Runtime < 1.32 refuses ("Unsupported model IR version: 14, max supported IR version: 13").
IR_VERSION = 10


def run_cpu(proto: onnx.ModelProto, x: np.ndarray, *, optimized: bool) -> np.ndarray:
    """The first output of ``proto`` on input ``x`` (ONNX Runtime CPU, graph optimizations all on or all off)."""
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    level = onnxruntime.GraphOptimizationLevel
    options.graph_optimization_level = level.ORT_ENABLE_ALL if optimized else level.ORT_DISABLE_ALL
    session = onnxruntime.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


@pytest.fixture(scope="module")
def tiny() -> TinySR:
    return TinySR().eval().requires_grad_(False)


@pytest.fixture(scope="module")
def tiny_onnx(tiny: TinySR) -> onnx.ModelProto:
    """The tiny net exported once (dynamic batch/height/width), shared by the ONNX tests."""
    return export_onnx(tiny, torch.rand(1, 3, 12, 16))


def _one_input_model(
    nodes: list[onnx.NodeProto], name: str, shape: list[int | str], output: str, inits: list[onnx.TensorProto],
) -> onnx.ModelProto:
    """An opset-18 model of ``nodes`` with one float input ``x`` of ``shape`` and one float output."""
    graph = oh.make_graph(
        nodes, name, [oh.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [oh.make_tensor_value_info(output, TensorProto.FLOAT, None)], inits,
    )  # fmt: skip
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 18)], ir_version=IR_VERSION)


def _feeds(*shape: int) -> np.ndarray:
    return np.random.default_rng(0).random(shape, dtype=np.float32)


def test_replace_nodes_drops_only_the_constants_no_node_reads_any_more() -> None:
    """``a`` and ``b`` are read only by the replaced nodes; the new node reads ``a`` again: it stays."""
    inits = [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in (("a", 2.0), ("b", 3.0), ("c", 4.0))]
    nodes = [oh.make_node("Mul", ["x", "c"], ["m"]), oh.make_node("Add", ["m", "a"], ["n"]), oh.make_node("Add", ["n", "b"], ["y"])]
    model = _one_input_model(nodes, "replace", [1, 2], "y", inits)
    graph = model.graph
    replace_nodes(graph, GraphIndex(graph), list(graph.node[1:]), [oh.make_node("Sub", ["m", "a"], ["y"])])
    assert [i.name for i in graph.initializer] == ["a", "c"] and [n.op_type for n in graph.node] == ["Mul", "Sub"]
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(session.run(None, {"x": np.array([[1.0, 3.0]], np.float32)})[0], [[2.0, 10.0]])


# ------------------------------------------------------------------------------------ registry


def test_three_backends_are_registered_as_plugins_with_documented_options() -> None:
    registry = Registry()
    backends = {b.name: b for b in registry.list_backends()}
    assert {"torch", "onnx", "tensorrt"} <= set(backends)
    assert {n: backends[n].plugin for n in ("torch", "onnx", "tensorrt")} == {"torch": "torch", "onnx": "onnx", "tensorrt": "tensorrt"}
    for name in ("torch", "onnx", "tensorrt"):
        entry = backends[name]
        assert set(entry.tolerance) >= {"fp32", "fp16"}
        for field in attrs.fields(entry.config_cls):
            assert field_help(field)[0], f"{name}.{field.name} has no help text"


# ------------------------------------------------------------------------------------ torch


def test_torch_backend_precisions_within_tolerance(tiny: TinySR) -> None:
    x = torch.rand(2, 3, 10, 14)
    ref = tiny(x)
    exact = compile_torch(tiny, x, TorchConfig(device="cpu"))
    assert float((exact(x) - ref).abs().max()) == 0.0
    assert exact.metadata["scale"] == 2 and exact.metadata["output_shape"] == [2, 3, 20, 28]
    for precision, tol in (("bf16", 6e-2), ("fp16", 2e-2)):
        half = compile_torch(tiny, x, TorchConfig(device="cpu", precision=precision, channels_last=True))
        out = half(x)
        assert out.dtype == torch.float32 and 0 < float((out - ref).abs().max()) < tol
        assert half.metadata["precision"] == precision and half.metadata["channels_last"] is True
    assert next(tiny.parameters()).dtype == torch.float32, "compiling must not convert the user's model"


def test_torch_backend_save_load_round_trip_with_dynamic_shapes(tiny: TinySR, tmp_path) -> None:
    deployed = compile_torch(tiny, torch.rand(1, 3, 12, 12), TorchConfig(device="cpu"))
    path = deployed.save(tmp_path / "tiny")
    assert path.name == "tiny.pt2"
    loaded = load_torch(path, TorchConfig(device="cpu"))
    x = torch.rand(3, 3, 7, 19)  # another batch, non-square, odd size
    assert float((loaded(x) - tiny(x)).abs().max()) < 1e-6
    assert loaded.metadata["backend"] == "torch" and "torch" in loaded.metadata["versions"]
    with pytest.raises(DeployError, match=r"no saved program at .*missing.pt2"):
        load_torch(tmp_path / "missing.pt2", TorchConfig(device="cpu"))


def test_torch_backend_export_forms_only_when_asked() -> None:
    model = WithFourier().eval().requires_grad_(False)
    x = torch.rand(1, 3, 8, 12)
    assert compile_torch(model, x, TorchConfig(device="cpu")).metadata["fft"] == "dft_op"
    free = compile_torch(model, x, TorchConfig(device="cpu", fft="fft_free"))
    assert free.metadata["export_forms"] == ["unit", "inner.1"]
    assert float((free(x) - model(x)).abs().max()) < 1e-5
    half = compile_torch(model, x, TorchConfig(device="cpu", precision="bf16"))  # torch has no half FFT on CPU
    assert half.metadata["fft"] == "fft_free" and float((half(x) - model(x)).abs().max()) < 6e-2


def test_torch_backend_refuses_cuda_without_gpu(tiny: TinySR) -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    with pytest.raises(DeployError, match=r"device 'cuda' requested but torch sees no CUDA GPU; use device: cpu"):
        compile_torch(tiny, torch.rand(1, 3, 8, 8), TorchConfig(device="cuda"))


@pytest.mark.slow
def test_torch_backend_compile(tiny: TinySR) -> None:
    deployed = compile_torch(tiny, torch.rand(1, 3, 12, 16), TorchConfig(device="cpu", compile=True))
    x = torch.rand(1, 3, 12, 16)
    assert float((deployed(x) - tiny(x)).abs().max()) < 1e-4


# ------------------------------------------------------------------------------------ onnx


def test_onnx_export_has_named_dynamic_dims_and_crd_pixel_shuffle(tiny_onnx: onnx.ModelProto) -> None:
    dims = [d.dim_param or d.dim_value for d in tiny_onnx.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    assert depth_to_space_modes(tiny_onnx) == ["CRD"]
    assert {o.domain: o.version for o in tiny_onnx.opset_import}[""] == 18


def test_onnx_backend_from_module_fp32_rewritten_and_exact(tiny: TinySR) -> None:
    deployed = compile_onnx(tiny, torch.rand(1, 3, 12, 16), OnnxConfig(provider="cpu", threads=1))
    x = torch.rand(2, 3, 9, 21)
    assert float((deployed(x) - tiny(x)).abs().max()) < 1e-5
    meta = deployed.metadata
    assert meta["backend"] == "onnx" and meta["providers"] == ["CPUExecutionProvider"] and meta["fft"] == "dft_op"
    applied = [(r["name"], r["applied"]) for r in meta["rewrites"]]
    # the 8 -> 32 conv before the PReLU is narrow: two convs; the 8 -> 3 tail moves before the shuffle
    # (3 < 8 channels); its conv shrinks to the sub-pixel windows and the shuffle becomes a ConvTranspose
    assert applied == [
        ("prelu_scalar_to_leaky_relu", 0), ("activation_before_d2s", 1), ("prelu_flip_steep", 0), ("prelu_split_depthwise", 0),
        ("prelu_two_convs", 1), ("prelu_to_max", 0), ("subpixel_tail", 1), ("subpixel_compact", 1), ("linear_branch_fold", 0),
        ("d2s_conv_transpose", 0), ("d2s_int8_channels_last", 0), ("int8_pad_narrow_convs", 0),
        ("scalar_mul_into_conv", 0),
    ]  # fmt: skip
    assert all(r["max_abs_diff"] <= 1e-6 for r in meta["rewrites"])
    ops = [n.op_type for n in deployed.proto.graph.node]
    assert "PRelu" not in ops and ops.index("Relu") < ops.index("ConvTranspose"), "the activation runs before the shuffle"
    assert depth_to_space_modes(deployed.proto) == []


def test_crd_to_dcr_permutation_matches_torch_pixel_shuffle() -> None:
    channels, block = 3, 2
    x = torch.rand(1, channels * block * block, 4, 5)
    crd = torch.pixel_shuffle(x, block)
    perm = torch.from_numpy(crd_to_dcr_permutation(channels, block))
    y = x[:, perm].reshape(1, block, block, channels, 4, 5).permute(0, 3, 4, 1, 5, 2).reshape(1, channels, 8, 10)  # DCR
    assert torch.equal(y, crd)


def test_each_rewrite_is_exact_and_reported(tiny_onnx: onnx.ModelProto) -> None:
    feeds = _feeds(1, 3, 12, 16)
    for names in (["d2s_dcr"], ["activation_before_d2s"], ["prelu_to_max"], ["activation_before_d2s", "d2s_dcr", "prelu_to_max"]):
        out, reports = apply_rewrites(tiny_onnx, names, feeds)
        assert [r.name for r in reports] == names and all(r.applied == 1 for r in reports)
        diff, peak = max_output_difference(tiny_onnx, out, _feeds(2, 3, 10, 7))
        assert diff <= 1e-6 * peak and peak > 0
        assert depth_to_space_modes(out) == (["DCR"] if "d2s_dcr" in names else ["CRD"])
    assert depth_to_space_modes(tiny_onnx) == ["CRD"], "rewrites work on a copy"
    conv = next(n for n in out.graph.node if n.op_type == "Conv" and any(p.key == PERMUTED_KEY for p in n.metadata_props))
    assert conv.input[1] == "pw.weight"


def _prelu_graph(slope: np.ndarray) -> onnx.ModelProto:
    nodes = [oh.make_node("PRelu", ["x", "s"], ["y"], name="act")]
    return _one_input_model(nodes, "prelu", [1, 4, "h", "w"], "y", [numpy_helper.from_array(slope, "s")])


@pytest.mark.parametrize(
    ("slopes", "ops"),
    [([0.1, -0.5, 1.0, 0.0], ["Mul", "Max"]), ([1.5, 2.0, 1.0, 3.0], ["Mul", "Min"]), ([0.5, 1.5, 0.2, 0.3], ["PRelu"])],
)
def test_prelu_to_max_is_bit_exact_or_skipped(slopes: list[float], ops: list[str]) -> None:
    model = _prelu_graph(np.array(slopes, np.float32).reshape(4, 1, 1))
    out, reports = apply_rewrites(model, ["prelu_to_max"], _feeds(1, 4, 5, 6) - 0.5)
    assert [n.op_type for n in out.graph.node] == ops and reports[0].applied == (ops != ["PRelu"])
    feeds = np.random.default_rng(3).standard_normal((1, 4, 7, 9)).astype(np.float32)
    assert max_output_difference(model, out, feeds)[0] == 0.0


@pytest.mark.parametrize(("slope", "ops"), [(np.array([0.3], np.float32), ["LeakyRelu"]), (np.float32(-0.2), ["LeakyRelu"]),
                                              (np.array([0.1, 0.2, 0.3, 0.4], np.float32).reshape(4, 1, 1), ["PRelu"])])
def test_prelu_scalar_to_leaky_relu_is_bit_exact_for_one_slope_only(slope: np.ndarray, ops: list[str]) -> None:
    model = _prelu_graph(np.asarray(slope))
    out, (report,) = apply_rewrites(model, ["prelu_scalar_to_leaky_relu"], _feeds(1, 4, 5, 6) - 0.5)
    assert [n.op_type for n in out.graph.node] == ops and report.applied == (ops == ["LeakyRelu"])
    if report.applied:
        (node,) = out.graph.node
        assert list(node.input) == ["x"] and oh.get_attribute_value(node.attribute[0]) == pytest.approx(float(slope.reshape(-1)[0]))
        assert not out.graph.initializer, "the slope no node reads any more is gone"
    feeds = np.random.default_rng(4).standard_normal((1, 4, 7, 9)).astype(np.float32)
    assert max_output_difference(model, out, feeds)[0] == 0.0


def test_rewrite_check_runs_the_graphs_unoptimized(monkeypatch: pytest.MonkeyPatch) -> None:
    # ORT's Q/DQ fusions round differently per pattern: an INT8 student's PRelu -> Mul + Max moved
    # its optimized output by one quantization step (0.013) though the ONNX semantics are unchanged.
    import onnxruntime as ort

    levels = []
    real = ort.InferenceSession

    def recording(proto: bytes, options: ort.SessionOptions, **kwargs: object) -> ort.InferenceSession:
        levels.append(options.graph_optimization_level)
        return real(proto, options, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", recording)
    model = _prelu_graph(np.array([0.1, 0.2, 0.3, 0.4], np.float32).reshape(4, 1, 1))
    apply_rewrites(model, ["prelu_to_max"], _feeds(1, 4, 5, 6) - 0.5)
    assert levels == [ort.GraphOptimizationLevel.ORT_DISABLE_ALL] * 2


def _conv_prelu_graph(in_channels: int, slopes: list[float]) -> onnx.ModelProto:
    rng = np.random.default_rng(2)
    out = len(slopes)
    inits = [
        numpy_helper.from_array(rng.standard_normal((out, in_channels, 1, 1)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.standard_normal(out).astype(np.float32), "b"),
        numpy_helper.from_array(np.array(slopes, np.float32).reshape(out, 1, 1), "s"),
    ]
    nodes = [oh.make_node("Conv", ["x", "w", "b"], ["y"], name="pw"), oh.make_node("PRelu", ["y", "s"], ["z"], name="act")]
    return _one_input_model(nodes, "conv_prelu", [1, in_channels, "h", "w"], "z", inits)


@pytest.mark.parametrize("shuffled", [False, True])
def test_prelu_before_a_quantizer_is_left_to_the_bit_exact_max_form(shuffled: bool) -> None:
    # the two convs round differently from one; a QuantizeLinear after them turns that into whole steps
    model = _conv_prelu_graph(32, [0.25, -0.5, 0.75, 0.1] * 8)
    model.graph.initializer.extend([
        numpy_helper.from_array(np.array(1e-3, np.float32), "q_scale"), numpy_helper.from_array(np.array(128, np.uint8), "q_zero"),
    ])  # fmt: skip
    quantized = "z"
    if shuffled:  # a pixel shuffle between them only moves the values
        model.graph.node.append(oh.make_node("DepthToSpace", ["z"], ["zs"], blocksize=2, mode="CRD"))
        quantized = "zs"
    model.graph.node.extend([
        oh.make_node("QuantizeLinear", [quantized, "q_scale", "q_zero"], ["zq"]),
        oh.make_node("DequantizeLinear", ["zq", "q_scale", "q_zero"], ["zd"]),
    ])  # fmt: skip
    model.graph.output[0].name = "zd"
    out, reports = apply_rewrites(model, ["prelu_two_convs", "prelu_to_max"], _feeds(1, 32, 40, 60) - 0.5)
    assert [(r.name, r.applied, r.max_abs_diff) for r in reports] == [("prelu_two_convs", 0, 0.0), ("prelu_to_max", 1, 0.0)]


@pytest.mark.parametrize(
    ("in_channels", "slopes", "applied"),
    [(16, [0.25, -0.5, 1.0, 0.0], 1), (64, [0.25, -0.5, 1.0, 0.0], 1), (72, [0.25, -0.5, 1.0, 0.0], 0), (16, [0.25, 1.5, 1.0, 0.0], 0)],
)
def test_prelu_two_convs_on_a_narrow_conv_only(in_channels: int, slopes: list[float], applied: int) -> None:
    model = _conv_prelu_graph(in_channels, slopes)
    out, reports = apply_rewrites(model, ["prelu_two_convs"], _feeds(1, in_channels, 5, 6) - 0.5)
    assert reports[0].applied == applied
    ops = [n.op_type for n in out.graph.node]
    assert ops == (["Conv", "Relu", "Conv", "Add"] if applied else ["Conv", "PRelu"])
    feeds = np.random.default_rng(4).standard_normal((1, in_channels, 7, 9)).astype(np.float32)
    diff, peak = max_output_difference(model, out, feeds)
    assert diff <= 1e-5 * peak
    if applied:  # a = 1 leaves nothing for the relu branch; a = 0 nothing for the linear one
        weights = {i.name: numpy_helper.to_array(i) for i in out.graph.initializer}
        assert {n for n in weights} == {"w_linear", "w_linear_b", "w_relu", "w_relu_b"}
        original = numpy_helper.to_array(model.graph.initializer[0])[:, 0, 0, 0]
        assert np.allclose(weights["w_linear"][:, 0, 0, 0] + weights["w_relu"][:, 0, 0, 0], original)


def _steep_prelu_graph(slope: np.ndarray, *, bias: bool = True, reader: str = "conv") -> onnx.ModelProto:
    """Conv 1x1 (4 -> 8) -> PRelu(slope) -> [depthwise 3x3, grouped 1x1 (2 groups)] -> Add.

    ``reader="add"``: the PRelu's output also feeds the Add directly (a reader that is not a conv)."""
    rng = np.random.default_rng(5)
    inits = [
        numpy_helper.from_array(rng.standard_normal((8, 4, 1, 1)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.standard_normal((8, 1, 3, 3)).astype(np.float32), "dw"),
        numpy_helper.from_array(rng.standard_normal((8, 4, 1, 1)).astype(np.float32), "gw"),
        numpy_helper.from_array(slope.astype(np.float32), "s"),
    ] + ([numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b")] if bias else [])
    nodes = [
        oh.make_node("Conv", ["x", "w", "b"] if bias else ["x", "w"], ["y"], name="pw"),
        oh.make_node("PRelu", ["y", "s"], ["z"], name="act"),
        oh.make_node("Conv", ["z", "dw"], ["d"], name="depthwise", group=8, pads=[1, 1, 1, 1]),
        oh.make_node("Conv", ["z", "gw"], ["g"], name="grouped", group=2),
        oh.make_node("Add", ["d", "g" if reader == "conv" else "z"], ["out"]),
    ]
    return _one_input_model(nodes, "steep", [1, 4, "h", "w"], "out", inits)


_MIXED = np.array([0.25, 1.5, -0.5, 1.0, 3.0, 0.0, 1.25, 0.9], np.float32).reshape(1, 8, 1, 1)


@pytest.mark.parametrize(
    ("slope", "bias"), [(_MIXED, True), (_MIXED, False), (np.array(2.0, np.float32), True)], ids=["mixed", "no-bias", "scalar"]
)
def test_prelu_flip_steep_lets_two_convs_take_mixed_slopes(slope: np.ndarray, bias: bool) -> None:
    model = _steep_prelu_graph(slope, bias=bias)
    out, reports = apply_rewrites(model, ["prelu_flip_steep", "prelu_two_convs"], _feeds(1, 4, 5, 6) - 0.5)
    assert [(r.name, r.applied) for r in reports] == [("prelu_flip_steep", 1), ("prelu_two_convs", 1)]
    assert "PRelu" not in [n.op_type for n in out.graph.node]
    feeds = np.random.default_rng(6).standard_normal((1, 4, 9, 7)).astype(np.float32)
    diff, peak = max_output_difference(model, out, feeds)
    assert diff <= 1e-5 * peak and peak > 1
    # the flip alone: slopes > 1 become 1 / a, their channels negated in the producer, -a in the readers
    flipped, _ = apply_rewrites(model, ["prelu_flip_steep"], None)
    values = {i.name: numpy_helper.to_array(i) for i in flipped.graph.initializer}
    index = GraphIndex(flipped.graph)
    act = next(n for n in flipped.graph.node if n.op_type == "PRelu")
    slopes = np.broadcast_to(slope.reshape(-1), (8,))
    steep = slopes > 1
    new = index.constant(act.input[1])
    assert new.shape == ((1, 8, 1, 1) if slope.size == 8 else (8, 1, 1))
    np.testing.assert_allclose(new.reshape(-1), np.where(steep, 1 / np.where(steep, slopes, 1), slopes), rtol=1e-6)
    original = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    sign = np.where(steep, -1, 1)
    np.testing.assert_array_equal(values["w"][:, 0, 0, 0], original["w"][:, 0, 0, 0] * sign)
    np.testing.assert_allclose(values["dw"][:, 0, 1, 1], original["dw"][:, 0, 1, 1] * np.where(steep, -slopes, 1), rtol=1e-6)
    factor = np.where(steep, -slopes, 1).reshape(2, 4)  # grouped conv: output o reads inputs 4 * (o // 4) + j
    np.testing.assert_allclose(values["gw"][:, :, 0, 0], original["gw"][:, :, 0, 0] * np.repeat(factor, 4, axis=0), rtol=1e-6)


@pytest.mark.parametrize(
    ("slope", "reader"),
    [(np.array([0.25, -0.5, 1.0, 0.0, 0.9, 0.1, 0.2, 0.3], np.float32).reshape(8, 1, 1), "conv"), (_MIXED, "add")],
    ids=["no-steep-slope", "read-by-an-add"],
)
def test_prelu_flip_steep_leaves_other_sites(slope: np.ndarray, reader: str) -> None:
    model = _steep_prelu_graph(slope, reader=reader)
    out, reports = apply_rewrites(model, ["prelu_flip_steep"], _feeds(1, 4, 5, 6) - 0.5)
    assert reports[0].applied == 0
    assert [numpy_helper.to_array(i).tobytes() for i in out.graph.initializer] == [
        numpy_helper.to_array(i).tobytes() for i in model.graph.initializer
    ]


@pytest.mark.parametrize("slope", [_MIXED, np.array(0.2, np.float32)], ids=["per-channel", "scalar"])
def test_prelu_split_depthwise_moves_the_prelu_into_its_narrow_readers(slope: np.ndarray) -> None:
    # readers: a padded depthwise 3x3 (fan-in 9) and a grouped 1x1 (2 groups, fan-in 4); any slope sign
    model = _steep_prelu_graph(slope)
    out, reports = apply_rewrites(model, ["prelu_split_depthwise"], _feeds(1, 4, 5, 6) - 0.5)
    assert reports[0].applied == 1 and reports[0].max_abs_diff <= 1e-5
    ops = [n.op_type for n in out.graph.node]
    assert "PRelu" not in ops and ops.count("Relu") == 1 and ops.count("Conv") == 5 and ops.count("Add") == 3
    feeds = np.random.default_rng(8).standard_normal((1, 4, 9, 7)).astype(np.float32)
    diff, peak = max_output_difference(model, out, feeds)
    assert diff <= 1e-5 * peak and peak > 1
    # each reader's relu copy and linear copy sum to the reader: input channel c scaled by 1 - a_c and a_c
    weights = {i.name: numpy_helper.to_array(i) for i in out.graph.initializer}
    original = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for name in ("dw", "gw"):
        assert np.allclose(weights[f"{name}_relu"] + weights[f"{name}_linear"], original[name], atol=1e-6)
    slopes = np.broadcast_to(slope.reshape(-1), (8,))
    assert np.allclose(weights["dw_linear"][:, 0], original["dw"][:, 0] * slopes[:, None, None], atol=1e-6)
    # the grouped 1x1 reads input channels 4 g .. 4 g + 3 in group g: its linear copy scales column j by a_{4 g + j}
    grouped = original["gw"][:, :, 0, 0].reshape(2, 4, 4) * slopes.reshape(2, 1, 4)
    assert np.allclose(weights["gw_linear"][:, :, 0, 0], grouped.reshape(8, 4), atol=1e-6)
    relu = next(n for n in out.graph.node if n.op_type == "Relu")
    assert relu.input[0] == "y" and {n.input[0] for n in out.graph.node if n.name.endswith("_relu") and n.op_type == "Conv"} == {relu.output[0]}


def _prelu_after(producer: str) -> onnx.ModelProto:
    """``producer -> PRelu -> depthwise 3x3``: a Conv, a DequantizeLinear or an Identity feeds the PRelu."""
    rng = np.random.default_rng(9)
    inits = [
        numpy_helper.from_array(rng.standard_normal((4, 4, 1, 1)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.standard_normal((4, 1, 3, 3)).astype(np.float32), "dw"),
        numpy_helper.from_array(np.array([0.1, 0.2, 0.3, 0.4], np.float32).reshape(4, 1, 1), "s"),
        numpy_helper.from_array(np.array(0.05, np.float32), "q_scale"), numpy_helper.from_array(np.array(7, np.uint8), "q_zero"),
    ]
    first = {
        "Conv": [oh.make_node("Conv", ["x", "w"], ["y"])],
        "DequantizeLinear": [oh.make_node("QuantizeLinear", ["x", "q_scale", "q_zero"], ["q"]),
                             oh.make_node("DequantizeLinear", ["q", "q_scale", "q_zero"], ["y"])],
        "Identity": [oh.make_node("Identity", ["x"], ["y"])],
    }[producer]  # fmt: skip
    nodes = first + [
        oh.make_node("PRelu", ["y", "s"], ["z"]), oh.make_node("Conv", ["z", "dw"], ["out"], group=4, pads=[1, 1, 1, 1]),
    ]  # fmt: skip
    return _one_input_model(nodes, "after", [1, 4, "h", "w"], "out", inits)


def test_prelu_split_depthwise_follows_a_chain_of_prelus() -> None:
    # Conv -> PRelu -> depthwise -> PRelu -> depthwise: the second PRelu's producer is the first split's Add
    model = _prelu_after("Conv")
    model.graph.initializer.extend([
        numpy_helper.from_array(np.full((4, 1, 1), 0.3, np.float32), "s2"),
        numpy_helper.from_array(np.random.default_rng(10).standard_normal((4, 1, 3, 3)).astype(np.float32), "dw2"),
    ])  # fmt: skip
    model.graph.node[-1].output[0] = "mid"
    model.graph.node.extend([
        oh.make_node("PRelu", ["mid", "s2"], ["z2"]), oh.make_node("Conv", ["z2", "dw2"], ["out"], group=4, pads=[1, 1, 1, 1]),
    ])  # fmt: skip
    out, reports = apply_rewrites(model, ["prelu_split_depthwise"], _feeds(1, 4, 6, 7) - 0.5)
    assert reports[0].applied == 2 and reports[0].max_abs_diff <= 1e-5
    assert [n.op_type for n in out.graph.node].count("Relu") == 2


@pytest.mark.parametrize(("producer", "applied"), [("Conv", 1), ("DequantizeLinear", 0), ("Identity", 0)])
def test_prelu_split_depthwise_only_after_a_blocked_layout_producer(producer: str, applied: int) -> None:
    # after a DequantizeLinear ONNX Runtime duplicates the dequantizer and runs the Relu unblocked: slower
    out, reports = apply_rewrites(_prelu_after(producer), ["prelu_split_depthwise"], _feeds(1, 4, 5, 6) - 0.5)
    assert reports[0].applied == applied
    assert ("PRelu" in [n.op_type for n in out.graph.node]) is (applied == 0)


def test_prelu_split_depthwise_leaves_wide_non_conv_and_quantized_readers() -> None:
    rewrite = ["prelu_split_depthwise"]
    assert apply_rewrites(_steep_prelu_graph(_MIXED, reader="add"), rewrite, None)[1][0].applied == 0  # an Add reads it
    wide = _conv_prelu_graph(4, [0.25] * 32)  # Conv -> PRelu (32 channels) -> a 3x3 conv over all 32: fan-in 288
    wide.graph.initializer.append(numpy_helper.from_array(np.ones((8, 32, 3, 3), np.float32), "dense"))
    wide.graph.node.append(oh.make_node("Conv", ["z", "dense"], ["d"], pads=[1, 1, 1, 1]))
    wide.graph.output[0].name = "d"
    assert apply_rewrites(wide, rewrite, None)[1][0].applied == 0
    quantized = _prelu_after("Conv")  # the reader's output goes to a QuantizeLinear: two convs round differently
    quantized.graph.node.append(oh.make_node("QuantizeLinear", ["out", "q_scale", "q_zero"], ["oq"]))
    quantized.graph.output[0].name = "oq"
    quantized.graph.output[0].type.tensor_type.elem_type = TensorProto.UINT8
    assert apply_rewrites(quantized, rewrite, None)[1][0].applied == 0


def _conv_chain_graph(*, shared: bool = False) -> onnx.ModelProto:
    """Conv -> Mul(per-channel) -> Add(scalar) -> Relu -> DepthToSpace(CRD, 2); ``shared``: Mul also read elsewhere."""
    rng = np.random.default_rng(1)
    inits = [
        numpy_helper.from_array(rng.standard_normal((12, 3, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.standard_normal(12).astype(np.float32), "b"),
        numpy_helper.from_array(rng.random((1, 12, 1, 1)).astype(np.float32), "scale"),
        numpy_helper.from_array(np.array(0.25, np.float32), "shift"),
    ]
    nodes = [
        oh.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        oh.make_node("Mul", ["c", "scale"], ["m"]),
        oh.make_node("Add", ["shift", "m"], ["a"]),
        oh.make_node("Relu", ["a"], ["r"]),
        oh.make_node("DepthToSpace", ["r"], ["y"], blocksize=2, mode="CRD"),
    ]
    outputs = [oh.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if shared:
        outputs.append(oh.make_tensor_value_info("m", TensorProto.FLOAT, None))
    graph = oh.make_graph(nodes, "chain", [oh.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, "h", "w"])], outputs, inits)
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 18)], ir_version=IR_VERSION)


def test_dcr_rewrite_permutes_per_channel_constants_between_conv_and_shuffle() -> None:
    model = _conv_chain_graph()
    out, reports = apply_rewrites(model, ["d2s_dcr"], _feeds(1, 3, 5, 6))
    assert reports[0].applied == 1 and depth_to_space_modes(out) == ["DCR"]
    scale = numpy_helper.to_array(next(i for i in out.graph.initializer if i.name == "scale"))
    perm = crd_to_dcr_permutation(3, 2)
    original = numpy_helper.to_array(model.graph.initializer[2])
    assert np.array_equal(scale.reshape(-1), original.reshape(-1)[perm])
    diff, _ = max_output_difference(model, out, _feeds(1, 3, 7, 4))
    assert diff <= 1e-6


def test_dcr_rewrite_skips_a_conv_whose_output_is_read_elsewhere() -> None:
    model = _conv_chain_graph(shared=True)
    out, reports = apply_rewrites(model, ["d2s_dcr"], _feeds(1, 3, 5, 6))
    assert reports[0].applied == 0 and depth_to_space_modes(out) == ["CRD"]


@pytest.mark.parametrize("first", [[], ["d2s_dcr"]])
def test_d2s_conv_transpose_is_bit_exact_in_crd_and_dcr_order(first: list[str]) -> None:
    model = _conv_chain_graph()
    start, _ = apply_rewrites(model, first, None)  # d2s_dcr: a DCR shuffle, its conv permuted and marked
    out, reports = apply_rewrites(start, ["d2s_conv_transpose"], _feeds(1, 3, 5, 6))
    assert reports[0].applied == 1 and depth_to_space_modes(out) == []
    (convt,) = [n for n in out.graph.node if n.op_type == "ConvTranspose"]
    weight = GraphIndex(out.graph).constant(convt.input[1])
    assert weight.shape == (12, 1, 2, 2) and weight.sum() == 12 and weight[5, 0, 0, 1] == 1  # channel 5 = c 1, (i, j) = (0, 1)
    assert [a.i for a in convt.attribute if a.name == "group"] == [3]
    feeds = np.random.default_rng(5).standard_normal((1, 3, 7, 4)).astype(np.float32)
    assert max_output_difference(model, out, feeds)[0] == 0.0
    conv = next(n for n in out.graph.node if n.op_type == "Conv")
    assert not any(p.key == PERMUTED_KEY for p in conv.metadata_props), "back in the exported channel order"


def test_d2s_conv_transpose_leaves_int8_shuffles_to_onnx_runtime() -> None:
    scale, zero = numpy_helper.from_array(np.array(0.02, np.float32), "s"), numpy_helper.from_array(np.array(128, np.uint8), "z")
    nodes = [
        oh.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
        oh.make_node("DequantizeLinear", ["q", "s", "z"], ["d"]),
        oh.make_node("DepthToSpace", ["d"], ["y"], blocksize=2, mode="CRD"),
    ]
    model = _one_input_model(nodes, "qdq_shuffle", [1, 8, "h", "w"], "y", [scale, zero])
    _, reports = apply_rewrites(model, ["d2s_conv_transpose"], _feeds(1, 8, 3, 4))
    assert reports[0].applied == 0


def _dcr_shuffle(x: torch.Tensor, block: int) -> torch.Tensor:
    n, c, h, w = x.shape
    out = c // (block * block)
    return x.reshape(n, block, block, out, h, w).permute(0, 3, 4, 1, 5, 2).reshape(n, out, h * block, w * block)


@pytest.mark.parametrize(("block", "size", "mode"), [(2, 3, "CRD"), (2, 3, "DCR"), (2, 5, "CRD"), (3, 3, "DCR"), (2, 1, "CRD")])
def test_subpixel_kernel_equals_shuffle_then_conv(block: int, size: int, mode: str) -> None:
    gen = torch.Generator().manual_seed(block * 10 + size)
    kernel = torch.randn(2, 3, size, size, generator=gen, dtype=torch.float64)
    z = torch.randn(1, 3 * block * block, 5, 6, generator=gen, dtype=torch.float64)
    shuffled = torch.pixel_shuffle(z, block) if mode == "CRD" else _dcr_shuffle(z, block)
    reference = torch.nn.functional.conv2d(shuffled, kernel, padding=size // 2)
    wide, (begin, end) = subpixel_kernel(kernel.numpy(), block, mode)
    low = torch.nn.functional.conv2d(torch.nn.functional.pad(z, (begin, end, begin, end)), torch.from_numpy(wide))
    assert wide.shape == (2 * block * block, 3 * block * block, begin + end + 1, begin + end + 1)
    assert float((_dcr_shuffle(low, block) - reference).abs().max()) < 1e-12


class SeparableTail(nn.Module):
    """x2 net ending like F2SRGAN: pw -> PixelShuffle -> PReLU(16) -> depthwise 3x3 -> 1x1 to RGB -> affine."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.head = nn.Conv2d(3, 8, 3, padding=1)
        self.pw = nn.Conv2d(8, 64, 1)
        self.shuffle = nn.PixelShuffle(2)
        self.act = nn.PReLU(16, init=0.2)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.rgb = nn.Conv2d(16, 3, 1)

        self.register_buffer("mean", torch.tensor([0.4, 0.5, 0.6]).reshape(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (0.5 - (self.rgb(self.dw(self.act(self.shuffle(self.pw(self.head(x)))))) + self.mean)) / 2.0


class MeanShiftTail(SeparableTail):
    """SeparableTail with F2SRGAN's output: a 1x1 mean-shift conv (3 -> 3) after the RGB conv, then / 255."""

    def __init__(self) -> None:
        super().__init__()
        self.add_mean = nn.Conv2d(3, 3, 1)
        with torch.no_grad():
            self.add_mean.weight.copy_(torch.eye(3).reshape(3, 3, 1, 1) * torch.tensor([1.1, 0.9, 1.0]).reshape(3, 1, 1, 1))
            self.add_mean.bias.copy_(torch.tensor([114.4, 111.5, 103.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.add_mean(self.rgb(self.dw(self.act(self.shuffle(self.pw(self.head(x))))))) / 255.0


def test_subpixel_tail_folds_a_trailing_mean_shift_conv() -> None:
    net = MeanShiftTail().eval().requires_grad_(False)
    graph = export_onnx(net, torch.rand(1, 3, 12, 16))
    out, reports = apply_rewrites(graph, ["activation_before_d2s", "subpixel_tail"], _feeds(1, 3, 12, 16))
    assert [r.applied for r in reports] == [1, 1]
    assert [n.op_type for n in out.graph.node][-2:] == ["Conv", "DepthToSpace"], "mean shift and / 255 went into the conv"
    diff, peak = max_output_difference(graph, out, _feeds(2, 3, 9, 13))
    assert diff <= 1e-6 * max(1.0, peak)


def test_subpixel_tail_moves_the_separable_rgb_tail_before_the_shuffle(tiny_onnx: onnx.ModelProto) -> None:
    net = SeparableTail().eval().requires_grad_(False)
    deployed = compile_onnx(net, torch.rand(1, 3, 12, 16), OnnxConfig(provider="cpu", threads=1))
    reports = {r["name"]: r for r in deployed.metadata["rewrites"]}
    assert reports["subpixel_tail"]["applied"] == 1 and reports["subpixel_tail"]["max_abs_diff"] < 1e-5
    x = torch.rand(2, 3, 9, 13)
    assert float((deployed(x) - net(x)).abs().max()) < 1e-5
    graph = GraphIndex(deployed.proto.graph)
    (shuffle,) = [n for n in deployed.proto.graph.node if n.op_type == "ConvTranspose"]  # subpixel_compact
    folded = graph.producer[shuffle.input[0]]  # linear_branch_fold: the conv on the relu branch + the folded linear one
    assert folded.op_type == "Add" and reports["linear_branch_fold"]["applied"] == 1
    conv = graph.producer[folded.input[0]]
    assert conv.op_type == "Conv" and graph.constant(conv.input[1]).shape == (12, 64, 2, 2)  # 3 x 3 before subpixel_compact
    assert shuffle.output[0] == deployed.proto.graph.output[0].name, "the mean and the scaling went into the conv"
    # a tail that does not narrow the channels (3 -> 3) is left at full resolution
    inits = [numpy_helper.from_array(np.random.default_rng(6).standard_normal((3, 3, 3, 3)).astype(np.float32), "k")]
    nodes = [oh.make_node("DepthToSpace", ["x"], ["z"], blocksize=2, mode="CRD"), oh.make_node("Conv", ["z", "k"], ["y"], pads=[1] * 4)]
    _, kept = apply_rewrites(_one_input_model(nodes, "rgb_to_rgb", [1, 12, "h", "w"], "y", inits), ["subpixel_tail"], _feeds(1, 12, 4, 5))
    assert kept[0].applied == 0


def test_subpixel_tail_leaves_a_tail_read_by_a_quantizer() -> None:
    graph = export_onnx(SeparableTail().eval().requires_grad_(False), torch.rand(1, 3, 12, 16))
    graph.graph.initializer.extend([
        numpy_helper.from_array(np.array(0.01, np.float32), "q_scale"), numpy_helper.from_array(np.array(128, np.uint8), "q_zero"),
    ])  # fmt: skip
    last = graph.graph.output[0].name
    graph.graph.node.extend([
        oh.make_node("QuantizeLinear", [last, "q_scale", "q_zero"], ["yq"]), oh.make_node("DequantizeLinear", ["yq", "q_scale", "q_zero"], ["yd"]),
    ])  # fmt: skip
    graph.graph.output[0].name = "yd"
    _, reports = apply_rewrites(graph, ["activation_before_d2s", "subpixel_tail"], _feeds(1, 3, 12, 16))
    assert [r.applied for r in reports] == [1, 0]


def _conv_d2s_graph(weight: np.ndarray, bias: np.ndarray, pads: tuple[int, int], block: int, mode: str) -> onnx.ModelProto:
    """x -> Conv(weight, bias; pads begin/end on both axes) -> DepthToSpace(block, mode)."""
    inits = [numpy_helper.from_array(weight.astype(np.float32), "k"), numpy_helper.from_array(bias.astype(np.float32), "b")]
    nodes = [
        oh.make_node("Conv", ["x", "k", "b"], ["z"], pads=[pads[0], pads[0], pads[1], pads[1]]),
        oh.make_node("DepthToSpace", ["z"], ["y"], blocksize=block, mode=mode),
    ]
    return _one_input_model(nodes, "conv_d2s", ["n", weight.shape[1], "h", "w"], "y", inits)


@pytest.mark.parametrize(("block", "size", "mode", "window"), [(2, 3, "DCR", 2), (2, 3, "CRD", 2), (3, 3, "DCR", 2), (4, 3, "CRD", 2), (2, 5, "DCR", None)])
def test_subpixel_compact_keeps_each_subpixel_window_only(block: int, size: int, mode: str, window: int | None) -> None:
    """A k x k conv at r x the resolution, moved before the shuffle (subpixel_kernel), shrinks to the
    taps each sub-pixel reads: 2 x 2 for k = 3 (any r); for r = 2, k = 5 every sub-pixel reads 3 x 3 of 3 x 3."""
    rng = np.random.default_rng(block * 10 + size)
    kernel, bias = rng.standard_normal((3, 4, size, size)), rng.standard_normal(3)  # the high-resolution conv: 4 -> 3
    wide, pads = subpixel_kernel(kernel, block, "CRD")  # output channels in DCR order: (a r + b) 3 + o
    wide_bias = np.tile(bias, block * block)
    if mode == "CRD":  # o r^2 + a r + b
        wide, wide_bias = wide[np.argsort(crd_to_dcr_permutation(3, block))], np.repeat(bias, block * block)
    graph = _conv_d2s_graph(wide, wide_bias, pads, block, mode)
    out, (report,) = apply_rewrites(graph, ["subpixel_compact"], _feeds(1, 4 * block * block, 5, 7))
    assert report.applied == (window is not None)
    if window is None:
        return
    assert [n.op_type for n in out.graph.node] == ["Conv", "ConvTranspose"]
    weight = GraphIndex(out.graph).constant(out.graph.node[0].input[1])
    assert weight.shape == (3 * block * block, 4 * block * block, window, window)
    z = _feeds(2, 4 * block * block, 6, 9)
    high = torch.nn.functional.pixel_shuffle(torch.from_numpy(z).double(), block)
    expected = torch.nn.functional.conv2d(high, torch.from_numpy(kernel), torch.from_numpy(bias), padding=size // 2).numpy()
    session = onnxruntime.InferenceSession(out.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"x": z})[0]
    assert got.shape == expected.shape == (2, 3, 6 * block, 9 * block)
    assert np.abs(got - expected).max() <= 1e-5 * np.abs(expected).max()


def test_subpixel_compact_leaves_a_dense_conv_alone() -> None:
    weight = np.random.default_rng(9).standard_normal((12, 8, 3, 3))  # every sub-pixel reads all 3 x 3 taps
    graph = _conv_d2s_graph(weight, np.zeros(12), (1, 1), 2, "DCR")
    _, (report,) = apply_rewrites(graph, ["subpixel_compact"], _feeds(1, 8, 5, 7))
    assert report.applied == 0


def test_onnx_backend_fp16_and_save_load_round_trip(tiny: TinySR, tiny_onnx: onnx.ModelProto, tmp_path) -> None:
    example = torch.rand(1, 3, 12, 16)
    half = compile_onnx(tiny_onnx, example, OnnxConfig(provider="cpu", precision="fp16"))
    x = torch.rand(1, 3, 10, 10)
    err = float((half(x) - tiny(x)).abs().max())
    assert 0 < err < 2e-2
    assert half.proto.graph.initializer[0].data_type == TensorProto.FLOAT16
    path = half.save(tmp_path / "tiny_fp16")
    assert path.name == "tiny_fp16.onnx"
    loaded = load_onnx_deployed(path, OnnxConfig(provider="cpu", threads=1))
    assert torch.equal(loaded(x), half(x))
    assert loaded.metadata["precision"] == "fp16" and loaded.metadata["rewrites"][-1]["name"] == "scalar_mul_into_conv"
    from_path = compile_onnx(path, example, OnnxConfig(provider="cpu", precision="fp16", rewrites=[]))
    assert torch.equal(from_path(x), half(x))


@pytest.mark.parametrize(("spin", "entry"), [(True, "1"), (False, "0")])
def test_onnx_backend_spin_option_reaches_the_session(tiny_onnx: onnx.ModelProto, spin: bool, entry: str) -> None:
    deployed = compile_onnx(tiny_onnx, torch.rand(1, 3, 12, 16), OnnxConfig(provider="cpu", threads=1, spin=spin))
    assert deployed.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == entry


def test_onnx_backend_exports_a_half_model_in_float32(tiny: TinySR) -> None:
    half = TinySR().eval().requires_grad_(False).half()  # e.g. the output of a cast stage
    deployed = compile_onnx(half, torch.rand(1, 3, 8, 8), OnnxConfig(provider="cpu", precision="fp16"))
    x = torch.rand(1, 3, 8, 10)
    assert float((deployed(x) - tiny(x)).abs().max()) < 2e-2
    assert next(half.parameters()).dtype == torch.float16, "the user's model is not converted in place"


def test_onnx_backend_errors_name_the_fix(tiny_onnx: onnx.ModelProto) -> None:
    example = torch.rand(1, 3, 12, 16)
    with pytest.raises(DeployError, match=r"precision int8 needs a graph with QuantizeLinear/DequantizeLinear nodes"):
        compile_onnx(tiny_onnx, example, OnnxConfig(provider="cpu", precision="int8"))
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(DeployError, match=r"no CUDAExecutionProvider .* install onnxruntime-gpu .* or set provider: cpu"):
            compile_onnx(tiny_onnx, example, OnnxConfig(provider="cuda"))
    with pytest.raises(DeployError, match=r"no ONNX file at .*nothing.onnx"):
        compile_onnx("/nonexistent/nothing.onnx", example, OnnxConfig(provider="cpu"))


def qdq_graph(*, zero_point: int = 0, dtype: type = np.int8) -> onnx.ModelProto:
    """x -> Q/DQ (activation) -> Conv(weight from DQ, per-channel) -> DepthToSpace(CRD): an explicit-quantization graph."""
    rng = np.random.default_rng(2)
    weight = rng.integers(-100, 100, (12, 3, 3, 3)).astype(np.int8)
    inits = [
        numpy_helper.from_array(np.array(1 / 127, np.float32), "x_scale"),
        numpy_helper.from_array(np.array(zero_point, dtype), "x_zero"),
        numpy_helper.from_array(weight, "w_q"),
        numpy_helper.from_array((rng.random(12) * 0.01 + 0.001).astype(np.float32), "w_scale"),
        numpy_helper.from_array(np.zeros(12, np.int8), "w_zero"),
        numpy_helper.from_array(rng.standard_normal(12).astype(np.float32) * 0.1, "b"),
    ]
    nodes = [
        oh.make_node("QuantizeLinear", ["x", "x_scale", "x_zero"], ["xq"], name="q_in"),
        oh.make_node("DequantizeLinear", ["xq", "x_scale", "x_zero"], ["xd"], name="dq_in"),
        oh.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w"], axis=0, name="dq_w"),
        oh.make_node("Conv", ["xd", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        oh.make_node("DepthToSpace", ["c"], ["y"], blocksize=2, mode="CRD"),
    ]
    return _one_input_model(nodes, "qdq", [1, 3, "h", "w"], "y", inits)


def test_int8_qdq_graph_deploys_and_the_dcr_rewrite_permutes_quantized_weights() -> None:
    model = qdq_graph()
    summary = qdq_summary(model)
    assert (summary.quantize, summary.dequantize, summary.dtypes, summary.nonzero_zero_points) == (1, 2, ("int8",), ())
    config = OnnxConfig(provider="cpu", precision="int8", rewrites=["d2s_dcr"])
    deployed = compile_onnx(model, torch.rand(1, 3, 6, 5), config)
    assert deployed.metadata["qdq"] == {"quantize": 1, "dequantize": 2, "types": ["int8"]}
    assert deployed.metadata["rewrites"] == [{"name": "d2s_dcr", "applied": 1, "max_abs_diff": 0.0}]
    assert depth_to_space_modes(deployed.proto) == ["DCR"]
    # the default rewrites: the float conv's shuffle (not between Q/DQ) becomes a ConvTranspose
    default = compile_onnx(model, torch.rand(1, 3, 6, 5), OnnxConfig(provider="cpu", precision="int8"))
    applied = {r["name"]: r["applied"] for r in default.metadata["rewrites"]}
    assert depth_to_space_modes(default.proto) == [] and applied["d2s_conv_transpose"] == 1
    plain = compile_onnx(model, torch.rand(1, 3, 6, 5), OnnxConfig(provider="cpu", precision="int8", rewrites=[]))
    x = torch.rand(1, 3, 9, 4)
    assert float((deployed(x) - plain(x)).abs().max()) <= 1e-6
    assert float((default(x) - plain(x)).abs().max()) <= 1e-6
    with pytest.raises(DeployError, match=r"holds 2 DequantizeLinear nodes \(a quantized model\); set precision: int8"):
        compile_onnx(model, torch.rand(1, 3, 6, 5), OnnxConfig(provider="cpu"))


def test_onnx_fft_variants_dft_op_and_fft_free() -> None:
    model = WithFourier().eval().requires_grad_(False)
    example = torch.rand(1, 3, 8, 12)
    x = torch.rand(1, 3, 10, 14)
    dft = compile_onnx(model, example, OnnxConfig(provider="cpu", fft="dft_op"))
    free = compile_onnx(model, example, OnnxConfig(provider="cpu"))  # auto: export forms when present
    assert sum(n.op_type == "DFT" for n in dft.proto.graph.node) >= 2
    assert not any(n.op_type == "DFT" for n in free.proto.graph.node)
    assert free.metadata["fft"] == "fft_free" and free.metadata["export_forms"] == ["unit", "inner.1"]
    for deployed in (dft, free):
        assert float((deployed(x) - model(x)).abs().max()) < 1e-4
    assert any("DFT" in line for line in dft.metadata["preflight"])  # the ORT CPU speed warning


def test_onnx_export_of_the_f2srgan_fourier_unit_drops_dft() -> None:
    fourier = pytest.importorskip("srcompress.plugins.models.f2srgan.fourier", reason="F2SRGAN model plugin not installed")
    torch.manual_seed(0)
    unit = nn.Sequential(nn.Conv2d(3, 8, 1), fourier.FourierUnit(8, 8)).eval().requires_grad_(False)
    example = torch.rand(1, 3, 8, 12)
    free = compile_onnx(unit, example, OnnxConfig(provider="cpu", fft="fft_free"))
    assert free.metadata["export_forms"] == ["1"] and not any(n.op_type == "DFT" for n in free.proto.graph.node)
    x = torch.rand(2, 3, 9, 15)  # the export form follows dynamic (odd) sizes
    assert float((free(x) - unit(x)).abs().max()) < 1e-5


@pytest.mark.slow
def test_published_f2srgan_deploys_to_onnx_runtime_in_both_fft_forms(weights_root) -> None:
    from srcompress.deploy import verification_inputs, verify
    from srcompress.models import build_model
    from srcompress.recipe_types import ModelRef

    model = build_model(ModelRef(name="f2srgan", scale=4, weights="official")).eval().requires_grad_(False)
    example = torch.rand(1, 3, 24, 32)
    for fft in ("dft_op", "fft_free"):
        deployed = compile_onnx(model, example, OnnxConfig(provider="cpu", fft=fft))
        has_dft = any(n.op_type == "DFT" for n in deployed.proto.graph.node)
        assert has_dft == (fft == "dft_op")
        assert [r["applied"] for r in deployed.metadata["rewrites"]][:2] == [2, 2]  # two x2 upsampling stages
        assert verify(deployed, model, verification_inputs(example), tolerance=1e-4).max_abs < 1e-4


def test_pt2e_quantized_module_deploys_as_int8_qdq() -> None:
    """A torchao PT2E-converted model (what the quantization plugin hands over) exports to Q/DQ and runs in ORT."""
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer,
        get_default_x86_inductor_quantization_config,
    )

    from srcompress.deploy import verification_inputs, verify

    model = TinySR().eval()
    dims = {0: torch.export.Dim.DYNAMIC, 2: torch.export.Dim.DYNAMIC, 3: torch.export.Dim.DYNAMIC}
    graph = torch.export.export(model, (torch.rand(2, 3, 12, 16),), dynamic_shapes=(dims,)).module()
    prepared = prepare_pt2e(graph, X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config()))
    for _ in range(4):
        prepared(torch.rand(1, 3, 12, 16))
    quantized = move_exported_model_to_eval(convert_pt2e(prepared))
    deployed = compile_onnx(quantized, torch.rand(1, 3, 12, 16), OnnxConfig(provider="cpu", precision="int8"))
    # the shuffle feeds the tail conv's QuantizeLinear: d2s_conv_transpose leaves it to ONNX Runtime's int8 path
    assert deployed.metadata["qdq"]["dequantize"] > 0 and depth_to_space_modes(deployed.proto) == ["CRD"]
    result = verify(deployed, quantized, verification_inputs(torch.rand(1, 3, 12, 16)), tolerance=5e-2)
    assert 0 < result.max_abs < 1e-2  # vs the fake-quantized torch model


def test_fp32_math_sets_ieee_or_tf32_inside_and_restores_after() -> None:
    from srcompress.deploy import fp32_math

    conv = torch.backends.cudnn.conv
    before = (conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision)
    with fp32_math(tf32=False):
        assert (conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision) == ("ieee", "ieee")
    with fp32_math(tf32=True):
        assert (conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision) == ("tf32", "tf32")
    assert (conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision) == before


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_torch_backend_fp32_on_cuda_matches_the_cpu_model_unless_tf32() -> None:
    # PyTorch's cuDNN convs default to TF32 on Ampere and newer: 2.4e-3 off on the released Light F2SRGAN (H100)
    model = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.PReLU(64), nn.Conv2d(64, 48, 3, padding=1), nn.PixelShuffle(4)).eval()
    lr = torch.rand(1, 3, 48, 64, generator=torch.Generator().manual_seed(0))
    reference = model(lr)
    errors = {}
    for tf32 in (False, True):
        deployed = compile_torch(model, lr, TorchConfig(device="cuda", tf32=tf32))
        errors[tf32] = float((deployed(lr) - reference).abs().max())
    assert errors[False] < 1e-5, errors
    assert errors[True] > 1e-5, errors  # TF32 really was used when asked for
