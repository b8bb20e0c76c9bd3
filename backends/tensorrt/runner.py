"""Running a TensorRT engine on torch CUDA tensors (TensorRT 10/11 named-tensor API).

The runner binds torch tensors by address (``set_tensor_address``) and enqueues on the current
torch CUDA stream (``execute_async_v3``), so no copies and no extra CUDA library are needed.
Latency is timed with CUDA events on that stream.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from srcompress.backends.tensorrt.engine import make_logger, require_tensorrt
from srcompress.errors import DeployError

__all__ = ["TensorRTDeployed", "read_engine"]


def _torch_dtype(trt: Any, dtype: Any) -> torch.dtype:
    table = {"FLOAT": torch.float32, "HALF": torch.float16, "BF16": torch.bfloat16, "INT8": torch.int8,
             "INT32": torch.int32, "INT64": torch.int64, "BOOL": torch.bool, "UINT8": torch.uint8}  # fmt: skip
    for name, torch_dtype in table.items():
        if hasattr(trt.DataType, name) and dtype == getattr(trt.DataType, name):
            return torch_dtype
    raise DeployError(f"tensorrt backend: engine I/O type {dtype} has no torch equivalent")


class TensorRTDeployed:
    """A deserialized engine with one execution context; ``__call__`` maps (N, 3, H, W) [0, 1] to SR.

    Inputs on the CPU are copied to the engine's GPU and the output is copied back; CUDA inputs give
    CUDA outputs.
    """

    def __init__(self, engine_bytes: bytes, metadata: Mapping[str, Any]) -> None:
        trt = require_tensorrt()
        self._trt = trt
        self.engine_bytes = engine_bytes
        self.metadata = dict(metadata)
        self.device = torch.device(self.metadata.get("device", "cuda:0"))
        with torch.cuda.device(self.device):
            self._logger = make_logger(trt)
            self.runtime = trt.Runtime(self._logger)
            self.engine = self.runtime.deserialize_cuda_engine(engine_bytes)
            if self.engine is None:
                raise DeployError(
                    "tensorrt backend: cannot deserialize the engine (built by another TensorRT version or GPU?): "
                    + "; ".join(self._logger.messages[-2:])
                )
            self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise DeployError(f"tensorrt backend: expected one input and one output, engine has {inputs} -> {outputs}")
        self.input_name, self.output_name = inputs[0], outputs[0]
        self.input_dtype = _torch_dtype(trt, self.engine.get_tensor_dtype(self.input_name))
        self.output_dtype = _torch_dtype(trt, self.engine.get_tensor_dtype(self.output_name))

    # --------------------------------------------------------------------------- running
    def _bind(self, x: torch.Tensor) -> torch.Tensor:
        """Set the input shape and both addresses; returns the (uninitialized) output tensor."""
        self._check_profile(tuple(x.shape))
        if not self.context.set_input_shape(self.input_name, tuple(x.shape)):
            raise DeployError(f"tensorrt backend: input shape {tuple(x.shape)} rejected by the engine")
        out = torch.empty(tuple(self.context.get_tensor_shape(self.output_name)), device=self.device, dtype=self.output_dtype)
        self.context.set_tensor_address(self.input_name, x.data_ptr())
        self.context.set_tensor_address(self.output_name, out.data_ptr())
        return out

    def _enqueue(self, stream: torch.cuda.Stream) -> None:
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise DeployError("tensorrt backend: execute_async_v3 failed; see the TensorRT log")

    def _check_profile(self, shape: tuple[int, ...]) -> None:
        low, _, high = self.metadata["profile"]
        if len(shape) != len(low) or any(s < lo or s > hi for s, lo, hi in zip(shape, low, high)):
            raise DeployError(
                f"tensorrt backend: input shape {list(shape)} is outside the engine's profile "
                f"min {list(low)} .. max {list(high)}; rebuild with min_lr/max_lr/max_batch covering it"
            )

    def __call__(self, lr: torch.Tensor) -> torch.Tensor:
        x = lr.detach().to(device=self.device, dtype=self.input_dtype).contiguous()
        with torch.cuda.device(self.device):
            stream = torch.cuda.current_stream(self.device)
            out = self._bind(x)
            self._enqueue(stream)
        out = out.float()
        return out if lr.is_cuda else out.cpu()

    def latency(self, lr: torch.Tensor, *, warmup: int = 3, runs: int = 10) -> Any:
        """Engine time per call measured with CUDA events on the current stream (milliseconds)."""
        from srcompress.measure.profile import LatencyStats

        x = lr.detach().to(device=self.device, dtype=self.input_dtype).contiguous()
        times = []
        with torch.cuda.device(self.device):
            stream = torch.cuda.current_stream(self.device)
            self._bind(x)
            for _ in range(warmup):
                self._enqueue(stream)
            for _ in range(runs):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record(stream)
                self._enqueue(stream)
                end.record(stream)
                end.synchronize()
                times.append(float(start.elapsed_time(end)))
        return LatencyStats.from_times(times)

    # --------------------------------------------------------------------------- files
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``<path>.engine`` (the serialized engine) and ``<path>.engine.json`` (metadata)."""
        path = Path(path)
        path = path if path.suffix == ".engine" else path.with_name(path.name + ".engine")
        path.parent.mkdir(parents=True, exist_ok=True)
        for target, data in ((path, self.engine_bytes), (_sidecar(path), json.dumps(self.metadata, indent=2).encode())):
            tmp = target.with_name(target.name + ".tmp")
            tmp.write_bytes(data)
            tmp.replace(target)
        return path


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def read_engine(path: str | os.PathLike[str]) -> tuple[bytes, dict[str, Any]]:
    """(engine bytes, metadata) of an engine saved by :meth:`TensorRTDeployed.save`."""
    path = Path(path)
    if not path.is_file() or not _sidecar(path).is_file():
        raise DeployError(f"tensorrt backend: need {path} and {_sidecar(path).name}; save the deployment again")
    return path.read_bytes(), json.loads(_sidecar(path).read_text())
