"""The round loop: every unfinished round of every run, over an executor that trains a round.

One loop for every way of training: it holds each run's folder, refuses another experiment's,
reads finished rounds back (never recomputed), asks its executor for each round's rows
(:mod:`.sequential`: one network at a time; :mod:`.stacked`: every member of a round in one
fit), stores them, then draws each run's dashboard from what was stored, and after a failure
removes what a start that recorded nothing created.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from lth_lightning.experiment.dashboard.tensorboard import write_run_report
from lth_lightning.experiment.record.identity import hparams
from lth_lightning.experiment.record.round_result import RoundResult, format_value
from lth_lightning.experiment.record.store import RunStore, is_global_zero
from lth_lightning.experiment.rounds.context import RunContext
from lth_lightning.experiment.rounds.round_logging import log_round, start_logging, user_loggers
from lth_lightning.experiment.spec import ExperimentSpec
from lth_lightning.experiment.training.callbacks import in_terminal
from lth_lightning.experiment.training.trainer import quiet_lightning

__all__ = ["Executor", "RoundProgress", "run_rounds"]


class Executor(Protocol):
    """Trains one round of some runs and records it in their folders."""

    def round(self, r: int, runs: Sequence[RunContext]) -> dict[int, RoundResult]:
        """Train round ``r`` of ``runs``, record it in each run's folder, and return each run's row by seed."""
        ...


class RoundProgress:
    """A progress bar over rounds (tqdm, as Lightning's own bars), on rank zero and in a terminal only (in a log
    file each round's line says as much)."""

    def __init__(self, total: int, done: int, enabled: bool, test_column: str) -> None:
        self.bar = None
        self.test_column = test_column
        if enabled and is_global_zero() and in_terminal():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=done, desc="lottery rounds", unit="round", position=0, leave=True)

    def update(self, row: RoundResult) -> None:
        if self.bar is not None:
            test = format_value(row.metrics.get(self.test_column))
            self.bar.set_postfix({"weights": f"{100 * row.density:.1f}%", self.test_column: test})
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _resume(run: RunContext) -> list[RoundResult]:
    """The run's finished rounds; its callback continues after them, and its module too when it is not rewound."""
    rows, state = run.store.finished()
    if state is not None:
        run.lottery.load_state_dict(state)
        if run.lottery.retrain != "rewind" and rows:  # the next round retrains the last one's network
            run.model.load_state_dict(run.store.trained_weights(rows[-1].round))
    return rows


def _draw(store: RunStore, rows: Sequence[RoundResult]) -> None:
    """The run's plots and TensorBoard summary, from its stored rows (rank zero's)."""
    if store.is_zero:
        write_run_report(store.paths, rows, hparams(store.config, seed=True), store.names)


def run_rounds(
    spec: ExperimentSpec, runs: Mapping[int, RunContext], executor: Executor
) -> dict[int, list[RoundResult]]:
    """Every round of ``runs`` up to ``spec.rounds``, finished ones read back; each run's rows by seed.

    Raises:
        RunFolderInUse: If another process runs in one of the runs' folders (nothing is touched then).
        ValueError: If a folder holds another experiment or a run from other initial weights.
    """
    stores = [run.store for run in runs.values()]
    created = [p for store in stores for p in (*store.experiment.root.parents, store.experiment.root, store.paths.root)]
    created = list(dict.fromkeys(p for p in created if not p.exists()))  # out_dir too, when this made it
    held: list[Path] = []
    rows: dict[int, list[RoundResult]] = {}
    bar = None
    try:
        for store in stores:
            store.hold()
            held.append(store.paths.root)
        for seed, run in runs.items():
            run.store.check()
            rows[seed] = _resume(run)
        bar = RoundProgress(spec.rounds, min(len(r) for r in rows.values()), spec.progress, spec.names.test_column)
        loggers = user_loggers(spec.trainer) if is_global_zero() else []
        start_logging(loggers, hparams(stores[0].config))
        with quiet_lightning():
            for r in range(min(len(x) for x in rows.values()), spec.rounds):
                due = [runs[seed] for seed in runs if len(rows[seed]) == r]
                for seed, row in executor.round(r, due).items():
                    rows[seed].append(row)
                    runs[seed].store.save_results(rows[seed])
                    if spec.report:
                        _draw(runs[seed].store, rows[seed])
                    log_round(loggers, row, spec.names, seed)
                bar.update(rows[due[0].seed][-1])
    except BaseException as error:
        if bar is not None:  # before saying anything: a line said over an open bar is overwritten by its redraw
            bar.close()
            bar = None
        if len(held) < len(stores):  # a lock refused: only the folders of the locks taken go
            created = [p for p in created if p in held]
        for store in stores:
            if store.paths.root in held:
                store.say_interrupted(error)
                store.remove_failed_start(created)
        raise
    finally:
        if bar is not None:
            bar.close()
        for store in stores:
            if store.paths.root in held:
                store.let_go()
    return rows
