"""The across-rounds report: TensorBoard summary run, plots and hyperparameters."""

from __future__ import annotations

import io
import math
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from lth_lightning.io import atomic_write_bytes, fresh_folder

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "first_layer_pixel_map",
    "plot_accuracy_vs_density",
    "plot_early_stop_vs_density",
    "plot_pixel_map",
    "png_bytes",
    "write_report",
]


def _figure() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure(figsize=(6, 4), dpi=100)


SERIES = (("", "ticket"), ("random_reinit_", "random reinit"), ("random_prune_", "random pruning"))


def _series(rows: Sequence[Mapping[str, Any]], key: str) -> tuple[list[float], list[float], list[float] | None]:
    """Percent remaining, values (means with several seeds) and standard deviations of ``key``."""
    pct, values, stds = [], [], []
    aggregated = any(f"{key}_mean" in r for r in rows)
    for row in rows:
        value = row.get(f"{key}_mean") if aggregated else row.get(key)
        if value is None or value == "" or math.isnan(float(value)):
            continue
        pct.append(100 * float(row["density_mean"] if "density_mean" in row else row["density"]))
        values.append(float(value))
        stds.append(float(row.get(f"{key}_std") or 0.0))
    return pct, values, (stds if aggregated else None)


def _density_axis(ax: Any, pct: Sequence[float]) -> None:
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    ax.set_xscale("log")
    low = min(pct, default=100.0)
    ticks = sorted({t for t in (100, 50, 20, 10, 5, 2, 1, 0.5, 0.2, 0.1) if low <= t} | {float(f"{low:.2g}")})
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.invert_xaxis()
    ax.set_xlabel("percent of weights remaining")
    ax.grid(True, which="both", alpha=0.3)


def _plot_metric(rows: Sequence[Mapping[str, Any]], metric: str, ylabel: str) -> Figure:
    fig = _figure()
    ax = fig.subplots()
    all_pct: list[float] = []
    dense = _series(rows[:1], metric)
    for prefix, label in SERIES:
        pct, values, stds = _series(rows, f"{prefix}{metric}")
        if not values:
            continue
        if prefix and dense[1] and (not pct or pct[0] < dense[0][0]):  # controls start from the dense network
            pct, values = dense[0] + pct, dense[1] + values
            stds = (dense[2] or [0.0]) + stds if stds is not None else None
        (line,) = ax.plot(pct, values, "o-", label=label, markersize=4)
        if stds is not None:
            low = [v - s for v, s in zip(values, stds, strict=True)]
            high = [v + s for v, s in zip(values, stds, strict=True)]
            ax.fill_between(pct, low, high, color=line.get_color(), alpha=0.2)
        all_pct += pct
    _density_axis(ax, all_pct)
    ax.set_ylabel(ylabel)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_accuracy_vs_density(rows: Sequence[Mapping[str, Any]], metric: str = "test_acc") -> Figure:
    """The test metric (accuracy) vs percent of weights remaining (log x axis, as in the paper): ticket and controls.

    With aggregated rows (``<key>_mean`` / ``<key>_std`` over seeds), lines are means with
    bands of one standard deviation.
    """
    return _plot_metric(rows, metric, "test accuracy" if metric == "test_acc" else metric)


def plot_early_stop_vs_density(rows: Sequence[Mapping[str, Any]]) -> Figure:
    """Early-stopping iteration (step of minimum validation loss) vs percent of weights remaining."""
    return _plot_metric(rows, "best_val_step", "early-stopping iteration (step)")


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


def _save_png(fig: Figure, path: Path) -> None:
    atomic_write_bytes(path, png_bytes(fig))


def write_report(
    run_dir: str | Path,
    rows: Sequence[Mapping[str, Any]],
    last_masks: Mapping[str, Tensor],
    hparams: Mapping[str, Any],
    test_column: str = "test_acc",
) -> None:
    """(Re)write the TensorBoard summary run and the PNG plots of a run folder from its rows.

    ``test_column`` is the column of the test metric (``test_acc``) that the accuracy plot shows.
    The summary run ``<run_dir>/tensorboard/summary`` holds ``lottery/test_acc``,
    ``lottery/test_acc_at_best_val``, ``lottery/val_loss``, ``lottery/val_acc``,
    ``lottery/best_val_step``, ``lottery/density`` and ``lottery/density/<parameter>`` with the
    round as step, the plots as images, and the hyperparameters with the final metrics. It is
    rebuilt whole from ``rows`` each time, in a temporary folder swapped in at the end, so a
    resumed run never shows a round twice.
    """
    from torch.utils.tensorboard import SummaryWriter

    run_dir = Path(run_dir)
    target = run_dir / "tensorboard" / "summary"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = fresh_folder(target.parent, ".summary.")
    writer = SummaryWriter(log_dir=str(tmp))
    try:
        for row in rows:
            step = int(row["round"])
            for key, value in row.items():
                if key in ("round", "seconds", "steps") or isinstance(value, (dict, str, bool)) or value is None:
                    continue
                writer.add_scalar(f"lottery/{key}", float(value), step)
            for name, density in row.get("layer_density", {}).items():
                writer.add_scalar(f"lottery/density/{name}", float(density), step)
        last_round = int(rows[-1]["round"])
        for tag, plot in (
            ("accuracy_vs_weights_remaining", lambda rows: plot_accuracy_vs_density(rows, test_column)),
            ("early_stop_vs_weights_remaining", plot_early_stop_vs_density),
        ):
            fig = plot(rows)
            writer.add_figure(f"lottery/{tag}", fig, global_step=last_round, close=False)
            _save_png(fig, run_dir / f"{tag}.png")
        pixel_map = first_layer_pixel_map(last_masks)
        if pixel_map is not None:
            last = rows[-1]
            density = last.get("density_mean", last.get("density", 1.0))
            title = f"round {last['round']}: first-layer connections per pixel ({100 * density:.1f}% left)"
            heat = plot_pixel_map(pixel_map, title)
            writer.add_figure("lottery/first_layer_pixels", heat, global_step=int(last["round"]), close=False)
            _save_png(heat, run_dir / "first_layer_pixels.png")
        final = rows[-1]
        metrics = {
            f"hparam/{k}": float(final[k])
            for k in (test_column, f"{test_column}_at_best_val", "density", f"{test_column}_mean", "density_mean")
            if final.get(k) is not None
        }
        clean = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in hparams.items()}
        writer.add_hparams(clean, metrics, run_name=".")
    finally:
        writer.close()
    old = target.with_name(f".summary.old.{tmp.name}")
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)
