"""A round's instability (Frankle, Dziugaite, Roy & Carbin 2020): a second copy of the ticket trained from the same
point under another data order, and the error along the straight line between the two copies' weights, on the
test set (``instability``) and on the training data (``instability_train``), as the paper reports both.

The ticket's own training is the first copy. The second starts from the same rewind point with the
same masks, trained with the same recipe one network at a time (stacked members all see the same
batches); its data order comes from the DataModule's ``shuffle_seed`` where it has one and from
torch's global random state (what a ``DataLoader(shuffle=True)`` draws its order from), both set
from the copy's own seed. Its columns are kept as a control's are (``control_instability.json``),
so a rerun never trains it again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal

import lightning.pytorch as pl
import torch
from torch import Tensor

from lth_lightning.callbacks.driving import fork
from lth_lightning.compat import detached_copy
from lth_lightning.data.datamodule import shuffle_seed_set_to
from lth_lightning.experiment.record.paths import round_label
from lth_lightning.experiment.record.round_result import RoundResult
from lth_lightning.experiment.rounds.context import RunContext
from lth_lightning.experiment.spec import ExperimentSpec
from lth_lightning.experiment.training.measurement import (
    Measurement,
    control_columns,
    tested,
    tested_on_training_data,
    trial_weights,
)
from lth_lightning.metric_names import MetricNames
from lth_lightning.pruning.stability import error_barrier, interpolate, path_alphas

if TYPE_CHECKING:
    from lth_lightning.callbacks.lottery_ticket import LotteryTicketCallback

__all__ = [
    "INSTABILITY",
    "TRAIN_INSTABILITY",
    "TrainsAlone",
    "add_instability",
    "check_instability",
    "control_instability",
    "measure_instability",
    "other_data_order",
    "path_errors",
]

TRAIN_INSTABILITY = "instability_train"  # the error barrier on the training data
INSTABILITY = "instability"  # the copy's name in the run folder and TensorBoard (round_NN_instability)
Split = Literal["test", "train"]


# Trains one network (its label, the module, its callback) and tests it: what it measured, and the Trainer.
TrainsAlone = Callable[[str, pl.LightningModule, "LotteryTicketCallback"], tuple[Measurement, pl.Trainer]]


def check_instability(spec: ExperimentSpec, lottery: LotteryTicketCallback) -> None:
    """Refuse an instability measurement the experiment's retraining cannot give.

    Raises:
        ValueError: If the rounds are not rewound (both copies must start from the rewind point).
    """
    if spec.instability and lottery.retrain != "rewind":
        raise ValueError(
            f"`instability` trains two copies from the rewind point; retrain={lottery.retrain!r} does not rewind. "
            "Measure it with retrain='rewind'."
        )


def instability_seed(seed: int, round: int) -> int:
    """The seed of the second copy's data order in ``round`` of the run with ``seed``."""
    return seed * 100_003 + round * 101 + 53


@contextmanager
def other_data_order(datamodule: pl.LightningDataModule, seed: int) -> Iterator[None]:
    """Train under another data order, from ``seed``; the DataModule and torch's random state are restored after."""
    had = getattr(datamodule, "shuffle_seed", None)
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        if not isinstance(had, int):
            yield
            return
        with shuffle_seed_set_to(datamodule, seed if seed != had else seed + 1):
            yield


def path_errors(
    trainer: pl.Trainer,
    model: pl.LightningModule,
    other: Mapping[str, Tensor],
    datamodule: pl.LightningDataModule,
    names: MetricNames,
    split: Split = "test",
) -> list[float]:
    """The error (1 - the test metric) at each point of the line from ``other`` to ``model``'s weights, on the test
    set or (``split="train"``) on the training data, as Frankle et al. 2020 report both.

    ``model`` holds its own weights again afterwards; nothing is logged.

    Raises:
        ValueError: If the test metric is not an accuracy (a number in [0, 1]).
    """
    evaluate = tested if split == "test" else tested_on_training_data
    errors: list[float] = []
    with trial_weights(trainer, model) as final:
        for alpha in path_alphas():
            model.load_state_dict(interpolate(other, final, alpha))
            value = evaluate(trainer, model, datamodule, names)[names.test_column]
            if not 0.0 <= value <= 1.0:
                raise ValueError(
                    f"`instability` reads the test metric as an accuracy (error = 1 - it); {names.test} was {value}, "
                    "outside [0, 1]. Log an accuracy as the test metric."
                )
            errors.append(1.0 - value)
    return errors


def measure_instability(
    run: RunContext,
    r: int,
    masks: Mapping[str, Tensor],
    start: Mapping[str, Tensor] | None,
    trained: Mapping[str, Tensor],
    alone: TrainsAlone,
) -> dict[str, Any]:
    """Round ``r``'s instability columns (read back when finished before): its second copy's test columns,
    ``instability`` (the error barrier) and ``path_errors``.

    Args:
        run: The run.
        r: The round.
        masks: The masks the ticket trained with.
        start: The state it trained from (the rewind point).
        trained: The ticket's trained state: the first copy.
        alone: Trains the second copy, one network at a time (the sequential executor's, for this run).
    """
    done = run.store.finished_control(r, INSTABILITY)
    if done is not None:
        return done
    if start is None:
        raise RuntimeError("The lottery callback has no snapshot yet: run a round first.")
    measured, errors, train_errors = _second_copy(run, r, INSTABILITY, masks, start, trained, alone)
    columns = {**control_columns(measured, run.spec.names), INSTABILITY: error_barrier(errors), "path_errors": errors}
    columns.update({TRAIN_INSTABILITY: error_barrier(train_errors), "path_train_errors": train_errors})
    run.store.save_control(r, INSTABILITY, columns, masks)
    return columns


def control_instability(
    run: RunContext,
    r: int,
    control: str,
    masks: Mapping[str, Tensor],
    start: Mapping[str, Tensor],
    trained: Mapping[str, Tensor],
    alone: TrainsAlone,
) -> dict[str, float]:
    """A control's instability columns in round ``r``: a second copy of it trained from its own ``start`` with its
    ``masks`` under another data order (the ticket's copy's), and the error barriers on the line to its
    ``trained`` weights: ``instability`` (test) and ``instability_train``. Recorded with the control's columns."""
    _, errors, train_errors = _second_copy(run, r, f"{control}_{INSTABILITY}", masks, start, trained, alone)
    return {INSTABILITY: error_barrier(errors), TRAIN_INSTABILITY: error_barrier(train_errors)}


def _second_copy(
    run: RunContext,
    r: int,
    label: str,
    masks: Mapping[str, Tensor],
    start: Mapping[str, Tensor],
    trained: Mapping[str, Tensor],
    alone: TrainsAlone,
) -> tuple[Measurement, list[float], list[float]]:
    """Train a second copy from ``start`` with ``masks`` under round ``r``'s other data order; what it measured and
    the test and training errors along the line from ``trained`` to it."""
    copy = detached_copy(run.model)
    with other_data_order(run.datamodule, instability_seed(run.seed, r)):
        measured, trainer = alone(round_label(r, label), copy, fork(run.lottery, masks, start))
    errors = path_errors(trainer, copy, trained, run.datamodule, run.spec.names)
    train_errors = path_errors(trainer, copy, trained, run.datamodule, run.spec.names, "train")
    return measured, errors, train_errors


def add_instability(row: RoundResult, columns: Mapping[str, Any]) -> None:
    """Record a round's instability columns in its row (a copy recorded before the training data's barrier was
    measured has none: its row leaves it empty)."""
    row.instability = float(columns[INSTABILITY])
    row.path_errors = [float(e) for e in columns["path_errors"]]
    train = columns.get(TRAIN_INSTABILITY)
    row.instability_train = None if train is None else float(train)
    row.path_train_errors = [float(e) for e in columns.get("path_train_errors", [])]
