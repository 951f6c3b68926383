"""The Trainers of an experiment: one per training, from the same settings, each logging under its label to its
run's TensorBoard run of trainings."""

from __future__ import annotations

import copy
import logging
import re
import warnings
from argparse import Namespace
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint, ModelSummary
from lightning.pytorch.loggers import Logger, TensorBoardLogger

from lth_lightning.compat import (
    CHECKPOINT_DIR_NOT_EMPTY,
    CLOUD_LOGGER_TIP,
    DEPRECATION_NOISE,
    PER_TRAINER_LINES,
    RANK_ZERO_LOGGER,
)
from lth_lightning.experiment.training.callbacks import ModelSummaryWithoutFlops, progress_callbacks

__all__ = ["RoundLogger", "make_trainer", "quiet_lightning", "resuming_quietly"]


class _Once(logging.Filter):
    def __init__(self, prefixes: Sequence[str]) -> None:
        super().__init__()
        self.prefixes, self.seen = tuple(prefixes), set[str]()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith(CLOUD_LOGGER_TIP):  # an advertisement, not about this run
            return False
        if not message.startswith(self.prefixes):
            return True
        if message in self.seen:
            return False
        self.seen.add(message)
        return True


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """While an experiment runs: Lightning's per-Trainer device lines and tips once, its cloud-logger advertisement
    never, no known deprecation noise.

    Nested uses share the outermost filter, so a line said before the experiment is not said again.
    """
    logger = logging.getLogger(RANK_ZERO_LOGGER)
    if any(isinstance(f, _Once) for f in logger.filters):
        yield
        return
    once = _Once(PER_TRAINER_LINES)
    logger.addFilter(once)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=DEPRECATION_NOISE, category=FutureWarning)
            warnings.filterwarnings("ignore", message=DEPRECATION_NOISE, category=DeprecationWarning)
            yield
    finally:
        logger.removeFilter(once)


@contextmanager
def resuming_quietly(checkpoint_dir: Path | None) -> Iterator[None]:
    """Without Lightning's "Checkpoint directory ... exists and is not empty": resuming there is the point."""
    with warnings.catch_warnings():
        if checkpoint_dir is not None:
            pattern = re.escape(CHECKPOINT_DIR_NOT_EMPTY.format(dirpath=checkpoint_dir))
            warnings.filterwarnings("ignore", message=pattern)
        yield


class RoundLogger(TensorBoardLogger):
    """One training's curves in its run's TensorBoard run of trainings, under its label (``round_03/val/loss``),
    keeping the dashboard's Scalars page clean.

    It leaves out Lightning's ``epoch`` scalar, the callback's ``lottery/*`` and ``round/*`` values (single points
    here; the summary run has them across rounds) and hyperparameters (the summary run has them,
    once, with the final metrics).
    """

    def __init__(self, run_dir: Path, label: str) -> None:
        super().__init__(save_dir=run_dir, name="tensorboard", version="training", default_hp_metric=False)
        self.label = label

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        kept = {
            f"{self.label}/{k}": v
            for k, v in metrics.items()
            if k != "epoch" and not k.startswith(("lottery/", "round/"))
        }
        if kept:
            super().log_metrics(kept, step)

    def log_hyperparams(
        self, params: dict[str, Any] | Namespace, metrics: dict[str, Any] | None = None, step: int | None = None
    ) -> None:
        return None


def make_trainer(
    label: str,
    callbacks: Sequence[pl.Callback],
    trainer_kwargs: Mapping[str, Any],
    run_dir: Path,
    checkpoint_dir: Path | None,
    loggers: Sequence[Logger] | None = None,
    summary: bool = True,
    shown_as: str | None = None,
) -> pl.Trainer:
    """A fresh Trainer from the shared settings, logging to ``<run_dir>/tensorboard/training`` under ``<label>/``.

    ``callbacks`` come first; the user's callbacks in ``trainer_kwargs`` are deep-copied, fresh for every Trainer.
    The user's loggers there are not this training's: they are the whole experiment's tracker, which the round
    loop gives each stored round's results (:mod:`~lth_lightning.experiment.rounds.round_logging`); ``logger:
    false`` turns off the training's own TensorBoard curves too. With ``checkpoint_dir``, a ``ModelCheckpoint`` replaces
    ``last.ckpt`` there after every training epoch. ``loggers`` replace the round's
    :class:`RoundLogger` (a stacked fit logs each member under its own label). Without ``summary``, the
    Trainer prints no model summary (an experiment prints it for its first training only). Its progress shows
    as :func:`~.callbacks.progress_callbacks` says: a bar in a terminal, a line per epoch in a log file that names
    the training ``shown_as`` (by default ``label``).
    """
    settings = dict(trainer_kwargs)
    logger = settings.pop("logger", None)  # the user's: the experiment's tracker, given each stored round's results
    kwargs = copy.deepcopy(settings)
    if not summary:
        kwargs["enable_model_summary"] = False
    user_callbacks = kwargs.pop("callbacks", None) or []
    if not isinstance(user_callbacks, list):
        user_callbacks = [user_callbacks]
    shown, kwargs["enable_progress_bar"] = progress_callbacks(shown_as or label, kwargs, user_callbacks)
    all_callbacks = [*callbacks, *user_callbacks, *shown]
    if kwargs.get("enable_model_summary", True) is not False and not any(
        isinstance(c, ModelSummary) for c in all_callbacks
    ):
        all_callbacks.append(ModelSummaryWithoutFlops())
        kwargs["enable_model_summary"] = False  # Lightning's own would be a second (and says it skips it)
    if checkpoint_dir is not None and kwargs.get("enable_checkpointing", True) is not False:
        all_callbacks.append(
            ModelCheckpoint(
                dirpath=checkpoint_dir,
                filename="last",
                save_top_k=1,
                every_n_epochs=1,
                save_on_train_epoch_end=True,
                enable_version_counter=False,
            )
        )
    elif checkpoint_dir is None:
        kwargs["enable_checkpointing"] = False
    all_loggers: list[Logger] = []
    if logger is not False:
        if loggers is None:
            all_loggers.append(RoundLogger(run_dir, label))
        else:
            all_loggers.extend(loggers)
    kwargs["default_root_dir"] = run_dir / label
    return pl.Trainer(callbacks=all_callbacks, logger=all_loggers or False, **kwargs)
