"""Quantization plugin: the ``quantize`` technique (PT2E PTQ / QAT, int8 Q/DQ for ONNX Runtime and TensorRT).

Registers the technique ``quantize`` (:class:`QuantizeConfig`). Public pieces for scripts and
other plugins: :func:`quantize_model` (the whole flow on a module and calibration batches),
:class:`SRQuantizer` (the PT2E quantizer), the calibration observers, :func:`export_qdq_onnx` and
:func:`int8_ops` (which ops ONNX Runtime runs in INT8), :func:`save_quantized` /
:func:`load_quantized` (``.pt2`` ExportedProgram files), and :func:`cast_model` (fp16/bf16).
"""

from __future__ import annotations

from srcompress.entries import TechniqueEntry
from srcompress.hookspecs import hookimpl

from .cast import CastModel, FloatIsland, cast_model
from .config import CALIBRATIONS, DTYPES, MODES, TARGETS, QuantizeConfig
from .export import INT8_KERNELS, Int8Report, export_qdq_onnx, int8_ops, quantizer_zero_points, save_onnx
from .graph import UntiedModule, explicit_padding, float_module_names, untie_shared
from .observers import EntropyObserver, PercentileObserver, activation_observer, kl_threshold
from .pt2e import QATModule, calibrate, convert, export_for_quantization, freeze_batch_norm, prepare
from .quantizer import SRQuantizer, activation_spec, build_quantizer, fold_scalar_muls, weight_spec
from .rewrites import split_prelu
from .saving import PT2_SUFFIX, load_quantized, save_quantized
from .subpixel import fold_subpixel_tail
from .technique import FreezeSchedule, apply, calibration_batches, count_quantized, quantize_model

__all__ = [
    "CALIBRATIONS",
    "DTYPES",
    "INT8_KERNELS",
    "MODES",
    "PT2_SUFFIX",
    "TARGETS",
    "CastModel",
    "EntropyObserver",
    "FloatIsland",
    "FreezeSchedule",
    "Int8Report",
    "PercentileObserver",
    "QATModule",
    "QuantizeConfig",
    "SRQuantizer",
    "UntiedModule",
    "activation_observer",
    "activation_spec",
    "apply",
    "build_quantizer",
    "calibrate",
    "calibration_batches",
    "cast_model",
    "convert",
    "count_quantized",
    "explicit_padding",
    "export_for_quantization",
    "export_qdq_onnx",
    "float_module_names",
    "fold_scalar_muls",
    "fold_subpixel_tail",
    "freeze_batch_norm",
    "int8_ops",
    "kl_threshold",
    "load_quantized",
    "prepare",
    "quantize_model",
    "quantizer_zero_points",
    "save_onnx",
    "save_quantized",
    "split_prelu",
    "srcompress_techniques",
    "untie_shared",
    "weight_spec",
]


@hookimpl
def srcompress_techniques() -> list[TechniqueEntry]:
    return [
        TechniqueEntry(
            name="quantize", config_cls=QuantizeConfig, apply=apply,
            description="PT2E quantization: PTQ (minmax/percentile/mse/entropy) or QAT to int8 Q/DQ for ONNX Runtime "
            "or TensorRT; int16 fake-quant; fp16/bf16 cast.",
        ),
    ]
