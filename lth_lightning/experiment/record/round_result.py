"""What a round measured, and the files written from it."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lth_lightning.io import atomic_write_text

__all__ = [
    "RoundResult",
    "format_value",
    "write_table",
]


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
        instability: The round's error barrier between two copies trained under different data
            orders (:mod:`lth_lightning.pruning.stability`), when measured.
        path_errors: The test error at the evenly spaced points of the line between the copies.
        instability_train: The error barrier on the training data, when measured.
        path_train_errors: The training data's error at the same points.
    """

    round: int
    density: float
    metrics: dict[str, float | None] = field(default_factory=dict)
    best_val_step: int | None = None
    steps: int = 0
    seconds: float = 0.0
    layer_density: dict[str, float] = field(default_factory=dict)
    controls: dict[str, dict[str, float | None]] = field(default_factory=dict)
    instability: float | None = None
    path_errors: list[float] = field(default_factory=list)
    instability_train: float | None = None
    path_train_errors: list[float] = field(default_factory=list)

    def __repr__(self) -> str:
        """One short line: round, weights left, the test metrics, early stopping, the controls' names."""
        metrics = ", ".join(f"{k}={format_value(v)}" for k, v in self.metrics.items() if k.startswith("test"))
        parts = [
            f"round={self.round}",
            f"weights={100 * self.density:.2f}%",
            metrics,
            f"early_stop={self.best_val_step}",
        ]
        if self.instability is not None:
            parts.append(f"instability={self.instability:.4f}")
        if self.controls:
            parts.append(f"controls=[{', '.join(self.controls)}]")
        return f"RoundResult({', '.join(p for p in parts if p)})"

    def as_dict(self) -> dict[str, Any]:
        """All fields, JSON-ready (the instability's only when measured)."""
        fields = asdict(self)
        if self.instability is None:
            del fields["instability"], fields["path_errors"]
        if self.instability_train is None:
            del fields["instability_train"], fields["path_train_errors"]
        return fields

    def flat(self) -> dict[str, Any]:
        """One flat row: round, density, the metrics, the step counts, the instability if measured, then
        ``<control>_<column>``."""
        row: dict[str, Any] = {"round": self.round, "density": self.density, **self.metrics}
        row.update(best_val_step=self.best_val_step, steps=self.steps, seconds=self.seconds)
        if self.instability is not None:
            row["instability"] = self.instability
        if self.instability_train is not None:
            row["instability_train"] = self.instability_train
        for control, values in self.controls.items():
            for key, value in values.items():
                row[f"{control}_{key}"] = value
        return row


def format_value(value: Any, digits: int = 4) -> str:
    """A table cell: ``-`` for a missing value, integers as they are, other numbers with ``digits`` decimals."""
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return f"{float(value):.{digits}f}"


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
