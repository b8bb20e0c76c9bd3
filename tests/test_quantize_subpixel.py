"""Quantize stage ``subpixel_tail``: the RGB tail folded before the last pixel shuffle, quantized, deployed."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from srcompress.plugins.models.f2srgan import F2SRGAN, F2SRGANOptions
from srcompress.plugins.techniques.quantize import (
    QuantizeConfig,
    explicit_padding,
    export_for_quantization,
    fold_subpixel_tail,
    quantize_model,
    split_prelu,
)
from srcompress.plugins.techniques.quantize.quantizer import build_quantizer
from test_quantize import ORT_TOLERANCE, batches

_aten = torch.ops.aten


def tiny_x4(seed: int = 0) -> F2SRGAN:
    """x4 F2SRGAN without FFC, 2 blocks of width 16, parameters perturbed (so PReLU slopes differ)."""
    torch.manual_seed(seed)
    model = F2SRGAN(4, F2SRGANOptions(blocks=2, width=16, ffc_blocks=())).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn_like(p))
    return model


def _calls(graph: torch.fx.GraphModule) -> list[torch.fx.Node]:
    return [n for n in graph.graph.nodes if n.op == "call_function"]


def test_fold_is_exact_and_ends_the_graph_with_the_compact_conv_and_its_placement() -> None:
    model, x = tiny_x4(), torch.rand(2, 3, 12, 16)
    graph = export_for_quantization(explicit_padding(model), x)
    assert fold_subpixel_tail(graph) == 1
    calls = _calls(graph)
    assert [c.target for c in calls[-4:]] == [
        _aten.prelu.default, _aten.conv2d.default, _aten.conv_transpose2d.input, _aten.mul.Tensor,
    ]  # fmt: skip
    prelu, conv, place, gain = calls[-4:]
    channels = model.tail.depthwise.in_channels
    # 3 colours x 4 sub-pixels from C channels x 4 sub-pixels: the 2x2 window of the 3x3 LR kernel
    assert tuple(conv.args[1].meta["val"].shape) == (12, 4 * channels, 2, 2) and conv.args[4] == [1, 1]
    assert prelu.args[1].meta["val"].numel() == 4 * channels
    assert place.args[3:5] == ([2, 2], [1, 1]) and place.args[6] == 3, "stride 2, crop 1, one group per colour"
    # the mean shift is folded in; the /255 stays as the one op after the placement
    assert gain.args[1] == pytest.approx(1 / 255) and list(gain.users)[0].op == "output"
    torch.testing.assert_close(graph(x), model(x), atol=1e-5, rtol=0)
    # the PReLU is now conv -> prelu -> conv: split_prelu still removes all four, exactly
    assert split_prelu(graph) == 4
    assert _aten.prelu.default not in [c.target for c in _calls(graph)]
    torch.testing.assert_close(graph(x), model(x), atol=1e-5, rtol=0)


def test_a_tail_kept_float_is_not_folded_but_a_frozen_mean_shift_is_folded_in() -> None:
    model, x = tiny_x4(), torch.rand(2, 3, 12, 16)
    graph = export_for_quantization(explicit_padding(model), x)
    assert fold_subpixel_tail(graph, build_quantizer(QuantizeConfig(), ["tail", "tail.*"]).in_float) == 0
    # add_mean is frozen (float in every quantization): it does not stop the fold
    assert fold_subpixel_tail(graph, build_quantizer(QuantizeConfig(), ["add_mean"]).in_float) == 1


class _Widening(nn.Module):
    """conv -> pixel shuffle -> conv 4 -> 8 channels: the tail does not narrow, nothing to gain."""

    def __init__(self, out_channels: int) -> None:
        super().__init__()
        self.conv, self.shuffle = nn.Conv2d(3, 16, 3, padding=1), nn.PixelShuffle(2)
        self.tail = nn.Conv2d(4, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.shuffle(self.conv(x)))


@pytest.mark.parametrize(("out_channels", "folded"), [(8, 0), (4, 0), (3, 1)])
def test_only_a_narrowing_tail_is_folded(out_channels: int, folded: int) -> None:
    torch.manual_seed(0)
    model, x = _Widening(out_channels).eval(), torch.rand(2, 3, 6, 7)
    graph = export_for_quantization(model, x)
    assert fold_subpixel_tail(graph) == folded
    assert (_calls(graph)[-1].target == _aten.conv_transpose2d.input) == bool(folded), "no gain: no mul"
    torch.testing.assert_close(graph(x), model(x), atol=1e-5, rtol=0)


class _ShuffleBy3(_Widening):
    def __init__(self) -> None:
        super().__init__(3)
        self.conv, self.shuffle = nn.Conv2d(3, 36, 3, padding=1), nn.PixelShuffle(3)


def test_a_tail_whose_compact_form_crops_asymmetrically_is_left_alone() -> None:
    """k = 3, r = 3: sub-pixel 0 reads LR taps -1..0, sub-pixels 1 and 2 read 0..1; the placement
    would crop 2 rows before and 1 after, which conv_transpose2d's padding cannot express."""
    model, x = _ShuffleBy3().eval(), torch.rand(2, 3, 6, 7)
    graph = export_for_quantization(model, x)
    assert fold_subpixel_tail(graph) == 0


def test_small_weights_keep_their_own_scale() -> None:
    """A weight channel of max |w| = 2e-3 is quantized at 2e-3 / 127, not at a floor of 2**-12 (which
    left a folded tail, whose /255 output scaling makes its weights small, ~100 levels)."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 3, 3, padding=1)
    with torch.no_grad():
        conv.weight.mul_(2e-3 / conv.weight.abs().amax())
    quantized, _ = quantize_model(nn.Sequential(conv).eval(), QuantizeConfig(), batches(size=8))
    scales = [getattr(quantized, n.args[1].target) for n in quantized.graph.nodes if "dequantize_per_channel" in str(n.target)]
    assert len(scales) == 1
    expected = conv.weight.detach().abs().amax(dim=(1, 2, 3)) / 127.5
    torch.testing.assert_close(scales[0].float(), expected, rtol=0.01, atol=0)


@pytest.fixture(scope="module")
def folded_int8() -> tuple[nn.Module, dict, F2SRGAN]:
    model = tiny_x4()
    quantized, facts = quantize_model(model, QuantizeConfig(subpixel_tail=True), batches(size=12))
    return quantized, facts, model


def test_quantize_model_folds_the_tail_and_quantizes_its_conv(folded_int8: tuple) -> None:
    quantized, facts, model = folded_int8
    assert facts["subpixel_tails"] == 1 and facts["split_prelu"] == 4
    assert facts["float_modules"] == ["add_mean", "sub_mean"]
    convs = [n for n in _calls(quantized) if n.target == _aten.conv2d.default]
    assert "dequantize_per_channel" in str(convs[-1].args[1].target), "the folded tail conv has int8 weights"
    x = torch.rand(1, 3, 16, 20)
    with torch.no_grad():
        error = float((quantized(x) - model(x)).abs().mean())
    assert error < 0.02


def test_the_folded_int8_tail_deploys_as_an_int8_conv_padded_to_16_channels(folded_int8: tuple) -> None:
    from srcompress.backends.onnx import OnnxConfig, compile_onnx

    quantized, _, _ = folded_int8
    deployed = compile_onnx(quantized, torch.rand(1, 3, 12, 16), OnnxConfig(provider="cpu", threads=1, precision="int8"))
    applied = {r["name"]: r["applied"] for r in deployed.metadata["rewrites"]}
    assert applied["int8_pad_narrow_convs"] == 1 and applied["subpixel_tail"] == 0 and applied["subpixel_compact"] == 0
    assert applied["d2s_int8_channels_last"] == 1, "the first shuffle stays an int8 byte move"
    proto = deployed.proto
    ops = [n.op_type for n in proto.graph.node]
    assert ops[-5:] == ["Conv", "QuantizeLinear", "Slice", "DequantizeLinear", "ConvTranspose"]
    assert applied["scalar_mul_into_conv"] == 1, "the output's 1/255 is in the placement weights"
    conv = [n for n in proto.graph.node if n.op_type == "Conv"][-1]
    weight_dq = next(n for n in proto.graph.node if n.output[0] == conv.input[1])
    weight = numpy_helper.to_array(next(i for i in proto.graph.initializer if i.name == weight_dq.input[0]))
    assert weight.dtype == np.int8 and weight.shape[0] == 16 and weight.shape[2:] == (2, 2)
    assert not weight[12:].any(), "the 4 padding channels have zero weights"
    x = torch.rand(1, 3, 10, 14)
    with torch.no_grad():
        assert float((deployed(x) - quantized(x)).abs().mean()) < ORT_TOLERANCE
