"""torchrun support: one process per device, DistributedDataParallel, rank-0 side effects.

``fit`` calls :func:`setup` first. Under ``torchrun --nproc-per-node N`` (``WORLD_SIZE > 1`` in the
environment) it initialises the default process group (NCCL when training on CUDA, gloo on CPU)
unless the caller already did, and pins each process to ``cuda:LOCAL_RANK``. Outside torchrun it is
a no-op. The process group is left open for the next stage and destroyed at exit.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterable
from typing import Any

import torch
import torch.distributed as dist
from attrs import define
from torch import nn

from srcompress.errors import SrcompressError

__all__ = ["DistInfo", "all_gather_objects", "broadcast_object", "broadcast_parameters", "reduce_mean", "setup", "sync_gradients"]


@define(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world`` processes, and its training device."""

    rank: int
    world: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


def setup(device: str | torch.device) -> DistInfo:
    """Initialise distributed training when launched by torchrun; return this process's place."""
    device = torch.device(device)
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1 and not (dist.is_available() and dist.is_initialized()):
        return DistInfo(rank=0, world=1, device=device)
    if not dist.is_available():
        raise SrcompressError("WORLD_SIZE > 1 but this torch build has no torch.distributed; run without torchrun")
    if device.type == "cuda":
        local = _env_int("LOCAL_RANK", 0)
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        atexit.register(_destroy)
    return DistInfo(rank=dist.get_rank(), world=dist.get_world_size(), device=device)


def _destroy() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def reduce_mean(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean over processes of a tensor (a NaN on any rank makes the result NaN on all)."""
    if not info.distributed:
        return values
    values = values.clone()
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values / info.world


def sync_gradients(parameters: Iterable[nn.Parameter], info: DistInfo) -> None:
    """Average the gradients of parameters that DDP does not own (discriminator, hook adapters)."""
    if not info.distributed:
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= info.world
    offset = 0
    for grad in grads:
        grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
        offset += grad.numel()


def broadcast_parameters(module_or_params: nn.Module | Iterable[torch.Tensor], info: DistInfo) -> None:
    """Give every rank rank 0's values (what DDP does for the model at construction)."""
    if not info.distributed:
        return
    tensors = (
        list(module_or_params.state_dict().values()) if isinstance(module_or_params, nn.Module) else list(module_or_params)
    )
    with torch.no_grad():
        for tensor in tensors:
            dist.broadcast(tensor.data if isinstance(tensor, nn.Parameter) else tensor, src=0)


def broadcast_object(value: Any, info: DistInfo) -> Any:
    """Rank 0's ``value`` on every rank."""
    if not info.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_objects(value: Any, info: DistInfo) -> list[Any]:
    """Every rank's ``value``, in rank order."""
    if not info.distributed:
        return [value]
    out: list[Any] = [None] * info.world
    dist.all_gather_object(out, value)
    return out
