"""``LotterySettings``: the options of :class:`~lth_lightning.callbacks.lottery_ticket.LotteryTicketCallback`,
each declared once (:mod:`lth_lightning.options`): its type, default, help, check and whether it changes results.

The callback's constructor takes them (its signature is checked against these declarations), ``lth fit``
offers them as ``--lottery.*`` (``verbose`` aside: ``lth fit`` always reports), and an experiment's identity
leaves out those that cannot change results.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from lth_lightning.callbacks.snapshot import SnapshotDevice
from lth_lightning.options import EntryPoint, Option, at_least, fraction, option, options_of

__all__ = ["CALLBACK_OPTIONS", "LotterySettings", "Retrain", "Scope", "Setting", "settings_added_later"]

Scope = Literal["global", "layerwise"]
Retrain = Literal["rewind", "lr_rewind", "finetune"]
_CALLBACK: tuple[EntryPoint, ...] = ("lth fit", "LotteryTicketCallback")


def _names(value: Any) -> bool:
    """None, or a non-empty list of names (not one string)."""
    if value is None:
        return True
    return not isinstance(value, str) and bool(value) and all(isinstance(p, str) for p in value)


def _rates(value: Any) -> bool:
    """None, or a mapping of names to fractions."""
    return value is None or (isinstance(value, Mapping) and all(fraction(rate) for rate in value.values()))


@dataclass(frozen=True)
class LotterySettings:
    """The callback's options, checked when made (a ValueError names the option, the value and what is allowed)."""

    amount: float = option(
        0.2,
        "Fraction of the alive prunable weights removed per round, in (0, 1). The density after ``r`` rounds is "
        "``(1 - amount) ** r`` to the rounding of one weight.",
        allowed="a float in the open interval (0, 1)",
        valid=fraction,
        entry_points=_CALLBACK,
    )
    scope: Scope = option(
        "global",
        "``global`` ranks all prunable weights together (smallest magnitudes go first, whatever the layer); "
        "``layerwise`` prunes each tensor by ``amount``.",
        entry_points=_CALLBACK,
    )
    parameters: Sequence[str] | None = option(
        None,
        "Names or glob patterns (``net.layers.*.weight``) of the parameters to prune, any name of a shared "
        "parameter, or ``<layer>.weight`` of a re-parametrized layer; by default every linear map (the ``weight`` "
        "of every ``nn.Linear``, ``nn.ConvNd``, ``nn.ConvTransposeNd`` and Hugging Face ``Conv1D``, and "
        "``nn.MultiheadAttention``'s packed ``in_proj_weight``); biases, normalisation layers, embeddings (unless "
        "tied to a pruned head) and RNN weights are not pruned by default: the first fit lists them, with the "
        "``parameters=`` line that adds them.",
        allowed="None or a non-empty list of names or glob patterns",
        valid=_names,
        entry_points=_CALLBACK,
    )
    rates: Mapping[str, float] | None = option(
        None,
        "Per-parameter pruning rates overriding ``amount``, keyed by name or glob pattern, each in (0, 1); such a "
        "tensor is pruned on its own at its rate, e.g. ``{net.layers.3.weight: 0.1}`` for the paper's half-rate "
        "output layer.",
        allowed="None or a mapping of names or glob patterns to floats in the open interval (0, 1)",
        valid=_rates,
        entry_points=_CALLBACK,
    )
    rewind_step: int = option(
        0,
        "Optimizer step of the first round whose weights are rewound to; 0 is the initialisation. Must be >= 0 "
        "and below the training's last step; above 0, rounds train from that step on (one optimizer step per "
        "batch).",
        allowed="an integer >= 0",
        valid=at_least(0),
        entry_points=_CALLBACK,
    )
    snapshot_device: SnapshotDevice = option(
        "cpu",
        "Where the rewind snapshot is kept (once, in the parameters' dtypes): ``cpu`` (pinned memory when the "
        "module is on a GPU, so device memory holds only what training needs) or ``module`` (the module's device: "
        "a faster rewind, at the cost of one more copy of the state there). It does not change results.",
        entry_points=_CALLBACK,
        identity=False,
    )
    verbose: bool = option(
        True,
        "Print what is pruned at the first fit and a line per round, on rank zero.",
        entry_points=("LotteryTicketCallback",),
        identity=False,
    )
    retrain: Retrain = option(
        "rewind",
        "How every round after the dense one retrains the pruned network (Renda, Frankle & Carbin 2020), always "
        "for the same number of steps: ``rewind`` loads the snapshot (the lottery ticket); ``lr_rewind`` keeps the "
        "trained weights (pruned ones zeroed) and retrains with the whole learning-rate schedule from its start "
        "(what a fresh ``configure_optimizers`` gives every fit); ``finetune`` keeps the trained weights and "
        "retrains at the learning rates of the dense round's last step (the schedule's final ones), whatever the "
        "schedule says. Controls always start from their own initial state.",
        entry_points=_CALLBACK,
        before="rewind",
    )

    def __post_init__(self) -> None:
        for declaration in CALLBACK_OPTIONS:
            declaration.check(getattr(self, declaration.name))
        object.__setattr__(self, "amount", float(self.amount))  # plain values from here on
        object.__setattr__(self, "parameters", None if self.parameters is None else list(self.parameters))
        object.__setattr__(self, "rates", {k: float(v) for k, v in (self.rates or {}).items()})

    def defining(self) -> dict[str, Any]:
        """The settings that change results (the experiment's), as plain values: compared when a state loads."""
        values = {o.name: getattr(self, o.name) for o in CALLBACK_OPTIONS if o.identity}
        return {
            **values,
            "parameters": None if self.parameters is None else list(self.parameters),
            "rates": dict(self.rates or {}),
        }


class Setting:
    """A read-only attribute of an object with ``settings`` (a :class:`LotterySettings`): its option's value there."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        return self if instance is None else getattr(instance.settings, self.name)


CALLBACK_OPTIONS: tuple[Option, ...] = options_of(LotterySettings)


def settings_added_later() -> dict[str, Any]:
    """The settings added after states were saved, each at the value that behaves as before it existed."""
    return {o.name: o.before for o in CALLBACK_OPTIONS if o.added_later}
