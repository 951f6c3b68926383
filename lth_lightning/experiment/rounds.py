"""The public face of the experiment layer: ``run_lottery`` runs an experiment with one seed, ``run_seeds`` with
several, and the types they return.

Both build an :class:`~.spec.ExperimentSpec` and a :class:`~.spec.RunContext` per seed, and hand
them to the one round loop (:mod:`.loop`) with an executor: :mod:`.sequential` (one network at a
time) or :mod:`.stacked` (every member of a round in one fit, where the module allows).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

from lth_lightning.callbacks.lottery_ticket import LotteryTicketCallback
from lth_lightning.experiment.aggregate import aggregate_runs
from lth_lightning.experiment.options import PYTHON, Option, takes_options
from lth_lightning.experiment.paths import ExperimentPaths
from lth_lightning.experiment.runner import Rounds, SeedRun, run_experiment
from lth_lightning.experiment.spec import EXPERIMENT_OPTIONS, ExperimentSpec, check_seeds
from lth_lightning.experiment.store import is_global_zero
from lth_lightning.report.command import closing_summary

__all__ = [
    "CALLER_OBJECTS",
    "Rounds",
    "SeedRun",
    "SeedRuns",
    "is_global_zero",
    "run_experiment",
    "run_lottery",
    "run_seeds",
    "run_seeds_of",
]


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


# The Python entry points' arguments that are objects rather than settings (``lth fit`` builds them from its config).
CALLER_OBJECTS = (
    Option(
        "lottery",
        LotteryTicketCallback | None,
        None,
        "The pruning callback whose settings every round (and every seed) uses; a default "
        "``LotteryTicketCallback()`` if None.",
        entry_points=PYTHON,
    ),
    Option(
        "trainer",
        Mapping[str, Any] | None,
        None,
        "Keyword arguments of every round's ``Trainer`` (``callbacks`` and loggers given here are deep-copied "
        "per round, fresh each time).",
        entry_points=PYTHON,
    ),
    Option(
        "config",
        Mapping[str, Any] | None,
        None,
        "The experiment's full configuration (``lth fit`` passes its own), saved as the run's ``config.yaml``; by "
        "default built from the objects given.",
        entry_points=PYTHON,
    ),
)
_ARGUMENTS = (*CALLER_OBJECTS, *EXPERIMENT_OPTIONS)


@takes_options("run_lottery", _ARGUMENTS)
def run_lottery(model: pl.LightningModule, datamodule: pl.LightningDataModule, **options: Any) -> Rounds:
    """Find a lottery ticket: ``rounds`` rounds of fit, test, prune and rewind.

    Every round gets a fresh ``Trainer`` from the ``trainer`` settings, the ``lottery`` callback
    (carrying masks and snapshot across rounds), an early-stopping tracker, a ``last.ckpt`` written
    every epoch and a TensorBoard run ``tensorboard/round_NN``; after ``fit`` the trained network and
    the weights at the best monitored value are tested. Round 0 is the dense network.

    The run's folder is ``<out_dir>/<experiment>/seed_<seed>/`` (layout: :mod:`.paths`). The
    experiment's folder is named after what defines it (``MLP-FashionMNIST-global0.2-1a2b3c4d``:
    the module's and datamodule's hyperparameters and architecture, the optimizers and LR
    schedulers ``configure_optimizers`` builds, the callback's settings, the controls, the metric
    names and the Trainer's settings; :mod:`.identity`), so that every distinct experiment gets
    its own folder; ``name`` overrides it. The run's folder records the digest of the module's
    initial weights, which the seed produced. Calling it again with the same experiment resumes:
    finished rounds are read back, never recomputed; a round interrupted mid-way restarts from
    its last checkpoint. Nothing is recorded before the first round starts training: an
    invocation that fails before (a wrong data folder, a typo in ``rates``) leaves nothing
    behind. One process at a time runs in a run folder (:mod:`.lock`).

    Args:
        model: The LightningModule; its initial weights are the first round's.
        datamodule: The data.
        {options}

    Returns:
        One :class:`RoundResult` per round (a list, with ``run_dir`` and ``experiment_dir``).

    Raises:
        ValueError: If an argument is out of range (:class:`~.spec.ExperimentSpec`), the folder holds another
            experiment, the run's folder a run started from other initial weights, or, after the first fit,
            ``monitor`` or ``test_metric`` was never logged (the message lists what was).
        RunFolderInUse: If another process runs in the run's folder.
    """
    lottery, config, seed = options.pop("lottery"), options.pop("config"), options.pop("seed")
    spec = ExperimentSpec(**options)
    seeded = SeedRun(model, lottery or LotteryTicketCallback(), config)
    rows = run_experiment(spec, datamodule, {seed: seeded})[seed]
    _print_summary(spec, rows.run_dir)
    return rows


@takes_options("run_seeds", _ARGUMENTS)
def run_seeds(
    make_model: Callable[[], pl.LightningModule], datamodule: pl.LightningDataModule, **options: Any
) -> SeedRuns:
    """Run the experiment once per seed and aggregate the runs, as ``lth fit --lottery.seeds`` does.

    For every seed: ``seed_everything(seed)``, a fresh module from ``make_model()``, a fresh
    callback with ``lottery``'s settings, and :func:`run_lottery` into ``<experiment>/seed_<s>/``
    (every seed of one experiment shares its folder). Then ``results_seeds.csv``/``.json``
    (mean, std, min and max of every column per round), plots with min-max bands and a TensorBoard
    summary are written to the experiment's folder, exactly as ``lth aggregate`` writes them for
    seeds run as separate jobs.

    Args:
        make_model: Builds the module (called after seeding, once per seed).
        datamodule: The data, shared by the seeds.
        {options}

    Raises:
        ValueError: If ``seeds`` is empty or repeats a seed, or another argument is out of range.
    """
    lottery, config, seeds = options.pop("lottery"), options.pop("config"), check_seeds(options.pop("seeds"))
    spec = ExperimentSpec(**options)
    runs = run_seeds_of(spec, seeds, make_model, datamodule, lottery or LotteryTicketCallback(), config)
    _print_summary(spec, runs.experiment_dir)
    return runs


def _print_summary(spec: ExperimentSpec, folder: Path) -> None:
    """The closing summary, ``lth report``'s tables of the run, on rank zero when ``progress`` is on."""
    if spec.progress and is_global_zero():
        print(f"\n{closing_summary(folder)}\n\nRun folder: {Path(folder).resolve()}", flush=True)


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
    runs: dict[int, Rounds] = {}
    seeded: dict[int, SeedRun] = {}
    for seed in seeds:
        pl.seed_everything(seed)
        fresh = LotteryTicketCallback(
            **lottery.settings(), snapshot_device=lottery.snapshot_device, verbose=lottery.verbose
        )
        seed_config = None if config is None else {**config, "seed_everything": seed}
        if spec.stack is False:  # one seed after the other, each from its own seeding
            runs.update(run_experiment(spec, datamodule, {seed: SeedRun(make_model(), fresh, seed_config)}))
        else:
            seeded[seed] = SeedRun(make_model(), fresh, seed_config)
    if seeded:
        runs = run_experiment(spec, datamodule, seeded)
    experiment = ExperimentPaths(runs[seeds[0]].experiment_dir)
    paths = [experiment.run(s) for s in seeds]
    aggregated = aggregate_runs(paths, experiment.root, report=spec.report, write=is_global_zero())
    return SeedRuns(experiment.root, runs, aggregated)
