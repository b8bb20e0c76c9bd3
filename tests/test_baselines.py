"""The baseline architectures of ``srcompress.plugins.models.baselines``.

Parameter counts are asserted exactly for the standard configuration published by the original
authors; each row names its source. Big models are counted on the ``meta`` device (no memory, no
compute) and run once on a tiny input at full size.
"""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import torch
from torch import nn

from srcompress import Registry
from srcompress.config import field_help
from srcompress.plugins.models.baselines import (
    carn,
    common,
    edsr,
    espcn,
    fsrcnn,
    imdn,
    rcan,
    rrdbnet,
    srcnn,
    srfbn,
    srresnet,
    swiftsrgan,
    swinir,
    vdsr,
)

BASELINES = (
    "srcnn", "fsrcnn", "espcn", "vdsr", "edsr_baseline", "edsr", "imdn", "rcan",
    "carn", "srfbn", "srresnet", "rrdbnet", "swiftsrgan", "swinir_light",
)  # fmt: skip


def _counts(name: str, scale: int, **options: Any) -> tuple[int, int]:
    """(trainable, all) parameters of the registered model, built on the meta device."""
    entry = Registry().get_model(name)
    with torch.device("meta"):
        model = entry.build(scale, entry.options_cls(**options))
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


# (name, scale, options, trainable, all parameters); "all" includes frozen MeanShift convs (24).
PUBLISHED = [
    # SRCNN TPAMI 2016 Sec. 4.3.2: 9-5-5 has 57,184 weights (+97 biases), Y channel, n1=64, n2=32.
    ("srcnn", 3, {}, 57_281, 57_281),
    # FSRCNN ECCV 2016 Table: FSRCNN(56,12,4) 12,464 weights; + 173 biases + 172 PReLU slopes
    # (per-channel PReLU as yjn870/FSRCNN-pytorch).
    ("fsrcnn", 3, {}, 12_809, 12_809),
    # ESPCN CVPR 2016 Sec. 3.1: (5,64)-(3,32)-3 on Y; the count follows from r^2 output maps.
    ("espcn", 2, {}, 21_284, 21_284),
    ("espcn", 3, {}, 22_729, 22_729),
    ("espcn", 4, {}, 24_752, 24_752),
    # VDSR CVPR 2016 (665K in later papers' tables); twtygqyy/pytorch-vdsr: 20 bias-free convs, Y.
    ("vdsr", 2, {}, 664_704, 664_704),
    # EDSR-PyTorch (sanghyun-son): baseline r16f64, EDSR r32f256; MeanShift frozen (+24).
    ("edsr_baseline", 2, {}, 1_369_859, 1_369_883),
    ("edsr_baseline", 3, {}, 1_554_499, 1_554_523),
    ("edsr_baseline", 4, {}, 1_517_571, 1_517_595),
    ("edsr", 2, {}, 40_729_603, 40_729_627),
    ("edsr", 3, {}, 43_680_003, 43_680_027),
    ("edsr", 4, {}, 43_089_923, 43_089_947),
    # IMDN ACM MM 2019 Table 3: 694K / 703K / 715K; Zheng222/IMDN model/architecture.py.
    ("imdn", 2, {}, 694_404, 694_404),
    ("imdn", 3, {}, 703_059, 703_059),
    ("imdn", 4, {}, 715_176, 715_176),
    # RCAN (yulunzhang/RCAN): 15,592,379 counts the MeanShift convs, which its code does not freeze
    # (`self.requires_grad = False` on the module); ours are frozen as in EDSR-PyTorch.
    ("rcan", 4, {}, 15_592_355, 15_592_379),
    # CARN ECCV 2018 Table: 1,592K = the released multi-scale network (x2, x3, x4 upsamplers).
    ("carn", 4, {"multi_scale": True}, 1_591_939, 1_591_963),
    ("carn", 4, {}, 1_111_875, 1_111_899),
    # SRFBN CVPR 2019 Table: SRFBN 3,631K, SRFBN-S (F=32, G=3) 483K; Paper99/SRFBN_CVPR19.
    ("srfbn", 4, {}, 3_631_454, 3_631_478),
    ("srfbn", 4, {"width": 32, "groups": 3}, 483_122, 483_146),
    # BasicSR MSRResNet (num_feat 64, num_block 16), x4.
    ("srresnet", 4, {}, 1_517_571, 1_517_571),
    # SRGAN Fig. 4 (no official code): 9x9 convs, BN, one-slope PReLUs.
    ("srresnet", 4, {"variant": "srgan"}, 1_549_462, 1_549_462),
    # ESRGAN / BasicSR RRDBNet (num_feat 64, num_block 23, num_grow_ch 32); x2 sees 12 channels.
    ("rrdbnet", 4, {}, 16_697_987, 16_697_987),
    ("rrdbnet", 2, {}, 16_703_171, 16_703_171),
    # Koushik0901/Swift-SRGAN Generator: 201,209 by sum(p.numel()) minus 17 x 64 never-applied PReLU slopes.
    ("swiftsrgan", 4, {}, 201_209 - 17 * 64, 201_209 - 17 * 64),
    # JingyunLiang/SwinIR, lightweight config; the paper's 878K / 886K / 897K leave out the 32,400
    # relative-position-bias entries (24 tables of 225 x 6).
    ("swinir_light", 2, {}, 877_752 + 32_400, 877_752 + 32_400),
    ("swinir_light", 3, {}, 885_867 + 32_400, 885_867 + 32_400),
    ("swinir_light", 4, {}, 897_228 + 32_400, 897_228 + 32_400),
]


@pytest.mark.parametrize(("name", "scale", "options", "trainable", "total"), PUBLISHED)
def test_published_parameter_counts(name: str, scale: int, options: dict, trainable: int, total: int) -> None:
    assert _counts(name, scale, **options) == (trainable, total)


def test_weights_only_counts_match_the_papers() -> None:
    """SRCNN and FSRCNN papers count conv weights only: 9-5-5 57,184, 9-1-5 8,032, FSRCNN 12,464."""

    def weights(model: nn.Module) -> int:
        return sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)))

    assert weights(srcnn.build(3, srcnn.SRCNNOptions())) == 57_184
    assert weights(srcnn.build(3, srcnn.SRCNNOptions(f2=1))) == 8_032
    assert weights(fsrcnn.build(3, fsrcnn.FSRCNNOptions())) == 12_464


def test_registry_lists_every_baseline_with_its_scales() -> None:
    models = {entry.name: entry for entry in Registry().list_models()}
    assert set(BASELINES) <= set(models)
    assert {name: models[name].scales for name in BASELINES} == {
        **{name: (2, 3, 4) for name in BASELINES},
        "rrdbnet": (2, 4),
        "swiftsrgan": (2, 4),
    }
    for name in BASELINES:
        assert models[name].plugin == "baselines"
        assert models[name].weights == ()


@pytest.mark.parametrize("name", BASELINES)
def test_every_option_has_help_and_a_default(name: str) -> None:
    options_cls = Registry().get_model(name).options_cls
    for field in attrs.fields(options_cls):
        assert field_help(field)[0], f"{name}.{field.name} has no help text"
        assert field.default is not attrs.NOTHING, f"{name}.{field.name} has no default"
    options_cls()  # the defaults validate


def test_options_validate() -> None:
    with pytest.raises(ValueError, match="got 0"):
        edsr.EDSROptions(width=0)
    with pytest.raises(ValueError, match="one of 'y', 'rgb'"):
        vdsr.VDSROptions(color="ycbcr")
    with pytest.raises(ValueError, match="one of 'msrresnet', 'srgan'"):
        srresnet.SRResNetOptions(variant="srgan2")
    assert swinir.SwinIROptions(depths=[2, 2], num_heads=[3, 3]).depths == (2, 2)
    with pytest.raises(ValueError):
        swinir.SwinIROptions(depths=(6, 0))
    with pytest.raises(ValueError, match="differ in length"):
        swinir.build(2, swinir.SwinIROptions(depths=(2, 2), num_heads=(6,)))


def test_unsupported_scale_names_the_model_and_its_scales() -> None:
    with pytest.raises(ValueError, match=r"srcnn supports scales x2, x3, x4 \(got x8\)"):
        srcnn.build(8, srcnn.SRCNNOptions())
    with pytest.raises(ValueError, match=r"rrdbnet supports scales x2, x4 \(got x3\)"):
        rrdbnet.build(3, rrdbnet.RRDBNetOptions())


@pytest.mark.parametrize("name", ["edsr", "rcan", "rrdbnet", "srfbn"])
def test_big_models_run_at_full_size_on_a_tiny_input(name: str) -> None:
    entry = Registry().get_model(name)
    model = entry.build(4, entry.options_cls()).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 4, 4))
    assert out.shape == (1, 3, 16, 16)
    assert torch.isfinite(out).all()


def test_ycbcr_round_trip_and_matlab_values() -> None:
    x = torch.rand(2, 3, 5, 7, dtype=torch.float64)
    assert torch.allclose(common.ycbcr_to_rgb(common.rgb_to_ycbcr(x)), x, atol=1e-12)
    white_black = torch.tensor([1.0, 0.0]).view(1, 1, 1, 2).expand(1, 3, 1, 2)
    ycc = common.rgb_to_ycbcr(white_black) * 255
    # MATLAB rgb2ycbcr: white -> (235, 128, 128), black -> (16, 128, 128)
    assert torch.allclose(ycc[0, :, 0, 0], torch.tensor([235.0, 128.0, 128.0]), atol=1e-4)
    assert torch.allclose(ycc[0, :, 0, 1], torch.tensor([16.0, 128.0, 128.0]), atol=1e-4)


@pytest.mark.parametrize("color", ["y", "rgb"])
def test_vdsr_with_a_zero_residual_is_bicubic(color: str) -> None:
    """VDSR = bicubic + residual; on Y, Cb/Cr are bicubic too, so a zero residual gives bicubic RGB."""
    model = vdsr.build(3, vdsr.VDSROptions(color=color, depth=3))
    nn.init.zeros_(model.output.weight)
    x = torch.rand(1, 3, 7, 9)
    assert torch.allclose(model(x), common.bicubic(x, 3), atol=1e-5)
    assert model.input.in_channels == (1 if color == "y" else 3)


def test_y_models_leave_chroma_to_bicubic() -> None:
    """With color='y' only luma is learned: two images with equal Y and different CbCr differ by bicubic CbCr."""
    model = fsrcnn.build(2, fsrcnn.FSRCNNOptions()).eval()
    ycc = common.rgb_to_ycbcr(torch.rand(1, 3, 6, 6))
    other = ycc.clone()
    other[:, 1:] = torch.rand(1, 2, 6, 6) * 0.5 + 0.25
    out_a, out_b = (common.rgb_to_ycbcr(model(common.ycbcr_to_rgb(t))) for t in (ycc, other))
    assert torch.allclose(out_a[:, :1], out_b[:, :1], atol=1e-5)
    assert torch.allclose(out_b[:, 1:], common.bicubic(other[:, 1:], 2), atol=1e-5)


def test_msrresnet_and_srfbn_add_the_bilinear_upscaled_input() -> None:
    x = torch.rand(1, 3, 5, 6)
    bilinear = torch.nn.functional.interpolate(x, scale_factor=4, mode="bilinear", align_corners=False)
    msr = srresnet.build(4, srresnet.SRResNetOptions(blocks=1))
    nn.init.zeros_(msr.conv_last.weight)
    nn.init.zeros_(msr.conv_last.bias)
    assert torch.allclose(msr(x), bilinear, atol=1e-6)
    fb = srfbn.build(4, srfbn.SRFBNOptions(width=8, steps=2, groups=2))
    nn.init.zeros_(fb.conv_out[0].weight)
    nn.init.zeros_(fb.conv_out[0].bias)
    assert torch.allclose(fb(x), bilinear, atol=1e-5)


def test_srfbn_state_does_not_leak_between_calls() -> None:
    model = srfbn.build(2, srfbn.SRFBNOptions(width=8, steps=3, groups=2)).eval()
    x = torch.rand(3, 3, 6, 6)
    with torch.no_grad():
        batch = model(x)
        single = model(x[1:2])
    assert torch.allclose(batch[1:2], single, atol=1e-5)


def test_swinir_pads_by_mirroring_and_crops() -> None:
    """A 12x13 input equals the crop of the explicitly mirror-padded 16x16 input (window 8)."""
    torch.manual_seed(0)
    model = swinir.build(2, swinir.SwinIROptions(depths=(2,), num_heads=(6,))).eval()
    x = torch.rand(1, 3, 12, 13)
    padded = torch.cat([x, x.flip(2)], 2)[:, :, :16]
    padded = torch.cat([padded, padded.flip(3)], 3)[:, :, :, :16]
    with torch.no_grad():
        out, ref = model(x), model(padded)
    assert out.shape == (1, 3, 24, 26)
    assert torch.allclose(out, ref[:, :, :24, :26], atol=1e-5)


def test_swinir_shifted_window_mask_matches_the_official_regions() -> None:
    mask = swinir.shifted_window_mask(16, 16, 8, 4, torch.device("cpu"))
    assert mask.shape == (4, 64, 64)
    assert (mask[0] == 0).all()  # the top-left window is one region
    # the bottom-right window holds 4 regions of 16 tokens each: 16 * 16 * 4 pairs are allowed
    assert int((mask[3] == 0).sum()) == 4 * 16 * 16
    assert set(mask.unique().tolist()) == {-100.0, 0.0}


@pytest.mark.parametrize(
    ("name", "scale", "keys"),
    [
        ("edsr_baseline", 4, ["sub_mean.weight", "head.0.weight", "body.15.body.2.bias", "body.16.weight",
                              "tail.0.2.weight", "tail.1.weight", "add_mean.bias"]),
        ("rcan", 4, ["body.9.body.19.body.3.conv_du.2.weight", "body.9.body.20.weight", "tail.0.0.weight"]),
        ("imdn", 4, ["fea_conv.weight", "IMDB6.cca.conv_du.0.weight", "IMDB1.c5.bias", "c.0.weight",
                     "LR_conv.weight", "upsampler.0.weight"]),
        ("carn", 4, ["sub_mean.shifter.weight", "entry.weight", "b3.c3.body.0.weight", "b1.b2.body.2.weight",
                     "upsample.up.body.3.weight", "exit.weight"]),
        ("srfbn", 4, ["conv_in.0.weight", "block.compress_in.1.weight", "block.upBlocks.5.0.weight",
                      "block.uptranBlocks.4.0.weight", "out.0.weight", "conv_out.0.weight"]),
        ("srresnet", 4, ["conv_first.weight", "body.15.conv2.weight", "upconv2.weight", "conv_hr.weight"]),
        ("rrdbnet", 4, ["conv_first.weight", "body.22.rdb3.conv5.weight", "conv_body.weight", "conv_up2.weight"]),
        ("swiftsrgan", 4, ["initial.cnn.depthwise.weight", "initial.act.weight", "residual.15.block2.bn.running_mean",
                           "upsampler.1.conv.pointwise.weight", "final_conv.pointwise.bias"]),
        ("swinir_light", 4, ["conv_first.weight", "patch_embed.norm.weight",
                             "layers.3.residual_group.blocks.5.attn.relative_position_bias_table",
                             "layers.0.residual_group.blocks.1.attn.relative_position_index",
                             "layers.2.residual_group.blocks.0.mlp.fc2.bias", "layers.1.conv.weight", "norm.weight",
                             "conv_after_body.weight", "upsample.0.weight"]),
    ],
)  # fmt: skip
def test_state_dict_keys_follow_the_official_code(name: str, scale: int, keys: list[str]) -> None:
    entry = Registry().get_model(name)
    with torch.device("meta"):
        state = entry.build(scale, entry.options_cls()).state_dict()
    missing = [key for key in keys if key not in state]
    assert not missing


def test_hints_of_edsr_rcan_and_swinir() -> None:
    model = edsr.build(4, edsr.EDSRBaselineOptions())
    hints = edsr.hints(model)
    assert hints.pixel_shuffle_convs == {"tail.0.0": 2, "tail.0.2": 2}
    assert hints.never_prune == ("sub_mean", "add_mean", "tail.1")
    assert hints.feature_taps == tuple(f"body.{i}" for i in range(16))
    assert hints.residual_inner[0] == "body.0.body.0" and len(hints.residual_inner) == 16
    x3 = edsr.hints(edsr.build(3, edsr.EDSRBaselineOptions(blocks=1)))
    assert x3.pixel_shuffle_convs == {"tail.0.0": 3}
    with torch.device("meta"):
        light = swinir.build(3, swinir.SwinIROptions())
        full_rcan = rcan.build(2, rcan.RCANOptions())
    rc = rcan.hints(full_rcan)
    assert rc.feature_taps == tuple(f"body.{g}" for g in range(10))
    assert len(rc.residual_inner) == 200 and rc.residual_inner[-1] == "body.9.body.19.body.0"
    assert rc.pixel_shuffle_convs == {"tail.0.0": 2}
    sw = swinir.hints(light)
    assert sw.pixel_shuffle_convs == {"upsample.0": 3}
    assert len(sw.residual_inner) == 24 and sw.residual_inner[0] == "layers.0.residual_group.blocks.0.mlp.fc1"
    assert "layers.3.residual_group.blocks.5.attn.qkv" in sw.never_prune


def test_pixel_shuffle_convs_of_each_upsampler_layout() -> None:
    model = carn.build(4, carn.CARNOptions(width=8))
    assert carn.hints(model).pixel_shuffle_convs == {"upsample.up.body.0": 2, "upsample.up.body.3": 2}
    assert imdn.hints(imdn.build(3, imdn.IMDNOptions(width=8, modules=1))).pixel_shuffle_convs == {"upsampler.0": 3}
    assert espcn.hints(espcn.build(4, espcn.ESPCNOptions())).pixel_shuffle_convs == {"last_part.0": 4}
    sg = srresnet.hints(srresnet.build(4, srresnet.SRResNetOptions(variant="srgan", blocks=1)))
    assert sg.pixel_shuffle_convs == {"upsample.0": 2, "upsample.3": 2}
    sw = swiftsrgan.hints(swiftsrgan.build(4, swiftsrgan.SwiftSRGANOptions(blocks=1)))
    assert sw.pixel_shuffle_convs == {"upsampler.0.conv.pointwise": 2, "upsampler.1.conv.pointwise": 2}


def test_rrdbnet_x2_pads_odd_inputs_and_crops() -> None:
    model = rrdbnet.build(2, rrdbnet.RRDBNetOptions(blocks=1)).eval()
    x = torch.rand(1, 3, 7, 6)
    with torch.no_grad():
        out = model(x)
        ref = model(torch.nn.functional.pad(x, (0, 0, 0, 1), mode="reflect"))
    assert out.shape == (1, 3, 14, 12)
    assert torch.allclose(out, ref[:, :, :14], atol=1e-6)


@pytest.mark.parametrize("name", BASELINES)
def test_feature_taps_are_feature_maps(name: str) -> None:
    """A forward hook on every tap sees an NCHW map at LR resolution (SRCNN/VDSR: upscaled; RRDBNet x2: half LR)."""
    entry = Registry().get_model(name)
    small = {
        "edsr": {"blocks": 2},
        "rcan": {"groups": 2, "blocks": 1},
        "rrdbnet": {"blocks": 1},
        "srfbn": {"width": 32, "groups": 3},
    }.get(name, {})
    model = entry.build(2, entry.options_cls(**small)).eval()
    modules = dict(model.named_modules())
    seen: dict[str, tuple[int, ...]] = {}

    def record(tap: str) -> Any:
        def hook(_module: nn.Module, _inputs: Any, out: torch.Tensor) -> None:
            seen.setdefault(tap, tuple(out.shape))

        return hook

    handles = [modules[tap].register_forward_hook(record(tap)) for tap in entry.hints(model).feature_taps]
    with torch.no_grad():
        model(torch.rand(1, 3, 8, 8))
    for handle in handles:
        handle.remove()
    assert set(seen) == set(entry.hints(model).feature_taps)
    for shape in seen.values():
        assert len(shape) == 4 and shape[0] == 1 and shape[2:] in {(4, 4), (8, 8), (16, 16)}
