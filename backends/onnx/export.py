"""PyTorch -> ONNX with the dynamo exporter, and reading existing ONNX graphs.

``torch.onnx.export(..., dynamo=True, opset_version=18)``: opset 18 on purpose. The dynamo
exporter's default (opset 20) writes ``DFT`` in a form ONNX Runtime fails to run with dynamic
shapes ("Shape mismatch attempting to re-use buffer"), and the legacy exporter cannot export
``torch.fft`` at all (see docs/deployment.md).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from srcompress.deploy import eval_mode
from srcompress.errors import DeployError

__all__ = ["DIM_NAMES", "INPUT_NAME", "OUTPUT_NAME", "export_onnx", "load_onnx", "simplify"]

INPUT_NAME = "lr"
OUTPUT_NAME = "sr"
DIM_NAMES = ("batch", "height", "width")


def export_onnx(
    model: nn.Module, example: torch.Tensor, *, opset: int = 18, dynamic: bool = True, optimize: bool = True
) -> onnx.ModelProto:
    """Export ``model`` (an ``nn.Module`` or a PT2E ``GraphModule``) for inputs like ``example``.

    :param example: (N, 3, H, W) float32 in [0, 1], on the model's device.
    :param dynamic: batch, height and width become symbolic (named ``batch``/``height``/``width``).
    :param optimize: run the exporter's onnxscript optimizer (constant folding, dead code removal).
    :raises DeployError: with the exporter's first message line and the fix.
    """
    dims = {0: torch.export.Dim.DYNAMIC, 2: torch.export.Dim.DYNAMIC, 3: torch.export.Dim.DYNAMIC}
    try:
        with eval_mode(model), torch.no_grad(), _quiet():
            program = torch.onnx.export(
                model,
                (example,),
                dynamo=True,
                opset_version=opset,
                dynamic_shapes=(dims,) if dynamic else None,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                optimize=optimize,
                verbose=False,
                external_data=False,
            )
    except Exception as exc:
        hint = "; try dynamic: false (export for the example's shape only)" if dynamic else ""
        raise DeployError(f"ONNX export of {type(model).__name__} failed: {_first_line(exc)}{hint}") from exc
    proto = program.model_proto
    if dynamic:
        _name_input_dims(proto)
    return proto


def _first_line(exc: BaseException) -> str:
    for line in str(exc).splitlines():
        if line.strip():
            return f"{type(exc).__name__}: {line.strip()}"
    return type(exc).__name__


@contextlib.contextmanager
def _quiet() -> Any:
    """The exporter prints progress lines to stdout; keep them out of the user's terminal."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def _name_input_dims(proto: onnx.ModelProto) -> None:
    """Rename the exporter's symbols (``s77``) of the first input to batch/height/width everywhere."""
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    rename = {dims[i].dim_param: DIM_NAMES[j] for j, i in enumerate((0, 2, 3)) if i < len(dims) and dims[i].dim_param}
    if not rename:
        return
    pattern = re.compile(r"\b(" + "|".join(re.escape(k) for k in rename) + r")\b")
    values = list(proto.graph.input) + list(proto.graph.output) + list(proto.graph.value_info)
    for value in values:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param:
                dim.dim_param = pattern.sub(lambda m: rename[m.group(1)], dim.dim_param)


def load_onnx(source: onnx.ModelProto | str | os.PathLike[str]) -> onnx.ModelProto:
    """A copy of an ONNX model given as a ``ModelProto`` or a path (external data loaded)."""
    if isinstance(source, onnx.ModelProto):
        copy = onnx.ModelProto()
        copy.CopyFrom(source)
        return copy
    path = Path(source)
    if not path.is_file():
        raise DeployError(f"no ONNX file at {path}")
    try:
        return onnx.load(str(path))
    except Exception as exc:
        raise DeployError(f"cannot read ONNX file {path}: {_first_line(exc)}") from exc


def simplify(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Constant folding and dead-node removal (onnxscript's optimizer), then ONNX's checker."""
    import onnxscript.optimizer

    try:
        out = onnxscript.optimizer.optimize(proto)
    except Exception as exc:
        raise DeployError(f"ONNX graph simplification failed: {_first_line(exc)}; set simplify: false") from exc
    onnx.checker.check_model(out)
    return out
