"""The across-rounds report: TensorBoard summary run, plots and hyperparameters."""

from __future__ import annotations

import io
import math
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from lth_lightning.io import atomic_write_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["first_layer_pixel_map", "plot_accuracy_vs_density", "plot_pixel_map", "write_report"]


def _figure() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure(figsize=(6, 4), dpi=100)


def plot_accuracy_vs_density(rows: Sequence[Mapping[str, Any]]) -> Figure:
    """Test accuracy against percent of weights remaining, log x axis, dense on the left (as in the paper)."""
    fig = _figure()
    ax = fig.subplots()
    pct = [100 * float(r["density"]) for r in rows]
    for key, label, style in (
        ("test_acc", "ticket: final", "o-"),
        ("test_acc_at_best_val", "ticket: early stop", "s--"),
    ):
        values = [r.get(key) for r in rows]
        points = [(p, v) for p, v in zip(pct, values, strict=True) if v is not None and not math.isnan(float(v))]
        if points:
            ax.plot(*zip(*points, strict=True), style, label=label)
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    ax.set_xscale("log")
    ticks = [t for t in (100, 50, 20, 10, 5, 2, 1, 0.5, 0.2, 0.1) if min(pct, default=100) / 1.5 <= t]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.invert_xaxis()
    ax.set_xlabel("percent of weights remaining")
    ax.set_ylabel("test accuracy")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
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


def _save_png(fig: Figure, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())


def write_report(
    run_dir: str | Path,
    rows: Sequence[Mapping[str, Any]],
    last_masks: Mapping[str, Tensor],
    hparams: Mapping[str, Any],
) -> None:
    """(Re)write the TensorBoard summary run and the PNG plots of a run folder from its rows.

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
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".summary."))
    writer = SummaryWriter(log_dir=str(tmp))
    try:
        for row in rows:
            step = int(row["round"])
            for key in ("test_acc", "test_acc_at_best_val", "val_loss", "val_acc", "best_val_step", "density"):
                value = row.get(key)
                if value is not None:
                    writer.add_scalar(f"lottery/{key}", float(value), step)
            for name, density in row.get("layer_density", {}).items():
                writer.add_scalar(f"lottery/density/{name}", float(density), step)
        accuracy = plot_accuracy_vs_density(rows)
        writer.add_figure("lottery/accuracy_vs_weights_remaining", accuracy, global_step=len(rows) - 1, close=False)
        _save_png(accuracy, run_dir / "accuracy_vs_weights_remaining.png")
        pixel_map = first_layer_pixel_map(last_masks)
        if pixel_map is not None:
            last = rows[-1]
            title = f"round {last['round']}: first-layer connections per pixel ({100 * last['density']:.1f}% left)"
            heat = plot_pixel_map(pixel_map, title)
            writer.add_figure("lottery/first_layer_pixels", heat, global_step=int(last["round"]), close=False)
            _save_png(heat, run_dir / "first_layer_pixels.png")
        final = rows[-1]
        metrics = {
            f"hparam/{k}": float(final[k])
            for k in ("test_acc", "test_acc_at_best_val", "density")
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
