"""The round loop: ``run_lottery`` runs an experiment with one seed, ``run_seeds`` with several.

One fresh Trainer per training (a round of the ticket, or one of its controls), one
``LotteryTicketCallback`` carried across rounds, every path from :mod:`.paths`, and idempotent
steps: a finished round (its ``metrics.json``) or control (its ``control_<name>.json``) is read
back, never recomputed.
"""

from __future__ import annotations

import inspect
import json
import re
import shutil
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import lightning.pytorch as pl
import torch
import yaml
from lightning.pytorch.utilities import rank_zero_info

from lth_lightning.callback import LotteryTicketCallback
from lth_lightning.compat import detached_copy, global_rank
from lth_lightning.experiment.aggregate import aggregate_runs
from lth_lightning.experiment.clock import RoundClock
from lth_lightning.experiment.controls import CONTROLS, control_masks_and_init, control_seed
from lth_lightning.experiment.dashboard import write_run_report
from lth_lightning.experiment.identity import (
    check_same,
    check_same_experiment,
    experiment_identity,
    folder_name,
    hparams,
    plain,
    python_config,
    weights_digest,
)
from lth_lightning.experiment.lock import RunLock
from lth_lightning.experiment.paths import ExperimentPaths, round_label
from lth_lightning.experiment.results import MetricNames, RoundResult, check_logged, column, format_value, write_table
from lth_lightning.experiment.trainer import make_trainer, quiet_lightning
from lth_lightning.io import atomic_write_text, load_tensors, save_tensors
from lth_lightning.tracker import EarlyStoppingTracker

__all__ = ["Rounds", "SeedRuns", "is_global_zero", "run_lottery", "run_seeds"]

T = TypeVar("T")


def is_global_zero() -> bool:
    """Whether this process is rank zero (from the launcher's environment, before any Trainer exists)."""
    return global_rank() == 0


class Rounds(list[RoundResult]):
    """The rows of a run, one per round, and the folders it wrote.

    Attributes:
        run_dir: The run's folder (``<experiment>/seed_<s>``).
        experiment_dir: The experiment's folder.
    """

    def __init__(self, rows: Sequence[RoundResult], run_dir: Path, experiment_dir: Path) -> None:
        super().__init__(rows)
        self.run_dir, self.experiment_dir = run_dir, experiment_dir


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


# The run_lottery arguments run_seeds sets itself, for every seed.
_PER_SEED = frozenset({"lottery", "seed", "config", "report", "rounds"})
# The run_lottery arguments a runner keeps.
_RUNNER_ARGUMENTS = ("controls", "monitor", "mode", "test_metric", "keep_checkpoints")


def _scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The one-number entries of a metrics mapping, as floats."""
    return {k: float(v) for k, v in metrics.items() if not isinstance(v, torch.Tensor) or v.numel() == 1}


def _check_arguments(rounds: int, controls: Sequence[str]) -> None:
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"`rounds` must be an integer >= 1, got {rounds!r}.")
    unknown = [c for c in controls if c not in CONTROLS]
    if unknown or len(set(controls)) != len(controls):
        raise ValueError(f"`controls` must be distinct entries of {list(CONTROLS)}, got {list(controls)}.")


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
) -> Rounds:
    """Find a lottery ticket: ``rounds`` rounds of fit, test, prune and rewind.

    Every round gets a fresh ``Trainer`` built from the same ``trainer`` settings, the same
    ``lottery`` callback (which carries masks and the rewind snapshot across rounds), an
    :class:`~lth_lightning.tracker.EarlyStoppingTracker`, a ``ModelCheckpoint`` writing
    ``round_NN/checkpoints/last.ckpt`` after every epoch, and a TensorBoard run
    ``tensorboard/round_NN``. After ``fit`` it tests the trained network and the weights at the
    best monitored value. Round 0 is the dense network.

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
        controls: Control experiments trained at every round after the dense one, with the
            same recipe (:mod:`.controls`): ``"random_reinit"`` (the ticket's masks, a fresh
            initialization) and ``"random_prune"`` (random masks of the ticket's per-layer
            sizes, the original initialization). Their results are columns of the results.
        seed: The run's seed: its folder ``seed_<seed>`` and the controls' random draws. The
            module's initialization is the caller's (seed it before building the module;
            :func:`run_seeds` does).
        report: Redraw the plots and the TensorBoard summary after every round (about half a
            second each time); ``results.csv``/``.json`` are written regardless.
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
        keep_checkpoints: Keep every round's ``last.ckpt`` (the module and its optimizer state)
            after the round is recorded; by default it is removed then (the round's ``weights.pt``,
            masks and callback state are what later rounds and ``lth export`` read).

    Returns:
        One :class:`RoundResult` per round (a list, with ``run_dir`` and ``experiment_dir``).

    Raises:
        ValueError: If ``rounds < 1``, the folder holds another experiment, the run's folder a run
            started from other initial weights, or, after the first fit, ``monitor`` or
            ``test_metric`` was never logged (the message lists what was).
        RunFolderInUse: If another process runs in the run's folder.
    """
    _check_arguments(rounds, controls)
    lottery = lottery if lottery is not None else LotteryTicketCallback()
    arguments: dict[str, Any] = {"controls": controls, "monitor": monitor, "mode": mode, "test_metric": test_metric}
    arguments.update(rounds=rounds, keep_checkpoints=keep_checkpoints)
    runner = _make_runner(model, datamodule, lottery, trainer, out_dir, name, config, seed, arguments)
    probe = _stacking_probe(stack, model, lottery, datamodule)
    if probe is not None:
        from lth_lightning.experiment.stacked import StackedRounds

        return StackedRounds({seed: runner}, report, probe).run(rounds, progress)[seed]
    return runner.run(rounds, progress, report)


def _make_runner(
    model: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    lottery: LotteryTicketCallback,
    trainer: Mapping[str, Any] | None,
    out_dir: str | Path,
    name: str | None,
    config: Mapping[str, Any] | None,
    seed: int,
    arguments: Mapping[str, Any],
) -> _Runner:
    """The bookkeeping of one run: its folder (from the identity), callback, module and metric names."""
    names = MetricNames(arguments["monitor"], arguments["mode"], arguments["test_metric"])
    trainer_kwargs = dict(trainer or {})
    if config is None:
        settings = {"controls": list(arguments["controls"]), "seed": seed, "monitor": names.monitor, "mode": names.mode}
        settings.update(test_metric=names.test, rounds=arguments["rounds"], **lottery.settings())
        config = python_config(model, datamodule, settings, trainer_kwargs)
    identity = experiment_identity(config, model=model)
    experiment = ExperimentPaths(Path(out_dir) / (name or folder_name(config, identity)))
    controls, keep = list(arguments["controls"]), bool(arguments["keep_checkpoints"])
    return _Runner(
        model, datamodule, lottery, trainer_kwargs, experiment, seed, config, identity, names, controls, keep
    )


def _stacking_probe(
    stack: bool | None, model: pl.LightningModule, lottery: LotteryTicketCallback, datamodule: pl.LightningDataModule
) -> torch.Tensor | None:
    """Whether to stack (as asked, or, for None, where the module can, saying why not where it cannot).

    Returns:
        The probe batch the stacked rounds check their networks with, or None to train one network at a time.

    Raises:
        StackingError: If ``stack`` is True and the module cannot be stacked.
    """
    if stack is False:
        return None
    from lth_lightning.experiment.stacked import stacking_probe
    from lth_lightning.stack.network import StackingError

    try:
        return stacking_probe(model, lottery, datamodule)
    except StackingError as reason:
        if stack:
            raise StackingError(f"stack=True cannot stack this experiment: {reason}.") from reason
        rank_zero_info(f"Training the rounds one network at a time: {reason}.")
        return None


def run_seeds(
    make_model: Callable[[], pl.LightningModule],
    datamodule: pl.LightningDataModule,
    *,
    seeds: Sequence[int],
    rounds: int,
    lottery: LotteryTicketCallback | None = None,
    config: Mapping[str, Any] | None = None,
    report: bool = True,
    **kwargs: Any,
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
        **kwargs: Any other :func:`run_lottery` argument (``trainer``, ``controls``, ``out_dir``,
            ``name``, ``monitor``, ...).

    Raises:
        ValueError: If ``seeds`` is empty or repeats a seed.
        TypeError: For a keyword argument :func:`run_lottery` does not take.
    """
    if not seeds or len(set(seeds)) != len(seeds) or not all(isinstance(s, int) for s in seeds):
        raise ValueError(f"`seeds` must be a non-empty list of distinct integers, got {list(seeds)!r}.")
    options = _run_options(kwargs)
    template = lottery if lottery is not None else LotteryTicketCallback()
    stack = options.pop("stack")
    if stack is not False:  # the runners below take their arguments checked
        _check_arguments(rounds, options["controls"])
        arguments = {key: options[key] for key in _RUNNER_ARGUMENTS} | {"rounds": rounds}
        place = (options["trainer"], options["out_dir"], options["name"])
    runs: dict[int, Rounds] = {}
    runners: dict[int, _Runner] = {}
    for seed in seeds:
        pl.seed_everything(seed)
        callback = LotteryTicketCallback(
            **template.settings(), snapshot_device=template.snapshot_device, verbose=template.verbose
        )
        seed_config = None if config is None else {**config, "seed_everything": seed}
        if stack is False:
            runs[seed] = run_lottery(
                make_model(),
                datamodule,
                rounds=rounds,
                lottery=callback,
                seed=seed,
                config=seed_config,
                report=report,
                **options,
            )
            continue
        runners[seed] = _make_runner(make_model(), datamodule, callback, *place, seed_config, seed, arguments)
    if runners:
        first = runners[seeds[0]]
        progress = options["progress"]
        probe = _stacking_probe(stack, first.model, first.lottery, datamodule)
        if probe is not None:
            from lth_lightning.experiment.stacked import StackedRounds

            runs = StackedRounds(runners, report, probe).run(rounds, progress)
        else:
            runs = {seed: runner.run(rounds, progress, report) for seed, runner in runners.items()}
    experiment = ExperimentPaths(runs[seeds[0]].experiment_dir)
    runs_paths = [experiment.run(s) for s in seeds]
    aggregated = aggregate_runs(runs_paths, experiment.root, report=report, write=is_global_zero())
    return SeedRuns(experiment.root, runs, aggregated)


def _run_options(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``run_seeds``' keyword arguments for :func:`run_lottery`, with its own defaults for those not given.

    Raises:
        TypeError: For a keyword argument :func:`run_lottery` does not take, or one ``run_seeds`` sets per seed.
    """
    parameters = inspect.signature(run_lottery).parameters.values()
    defaults = {p.name: p.default for p in parameters if p.kind is p.KEYWORD_ONLY and p.name not in _PER_SEED}
    unknown = sorted(set(kwargs) - set(defaults))
    if unknown:
        raise TypeError(f"run_seeds() got unexpected keyword arguments {unknown}.")
    return {**defaults, **kwargs}


class _RoundProgress:
    """A progress bar over rounds (tqdm, as Lightning's own bars), on rank zero only."""

    def __init__(self, total: int, done: int, enabled: bool, test_column: str) -> None:
        self.bar = None
        self.test_column = test_column
        if enabled and is_global_zero():
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


@contextmanager
def resuming_quietly(checkpoint_dir: Path | None) -> Iterator[None]:
    """Without Lightning's "Checkpoint directory ... exists and is not empty": resuming there is the point."""
    with warnings.catch_warnings():
        if checkpoint_dir is not None:
            pattern = f"Checkpoint directory {re.escape(str(checkpoint_dir))} exists and is not empty"
            warnings.filterwarnings("ignore", message=pattern)
        yield


class RecordOnStart(pl.Callback):
    """Records the experiments (their identity) and the runs' configs when the first round trains, not before."""

    def __init__(self, runners: Sequence[_Runner]) -> None:
        self.runners = list(runners)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for runner in self.runners:
            runner.record(trainer.is_global_zero)


@dataclass
class Measured:
    """What one training measured: the metrics by column, and the early-stopping point."""

    metrics: dict[str, float]  # validation metrics at the end of training and test metrics, by column
    best_step: int | None
    best_value: float | None
    test_at_best: float | None


def with_best(measured: Measured, names: MetricNames) -> dict[str, float | None]:
    """The measured metrics, then the best monitored value and the test metric at that point."""
    metrics: dict[str, float | None] = dict(measured.metrics)
    if names.best_column is not None:
        metrics[names.best_column] = measured.best_value
    metrics[names.at_best_column] = measured.test_at_best
    return metrics


def test_at_best(
    trainer: pl.Trainer, model: pl.LightningModule, load_best: Callable[[torch.nn.Module], Any], test: Callable[[], T]
) -> T:
    """``test()`` on the weights ``load_best`` puts in ``model``, logging nothing; then the final weights are back.

    The runs' ``test/*`` scalars stay those of the final weights, which the round reports.
    """
    final = {k: v.detach().clone() for k, v in model.state_dict().items()}
    load_best(model)
    loggers, trainer.loggers = trainer.loggers, []
    try:
        return test()
    finally:
        trainer.loggers = loggers
        model.load_state_dict(final)


def control_columns(measured: Measured, names: MetricNames) -> dict[str, float | None]:
    """A control's columns: the test metric, at the early-stopping iteration, that step, the monitored value."""
    values: dict[str, float | None] = {
        names.test_column: measured.metrics[names.test_column],
        names.at_best_column: measured.test_at_best,
        "best_val_step": measured.best_step,
    }
    if names.monitor is not None:
        values[column(names.monitor)] = measured.metrics[column(names.monitor)]
    return values


class _Runner:
    """One run (an experiment with one seed): the fixed context of its rounds."""

    def __init__(
        self,
        model: pl.LightningModule,
        datamodule: pl.LightningDataModule,
        lottery: LotteryTicketCallback,
        trainer_kwargs: Mapping[str, Any],
        experiment: ExperimentPaths,
        seed: int,
        config: Mapping[str, Any],
        identity: Mapping[str, Any],
        names: MetricNames,
        controls: list[str],
        keep_checkpoints: bool,
    ) -> None:
        self.model, self.datamodule, self.lottery, self.trainer_kwargs = model, datamodule, lottery, trainer_kwargs
        self.experiment, self.paths, self.seed = experiment, experiment.run(seed), seed
        self.config, self.identity, self.names = dict(config), dict(identity), names
        self.run_identity = {"initial_weights": weights_digest(model)}  # the seed's: not the experiment's
        self.controls = [c for c in CONTROLS if c in controls]  # registry order
        self.keep_checkpoints = keep_checkpoints
        self.is_zero = is_global_zero()
        self.lock = RunLock(self.paths.root) if self.is_zero else None  # one process per run folder
        self.recorded = self.announced = self.summarized = False
        self.current: int | None = None  # the round being trained
        self.clock: RoundClock | None = None  # the clock of the ticket's training in that round
        self.checkpoint: Path | None = None  # and the checkpoint it resumes from

    # ------------------------------------------------------------------ the run
    def check_experiment(self) -> None:
        """Refuse a folder that holds another experiment, or a run folder whose run started from other weights."""
        check_same_experiment(self.experiment.identity, self.identity)
        check_same(
            self.paths.identity,
            self.run_identity,
            "run",
            "a run that started from other initial weights",
            f"Build the module after seeding as that run did (seed_everything({self.seed}), then the constructor, "
            "as lth fit and run_seeds do), or give this run another seed (its own seed_<s> folder).",
        )

    def run(self, rounds: int, progress: bool, report: bool) -> Rounds:
        created = [p for p in (self.experiment.root, self.paths.root) if not p.exists()]
        self.hold()  # refused: nothing touched
        bar = None
        try:
            self.check_experiment()
            rows = self.resume()
            bar = _RoundProgress(rounds, len(rows), progress, self.names.test_column)
            with quiet_lightning():
                for r in range(len(rows), rounds):
                    self.current = r
                    rows.append(self.round(r))
                    self.save_results(rows, report)
                    bar.update(rows[-1])
        except BaseException as error:
            self.say_interrupted(error)
            self.forget(created)
            raise
        finally:
            if bar is not None:
                bar.close()
            self.let_go()
        return Rounds(rows, self.paths.root, self.experiment.root)

    def hold(self) -> None:
        """Take the run folder's lock (rank zero; created with the folder).

        Raises:
            RunFolderInUse: If another process holds it.
        """
        if self.lock is not None:
            self.lock.acquire()

    def let_go(self) -> None:
        """Give the run folder's lock back."""
        if self.lock is not None:
            self.lock.release()

    def announce(self) -> None:
        """Say where the run is, once it has a folder (rank zero)."""
        if not self.announced:
            self.announced = True
            rank_zero_info(f"Run folder: {self.paths.root.resolve()}")

    def resume(self) -> list[RoundResult]:
        rows = [RoundResult(**json.loads(self.paths.metrics(r).read_text())) for r in self.paths.finished_rounds()]
        if rows:
            self.lottery.load_state_dict(load_tensors(self.paths.lottery_state(rows[-1].round)))
            self.announce()
            rank_zero_info(
                f"Resuming {self.paths.root}: rounds 0-{rows[-1].round} are finished and will not be recomputed."
            )
        return rows

    def record(self, is_zero: bool) -> None:
        """The first round of this invocation starts training: record the experiment and the run's config."""
        if self.recorded:
            return
        self.recorded = True
        if is_zero:
            if not self.experiment.identity.is_file():
                atomic_write_text(self.experiment.identity, yaml.safe_dump(self.identity, sort_keys=True))
            if not self.paths.identity.is_file():
                atomic_write_text(self.paths.identity, yaml.safe_dump(self.run_identity, sort_keys=True))
            atomic_write_text(self.paths.config, yaml.safe_dump(plain(self.config), sort_keys=False))
        self.announce()

    def forget(self, created: Sequence[Path]) -> None:
        """After a failure before anything was recorded, remove the folders this invocation created."""
        if self.recorded or not self.is_zero:
            return
        for folder in reversed(created):
            shutil.rmtree(folder, ignore_errors=True)

    def say_interrupted(self, error: BaseException) -> None:
        """After Ctrl-C (Lightning turns it into SystemExit) in a recorded run: what rerunning will resume."""
        if not isinstance(error, (KeyboardInterrupt, SystemExit)) or not self.recorded or self.current is None:
            return
        r, clock, checkpoint = self.current, self.clock, self.checkpoint
        if clock is not None and clock.checkpoint_epoch is not None and checkpoint is not None and checkpoint.is_file():
            where = f"from its checkpoint after epoch {clock.checkpoint_epoch} ({checkpoint})"
        else:
            where = "from its start (no epoch of it had finished)"
        kept = {0: "", 1: "round 0 is kept; "}.get(r, f"rounds 0-{r - 1} are kept; ")
        rank_zero_info(
            f"Interrupted in round {r} of seed {self.seed}: {kept}rerunning the same command resumes round {r} {where}."
        )

    def save_results(self, rows: Sequence[RoundResult], report: bool) -> None:
        """``results.csv``/``.json``, and with ``report`` the plots and the TensorBoard summary (rank zero)."""
        if self.is_zero:
            write_table(self.paths.results, [x.flat() for x in rows], [x.as_dict() for x in rows])
        if self.is_zero and report:
            write_run_report(self.paths, rows, hparams(self.config, seed=True), self.names)

    def save_ticket(self, r: int, masks: Mapping[str, torch.Tensor], weights: Mapping[str, torch.Tensor]) -> None:
        """The masks round ``r`` trained with and the network it trained (rank zero)."""
        if self.is_zero:
            save_tensors(dict(masks), self.paths.masks(r))
            save_tensors({k: v.detach().cpu() for k, v in weights.items()}, self.paths.weights(r))

    def save_control(self, r: int, control: str, columns: Mapping[str, Any], masks: Mapping[str, torch.Tensor]) -> None:
        """A control's masks, then its columns (which mark it finished) (rank zero)."""
        if self.is_zero:
            save_tensors(dict(masks), self.paths.control_masks(r, control))
            atomic_write_text(self.paths.control(r, control), json.dumps(dict(columns), indent=2))

    def finished_control(self, r: int, control: str) -> dict[str, float | None] | None:
        """A control's columns if it already finished in round ``r``."""
        done = self.paths.control(r, control)
        return dict(json.loads(done.read_text())) if done.is_file() else None

    def finish_round(self, row: RoundResult) -> None:
        """The callback's state after the round, then its row (which marks the round finished) (rank zero).

        Then the round's checkpoint is removed, unless ``keep_checkpoints``: nothing reads it once the round is
        recorded.
        """
        if self.is_zero:
            save_tensors(self.lottery.state_dict(), self.paths.lottery_state(row.round))
            atomic_write_text(self.paths.metrics(row.round), json.dumps(row.as_dict(), indent=2))  # written last
            if not self.keep_checkpoints:
                shutil.rmtree(self.paths.checkpoints(row.round), ignore_errors=True)
        self.say(row)

    # ------------------------------------------------------------------ one round
    def round(self, r: int) -> RoundResult:
        start = time.perf_counter()
        self.clock, self.checkpoint = RoundClock(), self.paths.last_checkpoint(r)
        ticket = self.train_and_test(round_label(r), self.model, self.lottery, self.paths.checkpoints(r), self.clock)
        lottery = self.lottery
        if lottery.round != r or lottery.phase != "pruned":
            raise RuntimeError(
                f"Round {r} ended with the lottery callback at round {lottery.round} ({lottery.phase}); "
                "the run folder and the callback state disagree."
            )
        history = lottery.history[-1]
        row = RoundResult(
            round=r,
            density=float(history["density"]),
            metrics=with_best(ticket, self.names),
            best_val_step=ticket.best_step,
            steps=int(history["steps"]),
            layer_density={k: float(v) for k, v in history["layer_density"].items()},
        )
        self.save_ticket(r, lottery.round_masks, self.model.state_dict())
        for control in self.controls if r > 0 else ():
            row.controls[control] = self.control(r, control)
        row.seconds = time.perf_counter() - start + self.clock.before  # with the part before an interruption
        self.finish_round(row)
        return row

    def control(self, r: int, control: str) -> dict[str, float | None]:
        finished = self.finished_control(r, control)
        if finished is not None:
            return finished
        seed = control_seed(self.seed, r, control)
        masks, init = control_masks_and_init(control, self.lottery.round_masks, self.lottery.snapshot, self.model, seed)
        fork = self.lottery.fork(masks, init)
        measured = self.train_and_test(round_label(r, control), detached_copy(self.model), fork, None, None)
        columns = control_columns(measured, self.names)
        self.save_control(r, control, columns, masks)
        return columns

    def say(self, row: RoundResult) -> None:
        names, test = self.names, self.names.test_column
        controls = "".join(f", {k} {format_value(v[test])}" for k, v in row.controls.items())
        rank_zero_info(
            f"Round {row.round} of seed {self.seed}: {100 * row.density:.2f}% of weights, "
            f"{names.test} {format_value(row.metrics[test])}, "
            f"early-stop step {format_value(row.best_val_step)} ({names.test} there "
            f"{format_value(row.metrics[names.at_best_column])}){controls}."
        )

    # ------------------------------------------------------------------ one training
    def train_and_test(
        self,
        label: str,
        model: pl.LightningModule,
        lottery: LotteryTicketCallback,
        checkpoint_dir: Path | None,
        clock: RoundClock | None,
    ) -> Measured:
        """Fit (resuming from ``checkpoint_dir/last.ckpt`` if there), test, and test the early-stopping weights.

        Raises:
            ValueError: If the monitored or the test metric was never logged.
        """
        names = self.names
        tracker = EarlyStoppingTracker(names.monitor, names.mode) if names.monitor is not None else None
        callbacks: list[pl.Callback] = [lottery, *([tracker] if tracker else []), *([clock] if clock else [])]
        callbacks.append(RecordOnStart([self]))
        summary, self.summarized = not self.summarized, True
        trainer = make_trainer(label, callbacks, self.trainer_kwargs, self.paths.root, checkpoint_dir, summary=summary)
        ckpt = checkpoint_dir / "last.ckpt" if checkpoint_dir is not None else None
        resume = ckpt if ckpt is not None and ckpt.is_file() else None
        if resume is not None:
            rank_zero_info(f"{label} was interrupted: resuming it from {resume}.")
        with resuming_quietly(checkpoint_dir):
            trainer.fit(model, datamodule=self.datamodule, ckpt_path=resume)
        metrics = names.validation(_scalars(trainer.callback_metrics))
        tested = self.test(trainer, model)
        metrics.update(tested)
        if tracker is None or tracker.best_state is None:
            return Measured(metrics, None, None, None)
        if tracker.best_step == trainer.global_step:  # the best weights are the final ones
            return Measured(metrics, tracker.best_step, tracker.best_value, tested[names.test_column])
        at_best = test_at_best(trainer, model, tracker.load_best_into, lambda: self.test(trainer, model))
        return Measured(metrics, tracker.best_step, tracker.best_value, at_best[names.test_column])

    def test(self, trainer: pl.Trainer, model: pl.LightningModule) -> dict[str, float]:
        """Every metric the module logs in ``test``, by column; the test metric must be one of them."""
        results = trainer.test(model, datamodule=self.datamodule, verbose=False)
        logged = _scalars(results[0]) if results else {}
        check_logged(self.names.test, "test_metric", "test", logged)
        return {column(k): v for k, v in logged.items()}
