"""``RunContext``: one run of an experiment (a seed): its module, data, callback and folder."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, TypeVar

import torch
from torch import Tensor

from lth_lightning.experiment.controls.registry import TicketRound, control_masks_and_init, control_seed
from lth_lightning.experiment.controls.scoring_batch import ScoringBatch, draw_scoring_batch
from lth_lightning.experiment.spec import ExperimentSpec

if TYPE_CHECKING:
    import lightning.pytorch as pl

    from lth_lightning.callbacks.lottery_ticket import LotteryTicketCallback
    from lth_lightning.experiment.record.store import RunStore

__all__ = ["RunContext"]

T = TypeVar("T")


@dataclass(frozen=True)
class RunContext:
    """One run of an experiment: its seed, module, data, callback and folder.

    Attributes:
        spec: The experiment.
        seed: The run's seed.
        model: The LightningModule; its weights when the run starts are round 0's.
        datamodule: The data.
        lottery: The callback carried across the run's rounds.
        store: The run's folder: what it has recorded, and what it records.
    """

    spec: ExperimentSpec
    seed: int
    model: pl.LightningModule
    datamodule: pl.LightningDataModule
    lottery: LotteryTicketCallback
    store: RunStore

    def control(
        self, name: str, r: int, masks: Mapping[str, Tensor], init: Mapping[str, Tensor] | None
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Control ``name``'s masks and initial state in round ``r``, where the ticket trains ``masks`` from ``init``.

        Computed on every process from the same inputs; under DDP the first process's result is
        the one every process takes (a data-reading score may see another shard of the data on each).

        Raises:
            RuntimeError: If the ticket has no initial state yet.
            ValueError: For an unknown control, or one that cannot score this module.
        """
        if init is None:
            raise RuntimeError("The lottery callback has no snapshot yet: run a round first.")
        ticket = TicketRound(masks, init, self.model, lambda: self.scoring, self.spec.grasp_temperature)
        return _same_on_every_process(control_masks_and_init(name, ticket, control_seed(self.seed, r, name)))

    @cached_property
    def scoring(self) -> ScoringBatch:
        """The batch the run's pruning at initialization scores: drawn once, from the run's seed, and recorded."""
        drawn = draw_scoring_batch(self.model, self.datamodule, self.spec.scoring_per_class, self.seed)
        self.store.save_scoring_batch(drawn.cpu_batch(), drawn.describe(self.seed))
        return drawn


def _same_on_every_process(value: T) -> T:
    """The first process's ``value`` on every process of a running process group (``value`` itself otherwise)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return value
    if torch.distributed.get_world_size() == 1:
        return value
    box = [value]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]
