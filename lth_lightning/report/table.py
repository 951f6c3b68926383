"""The report's numbers: every series of an experiment, round by round, seed by seed, and their summaries.

A *series* is ``<source>.<quantity>``: the source is ``ticket``, a control (``random_reinit``,
``snip:shuffled``, ...) or ``dense`` (the ticket's round 0, compared with any round); the quantity
is one of :data:`QUANTITIES`. Values are in the report's units: an accuracy in percent, an
instability (an error barrier) in points of error, a step as a step. Pure: no files, no Lightning.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lth_lightning.metric_names import MetricNames
from lth_lightning.report.readout import Experiment

__all__ = [
    "DENSE",
    "QUANTITIES",
    "TICKET",
    "ExperimentTable",
    "Summary",
    "apart",
    "build_table",
    "is_percent",
    "last_validation",
    "paired",
    "summarize",
]

# quantity -> (what it is, in the report's words)
QUANTITIES: dict[str, str] = {
    "final": "test metric at the end of training",
    "early": "test metric at the early-stopping step (best monitored value)",
    "early_step": "early-stopping step (optimizer step of the best monitored value)",
    "instability": "instability: the test-error barrier between two copies (points)",
    "instability_train": "instability on the training data (points)",
}
TICKET, DENSE = "ticket", "dense"

SeedValues = dict[int, float]  # seed -> value


@dataclass(frozen=True)
class Summary:
    """Mean, lowest and highest seed of a set of per-seed values."""

    mean: float
    low: float
    high: float
    seeds: int


def summarize(values: Mapping[int, float]) -> Summary | None:
    """The summary of per-seed values, or None when there are none."""
    if not values:
        return None
    numbers = list(values.values())
    return Summary(statistics.fmean(numbers), min(numbers), max(numbers), len(numbers))


def is_percent(names: MetricNames) -> bool:
    """Whether the test metric is an accuracy, shown in percent (its column names ``acc``)."""
    return "acc" in names.test_column


def _column(names: MetricNames, quantity: str) -> str:
    return {
        "final": names.test_column,
        "early": names.at_best_column,
        "early_step": "best_val_step",
        "instability": "instability",
        "instability_train": "instability_train",
    }[quantity]


def _scale(names: MetricNames, quantity: str) -> float:
    if quantity in ("instability", "instability_train"):
        return 100.0
    if quantity in ("final", "early") and is_percent(names):
        return 100.0
    return 1.0


def _value(flat: Mapping[str, Any], source: str, column: str) -> float | None:
    """A series' value in a round's flat row (:meth:`RoundResult.flat`), or None where not measured."""
    value = flat.get(column if source == TICKET else f"{source}_{column}")
    if value is None or isinstance(value, bool):
        return None
    return float(value)


@dataclass(frozen=True)
class ExperimentTable:
    """Every series of one experiment by round and seed, in the report's units.

    Attributes:
        experiment: What it was computed from.
        rounds: The rounds, in order.
        density: Each round's fraction of weights left, per seed.
        controls: The controls, in the order the runs recorded them.
        values: ``values[series][round][seed]``; a series only where measured.
        last_validation: Each round's step of its last validation, per seed (:func:`last_validation`).
    """

    experiment: Experiment
    rounds: list[int]
    density: dict[int, SeedValues]
    controls: list[str]
    values: dict[str, dict[int, SeedValues]]
    last_validation: dict[int, SeedValues]

    def series(self, name: str, round: int) -> SeedValues:
        """A series' values at a round (``dense.*`` reads round 0); empty where not measured."""
        source, _, quantity = name.partition(".")
        if source == DENSE:
            return self.values.get(f"{TICKET}.{quantity}", {}).get(0, {})
        return self.values.get(name, {}).get(round, {})

    def has(self, name: str) -> bool:
        """Whether the series was measured at any round."""
        source, _, quantity = name.partition(".")
        return f"{TICKET if source == DENSE else source}.{quantity}" in self.values

    def gap(self, control: str, round: int) -> SeedValues:
        """The ticket's final test metric minus the control's, paired by seed."""
        return paired(self.series(f"{TICKET}.final", round), self.series(f"{control}.final", round))

    def censored(self, name: str, round: int) -> list[int]:
        """The seeds on which the series' source stopped early at its round's last validation: it was still
        improving when the budget ended, so its early-stopping step and accuracy are bounds, not measurements."""
        source = name.partition(".")[0]
        steps = self.series(f"{source}.early_step", round)
        last = self.last_validation.get(0 if source == DENSE else round, {})
        return [s for s, step in steps.items() if s in last and step >= last[s]]

    def weights(self, round: int) -> float:
        """The round's mean fraction of weights left, in percent."""
        return 100.0 * statistics.fmean(self.density[round].values())


def last_validation(steps: int, interval: Any, offset: int = 0) -> int:
    """The step of a round's last validation, counted as early-stopping steps are.

    An integer interval validates every ``interval`` optimizer steps, so the last validation of ``steps`` steps
    is at the largest multiple of it; any other (a fraction of an epoch, or once an epoch) validates at each
    epoch's end, so the last is at the last step. ``offset`` is where the round's steps start (the rewind
    step of a late-rewinding round after the dense one).
    """
    if isinstance(interval, int) and not isinstance(interval, bool) and interval > 0:
        return offset + steps - steps % interval
    return offset + steps


def _last_validations(experiment: Experiment, rounds: list[int]) -> dict[int, SeedValues]:
    interval = experiment.setting("trainer.val_check_interval")
    rewind = int(experiment.setting("lottery.rewind_step") or 0)
    return {
        r: {
            s: float(last_validation(rows[i].steps, interval, rewind if r > 0 else 0))
            for s, rows in experiment.seeds.items()
        }
        for i, r in enumerate(rounds)
    }


def build_table(experiment: Experiment) -> ExperimentTable:
    """Every series the experiment measured, by round and seed."""
    first = next(iter(experiment.seeds.values()))
    rounds = [row.round for row in first]
    controls = list(dict.fromkeys(c for rows in experiment.seeds.values() for row in rows for c in row.controls))
    density = {r: {seed: rows[i].density for seed, rows in experiment.seeds.items()} for i, r in enumerate(rounds)}
    flats = {seed: [row.flat() for row in rows] for seed, rows in experiment.seeds.items()}  # once per row
    values: dict[str, dict[int, SeedValues]] = {}
    for source in (TICKET, *controls):
        for quantity in QUANTITIES:
            column, scale = _column(experiment.names, quantity), _scale(experiment.names, quantity)
            by_round: dict[int, SeedValues] = {}
            for i, round_ in enumerate(rounds):
                seeds = {s: _value(rows[i], source, column) for s, rows in flats.items()}
                measured = {s: scale * v for s, v in seeds.items() if v is not None}
                if measured:
                    by_round[round_] = measured
            if by_round:
                values[f"{source}.{quantity}"] = by_round
    return ExperimentTable(experiment, rounds, density, controls, values, _last_validations(experiment, rounds))


def paired(a: Mapping[int, float], b: Mapping[int, float], how: str = "difference") -> dict[int, float]:
    """Per-seed ``a - b`` (``difference``) or ``a / b`` (``ratio``), over the seeds both have.

    A ratio over a zero leaves that seed out.
    """
    out: dict[int, float] = {}
    for seed in sorted(set(a) & set(b)):
        if how == "difference":
            out[seed] = a[seed] - b[seed]
        elif how == "ratio":
            if b[seed] != 0:
                out[seed] = a[seed] / b[seed]
        else:
            raise ValueError(f"`how` must be 'difference' or 'ratio', got {how!r}.")
    return out


def apart(a: Summary | None, b: Summary | None) -> bool:
    """Whether two summaries' [min, max] ranges do not overlap."""
    return a is not None and b is not None and (a.low > b.high or b.low > a.high)
