"""``RoundClock``: how long a training took, across interruptions, and where its last checkpoint is."""

from __future__ import annotations

import time
from typing import Any

import lightning.pytorch as pl

__all__ = ["RoundClock"]


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
