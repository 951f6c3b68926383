"""``run_lottery``: the round driver. One fresh Trainer per round, one callback across rounds."""

from __future__ import annotations

import copy
import csv
import io
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from lth_lightning.aggregate import aggregate
from lth_lightning.callback import LotteryTicketCallback
from lth_lightning.io import atomic_write_text, load_tensors, save_tensors
from lth_lightning.pruning import random_masks
from lth_lightning.report import write_report
from lth_lightning.tracker import EarlyStoppingTracker

__all__ = [
    "RoundResult",
    "control_masks_and_init",
    "format_seed_table",
    "format_table",
    "is_global_zero",
    "run_lottery",
    "write_aggregate",
]

CONTROLS = ("random_reinit", "random_prune")
CONTROL_FIELDS = ("test_acc", "test_acc_at_best_val", "best_val_step", "val_loss")
CSV_FIELDS = (
    "round",
    "density",
    "val_loss",
    "val_acc",
    "test_loss",
    "test_acc",
    "best_val_step",
    "best_val_loss",
    "test_acc_at_best_val",
    "steps",
    "seconds",
    *(f"{c}_{f}" for c in CONTROLS for f in CONTROL_FIELDS),
)
# Keys of a run's config that may change between invocations on the same run folder.
RESUMABLE_KEYS = (
    "lottery.rounds",
    "lottery.seeds",
    "lottery.progress",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
)


@dataclass
class RoundResult:
    """What one round measured.

    Attributes:
        round: Round index; 0 is the dense network.
        density: Fraction of the prunable weights alive while this round trained.
        val_loss: Validation loss at the end of training (None without validation).
        val_acc: Validation accuracy at the end of training.
        test_loss: Test loss of the trained network.
        test_acc: Test accuracy of the trained network.
        best_val_step: Optimizer step of minimum validation loss (the early-stopping iteration).
        best_val_loss: The minimum validation loss.
        test_acc_at_best_val: Test accuracy of the weights at ``best_val_step``.
        steps: Optimizer steps this round trained.
        seconds: Wall-clock seconds of the round (fit and tests).
        layer_density: Density of each prunable tensor while this round trained.
    """

    round: int
    density: float
    val_loss: float | None = None
    val_acc: float | None = None
    test_loss: float | None = None
    test_acc: float | None = None
    best_val_step: int | None = None
    best_val_loss: float | None = None
    test_acc_at_best_val: float | None = None
    steps: int = 0
    seconds: float = 0.0
    layer_density: dict[str, float] = field(default_factory=dict)
    controls: dict[str, dict[str, float | None]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """All fields, JSON-ready."""
        return asdict(self)

    def flat(self) -> dict[str, Any]:
        """One flat row: the fields, then ``<control>_<metric>`` for every control."""
        row = {k: v for k, v in self.as_dict().items() if k not in ("controls", "layer_density")}
        for control, values in self.controls.items():
            for key, value in values.items():
                row[f"{control}_{key}"] = value
        return row


def is_global_zero() -> bool:
    """Whether this process is rank zero (from the launcher's environment, before any Trainer exists)."""
    return getattr(rank_zero_only, "rank", 0) == 0


def _metric(metrics: Mapping[str, Any], key: str) -> float | None:
    value = metrics.get(key)
    return None if value is None else float(value)


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


def format_table(rows: Sequence[RoundResult]) -> str:
    """A compact text table of the rounds."""

    def fmt(value: float | None, spec: str) -> str:
        return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)

    lines = [
        f"{'round':>5} {'weights':>8} {'val_loss':>9} {'val_acc':>8} {'test_acc':>8} {'early_stop':>10} "
        f"{'acc@early':>9} {'seconds':>8}"
    ]
    for r in rows:
        lines.append(
            f"{r.round:>5} {fmt(100 * r.density, '7.2f')}% {fmt(r.val_loss, '9.4f')} {fmt(r.val_acc, '8.4f')} "
            f"{fmt(r.test_acc, '8.4f')} {fmt(r.best_val_step, '10d')} {fmt(r.test_acc_at_best_val, '9.4f')} "
            f"{fmt(r.seconds, '8.1f')}"
        )
    return "\n".join(lines)


def format_seed_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """A compact text table of aggregated rows: mean +- std over seeds."""

    def pm(row: Mapping[str, Any], key: str) -> str:
        if f"{key}_mean" not in row:
            return "-"
        return f"{row[f'{key}_mean']:.4f}+-{row[f'{key}_std']:.4f}"

    header = f"{'round':>5} {'weights':>8} {'seeds':>5} {'test_acc':>15} {'random_reinit':>15} {'random_prune':>15}"
    lines = [header]
    for row in rows:
        lines.append(
            f"{row['round']:>5} {100 * row['density_mean']:7.2f}% {row['seeds']:>5} {pm(row, 'test_acc'):>15} "
            f"{pm(row, 'random_reinit_test_acc'):>15} {pm(row, 'random_prune_test_acc'):>15}"
        )
    return "\n".join(lines)


class _RoundProgress:
    """A progress bar over rounds (tqdm, as Lightning's own bars), on rank zero only."""

    def __init__(self, total: int, done: int, enabled: bool) -> None:
        self.bar = None
        if enabled and is_global_zero():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=done, desc="lottery rounds", unit="round", position=0, leave=True)

    def update(self, row: RoundResult) -> None:
        if self.bar is not None:
            self.bar.set_postfix(weights=f"{100 * row.density:.1f}%", test_acc=f"{row.test_acc or float('nan'):.4f}")
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

    Returns:
        One :class:`RoundResult` per round.

    Raises:
        ValueError: If ``rounds < 1``, or the run folder holds another experiment.
    """
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"`rounds` must be an integer >= 1, got {rounds!r}.")
    unknown = [c for c in controls if c not in CONTROLS]
    if unknown or len(set(controls)) != len(controls):
        raise ValueError(f"`controls` must be distinct entries of {list(CONTROLS)}, got {list(controls)}.")
    lottery = lottery if lottery is not None else LotteryTicketCallback()
    trainer_kwargs = dict(trainer or {})
    run_dir = Path(out_dir) / name
    if config is None:
        config = {
            "lottery": {"rounds": rounds, "controls": list(controls), "seed": seed, **lottery.settings()},
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

    bar = _RoundProgress(rounds, len(rows), progress)
    try:
        for r in range(len(rows), rounds):
            row = _run_round(r, model, datamodule, lottery, trainer_kwargs, run_dir, is_zero, controls, seed)
            rows.append(row)
            if is_zero:
                _write_results(run_dir, rows)
            if is_zero and report:
                write_report(
                    run_dir,
                    [x.flat() | {"layer_density": x.layer_density} for x in rows],
                    lottery.round_masks,
                    _hparams(config),
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
    fit_metrics: dict[str, Any]
    test_metrics: dict[str, Any]
    tracker: EarlyStoppingTracker
    acc_at_best: float | None


def _train_and_test(
    label: str,
    model: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    lottery: LotteryTicketCallback,
    trainer_kwargs: Mapping[str, Any],
    run_dir: Path,
    checkpoint_dir: Path | None,
) -> _Measured:
    """Fit (resuming from ``checkpoint_dir/last.ckpt`` if there), test, and test the early-stopping weights."""
    tracker = EarlyStoppingTracker()
    trainer = _make_trainer(label, [lottery, tracker], trainer_kwargs, run_dir, checkpoint_dir)
    ckpt = checkpoint_dir / "last.ckpt" if checkpoint_dir is not None else None
    resume = ckpt if ckpt is not None and ckpt.is_file() else None
    if resume is not None:
        rank_zero_info(f"{label} was interrupted: resuming it from {resume}.")
    trainer.fit(model, datamodule=datamodule, ckpt_path=resume)
    fit_metrics = dict(trainer.callback_metrics)
    test = trainer.test(model, datamodule=datamodule, verbose=False)
    acc_at_best = None
    if tracker.best_state is not None and tracker.best_step == trainer.global_step:
        acc_at_best = _metric(test[0], "test/acc") if test else None  # the best weights are the final ones
    elif tracker.best_state is not None:
        final = {k: v.detach().clone() for k, v in model.state_dict().items()}
        tracker.load_best_into(model)
        best = trainer.test(model, datamodule=datamodule, verbose=False)
        acc_at_best = _metric(best[0], "test/acc") if best else None
        model.load_state_dict(final)
    return _Measured(fit_metrics, dict(test[0]) if test else {}, tracker, acc_at_best)


def _detached_copy(model: pl.LightningModule) -> pl.LightningModule:
    """A deep copy of ``model`` without its reference to a Trainer."""
    trainer = model._trainer
    model._trainer = None
    try:
        return copy.deepcopy(model)
    finally:
        model._trainer = trainer


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
        fresh = _detached_copy(model)
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
) -> RoundResult:
    round_dir = run_dir / f"round_{r:02d}"
    start = time.perf_counter()
    ticket = _train_and_test(
        f"round_{r:02d}", model, datamodule, lottery, trainer_kwargs, run_dir, round_dir / "checkpoints"
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
        val_loss=_metric(ticket.fit_metrics, "val/loss"),
        val_acc=_metric(ticket.fit_metrics, "val/acc"),
        test_loss=_metric(ticket.test_metrics, "test/loss"),
        test_acc=_metric(ticket.test_metrics, "test/acc"),
        best_val_step=ticket.tracker.best_step,
        best_val_loss=ticket.tracker.best_value,
        test_acc_at_best_val=ticket.acc_at_best,
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
            _detached_copy(model),
            datamodule,
            lottery.fork(masks, init),
            trainer_kwargs,
            run_dir,
            None,
        )
        row.controls[kind] = {
            "test_acc": _metric(measured.test_metrics, "test/acc"),
            "test_acc_at_best_val": measured.acc_at_best,
            "best_val_step": measured.tracker.best_step,
            "val_loss": _metric(measured.fit_metrics, "val/loss"),
        }
        if is_zero:
            save_tensors(masks, round_dir / f"control_{kind}_masks.pt")
            atomic_write_text(done, json.dumps(row.controls[kind], indent=2))
    row.seconds = time.perf_counter() - start
    if is_zero:
        save_tensors(lottery.state_dict(), round_dir / "lottery.pt")
        atomic_write_text(round_dir / "metrics.json", json.dumps(row.as_dict(), indent=2))  # written last: done
    controls_text = "".join(f", {k} {v['test_acc']}" for k, v in row.controls.items())
    rank_zero_info(
        f"Round {r}: {100 * row.density:.2f}% of weights, test/acc {row.test_acc}, "
        f"early-stop step {row.best_val_step} (test/acc there {row.test_acc_at_best_val}){controls_text}."
    )
    return row


def write_aggregate(
    run_dir: str | Path, runs: Sequence[Sequence[RoundResult]], hparams: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Aggregate several seeds' rows into ``results_seeds.csv``/``.json`` and the report of ``run_dir``.

    Returns:
        The aggregated rows (see :func:`lth_lightning.aggregate.aggregate`).
    """
    run_dir = Path(run_dir)
    rows = aggregate([[r.flat() for r in run] for run in runs])
    if not is_global_zero() or not rows:
        return rows
    fields = list(dict.fromkeys(key for row in rows for key in row))  # round 0 has no control columns
    _write_table(run_dir / "results_seeds", fields, rows, rows)
    write_report(run_dir, rows, {}, dict(hparams or {}))
    return rows


def _write_table(
    stem: Path, fields: Sequence[str], csv_rows: Sequence[Mapping[str, Any]], json_rows: Sequence[Mapping[str, Any]]
) -> None:
    """Atomically write ``<stem>.csv`` (``fields`` as columns, None as empty) and ``<stem>.json``."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(fields), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in csv_rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    atomic_write_text(stem.with_suffix(".csv"), buffer.getvalue())
    atomic_write_text(stem.with_suffix(".json"), json.dumps(list(json_rows), indent=2))


def _write_results(run_dir: Path, rows: Sequence[RoundResult]) -> None:
    _write_table(run_dir / "results", CSV_FIELDS, [row.flat() for row in rows], [row.as_dict() for row in rows])
