"""Model plugin: the surveyed baseline SR architectures, one module each.

CNN: SRCNN, FSRCNN, ESPCN, VDSR, EDSR-baseline, EDSR; distillation: IMDN; attention: RCAN;
recursive/cascading: CARN; feedback: SRFBN; GAN generators: SRResNet (SRGAN), RRDBNet (ESRGAN),
SwiftSRGAN; transformer: SwinIR-light.

Every model is our own code written from the paper and the authors' code (each module names its
source), with the published standard configuration as the default options. All map float32 RGB
NCHW images in [0, 1] to (N, 3, s*H, s*W) (not clamped); models that work on Y, on 0-255 values or
on a bicubic-upscaled input convert inside. No published weights are registered (none are
available with a verified SHA-256 here): ``weights=()``.

Registered like any third-party plugin, through the entry point ``baselines`` of the group
``srcompress.plugins``.
"""

from __future__ import annotations

from srcompress.entries import ModelEntry
from srcompress.hookspecs import hookimpl

from . import carn, edsr, espcn, fsrcnn, imdn, rcan, rrdbnet, srcnn, srfbn, srresnet, swiftsrgan, swinir, vdsr

__all__ = ["srcompress_models"]


def _entries() -> list[ModelEntry]:
    def entry(name: str, module, options_cls: type, description: str) -> ModelEntry:
        return ModelEntry(
            name=name,
            build=module.build,
            scales=module.SCALES,
            options_cls=options_cls,
            hints=module.hints,
            description=description,
        )

    return [
        entry(
            "srcnn",
            srcnn,
            srcnn.SRCNNOptions,
            "SRCNN 9-5-5 (Dong et al., TPAMI 2016); Y channel, bicubic-upscaled input",
        ),
        entry("fsrcnn", fsrcnn, fsrcnn.FSRCNNOptions, "FSRCNN(56, 12, 4) (Dong et al., ECCV 2016); Y channel"),
        entry("espcn", espcn, espcn.ESPCNOptions, "ESPCN sub-pixel CNN (Shi et al., CVPR 2016); Y channel"),
        entry(
            "vdsr", vdsr, vdsr.VDSROptions, "VDSR, 20 layers (Kim et al., CVPR 2016); Y channel, bicubic-upscaled input"
        ),
        entry(
            "edsr_baseline", edsr, edsr.EDSRBaselineOptions, "EDSR-baseline, 16 blocks x 64 (Lim et al., CVPRW 2017)"
        ),
        entry("edsr", edsr, edsr.EDSROptions, "EDSR, 32 blocks x 256 (Lim et al., CVPRW 2017)"),
        entry("imdn", imdn, imdn.IMDNOptions, "IMDN, information multi-distillation (Hui et al., ACM MM 2019)"),
        entry(
            "rcan", rcan, rcan.RCANOptions, "RCAN, residual channel attention, 10x20 blocks (Zhang et al., ECCV 2018)"
        ),
        entry("carn", carn, carn.CARNOptions, "CARN, cascading residual network (Ahn et al., ECCV 2018)"),
        entry("srfbn", srfbn, srfbn.SRFBNOptions, "SRFBN, feedback network, T=4 G=6 (Li et al., CVPR 2019)"),
        entry(
            "srresnet",
            srresnet,
            srresnet.SRResNetOptions,
            "SRResNet / SRGAN generator (Ledig et al., CVPR 2017; BasicSR MSRResNet)",
        ),
        entry(
            "rrdbnet",
            rrdbnet,
            rrdbnet.RRDBNetOptions,
            "RRDBNet, the ESRGAN generator, 23 RRDBs (Wang et al., ECCVW 2018)",
        ),
        entry(
            "swiftsrgan",
            swiftsrgan,
            swiftsrgan.SwiftSRGANOptions,
            "SwiftSRGAN generator, depthwise-separable SRGAN (Krishnan, 2021)",
        ),
        entry(
            "swinir_light",
            swinir,
            swinir.SwinIROptions,
            "SwinIR lightweight SR, C=60, 4x6 Swin layers (Liang et al., ICCVW 2021)",
        ),
    ]


@hookimpl
def srcompress_models() -> list[ModelEntry]:
    """The baseline architectures (see the module docstring)."""
    return _entries()
