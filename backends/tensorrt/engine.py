"""Building TensorRT engines from ONNX with the TensorRT 10 / 11 Python API.

- Networks are strongly typed (``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` on TensorRT 10; the
  only kind on TensorRT 11): precision comes from the graph's types, so fp16 means a graph converted
  to fp16 and INT8 means explicit Q/DQ nodes. TensorRT 10 can still build weakly typed networks with
  ``BuilderFlag.FP16`` / ``BuilderFlag.INT8`` (``strongly_typed: false``); TensorRT 11 removed those flags.
- One optimization profile spans (min, opt, max) LR shapes.
- A timing cache makes builds reproducible: when its SHA-256 is pinned, the cache must match and is
  used read-only; otherwise it is loaded when present and written back, and its new hash reported.

``tensorrt`` is imported lazily: this module imports without it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import onnx
import torch

from srcompress.errors import DeployError

__all__ = ["MISSING_TENSORRT", "NO_GPU", "build_engine", "make_logger", "read_timing_cache", "require_tensorrt", "sha256_file", "tensorrt_major", "tensorrt_missing"]

MISSING_TENSORRT = "tensorrt not installed (pip install srcompress[tensorrt])"
NO_GPU = "no CUDA GPU (torch.cuda.is_available() is False)"

Shapes = tuple[Sequence[int], Sequence[int], Sequence[int]]


def tensorrt_missing() -> str | None:
    """Why a TensorRT engine cannot be built or run here (None when it can)."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return MISSING_TENSORRT
    if not torch.cuda.is_available():
        return NO_GPU
    return None


def require_tensorrt() -> Any:
    """The ``tensorrt`` module; :class:`DeployError` naming what is missing otherwise."""
    missing = tensorrt_missing()
    if missing is not None:
        raise DeployError(f"tensorrt backend: {missing}")
    import tensorrt

    return tensorrt


def tensorrt_major(trt: Any) -> int:
    return int(str(trt.__version__).split(".")[0])


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_logger(trt: Any) -> Any:
    """A ``trt.ILogger`` that keeps warnings and errors (``.messages``) for error reports."""

    class Collecting(trt.ILogger):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.messages: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            if int(severity) <= int(trt.ILogger.Severity.WARNING):
                self.messages.append(str(msg))

    return Collecting()


def build_engine(
    proto: onnx.ModelProto,
    *,
    input_name: str,
    shapes: Shapes,
    precision: str,
    strongly_typed: bool = True,
    workspace_mib: int = 4096,
    optimization_level: int = 3,
    tf32: bool = False,
    timing_cache: str | None = None,
    timing_cache_sha256: str | None = None,
) -> tuple[bytes, dict[str, Any]]:
    """Parse ``proto`` and build a serialized engine; returns (engine bytes, build info).

    :param shapes: (min, opt, max) input shapes (N, C, H, W) of the optimization profile.
    :param precision: fp32 / fp16 / int8; with a strongly typed network the graph's types must
        already say so (fp16 graph; Q/DQ nodes for int8).
    :raises DeployError: when TensorRT or a GPU is missing, parsing or building fails, or a pinned
        timing cache does not match its hash.
    """
    trt = require_tensorrt()
    major = tensorrt_major(trt)
    if not strongly_typed and major >= 11:
        raise DeployError("tensorrt backend: TensorRT 11 builds only strongly typed networks; set strongly_typed: true")
    logger = make_logger(trt)
    trt.init_libnvinfer_plugins(logger, "")  # FFTPlugin (DFT, TensorRT >= 11.2) and the other built-in plugins
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed and major < 11 else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(proto.SerializeToString()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors)) or "no parser message"
        raise DeployError(f"tensorrt backend: the ONNX parser rejected the graph: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    config.builder_optimization_level = optimization_level
    if not tf32:
        config.clear_flag(trt.BuilderFlag.TF32)  # fp32 means fp32: TF32 convs are ~1e-3 off
    if not strongly_typed:
        if precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        elif precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)  # explicit quantization: scales come from the Q/DQ nodes
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, *(tuple(int(d) for d in s) for s in shapes))
    config.add_optimization_profile(profile)
    cache_path = Path(timing_cache) if timing_cache else None
    cache_bytes = read_timing_cache(cache_path, timing_cache_sha256)
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        tail = "; ".join(logger.messages[-3:]) or "see the TensorRT log"
        raise DeployError(f"tensorrt backend: engine build failed: {tail}")
    info: dict[str, Any] = {"tensorrt": str(trt.__version__), "strongly_typed": strongly_typed or major >= 11}
    if cache_path is not None:
        info.update(_write_timing_cache(cache_path, config.get_timing_cache(), pinned=timing_cache_sha256))
    info["gpu"] = torch.cuda.get_device_name()
    return bytes(serialized), info


def read_timing_cache(path: Path | None, pinned: str | None) -> bytes:
    """The timing cache bytes to start a build from (b"" for none); a pinned cache must match its SHA-256."""
    if path is None:
        if pinned:
            raise DeployError("tensorrt backend: timing_cache_sha256 is set but timing_cache (the file) is not")
        return b""
    if not path.is_file():
        if pinned:
            raise DeployError(f"tensorrt backend: pinned timing cache {path} does not exist; restore it or unpin the hash")
        return b""
    data = path.read_bytes()
    if pinned and hashlib.sha256(data).hexdigest() != pinned.lower():
        raise DeployError(
            f"tensorrt backend: timing cache {path} has SHA-256 {hashlib.sha256(data).hexdigest()}, "
            f"pinned {pinned}; restore the pinned file or update timing_cache_sha256"
        )
    return data


def _write_timing_cache(path: Path, cache: Any, *, pinned: str | None) -> dict[str, Any]:
    if pinned:  # a pinned cache is an input of a reproducible build: never rewritten
        return {"timing_cache": str(path), "timing_cache_sha256": pinned.lower(), "timing_cache_pinned": True}
    data = bytes(cache.serialize())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return {"timing_cache": str(path), "timing_cache_sha256": hashlib.sha256(data).hexdigest(), "timing_cache_pinned": False}
