"""Stacked rounds: every seed's ticket and its controls trained as members of one network, in one fit per round.

Round ``r`` has one member per seed that has not finished it (its ticket) and, from round 1, one
per control of that seed not yet finished. Each ticket trains from its own initialization under its
own masks and is pruned by its own trained magnitudes; each control's masks and initialization
come from its seed's ticket exactly as in a sequential run (:mod:`.controls`). Every seed's run
folder is then written as a sequential run writes it (masks, weights, callback state, controls,
results, plots, TensorBoard), so everything downstream is the same; the stacked checkpoint lives
in the experiment folder (``stacked/``).
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor

from lth_lightning.callback import LotteryTicketCallback
from lth_lightning.classifier import LotteryClassifier
from lth_lightning.experiment.clock import RoundClock
from lth_lightning.experiment.controls import control_masks_and_init, control_seed
from lth_lightning.experiment.paths import round_label
from lth_lightning.experiment.results import RoundResult, check_logged, column
from lth_lightning.experiment.rounds import (
    Measured,
    RecordOnStart,
    Rounds,
    _RoundProgress,
    _Runner,
    _scalars,
    control_columns,
    resuming_quietly,
    test_at_best,
    with_best,
)
from lth_lightning.experiment.trainer import make_trainer, quiet_lightning
from lth_lightning.pruning import sparsity_report
from lth_lightning.stack.callbacks import MemberLogger, MemberTracker
from lth_lightning.stack.module import StackedClassifier
from lth_lightning.stack.network import StackingError, stack_network, stack_states, unstack_state
from lth_lightning.state import LotteryState
from lth_lightning.targets import plan_rates, select_targets

__all__ = ["StackedRounds", "check_stackable", "probe_batch", "stacking_probe"]


def probe_batch(datamodule: pl.LightningDataModule, size: int = 8) -> Tensor:
    """A few training inputs, to check a stacked network member by member before it trains."""
    datamodule.prepare_data()
    datamodule.setup("fit")
    inputs = next(iter(datamodule.train_dataloader()))[0]
    return inputs[:size].detach().cpu()


def check_stackable(model: pl.LightningModule, lottery: LotteryTicketCallback) -> LotteryClassifier:
    """``model``, if its kind and the callback's settings let its rounds train as stacked members.

    Raises:
        StackingError: Why they cannot.
    """
    if not isinstance(model, LotteryClassifier):
        raise StackingError(
            f"stacking trains the network of a LotteryClassifier as stacked members; {type(model).__name__} is not "
            "one (wrap your network in LotteryClassifier(net=...), or train with stack=false)"
        )
    if lottery.rewind_step != 0:
        raise StackingError(
            f"stacking rewinds to the initialization; rewind_step={lottery.rewind_step} trains with stack=false"
        )
    return model


def stacking_probe(
    model: pl.LightningModule, lottery: LotteryTicketCallback, datamodule: pl.LightningDataModule
) -> Tensor:
    """A few training inputs on which ``model``'s network was checked to run as stacked members.

    The data is read only after :func:`check_stackable` passes: a module that cannot stack leaves
    its datamodule to the Trainer (whose ``setup`` many datamodules need, and whose shuffling draws
    from torch's global random state).

    Raises:
        StackingError: Why ``model`` cannot train its rounds as stacked members.
    """
    classifier = check_stackable(model, lottery)
    probe = probe_batch(datamodule)
    state = {k.removeprefix("net."): v for k, v in classifier.state_dict().items() if k.startswith("net.")}
    stack_network(classifier.net, [state], probe)
    return probe


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not empty, or gone
        folder.rmdir()


def _own(logged: Mapping[str, float], member: str) -> dict[str, float]:
    """A member's metrics out of a stacked fit's (``seed_0/ticket/val/loss`` -> ``val/loss``)."""
    prefix = f"{member}/"
    return {k.removeprefix(prefix): v for k, v in logged.items() if k.startswith(prefix)}


@dataclass(frozen=True)
class _Member:
    seed: int
    role: str  # "ticket" or a control's name
    masks: dict[str, Tensor]
    init: dict[str, Tensor]  # the template's state_dict names

    @property
    def name(self) -> str:
        return f"seed_{self.seed}/{self.role}"


class StackedRounds:
    """The rounds of several runs (one per seed) trained together, one stacked fit per round.

    Args:
        runners: Each seed's run (its folder, callback, module and bookkeeping), by seed.
        report: Redraw each run's plots and TensorBoard summary after every round.
        probe: A few training inputs (:func:`stacking_probe`), to check every round's stacked network.
    """

    def __init__(self, runners: Mapping[int, _Runner], report: bool, probe: Tensor) -> None:
        self.runners = dict(runners)
        self.report, self.probe = report, probe
        first = next(iter(self.runners.values()))
        self.names, self.controls, self.datamodule = first.names, first.controls, first.datamodule
        self.trainer_kwargs, self.experiment = first.trainer_kwargs, first.experiment
        self.keep_checkpoints, self.summarized = first.keep_checkpoints, False

    def run(self, rounds: int, progress: bool) -> dict[int, Rounds]:
        """Train every unfinished round of every seed; return each seed's rows."""
        rows: dict[int, list[RoundResult]] = {}
        created = [p for runner in self.runners.values() for p in (runner.experiment.root, runner.paths.root)]
        created = list(dict.fromkeys(p for p in created if not p.exists()))
        held: list[_Runner] = []
        bar = None
        try:
            for runner in self.runners.values():
                runner.hold()
                held.append(runner)
            for seed, runner in self.runners.items():
                runner.check_experiment()
                rows[seed] = runner.resume()
            bar = _RoundProgress(rounds, min(len(r) for r in rows.values()), progress, self.names.test_column)
            with quiet_lightning():
                for r in range(min(len(x) for x in rows.values()), rounds):
                    seeds = [seed for seed in self.runners if len(rows[seed]) == r]
                    for seed in seeds:
                        self.runners[seed].current = r
                    for seed, row in self.round(r, seeds).items():
                        rows[seed].append(row)
                        self.runners[seed].save_results(rows[seed], self.report)
                    bar.update(rows[seeds[0]][-1])
        except BaseException as error:
            if len(held) < len(self.runners):  # a seed's lock refused: only the folders of the locks taken go
                created = [p for p in created if p in {runner.paths.root for runner in held}]
            for runner in held:
                runner.say_interrupted(error)
                runner.forget(created)
            raise
        finally:
            if bar is not None:
                bar.close()
            for runner in held:
                runner.let_go()
        return {s: Rounds(rows[s], x.paths.root, x.experiment.root) for s, x in self.runners.items()}

    # ------------------------------------------------------------------ the members of a round
    def _ticket(self, seed: int, r: int) -> _Member:
        runner = self.runners[seed]
        if r == 0:
            selection = select_targets(runner.model, runner.lottery.parameters)
            plan_rates(selection.targets, runner.lottery.amount, runner.lottery.scope, runner.lottery.rates)
            if runner.lottery.verbose and seed == next(iter(self.runners)):
                rank_zero_info(selection.describe())
            masks = {t.name: torch.ones(t.shape, dtype=torch.bool) for t in selection.targets}
            init = {k: v.detach().to("cpu", copy=True) for k, v in runner.model.state_dict().items()}
            return _Member(seed, "ticket", masks, init)
        state = runner.lottery.state
        if state.snapshot is None:
            raise RuntimeError(f"Seed {seed} has no rewind snapshot after round {r - 1}.")
        return _Member(seed, "ticket", state.masks, state.snapshot)

    def members(self, r: int, seeds: Sequence[int]) -> tuple[list[_Member], dict[int, dict[str, Any]]]:
        """Round ``r``'s members, and the controls of each seed that finished before."""
        members: list[_Member] = []
        finished: dict[int, dict[str, Any]] = {}
        for seed in seeds:
            ticket = self._ticket(seed, r)
            members.append(ticket)
            finished[seed] = {}
            for control in self.controls if r > 0 else ():
                done = self.runners[seed].finished_control(r, control)
                if done is not None:
                    finished[seed][control] = done
                    continue
                masks, init = control_masks_and_init(
                    control, ticket.masks, ticket.init, self.runners[seed].model, control_seed(seed, r, control)
                )
                members.append(_Member(seed, control, masks, init))
        return members, finished

    # ------------------------------------------------------------------ one round
    def round(self, r: int, seeds: Sequence[int]) -> dict[int, RoundResult]:
        """Train round ``r`` of ``seeds`` in one stacked fit; save every seed's round as a sequential run would."""
        start = time.perf_counter()
        members, finished = self.members(r, seeds)
        template = check_stackable(self.runners[seeds[0]].model, self.runners[seeds[0]].lottery)
        stacked = StackedClassifier(template, [m.init for m in members], [m.name for m in members], self.probe)
        callback = self._callback(r, members, stacked)
        checkpoint_dir = self.experiment.stacked_checkpoints(r, self._digest(members))
        clock = RoundClock()
        trainer, tracker = self._trainer(r, members, [callback, clock], checkpoint_dir)
        ckpt = checkpoint_dir / "last.ckpt"
        for seed in seeds:  # what an interruption would resume
            self.runners[seed].clock, self.runners[seed].checkpoint = clock, ckpt
        if ckpt.is_file():
            rank_zero_info(f"Stacked round {r} was interrupted: resuming it from {ckpt}.")
        with resuming_quietly(checkpoint_dir):
            trainer.fit(stacked, datamodule=self.datamodule, ckpt_path=ckpt if ckpt.is_file() else None)
        logged = _scalars(trainer.callback_metrics)  # the fit's, before the tests log theirs
        own = [_own(logged, m.name) for m in members]
        measured = self._measure(trainer, stacked, members, tracker, own)
        seconds = (time.perf_counter() - start + clock.before) / len(seeds)  # with the part before an interruption
        rows = self._save(r, trainer, stacked, callback, members, measured, finished, seconds, own)
        if self.runners[seeds[0]].is_zero and not self.keep_checkpoints:
            shutil.rmtree(checkpoint_dir, ignore_errors=True)  # every member's round is recorded
            _remove_if_empty(checkpoint_dir.parent)
        return rows

    def _callback(self, r: int, members: Sequence[_Member], stacked: StackedClassifier) -> LotteryTicketCallback:
        """The callback of the stacked fit: every member's masks, pruned member by member at its end."""
        lottery = self.runners[members[0].seed].lottery
        callback = LotteryTicketCallback(**lottery.settings(), snapshot_device=lottery.snapshot_device, verbose=False)
        names = list(members[0].masks)
        state = LotteryState(
            round=r - 1,
            phase="pruned",
            names=names,
            masks=stack_states([m.masks for m in members]),
            snapshot={k: v.detach().to("cpu", copy=True) for k, v in stacked.state_dict().items()},
            member_dims=1,
        )
        callback.set_state(state)
        return callback

    def _trainer(
        self, r: int, members: Sequence[_Member], own_callbacks: Sequence[pl.Callback], checkpoint_dir: Path
    ) -> tuple[pl.Trainer, MemberTracker | None]:
        names = [m.name for m in members]
        tracker = MemberTracker(names, self.names.monitor, self.names.mode) if self.names.monitor is not None else None
        runs = {
            m.name: self.runners[m.seed].paths.tensorboard / round_label(r, None if m.role == "ticket" else m.role)
            for m in members
        }
        callbacks: list[pl.Callback] = [
            *own_callbacks,
            *([tracker] if tracker else []),
            RecordOnStart(list(self.runners.values())),
        ]
        summary, self.summarized = not self.summarized, True
        trainer = make_trainer(
            f"stacked/{round_label(r)}",
            callbacks,
            self.trainer_kwargs,
            self.experiment.root,
            checkpoint_dir,
            [MemberLogger(runs)],
            summary=summary,
        )
        return trainer, tracker

    @staticmethod
    def _digest(members: Sequence[_Member]) -> str:
        return hashlib.sha256("|".join(m.name for m in members).encode()).hexdigest()[:8]

    # ------------------------------------------------------------------ after the fit
    def _test(
        self, trainer: pl.Trainer, stacked: StackedClassifier, members: Sequence[_Member]
    ) -> list[dict[str, float]]:
        results = trainer.test(stacked, datamodule=self.datamodule, verbose=False)
        logged = _scalars(results[0]) if results else {}
        out = []
        for member in members:
            own = _own(logged, member.name)
            check_logged(self.names.test, "test_metric", "test", own)
            out.append({column(k): v for k, v in own.items()})
        return out

    def _measure(
        self,
        trainer: pl.Trainer,
        stacked: StackedClassifier,
        members: Sequence[_Member],
        tracker: MemberTracker | None,
        own: Sequence[Mapping[str, float]],
    ) -> list[Measured]:
        """Each member's validation and test metrics, and its test metric at its own early-stopping iteration."""
        validation = [self.names.validation(metrics) for metrics in own]
        tested = self._test(trainer, stacked, members)
        test = self.names.test_column
        at_best: list[float | None] = [t[test] for t in tested]
        if tracker is not None and any(step not in (None, trainer.global_step) for step in tracker.best_step):
            retested = test_at_best(
                trainer, stacked, tracker.load_best_into, lambda: self._test(trainer, stacked, members)
            )
            at_best = [t[test] for t in retested]
        out = []
        for k in range(len(members)):
            step = tracker.best_step[k] if tracker is not None else None
            value = tracker.best_value[k] if tracker is not None else None
            out.append(Measured({**validation[k], **tested[k]}, step, value, at_best[k] if step is not None else None))
        return out

    def _save(
        self,
        r: int,
        trainer: pl.Trainer,
        stacked: StackedClassifier,
        callback: LotteryTicketCallback,
        members: Sequence[_Member],
        measured: Sequence[Measured],
        finished: Mapping[int, Mapping[str, Any]],
        seconds: float,
        own: Sequence[Mapping[str, float]],
    ) -> dict[int, RoundResult]:
        """Write every member's results into its seed's run folder, as a sequential round does."""
        trained = {k: v.detach() for k, v in stacked.state_dict().items()}
        next_masks = callback.masks
        rows: dict[int, RoundResult] = {}
        for k, member in enumerate(members):
            runner = self.runners[member.seed]
            if member.role != "ticket":
                columns = control_columns(measured[k], self.names)
                runner.save_control(r, member.role, columns, member.masks)
                rows[member.seed].controls[member.role] = columns
                continue
            report = sparsity_report(member.masks)
            trained_k = unstack_state(trained, k)  # the template's names: the stacked module keeps them
            weights = {name: trained_k.get(name, tensor) for name, tensor in member.init.items()}
            runner.save_ticket(r, member.masks, weights)
            own_next = {n: next_masks[n][k] for n in member.masks}
            self._advance(runner, r, member, own_next, trainer, own[k])
            rows[member.seed] = RoundResult(
                round=r,
                density=report.density,
                metrics=with_best(measured[k], self.names),
                best_val_step=measured[k].best_step,
                steps=trainer.global_step,
                layer_density={t.name: t.density for t in report.tensors},
                controls=dict(finished.get(member.seed, {})),
            )
        for seed, row in rows.items():
            row.controls = {c: row.controls[c] for c in self.controls if c in row.controls}
            row.seconds = seconds
            self.runners[seed].finish_round(row)
        return rows

    @staticmethod
    def _advance(
        runner: _Runner,
        r: int,
        member: _Member,
        next_masks: Mapping[str, Tensor],
        trainer: pl.Trainer,
        metrics: Mapping[str, float],
    ) -> None:
        """The seed's callback state after round ``r``, as its own fit would have left it."""
        state = runner.lottery.state
        if r == 0:
            state.start({n: tuple(m.shape) for n, m in member.masks.items()}, member.init)
        else:
            state.begin_fit()
        state.finish(next_masks, steps=trainer.global_step, epochs=trainer.current_epoch, metrics=metrics)
        runner.lottery.set_state(state)
