"""Pruning at initialization as published, Frankle et al. 2021's ablations of it and one of ours, as controls.

Each method prunes the ticket's *initial* network once, by the score of its paper
(:mod:`lth_lightning.pruning.saliency`), keeping the ticket's total number of weights in one ranking over
every pruned tensor, as the methods are published:

* ``snip`` (Lee et al. 2019): the highest ``|g * w|``, ``g`` the gradient of the cross-entropy;
* ``grasp`` (Wang et al. 2020): the lowest ``-w * Hg`` of the cross-entropy of the logits divided
  by the temperature (200);
* ``synflow`` (Tanaka et al. 2020): 100 data-free iterations;
* ``magnitude_init``: the highest ``|w|`` at initialization.

SNIP and GraSP read the run's scoring batch (:mod:`.scoring_batch`). Frankle, Dziugaite, Roy & Carbin
2021 ("Pruning Neural Networks at Initialization: Why are We Missing the Mark?") ask what of each
method's masks matters with three ablations; each is a control of its own (``<method>:<ablation>``):

* ``shuffled`` (the paper's): the method's count in each tensor, its positions drawn at random within the tensor;
* ``reinit`` (the paper's): the method's masks, trained from a fresh initialization;
* ``inverted`` (the paper's): the method's ranking reversed (the weights it would prune first are kept);
* ``layerwise`` (ours, not the paper's): the method's ranking within each tensor, at the ticket's count in that
  tensor: how much of the method is its choice of per-layer densities.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from lth_lightning.compat import detached_copy
from lth_lightning.experiment.controls.control import Control, Masks, State, TicketRound
from lth_lightning.pruning.magnitude import random_masks
from lth_lightning.pruning.saliency import grasp_scores, magnitude_scores, select_by_score, snip_scores, synflow_masks

__all__ = ["ABLATIONS", "METHODS", "SYNFLOW_ITERATIONS", "at_init_controls", "method_masks", "reinitialized"]

SYNFLOW_ITERATIONS = 100  # Tanaka et al. (2020): 100 rounds of scoring and pruning
ABLATIONS = ("layerwise", "shuffled", "reinit", "inverted")

Score = Callable[[nn.Module, list[str], TicketRound], dict[str, Tensor]]


def _snip(net: nn.Module, names: list[str], ticket: TicketRound) -> dict[str, Tensor]:
    return snip_scores(net, names, ticket.scoring_batch("snip").loss())


def _grasp(net: nn.Module, names: list[str], ticket: TicketRound) -> dict[str, Tensor]:
    return grasp_scores(net, names, ticket.scoring_batch("grasp").loss(ticket.temperature))


def _magnitude(net: nn.Module, names: list[str], ticket: TicketRound) -> dict[str, Tensor]:
    return magnitude_scores(net, names)


# name -> (label, score (None: SynFlow's iterations), whether the method keeps the lowest scores)
METHODS: dict[str, tuple[str, Score | None, bool]] = {
    "snip": ("SNIP at init", _snip, False),
    "grasp": ("GraSP at init", _grasp, True),  # GraSP removes the highest -w * Hg
    "synflow": ("SynFlow at init", None, False),
    "magnitude_init": ("magnitude at init", _magnitude, False),
}


def _first_input(batch: object) -> Tensor:
    while isinstance(batch, (list, tuple)) and batch:
        batch = batch[0]
    if not isinstance(batch, Tensor):
        raise ValueError(f"SynFlow reads the shape of a batch's first tensor; this batch holds {type(batch).__name__}.")
    return batch


def method_masks(
    method: str, ticket: TicketRound, seed: int, groups: Sequence[Sequence[str]], keep: Sequence[int], invert: bool
) -> Masks:
    """``method``'s masks of the ticket's initial network, keeping ``keep[i]`` weights of pool ``groups[i]``.

    ``invert`` keeps the scores the method would prune first. Random layers of the module draw from ``seed``.
    """
    _, score, lowest = METHODS[method]
    net = ticket.initial_network()
    if score is None:  # SynFlow: only the input's shape is read
        shape = tuple(_first_input(ticket.scoring_batch(method).batch).shape)
        masks = synflow_masks(net, groups, keep, shape, SYNFLOW_ITERATIONS, lowest=invert)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            scores = score(net, [n for g in groups for n in g], ticket)
        masks = select_by_score(scores, groups, keep, lowest=lowest != invert)
    return {n: masks[n].cpu() for n in ticket.masks}


def reinitialized(module: nn.Module, seed: int) -> State:
    """A fresh initial state of ``module`` (every submodule's ``reset_parameters``), drawn from ``seed``."""
    fresh = detached_copy(module)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for sub in fresh.modules():
            reset = getattr(sub, "reset_parameters", None)
            if callable(reset):
                reset()
    return {k: v.detach().cpu().clone() for k, v in fresh.state_dict().items()}


def _published(method: str) -> Callable[[TicketRound, int], tuple[Masks, State]]:
    def make(ticket: TicketRound, seed: int) -> tuple[Masks, State]:
        names = list(ticket.masks)
        total = sum(ticket.counts.values())
        return method_masks(method, ticket, seed, [names], [total], invert=False), dict(ticket.init)

    return make


def _ablation(method: str, ablation: str) -> Callable[[TicketRound, int], tuple[Masks, State]]:
    def make(ticket: TicketRound, seed: int) -> tuple[Masks, State]:
        names, counts = list(ticket.masks), ticket.counts
        if ablation == "layerwise":
            masks = method_masks(method, ticket, seed, [[n] for n in names], [counts[n] for n in names], False)
            return masks, dict(ticket.init)
        masks = method_masks(method, ticket, seed, [names], [sum(counts.values())], invert=ablation == "inverted")
        if ablation == "shuffled":
            own = {n: int(m.sum()) for n, m in masks.items()}
            ones = {n: torch.ones_like(m) for n, m in masks.items()}
            return random_masks(ones, own, generator=torch.Generator().manual_seed(seed)), dict(ticket.init)
        if ablation == "reinit":
            return masks, reinitialized(ticket.module, seed)
        return masks, dict(ticket.init)

    return make


_ABLATION_LABELS = {
    "layerwise": "ranked within each tensor",
    "shuffled": "shuffled within each tensor",
    "reinit": "reinitialized",
    "inverted": "inverted",
}


def at_init_controls() -> tuple[list[Control], list[Control]]:
    """The published methods (protocol 2: one global ranking, the papers' scoring batch and temperature), and
    every method's four ablations."""
    published = [Control(m, label, _published(m), protocol=2) for m, (label, _, _) in METHODS.items()]
    ablations = [
        Control(f"{m}:{a}", f"{label}, {_ABLATION_LABELS[a]}", _ablation(m, a))
        for m, (label, _, _) in METHODS.items()
        for a in ABLATIONS
    ]
    return published, ablations
