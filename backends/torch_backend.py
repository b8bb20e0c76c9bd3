"""The ``torch`` backend: eager PyTorch in fp32/fp16/bf16, optional channels_last and ``torch.compile``.

Saved artifacts are ``torch.export`` programs (``.pt2``, dynamic batch/height/width) that reload with
``torch.export.load`` without the model's Python class. The deployment metadata travels inside the
file (``extra_files["srcompress.json"]``).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from attrs import define
from torch import nn

from srcompress.config import one_of, option
from srcompress.deploy import apply_export_forms, find_export_forms, first_diverging_layer, fp32_math, package_versions
from srcompress.entries import BackendEntry
from srcompress.errors import DeployError
from srcompress.hookspecs import hookimpl

__all__ = ["TorchConfig", "TorchDeployed", "compile_torch", "load_torch", "resolve_device", "srcompress_backends"]

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
METADATA_FILE = "srcompress.json"
#: Max abs difference from torch fp32 on [0, 1] images, per precision.
TOLERANCE = {"fp32": 1e-5, "fp16": 2e-2, "bf16": 6e-2}


def _device_name(_inst: Any, _attr: Any, value: str) -> None:
    if value in ("auto", "cpu", "cuda") or (value.startswith("cuda:") and value[5:].isdigit()):
        return
    raise ValueError(f"must be 'auto', 'cpu', 'cuda' or 'cuda:N' (got {value!r})")


@define(frozen=True, kw_only=True)
class TorchConfig:
    """Options of the ``torch`` backend."""

    precision: str = option("fp32", help="Weights and activations dtype.", validator=one_of(tuple(DTYPES)))
    device: str = option("auto", help="'auto' (CUDA when available, else CPU), 'cpu', 'cuda' or 'cuda:N'.", validator=_device_name)
    channels_last: bool = option(False, help="Run in channels_last memory format (often faster for convs on GPU).")
    compile: bool = option(False, help="Wrap the model in torch.compile (Inductor; needs a C compiler on CPU).")
    compile_mode: str = option(
        "default", help="torch.compile mode.", validator=one_of(("default", "reduce-overhead", "max-autotune"))
    )
    fft: str = option(
        "auto",
        help="Fourier units: 'dft_op' keeps torch.fft, 'fft_free' uses each module's export_form(); "
        "'auto' keeps torch.fft in fp32 and uses export forms in fp16/bf16 (torch has no half FFT on CPU).",
        validator=one_of(("auto", "dft_op", "fft_free")),
    )
    dynamic: bool = option(True, help="Saved program accepts any batch, height and width (else the example's shape).")
    tf32: bool = option(
        False, help="fp32 on a CUDA GPU: let convs and matmuls round inputs to TF32 (Ampere and newer; faster; "
        "2e-3 to 3e-3 off IEEE fp32 on the F2SRGAN family on an H100). false: IEEE fp32 (PyTorch's cuDNN default is TF32).",
    )  # fmt: skip


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; refuses CUDA when torch sees no GPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeployError(f"torch backend: device '{name}' requested but torch sees no CUDA GPU; use device: cpu")
    return device


class TorchDeployed:
    """A model ready to run in torch; ``__call__`` maps (N, 3, H, W) [0, 1] float32 to float32 SR images.

    The output is on the input's device (time on the deployment's device to leave copies out).
    """

    def __init__(self, module: nn.Module, metadata: Mapping[str, Any], *, config: TorchConfig, example: torch.Tensor) -> None:
        self.module = module
        self.device = torch.device(metadata["device"])
        self.dtype = DTYPES[metadata["precision"]]
        self.channels_last = bool(metadata.get("channels_last", False))
        self.config = config
        self.example = example
        self.runner: Any = torch.compile(module, mode=config.compile_mode, dynamic=True) if config.compile else module
        self.metadata = dict(metadata)

    def __call__(self, lr: torch.Tensor) -> torch.Tensor:
        x = lr.to(device=self.device, dtype=self.dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), fp32_math(tf32=self.config.tf32):
            out = self.runner(x)
        return out.float().contiguous().to(lr.device)

    def save(self, path: str | Path) -> Path:
        """Write a ``torch.export`` program (``.pt2``) with dynamic batch/height/width and the metadata."""
        path = Path(path)
        path = path if path.suffix == ".pt2" else path.with_name(path.name + ".pt2")
        program = _export(self.module, self._traced_example(), dynamic=self.config.dynamic)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.export.save(program, tmp, extra_files={METADATA_FILE: json.dumps(self.metadata)})
        tmp.replace(path)
        return path

    def _traced_example(self) -> torch.Tensor:
        x = self.example.to(device=self.device, dtype=self.dtype)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def locate_mismatch(self, model: nn.Module, lr: torch.Tensor) -> tuple[str, float] | None:
        """The first layer (by qualified name) whose output departs from the fp32 ``model`` most."""
        return first_diverging_layer(model, self.module, lr, dtype=self.dtype, channels_last=self.channels_last)


def _export(module: nn.Module, example: torch.Tensor, *, dynamic: bool) -> torch.export.ExportedProgram:
    shapes = ({0: torch.export.Dim.DYNAMIC, 2: torch.export.Dim.DYNAMIC, 3: torch.export.Dim.DYNAMIC},) if dynamic else None
    try:
        with _size_oblivious():
            return torch.export.export(module, (example,), dynamic_shapes=shapes)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = "; save with dynamic: false for the example's shape only" if dynamic else ""
        raise DeployError(f"torch backend: torch.export failed: {first}{hint}") from exc


def _size_oblivious() -> Any:
    """Don't let an example dimension of 1 specialize the program (what torch.onnx.export does too)."""
    try:
        from torch.fx.experimental import _config as fx_config

        return fx_config.patch(backed_size_oblivious=True)
    except (ImportError, AttributeError):  # older torch: plain export
        import contextlib

        return contextlib.nullcontext()


def _uses_forms(config: TorchConfig) -> bool:
    return config.fft == "fft_free" or (config.fft == "auto" and config.precision != "fp32")


def compile_torch(model: nn.Module, example: torch.Tensor, config: TorchConfig) -> TorchDeployed:
    """A copy of ``model`` in eval mode on the configured device/dtype/memory format (``model`` is untouched)."""
    device = resolve_device(config.device)
    dtype = DTYPES[config.precision]
    forms = find_export_forms(model) if _uses_forms(config) else []
    module = apply_export_forms(model, enabled=bool(forms))
    module = copy.deepcopy(module) if module is model else module
    _eval(module)
    module = module.to(device=device, dtype=dtype)
    if config.channels_last:
        module = module.to(memory_format=torch.channels_last)
    example = example.detach().float().cpu()
    metadata = {
        "backend": "torch",
        "precision": config.precision,
        "device": str(device),
        "channels_last": config.channels_last,
        "compiled": config.compile,
        "fft": "fft_free" if forms else "dft_op",
        "export_forms": forms,
        "input_shape": list(example.shape),
        "dynamic": config.dynamic,
        "versions": package_versions(),
    }
    deployed = TorchDeployed(module, metadata, config=config, example=example)
    out = deployed(example)
    deployed.metadata["output_shape"] = list(out.shape)
    deployed.metadata["scale"] = out.shape[-1] // example.shape[-1]
    return deployed


def _eval(module: nn.Module) -> None:
    try:
        module.eval()
    except NotImplementedError:  # exported GraphModules refuse eval(); they are already inference graphs
        pass


def load_torch(path: str | Path, config: TorchConfig) -> TorchDeployed:
    """Reopen a ``.pt2`` written by :meth:`TorchDeployed.save`; runs on ``config.device`` (precision as saved)."""
    path = Path(path)
    if not path.is_file():
        raise DeployError(f"torch backend: no saved program at {path}; save a deployment first (srcompress deploy)")
    extra = {METADATA_FILE: ""}
    try:
        program = torch.export.load(path, extra_files=extra)
    except Exception as exc:
        raise DeployError(f"torch backend: cannot load {path}: {type(exc).__name__}: {exc}".splitlines()[0]) from exc
    metadata = json.loads(extra[METADATA_FILE] or "{}")
    if metadata.get("backend") != "torch":
        raise DeployError(f"torch backend: {path} has no srcompress torch metadata; it was not saved by srcompress")
    device = resolve_device(config.device)
    module = program.module().to(device)
    metadata["device"] = str(device)
    example = torch.rand(metadata["input_shape"])
    return TorchDeployed(module, metadata, config=config, example=example)


@hookimpl
def srcompress_backends() -> list[BackendEntry]:
    return [
        BackendEntry(
            name="torch",
            config_cls=TorchConfig,
            compile=compile_torch,
            load=load_torch,
            tolerance=TOLERANCE,
            description="Eager PyTorch (fp32/fp16/bf16, channels_last, torch.compile); saves torch.export .pt2",
        )
    ]
