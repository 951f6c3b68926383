"""The controls that make a ticket a ticket, and the questions asked of it next: one registry.

A control retrains a round of the ticket under other conditions, with the same recipe: its
masks and initial state are derived from the ticket's round (:class:`~.control.TicketRound`).

* ``random_reinit`` (Frankle & Carbin 2019) keeps the ticket's masks and draws a fresh
  initialization with the module's own initializers;
* ``random_prune`` (Frankle & Carbin 2019) keeps the ticket's initialization and draws random
  masks with the ticket's per-tensor counts (OpenLTH's ``layerwise`` random strategy: the ticket's
  mask shuffled within each tensor); ``random_prune:global`` draws them at one density in every
  tensor, each keeping ``round(density * size)`` weights, ``density`` the ticket's: OpenLTH's
  ``even`` strategy and Frankle et al. 2021's random pruning, despite its name *not* OpenLTH's
  ``global`` strategy (which shuffles the ticket's mask over all tensors at once);
* ``snip``, ``grasp``, ``synflow``, ``magnitude_init`` and their ablations ``<method>:shuffled``,
  ``:reinit``, ``:inverted`` (Frankle et al. 2021's) and ``:layerwise`` (ours): pruning at
  initialization as published, and the questions asked of it (:mod:`.at_init`).

Each control's draws have their own seed, from the run's seed, the round and the control's place
in :data:`CONTROLS` (controls added later come last, so that earlier ones keep their seeds).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch

from lth_lightning.experiment.controls.at_init import at_init_controls, reinitialized
from lth_lightning.experiment.controls.control import Control, Masks, State, TicketRound
from lth_lightning.pruning.magnitude import random_masks

__all__ = ["CONTROLS", "Control", "ControlName", "TicketRound", "control_masks_and_init", "control_seed"]


def _random_reinit(ticket: TicketRound, seed: int) -> tuple[Masks, State]:
    return dict(ticket.masks), reinitialized(ticket.module, seed)


def _random_prune(ticket: TicketRound, seed: int) -> tuple[Masks, State]:
    ones = {k: torch.ones_like(m) for k, m in ticket.masks.items()}
    counts: dict[str, int | torch.Tensor] = dict(ticket.counts)
    return random_masks(ones, counts, generator=torch.Generator().manual_seed(seed)), dict(ticket.init)


def _random_prune_global(ticket: TicketRound, seed: int) -> tuple[Masks, State]:
    density = sum(ticket.counts.values()) / sum(m.numel() for m in ticket.masks.values())
    ones = {k: torch.ones_like(m) for k, m in ticket.masks.items()}
    counts: dict[str, int | torch.Tensor] = {k: round(density * m.numel()) for k, m in ticket.masks.items()}
    return random_masks(ones, counts, generator=torch.Generator().manual_seed(seed)), dict(ticket.init)


def _registry() -> dict[str, Control]:
    published, ablations = at_init_controls()
    controls = [
        Control("random_reinit", "random reinit", _random_reinit),
        Control("random_prune", "random pruning", _random_prune),
        *published,
        Control("random_prune:global", "random pruning, one density", _random_prune_global),
        *ablations,
    ]
    return {c.name: c for c in controls}


CONTROLS: dict[str, Control] = _registry()

# The names `lth fit --lottery.controls` accepts: the registry's, as a Literal (so that --help lists them and
# jsonargparse refuses any other, naming the nearest); type checkers see a str.
if TYPE_CHECKING:
    ControlName = str
else:
    ControlName = Literal[tuple(CONTROLS)]


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
