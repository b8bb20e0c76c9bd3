"""The ``onnx`` backend plugin: PyTorch -> ONNX (dynamo exporter, opset 18) -> ONNX Runtime.

Pipeline of :func:`compile_onnx`: export forms (FFT-free Fourier units) -> export with dynamic
batch/height/width -> simplification -> exact SR rewrites (each verified) -> fp16 conversion ->
pre-flight for the chosen provider -> session. Also accepts an ``onnx.ModelProto`` or a ``.onnx``
path (e.g. an INT8 Q/DQ graph from the quantization plugin) in place of the module.
"""

from __future__ import annotations

from srcompress.backends.onnx.backend import (
    DEFAULT_REWRITES,
    TOLERANCE,
    OnnxConfig,
    compile_onnx,
    load_onnx_deployed,
    prepare_graph,
)
from srcompress.backends.onnx.export import export_onnx, load_onnx, simplify
from srcompress.backends.onnx.precision import QdqSummary, qdq_summary, to_fp16
from srcompress.backends.onnx.preflight import TARGETS, dynamic_inputs, preflight
from srcompress.backends.onnx.rewrites import REWRITES, RewriteReport, apply_rewrites, crd_to_dcr_permutation
from srcompress.backends.onnx.runtime import OnnxDeployed, depth_to_space_modes, make_session
from srcompress.entries import BackendEntry
from srcompress.hookspecs import hookimpl

__all__ = [
    "DEFAULT_REWRITES",
    "REWRITES",
    "TARGETS",
    "TOLERANCE",
    "OnnxConfig",
    "OnnxDeployed",
    "QdqSummary",
    "RewriteReport",
    "apply_rewrites",
    "compile_onnx",
    "crd_to_dcr_permutation",
    "depth_to_space_modes",
    "dynamic_inputs",
    "export_onnx",
    "load_onnx",
    "load_onnx_deployed",
    "make_session",
    "preflight",
    "prepare_graph",
    "qdq_summary",
    "simplify",
    "srcompress_backends",
    "to_fp16",
]


@hookimpl
def srcompress_backends() -> list[BackendEntry]:
    return [
        BackendEntry(
            name="onnx",
            config_cls=OnnxConfig,
            compile=compile_onnx,
            load=load_onnx_deployed,
            tolerance=TOLERANCE,
            description="ONNX (dynamo export, opset 18) on ONNX Runtime: CPU/CUDA/TensorRT providers, fp32/fp16/int8 Q/DQ",
        )
    ]
