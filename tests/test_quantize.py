"""Quantization plugin: PT2E PTQ/QAT on tiny SR nets, Q/DQ ONNX export, targets, calibrations, casts."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from srcompress.config import FieldValueError
from srcompress.plugins.models.f2srgan import F2SRGAN, F2SRGANOptions, f2srgan_hints
from srcompress.plugins.techniques.quantize import (
    EntropyObserver,
    PercentileObserver,
    QATModule,
    QuantizeConfig,
    activation_observer,
    cast_model,
    export_qdq_onnx,
    int8_ops,
    kl_threshold,
    load_quantized,
    quantize_model,
    quantizer_zero_points,
    save_quantized,
    untie_shared,
)

#: Max |ONNX Runtime - torch converted| on [0, 1] images: both run the same integer grid, but ORT's
#: integer kernels requantize with rounding that may differ by one step of an 8-bit activation
#: in a few pixels (1/255 ~ 0.004 at the output, amplified by later layers).
ORT_TOLERANCE = 0.03


def tiny_f2srgan(seed: int = 0) -> F2SRGAN:
    """x2 F2SRGAN with 2 blocks of width 16, block 0 an FFC (Fourier units: rfft2/irfft2)."""
    torch.manual_seed(seed)
    model = F2SRGAN(2, F2SRGANOptions(blocks=2, width=16, ffc_blocks=(0,))).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    return model


def batches(count: int = 3, size: int = 12, seed: int = 1) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.rand(2, 3, size, size + 4, generator=gen) for _ in range(count)]


@pytest.fixture(scope="module")
def tiny() -> F2SRGAN:
    return tiny_f2srgan()


@pytest.fixture(scope="module")
def ort_int8(tiny: F2SRGAN) -> tuple[nn.Module, dict, onnx.ModelProto]:
    hints = f2srgan_hints(tiny)
    model, facts = quantize_model(tiny, QuantizeConfig(), batches(), keep_float=tuple(hints.keep_float))
    proto = export_qdq_onnx(model, torch.rand(1, 3, 12, 16))
    return model, facts, proto


def _ort(proto: onnx.ModelProto, x: torch.Tensor) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"lr": x.numpy()})[0]


def test_qdq_onnx_passes_checker_runs_in_ort_and_matches_torch(ort_int8: tuple, tiny: F2SRGAN) -> None:
    model, facts, proto = ort_int8
    onnx.checker.check_model(proto)
    ops = {n.op_type for n in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops and "DFT" not in ops  # FFT-free export form
    x = torch.rand(1, 3, 14, 18, generator=torch.Generator().manual_seed(5))  # another size: dynamic H, W
    with torch.no_grad():
        ref = model(x).numpy()
        fp = tiny(x).numpy()
    got = _ort(proto, x)
    assert got.shape == (1, 3, 28, 36)
    assert np.abs(got - ref).max() < ORT_TOLERANCE
    assert 0 < np.abs(ref - fp).max() < 0.25  # quantized, but still the same function
    report = int8_ops(proto)
    assert report.int8.get("QLinearConv", 0) >= 6  # the trunk's convs run as integer kernels
    assert facts["folded_muls"] == 2  # each block's 0.1 residual scale went into its conv


def _weights_of_dequantize(model: nn.Module) -> set[str]:
    """Conv nodes (by nn_module_stack path) whose weight comes from a dequantize op."""
    names = set()
    for node in model.graph.nodes:
        if node.target == torch.ops.aten.conv2d.default:
            weight = node.args[1]
            stack = node.meta.get("nn_module_stack", {})
            path = list(stack.values())[-1][0] if stack else ""
            if getattr(weight, "target", None) is not None and "dequantize" in str(weight.target):
                names.add(path)
    return names


def test_fft_units_stay_float(ort_int8: tuple, tiny: F2SRGAN) -> None:
    model, facts, proto = ort_int8
    fourier = list(f2srgan_hints(tiny).keep_float)
    assert fourier and set(fourier) <= set(facts["float_modules"])
    quantized = _weights_of_dequantize(model)
    assert quantized and not any(q.startswith(f) for q in quantized for f in fourier)
    # in the ONNX graph, every conv of a Fourier unit reads a float weight (no DequantizeLinear in front)
    producers = {o: n for n in proto.graph.node for o in n.output}
    fourier_convs = [n for n in proto.graph.node if n.op_type == "Conv" and any(f in n.input[1] or f in n.name for f in fourier)]
    assert len(fourier_convs) >= 2
    for conv in fourier_convs:
        source = producers.get(conv.input[1])
        assert source is None or source.op_type != "DequantizeLinear"


def test_tensorrt_target_has_only_symmetric_int8_quantizers(tiny: F2SRGAN) -> None:
    from srcompress.backends.onnx import qdq_summary

    config = QuantizeConfig(target="tensorrt", calibration="entropy")
    model, _ = quantize_model(tiny, config, batches(2), keep_float=tuple(f2srgan_hints(tiny).keep_float))
    proto = export_qdq_onnx(model, torch.rand(1, 3, 12, 16))
    points = quantizer_zero_points(proto)
    assert len(points) > 20
    assert {dtype for _, dtype, _ in points} == {"int8"}
    assert max(zp for _, _, zp in points) == 0
    summary = qdq_summary(proto)  # the onnx backend's own reading agrees
    assert summary.dtypes == ("int8",) and summary.nonzero_zero_points == ()


def test_onnxruntime_target_uses_uint8_activations(ort_int8: tuple) -> None:
    points = quantizer_zero_points(ort_int8[2])
    assert {dtype for _, dtype, _ in points} == {"uint8", "int8"}  # u8 activations, s8 weights


def test_float_first_last_and_patterns_keep_convs_float(tiny: F2SRGAN) -> None:
    config = QuantizeConfig(float_first_last=True, keep_float=("upsampler.*",))
    _, facts = quantize_model(tiny, config, batches(1))
    floats = set(facts["float_modules"])
    assert {"head.depthwise", "tail.pointwise", "sub_mean", "add_mean", "upsampler.0.conv.pointwise"} <= floats
    assert "body.1.conv1.pointwise" not in floats


def test_a_keep_float_pattern_that_matches_nothing_is_refused(tiny: F2SRGAN) -> None:
    from srcompress.errors import SrcompressError

    with pytest.raises(SrcompressError, match=r"keep_float: pattern 'upsampler\.9\*' matches no module of F2SRGAN "
                       r"\(its top-level modules: add_mean, body, head, sub_mean, tail, upsampler;"):
        quantize_model(tiny, QuantizeConfig(keep_float=("upsampler.9*",)), batches(1))


def test_calibration_methods_give_different_scales_on_skewed_data() -> None:
    gen = torch.Generator().manual_seed(0)
    skewed = torch.cat([torch.randn(20000, generator=gen).abs() * 0.5, torch.tensor([40.0, 55.0])])  # rare outliers
    scales = {}
    for method in ("minmax", "percentile", "mse", "entropy"):
        observer = activation_observer(method, percentile=99.9)(dtype=torch.uint8, quant_min=0, quant_max=255,
                                                                 qscheme=torch.per_tensor_affine)
        observer(skewed)
        scale, zero = observer.calculate_qparams()
        scales[method] = float(scale)
    assert scales["minmax"] == pytest.approx(55.0 / 255, rel=1e-3)
    assert len(set(scales.values())) == 4
    # percentile and entropy clip the two outliers; the L2 search keeps them (clipping 2 values by ~50
    # costs more squared error than coarser steps for 20000), trimming only the empty top of the range
    assert scales["percentile"] < scales["minmax"] / 10 and scales["entropy"] < scales["minmax"] / 5
    assert scales["mse"] < scales["minmax"]
    assert isinstance(activation_observer("entropy")(), EntropyObserver)
    assert isinstance(activation_observer("percentile")(), PercentileObserver)


def test_kl_threshold_clips_a_long_tail() -> None:
    bins = np.arange(2048)
    counts = np.where(bins < 400, 1000.0 * np.exp(-((bins / 60.0) ** 2)), 0.0)  # half-normal, sigma ~42 bins
    counts[2000] = 1.0  # one outlier far out
    keep = kl_threshold(counts, 128)
    assert 128 <= keep <= 256  # clipped near 4.5 sigma, not at the outlier


def test_qat_trains_through_the_training_core_and_changes_weights(data_root: object, tmp_path: object, tiny: F2SRGAN) -> None:
    from srcompress.recipe_types import DataConfig
    from srcompress.training import TrainConfig, fit

    from srcompress.plugins.techniques.quantize import FreezeSchedule

    data = DataConfig(train=("Set5",), eval=("Set5",), patch=32, batch=2)
    config = QuantizeConfig(mode="qat", freeze_observers_after=2, freeze_bn_after=1)
    seen: dict = {}

    def finetune(wrapper: QATModule) -> QATModule:
        before = {k: v.detach().clone() for k, v in wrapper.state_dict().items() if v.is_floating_point()}
        hook = FreezeSchedule(wrapper, config.freeze_observers_after, config.freeze_bn_after)
        result = fit(wrapper, TrainConfig(steps=3, lr=1e-3, checkpoint_every=None), data, 2, work_dir=tmp_path,
                     hooks=[hook], progress=False)  # fmt: skip
        after = result.model.state_dict()
        seen["changed"] = sum(not torch.equal(before[k], after[k]) for k in before if "weight" in k)
        seen["frozen"] = (wrapper.observers_frozen, wrapper.bn_frozen)
        return result.model

    model, facts = quantize_model(tiny, config, batches(1), keep_float=tuple(f2srgan_hints(tiny).keep_float), finetune=finetune)
    assert seen["changed"] >= 5 and seen["frozen"] == (True, True)
    assert model(torch.rand(1, 3, 10, 12)).shape == (1, 3, 20, 24)


def test_untie_gives_each_call_its_own_copy() -> None:
    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(torch.relu(self.conv(x)))

    model = Shared()
    x = torch.rand(1, 3, 8, 8)
    ref = model(x)
    untied, names = untie_shared(model, x)
    assert names == ["conv"] and len(untied.conv.copies) == 2
    assert torch.equal(untied(x), ref)


def test_fp16_cast_keeps_fourier_units_float(tiny: F2SRGAN) -> None:
    keep = tuple(f2srgan_hints(tiny).keep_float)
    model, facts = quantize_model(tiny, QuantizeConfig(dtype="fp16"), [], keep_float=keep)
    x = torch.rand(1, 3, 8, 8)
    out = model(x)
    assert out.dtype == torch.float32 and torch.allclose(out, tiny(x), atol=2e-2)
    assert model.model.head.depthwise.weight.dtype == torch.float16
    assert model.model.get_submodule(keep[0]).module.conv.weight.dtype == torch.float32


def test_quantized_model_saves_as_pt2_and_reloads(ort_int8: tuple, tmp_path: object) -> None:
    model = ort_int8[0]
    path = save_quantized(model, tmp_path / "q", torch.rand(2, 3, 12, 16))
    assert path.suffix == ".pt2"
    loaded = load_quantized(path)
    x = torch.rand(1, 3, 10, 14)
    assert torch.equal(loaded(x), model(x))


def test_config_rejects_inconsistent_options() -> None:
    with pytest.raises(FieldValueError, match="mode: qat needs an integer dtype"):
        QuantizeConfig(mode="qat", dtype="fp16")
    with pytest.raises(FieldValueError, match="dtype: TensorRT has no int16"):
        QuantizeConfig(dtype="int16", target="tensorrt")
    with pytest.raises(FieldValueError, match="calibration: must be one of"):
        QuantizeConfig(calibration="kl")


def test_technique_apply_through_the_registry_keeps_hinted_fourier_units_float(data_root: object, tmp_path: object) -> None:
    from srcompress import default_registry
    from srcompress.context import StageContext
    from srcompress.models import build_model
    from srcompress.recipe_types import DataConfig, ModelRef

    registry = default_registry()
    entry = registry.get_technique("quantize")
    model = build_model(ModelRef(name="f2srgan", scale=2, options=F2SRGANOptions(blocks=2, width=16, ffc_blocks=(0,))))
    data = DataConfig(train=("Set5",), eval=("Set5",), patch=32, batch=2)
    ctx = StageContext(index=0, stage_name="quantize", scale=2, data=data, work_dir=tmp_path, registry=registry, quiet=True)
    config = entry.config_cls(calib_batches=2, calib_batch=2)
    quantized = entry.apply(model, config, ctx)
    assert quantized(torch.rand(1, 3, 10, 12)).shape == (1, 3, 20, 24)
    hinted = registry.get_model("f2srgan").hints(model).keep_float
    assert hinted and all(name in ctx.notes[0] for name in hinted)
    assert "on 2 batches" in ctx.notes[0]


def test_split_prelu_is_exact_and_removes_every_prelu() -> None:
    from srcompress.plugins.techniques.quantize import explicit_padding, export_for_quantization, split_prelu

    torch.manual_seed(0)
    model = F2SRGAN(4, F2SRGANOptions(blocks=2, width=16, ffc_blocks=())).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn_like(p))
    x = torch.rand(2, 3, 12, 16)
    graph = export_for_quantization(explicit_padding(model), x)
    assert split_prelu(graph) == 4  # 2 body PReLUs + 2 upsampler PReLUs (across the pixel shuffle)
    targets = [n.target for n in graph.graph.nodes if n.op == "call_function"]
    assert torch.ops.aten.prelu.default not in targets and targets.count(torch.ops.aten.relu.default) == 4
    torch.testing.assert_close(graph(x), model(x), atol=1e-5, rtol=0)
    # every PReLU feeds a separable conv: the +/- mix is folded into it, no grouped 2-channel conv is left
    groups = [(n.args[6] if len(n.args) > 6 else 1, tuple(n.args[1].meta["val"].shape)) for n in graph.graph.nodes
              if n.target == torch.ops.aten.conv2d.default]
    doubled_depthwise = [g for g, shape in groups if shape[1] == 1 and g == shape[0] == 32]
    assert len(doubled_depthwise) == 4 and all(shape[1] == 1 or g == 1 for g, shape in groups)


def test_split_prelu_keeps_the_prelu_of_a_conv_left_in_float() -> None:
    from srcompress.plugins.techniques.quantize import explicit_padding, export_for_quantization, split_prelu
    from srcompress.plugins.techniques.quantize.quantizer import build_quantizer

    model = F2SRGAN(4, F2SRGANOptions(blocks=2, width=16, ffc_blocks=())).eval()
    x = torch.rand(1, 3, 12, 16)
    graph = export_for_quantization(explicit_padding(model), x)
    quantizer = build_quantizer(QuantizeConfig(), ["upsampler.1", "upsampler.1.*", "tail", "tail.*"])
    assert split_prelu(graph, quantizer.in_float) == 3  # upsampler.1's conv runs in float: its PReLU stays
    prelus = [n for n in graph.graph.nodes if n.target == torch.ops.aten.prelu.default]
    assert len(prelus) == 1 and quantizer.in_float(prelus[0])
    torch.testing.assert_close(graph(x), model(x), atol=1e-5, rtol=0)
    # a PReLU kept in float itself (its conv quantized) is not split either
    graph = export_for_quantization(explicit_padding(model), x)
    quantizer = build_quantizer(QuantizeConfig(), ["upsampler.0.act", "upsampler.1", "upsampler.1.*", "tail", "tail.*"])
    assert split_prelu(graph, quantizer.in_float) == 2


def test_int8_with_a_float_tail_deploys_the_tail_on_the_low_resolution_side() -> None:
    from srcompress.backends.onnx import OnnxConfig, compile_onnx

    torch.manual_seed(0)
    model = F2SRGAN(4, F2SRGANOptions(blocks=2, width=16, ffc_blocks=())).eval()
    config = QuantizeConfig(keep_float=("upsampler.1*", "tail*"))
    quantized, facts = quantize_model(model, config, batches(size=12))
    assert facts["split_prelu"] == 3, "the last upsampler's PReLU follows a float conv: kept"
    deployed = compile_onnx(quantized, torch.rand(1, 3, 12, 16), OnnxConfig(provider="cpu", threads=1, precision="int8"))
    applied = {r["name"]: r["applied"] for r in deployed.metadata["rewrites"]}
    assert applied["subpixel_tail"] == 1 and applied["prelu_two_convs"] == 1
    x = torch.rand(1, 3, 10, 14)
    with torch.no_grad():
        assert float((deployed(x) - quantized(x)).abs().mean()) < ORT_TOLERANCE


def test_split_prelu_falls_back_to_the_mix_conv_when_a_consumer_is_not_a_conv() -> None:
    from srcompress.plugins.techniques.quantize import export_for_quantization, split_prelu

    class ConvPReLUAdd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.act = nn.Conv2d(3, 4, 3, padding=1), nn.PReLU(4, init=0.3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            z = self.act(self.conv(x))
            return z + z.mean()

    torch.manual_seed(0)
    model, x = ConvPReLUAdd().eval(), torch.rand(1, 3, 6, 6)
    graph = export_for_quantization(model, x)
    assert split_prelu(graph) == 1
    grouped = [n for n in graph.graph.nodes if n.target == torch.ops.aten.conv2d.default and n.args[6:7] == (4,)]
    assert len(grouped) == 1  # the 1x1 mix conv, groups = 4 channels
    torch.testing.assert_close(graph(x), model(x), atol=1e-6, rtol=0)


def test_count_params_of_a_quantized_graph_counts_its_weights() -> None:
    from srcompress.measure import count_params
    from srcompress.plugins.techniques.quantize.technique import quantize_model

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1)).eval()
    float_params = 3 * 8 * 9 + 8 + 8 * 3 * 9 + 3
    assert count_params(model) == (float_params, float_params)
    quantized, _ = quantize_model(model, QuantizeConfig(), [torch.rand(2, 3, 8, 8)])
    # the converted graph holds the weights as int8 tensor attributes read through dequantize ops
    assert count_params(quantized)[0] == float_params


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_quantize_a_cuda_model_with_cpu_calibration_batches(ort_int8: tuple[nn.Module, dict, onnx.ModelProto]) -> None:
    # a CUDA recipe keeps its model on the GPU; the calibration patches come from the CPU data loader
    on_gpu = tiny_f2srgan().cuda()
    model, facts = quantize_model(on_gpu, QuantizeConfig(), batches(), keep_float=tuple(f2srgan_hints(on_gpu).keep_float))
    assert facts["calibration_batches"] == 3 and facts["quantized_ops"] == ort_int8[1]["quantized_ops"]
    lr = torch.rand(1, 3, 12, 16, generator=torch.Generator().manual_seed(5))
    gpu_out = _ort(export_qdq_onnx(model, lr), lr)
    assert float(np.abs(gpu_out - _ort(ort_int8[2], lr)).max()) < ORT_TOLERANCE
