"""The Lightning callbacks the experiment adds to its trainings: what they print, their clock, their record.

Outside a terminal (``nohup``, a scheduler's log, CI) a progress bar writes a carriage-return redraw at every
refresh, hundreds of kilobytes that bury the lines a person reads. There, unless the Trainer settings ask for
a bar (``enable_progress_bar: true``), each training says one line per epoch instead (:class:`EpochLine`),
and the round loop one line per round. In a terminal the bars are Lightning's own, without the logger's
version field (``v_num``), which Lightning cuts to its last four characters (``lity`` of ``.../quality``).
:class:`RoundClock` counts a training's seconds across interruptions; :class:`RecordOnTrainStart` records the
runs when their training starts, not before.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, ModelSummary, ProgressBar, RichProgressBar, TQDMProgressBar
from lightning.pytorch.utilities import rank_zero_info

from lth_lightning.compat import rich_available, summary_table
from lth_lightning.experiment.record.store import RunStore

__all__ = [
    "EpochLine",
    "ModelSummaryWithoutFlops",
    "RecordOnTrainStart",
    "RoundClock",
    "in_terminal",
    "progress_callbacks",
]


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


class ModelSummaryWithoutFlops(ModelSummary):
    """Lightning's model summary without its FLOPs column and total, which say 0 unless the module sets
    ``example_input_array``: an experiment's first training prints it (plain, also where ``rich`` is installed)."""

    @staticmethod
    def summarize(
        summary_data: list[tuple[str, list[str]]],
        total_parameters: int,
        trainable_parameters: int,
        model_size: float,
        total_training_modes: dict[str, int],
        total_flops: int,
        **summarize_kwargs: Any,
    ) -> None:
        data = [(name, values) for name, values in summary_data if name != "FLOPs"]
        table = summary_table(data, total_parameters, trainable_parameters, model_size, total_training_modes)
        logging.getLogger("lightning.pytorch.callbacks.model_summary").info("\n" + table)


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


class RoundClock(pl.Callback):
    """Counts a training's wall-clock seconds in its checkpoints, so a resumed training counts them all.

    Attributes:
        before: Seconds spent before this process resumed the training (0 for a fresh one).
        checkpoint_epoch: The epoch (as Lightning counts, from 0) whose end the last checkpoint
            saved, or None if none was saved; a resumed one counts.
    """

    def __init__(self) -> None:
        self.before = 0.0
        self.checkpoint_epoch: int | None = None
        self._ended: int | None = None  # the last epoch that ended
        self._start = time.perf_counter()

    @property
    def seconds(self) -> float:
        """Seconds of the training so far, the interrupted part included."""
        return self.before + time.perf_counter() - self._start

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._ended = trainer.current_epoch

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self.checkpoint_epoch = self._ended

    def state_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "epoch": self._ended}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.before = float(state_dict["seconds"])
        self.checkpoint_epoch = state_dict.get("epoch")
        self._start = time.perf_counter()


class RecordOnTrainStart(pl.Callback):
    """Records the runs (their experiment's identity, their own, their config) when a training starts, not before;
    says their folders once the data is set up, before anything the training says (a folder a start that fails on
    its data removes again is never said), then ``then_say``."""

    def __init__(self, stores: Sequence[RunStore], then_say: Sequence[str] = ()) -> None:
        self.stores, self.then_say = list(stores), list(then_say)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            for store in self.stores:
                store.announce()
            for line in self.then_say:
                rank_zero_info(line)
            self.then_say = []

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for store in self.stores:
            store.record_start(trainer.is_global_zero)
