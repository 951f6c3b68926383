"""The round results in the user's Lightning loggers: one run per experiment, one point per round (step = round).

The loggers of the experiment's Trainer settings (``--trainer.logger``, ``trainer={"logger": ...}``: TensorBoard,
CSV, MLflow, Weights & Biases, any Lightning ``Logger``) are the user's tracker of the whole experiment: they
receive its config once and, as each round is stored, the round's results under ``round/*`` names with the
round as the step. Each training's curves stay in the run folder's own TensorBoard run
(``tensorboard/training``, under ``round_NN/``), where steps restart at 0 every round.

The names (``docs/lth-fit.md``, "Logging anywhere"), under ``round/seed_<s>/``: ``weights_remaining`` (the
fraction of the prunable weights the round trained with), ``<column>`` for each of its metrics (``test_acc``,
``test_acc_at_best_val``, ``val_loss``, ...), ``early_stop_step``, ``steps``, ``instability`` and
``instability_train`` when measured, and for each control ``<control>/<column>`` and ``<control>/gap`` (the
ticket's test metric minus the control's).
Each name carries the run's seed, so that the seeds of one experiment share its tracker run:
``round/seed_0/test_acc``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from lightning.pytorch.loggers import Logger

from lth_lightning.experiment.record.identity import flatten, plain
from lth_lightning.experiment.record.round_result import RoundResult
from lth_lightning.metric_names import MetricNames

__all__ = ["ROUND", "log_round", "round_metrics", "start_logging", "tracking", "user_loggers"]

ROUND = "round"


def user_loggers(trainer: Mapping[str, Any]) -> list[Logger]:
    """The Lightning loggers among the Trainer settings (``logger``: one, a list, or none)."""
    logger = trainer.get("logger")
    given = logger if isinstance(logger, (list, tuple)) else [logger]
    return [x for x in given if isinstance(x, Logger)]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def round_metrics(row: RoundResult, names: MetricNames, seed: int) -> dict[str, float]:
    """A stored round's results under their ``round/seed_<s>/*`` names."""
    prefix = f"{ROUND}/seed_{seed}/"
    values: dict[str, Any] = {"weights_remaining": row.density, **row.metrics}
    values.update(early_stop_step=row.best_val_step, steps=row.steps)
    values.update(instability=row.instability, instability_train=row.instability_train)
    ticket = _number(row.metrics.get(names.test_column))
    for control, columns in row.controls.items():
        values.update({f"{control}/{k}": v for k, v in columns.items()})
        theirs = _number(columns.get(names.test_column))
        values[f"{control}/gap"] = None if ticket is None or theirs is None else ticket - theirs
    return {f"{prefix}{k}": number for k, v in values.items() if (number := _number(v)) is not None}


def start_logging(loggers: Sequence[Logger], config: Mapping[str, Any]) -> None:
    """The experiment's config, once, as each logger's hyperparameters (flattened: ``lottery.amount``)."""
    for logger in loggers:
        logger.log_hyperparams(flatten(plain(dict(config))))


def log_round(loggers: Sequence[Logger], row: RoundResult, names: MetricNames, seed: int) -> None:
    """A stored round's results, at step ``row.round``, in every logger (saved at once: a crash loses nothing)."""
    metrics = round_metrics(row, names, seed)
    for logger in loggers:
        logger.log_metrics(metrics, step=row.round)
        logger.save()


@contextmanager
def tracking(trainer: Mapping[str, Any], finish: bool = True) -> Iterator[None]:
    """The experiment runs inside: then (with ``finish``) the user's loggers' runs end, ``success`` or ``failed``."""
    loggers = user_loggers(trainer) if finish else []
    try:
        yield
    except BaseException:
        for logger in loggers:
            logger.finalize("failed")
        raise
    for logger in loggers:
        logger.finalize("success")
