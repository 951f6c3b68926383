"""``SequentialRounds``: the executor that trains a round one network at a time, the ticket and then its controls.

One fresh Trainer per training, the run's ``LotteryTicketCallback`` carried across rounds, the
round's ``last.ckpt`` to resume an interrupted ticket from, and a control's columns read back
when it finished before.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_info

from lth_lightning.callbacks.driving import fork
from lth_lightning.callbacks.early_stopping import EarlyStoppingTracker
from lth_lightning.callbacks.lottery_ticket import LotteryTicketCallback
from lth_lightning.compat import detached_copy
from lth_lightning.experiment.record.paths import round_label
from lth_lightning.experiment.record.round_result import RoundResult
from lth_lightning.experiment.rounds.context import RunContext
from lth_lightning.experiment.rounds.instability import (
    TrainsAlone,
    add_instability,
    control_instability,
    measure_instability,
)
from lth_lightning.experiment.training.callbacks import RecordOnTrainStart, RoundClock
from lth_lightning.experiment.training.measurement import (
    Measurement,
    control_columns,
    evaluate_at_best,
    kept_weights,
    round_line,
    row_metrics,
    scalars,
    tested,
)
from lth_lightning.experiment.training.trainer import make_trainer, resuming_quietly

__all__ = ["SequentialRounds"]


class SequentialRounds:
    """Trains each run's round on its own: the ticket (resumable), then each control not finished yet."""

    def __init__(self) -> None:
        self.summarized = False  # Lightning's model summary: for the first training only

    def round(self, r: int, runs: Sequence[RunContext]) -> dict[int, RoundResult]:
        return {run.seed: self._round(run, r) for run in runs}

    def _round(self, run: RunContext, r: int) -> RoundResult:
        start = time.perf_counter()
        clock, checkpoint_dir = RoundClock(), run.store.paths.checkpoints(r)
        run.store.training(r, clock, checkpoint_dir / "last.ckpt")
        ticket, _ = self.train_and_test(run, round_label(r), run.model, run.lottery, checkpoint_dir, clock)
        lottery = run.lottery
        if lottery.round != r or lottery.phase != "pruned":
            raise RuntimeError(
                f"Round {r} ended with the lottery callback at round {lottery.round} ({lottery.phase}); "
                "the run folder and the callback state disagree."
            )
        history = lottery.history[-1]
        row = RoundResult(
            round=r,
            density=float(history["density"]),
            metrics=row_metrics(ticket, run.spec.names),
            best_val_step=ticket.best_step,
            steps=int(history["steps"]),
            layer_density={k: float(v) for k, v in history["layer_density"].items()},
        )
        run.store.save_ticket(r, lottery.round_masks, run.model.state_dict(), ticket.at_best)
        for control in run.spec.controls if r > 0 else ():
            row.controls[control] = self._control(run, r, control)
        if run.spec.instability:  # the ticket's trained network is the first copy (only read)
            trained = run.model.state_dict()
            alone = self.alone(run)
            add_instability(row, measure_instability(run, r, lottery.round_masks, lottery.snapshot, trained, alone))
        row.seconds = time.perf_counter() - start + clock.before  # with the part before an interruption
        run.store.finish_round(row, lottery.state_dict())
        rank_zero_info(round_line(row, run.spec.names, run.seed))
        return row

    def _control(self, run: RunContext, r: int, control: str) -> dict[str, float | None]:
        finished = run.store.finished_control(r, control)
        if finished is not None:
            return finished
        masks, init = run.control(control, r, run.lottery.round_masks, run.lottery.snapshot)
        forked, model = fork(run.lottery, masks, init), detached_copy(run.model)
        measured, _ = self.train_and_test(run, round_label(r, control), model, forked, None, None)
        columns = control_columns(measured, run.spec.names)
        if control in run.spec.instability_controls:
            trained = model.state_dict()
            columns.update(control_instability(run, r, control, masks, init, trained, self.alone(run)))
        if run.spec.keep_weights == "all":
            run.store.save_control_weights(r, control, kept_weights(init, model.state_dict(), measured.at_best))
        run.store.save_control(r, control, columns, masks)
        return columns

    def alone(self, run: RunContext) -> TrainsAlone:
        """What trains and tests one more network of ``run`` (no checkpoint, untimed): a round's instability copy."""
        return lambda label, model, lottery: self.train_and_test(run, label, model, lottery, None, None)

    def train_and_test(
        self,
        run: RunContext,
        label: str,
        model: pl.LightningModule,
        lottery: LotteryTicketCallback,
        checkpoint_dir: Path | None,
        clock: RoundClock | None,
    ) -> tuple[Measurement, pl.Trainer]:
        """Fit (resuming from ``checkpoint_dir/last.ckpt`` if there), test, and test the early-stopping weights;
        what it measured, and the Trainer (``model`` holds the final weights).

        Raises:
            ValueError: If the monitored or the test metric was never logged.
        """
        names = run.spec.names
        tracker = EarlyStoppingTracker(names.monitor, names.mode) if names.monitor is not None else None
        callbacks: list[pl.Callback] = [lottery, *([tracker] if tracker else []), *([clock] if clock else [])]
        callbacks.append(RecordOnTrainStart([run.store]))
        summary, self.summarized = not self.summarized, True
        paths = run.store.paths
        trainer = make_trainer(
            label,
            callbacks,
            run.spec.trainer,
            paths.root,
            checkpoint_dir,
            summary=summary,
            shown_as=f"seed {run.seed} {label}",
        )
        ckpt = checkpoint_dir / "last.ckpt" if checkpoint_dir is not None else None
        resume = ckpt if ckpt is not None and ckpt.is_file() else None
        if resume is not None:
            rank_zero_info(f"{label} was interrupted: resuming it from {resume}.")
        with resuming_quietly(checkpoint_dir):
            trainer.fit(model, datamodule=run.datamodule, ckpt_path=resume)
        metrics = names.validation(scalars(trainer.callback_metrics))
        tested = self._test(run, trainer, model)
        metrics.update(tested)
        if tracker is None or tracker.best_state is None:
            return Measurement(metrics, None, None, None), trainer
        if tracker.best_step == trainer.global_step:  # the best weights are the final ones
            return Measurement(metrics, tracker.best_step, tracker.best_value, tested[names.test_column]), trainer
        at_best = evaluate_at_best(trainer, model, tracker.load_best_into, lambda: self._test(run, trainer, model))
        best = tracker.best_value
        return Measurement(metrics, tracker.best_step, best, at_best[names.test_column], tracker.best_state), trainer

    @staticmethod
    def _test(run: RunContext, trainer: pl.Trainer, model: pl.LightningModule) -> dict[str, float]:
        return tested(trainer, model, run.datamodule, run.spec.names)
