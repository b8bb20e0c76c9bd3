"""Model checkpoints that reload WITHOUT unpickling code, also after pruning changed the shapes.

A checkpoint is a ``torch.save`` of plain data (``torch.load(weights_only=True)`` reads it):

- ``format``: ``"srcompress.checkpoint/1"``;
- ``model``: the model reference (registered name, scale, options as plain data) or None for a
  user's own module;
- ``structure``: for every module whose constructor arguments shape its tensors (convs, linears,
  norms, PReLU, ...), those arguments (``in_channels``, ``out_channels``, ``groups``, ...);
- ``state_dict``: the tensors.

Loading builds the architecture from its reference (or takes a fresh instance from the caller),
re-applies the recorded structure (attributes and empty tensors of the recorded shapes), then loads
the state dict strictly. That is enough for structured pruning, which changes widths but not the
module tree.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from srcompress.errors import CheckpointError

__all__ = [
    "CHECKPOINT_FORMAT",
    "EXPORTED_SUFFIX",
    "apply_structure",
    "atomic_torch_save",
    "capture_structure",
    "load_checkpoint",
    "load_exported",
    "load_stage_model",
    "needs_export",
    "read_checkpoint",
    "save_checkpoint",
    "save_exported",
    "save_stage_model",
]

CHECKPOINT_FORMAT = "srcompress.checkpoint/1"

# Constructor arguments that determine tensor shapes, by attribute name (any module type).
_SHAPE_ATTRS = (
    "in_channels",
    "out_channels",
    "groups",
    "num_features",
    "num_parameters",
    "in_features",
    "out_features",
    "normalized_shape",
    "num_channels",
    "num_groups",
    "embed_dim",
    "num_heads",
    "num_embeddings",
    "embedding_dim",
)


def capture_structure(model: nn.Module) -> dict[str, dict[str, Any]]:
    """Per module (qualified name): the shape-determining attributes it has (ints or int tuples)."""
    structure: dict[str, dict[str, Any]] = {}
    for name, module in model.named_modules():
        found = {}
        for attr in _SHAPE_ATTRS:
            if isinstance(getattr(type(module), attr, None), property):
                continue  # derived from the module's tensors or children (e.g. FFC.out_channels)
            value = getattr(module, attr, None)
            if isinstance(value, int) and not isinstance(value, bool):
                found[attr] = value
            elif isinstance(value, tuple) and all(isinstance(v, int) for v in value):
                found[attr] = list(value)
        if found:
            structure[name] = found
    return structure


def apply_structure(model: nn.Module, structure: Mapping[str, Mapping[str, Any]], state: Mapping[str, torch.Tensor]) -> None:
    """Make ``model``'s modules and tensors take the recorded attributes and the shapes in ``state``."""
    modules = dict(model.named_modules())
    for name, attributes in structure.items():
        module = modules.get(name)
        if module is None:
            raise CheckpointError(f"checkpoint structure names module '{name}', which this architecture does not have")
        for attr, value in attributes.items():
            setattr(module, attr, tuple(value) if isinstance(value, list) else value)
    for key, tensor in state.items():
        owner_name, _, leaf = key.rpartition(".")
        owner = modules.get(owner_name)
        if owner is None:
            continue  # reported by load_state_dict
        current = owner._parameters.get(leaf) if leaf in owner._parameters else owner._buffers.get(leaf)
        if current is None or current.shape == tensor.shape:
            continue
        fresh = torch.empty(tensor.shape, dtype=current.dtype, device=current.device)
        if leaf in owner._parameters:
            owner._parameters[leaf] = nn.Parameter(fresh, requires_grad=current.requires_grad)
        else:
            owner._buffers[leaf] = fresh


def atomic_torch_save(obj: Any, path: Path) -> Path:
    """``torch.save`` to a temp file beside ``path``, then rename: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def save_checkpoint(model: nn.Module, path: Path, *, model_ref: Mapping[str, Any] | None, extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``model`` (state + structure + reference) atomically to ``path``."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "model": dict(model_ref) if model_ref is not None else None,
        "structure": capture_structure(model),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extra": dict(extra or {}),
    }
    return atomic_torch_save(payload, path)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint's plain data (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupted files
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not an srcompress checkpoint (expected format {CHECKPOINT_FORMAT})")
    return payload


def load_checkpoint(path: Path, model: nn.Module) -> nn.Module:
    """Load a checkpoint into a freshly built ``model`` of the recorded architecture; returns it."""
    payload = read_checkpoint(path)
    state = payload["state_dict"]
    apply_structure(model, payload["structure"], state)
    result = model.load_state_dict(state, strict=False)
    problems = [f"missing {k}" for k in result.missing_keys[:3]] + [f"unexpected {k}" for k in result.unexpected_keys[:3]]
    if problems:
        raise CheckpointError(f"{path}: does not match the architecture ({', '.join(problems)})")
    return model


# ------------------------------------------------------------------------------ exported programs
# A model a technique turned into a graph (e.g. a PT2E-quantized ``torch.fx.GraphModule``) cannot be
# rebuilt from an architecture + state dict: it is stored as a ``torch.export`` ExportedProgram
# (``.pt2``: a serialized graph and tensors, no pickled code) with dynamic batch, height and width.

EXPORTED_SUFFIX = ".pt2"


def needs_export(model: nn.Module) -> bool:
    """True for modules holding a traced graph (anywhere inside) rather than a buildable architecture."""
    return any(isinstance(module, torch.fx.GraphModule) for module in model.modules())


def save_exported(model: nn.Module, path: Path, example: torch.Tensor) -> Path:
    """Write ``model`` as an ExportedProgram, atomically. ``example``: (N, 3, H, W) float32, H, W >= 2."""
    path = Path(path)
    if example.shape[0] < 2:  # a batch of 1 would specialise the batch dimension
        example = example.expand(2, -1, -1, -1).contiguous()
    dims = {0: torch.export.Dim.DYNAMIC, 2: torch.export.Dim.DYNAMIC, 3: torch.export.Dim.DYNAMIC}
    program = torch.export.export(model, (example,), dynamic_shapes=(dims,))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=EXPORTED_SUFFIX, dir=path.parent)  # torch wants .pt2
    os.close(fd)
    try:
        torch.export.save(program, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_exported(path: Path) -> nn.Module:
    """The module saved by :func:`save_exported` (same forward)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: exported model not found")
    try:
        return torch.export.load(path).module()
    except Exception as exc:  # torch raises many types for a damaged archive
        raise CheckpointError(f"{path}: cannot load the exported model ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None


# ------------------------------------------------------------------------------ a stage's model

MODEL_INFO = "model.json"


def save_stage_model(model: nn.Module, folder: Path, *, model_ref: Mapping[str, Any] | None, example: torch.Tensor) -> Path:
    """Save a stage's result in ``folder``: ``model.pt`` (state + structure) or, for a model holding a
    traced graph, ``model.pt2``; plus ``model.json`` with the architecture reference. Returns the file."""
    import json

    folder = Path(folder)
    if needs_export(model):
        path = save_exported(model, folder / f"model{EXPORTED_SUFFIX}", example)
    else:
        path = save_checkpoint(model, folder / "model.pt", model_ref=model_ref)
    info = json.dumps({"model": dict(model_ref) if model_ref is not None else None, "file": path.name}, indent=2)
    fd, tmp = tempfile.mkstemp(prefix=f".{MODEL_INFO}.", suffix=".tmp", dir=folder)
    with os.fdopen(fd, "w") as handle:
        handle.write(info)
    os.replace(tmp, folder / MODEL_INFO)
    return path


def load_stage_model(folder: Path, *, registry: Any = None, user_model: nn.Module | None = None) -> nn.Module:
    """Reload what :func:`save_stage_model` wrote. A registered architecture is rebuilt from its
    reference (no weights download); a user's module from a deep copy of ``user_model``."""
    import copy
    import json

    from srcompress.models import build_model, ref_from_mapping, set_model_ref

    folder = Path(folder)
    info_path = folder / MODEL_INFO
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    ref = ref_from_mapping(info["model"], registry) if info.get("model") else None
    exported = folder / f"model{EXPORTED_SUFFIX}"
    if exported.is_file():
        model = load_exported(exported)
        if ref is not None:
            set_model_ref(model, ref)
        return model
    path = folder / "model.pt"
    payload = read_checkpoint(path)
    if payload["model"] is not None:
        fresh = build_model(ref_from_mapping(payload["model"], registry), registry=registry, load_weights=False)
    elif user_model is not None:
        fresh = copy.deepcopy(user_model)
    else:
        raise CheckpointError(f"{path}: holds a user module; reload it through srcompress.compress(model, ...)")
    return load_checkpoint(path, fresh)
