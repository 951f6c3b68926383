"""``TicketRound`` and ``Control``: what a control is made from, and what a control is.

A control retrains a round of the ticket under other conditions, with the same recipe: its masks
and initial state are derived from the ticket's round, :class:`TicketRound`. The registry of
controls is :mod:`.registry`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from torch import Tensor, nn

from lth_lightning.compat import detached_copy
from lth_lightning.experiment.controls.scoring_batch import ScoringBatch
from lth_lightning.pruning.saliency import GRASP_TEMPERATURE

__all__ = ["Control", "Masks", "State", "TicketRound"]

Masks = dict[str, Tensor]
State = dict[str, Tensor]


@dataclass(frozen=True)
class TicketRound:
    """What a control is made from: one round of the ticket.

    Attributes:
        masks: The masks the ticket trains with in this round, keyed by parameter name (the order
            ranks ties: earlier tensors survive first).
        init: The ticket's initial state (state-dict names), the state it is rewound to.
        module: The LightningModule (its current weights are not read).
        scoring: Reads the batch the scores of pruning at initialization see (called only by the
            controls that read data; :func:`~.scoring_batch.draw_scoring_batch`).
        temperature: GraSP's temperature: the logits are divided by it before the cross-entropy.
    """

    masks: Mapping[str, Tensor]
    init: Mapping[str, Tensor]
    module: nn.Module
    scoring: Callable[[], ScoringBatch] | None = None
    temperature: float = GRASP_TEMPERATURE

    def initial_network(self) -> nn.Module:
        """A copy of the module holding the ticket's initial state."""
        net = detached_copy(self.module)
        net.load_state_dict(dict(self.init))
        return net.train()  # as it trains: the scores see the network its first step sees

    @property
    def counts(self) -> dict[str, int]:
        """The number of weights the ticket keeps in each tensor."""
        return {n: int(m.sum()) for n, m in self.masks.items()}

    def scoring_batch(self, control: str) -> ScoringBatch:
        """The batch a control that reads data scores.

        Raises:
            ValueError: If no batch was given.
        """
        if self.scoring is None:
            raise ValueError(f"The {control} control scores the initial network on a training batch; none was given.")
        return self.scoring()


@dataclass(frozen=True)
class Control:
    """One control experiment.

    Attributes:
        name: Its name in options, run folders, columns (``<name>_test_acc``) and TensorBoard tags.
        label: Its name in plots and tables.
        make: ``(ticket round, seed) -> (masks, initial state)``.
        protocol: The version of its protocol: raised when what it computes changes, so that an experiment
            recorded with the old one is not read back as the new one (part of the experiment's identity).
    """

    name: str
    label: str
    make: Callable[[TicketRound, int], tuple[Masks, State]]
    protocol: int = 1
