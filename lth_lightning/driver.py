"""``run_lottery``: the round driver. One fresh Trainer per round, one callback across rounds."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info

from lth_lightning.aggregate import aggregate
from lth_lightning.callback import LotteryTicketCallback
from lth_lightning.compat import detached_copy, global_rank
from lth_lightning.io import atomic_write_text, load_tensors, save_tensors
from lth_lightning.pruning import random_masks
from lth_lightning.report import write_report
from lth_lightning.results import DEFAULT_METRICS, MetricNames, RoundResult, check_logged, column, write_table
from lth_lightning.tracker import EarlyStoppingTracker

__all__ = [
    "RoundResult",
    "control_masks_and_init",
    "is_global_zero",
    "run_lottery",
    "write_aggregate",
]

CONTROLS = ("random_reinit", "random_prune")
# Keys of a run's config that may change between invocations on the same run folder.
RESUMABLE_KEYS = (
    "lottery.rounds",
    "lottery.seeds",
    "lottery.progress",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
)


def is_global_zero() -> bool:
    """Whether this process is rank zero (from the launcher's environment, before any Trainer exists)."""
    return global_rank() == 0


def _scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The one-number entries of a metrics mapping, as floats."""
    return {k: float(v) for k, v in metrics.items() if not isinstance(v, torch.Tensor) or v.numel() == 1}


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _check_same_experiment(run_dir: Path, config: Mapping[str, Any]) -> None:
    path = run_dir / "config.yaml"
    if not path.is_file():
        return
    saved = _flatten(yaml.safe_load(path.read_text()) or {})
    current = _flatten(yaml.safe_load(yaml.safe_dump(dict(config))) or {})
    differing = sorted(
        k for k in set(saved) | set(current) if k not in RESUMABLE_KEYS and saved.get(k) != current.get(k)
    )
    if differing:
        details = "; ".join(f"{k}: folder has {saved.get(k)!r}, now {current.get(k)!r}" for k in differing[:10])
        more = f" (and {len(differing) - 10} more)" if len(differing) > 10 else ""
        raise ValueError(
            f"The run folder {run_dir} holds another experiment: its config.yaml differs in {details}{more}. "
            "Use another --lottery.name or out_dir, or delete the folder to start over."
        )


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
            test = row.metrics.get(self.test_column)
            test_text = "-" if test is None else f"{test:.4f}"
            self.bar.set_postfix({"weights": f"{100 * row.density:.1f}%", self.test_column: test_text})
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_lottery(
    model: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    *,
    rounds: int,
    lottery: LotteryTicketCallback | None = None,
    trainer: Mapping[str, Any] | None = None,
    out_dir: str | Path = "runs",
    name: str = "lottery",
    config: Mapping[str, Any] | None = None,
    progress: bool = True,
    controls: Sequence[str] = (),
    seed: int = 0,
    report: bool = True,
    monitor: str | None = "val/loss",
    mode: Literal["min", "max"] = "min",
    test_metric: str = "test/acc",
) -> list[RoundResult]:
    """Find a lottery ticket: ``rounds`` rounds of fit, test, prune and rewind.

    Every round gets a fresh ``Trainer`` built from the same ``trainer`` settings, the same
    ``lottery`` callback (which carries masks and the rewind snapshot across rounds), an
    :class:`~lth_lightning.tracker.EarlyStoppingTracker`, a ``ModelCheckpoint`` writing
    ``round_NN/checkpoints/last.ckpt`` after every epoch, and a TensorBoard logger whose run is
    ``tensorboard/round_NN``. After ``fit`` it tests the trained network and the weights at the
    minimum validation loss. Round 0 is the dense network.

    The run folder ``<out_dir>/<name>/`` holds ``config.yaml``, ``results.csv``,
    ``results.json``, the plots, ``tensorboard/`` and one ``round_NN/`` per round with
    ``metrics.json``, ``masks.pt`` (the masks that round trained with), ``weights.pt`` (the
    trained network), ``lottery.pt`` (the callback's state after the round) and
    ``checkpoints/last.ckpt``. Every file is written
    atomically by rank zero.

    Calling it again on the same folder resumes: finished rounds (those with ``metrics.json``)
    are read back, never recomputed; a round interrupted mid-way restarts from its last
    checkpoint. A folder holding a different experiment (``config`` differs) is refused.

    Args:
        model: The LightningModule; its initial weights are the first round's.
        datamodule: The data.
        rounds: Number of rounds (>= 1), the dense one included.
        lottery: The pruning callback; a default ``LotteryTicketCallback()`` if None.
        trainer: Keyword arguments of every round's ``Trainer`` (``callbacks`` and loggers given
            here are deep-copied per round, fresh each time).
        out_dir: Parent folder of the run folder.
        name: Name of the run folder.
        config: The experiment's full configuration, saved as ``config.yaml`` and compared on
            resume; by default a summary of the lottery settings and ``trainer``.
        progress: Show a progress bar over rounds.
        controls: Control experiments trained at every round after the dense one, with the
            same recipe: ``"random_reinit"`` (the ticket's masks, a fresh initialization) and
            ``"random_prune"`` (random masks of the ticket's per-layer sizes, the original
            initialization). Their accuracies are columns of the results.
        seed: Seed of the controls' random draws (initializations and masks).
        report: Redraw the plots and the TensorBoard summary after every round (about half a
            second each time); ``results.csv``/``.json`` are written regardless.
        monitor: The validation metric, by the name the module logs it under, whose best value
            marks the early-stopping iteration; the weights there are tested too. Every metric
            logged under its prefix (``val/`` for ``val/loss``) is recorded. None records no
            validation.
        mode: ``"min"`` or ``"max"``: which value of ``monitor`` is best.
        test_metric: The test metric the results report for every round and control.

    Returns:
        One :class:`RoundResult` per round.

    Raises:
        ValueError: If ``rounds < 1``, the run folder holds another experiment, or, after the
            first fit, ``monitor`` or ``test_metric`` was never logged (the message lists what was).
    """
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"`rounds` must be an integer >= 1, got {rounds!r}.")
    unknown = [c for c in controls if c not in CONTROLS]
    if unknown or len(set(controls)) != len(controls):
        raise ValueError(f"`controls` must be distinct entries of {list(CONTROLS)}, got {list(controls)}.")
    names = MetricNames(monitor, mode, test_metric)
    lottery = lottery if lottery is not None else LotteryTicketCallback()
    trainer_kwargs = dict(trainer or {})
    run_dir = Path(out_dir) / name
    if config is None:
        metrics = {"monitor": monitor, "mode": mode, "test_metric": test_metric}
        config = {
            "lottery": {"rounds": rounds, "controls": list(controls), "seed": seed, **metrics, **lottery.settings()},
            "model": type(model).__name__,
            "data": type(datamodule).__name__,
            "trainer": {k: v for k, v in trainer_kwargs.items() if isinstance(v, (int, float, str, bool, type(None)))},
        }
    _check_same_experiment(run_dir, config)
    is_zero = is_global_zero()
    if is_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(dict(config), sort_keys=False))

    rows: list[RoundResult] = []
    for r in range(rounds):
        metrics_file = run_dir / f"round_{r:02d}" / "metrics.json"
        if not metrics_file.is_file():
            break
        rows.append(RoundResult(**json.loads(metrics_file.read_text())))
    if rows:
        lottery.load_state_dict(load_tensors(run_dir / f"round_{rows[-1].round:02d}" / "lottery.pt"))
        rank_zero_info(f"Resuming {run_dir}: rounds 0-{rows[-1].round} are finished and will not be recomputed.")

    bar = _RoundProgress(rounds, len(rows), progress, names.test_column)
    try:
        for r in range(len(rows), rounds):
            row = _run_round(r, model, datamodule, lottery, trainer_kwargs, run_dir, is_zero, controls, seed, names)
            rows.append(row)
            if is_zero:
                write_table(run_dir / "results", [x.flat() for x in rows], [x.as_dict() for x in rows])
            if is_zero and report:
                write_report(
                    run_dir,
                    [x.flat() | {"layer_density": x.layer_density} for x in rows],
                    lottery.round_masks,
                    _hparams(config),
                    names.test_column,
                )
            bar.update(row)
    finally:
        bar.close()
    return rows


def _hparams(config: Mapping[str, Any]) -> dict[str, Any]:
    flat = _flatten(config)
    return {k: v for k, v in flat.items() if isinstance(v, (int, float, str, bool)) and len(str(v)) < 200}


def _make_trainer(
    label: str,
    callbacks: list[pl.Callback],
    trainer_kwargs: Mapping[str, Any],
    run_dir: Path,
    checkpoint_dir: Path | None,
) -> pl.Trainer:
    """A fresh Trainer from the shared settings, logging to the TensorBoard run ``label``."""
    kwargs = copy.deepcopy(dict(trainer_kwargs))
    user_callbacks = kwargs.pop("callbacks", None) or []
    if not isinstance(user_callbacks, list):
        user_callbacks = [user_callbacks]
    callbacks = [*callbacks, *user_callbacks]
    if checkpoint_dir is not None and kwargs.get("enable_checkpointing", True) is not False:
        # One file, replaced at the end of every training epoch: the point an interrupted round resumes from.
        callbacks.append(
            ModelCheckpoint(
                dirpath=checkpoint_dir,
                filename="last",
                save_top_k=1,
                every_n_epochs=1,
                save_on_train_epoch_end=True,
                enable_version_counter=False,
            )
        )
    elif checkpoint_dir is None:
        kwargs["enable_checkpointing"] = False
    logger = kwargs.pop("logger", None)
    loggers: list[Logger] = []
    if logger is not False:
        if isinstance(logger, Logger):
            loggers.append(logger)
        elif isinstance(logger, list):
            loggers.extend(logger)
        loggers.append(TensorBoardLogger(save_dir=run_dir, name="tensorboard", version=label, default_hp_metric=False))
    kwargs["default_root_dir"] = run_dir / label
    return pl.Trainer(callbacks=callbacks, logger=loggers or False, **kwargs)


@dataclass
class _Measured:
    metrics: dict[str, float]  # validation metrics at the end of training and test metrics, by column
    best_step: int | None
    best_value: float | None
    test_at_best: float | None


def _train_and_test(
    label: str,
    model: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    lottery: LotteryTicketCallback,
    trainer_kwargs: Mapping[str, Any],
    run_dir: Path,
    checkpoint_dir: Path | None,
    names: MetricNames,
) -> _Measured:
    """Fit (resuming from ``checkpoint_dir/last.ckpt`` if there), test, and test the early-stopping weights.

    Raises:
        ValueError: If ``names.monitor`` or ``names.test`` was never logged.
    """
    tracker = EarlyStoppingTracker(names.monitor, names.mode) if names.monitor is not None else None
    trainer = _make_trainer(label, [lottery, *([tracker] if tracker else [])], trainer_kwargs, run_dir, checkpoint_dir)
    ckpt = checkpoint_dir / "last.ckpt" if checkpoint_dir is not None else None
    resume = ckpt if ckpt is not None and ckpt.is_file() else None
    if resume is not None:
        rank_zero_info(f"{label} was interrupted: resuming it from {resume}.")
    trainer.fit(model, datamodule=datamodule, ckpt_path=resume)
    metrics = names.validation(_scalars(trainer.callback_metrics))
    tested = _test(trainer, model, datamodule, names)
    metrics.update(tested)
    if tracker is None or tracker.best_state is None:
        return _Measured(metrics, None, None, None)
    if tracker.best_step == trainer.global_step:  # the best weights are the final ones
        return _Measured(metrics, tracker.best_step, tracker.best_value, tested[names.test_column])
    final = {k: v.detach().clone() for k, v in model.state_dict().items()}
    tracker.load_best_into(model)
    at_best = _test(trainer, model, datamodule, names)[names.test_column]
    model.load_state_dict(final)
    return _Measured(metrics, tracker.best_step, tracker.best_value, at_best)


def _test(
    trainer: pl.Trainer, model: pl.LightningModule, datamodule: pl.LightningDataModule, names: MetricNames
) -> dict[str, float]:
    """Every metric the module logs in ``test``, by column; ``names.test`` must be one of them."""
    results = trainer.test(model, datamodule=datamodule, verbose=False)
    logged = _scalars(results[0]) if results else {}
    check_logged(names.test, "test_metric", "test", logged)
    return {column(k): v for k, v in logged.items()}


def _reinitialize(module: torch.nn.Module, seed: int) -> None:
    """Draw fresh weights with every submodule's own initializer (``reset_parameters``)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for sub in module.modules():
            reset = getattr(sub, "reset_parameters", None)
            if callable(reset):
                reset()


def control_masks_and_init(
    kind: str, lottery: LotteryTicketCallback, model: pl.LightningModule, seed: int
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The masks and initial state of a control of the round ``lottery`` just trained.

    ``"random_reinit"``: the ticket's masks with a fresh initialization drawn by the module's
    own initializers. ``"random_prune"``: random masks with the ticket's per-tensor counts, with
    the ticket's own initialization (the rewind snapshot).

    Raises:
        ValueError: For an unknown control.
    """
    masks = lottery.round_masks
    snapshot = lottery.snapshot
    if snapshot is None:
        raise RuntimeError("The lottery callback has no snapshot yet: run a round first.")
    if kind == "random_reinit":
        fresh = detached_copy(model)
        _reinitialize(fresh, seed)
        return masks, {k: v.detach().cpu().clone() for k, v in fresh.state_dict().items()}
    if kind == "random_prune":
        counts = {k: int(m.sum()) for k, m in masks.items()}
        ones = {k: torch.ones_like(m) for k, m in masks.items()}
        return random_masks(ones, counts, generator=torch.Generator().manual_seed(seed)), snapshot
    raise ValueError(f"Unknown control {kind!r}; allowed: {', '.join(CONTROLS)}.")


def _run_round(
    r: int,
    model: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    lottery: LotteryTicketCallback,
    trainer_kwargs: Mapping[str, Any],
    run_dir: Path,
    is_zero: bool,
    controls: Sequence[str],
    seed: int,
    names: MetricNames,
) -> RoundResult:
    round_dir = run_dir / f"round_{r:02d}"
    start = time.perf_counter()
    ticket = _train_and_test(
        f"round_{r:02d}", model, datamodule, lottery, trainer_kwargs, run_dir, round_dir / "checkpoints", names
    )
    if lottery.round != r or lottery.phase != "pruned":
        raise RuntimeError(
            f"Round {r} ended with the lottery callback at round {lottery.round} ({lottery.phase}); "
            "the run folder and the callback state disagree."
        )
    history = lottery.history[-1]
    row = RoundResult(
        round=r,
        density=float(history["density"]),
        metrics=_with_best(ticket, names),
        best_val_step=ticket.best_step,
        steps=int(history["steps"]),
        layer_density={k: float(v) for k, v in history["layer_density"].items()},
    )
    if is_zero:
        save_tensors(lottery.round_masks, round_dir / "masks.pt")
        save_tensors({k: v.detach().cpu() for k, v in model.state_dict().items()}, round_dir / "weights.pt")
    for index, kind in enumerate(controls if r > 0 else ()):
        done = round_dir / f"control_{kind}.json"
        if done.is_file():
            row.controls[kind] = json.loads(done.read_text())
            continue
        masks, init = control_masks_and_init(kind, lottery, model, seed=seed * 100_003 + r * 101 + index)
        measured = _train_and_test(
            f"round_{r:02d}_{kind}",
            detached_copy(model),
            datamodule,
            lottery.fork(masks, init),
            trainer_kwargs,
            run_dir,
            None,
            names,
        )
        row.controls[kind] = _control_columns(measured, names)
        if is_zero:
            save_tensors(masks, round_dir / f"control_{kind}_masks.pt")
            atomic_write_text(done, json.dumps(row.controls[kind], indent=2))
    row.seconds = time.perf_counter() - start
    if is_zero:
        save_tensors(lottery.state_dict(), round_dir / "lottery.pt")
        atomic_write_text(round_dir / "metrics.json", json.dumps(row.as_dict(), indent=2))  # written last: done
    test = names.test_column
    controls_text = "".join(f", {k} {v[test]}" for k, v in row.controls.items())
    rank_zero_info(
        f"Round {r}: {100 * row.density:.2f}% of weights, {names.test} {row.metrics[test]}, "
        f"early-stop step {row.best_val_step} ({names.test} there {row.metrics[names.at_best_column]}){controls_text}."
    )
    return row


def _with_best(measured: _Measured, names: MetricNames) -> dict[str, float | None]:
    """The measured metrics, then the best monitored value and the test metric at that point."""
    metrics: dict[str, float | None] = dict(measured.metrics)
    if names.best_column is not None:
        metrics[names.best_column] = measured.best_value
    metrics[names.at_best_column] = measured.test_at_best
    return metrics


def _control_columns(measured: _Measured, names: MetricNames) -> dict[str, float | None]:
    """A control's columns: the test metric, at the early-stopping iteration, that step, the final monitored value."""
    values: dict[str, float | None] = {
        names.test_column: measured.metrics[names.test_column],
        names.at_best_column: measured.test_at_best,
        "best_val_step": measured.best_step,
    }
    if names.monitor is not None:
        values[column(names.monitor)] = measured.metrics[column(names.monitor)]
    return values


def write_aggregate(
    run_dir: str | Path,
    runs: Sequence[Sequence[RoundResult]],
    hparams: Mapping[str, Any] | None = None,
    names: MetricNames = DEFAULT_METRICS,
) -> list[dict[str, Any]]:
    """Aggregate several seeds' rows into ``results_seeds.csv``/``.json`` and the report of ``run_dir``.

    Returns:
        The aggregated rows (see :func:`lth_lightning.aggregate.aggregate`).
    """
    run_dir = Path(run_dir)
    rows = aggregate([[r.flat() for r in run] for run in runs])
    if not is_global_zero() or not rows:
        return rows
    write_table(run_dir / "results_seeds", rows)
    write_report(run_dir, rows, {}, dict(hparams or {}), names.test_column)
    return rows
