"""Pre-flight findings: DFT per target and TensorRT version, asymmetric / uint8 Q/DQ, dynamic shapes."""

from __future__ import annotations

import importlib.util

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto
from onnx import helper as oh
from torch import nn

from srcompress.backends.onnx import export_onnx, preflight
from srcompress.backends.onnx.preflight import dynamic_inputs, parse_version
from srcompress.errors import DeployError
from test_backends import qdq_graph


class Spectral(nn.Module):
    """A tiny Fourier filter: conv -> rfft2 -> scale -> irfft2 (exports ONNX DFT at opset 18)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spec = torch.fft.rfft2(self.conv(x), norm="ortho")
        return torch.fft.irfft2(spec * 0.5, s=x.shape[-2:], norm="ortho")


@pytest.fixture(scope="module")
def dft_graph() -> onnx.ModelProto:
    return export_onnx(Spectral().eval(), torch.rand(1, 3, 8, 10), opset=18)


def _by_op(issues: list, op: str) -> list:
    return [i for i in issues if i.op == op]


def test_exported_fft_is_a_dft_node(dft_graph: onnx.ModelProto) -> None:
    assert sum(n.op_type == "DFT" for n in dft_graph.graph.node) >= 2
    assert dynamic_inputs(dft_graph) == {"lr": ["batch", 3, "height", "width"]}


def test_dft_blocks_tensorrt_before_11_2_with_the_fft_free_fix(dft_graph: onnx.ModelProto) -> None:
    shapes = ([1, 3, 8, 8], [1, 3, 64, 64], [1, 3, 128, 128])
    issues = preflight(dft_graph, "tensorrt", tensorrt_version="10.13.3.9", profile={"lr": shapes})
    (dft,) = _by_op(issues, "DFT")
    assert dft.severity == "error" and "TensorRT 10.13.3.9 cannot parse ONNX DFT" in dft.message
    assert "fft: fft_free" in dft.fix and len(dft.nodes) >= 2
    assert [i.op for i in issues] == ["DFT"], "nothing else is wrong with this graph"
    newer = preflight(dft_graph, "tensorrt", tensorrt_version="11.2.1", profile={"lr": shapes})
    assert [(i.op, i.severity) for i in newer] == [("DFT", "warning")] and "FFTPlugin" in newer[0].message
    if importlib.util.find_spec("tensorrt") is None:  # version unknown: assumed older than 11.2
        assert _by_op(preflight(dft_graph, "tensorrt", profile={"lr": shapes}), "DFT")[0].severity == "error"


def test_dft_on_onnx_runtime_providers(dft_graph: onnx.ModelProto) -> None:
    (cuda,) = preflight(dft_graph, "onnxruntime-cuda")
    assert cuda.severity == "warning" and "no CUDA kernel" in cuda.message and "fft_free" in cuda.fix
    (cpu,) = preflight(dft_graph, "onnxruntime-cpu")
    assert cpu.severity == "warning" and "6x slower" in cpu.message
    ort_trt = preflight(dft_graph, "onnxruntime-tensorrt", tensorrt_version="10.0")
    assert [(i.op, i.severity) for i in ort_trt] == [("DFT", "warning")]


def test_opset_20_dft_with_dynamic_shapes_is_an_onnx_runtime_error() -> None:
    node = oh.make_node("DFT", ["x", "", "axis"], ["y"], onesided=1)
    graph = oh.make_graph(
        [node], "dft20", [oh.make_tensor_value_info("x", TensorProto.FLOAT, [1, "h", "w", 1])],
        [oh.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [oh.make_tensor("axis", TensorProto.INT64, [], [2])],
    )  # fmt: skip
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 20)])
    errors = [i for i in preflight(model, "onnxruntime-cpu") if i.severity == "error"]
    assert len(errors) == 1 and "opset 20" in errors[0].message and errors[0].fix == "export with opset: 18"


def test_asymmetric_uint8_qdq_is_flagged_for_tensorrt_only() -> None:
    asymmetric = qdq_graph(zero_point=128, dtype=np.uint8)
    issues = preflight(asymmetric, "tensorrt", profile={"x": ([1, 3, 8, 8], [1, 3, 16, 16], [1, 3, 32, 32])})
    messages = {i.message.split(";")[0]: i for i in issues}
    asym = messages["asymmetric quantization (non-zero zero points)"]
    assert asym.severity == "error" and asym.nodes == ("q_in", "dq_in") and "symmetric" in asym.fix
    kinds = messages["quantized type uint8"]
    assert "int8, fp8, int4 or fp4 only" in kinds.message
    assert kinds.severity == "error" and set(kinds.nodes) == {"q_in", "dq_in"}
    assert preflight(asymmetric, "onnxruntime-cpu") == []
    symmetric = qdq_graph()
    assert preflight(symmetric, "tensorrt", profile={"x": ([1, 3, 8, 8], [1, 3, 16, 16], [1, 3, 32, 32])}) == []


def test_dynamic_input_without_or_with_a_wrong_profile(dft_graph: onnx.ModelProto) -> None:
    symmetric = qdq_graph()
    (missing,) = preflight(symmetric, "tensorrt")
    assert missing.op == "input" and missing.severity == "error" and "no optimization profile" in missing.message
    assert "min_lr" in missing.fix
    wrong = preflight(symmetric, "tensorrt", profile={"x": ([1, 1, 8, 8], [1, 3, 16, 16], [1, 3, 32, 32])})
    assert len(wrong) == 1 and "profile min shape [1, 1, 8, 8] does not fit input 'x'" in wrong[0].message


def test_unsupported_and_custom_domain_ops_for_tensorrt() -> None:
    nodes = [
        oh.make_node("Unique", ["x"], ["u"], name="uniq"),
        oh.make_node("FusedConv", ["x"], ["f"], domain="com.microsoft", name="fused"),
    ]
    graph = oh.make_graph(
        nodes, "g", [oh.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [oh.make_tensor_value_info("u", TensorProto.FLOAT, None), oh.make_tensor_value_info("f", TensorProto.FLOAT, None)],
    )  # fmt: skip
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 18), oh.make_opsetid("com.microsoft", 1)])
    issues = {i.op: i for i in preflight(model, "tensorrt")}
    assert issues["Unique"].nodes == ("uniq",) and "not supported by TensorRT's ONNX parser" in issues["Unique"].message
    assert issues["com.microsoft::FusedConv"].severity == "error"


def test_unknown_target_and_version_parsing() -> None:
    with pytest.raises(DeployError, match=r"unknown pre-flight target 'trt' \(available: onnxruntime-cpu, "):
        preflight(qdq_graph(), "trt")
    assert parse_version("10.13.0.35") == (10, 13, 0, 35) and parse_version("11.2.1.post1") == (11, 2, 1)
    assert parse_version(None) is None
