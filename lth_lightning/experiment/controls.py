"""The controls that make a ticket a ticket (Frankle & Carbin 2019), one definition each.

A control retrains a round of the ticket under other conditions, with the same recipe: its
masks and initial state are derived from the ticket's round. ``random_reinit`` keeps the
ticket's masks and draws a fresh initialization with the module's own initializers;
``random_prune`` keeps the ticket's initialization and draws random masks with the ticket's
per-tensor counts. Each control's draws have their own seed, from the run's seed, the round and
the control's place in :data:`CONTROLS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from lth_lightning.compat import detached_copy
from lth_lightning.pruning import random_masks

__all__ = ["CONTROLS", "Control", "ControlName", "control_masks_and_init", "control_seed", "reinitialize"]

# The names `lth fit --lottery.controls` accepts (a Literal, so that --help lists them); the
# tests check that they are the keys of CONTROLS, in order.
ControlName = Literal["random_reinit", "random_prune"]

Masks = dict[str, Tensor]
State = dict[str, Tensor]


@dataclass(frozen=True)
class Control:
    """One control experiment.

    Attributes:
        name: Its name in options, run folders, columns (``<name>_test_acc``) and TensorBoard tags.
        label: Its name in plots and tables.
        make: ``(ticket masks, ticket initial state, module, seed) -> (masks, initial state)``.
    """

    name: str
    label: str
    make: Callable[[Mapping[str, Tensor], Mapping[str, Tensor], nn.Module, int], tuple[Masks, State]]


def reinitialize(module: nn.Module, seed: int) -> None:
    """Draw fresh weights with every submodule's own initializer (``reset_parameters``), from ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for sub in module.modules():
            reset = getattr(sub, "reset_parameters", None)
            if callable(reset):
                reset()


def _random_reinit(
    masks: Mapping[str, Tensor], init: Mapping[str, Tensor], module: nn.Module, seed: int
) -> tuple[Masks, State]:
    fresh = detached_copy(module)
    reinitialize(fresh, seed)
    return dict(masks), {k: v.detach().cpu().clone() for k, v in fresh.state_dict().items()}


def _random_prune(
    masks: Mapping[str, Tensor], init: Mapping[str, Tensor], module: nn.Module, seed: int
) -> tuple[Masks, State]:
    counts: dict[str, int | Tensor] = {k: int(m.sum()) for k, m in masks.items()}
    ones = {k: torch.ones_like(m) for k, m in masks.items()}
    return random_masks(ones, counts, generator=torch.Generator().manual_seed(seed)), dict(init)


CONTROLS: dict[str, Control] = {
    c.name: c
    for c in (
        Control("random_reinit", "random reinit", _random_reinit),
        Control("random_prune", "random pruning", _random_prune),
    )
}


def control_seed(seed: int, round: int, name: str) -> int:
    """The seed of a control's draws in ``round`` of the run with ``seed``."""
    return seed * 100_003 + round * 101 + list(CONTROLS).index(name)


def control_masks_and_init(
    name: str, masks: Mapping[str, Tensor], init: Mapping[str, Tensor] | None, module: nn.Module, seed: int
) -> tuple[Masks, State]:
    """The masks and initial state of control ``name`` for a round the ticket trained with ``masks`` from ``init``.

    Raises:
        ValueError: For an unknown control (the message lists the known ones).
        RuntimeError: If the ticket has no initial state yet.
    """
    if name not in CONTROLS:
        raise ValueError(f"Unknown control {name!r}; allowed: {', '.join(CONTROLS)}.")
    if init is None:
        raise RuntimeError("The lottery callback has no snapshot yet: run a round first.")
    return CONTROLS[name].make(masks, init, module, seed)
