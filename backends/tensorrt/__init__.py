"""The ``tensorrt`` backend plugin: ONNX -> TensorRT engine (TensorRT 10 / 11), run on torch CUDA tensors.

The ONNX graph is prepared exactly like the ``onnx`` backend's (export forms, opset 18 export,
rewrites, fp16 conversion), then checked by the TensorRT pre-flight, then built. Everything up to
the build works without TensorRT (:func:`tensorrt_graph`); building and running need the
``tensorrt`` extra and a CUDA GPU, and fail with a message naming what is missing.
"""

from __future__ import annotations

import os
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import onnx
import torch
from attrs import define
from torch import nn

from srcompress.backends.onnx import REWRITES, OnnxConfig, prepare_graph
from srcompress.backends.onnx.preflight import preflight
from srcompress.backends.tensorrt.engine import MISSING_TENSORRT, NO_GPU, build_engine, require_tensorrt, tensorrt_missing
from srcompress.backends.tensorrt.runner import TensorRTDeployed, read_engine
from srcompress.config import in_range, names, one_of, option
from srcompress.deploy import Issue, raise_for_issues
from srcompress.entries import BackendEntry
from srcompress.errors import DeployError
from srcompress.hookspecs import hookimpl

__all__ = [
    "MISSING_TENSORRT",
    "NO_GPU",
    "TOLERANCE",
    "TensorRTConfig",
    "TensorRTDeployed",
    "compile_tensorrt",
    "load_tensorrt",
    "profile_shapes",
    "srcompress_backends",
    "tensorrt_graph",
    "tensorrt_missing",
]

#: Max abs difference from torch on [0, 1] images, per precision (fp32 with TF32 off); int8: the
#: mean abs difference from the fake-quantized torch model (srcompress.deploy.GATE_STATISTIC).
TOLERANCE = {"fp32": 1e-3, "fp16": 2e-2, "int8": 3e-2}


def _pair(value: Any) -> tuple[int, int]:
    return (int(value[0]), int(value[1]))



def _known_rewrites(_inst: Any, _attr: Any, value: tuple[str, ...]) -> None:
    unknown = [v for v in value if v not in REWRITES]
    if unknown:
        raise ValueError(f"unknown rewrite(s) {unknown} (available: {', '.join(REWRITES)})")


@define(frozen=True, kw_only=True)
class TensorRTConfig:
    """Options of the ``tensorrt`` backend."""

    precision: str = option(
        "fp32", help="fp32 (TF32 off), fp16 (fp16 graph), int8 (explicit Q/DQ graph, symmetric int8).",
        validator=one_of(("fp32", "fp16", "int8")),
    )  # fmt: skip
    strongly_typed: bool = option(
        True, help="Strongly typed network (the only kind in TensorRT 11); false: TensorRT 10 builder flags FP16/INT8."
    )
    fft: str = option(
        "auto", help="Fourier units: auto/fft_free use export forms (no DFT: TensorRT < 11.2 cannot parse it); dft_op keeps DFT.",
        validator=one_of(("auto", "dft_op", "fft_free")),
    )  # fmt: skip
    opset: int = option(18, help="ONNX opset of the export.", validator=in_range(17, 21))
    simplify: bool = option(True, help="Constant folding and dead-node removal before parsing.")
    rewrites: tuple[str, ...] = option(
        (), help="Exact SR graph rewrites (see the onnx backend; their gains are measured for ONNX Runtime, "
        "TensorRT fuses these ops itself).", converter=names, validator=_known_rewrites,
    )  # fmt: skip
    min_lr: tuple[int, int] = option((32, 32), help="Smallest LR (height, width) the engine accepts.", converter=_pair)
    opt_lr: tuple[int, int] = option((180, 320), help="LR (height, width) TensorRT tunes for.", converter=_pair)
    max_lr: tuple[int, int] = option((720, 1280), help="Largest LR (height, width) the engine accepts.", converter=_pair)
    max_batch: int = option(1, help="Largest batch (the profile spans 1..max_batch, tuned for 1).", validator=in_range(1, 256))
    workspace_mib: int = option(4096, help="Builder workspace memory limit (MiB).", validator=in_range(64, 1 << 20))
    optimization_level: int = option(3, help="Builder optimization level (0-5: higher builds longer).", validator=in_range(0, 5))
    tf32: bool = option(False, help="Allow TF32 for fp32 convs (faster on Ampere+, ~1e-3 error).")
    timing_cache: str | None = option(None, help="Timing cache file: loaded if present, written after the build unless pinned.")
    timing_cache_sha256: str | None = option(
        None, help="Pin the timing cache: its SHA-256 must match, and it is used read-only (reproducible builds)."
    )
    device_id: int = option(0, help="GPU index.", validator=in_range(0, 64))


def profile_shapes(config: TensorRTConfig, channels: int = 3) -> list[list[int]]:
    """[min, opt, max] NCHW shapes of the optimization profile."""
    shapes = [[1, channels, *config.min_lr], [1, channels, *config.opt_lr], [config.max_batch, channels, *config.max_lr]]
    for axis in (2, 3):
        if not shapes[0][axis] <= shapes[1][axis] <= shapes[2][axis]:
            raise DeployError(f"tensorrt backend: need min_lr <= opt_lr <= max_lr (got {config.min_lr}, {config.opt_lr}, {config.max_lr})")
    return shapes


def _installed_version() -> str | None:
    for name in ("tensorrt", "tensorrt-cu13", "tensorrt-cu12"):
        try:
            return importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return None


def tensorrt_graph(
    model: nn.Module | onnx.ModelProto | str | os.PathLike, example: torch.Tensor, config: TensorRTConfig,
    *, tensorrt_version: str | None = None,
) -> tuple[onnx.ModelProto, list[Issue], dict[str, Any]]:  # fmt: skip
    """The ONNX graph TensorRT would parse, its pre-flight findings and metadata; needs no TensorRT.

    :param tensorrt_version: the version to check against (default: the installed one, else < 11.2).
    """
    weak_fp16 = config.precision == "fp16" and not config.strongly_typed  # fp32 graph + BuilderFlag.FP16
    onnx_config = OnnxConfig(
        precision="fp32" if weak_fp16 else config.precision, opset=config.opset, fft=config.fft, dynamic=True, simplify=config.simplify,
        rewrites=config.rewrites, provider="cpu",
    )  # fmt: skip
    proto, meta = prepare_graph(model, example, onnx_config)
    shapes = profile_shapes(config, channels=int(example.shape[1]))
    input_name = proto.graph.input[0].name
    version = tensorrt_version or _installed_version()
    issues = preflight(proto, "tensorrt", tensorrt_version=version, profile={input_name: tuple(shapes)})
    meta.update(backend="tensorrt", precision=config.precision, input_name=input_name, profile=shapes, preflight=[str(i) for i in issues])
    return proto, issues, meta


def compile_tensorrt(model: nn.Module | onnx.ModelProto | str | os.PathLike, example: torch.Tensor, config: TensorRTConfig) -> TensorRTDeployed:
    """Build a TensorRT engine for ``model`` (or an ONNX graph/path) and load it for running."""
    require_tensorrt()
    proto, issues, meta = tensorrt_graph(model, example, config)
    raise_for_issues(issues, "tensorrt pre-flight")
    with torch.cuda.device(config.device_id):
        engine, info = build_engine(
            proto, input_name=meta["input_name"], shapes=tuple(meta["profile"]), precision=config.precision,
            strongly_typed=config.strongly_typed, workspace_mib=config.workspace_mib,
            optimization_level=config.optimization_level, tf32=config.tf32, timing_cache=config.timing_cache,
            timing_cache_sha256=config.timing_cache_sha256,
        )  # fmt: skip
    meta.update(info, device=f"cuda:{config.device_id}", input_shape=list(example.shape))
    meta.setdefault("versions", {})["tensorrt"] = info["tensorrt"]
    deployed = TensorRTDeployed(engine, meta)
    out = deployed(example.to(deployed.device))
    deployed.metadata.update(scale=out.shape[-1] // example.shape[-1], output_shape=list(out.shape))
    return deployed


def load_tensorrt(path: str | os.PathLike, config: TensorRTConfig) -> TensorRTDeployed:
    """Reopen an engine saved by :meth:`TensorRTDeployed.save` on ``config.device_id``.

    :raises DeployError: when TensorRT/GPU is missing, or the engine was built by another TensorRT version.
    """
    trt = require_tensorrt()
    engine, meta = read_engine(Path(path))
    built = meta.get("tensorrt")
    if built and built != str(trt.__version__):
        raise DeployError(f"tensorrt backend: {path} was built by TensorRT {built}, installed is {trt.__version__}; rebuild it")
    meta["device"] = f"cuda:{config.device_id}"
    return TensorRTDeployed(engine, meta)


@hookimpl
def srcompress_backends() -> list[BackendEntry]:
    return [
        BackendEntry(
            name="tensorrt",
            config_cls=TensorRTConfig,
            compile=compile_tensorrt,
            load=load_tensorrt,
            tolerance=TOLERANCE,
            description="TensorRT 10/11 engine (strongly typed, fp16 / explicit INT8 Q/DQ, profiles, pinned timing cache); "
            "needs the tensorrt extra and a CUDA GPU",
        )
    ]
