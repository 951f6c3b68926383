"""Late rewinding's checks and start: what a fit continued from step ``k`` of the training needs, on a Trainer.

The arithmetic of that point is :mod:`.late_start`'s; this module refuses what cannot continue from it
and sets a Trainer's counters, schedules and data order there (through :mod:`~lth_lightning.compat`).
"""

from __future__ import annotations

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_warn

from lth_lightning.callbacks.late_start import LateStart, planned_steps
from lth_lightning.compat import start_training_at_step

__all__ = ["check_late_rewinding", "start_late"]


def check_late_rewinding(trainer: pl.Trainer, pl_module: pl.LightningModule, k: int) -> int:
    """The batches of an epoch, after refusing what late rewinding cannot continue from step ``k`` (``rewind_step``).

    Raises:
        ValueError: If the training is ``rewind_step`` steps or shorter, or steps other than once per batch.
    """
    epoch_batches = trainer.num_training_batches
    if not pl_module.automatic_optimization or trainer.accumulate_grad_batches != 1:
        raise ValueError(
            f"`rewind_step`={k} (late rewinding) continues each round's learning-rate schedule and data order from "
            "step k, which needs one optimizer step per batch: automatic optimization and "
            f"accumulate_grad_batches=1 (got {'automatic' if pl_module.automatic_optimization else 'manual'} "
            f"optimization, accumulate_grad_batches={trainer.accumulate_grad_batches})."
        )
    if not isinstance(epoch_batches, int) or epoch_batches < 1:
        raise ValueError(
            f"`rewind_step`={k} (late rewinding) continues each round from step k of its epochs; the training "
            f"loader has no length ({epoch_batches} batches an epoch): give it one, or use rewind_step=0."
        )
    total = planned_steps(trainer.max_steps, trainer.max_epochs, epoch_batches)
    if total is not None and k >= total:
        raise ValueError(
            f"`rewind_step`={k} is at or past the end of the training, which runs {total} optimizer steps "
            f"(max_epochs={trainer.max_epochs} of {epoch_batches} batches, max_steps={trainer.max_steps}): "
            f"choose rewind_step < {total}. Nothing was trained."
        )
    return epoch_batches


def start_late(trainer: pl.Trainer, start: LateStart) -> int:
    """Start this fit at step ``k`` of the training: its counters, schedules and data order where k steps leave
    them (OpenLTH's late rewinding). Returns how many batches of its first epoch are behind it (the loop counts them
    as done at its first batch: :func:`~lth_lightning.compat.skip_epoch_batches`)."""
    start_training_at_step(trainer, start.step, start.epoch_batches)
    left = start.advance(trainer.lr_scheduler_configs)
    if left:
        rank_zero_warn(
            f"LotteryTicketCallback: {', '.join(left)} steps on the metrics of the training before step "
            f"{start.step}, which this round does not repeat: it starts afresh."
        )
    loader = trainer.train_dataloader
    if start.batch and callable(getattr(loader, "start_at", None)):
        loader.start_at(start.batch)  # type: ignore[union-attr]
    elif start.batch:
        rank_zero_warn(
            f"LotteryTicketCallback: the training loader ({type(loader).__name__}) has no `start_at(batch)`, so "
            f"this round's first epoch trains the first {start.epoch_batches - start.batch} batches of epoch "
            f"{start.epoch}'s order, not its batches {start.batch} to {start.epoch_batches - 1} as step "
            f"{start.step} would (the package's data modules' loaders continue exactly)."
        )
    return start.batch
