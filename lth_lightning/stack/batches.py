"""Stacked members that read their own data orders: one batch of every order per step, as each member's batch.

A stacked step feeds every member the same batch, unless members train on different data orders
(the seeds of an experiment, by default: OpenLTH's replicates vary the data order too). Then
:class:`MemberBatches` serves, at each step, one batch of each order, stacked as ``(K, B, ...)``
in member order (member ``k`` reads order ``member_orders[k]``: a seed's ticket and its controls
share its order), and :class:`MemberOrders` is the DataModule of such a fit: the user's, whose
training loader is built once per order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor

from lth_lightning.data.datamodule import shuffle_seed_set_to
from lth_lightning.data.loader import TensorBatches

__all__ = ["MemberBatches", "MemberOrders"]


class _Samplers:
    """Every order's sampler as one, for Lightning's ``set_epoch``."""

    def __init__(self, loaders: Sequence[TensorBatches]) -> None:
        self.loaders = list(loaders)

    def set_epoch(self, epoch: int) -> None:
        for loader in self.loaders:
            loader.sampler.set_epoch(epoch)


class MemberBatches:
    """The training batches of stacked members: each step, member ``k`` gets the batch of order ``member_orders[k]``.

    Args:
        loaders: One training loader per data order, all of the same examples (same lengths and batch sizes).
        member_orders: Each member's order, an index into ``loaders``.

    Raises:
        ValueError: If the loaders differ in length or a member names no loader.
    """

    def __init__(self, loaders: Sequence[TensorBatches], member_orders: Sequence[int]) -> None:
        lengths = sorted({len(loader) for loader in loaders})
        if len(lengths) != 1:
            raise ValueError(f"The data orders' loaders must have one length, got {lengths}.")
        if not member_orders or any(not 0 <= k < len(loaders) for k in member_orders):
            raise ValueError(f"`member_orders` must index the {len(loaders)} loaders, got {list(member_orders)}.")
        self.loaders, self.member_orders = list(loaders), list(member_orders)
        self.sampler = _Samplers(self.loaders)  # Lightning calls its set_epoch every epoch
        self.batch_sampler = None  # read by Lightning's loader introspection, like DataLoader's

    def __len__(self) -> int:
        return len(self.loaders[0])

    def start_at(self, batch: int) -> None:
        """Start every order's next iteration at ``batch`` (:meth:`TensorBatches.start_at`)."""
        for loader in self.loaders:
            loader.start_at(batch)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        same = self.member_orders == list(range(len(self.loaders)))
        index: Tensor | None = None
        for batches in zip(*self.loaders, strict=True):
            x = torch.stack([b[0] for b in batches])
            y = torch.stack([b[1] for b in batches])
            if same:
                yield x, y
                continue
            if index is None:
                index = torch.tensor(self.member_orders, device=x.device)
            yield x.index_select(0, index), y.index_select(0, index)


class MemberOrders(pl.LightningDataModule):
    """A DataModule whose training loader is :class:`MemberBatches` over ``datamodule``'s training data in the
    orders of ``shuffle_seeds``; everything else is ``datamodule``'s (evaluation reads one order for all).

    Args:
        datamodule: A DataModule with an integer ``shuffle_seed`` whose ``train_dataloader`` is a
            :class:`~lth_lightning.data.loader.TensorBatches` (this package's), set back as it was after each build.
        shuffle_seeds: The orders' seeds.
        member_orders: Each member's order, an index into ``shuffle_seeds``.
    """

    def __init__(self, datamodule: pl.LightningDataModule, shuffle_seeds: Sequence[int], member_orders: Sequence[int]):
        super().__init__()
        self.inner, self.shuffle_seeds, self.member_orders = datamodule, list(shuffle_seeds), list(member_orders)

    def prepare_data(self) -> None:
        self.inner.prepare_data()

    def setup(self, stage: str) -> None:
        self.inner.trainer = self.trainer
        self.inner.setup(stage)

    def teardown(self, stage: str) -> None:
        self.inner.teardown(stage)

    def train_dataloader(self) -> MemberBatches:
        loaders = []
        for seed in self.shuffle_seeds:
            with shuffle_seed_set_to(self.inner, seed):
                loaders.append(self.inner.train_dataloader())
        return MemberBatches(loaders, self.member_orders)

    def val_dataloader(self) -> Any:
        return self.inner.val_dataloader()

    def test_dataloader(self) -> Any:
        return self.inner.test_dataloader()
