"""``EarlyStoppingTracker``: the step of minimum validation loss, and the weights at that step."""

from __future__ import annotations

import math
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from torch import Tensor

from lth_lightning.metric_names import check_logged

__all__ = ["EarlyStoppingTracker", "improves"]


def improves(value: float, best: float | None, mode: Literal["min", "max"]) -> bool:
    """Whether ``value`` beats ``best`` (None: nothing yet) in ``mode``; NaN never does."""
    if math.isnan(value):
        return False
    return best is None or (value < best if mode == "min" else value > best)


class EarlyStoppingTracker(pl.Callback):
    """Record the validation curve of a fit and keep the weights where the monitored value was best.

    Frankle & Carbin report the *early-stopping iteration* (the step of minimum validation loss)
    and the test accuracy there. This callback does not stop training: it records
    ``(step, value)`` at every validation and copies the module's state (on the CPU) whenever
    the value improves, so that the driver can test those weights after the fit.

    Args:
        monitor: Logged metric to track.
        mode: ``"min"`` or ``"max"``.
        strict: Raise at the first validation (usually Lightning's sanity check, before any
            training) if ``monitor`` was not logged, listing what was, as Lightning's
            ``EarlyStopping(strict=True)`` does.

    Raises:
        ValueError: For an unknown ``mode``; with ``strict``, when ``monitor`` is not logged.
    """

    def __init__(self, monitor: str = "val/loss", mode: Literal["min", "max"] = "min", strict: bool = True) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"`mode` must be 'min' or 'max', got {mode!r}.")
        self.monitor, self.mode, self.strict = monitor, mode, strict
        self.curve: list[tuple[int, float]] = []
        self.best_step: int | None = None
        self.best_value: float | None = None
        self.best_state: dict[str, Tensor] | None = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.strict:
            check_logged(self.monitor, "monitor", "validation", trainer.callback_metrics)
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        value = float(trainer.callback_metrics[self.monitor])
        step = trainer.global_step
        if self.curve and self.curve[-1][0] == step:  # validated twice at one step (e.g. after a resume)
            return
        self.curve.append((step, value))
        if improves(value, self.best_value, self.mode):
            self.best_step, self.best_value = step, value
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in pl_module.state_dict().items()}

    def state_dict(self) -> dict[str, Any]:
        return {
            "monitor": self.monitor,
            "mode": self.mode,
            "curve": list(self.curve),
            "best_step": self.best_step,
            "best_value": self.best_value,
            "best_state": self.best_state,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.curve = [(int(s), float(v)) for s, v in state_dict["curve"]]
        self.best_step, self.best_value = state_dict["best_step"], state_dict["best_value"]
        self.best_state = state_dict["best_state"]

    def load_best_into(self, module: torch.nn.Module) -> bool:
        """Load the best weights into ``module``; returns False if no validation ran."""
        if self.best_state is None:
            return False
        module.load_state_dict(self.best_state)
        return True
