"""What an experiment's trainings print: progress bars in a terminal, one line per epoch in a log file.

Outside a terminal (``nohup``, a scheduler's log, CI) a progress bar writes a carriage-return redraw at every
refresh, hundreds of kilobytes that bury the lines a person reads. There, unless the Trainer settings ask for
a bar (``enable_progress_bar: true``), each training says one line per epoch instead (:class:`EpochLine`),
and the round loop one line per round. In a terminal the bars are Lightning's own, without the logger's
version field (``v_num``), which Lightning cuts to its last four characters (``lity`` of ``.../quality``).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, ProgressBar, RichProgressBar, TQDMProgressBar
from lightning.pytorch.utilities import rank_zero_info

from lth_lightning.compat import rich_available

__all__ = ["EpochLine", "in_terminal", "progress_callbacks"]


def in_terminal() -> bool:
    """Whether both standard output and standard error are terminals (bars redraw in place there only)."""
    return sys.stdout.isatty() and sys.stderr.isatty()


def _without_version(metrics: dict[str, Any]) -> dict[str, Any]:
    metrics.pop("v_num", None)
    return metrics


class _TQDMBar(TQDMProgressBar):
    """Lightning's tqdm bar without the logger's version field."""

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        return _without_version(super().get_metrics(trainer, pl_module))


class _RichBar(RichProgressBar):
    """Lightning's rich bar without the logger's version field."""

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        return _without_version(super().get_metrics(trainer, pl_module))


class EpochLine(Callback):
    """One line at the end of every training epoch, on rank zero: the training's label, its epoch and step, and
    the values logged so far (the last validation's among them).

    Args:
        label: What the training is (``seed 0 round_02/lottery``, ``stacked/round_02``).
    """

    def __init__(self, label: str) -> None:
        self.label = label

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epochs = "" if trainer.max_epochs is None or trainer.max_epochs < 0 else f"/{trainer.max_epochs}"
        values = [f"{name} {float(value):.4g}" for name, value in sorted(trainer.callback_metrics.items())]
        line = f"{self.label}: epoch {trainer.current_epoch + 1}{epochs}, step {trainer.global_step}"
        rank_zero_info(", ".join([line, *values]))


def progress_callbacks(
    label: str, trainer_kwargs: Mapping[str, Any], user_callbacks: list[Callback]
) -> tuple[list[Callback], bool | None]:
    """The callbacks that show a training's progress, and the ``enable_progress_bar`` its Trainer takes.

    A progress bar the user gave is kept as it is. Otherwise, where the settings leave the bar to the default
    (``enable_progress_bar`` unset or None), a terminal gets Lightning's bar without ``v_num`` and a log file
    gets :class:`EpochLine` (and no bar); an explicit ``true`` gets the bar anywhere, ``false`` none.
    """
    wanted = trainer_kwargs.get("enable_progress_bar")
    if wanted is False or any(isinstance(c, ProgressBar) for c in user_callbacks):
        return [], wanted
    if wanted is None and not in_terminal():
        return [EpochLine(label)], False
    return [_RichBar() if rich_available() else _TQDMBar()], True
