"""The controls that make a ticket a ticket, and the questions asked of it next: one definition each.

A control retrains a round of the ticket under other conditions, with the same recipe: its
masks and initial state are derived from the ticket's round (:class:`TicketRound`).

* ``random_reinit`` (Frankle & Carbin 2019) keeps the ticket's masks and draws a fresh
  initialization with the module's own initializers;
* ``random_prune`` (Frankle & Carbin 2019) keeps the ticket's initialization and draws random
  masks with the ticket's per-tensor counts;
* ``snip``, ``grasp``, ``synflow`` and ``magnitude_init`` prune the *initial* network once, by
  the score of their paper (:mod:`lth_lightning.saliency`), to the round's density: each pruning
  pool of the ticket (its scope and per-layer rates) keeps exactly the ticket's number of weights
  there, from the ticket's initialization (Frankle, Dziugaite, Roy & Carbin 2021, "Pruning Neural
  Networks at Initialization: Why are We Missing the Mark?"). SNIP and GraSP score on the first
  training batch of the run's data; SynFlow reads only its shape.

Each control's draws have their own seed, from the run's seed, the round and the control's place
in :data:`CONTROLS`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from lth_lightning.compat import detached_copy
from lth_lightning.pruning import random_masks
from lth_lightning.saliency import (
    Loss,
    grasp_scores,
    keep_counts,
    magnitude_scores,
    select_by_score,
    snip_scores,
    synflow_masks,
)

__all__ = [
    "CONTROLS",
    "SYNFLOW_ITERATIONS",
    "Control",
    "ControlName",
    "TicketRound",
    "control_masks_and_init",
    "control_seed",
    "first_training_batch",
    "reinitialize",
    "training_loss",
]

# The names `lth fit --lottery.controls` accepts (a Literal, so that --help lists them); the
# tests check that they are the keys of CONTROLS, in order.
ControlName = Literal["random_reinit", "random_prune", "snip", "grasp", "synflow", "magnitude_init"]

Masks = dict[str, Tensor]
State = dict[str, Tensor]

SYNFLOW_ITERATIONS = 100  # Tanaka et al. (2020): 100 rounds of scoring and pruning


@dataclass(frozen=True)
class TicketRound:
    """What a control is made from: one round of the ticket.

    Attributes:
        masks: The masks the ticket trains with in this round, keyed by parameter name.
        init: The ticket's initial state (state-dict names), the state it is rewound to.
        module: The LightningModule (its current weights are not read).
        groups: The ticket's pruning pools (names), as its scope and per-layer rates make them.
        batch: Reads a training batch, for the controls that score with data (called only by them).
    """

    masks: Mapping[str, Tensor]
    init: Mapping[str, Tensor]
    module: nn.Module
    groups: Sequence[Sequence[str]] = ()
    batch: Callable[[], Any] | None = None

    def initial_network(self) -> nn.Module:
        """A copy of the module holding the ticket's initial state."""
        net = detached_copy(self.module)
        net.load_state_dict(dict(self.init))
        return net.train()  # as it trains: the scores see the network its first step sees

    def pools(self, control: str) -> tuple[list[list[str]], list[int]]:
        """The pruning pools and the ticket's number of weights kept in each.

        Raises:
            ValueError: If no pools were given, or they do not cover the masks exactly.
        """
        groups = [list(g) for g in self.groups]
        named = sorted(n for g in groups for n in g)
        if named != sorted(self.masks):
            raise ValueError(
                f"The {control} control needs the ticket's pruning pools covering every masked tensor "
                f"({sorted(self.masks)}); got {groups}."
            )
        return groups, keep_counts(self.masks, groups)

    def first_batch(self, control: str) -> Any:
        """The training batch a control reads.

        Raises:
            ValueError: If no batch was given.
        """
        if self.batch is None:
            raise ValueError(f"The {control} control scores the initial network on a training batch; none was given.")
        return self.batch()

    def loss(self, control: str) -> Loss:
        """The training loss on the first training batch, for a score that reads data.

        Raises:
            ValueError: If no batch was given.
        """
        return training_loss(self.first_batch(control))


@dataclass(frozen=True)
class Control:
    """One control experiment.

    Attributes:
        name: Its name in options, run folders, columns (``<name>_test_acc``) and TensorBoard tags.
        label: Its name in plots and tables.
        make: ``(ticket round, seed) -> (masks, initial state)``.
    """

    name: str
    label: str
    make: Callable[[TicketRound, int], tuple[Masks, State]]


def training_loss(batch: Any) -> Loss:
    """The loss a LightningModule's ``training_step`` returns on ``batch`` (outside any Trainer).

    The closure moves the batch to the module's device and silences the ``self.log`` warnings a
    ``training_step`` gives without a Trainer.

    Raises:
        ValueError: When called on a module with manual optimization, or whose ``training_step`` returns no loss.
    """

    def loss(module: nn.Module) -> Tensor:
        if not getattr(module, "automatic_optimization", True):
            raise ValueError(
                f"{type(module).__name__} optimizes manually: its training_step steps optimizers and returns no "
                "loss to score the initial network with."
            )
        device = next((p.device for p in module.parameters()), torch.device("cpu"))
        moved = _to_device(batch, device)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*self.log.*")
            out = module.training_step(moved, 0)  # type: ignore[operator]
        value = out.get("loss") if isinstance(out, Mapping) else out
        if not isinstance(value, Tensor):
            raise ValueError(
                f"{type(module).__name__}.training_step returned {type(out).__name__}, not a loss tensor "
                "(or a dict with 'loss') to score the initial network with."
            )
        return value

    return loss


def first_training_batch(datamodule: Any) -> Any:
    """The first batch of a LightningDataModule's training data, read outside any fit (prepared and set up first)."""
    datamodule.prepare_data()
    datamodule.setup("fit")
    return next(iter(datamodule.train_dataloader()))


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, Tensor):
        return batch.to(device)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(b, device) for b in batch)
    if isinstance(batch, Mapping):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


def _first_input(batch: Any) -> Tensor:
    while isinstance(batch, (list, tuple)) and batch:
        batch = batch[0]
    if not isinstance(batch, Tensor):
        raise ValueError(f"SynFlow reads the shape of a batch's first tensor; this batch holds {type(batch).__name__}.")
    return batch


def reinitialize(module: nn.Module, seed: int) -> None:
    """Draw fresh weights with every submodule's own initializer (``reset_parameters``), from ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for sub in module.modules():
            reset = getattr(sub, "reset_parameters", None)
            if callable(reset):
                reset()


def _random_reinit(ticket: TicketRound, seed: int) -> tuple[Masks, State]:
    fresh = detached_copy(ticket.module)
    reinitialize(fresh, seed)
    return dict(ticket.masks), {k: v.detach().cpu().clone() for k, v in fresh.state_dict().items()}


def _random_prune(ticket: TicketRound, seed: int) -> tuple[Masks, State]:
    counts: dict[str, int | Tensor] = {k: int(m.sum()) for k, m in ticket.masks.items()}
    ones = {k: torch.ones_like(m) for k, m in ticket.masks.items()}
    return random_masks(ones, counts, generator=torch.Generator().manual_seed(seed)), dict(ticket.init)


Score = Callable[[nn.Module, list[str], TicketRound], dict[str, Tensor]]


def _at_init(name: str, score: Score, lowest: bool = False) -> Callable[[TicketRound, int], tuple[Masks, State]]:
    """A control that prunes the initial network once, keeping the highest (or lowest) scores of each pool."""

    def make(ticket: TicketRound, seed: int) -> tuple[Masks, State]:
        groups, keep = ticket.pools(name)
        net = ticket.initial_network()
        with torch.random.fork_rng(devices=[]):  # a module with random layers draws from the control's seed
            torch.manual_seed(seed)
            scores = score(net, [n for g in groups for n in g], ticket)
        masks = select_by_score(scores, groups, keep, lowest=lowest)
        return {n: masks[n].cpu() for n in ticket.masks}, dict(ticket.init)

    return make


def _snip(net: nn.Module, names: list[str], ticket: TicketRound) -> dict[str, Tensor]:
    return snip_scores(net, names, ticket.loss("snip"))


def _grasp(net: nn.Module, names: list[str], ticket: TicketRound) -> dict[str, Tensor]:
    return grasp_scores(net, names, ticket.loss("grasp"))


def _magnitude(net: nn.Module, names: list[str], ticket: TicketRound) -> dict[str, Tensor]:
    return magnitude_scores(net, names)


def _synflow(ticket: TicketRound, seed: int) -> tuple[Masks, State]:
    groups, keep = ticket.pools("synflow")
    shape = tuple(_first_input(ticket.first_batch("synflow")).shape)  # only the input's shape is read
    masks = synflow_masks(ticket.initial_network(), groups, keep, shape, SYNFLOW_ITERATIONS)
    return {n: masks[n].cpu() for n in ticket.masks}, dict(ticket.init)


CONTROLS: dict[str, Control] = {
    c.name: c
    for c in (
        Control("random_reinit", "random reinit", _random_reinit),
        Control("random_prune", "random pruning", _random_prune),
        Control("snip", "SNIP at init", _at_init("snip", _snip)),
        Control("grasp", "GraSP at init", _at_init("grasp", _grasp, lowest=True)),  # GraSP removes the highest
        Control("synflow", "SynFlow at init", _synflow),
        Control("magnitude_init", "magnitude at init", _at_init("magnitude_init", _magnitude)),
    )
}


def control_seed(seed: int, round: int, name: str) -> int:
    """The seed of a control's draws in ``round`` of the run with ``seed``."""
    return seed * 100_003 + round * 101 + list(CONTROLS).index(name)


def control_masks_and_init(name: str, ticket: TicketRound, seed: int) -> tuple[Masks, State]:
    """The masks and initial state of control ``name`` for the ticket's round ``ticket``.

    Raises:
        ValueError: For an unknown control (the message lists the known ones), or inputs it lacks.
    """
    if name not in CONTROLS:
        raise ValueError(f"Unknown control {name!r}; allowed: {', '.join(CONTROLS)}.")
    return CONTROLS[name].make(ticket, seed)
