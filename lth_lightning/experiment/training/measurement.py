"""What a training measured: its metrics by column, its early-stopping point, a control's columns, a round's line.

Pure functions over what a Trainer logged (and one that evaluates the early-stopping weights);
the sequential and the stacked executors both measure through them.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import lightning.pytorch as pl
import torch
from torch import Tensor

from lth_lightning.experiment.record.paths import WeightsKind
from lth_lightning.experiment.record.round_result import RoundResult, format_value
from lth_lightning.metric_names import MetricNames, check_logged, column

__all__ = [
    "Measurement",
    "control_columns",
    "evaluate_at_best",
    "kept_weights",
    "round_line",
    "row_metrics",
    "scalars",
    "test_columns",
    "tested",
    "tested_on_training_data",
    "trial_weights",
]

T = TypeVar("T")


def scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The one-number entries of a metrics mapping, as floats."""
    return {k: float(v) for k, v in metrics.items() if not isinstance(v, torch.Tensor) or v.numel() == 1}


def test_columns(logged: Mapping[str, float], names: MetricNames) -> dict[str, float]:
    """Every metric logged in ``test``, by column.

    Raises:
        ValueError: If the test metric is not among them (the message lists what was logged).
    """
    check_logged(names.test, "test_metric", "test", logged)
    return {column(k): v for k, v in logged.items()}


@dataclass
class Measurement:
    """What one training measured.

    Attributes:
        metrics: By column: the validation metrics at the end of training, and the test metrics.
        best_step: The early-stopping iteration (step of the best monitored value), or None.
        best_value: The best monitored value, or None.
        test_at_best: The test metric of the weights at ``best_step``, or None.
        at_best: The weights at ``best_step`` where it came before the end (None: the final ones, or no validation).
    """

    metrics: dict[str, float]
    best_step: int | None
    best_value: float | None
    test_at_best: float | None
    at_best: dict[str, Tensor] | None = None


def row_metrics(measured: Measurement, names: MetricNames) -> dict[str, float | None]:
    """A round's metric columns: the measured metrics, then the best monitored value and the test metric there."""
    metrics: dict[str, float | None] = dict(measured.metrics)
    if names.best_column is not None:
        metrics[names.best_column] = measured.best_value
    metrics[names.at_best_column] = measured.test_at_best
    return metrics


def control_columns(measured: Measurement, names: MetricNames) -> dict[str, float | None]:
    """A control's columns: the test metric, at the early-stopping iteration, that step, the monitored value."""
    values: dict[str, float | None] = {
        names.test_column: measured.metrics[names.test_column],
        names.at_best_column: measured.test_at_best,
        "best_val_step": measured.best_step,
    }
    if names.monitor is not None:
        values[column(names.monitor)] = measured.metrics[column(names.monitor)]
    return values


@contextmanager
def trial_weights(trainer: pl.Trainer, model: torch.nn.Module) -> Iterator[dict[str, torch.Tensor]]:
    """Within the block, other weights may be loaded into ``model`` and evaluated, logging nothing; the final
    weights (what the block receives, copied) are back after it."""
    final = {k: v.detach().clone() for k, v in model.state_dict().items()}
    loggers, trainer.loggers = trainer.loggers, []
    try:
        yield final
    finally:
        trainer.loggers = loggers
        model.load_state_dict(final)


def kept_weights(
    init: Mapping[str, Tensor], trained: Mapping[str, Tensor], at_best: Mapping[str, Tensor] | None
) -> dict[WeightsKind, Mapping[str, Tensor]]:
    """A control's networks to keep (``keep_weights="all"``): its start, its end, its early stop where earlier."""
    kept: dict[WeightsKind, Mapping[str, Tensor]] = {"init": init, "trained": trained}
    if at_best is not None:
        kept["at_best"] = at_best
    return kept


def evaluate_at_best(
    trainer: pl.Trainer, model: torch.nn.Module, load_best: Callable[[torch.nn.Module], Any], evaluate: Callable[[], T]
) -> T:
    """``evaluate()`` on the weights ``load_best`` puts in ``model``, logging nothing; then the final weights are back.

    The runs' ``test/*`` scalars stay those of the final weights, which the round reports.
    """
    with trial_weights(trainer, model):
        load_best(model)
        return evaluate()


def tested(
    trainer: pl.Trainer, model: pl.LightningModule, datamodule: pl.LightningDataModule, names: MetricNames
) -> dict[str, float]:
    """``trainer.test`` of ``model``: every test metric by column (:func:`test_columns`)."""
    results = trainer.test(model, datamodule=datamodule, verbose=False)
    return test_columns(scalars(results[0]) if results else {}, names)


def tested_on_training_data(
    trainer: pl.Trainer, model: pl.LightningModule, datamodule: pl.LightningDataModule, names: MetricNames
) -> dict[str, float]:
    """``trainer.test`` of ``model`` on the DataModule's training data (its ``train_dataloader``), by column.

    Torch's random state is as it was after (a shuffling ``DataLoader`` draws its order from it), and the warning
    Lightning gives for testing on a shuffled loader is not repeated (the order does not change a test metric).
    """
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*shuffling enabled.*")
        results = trainer.test(model, dataloaders=datamodule.train_dataloader(), verbose=False)
    return test_columns(scalars(results[0]) if results else {}, names)


def round_line(row: RoundResult, names: MetricNames, seed: int) -> str:
    """The line said when a round is recorded: density, test metric, early stop, each control's test metric."""
    test = names.test_column
    controls = "".join(f", {k} {format_value(v[test])}" for k, v in row.controls.items())
    return (
        f"Round {row.round} of seed {seed}: {100 * row.density:.2f}% of weights, "
        f"{names.test} {format_value(row.metrics[test])}, "
        f"early-stop step {format_value(row.best_val_step)} ({names.test} there "
        f"{format_value(row.metrics[names.at_best_column])}){controls}."
    )
