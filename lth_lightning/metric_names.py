"""The metrics the results read, by the names the user's LightningModule logs them under (no Lightning here).

The bottom layer of the package: the callback's tracker, the stacked members' callbacks and the
experiment layer all read metric names through it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from lth_lightning.options import Option

__all__ = [
    "DEFAULT_METRICS",
    "METRIC_OPTIONS",
    "MODE",
    "MONITOR",
    "TEST_METRIC",
    "MetricNames",
    "check_logged",
    "column",
]


def column(metric: str) -> str:
    """The results column of a logged metric: ``"val/loss"`` -> ``"val_loss"``."""
    return re.sub(r"\W+", "_", metric).strip("_")


def _a_metric(value: Any) -> bool:
    return isinstance(value, str) and bool(column(value))


MONITOR = Option(
    "monitor",
    str | None,
    "val/loss",
    "Validation metric, as the model logs it (``val/loss``, ``val_loss``), whose best value marks the "
    "early-stopping iteration; the weights there are tested too. Every metric logged under its prefix is "
    "recorded. null (None) records no validation.",
    allowed="a logged metric's name or None",
    valid=lambda value: value is None or _a_metric(value),
)
MODE = Option("mode", Literal["min", "max"], "min", "Which value of ``monitor`` is best: ``min`` or ``max``.")
TEST_METRIC = Option(
    "test_metric",
    str,
    "test/acc",
    "Test metric the results report, as the model logs it (``test/acc``, ``test_acc``).",
    allowed="a logged metric's name",
    valid=_a_metric,
)
# The metric names' options, declared once here: the experiment's spec declares its fields from them.
METRIC_OPTIONS = (MONITOR, MODE, TEST_METRIC)


@dataclass(frozen=True)
class MetricNames:
    """The metrics of the LightningModule that the results read, by the names it logs them under.

    Attributes:
        monitor: Validation metric whose best value marks the early-stopping iteration (the
            step of minimum validation loss in Frankle & Carbin); None records no validation.
        mode: ``"min"`` or ``"max"``: which value of ``monitor`` is best.
        test: Test metric reported for every round and control (accuracy in the paper).
    """

    monitor: str | None = MONITOR.default
    mode: Literal["min", "max"] = MODE.default
    test: str = TEST_METRIC.default

    def __post_init__(self) -> None:
        for declaration, value in zip(METRIC_OPTIONS, (self.monitor, self.mode, self.test), strict=True):
            declaration.check(value)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> MetricNames:
        """The metric names a run's config (``config.yaml``, its ``lottery`` group) used."""
        lottery = config.get("lottery") or {}
        return cls(*(lottery.get(o.name, o.default) for o in METRIC_OPTIONS))

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
