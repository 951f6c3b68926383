"""What a round measured, which of the user's metrics that is, and the tables written from it."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from lth_lightning.io import atomic_write_text

__all__ = [
    "DEFAULT_METRICS",
    "MetricNames",
    "RoundResult",
    "check_logged",
    "column",
    "format_seed_table",
    "format_table",
    "write_table",
]


def column(metric: str) -> str:
    """The results column of a logged metric: ``"val/loss"`` -> ``"val_loss"``."""
    return re.sub(r"\W+", "_", metric).strip("_")


@dataclass(frozen=True)
class MetricNames:
    """The metrics of the LightningModule that the results read, by the names it logs them under.

    Attributes:
        monitor: Validation metric whose best value marks the early-stopping iteration (the
            step of minimum validation loss in Frankle & Carbin); None records no validation.
        mode: ``"min"`` or ``"max"``: which value of ``monitor`` is best.
        test: Test metric reported for every round and control (accuracy in the paper).
    """

    monitor: str | None = "val/loss"
    mode: Literal["min", "max"] = "min"
    test: str = "test/acc"

    def __post_init__(self) -> None:
        if self.monitor is not None and (not isinstance(self.monitor, str) or not column(self.monitor)):
            raise ValueError(f"`monitor` must be a logged metric's name or None, got {self.monitor!r}.")
        if self.mode not in ("min", "max"):
            raise ValueError(f"`mode` must be 'min' or 'max', got {self.mode!r}.")
        if not isinstance(self.test, str) or not column(self.test):
            raise ValueError(f"`test_metric` must be a logged metric's name, got {self.test!r}.")

    @property
    def test_column(self) -> str:
        """Column of the test metric (``test_acc``)."""
        return column(self.test)

    @property
    def best_column(self) -> str | None:
        """Column of the best monitored value (``best_val_loss``)."""
        return None if self.monitor is None else f"best_{column(self.monitor)}"

    @property
    def at_best_column(self) -> str:
        """Column of the test metric of the weights at the early-stopping iteration (``test_acc_at_best_val``)."""
        return f"{self.test_column}_at_best_val"

    def validation(self, logged: Mapping[str, float]) -> dict[str, float]:
        """The validation metrics to record: ``monitor`` and every metric logged under its prefix.

        The prefix is the monitor's name up to its first ``/`` or ``_`` (``val/`` for
        ``val/loss``, ``val_`` for ``val_loss``), so ``val/acc`` is recorded beside ``val/loss``.

        Raises:
            ValueError: If ``monitor`` was never logged; the message lists what was.
        """
        if self.monitor is None:
            return {}
        check_logged(self.monitor, "monitor", "validation", logged)
        match = re.match(r"[^/_]*[/_]", self.monitor)
        prefix = match.group(0) if match else self.monitor
        return {column(k): float(v) for k, v in logged.items() if k == self.monitor or k.startswith(prefix)}


DEFAULT_METRICS = MetricNames()  # immutable: safe as a default argument


def check_logged(name: str, option: str, stage: str, logged: Mapping[str, Any]) -> None:
    """Refuse a metric name that the module never logged, listing the names it did log.

    Raises:
        ValueError: If ``name`` is not in ``logged``.
    """
    if name not in logged:
        raise ValueError(
            f"`{option}` {name!r} was never logged in {stage}. "
            f"Logged metrics: {', '.join(sorted(logged)) or '(none)'}. "
            f"Set `{option}` (--lottery.{option}) to the name your LightningModule logs with self.log."
        )


@dataclass
class RoundResult:
    """What one round measured.

    Attributes:
        round: Round index; 0 is the dense network.
        density: Fraction of the prunable weights alive while this round trained.
        metrics: By column: the validation metrics at the end of training (``val_loss``,
            ``val_acc``), the test metrics (``test_loss``, ``test_acc``), the best monitored
            value (``best_val_loss``) and the test metric of the weights at that point
            (``test_acc_at_best_val``); the names follow :class:`MetricNames`.
        best_val_step: Optimizer step of the best monitored value (the early-stopping iteration).
        steps: Optimizer steps this round trained.
        seconds: Wall-clock seconds of the round (fit and tests).
        layer_density: Density of each prunable tensor while this round trained.
        controls: Per control, its columns (the test metric, at the early-stopping iteration,
            ``best_val_step`` and the final monitored value).
    """

    round: int
    density: float
    metrics: dict[str, float | None] = field(default_factory=dict)
    best_val_step: int | None = None
    steps: int = 0
    seconds: float = 0.0
    layer_density: dict[str, float] = field(default_factory=dict)
    controls: dict[str, dict[str, float | None]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """All fields, JSON-ready."""
        return asdict(self)

    def flat(self) -> dict[str, Any]:
        """One flat row: round, density, the metrics, the step counts, then ``<control>_<column>``."""
        row: dict[str, Any] = {"round": self.round, "density": self.density, **self.metrics}
        row.update(best_val_step=self.best_val_step, steps=self.steps, seconds=self.seconds)
        for control, values in self.controls.items():
            for key, value in values.items():
                row[f"{control}_{key}"] = value
        return row


def _fmt(value: Any, spec: str) -> str:
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def format_table(rows: Sequence[RoundResult], names: MetricNames = DEFAULT_METRICS) -> str:
    """A compact text table of the rounds: the monitored and test metrics, early stopping, every control."""
    monitor = column(names.monitor) if names.monitor else None
    test = names.test_column
    controls = list(dict.fromkeys(c for r in rows for c in r.controls))
    cols = [("weights", 8)] + ([(monitor, 10)] if monitor else []) + [(test, 10), ("early_stop", 10)]
    cols += [(f"{test}@early", 14)] + [(c, 14) for c in controls] + [("seconds", 8)]
    lines = [f"{'round':>5} " + " ".join(f"{name:>{width}}" for name, width in cols)]
    for r in rows:
        cells = [f"{_fmt(100 * r.density, '7.2f')}%"]
        if monitor:
            cells.append(_fmt(r.metrics.get(monitor), "10.4f"))
        cells += [_fmt(r.metrics.get(test), "10.4f"), _fmt(r.best_val_step, "10d")]
        cells.append(_fmt(r.metrics.get(names.at_best_column), "14.4f"))
        cells += [_fmt(r.controls.get(c, {}).get(test), "14.4f") for c in controls]
        cells.append(_fmt(r.seconds, "8.1f"))
        lines.append(f"{r.round:>5} " + " ".join(cells))
    return "\n".join(lines)


def format_seed_table(rows: Sequence[Mapping[str, Any]], names: MetricNames = DEFAULT_METRICS) -> str:
    """A compact text table of aggregated rows: mean +- std over seeds of the test metric, ticket and controls."""
    test = names.test_column
    suffix = f"_{test}_mean"
    keys = [test, *sorted({k[: -len(suffix)] for r in rows for k in r if k.endswith(suffix)})]
    labels = ["ticket" if k == test else k for k in keys]
    lines = [f"{'round':>5} {'weights':>8} {'seeds':>5} " + " ".join(f"{label:>15}" for label in labels)]
    for row in rows:
        cells = []
        for key in keys:
            mean_key = f"{key}_mean" if key == test else f"{key}_{test}_mean"
            std_key = mean_key[: -len("_mean")] + "_std"
            cells.append(f"{row[mean_key]:.4f}+-{row[std_key]:.4f}" if mean_key in row else "-")
        lines.append(
            f"{row['round']:>5} {100 * row['density_mean']:7.2f}% {row['seeds']:>5} "
            + " ".join(f"{c:>15}" for c in cells)
        )
    return "\n".join(lines)


def write_table(stem: Path, rows: Sequence[Mapping[str, Any]], json_rows: Sequence[Any] | None = None) -> None:
    """Atomically write ``<stem>.csv`` (every key of any row as a column, None as empty) and ``<stem>.json``."""
    fields = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    atomic_write_text(stem.with_suffix(".csv"), buffer.getvalue())
    atomic_write_text(stem.with_suffix(".json"), json.dumps(list(rows if json_rows is None else json_rows), indent=2))
