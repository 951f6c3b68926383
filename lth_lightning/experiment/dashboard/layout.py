"""The custom-scalars layout of the TensorBoard summaries: each page leads with its answer.

A page has three sections, in the order a researcher reads them: the accuracy of the ticket and its controls;
the early-stopping step and, when measured, the instability; the weights remaining and the masks. A chart
matches tags; every series (ticket, each control) is a run, so it is a line of its own. A control far from the
others (:func:`apart_series`) would squash their chart or, under TensorBoard's default "Ignore outliers in chart
scaling", fall off it: its values go under ``lottery/apart/<key>``, drawn on a chart of their own.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from lth_lightning.experiment.controls.registry import CONTROLS
from lth_lightning.metric_names import MetricNames

__all__ = ["APART", "OUTLIERS_HINT", "apart_series", "layout", "metric_label"]

# Where a control far from the others logs its accuracy charts' values (``lottery/apart/test_acc``).
APART = "lottery/apart"
# The first section's title says it: TensorBoard ignores outliers until the box is unticked, once per browser.
OUTLIERS_HINT = "a point off its chart? untick 'Ignore outliers in chart scaling' on the left"
# How many median absolute deviations from the chart's median put a control's point, and the control, apart.
APART_DEVIATIONS = 5.0

Charts = dict[str, list[Any]]


def metric_label(names: MetricNames) -> str:
    """The test metric as chart titles name it."""
    return "test accuracy" if names.test_column == "test_acc" else names.test


def apart_series(values: Mapping[str, Sequence[float]]) -> list[str]:
    """The controls of a chart to draw apart: those with a point more than :data:`APART_DEVIATIONS` median absolute
    deviations from the median of all the chart's points (the ticket's included; the ticket is never apart).

    A robust outlier rule: a control that collapses at one round (magnitude at initialization at 10% accuracy) or
    lies far below the rest (GraSP at 24% where the others are near 80%) is apart; a control a few points below the
    ticket is not. The deviations' median has a floor of a twentieth of the points' range, so a chart whose points
    mostly coincide does not send every other point apart.
    """
    points = [float(v) for series in values.values() for v in series]
    if len(points) < 3:
        return []
    centre = statistics.median(points)
    spread = max(statistics.median(abs(v - centre) for v in points), (max(points) - min(points)) / 20)
    if spread == 0:
        return []
    far = APART_DEVIATIONS * spread
    return [name for name, v in values.items() if name != "ticket" and any(abs(x - centre) > far for x in v)]


def _apart_title(metric: str, controls: Sequence[str], over_seeds: str = "") -> str:
    return f"{metric}: {', '.join(CONTROLS[c].label for c in controls)}, apart (far from the others){over_seeds}"


def _accuracy(names: MetricNames, controls: Sequence[str], apart: Mapping[str, Sequence[str]]) -> Charts:
    """The run page's first section: the test metric and the same at early stopping, each control apart after."""
    test, at_best, label = names.test_column, names.at_best_column, metric_label(names)
    near = [c for c in controls if c not in apart.get(test, ())]
    versus = " vs ".join(["ticket", *(CONTROLS[c].label for c in near)])
    metrics = {test: (label, versus), at_best: (f"{label} at the early-stopping iteration", "ticket vs controls")}
    charts: Charts = {
        f"{metric}: {lines}": ["Multiline", [rf"^lottery/{key}$"]] for key, (metric, lines) in metrics.items()
    }
    # A control apart: a Margin chart of value = lower = upper, whose ends TensorBoard's outlier filter keeps (each
    # value counts thrice). TensorBoard draws a section's Margin charts after its others, last-listed first.
    for key, (metric, _) in reversed(metrics.items()):
        if apart.get(key):
            charts[_apart_title(metric, apart[key])] = ["Margin", [f"{APART}/{key}"] * 3]
    return charts


def layout(
    names: MetricNames,
    seeds: bool = False,
    controls: Sequence[str] = (),
    instability: bool = False,
    apart: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Charts]:
    """The custom-scalars layout (``SummaryWriter.add_custom_scalars``) of a run's summary or, with ``seeds``, of an
    experiment's across-seeds summary: only charts whose tags the summary has, so none opens empty.

    Args:
        names: The metrics the results read.
        seeds: The across-seeds summary's layout.
        controls: The controls the summary has (their labels name the main chart).
        instability: The summary has each round's instability and its interpolation curves.
        apart: By result column, the controls logged under :data:`APART` (:func:`apart_series`).
    """
    apart = apart or {}
    if seeds:
        return _seeds_layout(names, instability, apart)
    stability: Charts = {
        "early-stopping iteration (step): ticket vs controls": ["Multiline", [r"^lottery/best_val_step$"]]
    }
    if instability:
        stability.update(
            {
                "instability (test error barrier between two copies) by round": [
                    "Multiline",
                    [r"^lottery/instability$"],
                ],
                "instability on the training data (its error barrier) by round": [
                    "Multiline",
                    [r"^lottery/instability_train$"],
                ],
                "test error along the linear path between the two copies (step: point 0-29), per round": [
                    "Multiline",
                    [r"^instability/round_\d+$"],
                ],
                "training error along the same path, per round": ["Multiline", [r"^instability_train/round_\d+$"]],
            }
        )
    return {
        f"lottery ticket: accuracy ({OUTLIERS_HINT})": _accuracy(names, controls, apart),
        "lottery ticket: early stopping" + (" and stability" if instability else ""): stability,
        "lottery ticket: weights remaining and masks": {
            "weights remaining (fraction) by round": ["Multiline", [r"^lottery/density$"]],
            "density of each layer by round": ["Multiline", [r"^lottery/density/"]],
            "mask overlap with the previous round (Jaccard), per layer": ["Multiline", [r"^lottery/overlap_prev/"]],
        },
    }


def _bands(metrics: Mapping[str, str], apart: Mapping[str, Sequence[str]]) -> Charts:
    """A ``Margin`` chart (mean, min-max band) per column, and one for its controls apart, listed last first:
    TensorBoard (2.21) draws a section's Margin charts in the reverse of the layout's order (seen in Chromium)."""
    charts: Charts = {}
    over_seeds = ": mean and min-max over seeds"
    for key, metric in metrics.items():
        charts[metric + over_seeds] = ["Margin", [f"lottery/{key}/{stat}" for stat in ("mean", "min", "max")]]
        if apart.get(key):
            tags = [f"{APART}/{key}/{stat}" for stat in ("mean", "min", "max")]
            charts[_apart_title(metric, apart[key], over_seeds)] = ["Margin", tags]
    return dict(reversed(charts.items()))


def _seeds_layout(names: MetricNames, instability: bool, apart: Mapping[str, Sequence[str]]) -> dict[str, Charts]:
    """The across-seeds summary's: bands, weights remaining, overlap between seeds."""
    test, at_best, label = names.test_column, names.at_best_column, metric_label(names)
    accuracy = {test: label, at_best: f"{label} at the early-stopping iteration"}
    stability = {"best_val_step": "early-stopping iteration (step)"}
    if instability:
        stability["instability"] = "instability (test error barrier)"
        stability["instability_train"] = "instability on the training data"
    overlap = [r"^lottery/overlap_seeds/"]  # the ticket's run, and the `chance` run: random masks of the same density
    return {
        f"lottery ticket over seeds: accuracy ({OUTLIERS_HINT})": _bands(accuracy, apart),
        "lottery ticket over seeds: early stopping" + (" and stability" if instability else ""): _bands(stability, {}),
        "lottery ticket over seeds: weights remaining and masks": {
            "weights remaining (fraction) by round, mean over seeds": ["Multiline", [r"^lottery/density$"]],
            "mask overlap between the seeds' tickets (Jaccard), per layer, and chance level": ["Multiline", overlap],
        },
    }
