"""The plots of an experiment: accuracy and early stopping vs weights remaining, the first layer's pixel map.

Rows are flat results (``RoundResult.flat()``) or aggregated rows (``<key>_mean``, ``_min``,
``_max`` over seeds, drawn as the mean with a min-max band: the paper's error bars).
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from lth_lightning.experiment.controls.registry import CONTROLS
from lth_lightning.experiment.dashboard.palette import controls_in, series_colours
from lth_lightning.pruning.stability import STABLE_BELOW

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "row_density",
    "first_layer_pixel_map",
    "plot_accuracy_vs_density",
    "plot_comparison",
    "plot_early_stop_vs_density",
    "plot_pixel_map",
    "png_bytes",
]


def _figure() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure(figsize=(7, 4.5), dpi=100)


def _value(row: Mapping[str, Any], key: str) -> float | None:
    value = row.get(f"{key}_mean", row.get(key))
    if value is None or value == "" or isinstance(value, bool):
        return None
    number = float(value)
    return None if math.isnan(number) else number


def row_density(row: Mapping[str, Any]) -> float:
    """The fraction of weights a row's round trained with: a run's ``density``, or its mean over seeds."""
    return float(row.get("density_mean", row.get("density", 1.0)))


def _percent(row: Mapping[str, Any]) -> float:
    return 100 * row_density(row)


def _series(rows: Sequence[Mapping[str, Any]], key: str) -> tuple[list[float], list[float], list[tuple[float, float]]]:
    """Percent remaining, values (means with several seeds), and (min, max) per point (empty for one seed)."""
    pct, values, bands = [], [], []
    for row in rows:
        value = _value(row, key)
        if value is None:
            continue
        pct.append(_percent(row))
        values.append(value)
        if f"{key}_min" in row:
            bands.append((float(row[f"{key}_min"]), float(row[f"{key}_max"])))
    return pct, values, bands


def _spaced(values: Sequence[float], labels: int = 16) -> list[float]:
    """``values`` (sorted, positive) less those closer (on a log axis) to a kept one than 1/``labels`` of the range.

    One tick per round, unless rounds (or experiments pruned at other rates) put them so close that their labels
    would overlap ("5049"); the largest and smallest are kept.
    """
    if len(values) < 3:
        return list(values)
    gap = math.log10(values[-1] / values[0]) / labels
    kept = [values[-1]]
    for value in reversed(values[1:-1]):
        if math.log10(kept[-1] / value) >= gap and math.log10(value / values[0]) >= gap:
            kept.append(value)
    return sorted([values[0], *kept])


def _density_axis(ax: Axes, pct: Sequence[float]) -> None:
    """Log x axis of weights remaining, decreasing to the right, a tick per round where their labels fit."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    ticks = _spaced(sorted(set(pct)))
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
    ax.xaxis.set_minor_locator(NullLocator())
    if len(ticks) > 10:
        ax.tick_params(axis="x", labelrotation=60, labelsize=8)
    ax.invert_xaxis()
    ax.set_xlabel("weights remaining (%)")
    ax.grid(True, which="major", alpha=0.3)


def _line(ax: Axes, pct: list[float], values: list[float], bands: list[tuple[float, float]], **style: Any) -> Any:
    (line,) = ax.plot(pct, values, **style)
    if bands:
        low, high = zip(*bands, strict=True)
        ax.fill_between(pct, low, high, color=line.get_color(), alpha=0.15, linewidth=0)
    return line


def _colours(rows: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """The dashboard's colour of each series in ``rows``; past TensorBoard's seven, tab20's, distinct."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    tab20 = colormaps["tab20"]
    return series_colours(["ticket", *controls_in(rows)], extra=[to_hex(tab20(i)) for i in range(20)])


def _plot_metric(rows: Sequence[Mapping[str, Any]], metric: str, ylabel: str, title: str, at_best: bool) -> Figure:
    fig = _figure()
    ax = fig.subplots()
    dense = _value(rows[0], metric) if rows else None
    all_pct: list[float] = []
    series = [("ticket", "", "ticket"), *((c.name, f"{c.name}_", c.label) for c in CONTROLS.values())]
    colours = _colours(rows)
    for name, prefix, label in series:
        pct, values, bands = _series(rows, f"{prefix}{metric}")
        if prefix and dense is not None and pct:  # controls start from the dense network
            pct, values = [_percent(rows[0]), *pct], [dense, *values]
            bands = [(dense, dense), *bands] if bands else []
        if not values:
            continue
        line = _line(ax, pct, values, bands, marker="o", markersize=4, label=label, color=colours[name])
        if at_best:
            best = _series(rows, f"{prefix}{metric}_at_best_val")
            if best[1]:
                style = {"color": line.get_color(), "linestyle": "--", "marker": "x", "markersize": 4}
                _line(ax, *best, label=f"{label}, at early stop", **style)
        all_pct += pct
    if dense is not None:
        ax.axhline(dense, color="0.4", linestyle=":", linewidth=1, label=f"dense network ({dense:.4g})")
    _density_axis(ax, all_pct or [100.0])
    seeds = rows[0].get("seeds") if rows else None
    if seeds and int(seeds) > 1:  # on a line of its own: one line overflows the figure's width
        title += f"\nmean and min-max band over {seeds} seeds"
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    _legend(fig, ax)
    return fig


def _legend(fig: Figure, ax: Axes) -> None:
    """The legend inside the axes; beside them, in a wider figure, when it has too many entries to fit."""
    entries = len(ax.get_legend_handles_labels()[1])
    if entries <= 8:
        ax.legend(fontsize=8)
        fig.tight_layout()
        return
    width, height = fig.get_size_inches()
    fig.set_size_inches(width + 4.5, max(height, 0.19 * entries + 1.0))
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()


def plot_accuracy_vs_density(rows: Sequence[Mapping[str, Any]], metric: str = "test_acc") -> Figure:
    """The test metric vs weights remaining (log x axis, as in the paper): the ticket, its accuracy at
    the early-stopping iteration (dashed), the controls, and the dense network as a reference line."""
    label = "test accuracy" if metric == "test_acc" else metric
    return _plot_metric(rows, metric, label, f"{label[0].upper()}{label[1:]} vs weights remaining", at_best=True)


def plot_early_stop_vs_density(rows: Sequence[Mapping[str, Any]]) -> Figure:
    """Early-stopping iteration (step of the best validation value) vs weights remaining."""
    return _plot_metric(
        rows, "best_val_step", "early-stopping iteration (step)", "Early-stopping iteration vs weights remaining", False
    )


def plot_instability_vs_density(rows: Sequence[Mapping[str, Any]]) -> Figure:
    """Instability (the error barrier between two copies, :mod:`lth_lightning.pruning.stability`) vs weights remaining,
    with the paper's threshold of stability."""
    fig = _figure()
    ax = fig.subplots()
    pct, values, bands = _series(rows, "instability")
    colour = series_colours(["ticket"])["ticket"]
    line = _line(ax, pct, values, bands, marker="o", markersize=4, label="ticket: test error", color=colour)
    pct, values, bands = _series(rows, "instability_train")
    if values:  # Frankle et al. 2020 report both
        style = {"color": line.get_color(), "linestyle": "--", "marker": "s", "markersize": 4}
        _line(ax, pct, values, bands, label="ticket: training error", **style)
    ax.axhline(STABLE_BELOW, color="0.4", linestyle=":", linewidth=1, label=f"stable below {STABLE_BELOW:g}")
    _density_axis(ax, pct or [100.0])
    title = "Instability (error barrier between two copies) vs weights remaining"
    seeds = rows[0].get("seeds") if rows else None
    ax.set_title(title + (f"\nmean and min-max band over {seeds} seeds" if seeds and int(seeds) > 1 else ""))
    ax.set_ylabel("instability (error barrier)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_comparison(experiments: Mapping[str, Sequence[Mapping[str, Any]]], metric: str = "test_acc") -> Figure:
    """Several experiments' tickets overlaid: the test metric vs weights remaining, one line per experiment."""
    fig = _figure()
    ax = fig.subplots()
    all_pct: list[float] = []
    for label, rows in experiments.items():
        pct, values, bands = _series(rows, metric)
        if values:
            _line(ax, pct, values, bands, marker="o", markersize=4, label=label)
            all_pct += pct
    _density_axis(ax, all_pct or [100.0])
    name = "test accuracy" if metric == "test_acc" else metric
    ax.set_title(f"Ticket {name} vs weights remaining: {len(experiments)} experiments")
    ax.set_ylabel(name)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def first_layer_pixel_map(masks: Mapping[str, Tensor], image_shape: tuple[int, int] = (28, 28)) -> Tensor | None:
    """Surviving connections per input pixel of the first 2-D mask whose inputs are ``image_shape`` pixels."""
    pixels = image_shape[0] * image_shape[1]
    for mask in masks.values():
        if mask.dim() == 2 and mask.shape[1] == pixels:
            return mask.sum(0).reshape(image_shape).to(torch.float32)
    return None


def plot_pixel_map(pixel_map: Tensor, title: str) -> Figure:
    """A heat map of surviving first-layer connections per input pixel."""
    fig = _figure()
    ax = fig.subplots()
    image = ax.imshow(pixel_map.numpy(), cmap="viridis")
    fig.colorbar(image, ax=ax, label="surviving connections")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    return fig


def png_bytes(fig: Figure) -> bytes:
    """The figure rendered as PNG (for files, notebooks and dashboards)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
