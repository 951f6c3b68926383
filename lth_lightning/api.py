"""The Python entry points: ``run_lottery`` runs an experiment with one seed, ``run_seeds`` with several.

Both build an :class:`~lth_lightning.experiment.spec.ExperimentSpec` from their keyword arguments (the
experiment's options, each declared once there: :mod:`lth_lightning.options`; ``docs/options.md`` lists them)
and run it (:mod:`lth_lightning.experiment.rounds.seeds`); once the runs are stored, they print ``lth
report``'s tables of them. ``lth fit`` is their command-line twin (:mod:`lth_lightning.cli`). The tests hold
the signatures written here to the declarations.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl

from lth_lightning.callbacks.lottery_ticket import LotteryTicketCallback
from lth_lightning.experiment.controls.registry import ControlName
from lth_lightning.experiment.record.store import is_global_zero
from lth_lightning.experiment.rounds.seeds import Rounds, SeedRun, SeedRuns, run_experiment, run_seeds_of
from lth_lightning.experiment.spec import DataOrder, ExperimentSpec, KeepWeights, check_seeds
from lth_lightning.options import PYTHON, Option
from lth_lightning.pruning.saliency import GRASP_TEMPERATURE
from lth_lightning.report.command import closing_summary

__all__ = ["CALLER_OBJECTS", "run_lottery", "run_seeds"]

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


def run_lottery(
    model: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    *,
    rounds: int,
    lottery: LotteryTicketCallback | None = None,
    trainer: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    controls: Sequence[ControlName] = (),
    monitor: str | None = "val/loss",
    mode: Literal["min", "max"] = "min",
    test_metric: str = "test/acc",
    out_dir: str | Path = "runs",
    name: str | None = None,
    stack: bool | None = False,
    progress: bool = True,
    report: bool = True,
    keep_checkpoints: bool = False,
    keep_weights: KeepWeights = "ticket",
    instability: bool = False,
    instability_controls: Sequence[ControlName] = (),
    scoring_per_class: int = 10,
    grasp_temperature: float = GRASP_TEMPERATURE,
    data_order: DataOrder = "seed",
    seed: int = 0,
) -> Rounds:
    """Find a lottery ticket: ``rounds`` rounds of fit, test, prune and rewind.

    Every round gets a fresh ``Trainer`` from the ``trainer`` settings, the ``lottery`` callback
    (carrying masks and snapshot across rounds), an early-stopping tracker, a ``last.ckpt`` written
    every epoch, and its curves under ``round_NN/`` in the run's TensorBoard run ``tensorboard/training``;
    after ``fit`` the trained network and the weights at the best monitored value are tested. Round 0 is the
    dense network.

    The run's folder is ``<out_dir>/<experiment>/seed_<seed>/`` (layout:
    :mod:`lth_lightning.experiment.record.paths`). The experiment's folder is named after what
    defines it (``MLP-FashionMNIST-global0.2-1a2b3c4d``: the module's and datamodule's
    hyperparameters and architecture, the optimizers and LR schedulers ``configure_optimizers``
    builds, the callback's settings, the controls, the metric names and the Trainer's settings;
    :mod:`lth_lightning.experiment.record.identity`), so that every distinct experiment gets its
    own folder; ``name`` overrides it. The run's folder records the digest of the module's initial
    weights, which the seed produced. Calling it again with the same experiment resumes: finished
    rounds are read back, never recomputed; a round interrupted mid-way restarts from its last
    checkpoint. Nothing is recorded before the first round starts training: an invocation that fails
    before (a wrong data folder, a typo in ``rates``) leaves nothing behind. One process at a time
    runs in a run folder (:mod:`lth_lightning.experiment.record.lock`).

    Args:
        model: The LightningModule; its initial weights are the first round's.
        datamodule: The data.
        lottery, trainer, config: The objects the experiment runs with (:data:`CALLER_OBJECTS`: their help).
        rounds, controls, monitor, mode, test_metric, out_dir, name, stack, progress, report, keep_checkpoints,
            keep_weights, instability, instability_controls, scoring_per_class, grasp_temperature, data_order, seed:
            The experiment's options, each documented where it is declared
            (:class:`~lth_lightning.experiment.spec.ExperimentSpec`, ``docs/options.md``).

    Returns:
        One :class:`RoundResult` per round (a list, with ``run_dir`` and ``experiment_dir``).

    Raises:
        ValueError: If an argument is out of range (:class:`~lth_lightning.experiment.spec.ExperimentSpec`), the
            folder holds another experiment, the run's folder a run started from other initial weights, or, after
            the first fit, ``monitor`` or ``test_metric`` was never logged (the message lists what was).
        RunFolderInUse: If another process runs in the run's folder.
    """
    spec = ExperimentSpec.from_arguments(locals())  # the arguments the spec declares, as given
    seeded = SeedRun(model, lottery or LotteryTicketCallback(), config)
    rows = run_experiment(spec, datamodule, {seed: seeded})[seed]
    _print_summary(spec, rows.run_dir)
    return rows


def run_seeds(
    make_model: Callable[[], pl.LightningModule],
    datamodule: pl.LightningDataModule,
    *,
    rounds: int,
    seeds: Sequence[int],
    lottery: LotteryTicketCallback | None = None,
    trainer: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    controls: Sequence[ControlName] = (),
    monitor: str | None = "val/loss",
    mode: Literal["min", "max"] = "min",
    test_metric: str = "test/acc",
    out_dir: str | Path = "runs",
    name: str | None = None,
    stack: bool | None = False,
    progress: bool = True,
    report: bool = True,
    keep_checkpoints: bool = False,
    keep_weights: KeepWeights = "ticket",
    instability: bool = False,
    instability_controls: Sequence[ControlName] = (),
    scoring_per_class: int = 10,
    grasp_temperature: float = GRASP_TEMPERATURE,
    data_order: DataOrder = "seed",
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
        lottery, trainer, config: As :func:`run_lottery` takes them.
        rounds, seeds, controls, monitor, mode, test_metric, out_dir, name, stack, progress, report,
            keep_checkpoints, keep_weights, instability, instability_controls, scoring_per_class, grasp_temperature,
            data_order: The experiment's options, each documented where it is declared
            (:class:`~lth_lightning.experiment.spec.ExperimentSpec`, ``docs/options.md``).

    Raises:
        ValueError: If ``seeds`` is empty or repeats a seed, or another argument is out of range.
    """
    spec = ExperimentSpec.from_arguments(locals())  # the arguments the spec declares, as given
    runs = run_seeds_of(spec, check_seeds(seeds), make_model, datamodule, lottery or LotteryTicketCallback(), config)
    _print_summary(spec, runs.experiment_dir)
    return runs


def _print_summary(spec: ExperimentSpec, folder: Path) -> None:
    """The closing summary, ``lth report``'s tables of the stored runs, on rank zero when ``progress`` is on."""
    if spec.progress and is_global_zero():
        print(f"\n{closing_summary(folder)}\n\nRun folder: {Path(folder).resolve()}", flush=True)
