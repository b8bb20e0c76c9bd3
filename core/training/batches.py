"""Training batches that can restart at any step: a seeded, rank-aware sampler over patch indices.

Epoch ``e`` visits the training patches in the order ``randperm(n, seed + e)``; global batch ``i``
of the epoch is the slice ``[i*B, (i+1)*B)`` of it (``B`` = global batch, the last partial batch is
dropped), and rank ``r`` of ``W`` processes takes the ``r``-th of ``W`` equal parts of that slice.
So the global batches do not depend on the number of processes, and the position in the data is a
pure function of the step: resuming at step ``k`` restarts epoch ``k // steps_per_epoch`` at batch
``k % steps_per_epoch`` without reading the skipped patches. Patches themselves (crop, flips) are a
deterministic function of (seed, epoch, index) in :class:`srcompress.data.PatchDataset`, so
DataLoader workers and their number do not change a batch either.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from srcompress.errors import DataError

__all__ = ["BatchStream", "StepSampler"]


class StepSampler(Sampler[tuple[int, int]]):
    """Endless ``(epoch, index)`` pairs: one rank's share of the global batches, from a given step on."""

    def __init__(self, length: int, global_batch: int, rank: int, world: int, seed: int) -> None:
        if global_batch % world:
            raise DataError(f"data.batch ({global_batch}) must be a multiple of the number of processes ({world})")
        if length < global_batch:
            raise DataError(f"the training set has {length} patches per epoch, fewer than data.batch ({global_batch}); "
                            "lower data.batch or add training images")
        self.length, self.global_batch, self.rank, self.world, self.seed = length, global_batch, rank, world, seed
        self.per_rank = global_batch // world
        self.steps_per_epoch = length // global_batch
        self.start_step = 0

    def order(self, epoch: int) -> torch.Tensor:
        """The permutation of patch indices visited in ``epoch``."""
        generator = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(self.length, generator=generator)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, batch = divmod(self.start_step, self.steps_per_epoch)
        while True:
            order = self.order(epoch)
            for b in range(batch, self.steps_per_epoch):
                first = b * self.global_batch + self.rank * self.per_rank
                for index in order[first : first + self.per_rank].tolist():
                    yield epoch, index
            epoch, batch = epoch + 1, 0


class _EpochItems(Dataset[Any]):
    """``dataset[(epoch, i)]`` = ``dataset[i]`` after ``set_epoch(epoch)``: one loader for every epoch.

    Setting the epoch per item (inside the worker that fetches it) keeps DataLoader workers alive
    across epochs; it is exact because a patch depends on (seed, epoch, i) only.
    """

    def __init__(self, dataset: Dataset[Any]) -> None:
        self.dataset = dataset

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        set_epoch = getattr(self.dataset, "set_epoch", None)
        if set_epoch is not None:
            set_epoch(epoch)
        return self.dataset[index]


class BatchStream:
    """An endless stream of (lr, hr) batches for one rank, starting at any global step.

    :param dataset: a map-style dataset of (lr, hr) pairs, with ``set_epoch(e)`` if its items
        change with the epoch (as :class:`srcompress.data.PatchDataset`).
    """

    def __init__(
        self, dataset: Dataset[Any], *, global_batch: int, rank: int, world: int, seed: int, workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        self.dataset = dataset
        self.sampler = StepSampler(len(dataset), global_batch, rank, world, seed)  # type: ignore[arg-type]
        self.workers = workers
        self.pin_memory = pin_memory

    @property
    def steps_per_epoch(self) -> int:
        return self.sampler.steps_per_epoch

    def position(self, step: int) -> tuple[int, int]:
        """(epoch, batch within the epoch) of global step ``step`` (0-based)."""
        return divmod(step, self.steps_per_epoch)

    def iterate(self, start_step: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches of steps ``start_step, start_step + 1, ...`` (this rank's share, never ending)."""
        self.sampler.start_step = start_step
        loader = DataLoader(
            _EpochItems(self.dataset), batch_size=self.sampler.per_rank, sampler=self.sampler,
            num_workers=self.workers, pin_memory=self.pin_memory, persistent_workers=False,
        )
        for lr, hr in loader:
            yield lr, hr
