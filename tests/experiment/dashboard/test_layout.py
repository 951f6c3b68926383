"""The dashboard's charts: which controls are drawn apart, one colour per series in TensorBoard and the plots."""

from __future__ import annotations

import statistics

import pytest
from matplotlib.colors import to_hex
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.util import tensor_util

from lth_lightning.experiment.dashboard.layout import apart_series
from lth_lightning.experiment.dashboard.palette import TENSORBOARD_PALETTE, series_colours, series_order
from lth_lightning.experiment.dashboard.plots import plot_accuracy_vs_density
from lth_lightning.experiment.dashboard.tensorboard import write_run_report
from lth_lightning.experiment.record.paths import RunPaths
from lth_lightning.experiment.record.round_result import RoundResult
from lth_lightning.metric_names import DEFAULT_METRICS

# The quick config's two seeds, 5 rounds, with magnitude at initialization collapsing at 6.3% (test accuracy means).
QUICK = {
    "ticket": [0.7659, 0.7742, 0.7700, 0.7695, 0.7571],
    "random_reinit": [0.7341, 0.7190, 0.6907, 0.5893],
    "random_prune": [0.7253, 0.6556, 0.6256, 0.5194],
    "grasp": [0.6420, 0.5784, 0.5587, 0.4996],
    "magnitude_init": [0.7519, 0.6921, 0.6604, 0.1000],
}


def _robust_outliers(values, deviations=5.0):
    """The rule restated: a point further than `deviations` median absolute deviations (at least a twentieth of the
    range) from the median of all points is an outlier; a control with one is apart."""
    points = sorted(v for series in values.values() for v in series)
    centre = statistics.median(points)
    mad = max(statistics.median([abs(v - centre) for v in points]), (points[-1] - points[0]) / 20)
    return {
        name
        for name, series in values.items()
        if name != "ticket" and max(abs(v - centre) for v in series) > deviations * mad
    }


def test_a_control_that_collapses_or_lies_far_below_is_apart_and_one_a_few_points_below_is_not():
    assert apart_series(QUICK) == ["magnitude_init"] == sorted(_robust_outliers(QUICK))
    far = {"ticket": [0.86, 0.85, 0.85], "synflow": [0.80, 0.79], "random_prune": [0.74, 0.70], "grasp": [0.30, 0.24]}
    assert apart_series(far) == ["grasp"]  # the GraSP at 0.24, with the others near 0.8
    assert apart_series({"ticket": [0.9, 0.1, 0.9], "random_prune": [0.85]}) == []  # the ticket is never apart
    assert apart_series({"ticket": [0.8, 0.8], "random_prune": [0.8]}) == []  # equal points: nothing apart
    assert apart_series({"ticket": [0.8], "random_prune": [0.1]}) == []  # two points: no spread to judge by


def test_series_colours_follow_one_order_whatever_the_page():
    run_page = series_colours(["random_prune", "ticket", "grasp"])
    seeds_page = series_colours(["chance", "grasp", "ticket", "random_prune"])
    assert run_page == {name: seeds_page[name] for name in run_page}  # chance comes last: it shifts none
    assert run_page["ticket"] == TENSORBOARD_PALETTE[0] and seeds_page["chance"] == TENSORBOARD_PALETTE[3]
    assert series_order(["chance", "snip", "ticket", "random_reinit"]) == ["ticket", "random_reinit", "snip", "chance"]
    with pytest.raises(ValueError, match=r"Unknown series \['tickets'\]; allowed: ticket, random_reinit"):
        series_order(["tickets"])


def _rows():
    rows = []
    for r in range(5):
        controls = (
            {} if r == 0 else {c: {"test_acc": QUICK[c][r - 1], "best_val_step": 10} for c in QUICK if c != "ticket"}
        )
        metrics = {"test_acc": QUICK["ticket"][r], "test_acc_at_best_val": QUICK["ticket"][r], "val_loss": 0.5}
        rows.append(RoundResult(round=r, density=0.5**r, metrics=metrics, best_val_step=10, controls=controls))
    return rows


def test_a_control_apart_is_logged_and_charted_on_its_own_and_the_plot_uses_the_dashboards_colours(tmp_path):
    run = RunPaths(tmp_path / "seed_0")
    run.root.mkdir()
    write_run_report(run, _rows(), {"lottery.amount": 0.5}, DEFAULT_METRICS)
    apart = EventAccumulator(str(run.series("magnitude_init")))
    apart.Reload()
    assert sorted(apart.Tags()["scalars"]) == ["lottery/apart/test_acc", "lottery/best_val_step"]
    assert [e.value for e in apart.Scalars("lottery/apart/test_acc")] == pytest.approx(QUICK["magnitude_init"])
    ticket = EventAccumulator(str(run.series("ticket")), size_guidance={"tensors": 0})
    ticket.Reload()
    (config,) = ticket.Tensors("custom_scalars__config__")
    layout = layout_pb2.Layout.FromString(tensor_util.make_ndarray(config.tensor_proto).item())
    charts = {chart.title: chart for chart in layout.category[0].chart}
    assert list(charts) == [
        "test accuracy: ticket vs random reinit vs random pruning vs GraSP at init",
        "test accuracy at the early-stopping iteration: ticket vs controls",
        "test accuracy: magnitude at init, apart (far from the others)",
    ]
    assert list(charts["test accuracy: ticket vs random reinit vs random pruning vs GraSP at init"].multiline.tag) == [
        r"^lottery/test_acc$"
    ]
    band = charts["test accuracy: magnitude at init, apart (far from the others)"].margin.series[0]
    assert band.value == band.lower == band.upper == "lottery/apart/test_acc"  # each point thrice: none an outlier
    times = {name: EventAccumulator(str(run.series(name))).Reload().FirstEventTimestamp() for name in QUICK}
    assert sorted(times, key=times.get) == ["ticket", "random_reinit", "random_prune", "grasp", "magnitude_init"]
    colours = {
        line.get_label(): to_hex(line.get_color())
        for line in plot_accuracy_vs_density([row.flat() for row in _rows()]).axes[0].get_lines()
    }
    assert [
        colours[label] for label in ("ticket", "random reinit", "random pruning", "GraSP at init", "magnitude at init")
    ] == list(TENSORBOARD_PALETTE[:5])
