"""Stacked rounds: every seed's ticket and its controls trained as members of one network, in one fit per round.

Round ``r`` has one member per seed that has not finished it (its ticket) and, from round 1, one
per control of that seed not yet finished; with ``own_orders`` each seed's members read the seed's
own data order. Each ticket trains from its own initialization under its
own masks and is pruned by its own trained magnitudes; each control's masks and initialization
come from its seed's ticket exactly as in a sequential run (:mod:`lth_lightning.experiment.controls`). Every seed's run
folder is then written as a sequential run writes it (masks, weights, callback state, controls,
results, plots, TensorBoard), so everything downstream is the same; the stacked checkpoint lives
in the experiment folder (``stacked/``).
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor

from lth_lightning.callbacks.driving import fresh_copy, record_round
from lth_lightning.callbacks.lottery_ticket import LotteryTicketCallback
from lth_lightning.callbacks.state import LotteryState
from lth_lightning.experiment.record.paths import round_label
from lth_lightning.experiment.record.round_result import RoundResult
from lth_lightning.experiment.rounds.context import RunContext
from lth_lightning.experiment.rounds.instability import add_instability, control_instability, measure_instability
from lth_lightning.experiment.rounds.sequential import SequentialRounds
from lth_lightning.experiment.rounds.stackable import check_stackable
from lth_lightning.experiment.training.callbacks import RecordOnTrainStart, RoundClock
from lth_lightning.experiment.training.measurement import (
    Measurement,
    control_columns,
    evaluate_at_best,
    kept_weights,
    round_line,
    row_metrics,
    scalars,
    test_columns,
)
from lth_lightning.experiment.training.trainer import make_trainer, resuming_quietly
from lth_lightning.pruning.magnitude import sparsity_report
from lth_lightning.pruning.targets import plan_rates, select_targets
from lth_lightning.stack.batches import MemberOrders
from lth_lightning.stack.callbacks import MemberLogger, MemberTracker
from lth_lightning.stack.module import StackedClassifier
from lth_lightning.stack.network import stack_states, unstack_state

__all__ = ["StackedRounds"]


def _member_metrics(logged: Mapping[str, float], member: str) -> dict[str, float]:
    """A member's metrics out of a stacked fit's (``seed_0/ticket/val/loss`` -> ``val/loss``)."""
    prefix = f"{member}/"
    return {k.removeprefix(prefix): v for k, v in logged.items() if k.startswith(prefix)}


def _own_weights(stacked_state: Mapping[str, Tensor], k: int, member: _Member) -> dict[str, Tensor]:
    """Member ``k``'s network out of a stacked state, by the template's names (as its ``init`` has them)."""
    own = unstack_state(stacked_state, k)  # the template's names: the stacked module keeps them
    return {name: own.get(name, tensor) for name, tensor in member.init.items()}


@dataclass(frozen=True)
class _Member:
    run: RunContext
    role: str  # "ticket" or a control's name
    masks: dict[str, Tensor]
    init: dict[str, Tensor]  # the template's state_dict names

    @property
    def name(self) -> str:
        return f"seed_{self.run.seed}/{self.role}"


class StackedRounds:
    """The executor that trains a round of several runs (one per seed) as members of one stacked network.

    Args:
        probe: A few training inputs (:func:`stacking_probe`), to check every round's stacked network.
        own_orders: Each seed's members read the seed's own data order (the DataModule's ``shuffle_seed`` set to
            the seed, as a sequential run of the seed reads it): each step takes one batch per seed
            (:class:`~lth_lightning.stack.batches.MemberBatches`). Otherwise every member reads the same batches.
    """

    def __init__(self, probe: Tensor, own_orders: bool = False) -> None:
        self.probe, self.own_orders = probe, own_orders
        self.sequential = SequentialRounds()  # what trains one network at a time: each round's instability copies
        self.summarized = False  # Lightning's model summary: for the first training only
        self.said: list[str] = []  # what the next fit says after its run folders (the pruned tensors)

    # ------------------------------------------------------------------ the members of a round
    def _ticket(self, run: RunContext, r: int, first: bool) -> _Member:
        if r == 0:
            selection = select_targets(run.model, run.lottery.parameters)
            plan_rates(selection.targets, run.lottery.amount, run.lottery.scope, run.lottery.rates)
            if run.lottery.verbose and first:  # said once the fit has its data, after the run folders
                self.said.append(selection.describe())
            masks = {t.name: torch.ones(t.shape, dtype=torch.bool) for t in selection.targets}
            init = {k: v.detach().to("cpu", copy=True) for k, v in run.model.state_dict().items()}
            return _Member(run, "ticket", masks, init)
        state = run.lottery.state
        if state.snapshot is None:
            raise RuntimeError(f"Seed {run.seed} has no rewind snapshot after round {r - 1}.")
        return _Member(run, "ticket", state.masks, state.snapshot)

    def members(self, r: int, runs: Sequence[RunContext]) -> tuple[list[_Member], dict[int, dict[str, Any]]]:
        """Round ``r``'s members, and the controls of each run that finished before."""
        members: list[_Member] = []
        finished: dict[int, dict[str, Any]] = {}
        for run in runs:
            ticket = self._ticket(run, r, run is runs[0])
            members.append(ticket)
            finished[run.seed] = {}
            for control in run.spec.controls if r > 0 else ():
                done = run.store.finished_control(r, control)
                if done is not None:
                    finished[run.seed][control] = done
                    continue
                masks, init = run.control(control, r, ticket.masks, ticket.init)
                members.append(_Member(run, control, masks, init))
        return members, finished

    # ------------------------------------------------------------------ one round
    def round(self, r: int, runs: Sequence[RunContext]) -> dict[int, RoundResult]:
        """Train round ``r`` of ``runs`` in one stacked fit; record every run's round as a sequential run would."""
        start = time.perf_counter()
        members, finished = self.members(r, runs)
        template = check_stackable(runs[0].model, runs[0].lottery)
        states, names = [m.init for m in members], [m.name for m in members]
        stacked = StackedClassifier(template, states, names, self.probe, member_batches=self.own_orders)
        datamodule = runs[0].datamodule
        if self.own_orders:  # every seed's members on the seed's order, as its sequential run reads it
            seeds = [run.seed for run in runs]
            datamodule = MemberOrders(datamodule, seeds, [seeds.index(m.run.seed) for m in members])
        callback = self._callback(r, members, stacked)
        experiment = runs[0].store.experiment
        checkpoint_dir = experiment.stacked_checkpoints(r, self._digest(members))
        clock = RoundClock()
        trainer, tracker = self._trainer(r, runs, members, [callback, clock], checkpoint_dir)
        ckpt = checkpoint_dir / "last.ckpt"
        for run in runs:  # what an interruption would resume
            run.store.training(r, clock, ckpt)
        if ckpt.is_file():
            rank_zero_info(f"Stacked round {r} was interrupted: resuming it from {ckpt}.")
        with resuming_quietly(checkpoint_dir):
            trainer.fit(stacked, datamodule=datamodule, ckpt_path=ckpt if ckpt.is_file() else None)
        logged = scalars(trainer.callback_metrics)  # the fit's, before the tests log theirs
        own = [_member_metrics(logged, m.name) for m in members]
        measured = self._measure(trainer, stacked, members, tracker, own)
        seconds = (time.perf_counter() - start + clock.before) / len(runs)  # with the part before an interruption
        rows = self._save(r, trainer, stacked, callback, members, measured, finished, seconds, own)
        if runs[0].store.is_zero and not runs[0].spec.keep_checkpoints:
            shutil.rmtree(checkpoint_dir, ignore_errors=True)  # every member's round is recorded
            with contextlib.suppress(OSError):  # stacked/ itself, once empty
                checkpoint_dir.parent.rmdir()
        return rows

    @staticmethod
    def _callback(r: int, members: Sequence[_Member], stacked: StackedClassifier) -> LotteryTicketCallback:
        """The callback of the stacked fit: every member's masks, pruned member by member at its end."""
        lottery = members[0].run.lottery
        callback = fresh_copy(lottery, verbose=False)
        state = LotteryState(
            round=r - 1,
            phase="pruned",
            names=list(members[0].masks),
            masks=stack_states([m.masks for m in members]),
            snapshot={k: v.detach().to("cpu", copy=True) for k, v in stacked.state_dict().items()},
            member_dims=1,
        )
        callback.set_state(state)
        return callback

    def _trainer(
        self,
        r: int,
        runs: Sequence[RunContext],
        members: Sequence[_Member],
        own_callbacks: Sequence[pl.Callback],
        checkpoint_dir: Path,
    ) -> tuple[pl.Trainer, MemberTracker | None]:
        spec = runs[0].spec
        names = [m.name for m in members]
        tracker = MemberTracker(names, spec.names.monitor, spec.names.mode) if spec.names.monitor is not None else None
        tensorboard = {
            m.name: (m.run.store.paths.training_run, round_label(r, None if m.role == "ticket" else m.role))
            for m in members
        }
        callbacks: list[pl.Callback] = [
            *own_callbacks,
            *([tracker] if tracker else []),
            RecordOnTrainStart([run.store for run in runs], then_say=self.said),
        ]
        self.said = []
        summary, self.summarized = not self.summarized, True
        trainer = make_trainer(
            f"stacked/{round_label(r)}",
            callbacks,
            spec.trainer,
            runs[0].store.experiment.root,
            checkpoint_dir,
            [MemberLogger(tensorboard)],
            summary=summary,
        )
        return trainer, tracker

    @staticmethod
    def _digest(members: Sequence[_Member]) -> str:
        return hashlib.sha256("|".join(m.name for m in members).encode()).hexdigest()[:8]

    # ------------------------------------------------------------------ after the fit
    @staticmethod
    def _test(trainer: pl.Trainer, stacked: StackedClassifier, members: Sequence[_Member]) -> list[dict[str, float]]:
        results = trainer.test(stacked, datamodule=members[0].run.datamodule, verbose=False)
        logged = scalars(results[0]) if results else {}
        return [test_columns(_member_metrics(logged, m.name), m.run.spec.names) for m in members]

    def _measure(
        self,
        trainer: pl.Trainer,
        stacked: StackedClassifier,
        members: Sequence[_Member],
        tracker: MemberTracker | None,
        own: Sequence[Mapping[str, float]],
    ) -> list[Measurement]:
        """Each member's validation and test metrics, and its test metric at its own early-stopping iteration."""
        names = members[0].run.spec.names
        validation = [names.validation(metrics) for metrics in own]
        tested = self._test(trainer, stacked, members)
        at_best: list[float | None] = [t[names.test_column] for t in tested]
        if tracker is not None and any(step not in (None, trainer.global_step) for step in tracker.best_step):
            retested = evaluate_at_best(
                trainer, stacked, tracker.load_best_into, lambda: self._test(trainer, stacked, members)
            )
            at_best = [t[names.test_column] for t in retested]
        out = []
        for k, member in enumerate(members):
            step = tracker.best_step[k] if tracker is not None else None
            value = tracker.best_value[k] if tracker is not None else None
            metrics = {**validation[k], **tested[k]}
            state = tracker.best_state if tracker is not None else None
            earlier = state is not None and step not in (None, trainer.global_step)
            best = _own_weights(state, k, member) if state is not None and earlier else None
            out.append(Measurement(metrics, step, value, at_best[k] if step is not None else None, best))
        return out

    def _control_columns(
        self, r: int, member: _Member, measured: Measurement, trained: Callable[[], Mapping[str, Tensor]]
    ) -> dict[str, float | None]:
        """A control member's columns, with its instability when the experiment asks for it (``trained``: the
        member's trained state, read only then)."""
        run = member.run
        columns = control_columns(measured, run.spec.names)
        if member.role in run.spec.instability_controls:  # its second copy trains alone, as the ticket's does
            own = trained()
            weights = {name: own.get(name, tensor) for name, tensor in member.init.items()}
            alone = self.sequential.alone(run)
            columns.update(control_instability(run, r, member.role, member.masks, member.init, weights, alone))
        return columns

    def _save(
        self,
        r: int,
        trainer: pl.Trainer,
        stacked: StackedClassifier,
        callback: LotteryTicketCallback,
        members: Sequence[_Member],
        measured: Sequence[Measurement],
        finished: Mapping[int, Mapping[str, Any]],
        seconds: float,
        own: Sequence[Mapping[str, float]],
    ) -> dict[int, RoundResult]:
        """Write every member's results into its run's folder, as a sequential round does."""
        trained = {k: v.detach() for k, v in stacked.state_dict().items()}
        next_masks = callback.masks
        rows: dict[int, RoundResult] = {}
        tickets: dict[int, tuple[_Member, dict[str, Tensor]]] = {}
        for k, member in enumerate(members):
            run, names = member.run, member.run.spec.names
            if member.role != "ticket":
                columns = self._control_columns(r, member, measured[k], partial(unstack_state, trained, k))
                if run.spec.keep_weights == "all":
                    kept = kept_weights(member.init, _own_weights(trained, k, member), measured[k].at_best)
                    run.store.save_control_weights(r, member.role, kept)
                run.store.save_control(r, member.role, columns, member.masks)
                rows[run.seed].controls[member.role] = columns
                continue
            report = sparsity_report(member.masks)
            weights = _own_weights(trained, k, member)
            run.store.save_ticket(r, member.masks, weights, measured[k].at_best)
            tickets[run.seed] = (member, weights)
            own_next = {n: next_masks[n][k] for n in member.masks}
            record_round(
                run.lottery,
                member.init,
                own_next,
                steps=trainer.global_step,
                epochs=trainer.current_epoch,
                metrics=own[k],
            )
            rows[run.seed] = RoundResult(
                round=r,
                density=report.density,
                metrics=row_metrics(measured[k], names),
                best_val_step=measured[k].best_step,
                steps=trainer.global_step,
                layer_density={t.name: t.density for t in report.tensors},
                controls=dict(finished.get(run.seed, {})),
            )
        for seed, row in rows.items():
            ticket, weights = tickets[seed]
            run = ticket.run
            row.controls = {c: row.controls[c] for c in run.spec.controls if c in row.controls}
            row.seconds = seconds
            if run.spec.instability:  # its second copy trains alone: stacked members all see the same batches
                add_instability(
                    row, measure_instability(run, r, ticket.masks, ticket.init, weights, self.sequential.alone(run))
                )
            run.store.finish_round(row, run.lottery.state_dict())
            rank_zero_info(round_line(row, run.spec.names, seed))
        return rows
