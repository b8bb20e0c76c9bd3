"""ONNX Runtime sessions (provider selection, threads) and the deployed ONNX model."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from srcompress.backends.onnx.graph import attribute
from srcompress.backends.onnx.rewrites import PERMUTED_KEY, crd_to_dcr_permutation
from srcompress.deploy import capture_outputs, diverging_layer
from srcompress.errors import DeployError

__all__ = ["METADATA_KEY", "PROVIDERS", "OnnxDeployed", "depth_to_space_modes", "make_session", "read_metadata", "resolve_provider"]

METADATA_KEY = "srcompress"
#: provider option -> ONNX Runtime execution providers, in priority order.
PROVIDERS = {
    "cpu": ("CPUExecutionProvider",),
    "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
    "tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
}
_LEVELS = {"disabled": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}


def resolve_provider(provider: str) -> str:
    """``auto`` -> ``cuda`` when ONNX Runtime has the CUDA provider, else ``cpu``."""
    import onnxruntime as ort

    if provider != "auto":
        return provider
    return "cuda" if "CUDAExecutionProvider" in ort.get_available_providers() else "cpu"


def make_session(
    proto: onnx.ModelProto, *, provider: str = "auto", threads: int = 0, optimization: str = "all", device_id: int = 0,
    spin: bool = True,
) -> Any:
    """An ``onnxruntime.InferenceSession`` for ``proto`` on the chosen provider.

    :param threads: intra-op threads (0: ONNX Runtime's default, one per physical core).
    :param spin: whether idle intra-op threads spin-wait (``session.intra_op.allow_spinning``).
    :raises DeployError: when the provider is not in this ONNX Runtime build, or the graph fails to load.
    """
    import onnxruntime as ort

    provider = resolve_provider(provider)
    available = ort.get_available_providers()
    wanted = PROVIDERS[provider]
    if wanted[0] not in available:
        raise DeployError(
            f"ONNX Runtime here has no {wanted[0]} (available: {', '.join(available)}); "
            "install onnxruntime-gpu for cuda/tensorrt, or set provider: cpu"
        )
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _LEVELS[optimization])
    if threads:
        options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    chain = [(p, {"device_id": device_id}) if p != "CPUExecutionProvider" else p for p in wanted if p in available]
    try:
        return ort.InferenceSession(proto.SerializeToString(), options, providers=chain)
    except Exception as exc:
        raise DeployError(f"ONNX Runtime cannot load the graph: {type(exc).__name__}: {exc}".splitlines()[0]) from exc


def read_metadata(proto: onnx.ModelProto) -> dict[str, Any]:
    """The srcompress metadata stored in a saved graph ({} when absent)."""
    for prop in proto.metadata_props:
        if prop.key == METADATA_KEY:
            return json.loads(prop.value)
    return {}


class OnnxDeployed:
    """An ONNX graph in an ONNX Runtime session; ``__call__`` maps (N, 3, H, W) [0, 1] float32 to float32.

    A CPU input gives a CPU output. On the CUDA provider a CUDA input is bound in place (I/O
    binding) and the output is a CUDA tensor.
    """

    def __init__(self, proto: onnx.ModelProto, session: Any, metadata: Mapping[str, Any]) -> None:
        self.proto = proto
        self.session = session
        self.metadata = dict(metadata)
        self.input_name = session.get_inputs()[0].name
        self.output_name = session.get_outputs()[0].name
        self.device = torch.device(self.metadata.get("device", "cpu"))

    def __call__(self, lr: torch.Tensor) -> torch.Tensor:
        if lr.is_cuda and self.device.type == "cuda" and "scale" in self.metadata:
            return self._run_bound(lr)
        feeds = {self.input_name: np.ascontiguousarray(lr.detach().float().cpu().numpy())}
        out = self.session.run([self.output_name], feeds)[0]
        return torch.from_numpy(np.asarray(out, dtype=np.float32)).to(lr.device)

    def _run_bound(self, lr: torch.Tensor) -> torch.Tensor:
        x = lr.detach().to(device=self.device, dtype=torch.float32).contiguous()
        n, _, h, w = x.shape
        scale, channels = int(self.metadata["scale"]), int(self.metadata.get("output_channels", 3))
        out = torch.empty((n, channels, h * scale, w * scale), device=x.device, dtype=torch.float32)
        index = x.device.index or 0
        binding = self.session.io_binding()
        binding.bind_input(self.input_name, "cuda", index, np.float32, tuple(x.shape), x.data_ptr())
        binding.bind_output(self.output_name, "cuda", index, np.float32, tuple(out.shape), out.data_ptr())
        torch.cuda.current_stream(x.device).synchronize()  # ONNX Runtime runs on its own stream
        self.session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        return out

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the graph (``.onnx``) with the deployment metadata in its ``metadata_props``."""
        path = Path(path)
        path = path if path.suffix == ".onnx" else path.with_name(path.name + ".onnx")
        proto = onnx.ModelProto()
        proto.CopyFrom(self.proto)
        stored = {k: v for k, v in self.metadata.items() if k not in ("device", "providers")}
        kept = [p for p in proto.metadata_props if p.key != METADATA_KEY]
        del proto.metadata_props[:]
        proto.metadata_props.extend(kept)
        proto.metadata_props.add(key=METADATA_KEY, value=json.dumps(stored))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(proto.SerializeToString())
        tmp.replace(path)
        return path

    # ------------------------------------------------------------------ diagnosis
    def locate_mismatch(self, model: nn.Module, lr: torch.Tensor) -> tuple[str, float] | None:
        """The first Conv (by torch module name) whose output departs from ``model``'s the most."""
        convs = _named_convs(self.proto, {name for name, _ in model.named_modules()})
        if not convs:
            return None
        probe = _with_outputs(self.proto, [tensor for tensor, _, _ in convs])
        session = make_session(probe, provider="cpu")
        feeds = {self.input_name: np.ascontiguousarray(lr.detach().float().cpu().numpy())}
        values = session.run([tensor for tensor, _, _ in convs], feeds)
        got: dict[str, torch.Tensor] = {}
        for (_, module, block), value in zip(convs, values):
            tensor = torch.from_numpy(np.asarray(value, dtype=np.float32))
            got[module] = tensor[:, _dcr_to_crd(tensor.shape[1], block)] if block else tensor
        reference = capture_outputs(model, lr, list(got))
        return diverging_layer(reference, got, list(got))


def _named_convs(proto: onnx.ModelProto, modules: set[str]) -> list[tuple[str, str, int]]:
    """(output tensor, torch module name, DCR block or 0) of Conv nodes whose weight names a module."""
    producers = {out: node for node in proto.graph.node for out in node.output}
    found, seen = [], set()
    for node in proto.graph.node:
        if node.op_type != "Conv":
            continue
        weight = node.input[1]
        dq = producers.get(weight)
        if dq is not None and dq.op_type == "DequantizeLinear":
            weight = dq.input[0]
        module = weight.rsplit(".", 1)[0] if "." in weight else ""
        if module in modules and module not in seen:
            block = int(next((p.value for p in node.metadata_props if p.key == PERMUTED_KEY), 0))
            found.append((node.output[0], module, block))
            seen.add(module)
    return found


def _dcr_to_crd(channels: int, block: int) -> torch.Tensor:
    """Index that restores CRD channel order from the DCR order of a rewritten conv output."""
    perm = crd_to_dcr_permutation(channels // (block * block), block)
    return torch.from_numpy(np.argsort(perm))


def _with_outputs(proto: onnx.ModelProto, tensors: list[str]) -> onnx.ModelProto:
    """A copy of ``proto`` that also outputs ``tensors`` (element types from shape inference)."""
    probe = onnx.ModelProto()
    probe.CopyFrom(proto)
    try:
        inferred = onnx.shape_inference.infer_shapes(probe)
        types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    except Exception:  # inference is best effort; fall back to float32
        types = {}
    existing = {o.name for o in probe.graph.output}
    for name in tensors:
        if name not in existing:
            probe.graph.output.append(onnx.helper.make_tensor_value_info(name, types.get(name, onnx.TensorProto.FLOAT), None))
    return probe


def depth_to_space_modes(proto: onnx.ModelProto) -> list[str]:
    """The ``mode`` of every DepthToSpace node, in graph order (for reports and tests)."""
    return [str(attribute(n, "mode", "DCR")) for n in proto.graph.node if n.op_type == "DepthToSpace"]
