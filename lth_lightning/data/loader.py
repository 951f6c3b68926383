"""``TensorBatches``: batches sliced from tensors held in memory, sharded across processes."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor
from torch.utils.data import TensorDataset

__all__ = ["EpochShards", "TensorBatches"]


class EpochShards:
    """The example indices one process visits in one epoch.

    Training (``shuffle=True``): a permutation drawn from ``(seed, epoch)`` (identical on every
    process), of which rank ``r`` takes every ``world_size``-th entry starting at ``r``. Each rank
    gets ``len // world_size`` examples, so all ranks run the same number of steps; the up to
    ``world_size - 1`` examples left over change from epoch to epoch.

    Evaluation (``shuffle=False``): the examples in order, split into contiguous blocks, one per
    rank, so every example is visited exactly once over all ranks (no padding, no duplicates).

    It has ``set_epoch`` like ``DistributedSampler``, which Lightning's loops call every epoch.

    Args:
        length: Number of examples.
        shuffle: Draw a new permutation every epoch (training) or keep the order (evaluation).
        seed: Seed of the permutations.
        rank: This process's rank.
        world_size: Number of processes.
    """

    def __init__(self, length: int, *, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"`rank` must be in [0, world_size={world_size}), got {rank}.")
        self.length, self.shuffle, self.seed = length, shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation of ``epoch``."""
        self.epoch = epoch

    def __len__(self) -> int:
        if self.shuffle:
            return self.length // self.world_size
        start, stop = self._block()
        return stop - start

    def _block(self) -> tuple[int, int]:
        base, extra = divmod(self.length, self.world_size)
        start = self.rank * base + min(self.rank, extra)
        return start, start + base + (1 if self.rank < extra else 0)

    def indices(self, device: torch.device | None = None) -> Tensor:
        """This rank's indices for the current epoch, as a tensor on ``device``."""
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            perm = torch.randperm(self.length, generator=generator)
            shard = perm[self.rank : len(self) * self.world_size : self.world_size]
        else:
            shard = torch.arange(*self._block())
        return shard.to(device) if device is not None else shard


class TensorBatches:
    """An iterable of ``(x, y)`` batches sliced from two tensors, without per-example Python.

    Each epoch draws one index tensor (:class:`EpochShards`) on the tensors' device and serves
    ``x[idx]``, ``y[idx]`` for consecutive slices of it: no ``DataLoader`` workers, no collation,
    no host-device copies when the tensors live on the GPU. It has a length, so Lightning's
    loops and progress bars work, and a ``sampler`` with ``set_epoch`` that Lightning drives.

    Args:
        x: Inputs, first dimension the examples.
        y: Targets, same first dimension.
        batch_size: Examples per batch, >= 1.
        sampler: Which indices this process visits each epoch.
        drop_last: Drop a last batch smaller than ``batch_size``.
    """

    def __init__(self, x: Tensor, y: Tensor, batch_size: int, sampler: EpochShards, drop_last: bool = False) -> None:
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be >= 1, got {batch_size}.")
        if x.shape[0] != y.shape[0] or x.shape[0] != sampler.length:
            raise ValueError(
                f"x, y and sampler disagree on the number of examples: {x.shape[0]}, {y.shape[0]}, {sampler.length}."
            )
        self.x, self.y, self.batch_size, self.sampler, self.drop_last = x, y, batch_size, sampler, drop_last
        self.batch_sampler = None  # read by Lightning's loader introspection, like DataLoader's
        self._start = 0  # the batch the next iteration starts at (then 0 again)

    def start_at(self, batch: int) -> None:
        """Start the next iteration at ``batch`` of its epoch's order (the batches before it are not served), as
        a training continued mid-epoch does (late rewinding, :class:`~lth_lightning.LotteryTicketCallback`).

        Raises:
            ValueError: If ``batch`` is not in ``[0, len(self))``.
        """
        if isinstance(batch, bool) or not isinstance(batch, int) or not 0 <= batch < len(self):
            raise ValueError(f"`batch` must be an integer in [0, {len(self)}), got {batch!r}.")
        self._start = batch

    @property
    def examples(self) -> TensorDataset:
        """Every example of the tensors as ``(x[i], y[i])`` items, as a DataLoader's ``dataset`` holds them (not
        named ``dataset``: Lightning would take this for a ``DataLoader`` it may rebuild)."""
        return TensorDataset(self.x, self.y)

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        start, self._start = self._start, 0
        idx = self.sampler.indices(self.x.device)
        for i in range(start, len(self)):
            batch = idx[i * self.batch_size : (i + 1) * self.batch_size]
            yield self.x.index_select(0, batch), self.y.index_select(0, batch)
