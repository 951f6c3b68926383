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
from typing import Any, Literal

import lightning.pytorch as pl

from lth_lightning.callback import LotteryTicketCallback
from lth_lightning.experiment.aggregate import aggregate_runs
from lth_lightning.experiment.paths import ExperimentPaths
from lth_lightning.experiment.runner import Rounds, SeedRun, run_experiment
from lth_lightning.experiment.spec import DataOrder, ExperimentSpec, check_seeds
from lth_lightning.experiment.store import is_global_zero
from lth_lightning.metric_names import MetricNames

__all__ = [
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


def run_lottery(
    model: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    *,
    rounds: int,
    lottery: LotteryTicketCallback | None = None,
    trainer: Mapping[str, Any] | None = None,
    out_dir: str | Path = "runs",
    name: str | None = None,
    config: Mapping[str, Any] | None = None,
    progress: bool = True,
    controls: Sequence[str] = (),
    seed: int = 0,
    report: bool = True,
    monitor: str | None = "val/loss",
    mode: Literal["min", "max"] = "min",
    test_metric: str = "test/acc",
    stack: bool | None = False,
    keep_checkpoints: bool = False,
    instability: bool = False,
    instability_controls: Sequence[str] = (),
    scoring_per_class: int = 10,
    grasp_temperature: float = 200.0,
    data_order: DataOrder = "seed",
) -> Rounds:
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
        rounds: Number of rounds (>= 1), the dense one included.
        lottery: The pruning callback; a default ``LotteryTicketCallback()`` if None.
        trainer: Keyword arguments of every round's ``Trainer`` (``callbacks`` and loggers given
            here are deep-copied per round, fresh each time).
        out_dir: Parent folder of the experiment folder.
        name: The experiment folder's name; by default ``<net>-<data>-<pruning>-<hash>``.
        config: The experiment's full configuration (``lth fit`` passes its own), saved as the
            run's ``config.yaml``; by default built from the objects given.
        progress: Show a progress bar over rounds.
        controls: Controls trained at every round after the dense one, with the same recipe (:mod:`.controls`):
            ``"random_reinit"``, ``"random_prune"``, ``"random_prune:global"``, pruning at initialization
            (``"snip"``, ``"grasp"``, ``"synflow"``, ``"magnitude_init"``) and its ablations (:mod:`.at_init`).
        seed: The run's seed: its folder ``seed_<seed>`` and the controls' random draws. The
            module's initialization is the caller's (seed it before building the module;
            :func:`run_seeds` does).
        report: Redraw the plots and the TensorBoard summary after every round (``results.csv``
            and ``.json`` are written regardless).
        monitor: The validation metric, by the name the module logs it under, whose best value
            marks the early-stopping iteration; the weights there are tested too. Every metric
            logged under its prefix (``val/`` for ``val/loss``) is recorded. None records no
            validation.
        mode: ``"min"`` or ``"max"``: which value of ``monitor`` is best.
        test_metric: The test metric the results report for every round and control.
        stack: Train each round's ticket and controls as members of one stacked network, in one
            fit (:mod:`.stacked`); the folder is the same as a sequential run's. ``None`` stacks
            where the module can (a :class:`~lth_lightning.LotteryClassifier` whose network
            ``torch.func`` can vectorize, rewinding to the initialization) and says why not
            elsewhere; ``True`` refuses a module that cannot, with the reason.
        keep_checkpoints: Keep every round's ``last.ckpt`` once the round is recorded (by default
            removed: its ``weights.pt``, masks and callback state are what later rounds read).
        instability: Measure every round's instability (:mod:`.instability`): a second copy
            trained under another data order, and the error barrier between the two.
        instability_controls: Controls (of ``controls``) whose instability is measured too (needs
            ``instability``): ``<control>_instability`` and ``<control>_instability_train``.
        scoring_per_class, grasp_temperature: SNIP's and GraSP's batch (examples per class) and GraSP's
            temperature (:mod:`.scoring`, :mod:`.at_init`).
        data_order: ``"seed"``: the run trains on its seed's data order (recorded in its ``run.yaml``);
            ``"fixed"``: on the DataModule's own (:mod:`.runner`).

    Returns:
        One :class:`RoundResult` per round (a list, with ``run_dir`` and ``experiment_dir``).

    Raises:
        ValueError: If ``rounds < 1``, the folder holds another experiment, the run's folder a run
            started from other initial weights, or, after the first fit, ``monitor`` or
            ``test_metric`` was never logged (the message lists what was), or another argument is out of
            range (:class:`~.spec.ExperimentSpec`).
        RunFolderInUse: If another process runs in the run's folder.
    """
    names = MetricNames(monitor, mode, test_metric)
    spec = _spec(
        rounds,
        controls,
        names,
        trainer,
        out_dir,
        name=name,
        stack=stack,
        progress=progress,
        report=report,
        keep_checkpoints=keep_checkpoints,
        instability=instability,
        instability_controls=tuple(instability_controls),
        scoring_per_class=scoring_per_class,
        grasp_temperature=grasp_temperature,
        data_order=data_order,
    )
    seeded = SeedRun(model, lottery or LotteryTicketCallback(), config)
    return run_experiment(spec, datamodule, {seed: seeded})[seed]


def run_seeds(
    make_model: Callable[[], pl.LightningModule],
    datamodule: pl.LightningDataModule,
    *,
    seeds: Sequence[int],
    rounds: int,
    lottery: LotteryTicketCallback | None = None,
    trainer: Mapping[str, Any] | None = None,
    out_dir: str | Path = "runs",
    name: str | None = None,
    config: Mapping[str, Any] | None = None,
    progress: bool = True,
    controls: Sequence[str] = (),
    report: bool = True,
    monitor: str | None = "val/loss",
    mode: Literal["min", "max"] = "min",
    test_metric: str = "test/acc",
    stack: bool | None = False,
    keep_checkpoints: bool = False,
    instability: bool = False,
    instability_controls: Sequence[str] = (),
    scoring_per_class: int = 10,
    grasp_temperature: float = 200.0,
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
        seeds: Distinct seeds.
        rounds: Rounds per seed.
        lottery: The callback whose settings every seed uses.
        config: The full config (``lth fit`` passes its own); ``seed_everything`` is set per seed.
        report: Write plots and TensorBoard summaries.
        trainer, out_dir, name, progress, controls, monitor, mode, test_metric, stack, keep_checkpoints,
            instability, instability_controls, scoring_per_class, grasp_temperature, data_order: As for
            :func:`run_lottery`.

    Raises:
        ValueError: If ``seeds`` is empty or repeats a seed, or another argument is out of range.
    """
    seeds = check_seeds(seeds)
    names = MetricNames(monitor, mode, test_metric)
    spec = _spec(
        rounds,
        controls,
        names,
        trainer,
        out_dir,
        name=name,
        stack=stack,
        progress=progress,
        report=report,
        keep_checkpoints=keep_checkpoints,
        instability=instability,
        instability_controls=tuple(instability_controls),
        scoring_per_class=scoring_per_class,
        grasp_temperature=grasp_temperature,
        data_order=data_order,
    )
    return run_seeds_of(spec, seeds, make_model, datamodule, lottery or LotteryTicketCallback(), config)


def _spec(
    rounds: int,
    controls: Sequence[str],
    names: MetricNames,
    trainer: Mapping[str, Any] | None,
    out_dir: str | Path,
    **options: Any,
) -> ExperimentSpec:
    """The spec of :func:`run_lottery`'s and :func:`run_seeds`' shared keyword arguments (``options``: the
    rest of their keywords, each checked by the spec)."""
    trainer = dict(trainer or {})
    return ExperimentSpec(
        rounds=rounds, controls=tuple(controls), names=names, trainer=trainer, out_dir=Path(out_dir), **options
    )


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
