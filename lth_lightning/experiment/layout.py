"""The custom-scalars layout of the TensorBoard summaries: the charts that tell a run's story on one page."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lth_lightning.experiment.controls import CONTROLS
from lth_lightning.metric_names import MetricNames

__all__ = ["layout", "metric_label"]


def metric_label(names: MetricNames) -> str:
    """The test metric as chart titles name it."""
    return "test accuracy" if names.test_column == "test_acc" else names.test


def layout(
    names: MetricNames, seeds: bool = False, controls: Sequence[str] = (), instability: bool = False
) -> dict[str, dict[str, list[Any]]]:
    """The custom-scalars layout (``SummaryWriter.add_custom_scalars``) of a run's summary or, with ``seeds``, of an
    experiment's across-seeds summary: only charts whose tags the summary has, so none opens empty.

    A chart matches tags; every series (ticket, each control) is a run, so it is a line of its own.
    TensorBoard merges the layouts of the runs it loads (a whole experiment folder: both kinds).

    Args:
        names: The metrics the results read.
        seeds: The across-seeds summary's layout.
        controls: The controls the summary has (their labels name the main chart).
        instability: The summary has each round's instability and its interpolation curves.
    """
    if seeds:
        return _seeds_layout(names, instability)
    test, at_best, label = names.test_column, names.at_best_column, metric_label(names)
    versus = " vs ".join(["ticket", *(CONTROLS[c].label for c in controls)]) if controls else "ticket"
    charts: dict[str, dict[str, list[Any]]] = {
        "lottery ticket": {
            f"{label}: {versus}": ["Multiline", [rf"^lottery/{test}$"]],
            f"{label} at the early-stopping iteration: ticket vs controls": ["Multiline", [rf"^lottery/{at_best}$"]],
            "early-stopping iteration (step): ticket vs controls": ["Multiline", [r"^lottery/best_val_step$"]],
            "weights remaining (fraction) by round": ["Multiline", [r"^lottery/density$"]],
        },
        "lottery ticket: layers": {
            "density of each layer by round": ["Multiline", [r"^lottery/density/"]],
            "mask overlap with the previous round (Jaccard), per layer": ["Multiline", [r"^lottery/overlap_prev/"]],
        },
    }
    if instability:
        charts["lottery ticket: stability"] = {
            "instability (test error barrier between two copies) by round": ["Multiline", [r"^lottery/instability$"]],
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
    return charts


def _seeds_layout(names: MetricNames, instability: bool) -> dict[str, dict[str, list[Any]]]:
    """The across-seeds summary's: bands, weights remaining, overlap between seeds."""
    test, at_best, label = names.test_column, names.at_best_column, metric_label(names)
    titles = {
        test: f"{label}: mean and min-max over seeds",
        at_best: f"{label} at the early-stopping iteration: mean and min-max over seeds",
        "best_val_step": "early-stopping iteration (step): mean and min-max over seeds",
    }
    if instability:
        titles["instability"] = "instability (test error barrier): mean and min-max over seeds"
        titles["instability_train"] = "instability on the training data: mean and min-max over seeds"
    bands = {
        title: ["Margin", [f"lottery/{key}/{stat}" for stat in ("mean", "min", "max")]] for key, title in titles.items()
    }
    overlap = [r"^lottery/overlap_seeds/"]  # the ticket's run, and the `chance` run: random masks of the same density
    bands["weights remaining (fraction) by round, mean over seeds"] = ["Multiline", [r"^lottery/density$"]]
    bands["mask overlap between the seeds' tickets (Jaccard), per layer, and chance level"] = ["Multiline", overlap]
    return {"lottery ticket: seeds": bands}
