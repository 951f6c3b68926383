"""The TensorBoard dashboard and the plots of a run, of an experiment's seeds, and of a comparison.

The summary (``dashboard/``) holds one TensorBoard run per series: ``ticket`` and one
per control (``random_reinit``, ``random_prune``, ``snip``, ...). Every series logs its result columns under the
same tags (``lottery/test_acc``, ``lottery/test_acc_at_best_val``, ``lottery/best_val_step``, ...)
with the round as step, so TensorBoard draws one chart per tag with the ticket and its controls
in their own colors, named in the legend. The ticket's run also holds ``lottery/density`` and, per
layer, ``lottery/density/<tensor>`` and ``lottery/overlap_prev/<tensor>``, with ``--lottery.instability``
``lottery/instability`` and each round's interpolation curve ``instability/round_NN`` (step: the
point on the line between the two copies, 0-29), the plots as images,
the hyperparameters (booleans as booleans) with the final metrics, and a custom-scalars layout
that tells the story on one page; with several seeds, min-max bands (``Margin`` charts) and the
overlap between the seeds' tickets. A summary is rebuilt whole in a temporary folder swapped in
at the end, so a resumed run never shows a round twice.
"""

from __future__ import annotations

import itertools
import shutil
import statistics
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lth_lightning.experiment.controls.registry import CONTROLS
from lth_lightning.experiment.dashboard.layout import APART, apart_series, layout, metric_label
from lth_lightning.experiment.dashboard.palette import controls_in, series_order
from lth_lightning.experiment.dashboard.plots import (
    first_layer_pixel_map,
    plot_accuracy_vs_density,
    plot_comparison,
    plot_early_stop_vs_density,
    plot_instability_vs_density,
    plot_pixel_map,
    png_bytes,
    row_density,
)
from lth_lightning.experiment.dashboard.run_order import EARLIER, first_training_time, write_start_event
from lth_lightning.experiment.record.paths import ExperimentPaths, RunPaths
from lth_lightning.experiment.record.round_result import RoundResult
from lth_lightning.io import atomic_write_bytes, fresh_folder, load_tensors
from lth_lightning.metric_names import MetricNames
from lth_lightning.pruning.magnitude import mask_overlap

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from torch import Tensor
    from torch.utils.tensorboard import SummaryWriter

__all__ = ["hparams_summaries", "run_name", "write_comparison", "write_run_report", "write_seeds_report"]

_NOT_PLOTTED = ("round", "seeds", "seconds", "steps")


def run_name(label: str) -> str:
    """A TensorBoard run (a folder) for a label: ``/`` and ``\\`` would nest folders, so they become ``_``."""
    return label.replace("/", "_").replace("\\", "_")


def _band_keys(names: MetricNames) -> tuple[str, ...]:
    """The columns drawn with min-max bands over seeds, for every series."""
    return (names.test_column, names.at_best_column, "best_val_step", "instability", "instability_train")


def _series(values: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """A flat row's columns by series: the ticket's, and each control's (``random_prune_test_acc`` -> ``test_acc``)."""
    out: dict[str, dict[str, Any]] = {"ticket": {}}
    for key, value in values.items():
        control = next((c for c in CONTROLS if key.startswith(f"{c}_")), None)
        if control is None:
            out["ticket"][key] = value
        else:
            out.setdefault(control, {})[key[len(control) + 1 :]] = value
    return out


def _has_instability(rows: Sequence[Mapping[str, Any]]) -> bool:
    return any(k.startswith("instability") and row[k] is not None for row in rows for k in row)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def hparams_summaries(hparams: Mapping[str, Any], metric_tags: Sequence[str]) -> list[Any]:
    """The HParams plugin's experiment, session-start and session-end summaries, booleans kept as booleans.

    The metric values are the scalars ``metric_tags`` of the same run (their last value).
    """
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    infos, start = [], plugin_data_pb2.SessionStartInfo()
    for key, value in hparams.items():
        if value is None:  # TensorBoard has no "none"; the config files keep it
            continue
        if isinstance(value, bool):
            start.hparams[key].bool_value, kind = value, api_pb2.DATA_TYPE_BOOL
        elif isinstance(value, (int, float)):
            start.hparams[key].number_value, kind = float(value), api_pb2.DATA_TYPE_FLOAT64
        else:
            start.hparams[key].string_value, kind = str(value), api_pb2.DATA_TYPE_STRING
        infos.append(api_pb2.HParamInfo(name=key, type=kind))
    metrics = [api_pb2.MetricInfo(name=api_pb2.MetricName(tag=tag)) for tag in metric_tags]
    experiment = api_pb2.Experiment(hparam_infos=infos, metric_infos=metrics)
    end = plugin_data_pb2.SessionEndInfo(status=api_pb2.STATUS_SUCCESS)

    def summary(tag: str, data: Any) -> Any:
        content = data.SerializeToString()
        plugin = SummaryMetadata.PluginData(plugin_name=metadata.PLUGIN_NAME, content=content)
        return Summary(value=[Summary.Value(tag=tag, metadata=SummaryMetadata(plugin_data=plugin))])

    return [
        summary(metadata.EXPERIMENT_TAG, plugin_data_pb2.HParamsPluginData(experiment=experiment, version=0)),
        summary(
            metadata.SESSION_START_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_start_info=start, version=0)
        ),
        summary(metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_end_info=end, version=0)),
    ]


Writers = Callable[[str], "SummaryWriter"]


def _write_summary(
    target: Path, write: Callable[[Writers], None], series: Sequence[str] = (), start: float | None = None
) -> None:
    """Write TensorBoard runs (one per series, by name) in a fresh folder, then swap it in for ``target``.

    The runs of ``series`` are created first, in :func:`~.palette.series_order` (TensorBoard's order, hence its
    colours), each with its first event; with ``start``, that event is dated ``start`` (a millisecond apart), so
    that they sort before the folder's training runs (:mod:`.run_order`).
    """
    from torch.utils.tensorboard import SummaryWriter

    tmp = fresh_folder(target.parent, ".summary.")
    writers: dict[str, SummaryWriter] = {}
    for k, name in enumerate(series_order(series)):  # each writes its first event (its start time) as it is made
        if start is not None:
            write_start_event(tmp / name, start + k / 1000)
        writers[name] = SummaryWriter(log_dir=str(tmp / name))

    def writer(series: str) -> SummaryWriter:
        if series not in writers:
            writers[series] = SummaryWriter(log_dir=str(tmp / series))
        return writers[series]

    try:
        write(writer)
    finally:
        for each in writers.values():
            each.close()
    old = target.with_name(f".summary.old.{tmp.name}")
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def _save_figures(folder: Any, figures: Mapping[str, Figure]) -> None:
    for name, fig in figures.items():
        atomic_write_bytes(folder.plot(name), png_bytes(fig))


def _add_common(
    writer: SummaryWriter,
    figures: Mapping[str, Figure],
    step: int,
    names: MetricNames,
    hparams: Mapping[str, Any],
    seeds: bool,
    rows: Sequence[Mapping[str, Any]],
    apart: Mapping[str, Sequence[str]],
) -> None:
    for name, fig in figures.items():
        writer.add_figure(f"lottery/{name}", fig, global_step=step, close=False)
    writer.add_custom_scalars(layout(names, seeds, controls_in(rows), _has_instability(rows), apart))
    tags = [f"lottery/{names.test_column}", f"lottery/{names.at_best_column}", "lottery/density"]
    file_writer = writer.file_writer
    if file_writer is not None:
        for summary in hparams_summaries(hparams, tags):
            file_writer.add_summary(summary)


def _figures(rows: Sequence[Mapping[str, Any]], names: MetricNames, masks: Mapping[str, Tensor]) -> dict[str, Figure]:
    figures = {
        "accuracy_vs_weights_remaining": plot_accuracy_vs_density(rows, names.test_column),
        "early_stop_vs_weights_remaining": plot_early_stop_vs_density(rows),
    }
    if _has_instability(rows):
        figures["instability_vs_weights_remaining"] = plot_instability_vs_density(rows)
    pixel_map = first_layer_pixel_map(masks)
    if pixel_map is not None:
        last = rows[-1]
        percent = 100 * row_density(last)
        title = f"round {last['round']}: first-layer connections per pixel ({percent:.1f}% of weights left)"
        figures["first_layer_pixels"] = plot_pixel_map(pixel_map, title)
    return figures


def _apart(by_round: Sequence[Mapping[str, Mapping[str, Any]]], names: MetricNames) -> dict[str, list[str]]:
    """By accuracy column, the controls drawn apart (:func:`~.layout.apart_series`), from each round's series."""
    apart = {}
    for key in (names.test_column, names.at_best_column):
        values: dict[str, list[float]] = {}
        for series in by_round:
            for name, columns in series.items():
                if _is_number(columns.get(key)):
                    values.setdefault(name, []).append(float(columns[key]))
        apart[key] = apart_series(values)
    return apart


def _tag(series: str, key: str, apart: Mapping[str, Sequence[str]]) -> str:
    """Where ``series`` logs column ``key``: under :data:`~.layout.APART` if it is drawn apart."""
    return f"{APART}/{key}" if series in apart.get(key, ()) else f"lottery/{key}"


def _round_masks(run: RunPaths, rounds: Sequence[int]) -> dict[int, dict[str, Tensor]]:
    return {r: load_tensors(run.masks(r)) for r in rounds if run.masks(r).is_file()}


def write_run_report(
    run: RunPaths, rows: Sequence[RoundResult], hparams: Mapping[str, Any], names: MetricNames
) -> None:
    """(Re)write a run's plots and TensorBoard summary from its rows and the masks in its round folders."""
    flat = [row.flat() for row in rows]
    masks = _round_masks(run, [row.round for row in rows])
    figures = _figures(flat, names, masks.get(rows[-1].round, {}))
    _save_figures(run, figures)
    by_round = [_series(values) for values in flat]
    apart = _apart(by_round, names)

    def write(writer: Writers) -> None:
        for row, series_columns in zip(rows, by_round, strict=True):
            for series, columns in series_columns.items():
                for key, value in columns.items():
                    if key not in _NOT_PLOTTED and _is_number(value):
                        writer(series).add_scalar(_tag(series, key, apart), float(value), row.round)
            ticket = writer("ticket")
            for point, error in enumerate(row.path_errors):  # the interpolation curve: one tag per round
                ticket.add_scalar(f"instability/round_{row.round:02d}", error, point)
            for point, error in enumerate(row.path_train_errors):  # and on the training data
                ticket.add_scalar(f"instability_train/round_{row.round:02d}", error, point)
            for name, density in row.layer_density.items():
                ticket.add_scalar(f"lottery/density/{name}", float(density), row.round)
            if row.round - 1 in masks and row.round in masks:
                for name, overlap in mask_overlap(masks[row.round - 1], masks[row.round]).items():
                    ticket.add_scalar(f"lottery/overlap_prev/{name}", overlap, row.round)
        _add_common(writer("ticket"), figures, rows[-1].round, names, hparams, seeds=False, rows=flat, apart=apart)

    first = first_training_time([run.tensorboard])
    _write_summary(run.summary, write, ["ticket", *controls_in(flat)], None if first is None else first - EARLIER)
    shutil.rmtree(run.earlier_summary, ignore_errors=True)  # a folder recorded before: one summary, the new one


def _seed_overlaps(
    per_run: Sequence[Mapping[int, Mapping[str, Tensor]]], round: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Mean Jaccard over pairs of seeds at ``round``, per layer, and the chance level of random masks."""
    masks = [m[round] for m in per_run if round in m]
    pairs = [mask_overlap(a, b) for a, b in itertools.combinations(masks, 2)]
    if not pairs:
        return {}, {}
    overlap = {name: statistics.fmean(p[name] for p in pairs) for name in pairs[0]}
    density = {name: statistics.fmean(float(m[name].float().mean()) for m in masks) for name in pairs[0]}
    chance = {name: d / (2 - d) for name, d in density.items()}
    return overlap, chance


def write_seeds_report(
    experiment: ExperimentPaths,
    rows: Sequence[Mapping[str, Any]],
    runs: Sequence[RunPaths],
    hparams: Mapping[str, Any],
    names: MetricNames,
) -> None:
    """(Re)write the across-seeds plots (min-max bands) and TensorBoard summary of an experiment."""
    rounds = [int(row["round"]) for row in rows]
    per_run = [_round_masks(run, rounds) for run in runs]
    figures = _figures(rows, names, per_run[0].get(rounds[-1], {}) if per_run else {})
    _save_figures(experiment, figures)
    bands = _band_keys(names)
    by_round = [_series({key.removesuffix("_mean"): row[key] for key in row if key.endswith("_mean")}) for row in rows]
    apart = _apart(by_round, names)
    overlaps = {step: _seed_overlaps(per_run, step) for step in rounds}

    def write(writer: Writers) -> None:
        for row, step, series_columns in zip(rows, rounds, by_round, strict=True):
            for series, columns in series_columns.items():
                for key, value in columns.items():
                    if key in _NOT_PLOTTED:
                        continue
                    column, tag = key if series == "ticket" else f"{series}_{key}", _tag(series, key, apart)
                    if key not in bands:
                        writer(series).add_scalar(tag, float(value), step)
                        continue
                    for stat in ("mean", "min", "max"):  # the band charts' own tags, only in this summary
                        writer(series).add_scalar(f"{tag}/{stat}", float(row[f"{column}_{stat}"]), step)
            overlap, chance = overlaps[step]
            for name, value in overlap.items():
                writer("ticket").add_scalar(f"lottery/overlap_seeds/{name}", value, step)
                writer("chance").add_scalar(f"lottery/overlap_seeds/{name}", chance[name], step)
        hparams_seeds = {**hparams, "seeds": len(runs)}
        _add_common(writer("ticket"), figures, rounds[-1], names, hparams_seeds, seeds=True, rows=rows, apart=apart)

    series = ["ticket", *controls_in(rows), *(["chance"] if any(o for o, _ in overlaps.values()) else [])]
    first = first_training_time(run.tensorboard for run in runs)
    _write_summary(experiment.summary, write, series, None if first is None else first - 2 * EARLIER)
    shutil.rmtree(experiment.earlier_summary, ignore_errors=True)


def write_comparison(
    out: Path,
    experiments: Mapping[str, Sequence[Mapping[str, Any]]],
    hparams: Mapping[str, Mapping[str, Any]],
    names: MetricNames,
) -> None:
    """The overlay plot of several experiments and one TensorBoard logdir with a run per experiment.

    In TensorBoard the step is the share of weights pruned, in hundredths of a percent (``0`` is the
    dense network, ``9450`` is 5.5% of the weights left), so experiments with different pruning
    rates line up by density.
    """
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(
        out / "accuracy_vs_weights_remaining.png", png_bytes(plot_comparison(experiments, names.test_column))
    )
    label = metric_label(names)
    charts = {
        "compared experiments": {
            f"ticket {label} by weights pruned (step: 1/100 % of weights pruned)": [
                "Multiline",
                [rf"^lottery/{names.test_column}$"],
            ],
            f"ticket {label} at the early-stopping iteration by weights pruned": [
                "Multiline",
                [rf"^lottery/{names.at_best_column}$"],
            ],
        }
    }

    def write(writer: Writers) -> None:
        for name, rows in experiments.items():
            run = writer(run_name(name))
            for row in rows:
                step = round(10_000 * (1 - row_density(row)))
                for key in (names.test_column, names.at_best_column):
                    value = row.get(f"{key}_mean", row.get(key))
                    if value not in (None, ""):
                        run.add_scalar(f"lottery/{key}", float(value), step)
            run.add_custom_scalars(charts)
            file_writer = run.file_writer
            if file_writer is not None:
                for summary in hparams_summaries(hparams[name], [f"lottery/{names.test_column}"]):
                    file_writer.add_summary(summary)

    _write_summary(out / "tensorboard", write)
