"""The tensorrt backend: the graph it parses and its pre-flight (here), the engine build (needs TensorRT + GPU)."""

from __future__ import annotations

import hashlib

import pytest
import torch

from srcompress.backends.tensorrt import (
    MISSING_TENSORRT,
    TensorRTConfig,
    compile_tensorrt,
    load_tensorrt,
    profile_shapes,
    tensorrt_graph,
    tensorrt_missing,
)
from srcompress.backends.tensorrt.engine import read_timing_cache
from srcompress.errors import DeployError
from test_backend_preflight import Spectral
from test_backends import qdq_graph
from test_deploy import TinySR, WithFourier

MISSING = tensorrt_missing()


def test_fft_free_graph_passes_the_tensorrt_preflight() -> None:
    model = WithFourier().eval().requires_grad_(False)
    proto, issues, meta = tensorrt_graph(model, torch.rand(1, 3, 8, 12), TensorRTConfig(), tensorrt_version="10.13")
    assert issues == [] and not any(n.op_type == "DFT" for n in proto.graph.node)
    assert meta["fft"] == "fft_free" and meta["profile"] == [[1, 3, 32, 32], [1, 3, 180, 320], [1, 3, 720, 1280]]
    assert meta["input_name"] == "lr" and meta["backend"] == "tensorrt"


def test_dft_graph_fails_the_tensorrt_preflight_before_11_2() -> None:
    proto, issues, _ = tensorrt_graph(Spectral().eval(), torch.rand(1, 3, 8, 10), TensorRTConfig(fft="dft_op"), tensorrt_version="10.13")
    assert [(i.op, i.severity) for i in issues] == [("DFT", "error")]
    _, later, _ = tensorrt_graph(Spectral().eval(), torch.rand(1, 3, 8, 10), TensorRTConfig(fft="dft_op"), tensorrt_version="11.2")
    assert [(i.op, i.severity) for i in later] == [("DFT", "warning")]


def test_qdq_graphs_for_tensorrt_int8() -> None:
    config = TensorRTConfig(precision="int8", rewrites=[], min_lr=(8, 8), opt_lr=(16, 16), max_lr=(64, 64))
    _, issues, meta = tensorrt_graph(qdq_graph(), torch.rand(1, 3, 8, 8), config, tensorrt_version="10.13")
    assert issues == [] and meta["qdq"]["types"] == ["int8"]
    _, bad, _ = tensorrt_graph(qdq_graph(zero_point=3), torch.rand(1, 3, 8, 8), config, tensorrt_version="10.13")
    assert [i.message.split(";")[0] for i in bad] == ["asymmetric quantization (non-zero zero points)"]


def test_fp16_graph_is_converted_for_strong_typing() -> None:
    proto, issues, meta = tensorrt_graph(TinySR().eval(), torch.rand(1, 3, 12, 16), TensorRTConfig(precision="fp16"), tensorrt_version="10.13")
    assert issues == [] and meta["precision"] == "fp16"
    assert proto.graph.initializer[0].data_type == 10  # FLOAT16
    assert proto.graph.input[0].type.tensor_type.elem_type == 1  # float32 input: a Cast inside the graph


def test_weakly_typed_fp16_parses_the_float32_graph() -> None:
    proto, _, meta = tensorrt_graph(TinySR().eval(), torch.rand(1, 3, 12, 16), TensorRTConfig(precision="fp16", strongly_typed=False))
    assert meta["precision"] == "fp16" and proto.graph.initializer[0].data_type == 1  # FLOAT: BuilderFlag.FP16 decides


def test_profile_must_be_ordered() -> None:
    with pytest.raises(DeployError, match=r"need min_lr <= opt_lr <= max_lr"):
        profile_shapes(TensorRTConfig(min_lr=(64, 64), opt_lr=(32, 32)))


def test_pinned_timing_cache_must_match(tmp_path) -> None:
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"cache-bytes")
    digest = hashlib.sha256(b"cache-bytes").hexdigest()
    assert read_timing_cache(cache, digest) == b"cache-bytes"
    assert read_timing_cache(tmp_path / "absent.cache", None) == b""
    with pytest.raises(DeployError, match=r"has SHA-256 .* pinned 0000; restore the pinned file or update timing_cache_sha256"):
        read_timing_cache(cache, "0000")
    with pytest.raises(DeployError, match=r"pinned timing cache .*absent.cache does not exist"):
        read_timing_cache(tmp_path / "absent.cache", digest)


@pytest.mark.skipif(MISSING is None, reason="TensorRT and a GPU are present")
def test_building_without_tensorrt_names_what_is_missing() -> None:
    with pytest.raises(DeployError, match=r"tensorrt backend: (tensorrt not installed \(pip install srcompress\[tensorrt\]\)|no CUDA GPU)"):
        compile_tensorrt(TinySR().eval(), torch.rand(1, 3, 12, 16), TensorRTConfig())
    assert MISSING_TENSORRT == "tensorrt not installed (pip install srcompress[tensorrt])"


@pytest.mark.skipif(MISSING is not None, reason=f"{MISSING}")
def test_engine_build_run_save_load(tmp_path) -> None:
    model = TinySR().eval().cuda()
    config = TensorRTConfig(min_lr=(8, 8), opt_lr=(16, 16), max_lr=(64, 64), max_batch=2, timing_cache=str(tmp_path / "t.cache"))
    deployed = compile_tensorrt(model, torch.rand(1, 3, 16, 16), config)
    x = torch.rand(2, 3, 12, 20, device="cuda")
    assert float((deployed(x) - model(x)).abs().max()) < 1e-3
    assert deployed.latency(x, warmup=1, runs=3).median_ms > 0
    assert len(deployed.metadata["timing_cache_sha256"]) == 64
    path = deployed.save(tmp_path / "tiny")
    loaded = load_tensorrt(path, TensorRTConfig())
    assert torch.equal(loaded(x), deployed(x))
    with pytest.raises(DeployError, match=r"outside the engine's profile"):
        loaded(torch.rand(1, 3, 100, 100, device="cuda"))
