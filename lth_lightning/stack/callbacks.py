"""Per-member bookkeeping of a stacked fit: early stopping of each member, and each member's TensorBoard run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from torch import Tensor

from lth_lightning.callbacks.early_stopping import improves
from lth_lightning.metric_names import check_logged

if TYPE_CHECKING:
    from argparse import Namespace

    from torch.utils.tensorboard import SummaryWriter

__all__ = ["MemberLogger", "MemberTracker"]


class MemberTracker(pl.Callback):
    """The :class:`~lth_lightning.callbacks.early_stopping.EarlyStoppingTracker` of every member of a stacked fit.

    At every validation it reads ``<member>/<monitor>`` for each member, and copies a member's rows
    of the stacked parameters when its value improves, so that after the fit every member can be
    tested at its own early-stopping iteration, in one pass.

    Args:
        members: The members' names, in member order.
        monitor: The validation metric (``val/loss``), logged per member as ``<member>/<monitor>``.
        mode: ``"min"`` or ``"max"``.
    """

    def __init__(self, members: Sequence[str], monitor: str, mode: Literal["min", "max"] = "min") -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"`mode` must be 'min' or 'max', got {mode!r}.")
        self.members, self.monitor, self.mode = list(members), monitor, mode
        self.curves: list[list[tuple[int, float]]] = [[] for _ in self.members]
        self.best_step: list[int | None] = [None] * len(self.members)
        self.best_value: list[float | None] = [None] * len(self.members)
        self.best_state: dict[str, Tensor] | None = None  # stacked, rows of members without a best are unused

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        keys = [f"{member}/{self.monitor}" for member in self.members]
        check_logged(keys[0], "monitor", "validation", trainer.callback_metrics)
        if trainer.sanity_checking:
            return
        step = trainer.global_step
        state = {k: v.detach() for k, v in pl_module.state_dict().items()}
        for m, key in enumerate(keys):
            value = float(trainer.callback_metrics[key])
            if self.curves[m] and self.curves[m][-1][0] == step:  # validated twice at one step (a resume)
                continue
            self.curves[m].append((step, value))
            if improves(value, self.best_value[m], self.mode):
                self.best_step[m], self.best_value[m] = step, value
                if self.best_state is None:
                    self.best_state = {k: v.to("cpu", copy=True) for k, v in state.items()}
                for name, tensor in state.items():
                    self.best_state[name][m].copy_(tensor[m])

    def load_best_into(self, module: torch.nn.Module) -> bool:
        """Load every member's best rows into ``module`` (members never validated keep theirs); False if none."""
        if self.best_state is None:
            return False
        state = module.state_dict()
        with torch.no_grad():
            for m, step in enumerate(self.best_step):
                if step is not None:
                    for name, tensor in state.items():
                        tensor[m].copy_(self.best_state[name][m])
        return True

    def state_dict(self) -> dict[str, Any]:
        return {
            "members": list(self.members),
            "monitor": self.monitor,
            "mode": self.mode,
            "curves": [list(c) for c in self.curves],
            "best_step": list(self.best_step),
            "best_value": list(self.best_value),
            "best_state": self.best_state,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if list(state_dict["members"]) != self.members:
            raise ValueError(f"The checkpoint tracks members {state_dict['members']}, this fit {self.members}.")
        self.curves = [[(int(s), float(v)) for s, v in curve] for curve in state_dict["curves"]]
        self.best_step, self.best_value = list(state_dict["best_step"]), list(state_dict["best_value"])
        self.best_state = state_dict["best_state"]


class MemberLogger(Logger):
    """Writes each member's metrics (``<member>/<tag>``) as ``<prefix>/<tag>`` to that member's TensorBoard run.

    A stacked fit's curves land where a sequential run puts them (its seed's ``tensorboard/training`` run, under
    ``round_03/``, ``round_03_random_reinit/``), so the dashboard is the same. Like the round runs'
    :class:`~lth_lightning.experiment.training.trainer.RoundLogger`, it leaves out ``epoch``, ``lottery/*`` and
    hyperparameters.

    Args:
        runs: Each member's TensorBoard run folder and tag prefix, by member name.
    """

    def __init__(self, runs: Mapping[str, tuple[Path, str]]) -> None:
        super().__init__()
        self.runs = dict(runs)
        self.writers: dict[Path, SummaryWriter] = {}

    @property
    def name(self) -> str:
        return "members"

    @property
    def version(self) -> int:
        return 0

    def _writer(self, member: str) -> SummaryWriter:
        folder = self.runs[member][0]
        if folder not in self.writers:  # the members of one seed share its run
            from torch.utils.tensorboard import SummaryWriter

            self.writers[folder] = SummaryWriter(log_dir=str(folder))
        return self.writers[folder]

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        for key, value in metrics.items():
            member = next((m for m in self.runs if key.startswith(f"{m}/")), None)
            if member is not None:
                tag = f"{self.runs[member][1]}/{key[len(member) + 1 :]}"
                self._writer(member).add_scalar(tag, float(value), step)

    def log_hyperparams(
        self, params: dict[str, Any] | Namespace, metrics: dict[str, Any] | None = None, step: int | None = None
    ) -> None:
        return None

    @rank_zero_only
    def finalize(self, status: str) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers = {}
