"""The ``quantize`` technique: PT2E PTQ / QAT to int8 (or int16 fake-quant), or a fp16/bf16 cast.

Recipe::

    stages:
      - type: quantize
        mode: ptq                 # or qat
        dtype: int8
        target: onnxruntime       # tensorrt: symmetric int8, zero points 0
        calibration: entropy      # minmax | percentile | mse | entropy
        calib_batches: 16
        float_first_last: false
        keep_float: ["upsampler.*"]

Steps (int8/int16): FFT-free export forms (when the model has them) -> explicit conv padding ->
untie modules called more than once -> ``torch.export`` (dynamic N, H, W) -> fold scalar muls into
convs -> (option ``subpixel_tail``) fold the RGB tail before the last pixel shuffle
(:func:`fold_subpixel_tail`) -> split PReLUs into integer-friendly convs (:func:`split_prelu`) ->
``prepare_pt2e`` / ``prepare_qat_pt2e`` with :class:`SRQuantizer` -> calibrate on training
patches (QAT: then fine-tune through :func:`srcompress.training.fit`, freezing observers and BN
statistics at the configured steps) -> ``convert_pt2e``. The result is a ``torch.fx.GraphModule``
with quantize/dequantize ops (the reference Q/DQ model): it runs in torch and exports to a Q/DQ
ONNX graph (:func:`export_qdq_onnx`, or the ``onnx`` backend with ``precision: int8``).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from srcompress.data import PatchDataset
from srcompress.deploy import apply_export_forms, find_export_forms, module_device
from srcompress.training import TrainingHook, fit

from .cast import cast_model
from .config import QuantizeConfig
from .graph import explicit_padding, float_module_names, untie_shared
from .pt2e import QATModule, calibrate, convert, export_for_quantization, prepare
from .quantizer import build_quantizer, fold_scalar_muls
from .rewrites import split_prelu
from .subpixel import fold_subpixel_tail

__all__ = ["FreezeSchedule", "apply", "calibration_batches", "count_quantized", "quantize_model"]


def calibration_batches(config: QuantizeConfig, ctx: Any) -> list[torch.Tensor]:
    """``calib_batches`` batches of LR training patches ((calib_batch, 3, h, w) in [0, 1]), fixed order."""
    count = config.calib_batches * config.calib_batch
    if count == 0:
        return []
    patch = config.calib_patch or ctx.data.patch
    patch -= patch % ctx.scale
    data = PatchDataset(ctx.data.train, ctx.scale, patch, root=ctx.data.root, augment=False, seed=ctx.seed, length=count)
    items = [data[i][0] for i in range(count)]
    return [torch.stack(items[i : i + config.calib_batch]) for i in range(0, count, config.calib_batch)]


class FreezeSchedule(TrainingHook):
    """QAT hook: freezes the observers / batch-norm statistics of a :class:`QATModule` after N steps."""

    def __init__(self, model: QATModule, observers_after: int | None, bn_after: int | None) -> None:
        self.model, self.observers_after, self.bn_after = model, observers_after, bn_after
        self.step = 0

    def setup(self, model: nn.Module, device: torch.device) -> None:
        self._check()

    def before_loss(self, inputs: Any) -> None:
        self.step += 1
        self._check()

    def _check(self) -> None:
        if self.observers_after is not None and self.step >= self.observers_after and not self.model.observers_frozen:
            self.model.freeze_observers()
        if self.bn_after is not None and self.step >= self.bn_after and not self.model.bn_frozen:
            self.model.freeze_bn()


def quantize_model(
    model: nn.Module,
    config: QuantizeConfig,
    batches: list[torch.Tensor],
    *,
    keep_float: tuple[str, ...] = (),
    finetune: Any = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Quantize ``model`` (float32 NCHW [0, 1] -> SR) as ``config`` says; returns (model, facts).

    :param batches: calibration LR batches (at least one for int8/int16 unless QAT fine-tunes), on any
        device: they are moved to the model's.
    :param keep_float: module names of the model's ``keep_float`` hints.
    :param finetune: QAT only: ``callable(QATModule) -> nn.Module`` running the training loop.
    """
    if not config.integer:
        return cast_model(model, config.dtype, keep_float), {"float_modules": list(keep_float)}
    work = copy.deepcopy(model).eval()
    device = module_device(work)  # a CUDA recipe's model stays on its GPU; the patches come from the CPU
    batches = [b.to(device) for b in batches]
    forms = find_export_forms(work)
    work = explicit_padding(apply_export_forms(work, enabled=bool(forms)))
    example = batches[0][:2] if batches else torch.rand(2, 3, 16, 16, device=device)
    work, untied = untie_shared(work, example)
    floats = float_module_names(work, example, hinted=keep_float, patterns=config.keep_float, first_last=config.float_first_last)
    qat = config.mode == "qat"
    graph = export_for_quantization(work, example)
    folded = fold_scalar_muls(graph)
    quantizer = build_quantizer(config, floats, qat=qat)
    tails = fold_subpixel_tail(graph, quantizer.in_float) if config.subpixel_tail else 0
    split = split_prelu(graph, quantizer.in_float) if config.splits_prelu else 0
    prepared = prepare(graph, quantizer, qat=qat)
    calibrated = calibrate(prepared, batches)
    if qat:
        wrapper = QATModule(prepared)
        prepared = finetune(wrapper).graph_module if finetune is not None else prepared
    converted = convert(prepared)
    facts = {"export_forms": forms, "untied": untied, "float_modules": floats, "folded_muls": folded,
             "subpixel_tails": tails, "split_prelu": split, "calibration_batches": calibrated,
             "quantized_ops": count_quantized(converted)}
    return converted, facts


def count_quantized(graph: nn.Module) -> int:
    """Number of quantize ops in a converted graph."""
    return sum(1 for n in graph.graph.nodes if n.op == "call_function" and "quantize_per" in str(n.target)
               and "dequantize" not in str(n.target))  # fmt: skip


def apply(model: nn.Module, config: QuantizeConfig, ctx: Any) -> nn.Module:
    """The technique entry point: ``model`` quantized (see the module doc)."""
    hinted = tuple(ctx.hints(model).keep_float)
    batches = calibration_batches(config, ctx) if config.integer else []

    def finetune(wrapper: QATModule) -> QATModule:
        hook = FreezeSchedule(wrapper, config.freeze_observers_after, config.freeze_bn_after)
        result = fit(wrapper, config.finetune, ctx.data, ctx.scale, work_dir=ctx.work_dir, stage_name=ctx.stage_name,
                     registry=ctx.registry, hooks=[hook], device=ctx.device, seed=ctx.seed,
                     progress=not getattr(ctx, "quiet", False))  # fmt: skip
        ctx.note(f"QAT: {result.steps} steps; loss {result.history.loss[0]:.4g} -> {result.history.loss[-1]:.4g}"
                 if result.history.loss else f"QAT: {result.steps} steps")  # fmt: skip
        return result.model

    quantized, facts = quantize_model(model, config, batches, keep_float=hinted, finetune=finetune)
    if config.integer:
        ctx.note(
            f"{config.mode} {config.dtype} for {config.target}, {config.calibration} calibration on "
            f"{facts['calibration_batches']} batches: {facts['quantized_ops']} quantizers; float: "
            f"{', '.join(facts['float_modules']) or 'none'}; scalar muls folded into convs: {facts['folded_muls']}; PReLUs split: {facts['split_prelu']}"
            + (f"; tails folded before the pixel shuffle: {facts['subpixel_tails']}" if config.subpixel_tail else "")
        )
        if facts["export_forms"]:
            ctx.note(f"FFT-free export forms applied to {', '.join(facts['export_forms'])} (exact; kept float)")
    else:
        ctx.note(f"cast to {config.dtype} (deployment precision, no calibration); float32: {', '.join(hinted) or 'none'}")
    return quantized
