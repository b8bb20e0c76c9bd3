"""The PT2E flow: ``torch.export`` -> ``prepare_pt2e`` / ``prepare_qat_pt2e`` -> calibrate or train -> ``convert_pt2e``.

Models are exported with dynamic batch, height and width (QAT needs the dynamic batch: a graph
exported at batch 1 fails its guard at batch 16), from an example of batch 2 (size 1 would be
specialised). The returned graphs are ``torch.fx.GraphModule`` s mapping (N, 3, H, W) float32 in
[0, 1] to the upscaled image, like the float model.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torchao.quantization.pt2e import disable_observer, move_exported_model_to_eval, move_exported_model_to_train
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e, prepare_qat_pt2e
from torchao.quantization.pt2e.quantizer import Quantizer

from srcompress.errors import SrcompressError

from .graph import reset_untied

__all__ = ["QATModule", "calibrate", "convert", "export_for_quantization", "freeze_batch_norm", "prepare"]

_BN_TRAIN = (torch.ops.aten._native_batch_norm_legit.default, torch.ops.aten.cudnn_batch_norm.default)


def export_for_quantization(model: nn.Module, example: torch.Tensor) -> torch.fx.GraphModule:
    """``torch.export`` of ``model`` (float, untied, explicit padding) with dynamic N, H, W."""
    if example.shape[0] < 2:
        example = example.expand(2, -1, -1, -1).contiguous()
    dims = {0: torch.export.Dim.DYNAMIC, 2: torch.export.Dim.DYNAMIC, 3: torch.export.Dim.DYNAMIC}
    reset_untied(model)
    try:
        program = torch.export.export(model, (example,), dynamic_shapes=(dims,))
    except Exception as exc:
        first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise SrcompressError(f"torch.export of {type(model).__name__} for quantization failed: {first}") from exc
    finally:
        reset_untied(model)
    return program.module()


def prepare(graph: torch.fx.GraphModule, quantizer: Quantizer, *, qat: bool) -> torch.fx.GraphModule:
    """Insert observers (PTQ) or fake-quant modules (QAT) where ``quantizer`` annotates."""
    try:
        return prepare_qat_pt2e(graph, quantizer) if qat else prepare_pt2e(graph, quantizer)
    except Exception as exc:
        first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise SrcompressError(f"PT2E prepare failed: {type(exc).__name__}: {first}") from exc


@torch.no_grad()
def calibrate(prepared: torch.fx.GraphModule, batches: Iterable[torch.Tensor]) -> int:
    """Run ``batches`` (LR images, (N, 3, H, W) in [0, 1]) through the observers; returns the count."""
    move_exported_model_to_eval(prepared)
    count = 0
    for lr in batches:
        prepared(lr)
        count += 1
    return count


def convert(prepared: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Observers -> quantize/dequantize ops with the calibrated scales (the reference Q/DQ model)."""
    move_exported_model_to_eval(prepared)
    return convert_pt2e(prepared)


def freeze_batch_norm(graph: torch.fx.GraphModule) -> int:
    """Make training-mode batch norms use their running statistics (PT2E has no freeze_bn_stats); returns the count."""
    count = 0
    for node in graph.graph.nodes:
        if node.target in _BN_TRAIN and len(node.args) > 5 and node.args[5] is not False:
            args = list(node.args)
            args[5] = False
            node.args = tuple(args)
            count += 1
    if count:
        graph.recompile()
    return count


class QATModule(nn.Module):
    """A QAT-prepared graph that the training loop can drive: ``train()`` / ``eval()`` switch the
    graph's dropout/batch-norm patterns (exported graphs refuse ``.train()``), and observers and
    batch-norm statistics can be frozen (they stay frozen across mode switches).
    """

    def __init__(self, graph: torch.fx.GraphModule) -> None:
        super().__init__()
        self.graph_module = graph
        self.observers_frozen = False
        self.bn_frozen = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.graph_module(x)

    def train(self, mode: bool = True) -> QATModule:
        self.training = mode
        (move_exported_model_to_train if mode else move_exported_model_to_eval)(self.graph_module)
        if mode and self.bn_frozen:
            freeze_batch_norm(self.graph_module)
        return self

    def freeze_observers(self) -> None:
        self.graph_module.apply(disable_observer)
        self.observers_frozen = True

    def freeze_bn(self) -> None:
        freeze_batch_norm(self.graph_module)
        self.bn_frozen = True
