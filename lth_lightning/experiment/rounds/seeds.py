"""Running an experiment's seeds: each run's context (config, identity, folder), stacked or one network at a time.

:func:`run_experiment` is what :func:`~lth_lightning.api.run_lottery`, :func:`~lth_lightning.api.run_seeds` and
``lth fit`` end in (:func:`run_seeds_of` for several seeds, each from its own seeding). Each run trains under
its own data order (:func:`run_data_order`): by default the seed's
(OpenLTH's replicates vary both the initialization and the data order); with ``data_order="fixed"``
the DataModule's own. Stacked, the seeds of different orders train in one fit whose every step takes one
batch of each seed's order (:class:`~lth_lightning.stack.batches.MemberBatches`) where the DataModule is this
package's (its orders are drawn from ``shuffle_seed``); with another DataModule, whose order may come from
torch's global random state, each seed's round is a stacked fit of its own (:class:`OwnDataOrders`). Either
way every seed's folder is held before the first trains.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

from lth_lightning.callbacks.driving import fresh_copy
from lth_lightning.callbacks.lottery_ticket import LotteryTicketCallback
from lth_lightning.data.datamodule import IDXDataModule, shuffle_seed_set_to
from lth_lightning.experiment.dashboard.across_runs import aggregate_runs
from lth_lightning.experiment.record.identity import experiment_folder, python_config
from lth_lightning.experiment.record.module_identity import identity_of, warn_undeclared_arguments, weights_digest
from lth_lightning.experiment.record.paths import ExperimentPaths
from lth_lightning.experiment.record.round_result import RoundResult
from lth_lightning.experiment.record.store import RunStore, is_global_zero
from lth_lightning.experiment.rounds.context import RunContext
from lth_lightning.experiment.rounds.instability import check_instability
from lth_lightning.experiment.rounds.loop import Executor, run_rounds
from lth_lightning.experiment.rounds.round_logging import tracking
from lth_lightning.experiment.rounds.sequential import SequentialRounds
from lth_lightning.experiment.rounds.stackable import decide_stacking
from lth_lightning.experiment.rounds.stacked import StackedRounds
from lth_lightning.experiment.spec import ExperimentSpec

__all__ = ["OwnDataOrders", "Rounds", "SeedRun", "SeedRuns", "run_data_order", "run_experiment", "run_seeds_of"]


class Rounds(list[RoundResult]):
    """The rows of a run, one per round, and the folders it wrote.

    Attributes:
        run_dir: The run's folder (``<experiment>/seed_<s>``).
        experiment_dir: The experiment's folder.
    """

    def __init__(self, rows: Sequence[RoundResult], run_dir: Path, experiment_dir: Path) -> None:
        super().__init__(rows)
        self.run_dir, self.experiment_dir = run_dir, experiment_dir


@dataclass(frozen=True)
class SeedRun:
    """What a seed brings to an experiment: its module (built after seeding), its callback and its config.

    Attributes:
        model: The LightningModule; its weights when the run starts are round 0's.
        lottery: The callback carried across the run's rounds.
        config: The run's full config (``lth fit``'s), or None to build it from the objects given.
    """

    model: pl.LightningModule
    lottery: LotteryTicketCallback
    config: Mapping[str, Any] | None = None


def _context(spec: ExperimentSpec, seed: int, seeded: SeedRun, datamodule: pl.LightningDataModule) -> RunContext:
    """One run's context: its config and identity, its folder."""
    model, lottery, config = seeded.model, seeded.lottery, seeded.config
    if config is None:
        settings = {**spec.settings(), "seed": seed, **lottery.settings.defining()}
        warn_undeclared_arguments(model)
        warn_undeclared_arguments(datamodule)
        config = python_config(model, datamodule, settings, spec.trainer)
    identity = identity_of(config, model)
    folder = spec.out_path / spec.name if spec.name else experiment_folder(spec.out_path, config, identity)
    experiment = ExperimentPaths(folder)
    run_identity: dict[str, Any] = {"initial_weights": weights_digest(model)}  # the seed's: not the experiment's
    if spec.data_order == "seed":
        run_identity["data_order_seed"] = seed
    store = RunStore(experiment, seed, config, identity, run_identity, spec.names, spec.keep_checkpoints)
    return RunContext(spec, seed, model, datamodule, lottery, store)


def run_experiment(
    spec: ExperimentSpec, datamodule: pl.LightningDataModule, seeds: Mapping[int, SeedRun], finish: bool = True
) -> dict[int, Rounds]:
    """Run ``spec`` once per seed, stacked or not as it says (:func:`~.stackable.decide_stacking`).

    Stacked, every seed's round is one fit (with seeds of their own data orders, one per seed unless the DataModule
    is this package's: :class:`OwnDataOrders`); otherwise each seed runs all its rounds before the next. With
    ``finish``, the user's loggers' runs end with it (:func:`~.round_logging.tracking`; :func:`run_seeds_of` ends
    them after its last seed).
    """
    with tracking(spec.trainer, finish):
        return _run_experiment(spec, datamodule, seeds)


def _run_experiment(
    spec: ExperimentSpec, datamodule: pl.LightningDataModule, seeds: Mapping[int, SeedRun]
) -> dict[int, Rounds]:
    for seeded in seeds.values():
        check_instability(spec, seeded.lottery)
    runs = {seed: _context(spec, seed, seeded, datamodule) for seed, seeded in seeds.items()}
    first = next(iter(runs.values()))
    probe = decide_stacking(spec.stack, first.model, first.lottery, datamodule)
    rows: dict[int, list[RoundResult]] = {}
    if probe is not None:  # every seed's folder held from the start: a busy one refuses before any trains
        own_orders = spec.data_order == "seed"
        together = own_orders and len(runs) > 1 and isinstance(datamodule, IDXDataModule)  # one batch a seed a step
        executor = StackedRounds(probe, own_orders=together)
        rows = run_rounds(spec, runs, OwnDataOrders(executor) if own_orders and not together else executor)
    else:
        for seed, run in runs.items():
            with run_data_order(run):
                rows.update(run_rounds(spec, {seed: run}, SequentialRounds()))
    return {s: Rounds(rows[s], run.store.paths.root, run.store.experiment.root) for s, run in runs.items()}


@dataclass
class SeedRuns:
    """What :func:`run_seeds` ran.

    Attributes:
        experiment_dir: The experiment's folder, holding ``results_seeds.csv`` and one ``seed_<s>/`` per seed.
        runs: Each seed's rows.
        aggregated: Per round, the mean, std, min and max of every column over the seeds.
    """

    experiment_dir: Path
    runs: dict[int, Rounds]
    aggregated: list[dict[str, Any]]


def run_seeds_of(
    spec: ExperimentSpec,
    seeds: Sequence[int],
    make_model: Callable[[], pl.LightningModule],
    datamodule: pl.LightningDataModule,
    lottery: LotteryTicketCallback,
    config: Mapping[str, Any] | None,
) -> SeedRuns:
    """:func:`run_seeds` for a built spec (``lth fit --lottery.seeds`` calls it).

    For every seed: ``seed_everything``, a fresh callback with ``lottery``'s settings, a module from
    ``make_model()``, and its config with ``seed_everything`` set. Not stacked, each seed runs all
    its rounds before the next is seeded.
    """
    with tracking(spec.trainer):  # the user's loggers' runs end after the last seed
        runs: dict[int, Rounds] = {}
        seeded: dict[int, SeedRun] = {}
        for seed in seeds:
            pl.seed_everything(seed)
            fresh = fresh_copy(lottery)
            seed_config = None if config is None else {**config, "seed_everything": seed}
            if spec.stack is False:  # one seed after the other, each from its own seeding
                runs.update(run_experiment(spec, datamodule, {seed: SeedRun(make_model(), fresh, seed_config)}, False))
            else:
                seeded[seed] = SeedRun(make_model(), fresh, seed_config)
        if seeded:
            runs = run_experiment(spec, datamodule, seeded, False)
        experiment = ExperimentPaths(runs[seeds[0]].experiment_dir)
        paths = [experiment.run(s) for s in seeds]
        aggregated = aggregate_runs(paths, experiment.root, report=spec.report, write=is_global_zero())
        return SeedRuns(experiment.root, runs, aggregated)


class OwnDataOrders:
    """An executor that trains each run's round on its own, under the run's data order (:func:`run_data_order`).

    Args:
        executor: What trains one run's round (a stacked fit of its ticket and controls).
    """

    def __init__(self, executor: Executor) -> None:
        self.executor = executor

    def round(self, r: int, runs: Sequence[RunContext]) -> dict[int, RoundResult]:
        """Train round ``r`` of each of ``runs`` in turn, each under its own data order; each run's row by seed."""
        rows: dict[int, RoundResult] = {}
        for run in runs:
            with run_data_order(run):
                rows.update(self.executor.round(r, [run]))
        return rows


@contextmanager
def run_data_order(run: RunContext) -> Iterator[None]:
    """Train ``run`` under its data order: a DataModule with an integer ``shuffle_seed`` (this package's) takes the
    run's seed (``data_order="seed"``), restored after; any other draws its order from torch's random state, which
    :func:`~lth_lightning.api.run_seeds` seeds per seed. With ``data_order="fixed"`` nothing changes."""
    had = getattr(run.datamodule, "shuffle_seed", None)
    if run.spec.data_order != "seed" or isinstance(had, bool) or not isinstance(had, int):
        yield
        return
    with shuffle_seed_set_to(run.datamodule, run.seed):
        yield
